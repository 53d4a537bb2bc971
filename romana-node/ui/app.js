// Romana web view: a read-only page over the node's JSON API.
// Plain DOM, no framework; every value is set as text (never as HTML).
'use strict';

(function () {
  const REFRESH_MS = 5000;
  const DEBOUNCE_MS = 100;

  const $ = (id) => document.getElementById(id);

  // h('td', {className: 'num'}, 'text', otherNode): an element with
  // properties (or data-* / aria-* attributes) and children.
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key.startsWith('data-') || key.startsWith('aria-') || key === 'scope') el.setAttribute(key, value);
      else el[key] = value;
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const dash = (v) => (v === undefined || v === null || v === '' ? '—' : String(v));

  function formatTime(ms) {
    if (!ms) return '—';
    return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  // ---- Fetching and errors ------------------------------------------------

  class ApiError extends Error {
    constructor(path, status, body) {
      const message = body && typeof body === 'object'
        ? (body.message || body.error || JSON.stringify(body))
        : (body || ('HTTP ' + status));
      super(message);
      this.path = path;
      this.status = status;
      this.code = body && typeof body === 'object' ? body.code : undefined;
    }
  }

  // GET a JSON route. `okStatuses` lists non-2xx statuses whose body is an
  // answer, not an error (the 503 of /v1/ready). Resolves {status, body}.
  async function getJson(path, okStatuses) {
    let response;
    try {
      response = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new ApiError(path, 0, 'the node did not answer (' + e.message + ')');
    }
    const text = await response.text();
    let body = text;
    try { body = text ? JSON.parse(text) : null; } catch (_) { /* keep the text */ }
    if (!response.ok && !(okStatuses || []).includes(response.status)) {
      throw new ApiError(path, response.status, typeof body === 'string' ? body.trim() : body);
    }
    return { status: response.status, body };
  }

  const errors = new Map(); // source -> message

  function setError(source, error) {
    if (error) {
      const status = error.status ? ' (HTTP ' + error.status + (error.code ? ', ' + error.code : '') + ')' : '';
      errors.set(source, source + ': ' + error.message + status);
    } else {
      errors.delete(source);
    }
    const banner = $('error-banner');
    $('error-list').replaceChildren(...[...errors.values()].map((m) => h('li', {}, m)));
    banner.hidden = errors.size === 0;
  }

  // Re-renders a section only when its data changed (keeps open <details>
  // and the reader's place).
  const lastRendered = new Map();
  function changed(key, data) {
    const text = JSON.stringify(data);
    if (lastRendered.get(key) === text) return false;
    lastRendered.set(key, text);
    return true;
  }

  function fillBody(tableId, rows, emptyText, columns) {
    const body = $(tableId).tBodies[0];
    if (rows.length === 0) {
      body.replaceChildren(h('tr', { className: 'empty' }, h('td', { colSpan: columns }, emptyText)));
    } else {
      body.replaceChildren(...rows);
    }
  }

  function facts(dlId, pairs) {
    $(dlId).replaceChildren(...pairs.flatMap(([term, value]) => [
      h('dt', {}, term), h('dd', {}, value instanceof Node ? value : dash(value)),
    ]));
  }

  // ---- Live sections ------------------------------------------------------

  function renderStatus(status, ready) {
    facts('node-status', [
      ['Name', status.name], ['Id', status.id], ['Role', status.role],
      ['Leader', status.leader], ['Term', status.term], ['Applied index', status.applied_index],
      ['Last log index', status.last_log_index], ['Snapshot index', status.snapshot_index],
      ['Purged index', status.purged_index], ['Cluster', status.cluster],
      ['Voters wanted', status.voters_target],
      ['State hash', h('span', { className: 'mono' }, dash(status.state_hash))],
    ]);
    const isReady = ready.status === 200;
    const r = ready.body || {};
    facts('node-health', [
      ['Ready', h('span', { className: isReady ? 'good' : 'bad' }, isReady ? 'ready' : 'not ready (HTTP ' + ready.status + ')')],
      ['Leader known', r.leader ? 'yes (' + r.leader + ')' : 'no'],
      ['Host registered', r.registered_host ? 'yes' : 'no'],
      ['Isolation rules in place', r.isolation_ready === false ? 'no' : 'yes'],
    ]);
    const members = [...(status.members || [])].sort((a, b) => a.name.localeCompare(b.name));
    fillBody('cluster-members', members.map((m) => h('tr', { 'data-name': m.name, className: m.name === status.name ? 'self' : '' },
      h('th', { scope: 'row' }, m.name, m.name === status.name ? h('span', { className: 'tag' }, 'this node') : null),
      h('td', {}, m.id), h('td', {}, m.address), h('td', {}, m.role),
      h('td', {}, m.name === status.leader ? h('span', { className: 'tag leader' }, 'leader') : ''))),
    'No members.', 5);
    $('summary').textContent = status.name + ' (' + status.role + ') in ' + (status.cluster || 'cluster') +
      ': ' + members.length + ' member' + (members.length === 1 ? '' : 's') +
      ', leader ' + (status.leader || 'unknown') + ', applied index ' + status.applied_index;
  }

  function renderLayout(layout) {
    $('layout-summary').textContent = 'Pod network ' + layout.cidr + ': ' + layout.host_bits + ' host bits, ' +
      layout.tenant_bits + ' tenant bits, ' + layout.segment_bits + ' segment bits, ' + layout.endpoint_bits +
      ' endpoint bits (' + layout.max_hosts + ' hosts, ' + layout.max_tenants + ' tenants, ' +
      layout.pods_per_block + ' pods per block).';
    $('layout-drawing').textContent = layout.drawing || '';
  }

  function renderHosts(hosts) {
    fillBody('hosts-table', hosts.map((x) => h('tr', { 'data-name': x.name },
      h('th', { scope: 'row' }, x.name), h('td', {}, x.host_number), h('td', {}, x.prefix),
      h('td', {}, x.underlay_ip), h('td', {}, x.address), h('td', { className: 'num' }, x.allocations))),
    'No hosts.', 6);
  }

  function renderTenants(tenants) {
    fillBody('tenants-table', tenants.map((t) => h('tr', { 'data-name': t.name },
      h('th', { scope: 'row' }, t.name), h('td', {}, t.number), h('td', { className: 'mono' }, t.match_mask),
      h('td', {}, (t.segments || []).length === 0 ? '—' : h('ul', { className: 'inline' },
        t.segments.map((s) => h('li', {}, h('strong', {}, s.name), ' #' + s.number + ': ' + s.allocations)))),
      h('td', { className: 'num' }, t.allocations))),
    'No tenants.', 5);
  }

  function podLabel(a) {
    if (a.pod_name) return a.pod_namespace ? a.pod_namespace + '/' + a.pod_name : a.pod_name;
    return null;
  }

  let allocations = [];
  function renderPods() {
    const filter = $('pods-filter').value.trim().toLowerCase();
    const rows = allocations.filter((a) => !filter ||
      [a.address, a.block, a.host, a.tenant, a.segment, podLabel(a), a.container_id, a.actor]
        .some((v) => v && String(v).toLowerCase().includes(filter)));
    fillBody('pods-table', rows.map((a) => {
      const pod = podLabel(a);
      return h('tr', { 'data-address': a.address },
        h('th', { scope: 'row' }, a.address), h('td', {}, a.block), h('td', {}, a.host),
        h('td', {}, a.tenant), h('td', {}, a.segment),
        h('td', {}, pod !== null ? pod
          : h('span', { className: 'mono', title: a.container_id }, (a.container_id || '').slice(0, 12) + ' ' + a.ifname)),
        h('td', {}, formatTime(a.allocated_at_ms)), h('td', {}, a.actor));
    }), filter ? 'No allocation matches.' : 'No allocations.', 8);
    $('pods-count').textContent = rows.length + ' of ' + allocations.length;
  }

  // ---- Policies, told in words -------------------------------------------

  const cidr = (c) => (c && typeof c === 'object' && 'address' in c ? c.address + '/' + c.prefix_len : JSON.stringify(c));
  const withExcept = (c, except) => cidr(c) + ((except || []).length ? ' except ' + except.map(cidr).join(', ') : '');

  function tenantSegment(p) {
    return 'tenant ' + p.tenant + (p.segment ? ', segment ' + p.segment : '');
  }

  function describeTarget(t) {
    if (t && t.pods) return 'pods of ' + tenantSegment(t.pods);
    if (t && t.cidr) return cidr(t.cidr);
    return JSON.stringify(t);
  }

  function describePeer(p) {
    if (p === 'any') return 'anyone';
    if (p === 'host') return 'the cluster’s hosts';
    if (p && p.pods) return 'pods of ' + tenantSegment(p.pods);
    if (p && p.cidr) return withExcept(p.cidr.cidr, p.cidr.except);
    return JSON.stringify(p);
  }

  function describeRule(r) {
    const parts = [];
    const ports = (r.ports || []).map(String).concat((r.port_ranges || []).map((x) => x[0] + '–' + x[1]));
    if (ports.length) parts.push('port' + (ports.length > 1 ? 's ' : ' ') + ports.join(', '));
    if (r.icmp_type !== null && r.icmp_type !== undefined) {
      parts.push('type ' + r.icmp_type + (r.icmp_code !== null && r.icmp_code !== undefined ? ' code ' + r.icmp_code : ''));
    }
    const protocol = r.protocol === 'any' ? 'any protocol' : String(r.protocol).toUpperCase();
    return protocol + (parts.length ? ' ' + parts.join(', ') : (r.protocol === 'any' ? '' : ', every port'));
  }

  function describeSelector(s) {
    if (!s) return null;
    const items = Object.entries(s.match_labels || {}).map(([k, v]) => k + '=' + v);
    for (const e of s.match_expressions || []) {
      const values = (e.values || []).join(',');
      items.push({ In: e.key + ' in (' + values + ')', NotIn: e.key + ' notin (' + values + ')',
        Exists: e.key, DoesNotExist: '!' + e.key }[e.operator] || JSON.stringify(e));
    }
    return items.length ? '{' + items.join(', ') + '}' : 'all';
  }

  function describeNpPeer(p) {
    if (p && p.ip_block) return withExcept(p.ip_block.cidr, p.ip_block.except);
    if (p && p.pods) {
      const pods = p.pods.pods ? describeSelector(p.pods.pods) : 'all';
      const namespaces = p.pods.namespaces ? 'namespaces ' + describeSelector(p.pods.namespaces) : 'this namespace';
      return (pods === 'all' ? 'every pod' : 'pods ' + pods) + ' in ' + namespaces;
    }
    return JSON.stringify(p);
  }

  function describeNpPort(p) {
    const protocol = String(p.protocol || 'tcp').toUpperCase();
    if (!p.port) return protocol + ' every port';
    const port = p.port.number !== undefined ? String(p.port.number) : (p.port.name !== undefined ? 'named port ' + p.port.name : JSON.stringify(p.port));
    return protocol + ' ' + port + (p.end_port ? '–' + p.end_port : '');
  }

  function npDirection(word, peerWord, rules) {
    if (rules === null || rules === undefined) return null;
    if (rules.length === 0) return h('li', {}, h('strong', {}, word + ': '), 'nothing (denies all)');
    return h('li', {}, h('strong', {}, word + ': '), h('ul', {}, rules.map((r) => h('li', {},
      peerWord + ' ' + (r.peers.length ? r.peers.map(describeNpPeer).join('; ') : 'anyone') +
      ' on ' + (r.ports.length ? r.ports.map(describeNpPort).join(', ') : 'every port and protocol')))));
  }

  // What a policy opens, as a list; null for a shape this page does not know.
  function describePolicy(p) {
    try {
      if (p && Array.isArray(p.applied_to) && Array.isArray(p.peers) && Array.isArray(p.rules)) {
        const towards = p.direction === 'egress' ? 'to' : 'from';
        return h('ul', { className: 'policy-summary' },
          p.description ? h('li', {}, p.description) : null,
          h('li', {}, h('strong', {}, (p.direction || '') + ' '), 'for ' + p.applied_to.map(describeTarget).join('; ')),
          h('li', {}, 'opens ' + towards + ' ' + (p.peers.length ? p.peers.map(describePeer).join('; ') : 'nobody')),
          h('li', {}, 'on ' + (p.rules.length ? p.rules.map(describeRule).join('; ') : 'nothing')),
          p.isolates ? h('li', {}, 'isolates the selected pods (only what a policy allows reaches them)') : null,
          p.format ? h('li', { className: 'muted' }, 'format: ' + p.format) : null);
      }
      if (p && p.pod_selector && ('ingress' in p || 'egress' in p)) {
        const selected = describeSelector(p.pod_selector);
        return h('ul', { className: 'policy-summary' },
          h('li', {}, 'Kubernetes NetworkPolicy for ' + (selected === 'all' ? 'every pod' : 'pods ' + selected) +
            ' of namespace ' + p.namespace),
          npDirection('ingress', 'from', p.ingress), npDirection('egress', 'to', p.egress));
      }
    } catch (_) { /* an unexpected shape: the JSON below says it all */ }
    return null;
  }

  function renderPolicies(policies) {
    const list = $('policies-list');
    if (policies.length === 0) {
      list.replaceChildren(h('p', { className: 'muted' }, 'No policies.'));
      return;
    }
    list.replaceChildren(...policies.map((v) => {
      const summary = describePolicy(v.policy);
      return h('article', { className: 'policy', 'data-name': v.name },
        h('h3', {}, v.name),
        h('p', { className: 'muted' }, 'applied ' + formatTime(v.applied_at_ms) + ' (index ' + v.applied_index + ') by ' + dash(v.actor)),
        summary || h('p', {}, 'A policy shape this page does not describe; see its JSON.'),
        h('details', { open: !summary }, h('summary', {}, 'JSON'), h('pre', {}, JSON.stringify(v.policy, null, 2))));
    }));
  }

  // ---- Refresh loop -------------------------------------------------------

  const sections = [
    ['status', async () => {
      const [status, ready] = await Promise.all([getJson('/v1/status'), getJson('/v1/ready', [503])]);
      if (changed('status', [status.body, ready])) renderStatus(status.body, ready);
    }],
    ['layout', async () => { const r = await getJson('/v1/layout'); if (changed('layout', r.body)) renderLayout(r.body); }],
    ['hosts', async () => { const r = await getJson('/v1/hosts'); if (changed('hosts', r.body)) renderHosts(r.body); }],
    ['tenants', async () => { const r = await getJson('/v1/tenants'); if (changed('tenants', r.body)) renderTenants(r.body); }],
    ['allocations', async () => {
      const r = await getJson('/v1/ipam/allocations');
      if (changed('allocations', r.body)) { allocations = r.body; renderPods(); }
    }],
    ['policies', async () => { const r = await getJson('/v1/policies'); if (changed('policies', r.body)) renderPolicies(r.body); }],
    ['timeline', () => loadTimeline()],
  ];

  let refreshing = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      await Promise.all(sections.map(async ([name, load]) => {
        try { await load(); setError(name, null); } catch (e) { setError(name, e); }
      }));
      $('refreshed-at').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.loaded = 'true';
    } finally {
      refreshing = false;
    }
  }

  // ---- Explain ------------------------------------------------------------

  async function explain(event) {
    event.preventDefault();
    const form = $('explain-form');
    const params = new URLSearchParams({ src: form.src.value.trim(), dst: form.dst.value.trim(), protocol: form.protocol.value });
    if (form.port.value.trim() !== '') params.set('port', form.port.value.trim());
    const result = $('explain-result');
    const errorBox = $('explain-error');
    $('explain-submit').disabled = true;
    result.setAttribute('aria-busy', 'true');
    $('explain-verdict').textContent = '';
    try {
      const { body: v } = await getJson('/v1/explain?' + params);
      errorBox.hidden = true;
      const verdict = $('explain-verdict');
      verdict.textContent = v.verdict;
      verdict.className = 'verdict ' + (v.verdict === 'allowed' || v.verdict === 'allow' ? 'good' : v.verdict === 'not-romana' ? 'muted' : 'bad');
      $('explain-decided-by').textContent = dash(v.decided_by);
      $('explain-source-pod').textContent = dash(v.source_pod);
      $('explain-destination-pod').textContent = dash(v.destination_pod);
      $('explain-egress').textContent = dash(v.egress);
      const names = v.policies || [];
      $('explain-policies').replaceChildren(...(names.length ? names.map((n) => h('li', {}, n)) : [h('li', { className: 'muted' }, 'none')]));
      $('explain-facts').hidden = false;
    } catch (e) {
      $('explain-facts').hidden = true;
      errorBox.textContent = e.message + (e.status ? ' (HTTP ' + e.status + (e.code ? ', ' + e.code : '') + ')' : '');
      errorBox.hidden = false;
    } finally {
      $('explain-submit').disabled = false;
      result.removeAttribute('aria-busy');
      result.dataset.answers = String(Number(result.dataset.answers || 0) + 1);
    }
  }

  // ---- Timeline -----------------------------------------------------------

  let timeline = [];          // entries, oldest first
  let bySequence = new Map();
  let stateRequest = 0;       // the latest state request; older answers are dropped
  let debounceTimer = null;

  const slider = () => $('timeline-slider');
  const atLatest = () => timeline.length > 0 && Number(slider().value) >= timeline[timeline.length - 1].sequence;

  async function loadTimeline() {
    const { body } = await getJson('/v1/history/timeline');
    if (!changed('timeline', body.length ? [body.length, body[body.length - 1].sequence, body[0].sequence] : [])) return;
    const followLatest = timeline.length === 0 || atLatest();
    timeline = body;
    bySequence = new Map(body.map((e) => [e.sequence, e]));
    const s = slider();
    $('timeline-empty').hidden = body.length > 0;
    s.disabled = body.length === 0;
    if (body.length === 0) return;
    s.min = String(body[0].sequence);
    s.max = String(body[body.length - 1].sequence);
    if (followLatest) s.value = s.max;
    showSelected();
    loadState(Number(s.value));
  }

  // The entry at or before the slider's position (sequences may have gaps).
  function selectedEntry() {
    const wanted = Number(slider().value);
    if (bySequence.has(wanted)) return bySequence.get(wanted);
    let best = timeline[0];
    for (const e of timeline) { if (e.sequence <= wanted) best = e; else break; }
    return best;
  }

  function showSelected() {
    const e = selectedEntry();
    if (!e) return;
    const s = slider();
    s.setAttribute('aria-valuetext', 'record ' + e.sequence + ', ' + e.time + ', ' + e.kind);
    $('timeline-sequence').textContent = e.sequence + ' of ' + timeline[timeline.length - 1].sequence + ' (log index ' + e.index + ')';
    $('timeline-time').textContent = e.time;
    $('timeline-actor').textContent = dash(e.actor);
    $('timeline-request').textContent = e.kind + ': ' + e.request;
    $('timeline-outcome').textContent = dash(e.outcome);
  }

  async function loadState(sequence) {
    const request = ++stateRequest;
    const box = $('timeline-state');
    box.setAttribute('aria-busy', 'true');
    try {
      const { body } = await getJson('/v1/history/state?sequence=' + encodeURIComponent(sequence));
      if (request !== stateRequest) return;
      renderState(body);
      $('timeline-error').hidden = true;
      setError('history state', null);
    } catch (e) {
      if (request !== stateRequest) return;
      $('timeline-error').textContent = 'Record ' + sequence + ': ' + e.message;
      $('timeline-error').hidden = false;
    } finally {
      if (request === stateRequest) {
        box.removeAttribute('aria-busy');
        box.dataset.sequence = String(sequence);
      }
    }
  }

  function renderState(st) {
    $('timeline-hash').textContent = dash(st.state_hash);
    const hosts = Object.entries(st.hosts || {});
    fillBody('timeline-hosts', hosts.map(([name, x]) => h('tr', { 'data-name': name },
      h('th', { scope: 'row' }, name), h('td', {}, dash(x.host_number)), h('td', {}, dash(x.underlay_ip)))), 'No hosts.', 3);
    const tenants = Object.entries(st.tenants || {});
    fillBody('timeline-tenants', tenants.map(([name, t]) => h('tr', { 'data-name': name },
      h('th', { scope: 'row' }, name), h('td', {}, dash(t.number)),
      h('td', {}, (t.segments || []).length ? t.segments.join(', ') : '—'))), 'No tenants.', 3);
    const pods = Object.entries(st.allocations || {});
    fillBody('timeline-pods', pods.map(([address, a]) => h('tr', { 'data-address': address },
      h('th', { scope: 'row' }, address), h('td', {}, dash(a.host)), h('td', {}, dash(a.tenant)), h('td', {}, dash(a.segment)),
      h('td', {}, a.pod ? (a.namespace ? a.namespace + '/' + a.pod : a.pod) : '—'),
      h('td', { className: 'mono' }, dash(a.owner)))), 'No allocations.', 6);
    const policies = st.policies || [];
    $('timeline-policies').replaceChildren(...(policies.length
      ? policies.map((n) => h('li', { 'data-name': n }, n)) : [h('li', { className: 'muted' }, 'No policies.')]));
  }

  function onSlide() {
    showSelected();
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      const e = selectedEntry();
      if (e) loadState(e.sequence);
    }, DEBOUNCE_MS);
  }

  // ---- Start --------------------------------------------------------------

  let timer = null;
  function schedule() {
    clearInterval(timer);
    timer = $('auto-refresh').checked
      ? setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS) : null;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('refresh-button').addEventListener('click', refresh);
    $('auto-refresh').addEventListener('change', schedule);
    $('pods-filter').addEventListener('input', renderPods);
    $('explain-form').addEventListener('submit', explain);
    slider().addEventListener('input', onSlide);
    slider().addEventListener('change', onSlide);
    $('timeline-latest').addEventListener('click', () => {
      if (!timeline.length) return;
      slider().value = slider().max;
      onSlide();
    });
    refresh();
    schedule();
  });
}());

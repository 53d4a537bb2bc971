#!/usr/bin/env node
// Headless-Chromium test of the node's web view.
//
//   NODE_PATH=/var/cache/romana/ui-test/node_modules node ui-test.cjs EXPECTATIONS.json
//
// EXPECTATIONS.json: {url, screenshots, hosts, tenants, pods: [{address, pod}],
// explain: [{src, dst, protocol, port, verdict, decided_by}], deleted_tenant,
// deleted_tenant_sequence}. Prints one `ok: ...` or `FAIL: ...` line per
// check; exits 0 only if every check passed.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const TIMEOUT_MS = 15000;

const results = [];
function ok(what) { results.push(true); console.log('ok: ' + what); }
function fail(what, why) { results.push(false); console.log('FAIL: ' + what + (why ? ' (' + why + ')' : '')); }

// Runs a check that throws on failure; a failure does not stop the others.
async function check(what, fn) {
  try {
    await fn();
    ok(what);
  } catch (e) {
    fail(what, String(e && e.message ? e.message : e).split('\n')[0]);
  }
}

// Waits until `predicate(arg)`, evaluated in the page, is true.
async function waitInPage(page, predicate, arg, timeout = TIMEOUT_MS) {
  await page.waitForFunction(predicate, arg, { timeout, polling: 100 });
}

// The names of a table's body rows (data-name, else the first cell).
async function rowNames(page, selector) {
  return page.evaluate((s) => Array.from(document.querySelectorAll(s + ' tbody tr:not(.empty)'))
    .map((row) => row.dataset.name || (row.cells[0] ? row.cells[0].textContent.trim() : '')), selector);
}

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node ui-test.cjs EXPECTATIONS.json');
    process.exit(2);
  }
  const want = JSON.parse(fs.readFileSync(file, 'utf8'));
  const shots = want.screenshots || '.';
  fs.mkdirSync(shots, { recursive: true });

  const problems = []; // console errors, page errors, failed requests
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push('console error: ' + msg.text() + locationOf(msg));
    });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('requestfailed', (r) => problems.push('request failed: ' + r.method() + ' ' + r.url() + ': ' + (r.failure() ? r.failure().errorText : '?')));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push('HTTP ' + r.status() + ': ' + r.request().method() + ' ' + r.url());
    });

    await check('page loads (' + want.url.replace(/token=[^&]*/, 'token=…') + ')', async () => {
      const response = await page.goto(want.url, { waitUntil: 'load', timeout: TIMEOUT_MS });
      if (!response || response.status() >= 400) throw new Error('status ' + (response && response.status()));
      await waitInPage(page, () => document.body.dataset.loaded === 'true');
    });

    await check('error banner hidden when the API is healthy', async () => {
      const hidden = await page.$eval('#error-banner', (el) => el.hidden);
      if (!hidden) throw new Error(await page.$eval('#error-banner', (el) => el.textContent.trim()));
    });

    await check('cluster members listed', async () => {
      await waitInPage(page, () => document.querySelectorAll('#cluster-members tbody tr:not(.empty)').length > 0);
    });
    for (const host of want.hosts || []) {
      await check('host ' + host + ' in #hosts-table', () => waitInPage(page,
        ([sel, name]) => Array.from(document.querySelectorAll(sel + ' tbody tr')).some((r) => r.dataset.name === name),
        ['#hosts-table', host]));
    }
    for (const tenant of want.tenants || []) {
      await check('tenant ' + tenant + ' in #tenants-table', () => waitInPage(page,
        ([sel, name]) => Array.from(document.querySelectorAll(sel + ' tbody tr')).some((r) => r.dataset.name === name),
        ['#tenants-table', tenant]));
    }
    for (const pod of want.pods || []) {
      const what = 'pod ' + pod.address + (pod.pod ? ' (' + pod.pod + ')' : '') + ' in #pods-table';
      await check(what, () => waitInPage(page, ({ address, name }) =>
        Array.from(document.querySelectorAll('#pods-table tbody tr')).some((r) => {
          const cells = Array.from(r.cells).map((c) => c.textContent.trim());
          return cells[0] === address && (!name || cells.includes(name));
        }), { address: pod.address, name: pod.pod || null }));
    }
    if (want.deleted_tenant) {
      await check('deleted tenant ' + want.deleted_tenant + ' not in #tenants-table', async () => {
        const names = await rowNames(page, '#tenants-table');
        if (names.length === 0 && (want.tenants || []).length) throw new Error('the tenants did not load');
        if (names.includes(want.deleted_tenant)) throw new Error('listed: ' + names.join(', '));
      });
    }
    await check('policies section rendered', () => waitInPage(page,
      () => document.querySelector('#policies-list').children.length > 0));
    await page.screenshot({ path: path.join(shots, 'overview.png'), fullPage: true });

    for (const c of want.explain || []) {
      const what = 'explain ' + c.src + ' -> ' + c.dst + ' ' + (c.protocol || 'any') + (c.port !== undefined && c.port !== null ? '/' + c.port : '');
      await check(what + ' = ' + c.verdict + (c.decided_by ? ' by ' + c.decided_by : ''), async () => {
        const before = await page.$eval('#explain-result', (el) => Number(el.dataset.answers || 0));
        await page.fill('#explain-src', String(c.src));
        await page.fill('#explain-dst', String(c.dst));
        await page.selectOption('#explain-protocol', c.protocol || 'any');
        await page.fill('#explain-port', c.port === undefined || c.port === null ? '' : String(c.port));
        await page.click('#explain-submit');
        await waitInPage(page, (n) => Number(document.querySelector('#explain-result').dataset.answers || 0) > n, before);
        const error = await page.$eval('#explain-error', (el) => (el.hidden ? '' : el.textContent.trim()));
        if (error) throw new Error('the page shows an error: ' + error);
        const verdict = (await page.textContent('#explain-verdict')).trim();
        if (verdict !== c.verdict) throw new Error('verdict ' + JSON.stringify(verdict));
        if (c.decided_by) {
          const by = (await page.textContent('#explain-decided-by')).trim();
          if (by !== c.decided_by) throw new Error('decided by ' + JSON.stringify(by));
        }
      });
    }
    await page.screenshot({ path: path.join(shots, 'explain.png'), fullPage: true });

    // The timeline: the state at a record, then at the latest.
    const moveSlider = async (sequence) => {
      await page.$eval('#timeline-slider', (el, value) => {
        el.value = String(value);
        el.dispatchEvent(new Event('input', { bubbles: true }));
        el.dispatchEvent(new Event('change', { bubbles: true }));
      }, sequence);
      await waitInPage(page, (s) => {
        const box = document.querySelector('#timeline-state');
        return box.dataset.sequence === String(s) && !box.hasAttribute('aria-busy');
      }, sequence);
      const error = await page.$eval('#timeline-error', (el) => (el.hidden ? '' : el.textContent.trim()));
      if (error) throw new Error('the page shows an error: ' + error);
    };
    let timelineReady = false;
    await check('timeline slider loaded', async () => {
      await waitInPage(page, (seq) => {
        const s = document.querySelector('#timeline-slider');
        return !s.disabled && (seq === null || Number(s.max) >= seq);
      }, want.deleted_tenant_sequence === undefined ? null : want.deleted_tenant_sequence);
      timelineReady = true;
    });
    if (want.deleted_tenant && want.deleted_tenant_sequence !== undefined) {
      const seq = want.deleted_tenant_sequence;
      await check('timeline at record ' + seq + ' lists ' + want.deleted_tenant + ' in #timeline-tenants', async () => {
        if (!timelineReady) throw new Error('no timeline');
        await moveSlider(seq);
        const names = await rowNames(page, '#timeline-tenants');
        if (!names.includes(want.deleted_tenant)) throw new Error('listed: ' + (names.join(', ') || 'none'));
        const time = (await page.textContent('#timeline-time')).trim();
        if (!time) throw new Error('#timeline-time is empty');
      });
    }
    await page.screenshot({ path: path.join(shots, 'timeline-earlier.png'), fullPage: true });
    if (want.deleted_tenant) {
      await check('timeline at the latest record does not list ' + want.deleted_tenant, async () => {
        if (!timelineReady) throw new Error('no timeline');
        const latest = await page.$eval('#timeline-slider', (el) => Number(el.max));
        await moveSlider(latest);
        const names = await rowNames(page, '#timeline-tenants');
        if (names.includes(want.deleted_tenant)) throw new Error('listed: ' + names.join(', '));
        for (const t of want.tenants || []) {
          if (!names.includes(t)) throw new Error('tenant ' + t + ' missing at the latest record');
        }
      });
    }
    await page.screenshot({ path: path.join(shots, 'timeline-latest.png'), fullPage: true });

    const seen = problems.slice();
    if (seen.length === 0) ok('no console errors, page errors or failed requests');
    else fail('no console errors, page errors or failed requests', seen.length + ' found');
    for (const p of seen) console.log('  ' + p);
  } catch (e) {
    fail('test run', e && e.stack ? e.stack : String(e));
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  const failed = results.filter((r) => !r).length;
  console.log(failed === 0 ? 'all ' + results.length + ' checks passed' : failed + ' of ' + results.length + ' checks failed');
  process.exit(failed === 0 ? 0 : 1);
}

function locationOf(msg) {
  const l = msg.location();
  return l && l.url ? ' at ' + l.url + ':' + l.lineNumber : '';
}

main();

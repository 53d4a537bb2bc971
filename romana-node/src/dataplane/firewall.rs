//! Tenant isolation and network policies, enforced with iptables, derived
//! from the projection by the policy compiler ([`crate::policy::compiler`]).
//!
//! Because tenant bits sit at fixed positions in every pod address, "all
//! pods of tenant t, on every host" is one (non-contiguous) mask match, e.g.
//! `10.0.16.0/255.0.240.0`; the pods a NetworkPolicy selects are an ipset
//! ([`super::ipsets`]). The rule set therefore grows with tenants and
//! policies, never with pods:
//!
//! ```text
//! FORWARD (policy DROP)           -j ROMANA-FORWARD          first rule
//!                                 ... other software's rules ...
//!                                 -j ACCEPT                  last rule ("romana: tail")
//! ROMANA-FORWARD  ctstate RELATED,ESTABLISHED   -j ACCEPT          replies
//!                 ! -s CIDR ! -d CIDR           -j RETURN          not pod traffic
//!                 -s HOST-PREFIX                -j ROMANA-EGRESS   this host's pods send
//!                 -d HOST-PREFIX                -j ROMANA-INGRESS  this host's pods receive
//!                                               -j ACCEPT          the destination's host decides
//! ROMANA-EGRESS   policy allow rules            -j RETURN
//!                 -m set --match-set POD-SET src -j DROP           isolated for egress
//! ROMANA-INGRESS  policy allow rules            -j ACCEPT
//!                 -m set --match-set POD-SET dst -j DROP           isolated for ingress
//!                 -s T/MASK -d T/MASK           -j ACCEPT          within a tenant
//!                 -s CIDR -d CIDR               -j DROP            between tenants
//!                                               -j ACCEPT          pods <-> outside
//! ```
//!
//! Fail closed: the chain policy of FORWARD is DROP and the tail ACCEPT
//! keeps the host forwarding other traffic as before. If someone flushes the
//! filter table, FORWARD is empty with policy DROP: everything forwarded
//! stops until the next reconcile puts the rules back, but tenants never see
//! each other. Every change is one `iptables-restore --noflush` transaction
//! (with `-w`), so a restart re-applying the rules opens no window either.
//! Only the project's own chains (`ROMANA-*`), its jumps and its tail rule
//! are written; kube-proxy's or portmap's chains are never touched.

use std::process::Command;

use std::collections::BTreeMap;

use raft_store::entry::policy::Protocol;
use raft_store::state::ClusterState;

use crate::policy::compiler::{compile, Compiled, MatchRule, Scope, SetMatch, Sets, Verdict};

/// The project's chain in the filter table.
pub const CHAIN: &str = "ROMANA-FORWARD";
/// The egress stage (this host's pods as sources).
pub const EGRESS_CHAIN: &str = "ROMANA-EGRESS";
/// The ingress stage (this host's pods as destinations).
pub const INGRESS_CHAIN: &str = "ROMANA-INGRESS";
/// Prefix of the helper chains of rules with exceptions (`ipBlock.except`).
pub const EXCEPT_CHAIN_PREFIX: &str = "ROMANA-X-";
/// The chain jumped from OUTPUT when the host may not reach its pods.
pub const OUTPUT_CHAIN: &str = "ROMANA-OUTPUT";
/// Every chain of the project starts with this.
const CHAIN_PREFIX: &str = "ROMANA-";
/// Comment of the tail rule of FORWARD.
const TAIL_COMMENT: &str = "romana: tail";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FirewallError(String);

/// The project's chains and their rules, as `iptables -S` prints them.
pub type Chains = BTreeMap<String, Vec<String>>;

fn set_match(set: &SetMatch, side: &str) -> String {
    let flags = if set.with_port {
        format!("{side},dst")
    } else {
        side.to_string()
    };
    format!(" -m set --match-set {} {flags}", set.name)
}

/// The matches of a rule, in the order `iptables -S` prints them.
fn render_matches(rule: &MatchRule) -> String {
    let mut text = String::new();
    if let Some(source) = &rule.source {
        text.push_str(&format!(" -s {}", source.render()));
    }
    if let Some(destination) = &rule.destination {
        text.push_str(&format!(" -d {}", destination.render()));
    }
    let protocol = match rule.protocol {
        Protocol::Any => None,
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp => Some("icmp"),
        Protocol::Sctp => Some("sctp"),
    };
    if let Some(protocol) = protocol {
        text.push_str(&format!(" -p {protocol}"));
    }
    if let Some(set) = &rule.source_set {
        text.push_str(&set_match(set, "src"));
    }
    if let Some(set) = &rule.destination_set {
        text.push_str(&set_match(set, "dst"));
    }
    if let Some(protocol) = protocol {
        let item = |(start, end): &(u16, u16)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}:{end}")
            }
        };
        match rule.ports.as_slice() {
            [] => {}
            // SCTP ports go through multiport, which parses SCTP itself: no
            // `sctp` match module is needed.
            [single] if rule.protocol != Protocol::Sctp => {
                text.push_str(&format!(" -m {protocol} --dport {}", item(single)))
            }
            many => text.push_str(&format!(
                " -m multiport --dports {}",
                many.iter().map(item).collect::<Vec<_>>().join(",")
            )),
        }
        if let Some((icmp_type, code)) = rule.icmp {
            match code {
                Some(code) => text.push_str(&format!(" -m icmp --icmp-type {icmp_type}/{code}")),
                None => text.push_str(&format!(" -m icmp --icmp-type {icmp_type}")),
            }
        }
    }
    text
}

/// A comment iptables keeps as given: no quotes or backslashes, at most 200
/// bytes, and with a space (so `iptables -S` prints it quoted, as rendered).
fn comment(origin: &str) -> String {
    let mut text: String = origin
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    if !text.contains(' ') {
        text.push_str(" rule");
    }
    format!(" -m comment --comment \"{text}\"")
}

fn target(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Accept => "ACCEPT",
        Verdict::Drop => "DROP",
        Verdict::Return => "RETURN",
    }
}

/// Renders `rules` into `chain`, with helper chains for exceptions.
fn render_stage(chain: &str, rules: &[MatchRule], chains: &mut Chains, helpers: &mut usize) {
    let mut lines = Vec::new();
    for rule in rules {
        let matches = render_matches(rule);
        let comment = match rule.origin.as_str() {
            crate::policy::compiler::OUTSIDE_ORIGIN => String::new(),
            origin => comment(origin),
        };
        let verdict = target(rule.verdict);
        if rule.source_except.is_empty() && rule.destination_except.is_empty() {
            lines.push(format!("-A {chain}{matches}{comment} -j {verdict}"));
            continue;
        }
        *helpers += 1;
        let helper = format!("{EXCEPT_CHAIN_PREFIX}{helpers}");
        lines.push(format!("-A {chain}{matches}{comment} -j {helper}"));
        let mut helper_lines: Vec<String> = rule
            .source_except
            .iter()
            .map(|e| format!("-A {helper} -s {} -j RETURN", e.render()))
            .collect();
        helper_lines.extend(
            rule.destination_except
                .iter()
                .map(|e| format!("-A {helper} -d {} -j RETURN", e.render())),
        );
        // An excepted address returns to the stage's next rule; the rest
        // gets the rule's verdict.
        helper_lines.push(format!("-A {helper} -j {}", helper_verdict(rule.verdict)));
        chains.insert(helper, helper_lines);
    }
    chains.insert(chain.to_string(), lines);
}

/// In a helper chain, RETURN would only go back to the stage chain: an
/// egress allow (RETURN from the stage) becomes a jump to the mark that
/// ends the stage.
fn helper_verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Return => EGRESS_ALLOWED_CHAIN,
        other => target(other),
    }
}

/// Where an egress allow with exceptions goes: on to the ingress stage if
/// the destination is this host's, else accepted (the destination's host
/// decides), exactly as returning from the egress stage would.
pub const EGRESS_ALLOWED_CHAIN: &str = "ROMANA-EGRESS-OK";

/// The project's chains for compiled rules.
pub fn render(compiled: &Compiled) -> Chains {
    let mut chains = Chains::new();
    let mut helpers = 0;
    let cidr = compiled.cidr.render();
    // The stages run for this host's pods (every pod before the host has a
    // number).
    let local = compiled.local.unwrap_or(compiled.cidr).render();
    let main = vec![
        format!("-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        format!("-A {CHAIN} ! -s {cidr} ! -d {cidr} -j RETURN"),
        format!("-A {CHAIN} -s {local} -j {EGRESS_CHAIN}"),
        format!("-A {CHAIN} -d {local} -j {INGRESS_CHAIN}"),
        format!("-A {CHAIN} -j ACCEPT"),
    ];
    chains.insert(CHAIN.to_string(), main);
    render_stage(EGRESS_CHAIN, &compiled.egress, &mut chains, &mut helpers);
    render_stage(INGRESS_CHAIN, &compiled.ingress, &mut chains, &mut helpers);
    if chains.keys().any(|c| c.starts_with(EXCEPT_CHAIN_PREFIX)) {
        chains.insert(
            EGRESS_ALLOWED_CHAIN.to_string(),
            vec![
                format!("-A {EGRESS_ALLOWED_CHAIN} -d {local} -j {INGRESS_CHAIN}"),
                format!("-A {EGRESS_ALLOWED_CHAIN} -j ACCEPT"),
            ],
        );
    }
    chains
}

/// What this host's firewall should hold: its chains and its sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub chains: Chains,
    pub sets: Sets,
}

/// The project's chains and sets for host number `host` (`None`: not
/// registered yet, every pod checked); `None` before the layout is known.
/// With `allow_host_to_pods` off, [`OUTPUT_CHAIN`] refuses new connections
/// from this host to pods (replies to pods' own connections still pass).
pub fn desired(
    state: &ClusterState,
    host: Option<u32>,
    allow_host_to_pods: bool,
) -> Option<Desired> {
    let scope = host.map_or(Scope::Cluster, Scope::Host);
    let compiled = compile(state, scope)?;
    let mut chains = render(&compiled);
    if !allow_host_to_pods {
        let cidr = state.layout()?.cidr();
        chains.insert(
            OUTPUT_CHAIN.to_string(),
            vec![
                format!("-A {OUTPUT_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                format!("-A {OUTPUT_CHAIN} -d {cidr} -m comment --comment \"romana: host to pods refused\" -j DROP"),
            ],
        );
    }
    Some(Desired {
        chains,
        sets: compiled.sets,
    })
}

/// Every rule of the project's chains, chain by chain (tests, docs).
pub fn desired_rules(state: &ClusterState) -> Option<Vec<String>> {
    desired(state, None, true).map(|d| d.chains.into_values().flatten().collect())
}

/// What the kernel has.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub chains: Chains,
    pub has_jump: bool,
    /// `-A OUTPUT -j ROMANA-OUTPUT` is there.
    pub has_output_jump: bool,
    pub has_tail: bool,
    pub policy_drop: bool,
}

fn iptables(args: &[&str]) -> Result<String, FirewallError> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| FirewallError(format!("run iptables: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        Err(FirewallError(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

pub fn observe() -> Result<Observed, FirewallError> {
    Ok(parse_observed(&iptables(&["-S"])?))
}

/// Reads `iptables -S` output: the project's chains and jumps.
pub fn parse_observed(all: &str) -> Observed {
    let mut chains = Chains::new();
    for line in all.lines() {
        if let Some(chain) = line.strip_prefix("-N ") {
            if chain.starts_with(CHAIN_PREFIX) {
                chains.entry(chain.to_string()).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or_default();
            if let Some(rules) = chains.get_mut(chain) {
                rules.push(line.to_string());
            }
        }
    }
    Observed {
        chains,
        has_jump: all.lines().any(|l| l == format!("-A FORWARD -j {CHAIN}")),
        has_output_jump: all
            .lines()
            .any(|l| l == format!("-A OUTPUT -j {OUTPUT_CHAIN}")),
        has_tail: all
            .lines()
            .any(|l| l == format!("-A FORWARD -m comment --comment \"{TAIL_COMMENT}\" -j ACCEPT")),
        policy_drop: all.lines().any(|l| l == "-P FORWARD DROP"),
    }
}

/// The `iptables-restore --noflush` input turning `observed` into
/// `desired`; `None` if nothing differs. One transaction: chains declared
/// and refilled, stale helper chains flushed and deleted after the main
/// chain no longer jumps to them.
pub fn restore_input(desired: &Chains, observed: &Observed) -> Option<String> {
    let want_output_jump = desired.contains_key(OUTPUT_CHAIN);
    if observed.chains == *desired
        && observed.has_jump
        && observed.has_tail
        && observed.policy_drop
        && observed.has_output_jump == want_output_jump
    {
        return None;
    }
    let mut input = String::from("*filter\n:FORWARD DROP [0:0]\n");
    for chain in desired.keys() {
        input.push_str(&format!(":{chain} - [0:0]\n-F {chain}\n"));
    }
    let stale: Vec<&String> = observed
        .chains
        .keys()
        .filter(|c| !desired.contains_key(*c))
        .collect();
    for chain in &stale {
        input.push_str(&format!("-F {chain}\n"));
    }
    // Helper chains first, so the main chain's jumps find them filled.
    for rules in desired
        .iter()
        .filter(|(c, _)| c.as_str() != CHAIN)
        .map(|(_, rules)| rules)
    {
        for rule in rules {
            input.push_str(rule);
            input.push('\n');
        }
    }
    for rule in desired.get(CHAIN).into_iter().flatten() {
        input.push_str(rule);
        input.push('\n');
    }
    if observed.has_output_jump && !want_output_jump {
        input.push_str(&format!("-D OUTPUT -j {OUTPUT_CHAIN}\n"));
    }
    for chain in &stale {
        input.push_str(&format!("-X {chain}\n"));
    }
    if want_output_jump && !observed.has_output_jump {
        input.push_str(&format!("-I OUTPUT 1 -j {OUTPUT_CHAIN}\n"));
    }
    if !observed.has_jump {
        input.push_str(&format!("-I FORWARD 1 -j {CHAIN}\n"));
    }
    if !observed.has_tail {
        input.push_str(&format!(
            "-A FORWARD -m comment --comment \"{TAIL_COMMENT}\" -j ACCEPT\n"
        ));
    }
    input.push_str("COMMIT\n");
    Some(input)
}

fn restore(input: &str) -> Result<(), FirewallError> {
    super::run_with_input("iptables-restore", &["-w", "--noflush"], input, "the rules")
        .map_err(FirewallError)
}

/// One pass: observe, and apply the difference as one transaction. Returns
/// whether anything was changed. Blocking.
pub fn reconcile(desired: &Chains) -> Result<bool, FirewallError> {
    let observed = observe()?;
    match restore_input(desired, &observed) {
        Some(input) => restore(&input).map(|()| true),
        None => Ok(false),
    }
}

/// Removes everything the firewall installed: the jump, the tail rule, the
/// chain; puts FORWARD's policy back to ACCEPT (only if any of ours was
/// there). Gone already is fine.
pub fn cleanup() -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(observed) = observe() else {
        return vec!["cannot read the filter table".into()];
    };
    let chain_exists = !observed.chains.is_empty();
    if !(observed.has_jump || observed.has_output_jump || observed.has_tail || chain_exists) {
        // Nothing of ours: leave FORWARD's policy to whoever set it.
        return problems;
    }
    let mut attempt = |args: &[&str]| {
        if let Err(e) = iptables(args) {
            problems.push(e.to_string());
        }
    };
    if observed.has_jump {
        attempt(&["-D", "FORWARD", "-j", CHAIN]);
    }
    if observed.has_output_jump {
        attempt(&["-D", "OUTPUT", "-j", OUTPUT_CHAIN]);
    }
    if observed.has_tail {
        attempt(&[
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            TAIL_COMMENT,
            "-j",
            "ACCEPT",
        ]);
    }
    for chain in observed.chains.keys() {
        attempt(&["-F", chain]);
    }
    for chain in observed.chains.keys() {
        attempt(&["-X", chain]);
    }
    attempt(&["-P", "FORWARD", "ACCEPT"]);
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_store::entry::{ClusterRequest, Command as Cmd, RequestMeta};
    use raft_store::layout::AddressLayout;

    fn state_with_tenants(tenants: &[&str]) -> ClusterState {
        let mut state = ClusterState::default();
        let meta = |id: &str| RequestMeta {
            actor: "test".into(),
            request_id: id.into(),
            timestamp_ms: 1,
        };
        state.apply(
            1,
            0,
            &ClusterRequest::new(
                meta("init"),
                Cmd::InitCluster {
                    cluster_name: "romana".into(),
                    voters_target: 1,
                    layout: AddressLayout::default(),
                },
            ),
        );
        for (i, tenant) in tenants.iter().enumerate() {
            state.apply(
                2 + i as u64,
                0,
                &ClusterRequest::new(
                    meta(tenant),
                    Cmd::CreateTenant {
                        name: tenant.to_string(),
                    },
                ),
            );
        }
        state
    }

    #[test]
    fn one_rule_per_tenant_and_a_default_deny() {
        let rules = desired_rules(&state_with_tenants(&["t1", "t2"])).expect("rules");
        assert!(rules.contains(&"-A ROMANA-INGRESS -s 10.0.16.0/255.0.240.0 -d 10.0.16.0/255.0.240.0 -m comment --comment \"tenant t1\" -j ACCEPT".to_string()));
        assert!(rules.contains(&"-A ROMANA-INGRESS -s 10.0.32.0/255.0.240.0 -d 10.0.32.0/255.0.240.0 -m comment --comment \"tenant t2\" -j ACCEPT".to_string()));
        let deny = rules
            .iter()
            .position(|r| r.contains("default deny"))
            .expect("deny rule");
        let last_tenant = rules
            .iter()
            .rposition(|r| r.contains("tenant t"))
            .expect("tenant rules");
        assert!(last_tenant < deny, "tenant accepts come before the deny");
        // ROMANA-FORWARD: replies, not ours, two stages, accept; the
        // ingress stage: two tenants, the deny, the outside.
        assert_eq!(rules.len(), 5 + 2 + 2);
        assert!(desired_rules(&ClusterState::default()).is_none());
    }

    #[test]
    fn nothing_to_do_when_converged_and_one_transaction_otherwise() {
        let chains = desired(&state_with_tenants(&["t1"]), Some(1), true)
            .expect("rules")
            .chains;
        let converged = Observed {
            chains: chains.clone(),
            has_jump: true,
            has_output_jump: false,
            has_tail: true,
            policy_drop: true,
        };
        assert_eq!(restore_input(&chains, &converged), None);
        let flushed = Observed::default();
        let input = restore_input(&chains, &flushed).expect("changes");
        assert!(input.starts_with("*filter\n:FORWARD DROP [0:0]\n"));
        assert!(input.contains("-I FORWARD 1 -j ROMANA-FORWARD\n"));
        assert!(input.ends_with("COMMIT\n"));
        assert_eq!(input.matches("COMMIT").count(), 1, "one transaction");
    }
}

//! Tenant isolation, enforced with iptables, derived from the projection.
//!
//! Because tenant bits sit at fixed positions in every pod address, "all
//! pods of tenant t, on every host" is one (non-contiguous) mask match, e.g.
//! `10.0.16.0/255.0.240.0`. The rule set therefore grows with tenants (and,
//! later, policies), never with pods:
//!
//! ```text
//! FORWARD (policy DROP)           -j ROMANA-FORWARD          first rule
//!                                 ... other software's rules ...
//!                                 -j ACCEPT                  last rule ("romana: tail")
//! ROMANA-FORWARD  ctstate RELATED,ESTABLISHED                  -j ACCEPT   replies
//!                 ! -s CIDR ! -d CIDR                          -j RETURN   not pod traffic
//!                 -s T/MASK -d T/MASK          (per tenant)    -j ACCEPT   within a tenant
//!                 -s CIDR -d CIDR                              -j DROP     between tenants
//!                                                              -j ACCEPT   pods <-> outside
//! ```
//!
//! Fail closed: the chain policy of FORWARD is DROP and the tail ACCEPT
//! keeps the host forwarding other traffic as before. If someone flushes the
//! filter table, FORWARD is empty with policy DROP: everything forwarded
//! stops until the next reconcile puts the rules back, but tenants never see
//! each other. Every change is one `iptables-restore --noflush` transaction
//! (with `-w`), so a restart re-applying the rules opens no window either.
//! Only the project's own chain, its jump and its tail rule are written;
//! kube-proxy's or portmap's chains are never touched.

use std::io::Write;
use std::process::{Command, Stdio};

use raft_store::layout::AddressParts;
use raft_store::state::ClusterState;

/// The project's chain in the filter table.
pub const CHAIN: &str = "ROMANA-FORWARD";
/// Comment of the tail rule of FORWARD.
const TAIL_COMMENT: &str = "romana: tail";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FirewallError(String);

/// The rules of [`CHAIN`], as `iptables -S` prints them. `None` before the
/// layout is known.
pub fn desired_rules(state: &ClusterState) -> Option<Vec<String>> {
    let layout = state.layout()?;
    let cidr = layout.cidr();
    let mut rules = vec![
        format!("-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        format!("-A {CHAIN} ! -s {cidr} ! -d {cidr} -j RETURN"),
    ];
    let mask = layout.tenant_mask(false);
    for (name, tenant) in &state.tenants {
        let base = layout.address(AddressParts {
            host: 0,
            tenant: tenant.number,
            segment: 0,
            endpoint: 0,
        });
        rules.push(format!(
            "-A {CHAIN} -s {base}/{mask} -d {base}/{mask} -m comment --comment \"tenant {name}\" -j ACCEPT"
        ));
    }
    rules.push(format!(
        "-A {CHAIN} -s {cidr} -d {cidr} -m comment --comment \"romana: default deny between tenants\" -j DROP"
    ));
    rules.push(format!("-A {CHAIN} -j ACCEPT"));
    Some(rules)
}

/// What the kernel has.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub chain_rules: Vec<String>,
    pub has_jump: bool,
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
    let forward = iptables(&["-S", "FORWARD"])?;
    let chain_rules = match iptables(&["-S", CHAIN]) {
        Ok(text) => text
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(Observed {
        chain_rules,
        has_jump: forward
            .lines()
            .any(|l| l == format!("-A FORWARD -j {CHAIN}")),
        has_tail: forward
            .lines()
            .any(|l| l == format!("-A FORWARD -m comment --comment \"{TAIL_COMMENT}\" -j ACCEPT")),
        policy_drop: forward.lines().any(|l| l == "-P FORWARD DROP"),
    })
}

/// The `iptables-restore --noflush` input turning `observed` into
/// `desired`; `None` if nothing differs.
pub fn restore_input(desired: &[String], observed: &Observed) -> Option<String> {
    if observed.chain_rules == desired
        && observed.has_jump
        && observed.has_tail
        && observed.policy_drop
    {
        return None;
    }
    let mut input = String::from("*filter\n:FORWARD DROP [0:0]\n");
    input.push_str(&format!(":{CHAIN} - [0:0]\n-F {CHAIN}\n"));
    for rule in desired {
        input.push_str(rule);
        input.push('\n');
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
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FirewallError(format!("run iptables-restore: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| FirewallError(format!("write to iptables-restore: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| FirewallError(format!("iptables-restore: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(FirewallError(format!(
            "iptables-restore refused the rules: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// One pass: observe, and apply the difference as one transaction. Returns
/// whether anything was changed. Blocking.
pub fn reconcile(desired: &[String]) -> Result<bool, FirewallError> {
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
    let chain_exists = iptables(&["-S", CHAIN]).is_ok();
    if !(observed.has_jump || observed.has_tail || chain_exists) {
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
    if chain_exists {
        attempt(&["-F", CHAIN]);
        attempt(&["-X", CHAIN]);
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
        assert!(rules.contains(&"-A ROMANA-FORWARD -s 10.0.16.0/255.0.240.0 -d 10.0.16.0/255.0.240.0 -m comment --comment \"tenant t1\" -j ACCEPT".to_string()));
        assert!(rules.contains(&"-A ROMANA-FORWARD -s 10.0.32.0/255.0.240.0 -d 10.0.32.0/255.0.240.0 -m comment --comment \"tenant t2\" -j ACCEPT".to_string()));
        let deny = rules
            .iter()
            .position(|r| r.contains("default deny"))
            .expect("deny rule");
        let last_tenant = rules
            .iter()
            .rposition(|r| r.contains("tenant t"))
            .expect("tenant rules");
        assert!(last_tenant < deny, "tenant accepts come before the deny");
        assert_eq!(rules.len(), 2 + 2 + 2);
        assert!(desired_rules(&ClusterState::default()).is_none());
    }

    #[test]
    fn nothing_to_do_when_converged_and_one_transaction_otherwise() {
        let rules = desired_rules(&state_with_tenants(&["t1"])).expect("rules");
        let converged = Observed {
            chain_rules: rules.clone(),
            has_jump: true,
            has_tail: true,
            policy_drop: true,
        };
        assert_eq!(restore_input(&rules, &converged), None);
        let flushed = Observed::default();
        let input = restore_input(&rules, &flushed).expect("changes");
        assert!(input.starts_with("*filter\n:FORWARD DROP [0:0]\n"));
        assert!(input.contains("-I FORWARD 1 -j ROMANA-FORWARD\n"));
        assert!(input.ends_with("COMMIT\n"));
        assert_eq!(input.matches("COMMIT").count(), 1, "one transaction");
    }
}

//! The address sets NetworkPolicy rules refer to, kept as ipsets.
//!
//! Every set the project owns is named `romana-<hash of what it selects>`
//! (the same name on every host and after every restart). A pass reads the
//! kernel's sets (`ipset save`), and hands one `ipset restore` the
//! difference: new sets created, members added and deleted in place; a set
//! whose type changed is rebuilt under a temporary name and swapped in, so
//! a rule using it never sees it empty. Sets are synced before the rules
//! that use them, and sets no rule uses any more are destroyed after the
//! rules stopped using them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use raft_store::entry::PortProtocol;

use crate::policy::compiler::{SetKind, SetMember, Sets, SET_PREFIX};

/// Room for every pod of a large cluster in one set.
const MAX_ELEMENTS: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IpsetError(String);

/// A set as the kernel has it: its type and members, as `ipset save`
/// prints them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedSet {
    pub kind: String,
    pub members: BTreeSet<String>,
}

pub type Observed = BTreeMap<String, ObservedSet>;

fn kind_name(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Address => "hash:ip",
        SetKind::AddressPort => "hash:ip,port",
    }
}

/// A member as `ipset save` prints it: `10.1.16.3` or `10.1.16.3,tcp:80`.
pub fn member_text(member: &SetMember) -> String {
    match member.port {
        None => member.address.to_string(),
        Some((protocol, port)) => {
            let protocol = match protocol {
                PortProtocol::Tcp => "tcp",
                PortProtocol::Udp => "udp",
                PortProtocol::Sctp => "sctp",
            };
            format!("{},{protocol}:{port}", member.address)
        }
    }
}

/// Reads `ipset save` output, keeping the project's sets.
pub fn parse_save(text: &str) -> Observed {
    let mut observed = Observed::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("create"), Some(name), Some(kind)) if name.starts_with(SET_PREFIX) => {
                observed.insert(
                    name.to_string(),
                    ObservedSet {
                        kind: kind.to_string(),
                        members: BTreeSet::new(),
                    },
                );
            }
            (Some("add"), Some(name), Some(member)) => {
                if let Some(set) = observed.get_mut(name) {
                    set.members.insert(member.to_string());
                }
            }
            _ => {}
        }
    }
    observed
}

/// The `ipset restore` input that turns `observed` into `desired` (sets not
/// desired are left for [`destroy_input`]); `None` if nothing differs.
pub fn restore_input(desired: &Sets, observed: &Observed) -> Option<String> {
    let mut input = String::new();
    for (name, set) in desired {
        let kind = kind_name(set.kind);
        let members: BTreeSet<String> = set.members.iter().map(member_text).collect();
        let create = |name: &str, input: &mut String| {
            input.push_str(&format!(
                "create {name} {kind} family inet hashsize 1024 maxelem {MAX_ELEMENTS}\n"
            ));
        };
        match observed.get(name) {
            None => {
                create(name, &mut input);
                for member in &members {
                    input.push_str(&format!("add {name} {member}\n"));
                }
            }
            Some(existing) if existing.kind != kind => {
                // Rebuilt beside it and swapped in: never seen empty.
                let temporary = format!("{name}-n");
                if observed.contains_key(&temporary) {
                    // Left by an interrupted rebuild.
                    input.push_str(&format!("destroy {temporary}\n"));
                }
                create(&temporary, &mut input);
                for member in &members {
                    input.push_str(&format!("add {temporary} {member}\n"));
                }
                input.push_str(&format!("swap {temporary} {name}\ndestroy {temporary}\n"));
            }
            Some(existing) => {
                for member in existing.members.difference(&members) {
                    input.push_str(&format!("del {name} {member}\n"));
                }
                for member in members.difference(&existing.members) {
                    input.push_str(&format!("add {name} {member}\n"));
                }
            }
        }
    }
    (!input.is_empty()).then_some(input)
}

/// The `ipset restore` input destroying the project's sets that are not in
/// `desired`; `None` if there are none.
pub fn destroy_input(desired: &Sets, observed: &Observed) -> Option<String> {
    let input: String = observed
        .keys()
        .filter(|name| !desired.contains_key(*name))
        // A rebuild's temporary set is destroyed by the rebuild.
        .filter(|name| {
            !name
                .strip_suffix("-n")
                .is_some_and(|base| desired.contains_key(base))
        })
        .map(|name| format!("destroy {name}\n"))
        .collect();
    (!input.is_empty()).then_some(input)
}

/// The project's sets in the kernel. A host without the `ipset` tool has
/// none (it can enforce tenants and Romana policies; a NetworkPolicy's sets
/// then fail to be created, with that error).
pub fn observe() -> Result<Observed, IpsetError> {
    let output = match Command::new("ipset").arg("save").output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Observed::new()),
        Err(e) => return Err(IpsetError(format!("run ipset: {e}"))),
    };
    if !output.status.success() {
        return Err(IpsetError(format!(
            "ipset save: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(parse_save(&String::from_utf8_lossy(&output.stdout)))
}

fn restore(input: &str) -> Result<(), IpsetError> {
    super::run_with_input("ipset", &["restore"], input, "the sets").map_err(IpsetError)
}

/// Creates and updates the desired sets (one transaction). Returns whether
/// anything changed, and the sets the kernel had before: the stale ones
/// among them stay stale (the transaction only touches desired sets), so
/// [`remove_stale`] needs no second read. Blocking.
pub fn converge(desired: &Sets) -> Result<(bool, Observed), IpsetError> {
    let observed = observe()?;
    let changed = match restore_input(desired, &observed) {
        Some(input) => restore(&input).map(|()| true)?,
        None => false,
    };
    Ok((changed, observed))
}

/// Destroys the project's sets of `observed` that are not desired (call
/// once no rule refers to them). Blocking.
pub fn remove_stale(desired: &Sets, observed: &Observed) -> Result<bool, IpsetError> {
    match destroy_input(desired, observed) {
        Some(input) => restore(&input).map(|()| true),
        None => Ok(false),
    }
}

/// Destroys every set of the project (after its rules are gone).
pub fn cleanup() -> Vec<String> {
    match observe().and_then(|observed| remove_stale(&Sets::new(), &observed)) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compiler::IpSet;
    use std::net::Ipv4Addr;

    fn set(kind: SetKind, members: &[(&str, Option<u16>)]) -> IpSet {
        IpSet {
            kind,
            description: String::new(),
            members: members
                .iter()
                .map(|(a, port)| SetMember {
                    address: a.parse::<Ipv4Addr>().expect("address"),
                    port: port.map(|p| (PortProtocol::Tcp, p)),
                })
                .collect(),
        }
    }

    #[test]
    fn sets_converge_by_difference_and_are_rebuilt_by_swap() {
        let desired: Sets = [
            (
                "romana-a".to_string(),
                set(
                    SetKind::Address,
                    &[("10.1.16.2", None), ("10.1.16.3", None)],
                ),
            ),
            (
                "romana-b".to_string(),
                set(SetKind::AddressPort, &[("10.1.16.2", Some(80))]),
            ),
        ]
        .into();
        let fresh = restore_input(&desired, &Observed::new()).expect("changes");
        assert!(fresh.contains("create romana-a hash:ip family inet"));
        assert!(fresh.contains("add romana-b 10.1.16.2,tcp:80\n"));
        let observed = parse_save(
            "create romana-a hash:ip family inet hashsize 1024 maxelem 1048576\n\
             add romana-a 10.1.16.2\nadd romana-a 10.1.16.9\n\
             create romana-b hash:ip family inet hashsize 1024 maxelem 1048576\n\
             create romana-old hash:ip family inet hashsize 1024 maxelem 1048576\n\
             create other hash:ip family inet hashsize 1024 maxelem 65536\nadd other 1.2.3.4\n",
        );
        assert!(!observed.contains_key("other"), "only the project's sets");
        let input = restore_input(&desired, &observed).expect("changes");
        assert_eq!(
            input,
            "del romana-a 10.1.16.9\nadd romana-a 10.1.16.3\n\
             create romana-b-n hash:ip,port family inet hashsize 1024 maxelem 1048576\n\
             add romana-b-n 10.1.16.2,tcp:80\nswap romana-b-n romana-b\ndestroy romana-b-n\n"
        );
        assert_eq!(
            destroy_input(&desired, &observed).as_deref(),
            Some("destroy romana-old\n")
        );
        let converged = parse_save(
            "create romana-a hash:ip family inet\nadd romana-a 10.1.16.2\nadd romana-a 10.1.16.3\n\
             create romana-b hash:ip,port family inet\nadd romana-b 10.1.16.2,tcp:80\n",
        );
        assert_eq!(restore_input(&desired, &converged), None);
    }
}

//! Network policies: what they say, checked against the state.
//!
//! A policy names the endpoints it applies to (`applied_to`: tenant and
//! optionally segment, or a CIDR), the other side (`peers`: any, hosts, a
//! tenant/segment, or a CIDR with exceptions), a direction, and rules
//! (protocol, ports, port ranges, ICMP type and code). Romana's own policies
//! only open traffic; policies from Kubernetes NetworkPolicy also isolate the
//! pods they select (`isolates`), as Kubernetes documents. The three input
//! formats are translated to this one form before they enter the log.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Most items in any list of a policy (targets, peers, rules, ports).
pub const MAX_POLICY_ITEMS: usize = 64;

/// Longest policy name (Kubernetes policies are named `NAMESPACE/NAME`).
pub const MAX_POLICY_NAME_BYTES: usize = 253;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    /// Kubernetes NetworkPolicies only (appended: variants are encoded by
    /// position).
    Sctp,
}

/// An IPv4 network: address with no bits set past the prefix.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, p),
            None => (text, "32"),
        };
        let address: Ipv4Addr = address.parse().map_err(|_| Error::CidrSyntax {
            text: text.to_string(),
        })?;
        let prefix_len: u8 =
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| Error::CidrPrefix {
                    text: text.to_string(),
                })?;
        let cidr = Self {
            address,
            prefix_len,
        };
        if u32::from(address) & !cidr.mask_bits() != 0 {
            return Err(Error::CidrHostBits {
                text: text.to_string(),
            });
        }
        Ok(cidr)
    }

    pub fn mask_bits(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            // A decoded value may claim more than 32 bits (`check` refuses
            // it); the mask never overflows on one.
            u32::MAX << (32 - u32::from(self.prefix_len.min(32)))
        }
    }

    /// What [`Cidr::parse`] guarantees, for a value decoded from the log or
    /// a request: a prefix of at most 32 bits, no bits set past it.
    pub fn check(&self) -> Result<(), Error> {
        if self.prefix_len > 32 {
            return Err(Error::CidrPrefix {
                text: self.to_string(),
            });
        }
        if u32::from(self.address) & !self.mask_bits() != 0 {
            return Err(Error::CidrHostBits {
                text: self.to_string(),
            });
        }
        Ok(())
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask_bits() == u32::from(self.address)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Endpoints a policy applies to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every pod of a tenant, or of one of its segments.
    Pods {
        tenant: String,
        segment: Option<String>,
    },
    Cidr(Cidr),
}

/// The other side of the traffic.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Any,
    /// The cluster's hosts (their underlay addresses).
    Host,
    Pods {
        tenant: String,
        segment: Option<String>,
    },
    Cidr {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Protocol,
    pub ports: Vec<u16>,
    pub port_ranges: Vec<(u16, u16)>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

impl Rule {
    /// Every protocol, every port.
    pub fn any() -> Self {
        Self {
            protocol: Protocol::Any,
            ports: Vec::new(),
            port_ranges: Vec::new(),
            icmp_type: None,
            icmp_code: None,
        }
    }
}

/// Which input format a policy came in (for `policy show`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFormat {
    Romana,
    Kubernetes,
    ThirdPartyResource,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub direction: Direction,
    pub applied_to: Vec<Target>,
    pub peers: Vec<Peer>,
    pub rules: Vec<Rule>,
    /// Kubernetes semantics: the selected pods accept (ingress) or send
    /// (egress) only what a policy allows, also within their tenant.
    pub isolates: bool,
    pub format: PolicyFormat,
}

/// Checks the parts of a policy that need no state: names, limits, ports,
/// protocols. Errors name the field.
pub fn validate(policy: &Policy) -> Result<(), Error> {
    let name_ok = !policy.name.is_empty()
        && policy.name.len() <= MAX_POLICY_NAME_BYTES
        && policy
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '/'));
    if !name_ok {
        return Err(Error::invalid_policy(
            format!("name {:?}", policy.name),
            format!("1 to {MAX_POLICY_NAME_BYTES} lowercase letters, digits, '-', '.' or '/'"),
        ));
    }
    if policy.description.len() > 1024 {
        return Err(Error::invalid_policy("description", "at most 1024 bytes"));
    }
    for (field, count) in [
        ("applied_to", policy.applied_to.len()),
        ("peers", policy.peers.len()),
        ("rules", policy.rules.len()),
    ] {
        if count == 0 {
            return Err(Error::invalid_policy(field, "at least one entry is needed"));
        }
        if count > MAX_POLICY_ITEMS {
            return Err(Error::invalid_policy(
                field,
                format!("at most {MAX_POLICY_ITEMS} entries, got {count}"),
            ));
        }
    }
    for (i, target) in policy.applied_to.iter().enumerate() {
        if let Target::Cidr(cidr) = target {
            cidr.check()
                .map_err(|e| Error::invalid_policy(format!("applied_to[{i}]"), e.to_string()))?;
        }
    }
    for (i, peer) in policy.peers.iter().enumerate() {
        if let Peer::Cidr { cidr, except } = peer {
            for cidr in std::iter::once(cidr).chain(except) {
                cidr.check()
                    .map_err(|e| Error::invalid_policy(format!("peers[{i}]"), e.to_string()))?;
            }
            let field = format!("peers[{i}].except");
            if except.len() > MAX_POLICY_ITEMS {
                return Err(Error::invalid_policy(
                    field,
                    format!("at most {MAX_POLICY_ITEMS} entries"),
                ));
            }
            for e in except {
                if !(cidr.contains(e.address) && e.prefix_len >= cidr.prefix_len) {
                    return Err(Error::invalid_policy(
                        field,
                        format!("{e} is not inside {cidr}"),
                    ));
                }
            }
        }
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        let has_ports = !rule.ports.is_empty() || !rule.port_ranges.is_empty();
        if rule.protocol == Protocol::Sctp {
            return Err(Error::invalid_policy(
                format!("{field}.protocol"),
                "sctp is for Kubernetes NetworkPolicies (tcp, udp, icmp or any)",
            ));
        }
        if has_ports && !matches!(rule.protocol, Protocol::Tcp | Protocol::Udp) {
            return Err(Error::invalid_policy(
                field,
                "ports need protocol tcp or udp",
            ));
        }
        if rule.ports.len() + rule.port_ranges.len() > MAX_POLICY_ITEMS {
            return Err(Error::invalid_policy(
                field,
                format!("at most {MAX_POLICY_ITEMS} ports and ranges"),
            ));
        }
        if rule.ports.contains(&0) {
            return Err(Error::invalid_policy(
                format!("{field}.ports"),
                "port 0 is not a port (1 to 65535)",
            ));
        }
        for (start, end) in &rule.port_ranges {
            if *start == 0 || start > end {
                return Err(Error::invalid_policy(
                    format!("{field}.port_ranges"),
                    format!("{start}-{end} is not a range within 1 to 65535"),
                ));
            }
        }
        if (rule.icmp_type.is_some() || rule.icmp_code.is_some()) && rule.protocol != Protocol::Icmp
        {
            return Err(Error::invalid_policy(
                field,
                "icmp_type and icmp_code need protocol icmp",
            ));
        }
        if rule.icmp_code.is_some() && rule.icmp_type.is_none() {
            return Err(Error::invalid_policy(field, "icmp_code needs icmp_type"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            name: "web".into(),
            description: String::new(),
            direction: Direction::Ingress,
            applied_to: vec![Target::Pods {
                tenant: "t1".into(),
                segment: Some("backend".into()),
            }],
            peers: vec![Peer::Any],
            rules: vec![Rule {
                protocol: Protocol::Tcp,
                ports: vec![80],
                ..Rule::any()
            }],
            isolates: false,
            format: PolicyFormat::Romana,
        }
    }

    #[test]
    fn cidrs_parse_and_refuse_host_bits() {
        assert_eq!(
            Cidr::parse("10.1.0.0/16").expect("valid").to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(Cidr::parse("192.0.2.7").expect("valid").prefix_len, 32);
        assert!(Cidr::parse("10.1.0.1/16").is_err());
        assert!(Cidr::parse("10.1.0.0/40").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn decoded_cidrs_are_checked_like_parsed_ones() {
        // Found by the entry_decode fuzz target: a CIDR decoded from an
        // entry (not parsed from text) claiming 40 prefix bits overflowed
        // the mask in apply. The mask saturates; validation refuses it.
        let long = Cidr {
            address: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 40,
        };
        assert_eq!(long.mask_bits(), u32::MAX);
        assert!(long.check().is_err());
        let host_bits = Cidr {
            address: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 8,
        };
        assert!(host_bits.check().is_err());
        for cidr in [long, host_bits] {
            let mut target = policy();
            target.applied_to = vec![Target::Cidr(cidr)];
            assert!(validate(&target).is_err(), "applied_to {cidr}");
            let mut peer = policy();
            peer.peers = vec![Peer::Cidr {
                cidr: Cidr::parse("10.0.0.0/8").expect("valid"),
                except: vec![cidr],
            }];
            assert!(validate(&peer).is_err(), "except {cidr}");
        }
    }

    #[test]
    fn bad_policies_name_the_field() {
        assert!(validate(&policy()).is_ok());
        type Change = Box<dyn Fn(&mut Policy)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|p| p.name = "Bad Name".into()), "name"),
            (Box::new(|p| p.peers.clear()), "peers"),
            (Box::new(|p| p.rules[0].ports = vec![0]), "rules[0].ports"),
            (
                Box::new(|p| p.rules[0].port_ranges = vec![(90, 80)]),
                "rules[0].port_ranges",
            ),
            (
                Box::new(|p| p.rules[0].protocol = Protocol::Icmp),
                "rules[0]: ports need",
            ),
            (Box::new(|p| p.rules[0].icmp_type = Some(8)), "icmp_type"),
            (
                Box::new(|p| {
                    p.peers = vec![Peer::Cidr {
                        cidr: Cidr::parse("10.0.0.0/8").expect("cidr"),
                        except: vec![Cidr::parse("192.168.0.0/16").expect("cidr")],
                    }]
                }),
                "peers[0].except",
            ),
        ];
        for (change, field) in cases {
            let mut bad = policy();
            change(&mut bad);
            let error = validate(&bad).expect_err("must be refused").to_string();
            assert!(error.contains(field), "{error:?} should name {field}");
        }
    }
}

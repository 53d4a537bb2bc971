//! Compiles the projection's tenants and policies into an ordered list of
//! match rules: the one description from which both the iptables rules
//! ([`crate::dataplane::firewall`]) and `policy explain` are derived, so the answer to
//! "why was this packet dropped?" is computed from exactly what is enforced.
//!
//! Order (first match wins):
//! 1. replies to allowed traffic (conntrack RELATED,ESTABLISHED): accept;
//! 2. traffic with no pod on either side: not ours (return);
//! 3. every policy's allow rules, by policy name: accept;
//!    shared services (in Kubernetes: the cluster DNS pods and pods labelled
//!    `romana.io/shared: "true"`) on their declared ports, from every
//!    tenant: accept;
//! 4. pods isolated by a Kubernetes policy (ingress: as destination,
//!    egress: as source): drop;
//! 5. within a tenant: accept (one rule per tenant, a mask match);
//! 6. between pods of different tenants: drop (the default);
//! 7. everything else (pods and the outside world): accept.
//!
//! Sizes depend on tenants, policies and hosts (a `host` peer is one rule
//! per host), never on pods, except for the few shared-service pods (one
//! rule per declared port of each).

use std::net::Ipv4Addr;

use raft_store::entry::policy::{Cidr, Direction, Peer, Protocol, Rule, Target};
use raft_store::layout::{AddressLayout, AddressParts};
use raft_store::state::ClusterState;

/// An address with a (possibly non-contiguous) mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masked {
    pub address: Ipv4Addr,
    pub mask: Ipv4Addr,
}

impl Masked {
    pub fn matches(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.address)
    }

    fn of_cidr(cidr: &Cidr) -> Self {
        Self {
            address: cidr.address,
            mask: Ipv4Addr::from(cidr.mask_bits()),
        }
    }

    /// `A/LEN` for contiguous masks, `A/M.M.M.M` otherwise (as iptables
    /// prints them).
    pub fn render(&self) -> String {
        let mask = u32::from(self.mask);
        if mask.leading_ones() + mask.trailing_zeros() == 32 {
            format!("{}/{}", self.address, mask.leading_ones())
        } else {
            format!("{}/{}", self.address, self.mask)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Leave the packet to other software's rules.
    Return,
}

/// One rule: matches and a verdict, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRule {
    pub established: bool,
    /// `! -s CIDR ! -d CIDR`: neither side is a pod.
    pub not_pod_traffic: Option<Masked>,
    pub source: Option<Masked>,
    pub source_except: Vec<Masked>,
    pub destination: Option<Masked>,
    pub destination_except: Vec<Masked>,
    pub protocol: Protocol,
    /// Destination ports and ranges (tcp/udp); empty: any.
    pub ports: Vec<(u16, u16)>,
    pub icmp: Option<(u8, Option<u8>)>,
    pub verdict: Verdict,
    /// What decided: "policy web", "tenant t1", "default deny between tenants".
    pub origin: String,
}

impl MatchRule {
    fn new(verdict: Verdict, origin: String) -> Self {
        Self {
            established: false,
            not_pod_traffic: None,
            source: None,
            source_except: Vec::new(),
            destination: None,
            destination_except: Vec::new(),
            protocol: Protocol::Any,
            ports: Vec::new(),
            icmp: None,
            verdict,
            origin,
        }
    }
}

/// A packet for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub protocol: Protocol,
    /// Destination port (tcp/udp) or ICMP type.
    pub port: Option<u16>,
}

fn pods_mask(
    layout: &AddressLayout,
    state: &ClusterState,
    tenant: &str,
    segment: Option<&str>,
) -> Option<Masked> {
    let record = state.tenants.get(tenant)?;
    let segment_number = match segment {
        Some(name) => Some(record.segments.get(name)?.number),
        None => None,
    };
    Some(Masked {
        address: layout.address(AddressParts {
            host: 0,
            tenant: record.number,
            segment: segment_number.unwrap_or(0),
            endpoint: 0,
        }),
        mask: layout.tenant_mask(segment_number.is_some()),
    })
}

/// The (masks, excepts) a peer stands for; empty when it names nothing that
/// exists (its rules are then left out).
fn peer_matches(
    layout: &AddressLayout,
    state: &ClusterState,
    peer: &Peer,
) -> Vec<(Option<Masked>, Vec<Masked>)> {
    match peer {
        Peer::Any => vec![(None, Vec::new())],
        Peer::Host => state
            .nodes
            .values()
            .map(|n| {
                (
                    Some(Masked {
                        address: n.underlay_ip,
                        mask: Ipv4Addr::BROADCAST,
                    }),
                    Vec::new(),
                )
            })
            .collect(),
        Peer::Pods { tenant, segment } => pods_mask(layout, state, tenant, segment.as_deref())
            .map(|m| (Some(m), Vec::new()))
            .into_iter()
            .collect(),
        Peer::Cidr { cidr, except } => vec![(
            Some(Masked::of_cidr(cidr)),
            except.iter().map(Masked::of_cidr).collect(),
        )],
    }
}

fn target_match(layout: &AddressLayout, state: &ClusterState, target: &Target) -> Option<Masked> {
    match target {
        Target::Pods { tenant, segment } => pods_mask(layout, state, tenant, segment.as_deref()),
        Target::Cidr(cidr) => Some(Masked::of_cidr(cidr)),
    }
}

fn port_items(rule: &Rule) -> Vec<(u16, u16)> {
    let mut items: Vec<(u16, u16)> = rule.ports.iter().map(|p| (*p, *p)).collect();
    items.extend(rule.port_ranges.iter().copied());
    items
}

/// The ordered rules for the current state; `None` before the layout is known.
pub fn compile(state: &ClusterState) -> Option<Vec<MatchRule>> {
    let layout = state.layout()?;
    let cidr = Masked {
        address: layout.network,
        mask: Ipv4Addr::from(if layout.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(layout.prefix_len))
        }),
    };
    let mut rules = Vec::new();
    let mut established = MatchRule::new(Verdict::Accept, "reply to allowed traffic".into());
    established.established = true;
    rules.push(established);
    let mut outside = MatchRule::new(Verdict::Return, "not pod traffic".into());
    outside.not_pod_traffic = Some(cidr);
    rules.push(outside);

    let mut isolation = Vec::new();
    for (name, record) in &state.policies {
        let policy = &record.policy;
        let origin = format!("policy {name}");
        for target in &policy.applied_to {
            let Some(target) = target_match(layout, state, target) else {
                continue;
            };
            for peer in &policy.peers {
                for (peer_match, excepts) in peer_matches(layout, state, peer) {
                    for rule in &policy.rules {
                        let mut base = MatchRule::new(Verdict::Accept, origin.clone());
                        match policy.direction {
                            Direction::Ingress => {
                                base.source = peer_match;
                                base.source_except = excepts.clone();
                                base.destination = Some(target);
                            }
                            Direction::Egress => {
                                base.source = Some(target);
                                base.destination = peer_match;
                                base.destination_except = excepts.clone();
                            }
                        }
                        base.protocol = rule.protocol;
                        base.icmp = rule.icmp_type.map(|t| (t, rule.icmp_code));
                        let items = port_items(rule);
                        if items.is_empty() {
                            rules.push(base);
                        } else {
                            // iptables' multiport takes 15 ports (a range
                            // counts 2): chunks of 7 items always fit.
                            for chunk in items.chunks(7) {
                                let mut with_ports = base.clone();
                                with_ports.ports = chunk.to_vec();
                                rules.push(with_ports);
                            }
                        }
                    }
                }
            }
            if policy.isolates {
                let mut drop =
                    MatchRule::new(Verdict::Drop, format!("policy {name} isolates these pods"));
                match policy.direction {
                    Direction::Ingress => drop.destination = Some(target),
                    Direction::Egress => drop.source = Some(target),
                }
                isolation.push(drop);
            }
        }
    }
    rules.extend(shared_services(state));
    rules.extend(isolation);

    let mask = layout.tenant_mask(false);
    for (name, tenant) in &state.tenants {
        let base = layout.address(AddressParts {
            host: 0,
            tenant: tenant.number,
            segment: 0,
            endpoint: 0,
        });
        let mut accept = MatchRule::new(Verdict::Accept, format!("tenant {name}"));
        accept.source = Some(Masked {
            address: base,
            mask,
        });
        accept.destination = Some(Masked {
            address: base,
            mask,
        });
        rules.push(accept);
    }
    let mut deny = MatchRule::new(Verdict::Drop, "romana: default deny between tenants".into());
    deny.source = Some(cidr);
    deny.destination = Some(cidr);
    rules.push(deny);
    rules.push(MatchRule::new(
        Verdict::Accept,
        "pod traffic to or from outside the cluster".into(),
    ));
    Some(rules)
}

/// The label that marks a pod as a service every tenant may reach.
pub const SHARED_LABEL: &str = "romana.io/shared";

/// Whether a mirrored pod is a shared service: labelled
/// `romana.io/shared: "true"`, or a cluster DNS pod (`k8s-app: kube-dns` in
/// `kube-system`, as CoreDNS and kube-dns label theirs).
pub fn is_shared_service(pod: &raft_store::state::PodRecord) -> bool {
    let pod = &pod.pod;
    pod.labels.get(SHARED_LABEL).map(String::as_str) == Some("true")
        || (pod.namespace == "kube-system"
            && pod.labels.get("k8s-app").map(String::as_str) == Some("kube-dns"))
}

/// A shared-service pod's address and the ports it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEndpoint {
    pub pod: String,
    pub address: Ipv4Addr,
    pub ports: Vec<raft_store::entry::PodPort>,
}

/// The addresses and ports of every shared-service pod, in a stable order.
/// What the shared-service rules are rendered from (the reconciler
/// re-renders when this changes).
pub fn shared_endpoints(state: &ClusterState) -> Vec<SharedEndpoint> {
    use std::collections::HashMap;
    let shared: Vec<&raft_store::entry::PodMirror> = state
        .kubernetes
        .pods
        .values()
        .filter(|record| is_shared_service(record))
        .map(|record| &record.pod)
        .collect();
    if shared.is_empty() {
        return Vec::new();
    }
    let mut addresses: HashMap<(&str, &str), Vec<Ipv4Addr>> = HashMap::new();
    for (address, allocation) in &state.allocations {
        if let (Some(namespace), Some(name)) = (&allocation.pod_namespace, &allocation.pod_name) {
            addresses
                .entry((namespace.as_str(), name.as_str()))
                .or_default()
                .push(*address);
        }
    }
    let mut endpoints = Vec::new();
    for pod in shared {
        for address in addresses
            .get(&(pod.namespace.as_str(), pod.name.as_str()))
            .into_iter()
            .flatten()
        {
            endpoints.push(SharedEndpoint {
                pod: format!("{}/{}", pod.namespace, pod.name),
                address: *address,
                ports: pod.ports.clone(),
            });
        }
    }
    endpoints
}

/// Accept rules to every shared-service pod's address on its declared TCP
/// and UDP ports (every port if it declares none), from any source.
fn shared_services(state: &ClusterState) -> Vec<MatchRule> {
    use raft_store::entry::PortProtocol;
    let mut rules = Vec::new();
    for endpoint in shared_endpoints(state) {
        let mut base = MatchRule::new(Verdict::Accept, format!("shared service {}", endpoint.pod));
        base.destination = Some(Masked {
            address: endpoint.address,
            mask: Ipv4Addr::BROADCAST,
        });
        if endpoint.ports.is_empty() {
            rules.push(base);
            continue;
        }
        for port in &endpoint.ports {
            let protocol = match port.protocol {
                PortProtocol::Tcp => Protocol::Tcp,
                PortProtocol::Udp => Protocol::Udp,
                // Not in the rule model yet (the NetworkPolicy issue).
                PortProtocol::Sctp => continue,
            };
            let mut rule = base.clone();
            rule.protocol = protocol;
            rule.ports = vec![(port.port, port.port)];
            rules.push(rule);
        }
    }
    rules
}

impl MatchRule {
    /// Does this rule match a new connection's first packet?
    pub fn matches(&self, packet: &Packet) -> bool {
        if self.established {
            return false;
        }
        if let Some(cidr) = &self.not_pod_traffic {
            return !cidr.matches(packet.source) && !cidr.matches(packet.destination);
        }
        let side = |m: &Option<Masked>, except: &[Masked], ip: Ipv4Addr| {
            m.is_none_or(|m| m.matches(ip)) && !except.iter().any(|e| e.matches(ip))
        };
        if !side(&self.source, &self.source_except, packet.source)
            || !side(
                &self.destination,
                &self.destination_except,
                packet.destination,
            )
        {
            return false;
        }
        if self.protocol != Protocol::Any && self.protocol != packet.protocol {
            return false;
        }
        if !self.ports.is_empty() {
            let Some(port) = packet.port else {
                return false;
            };
            if !self
                .ports
                .iter()
                .any(|(start, end)| (*start..=*end).contains(&port))
            {
                return false;
            }
        }
        // A packet description carries an ICMP type, not a code: a rule
        // naming a code is judged by its type.
        if let Some((icmp_type, _)) = self.icmp {
            if packet.port != Some(u16::from(icmp_type)) {
                return false;
            }
        }
        true
    }
}

/// What decides a packet: the first matching rule.
pub fn explain<'a>(rules: &'a [MatchRule], packet: &Packet) -> Option<&'a MatchRule> {
    rules.iter().find(|rule| rule.matches(packet))
}

//! Compiles the projection's tenants and policies into ordered match rules
//! and the address sets they refer to: the one description from which both
//! the kernel's rules ([`crate::dataplane::firewall`], [`crate::dataplane::ipsets`])
//! and `policy explain` are derived, so the answer to "why was this packet
//! dropped?" is computed from exactly what is enforced.
//!
//! # Stages
//!
//! A new connection between pods passes two stages, each on the host where
//! it belongs:
//!
//! - **egress**, on the source pod's host: Romana policies and allow rules of
//!   policies selecting the source pass it on ([`Verdict::Return`]); a
//!   source pod selected by an egress policy is dropped if nothing allowed
//!   it; everything else passes on.
//! - **ingress**, on the destination pod's host: (1) Romana policies' allow
//!   rules; (2) NetworkPolicy allow rules for the destination pods they
//!   select; (3) pods selected by an ingress policy: drop (they accept only
//!   what a policy allows, also within their tenant, as Kubernetes
//!   documents); (4) shared services (the cluster DNS pods and pods
//!   labelled `romana.io/shared: "true"`) on their declared ports, from
//!   every tenant; (5) within a tenant: accept (one mask match per tenant);
//!   (6) between pods of different tenants: drop (the default); (7) from
//!   outside the cluster: accept.
//!
//! Tenant isolation is therefore the outer default, enforced where the
//! traffic arrives; an ingress policy (Kubernetes or Romana) may open it,
//! also across tenants; an egress policy only restricts. Replies pass
//! (conntrack) and the host's own traffic to its pods never enters the
//! forwarding path (kubelet probes stay allowed).
//!
//! # Sets
//!
//! Every distinct selector of a NetworkPolicy is a named address set
//! ([`IpSet`], an ipset in the kernel): the pods a policy applies to (on
//! this host only), the pods a peer selects (cluster-wide), and for a named
//! port the `(address, protocol:port)` pairs of the pods that have a
//! container port of that name. Rules name sets, never pods: the number of
//! rules depends on tenants, policies and hosts, never on pods, and a pod
//! coming, going or relabelled changes set members only. A host fills the
//! peer sets of a policy only while the policy applies to one of its own
//! pods; elsewhere the sets exist, empty.
//!
//! Outside Kubernetes (no mirrored pods), a pod's namespace is its tenant
//! and its labels are `romana.io/tenant` and `romana.io/segment`, so the
//! NetworkPolicies of earlier releases (a namespace per tenant, segments by
//! label) keep their meaning.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use raft_store::entry::network_policy::{
    LabelSelector, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PortRef,
};
use raft_store::entry::policy::{Cidr, Direction, Peer, Policy, Protocol, Rule, Target};
use raft_store::entry::{Labels, NetworkPolicy, PodPort, PortProtocol};
use raft_store::layout::{AddressLayout, AddressParts};
use raft_store::state::ClusterState;
use sha2::{Digest, Sha256};

/// The label Kubernetes sets on every namespace to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const TENANT_LABEL: &str = "romana.io/tenant";
const SEGMENT_LABEL: &str = "romana.io/segment";
/// Prefix of every set the project creates.
pub const SET_PREFIX: &str = "romana-";

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

    fn prefix(address: Ipv4Addr, prefix_len: u8) -> Self {
        Self::of_cidr(&Cidr {
            address,
            prefix_len,
        })
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
    /// Leave the packet to what follows (the next stage, or other
    /// software's rules).
    Return,
}

/// A match on a named set: the address, or (`with_port`) the address and
/// the destination protocol:port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMatch {
    pub name: String,
    pub with_port: bool,
}

/// One rule: matches and a verdict, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRule {
    pub source: Option<Masked>,
    pub source_except: Vec<Masked>,
    pub source_set: Option<SetMatch>,
    pub destination: Option<Masked>,
    pub destination_except: Vec<Masked>,
    pub destination_set: Option<SetMatch>,
    pub protocol: Protocol,
    /// Destination ports and ranges (tcp/udp/sctp); empty: any.
    pub ports: Vec<(u16, u16)>,
    pub icmp: Option<(u8, Option<u8>)>,
    pub verdict: Verdict,
    /// What decided: "policy web", "NetworkPolicy x/allow ingress[0]",
    /// "tenant t1", "romana: default deny between tenants".
    pub origin: String,
    /// The NetworkPolicies this rule stands for (`NAMESPACE/NAME`).
    pub policies: Vec<String>,
}

impl MatchRule {
    fn new(verdict: Verdict, origin: String) -> Self {
        Self {
            source: None,
            source_except: Vec::new(),
            source_set: None,
            destination: None,
            destination_except: Vec::new(),
            destination_set: None,
            protocol: Protocol::Any,
            ports: Vec::new(),
            icmp: None,
            verdict,
            origin,
            policies: Vec::new(),
        }
    }
}

/// What a set holds: addresses, or addresses with a protocol and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKind {
    Address,
    AddressPort,
}

/// A member of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SetMember {
    pub address: Ipv4Addr,
    pub port: Option<(PortProtocol, u16)>,
}

/// A named set of pod addresses (an ipset in the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    pub kind: SetKind,
    /// What it stands for ("pods {app=web} in namespace x, on this host").
    pub description: String,
    pub members: BTreeSet<SetMember>,
}

pub type Sets = BTreeMap<String, IpSet>;

/// Which host the sets are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every host's pods (explain, or a host not registered yet: its stages
    /// then check every pod).
    Cluster,
    /// The host with this number: sets of the pods policies apply to hold
    /// its own pods only.
    Host(u32),
}

/// The compiled policy: two stages and the sets they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The pod network.
    pub cidr: Masked,
    /// The pods of the host the rules are for, `None` in [`Scope::Cluster`].
    pub local: Option<Masked>,
    pub egress: Vec<MatchRule>,
    pub ingress: Vec<MatchRule>,
    pub sets: Sets,
}

/// A packet for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub protocol: Protocol,
    /// Destination port (tcp/udp/sctp) or ICMP type.
    pub port: Option<u16>,
}

// ---------------------------------------------------------------------------
// Pods as policies see them

/// A pod with an address, as selectors see it.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    pub address: Ipv4Addr,
    pub host: Option<u32>,
    pub namespace: &'a str,
    /// `NAMESPACE/NAME` when known.
    pub pod: Option<String>,
    pub labels: Cow<'a, Labels>,
    pub ports: &'a [PodPort],
}

/// Every allocated address with its pod's namespace, labels and ports.
pub fn endpoints(state: &ClusterState) -> Vec<Endpoint<'_>> {
    let layout = state.layout();
    state
        .allocations
        .iter()
        .map(|(address, allocation)| {
            let host = state
                .nodes
                .get(&allocation.host)
                .map(|n| n.host_number)
                .or_else(|| {
                    layout
                        .and_then(|l| l.decode(*address))
                        .map(|parts| parts.host)
                });
            match (&allocation.pod_namespace, &allocation.pod_name) {
                (Some(namespace), Some(name)) => {
                    let record = state.kubernetes.pod(namespace, name);
                    Endpoint {
                        address: *address,
                        host,
                        namespace,
                        pod: Some(format!("{namespace}/{name}")),
                        labels: record
                            .map(|r| Cow::Borrowed(&r.pod.labels))
                            .unwrap_or_default(),
                        ports: record.map(|r| r.pod.ports.as_slice()).unwrap_or_default(),
                    }
                }
                _ => Endpoint {
                    address: *address,
                    host,
                    namespace: &allocation.tenant,
                    pod: allocation.pod_name.clone(),
                    labels: Cow::Owned(Labels::from([
                        (TENANT_LABEL.to_string(), allocation.tenant.clone()),
                        (SEGMENT_LABEL.to_string(), allocation.segment.clone()),
                    ])),
                    ports: &[],
                },
            }
        })
        .collect()
}

/// A namespace's labels: the mirrored ones, with the name label Kubernetes
/// always sets (also for namespaces not mirrored, such as tenants outside
/// Kubernetes).
fn namespace_labels(state: &ClusterState, namespace: &str) -> Labels {
    let mut labels = state
        .kubernetes
        .namespaces
        .get(namespace)
        .map(|r| r.labels.clone())
        .unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| namespace.to_string());
    labels
}

/// Which pods a selection picks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Selection {
    /// Pods of one namespace matching a selector.
    InNamespace(String, LabelSelector),
    /// Pods of the namespaces matching the first selector that match the
    /// second.
    Namespaces(LabelSelector, LabelSelector),
    /// Every pod.
    All,
}

impl Selection {
    fn key(&self) -> String {
        match self {
            Selection::InNamespace(ns, pods) => format!("ns={ns} pods={pods}"),
            Selection::Namespaces(ns, pods) => format!("namespaces={ns} pods={pods}"),
            Selection::All => "all".into(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Selection::InNamespace(ns, pods) => format!("pods {pods} in namespace {ns}"),
            Selection::Namespaces(ns, pods) => format!("pods {pods} in namespaces {ns}"),
            Selection::All => "every pod".into(),
        }
    }
}

/// Evaluates selections, caching namespace labels.
struct Selector<'s> {
    state: &'s ClusterState,
    namespaces: BTreeMap<String, Labels>,
}

impl<'s> Selector<'s> {
    fn new(state: &'s ClusterState) -> Self {
        Self {
            state,
            namespaces: BTreeMap::new(),
        }
    }

    fn selects(&mut self, selection: &Selection, endpoint: &Endpoint) -> bool {
        match selection {
            Selection::All => true,
            Selection::InNamespace(ns, pods) => {
                endpoint.namespace == ns && pods.matches(&endpoint.labels)
            }
            Selection::Namespaces(ns, pods) => {
                if !pods.matches(&endpoint.labels) {
                    return false;
                }
                let state = self.state;
                let labels = self
                    .namespaces
                    .entry(endpoint.namespace.to_string())
                    .or_insert_with(|| namespace_labels(state, endpoint.namespace));
                ns.matches(labels)
            }
        }
    }
}

fn set_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{SET_PREFIX}{}", &hex::encode(digest)[..16])
}

/// A set to fill: what it selects, whether it holds this host's pods only,
/// and for named-port sets the port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SetSpec {
    selection: Selection,
    local_only: bool,
    named_port: Option<(PortProtocol, String)>,
}

impl SetSpec {
    fn name(&self) -> String {
        let mut key = format!(
            "{}|{}",
            if self.local_only { "local" } else { "cluster" },
            self.selection.key()
        );
        if let Some((protocol, port)) = &self.named_port {
            key.push_str(&format!("|port={protocol}:{port}"));
        }
        set_name(&key)
    }
}

fn protocol_of(protocol: PortProtocol) -> Protocol {
    match protocol {
        PortProtocol::Tcp => Protocol::Tcp,
        PortProtocol::Udp => Protocol::Udp,
        PortProtocol::Sctp => Protocol::Sctp,
    }
}

// ---------------------------------------------------------------------------
// Romana policies (and NetworkPolicies of earlier releases, kept in the
// log as Romana policies with `isolates`)

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

/// iptables' multiport takes 15 ports (a range counts 2): chunks of 7
/// items always fit.
fn with_port_chunks(base: MatchRule, items: &[(u16, u16)], out: &mut Vec<MatchRule>) {
    if items.is_empty() {
        out.push(base);
        return;
    }
    for chunk in items.chunks(7) {
        let mut rule = base.clone();
        rule.ports = chunk.to_vec();
        out.push(rule);
    }
}

/// Where one policy's rules go.
#[derive(Default)]
struct StageRules {
    /// Romana policies' allow rules.
    open: Vec<MatchRule>,
    allow: Vec<MatchRule>,
    isolate: Vec<MatchRule>,
}

fn compile_romana(
    layout: &AddressLayout,
    state: &ClusterState,
    name: &str,
    policy: &Policy,
    egress: &mut StageRules,
    ingress: &mut StageRules,
) {
    let origin = format!("policy {name}");
    for target in &policy.applied_to {
        let Some(target) = target_match(layout, state, target) else {
            continue;
        };
        let mut allows = Vec::new();
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
                    with_port_chunks(base, &port_items(rule), &mut allows);
                }
            }
        }
        if policy.isolates {
            // A NetworkPolicy as an earlier release stored it: enforced in
            // its own direction only.
            let stage = match policy.direction {
                Direction::Ingress => &mut *ingress,
                Direction::Egress => &mut *egress,
            };
            let verdict = match policy.direction {
                Direction::Ingress => Verdict::Accept,
                Direction::Egress => Verdict::Return,
            };
            stage.allow.extend(allows.into_iter().map(|mut r| {
                r.verdict = verdict;
                r
            }));
            let mut drop =
                MatchRule::new(Verdict::Drop, format!("policy {name} isolates these pods"));
            match policy.direction {
                Direction::Ingress => drop.destination = Some(target),
                Direction::Egress => drop.source = Some(target),
            }
            stage.isolate.push(drop);
        } else {
            // Romana's policies open a path: past egress isolation at the
            // source and into the destination.
            egress.open.extend(allows.iter().cloned().map(|mut r| {
                r.verdict = Verdict::Return;
                r
            }));
            ingress.open.extend(allows);
        }
    }
}

// ---------------------------------------------------------------------------
// NetworkPolicies

struct SetBook {
    specs: BTreeMap<String, SetSpec>,
    /// Sets whose members are needed on this host (the policies using them
    /// apply to one of its pods).
    needed: BTreeSet<String>,
}

impl SetBook {
    fn name(&mut self, spec: SetSpec, needed: bool) -> String {
        let name = spec.name();
        self.specs.entry(name.clone()).or_insert(spec);
        if needed {
            self.needed.insert(name.clone());
        }
        name
    }
}

/// One port entry of a rule, resolved enough to render.
enum PortMatch<'a> {
    Any,
    Protocol(Protocol),
    Range(Protocol, u16, u16),
    Named(PortProtocol, &'a str),
}

fn port_matches(ports: &[NetworkPolicyPort]) -> Vec<PortMatch<'_>> {
    if ports.is_empty() {
        return vec![PortMatch::Any];
    }
    ports
        .iter()
        .map(|p| match (&p.port, p.end_port) {
            (None, _) => PortMatch::Protocol(protocol_of(p.protocol)),
            (Some(PortRef::Number(start)), end) => {
                PortMatch::Range(protocol_of(p.protocol), *start, end.unwrap_or(*start))
            }
            (Some(PortRef::Name(name)), _) => PortMatch::Named(p.protocol, name),
        })
        .collect()
}

/// A peer of a NetworkPolicy rule: a set of pods, or an address block.
enum PeerMatch {
    Any,
    Pods(Selection),
    Block(Masked, Vec<Masked>),
}

fn peer_selection(policy: &NetworkPolicy, peer: &NetworkPolicyPeer) -> PeerMatch {
    match peer {
        NetworkPolicyPeer::Pods { namespaces, pods } => {
            let pods = pods.clone().unwrap_or_default();
            PeerMatch::Pods(match namespaces {
                None => Selection::InNamespace(policy.namespace.clone(), pods),
                Some(ns) if ns.is_empty() && pods.is_empty() => Selection::All,
                Some(ns) => Selection::Namespaces(ns.clone(), pods),
            })
        }
        NetworkPolicyPeer::IpBlock { cidr, except } => PeerMatch::Block(
            Masked::of_cidr(cidr),
            except.iter().map(Masked::of_cidr).collect(),
        ),
    }
}

/// The rules of one direction of a NetworkPolicy.
fn compile_network_policy_direction(
    policy: &NetworkPolicy,
    direction: Direction,
    rules: &[NetworkPolicyRule],
    applies_here: bool,
    book: &mut SetBook,
    stage: &mut StageRules,
) {
    let key = policy.key();
    let targets = Selection::InNamespace(policy.namespace.clone(), policy.pod_selector.clone());
    let target_set = book.name(
        SetSpec {
            selection: targets.clone(),
            local_only: true,
            named_port: None,
        },
        true,
    );
    let (word, verdict) = match direction {
        Direction::Ingress => ("ingress", Verdict::Accept),
        Direction::Egress => ("egress", Verdict::Return),
    };
    for (i, rule) in rules.iter().enumerate() {
        let origin = format!("NetworkPolicy {key} {word}[{i}]");
        let peers: Vec<PeerMatch> = if rule.peers.is_empty() {
            vec![PeerMatch::Any]
        } else {
            rule.peers
                .iter()
                .map(|p| peer_selection(policy, p))
                .collect()
        };
        for peer in &peers {
            // Numeric ports of one protocol share rules (multiport).
            let mut numeric: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
            let mut shapes: Vec<(Protocol, Option<(PortProtocol, &str)>)> = Vec::new();
            for port in port_matches(&rule.ports) {
                match port {
                    PortMatch::Any => shapes.push((Protocol::Any, None)),
                    PortMatch::Protocol(p) => shapes.push((p, None)),
                    PortMatch::Range(p, start, end) => {
                        numeric.entry(p).or_default().push((start, end))
                    }
                    PortMatch::Named(p, name) => shapes.push((protocol_of(p), Some((p, name)))),
                }
            }
            let mut base = MatchRule::new(verdict, origin.clone());
            base.policies = vec![key.clone()];
            // The policy's own pods.
            match direction {
                Direction::Ingress => {
                    base.destination_set = Some(SetMatch {
                        name: target_set.clone(),
                        with_port: false,
                    })
                }
                Direction::Egress => {
                    base.source_set = Some(SetMatch {
                        name: target_set.clone(),
                        with_port: false,
                    })
                }
            }
            // The other side.
            let peer_set = |book: &mut SetBook, selection: &Selection| {
                book.name(
                    SetSpec {
                        selection: selection.clone(),
                        local_only: false,
                        named_port: None,
                    },
                    applies_here,
                )
            };
            match (peer, direction) {
                (PeerMatch::Any, _) => {}
                (PeerMatch::Pods(selection), Direction::Ingress) => {
                    base.source_set = Some(SetMatch {
                        name: peer_set(book, selection),
                        with_port: false,
                    })
                }
                (PeerMatch::Pods(selection), Direction::Egress) => {
                    base.destination_set = Some(SetMatch {
                        name: peer_set(book, selection),
                        with_port: false,
                    })
                }
                (PeerMatch::Block(block, except), Direction::Ingress) => {
                    base.source = Some(*block);
                    base.source_except = except.clone();
                }
                (PeerMatch::Block(block, except), Direction::Egress) => {
                    base.destination = Some(*block);
                    base.destination_except = except.clone();
                }
            }
            for (protocol, items) in &numeric {
                let mut rule = base.clone();
                rule.protocol = *protocol;
                with_port_chunks(rule, items, &mut stage.allow);
            }
            for (protocol, named) in &shapes {
                let mut rule = base.clone();
                rule.protocol = *protocol;
                if let Some((port_protocol, name)) = named {
                    // A named port is the container port of that name on
                    // each destination pod: a set of (address, port).
                    let (selection, local_only) = match (direction, peer) {
                        (Direction::Ingress, _) => (targets.clone(), true),
                        (Direction::Egress, PeerMatch::Pods(selection)) => {
                            (selection.clone(), false)
                        }
                        (Direction::Egress, _) => (Selection::All, false),
                    };
                    let needed = local_only || applies_here;
                    let name = book.name(
                        SetSpec {
                            selection,
                            local_only,
                            named_port: Some((*port_protocol, name.to_string())),
                        },
                        needed,
                    );
                    rule.destination_set = Some(SetMatch {
                        name,
                        with_port: true,
                    });
                }
                stage.allow.push(rule);
            }
        }
    }
    let mut drop = MatchRule::new(
        Verdict::Drop,
        format!(
            "NetworkPolicy {key} isolates {} ({word})",
            targets.describe()
        ),
    );
    drop.policies = vec![key.clone()];
    let target = Some(SetMatch {
        name: target_set,
        with_port: false,
    });
    match direction {
        Direction::Ingress => drop.destination_set = target,
        Direction::Egress => drop.source_set = target,
    }
    stage.isolate.push(drop);
}

fn fill_sets(state: &ClusterState, endpoints: &[Endpoint], scope: Scope, book: &SetBook) -> Sets {
    let mut selector = Selector::new(state);
    let mut sets = Sets::new();
    for (name, spec) in &book.specs {
        let mut members = BTreeSet::new();
        let wanted = matches!(scope, Scope::Cluster) || book.needed.contains(name);
        if wanted {
            for endpoint in endpoints {
                if spec.local_only {
                    if let Scope::Host(host) = scope {
                        if endpoint.host != Some(host) {
                            continue;
                        }
                    }
                }
                if !selector.selects(&spec.selection, endpoint) {
                    continue;
                }
                match &spec.named_port {
                    None => {
                        members.insert(SetMember {
                            address: endpoint.address,
                            port: None,
                        });
                    }
                    Some((protocol, port_name)) => {
                        for port in endpoint.ports {
                            if port.protocol == *protocol
                                && port.name.as_deref() == Some(port_name.as_str())
                            {
                                members.insert(SetMember {
                                    address: endpoint.address,
                                    port: Some((port.protocol, port.port)),
                                });
                            }
                        }
                    }
                }
            }
        }
        let mut description = spec.selection.describe();
        if spec.local_only {
            description.push_str(", on this host");
        }
        if let Some((protocol, port)) = &spec.named_port {
            description.push_str(&format!(", port {port}/{protocol}"));
        }
        sets.insert(
            name.clone(),
            IpSet {
                kind: if spec.named_port.is_some() {
                    SetKind::AddressPort
                } else {
                    SetKind::Address
                },
                description,
                members,
            },
        );
    }
    sets
}

// ---------------------------------------------------------------------------
// The whole

/// The stages and sets for the current state, for `scope`; `None` before
/// the layout is known.
pub fn compile(state: &ClusterState, scope: Scope) -> Option<Compiled> {
    let layout = state.layout()?;
    let cidr = Masked::prefix(layout.network, layout.prefix_len);
    let local = match scope {
        Scope::Cluster => None,
        Scope::Host(host) => Some(Masked::prefix(
            layout.address(AddressParts {
                host,
                tenant: 0,
                segment: 0,
                endpoint: 0,
            }),
            layout.host_prefix_len(),
        )),
    };
    // Only NetworkPolicies select pods.
    let endpoints = if state.network_policies.is_empty() {
        Vec::new()
    } else {
        endpoints(state)
    };
    let mut egress = StageRules::default();
    let mut ingress = StageRules::default();
    for (name, record) in &state.policies {
        compile_romana(
            layout,
            state,
            name,
            &record.policy,
            &mut egress,
            &mut ingress,
        );
    }

    let mut book = SetBook {
        specs: BTreeMap::new(),
        needed: BTreeSet::new(),
    };
    let mut selector = Selector::new(state);
    for record in state.network_policies.values() {
        let policy = &record.policy;
        let targets = Selection::InNamespace(policy.namespace.clone(), policy.pod_selector.clone());
        let applies_here = match scope {
            Scope::Cluster => true,
            Scope::Host(host) => endpoints
                .iter()
                .any(|e| e.host == Some(host) && selector.selects(&targets, e)),
        };
        if let Some(rules) = &policy.ingress {
            compile_network_policy_direction(
                policy,
                Direction::Ingress,
                rules,
                applies_here,
                &mut book,
                &mut ingress,
            );
        }
        if let Some(rules) = &policy.egress {
            compile_network_policy_direction(
                policy,
                Direction::Egress,
                rules,
                applies_here,
                &mut book,
                &mut egress,
            );
        }
    }
    let sets = fill_sets(state, &endpoints, scope, &book);

    let mut egress_rules = egress.open;
    egress_rules.extend(egress.allow);
    egress_rules.extend(egress.isolate);

    let mut ingress_rules = ingress.open;
    ingress_rules.extend(ingress.allow);
    ingress_rules.extend(ingress.isolate);
    ingress_rules.extend(shared_services(state));
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
        ingress_rules.push(accept);
    }
    let mut deny = MatchRule::new(Verdict::Drop, "romana: default deny between tenants".into());
    deny.source = Some(cidr);
    deny.destination = Some(cidr);
    ingress_rules.push(deny);
    ingress_rules.push(MatchRule::new(Verdict::Accept, OUTSIDE_ORIGIN.to_string()));
    Some(Compiled {
        cidr,
        local,
        egress: egress_rules,
        ingress: ingress_rules,
        sets,
    })
}

/// Origin of the last rule: pods and the world outside the cluster.
pub const OUTSIDE_ORIGIN: &str = "pod traffic to or from outside the cluster";

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

/// Accept rules to every shared-service pod's address on its declared
/// ports (every port if it declares none), from any source.
fn shared_services(state: &ClusterState) -> Vec<MatchRule> {
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
            let mut rule = base.clone();
            rule.protocol = protocol_of(port.protocol);
            rule.ports = vec![(port.port, port.port)];
            rules.push(rule);
        }
    }
    rules
}

// ---------------------------------------------------------------------------
// Evaluation (explain)

fn port_protocol(protocol: Protocol) -> Option<PortProtocol> {
    match protocol {
        Protocol::Tcp => Some(PortProtocol::Tcp),
        Protocol::Udp => Some(PortProtocol::Udp),
        Protocol::Sctp => Some(PortProtocol::Sctp),
        Protocol::Any | Protocol::Icmp => None,
    }
}

impl MatchRule {
    /// Does this rule match a new connection's first packet, with `sets`
    /// holding the members of the sets it names?
    pub fn matches(&self, packet: &Packet, sets: &Sets) -> bool {
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
        let in_set = |set: &Option<SetMatch>, ip: Ipv4Addr| {
            let Some(set) = set else { return true };
            let Some(content) = sets.get(&set.name) else {
                return false;
            };
            if set.with_port {
                let (Some(protocol), Some(port)) = (port_protocol(packet.protocol), packet.port)
                else {
                    return false;
                };
                content.members.contains(&SetMember {
                    address: ip,
                    port: Some((protocol, port)),
                })
            } else {
                content.members.contains(&SetMember {
                    address: ip,
                    port: None,
                })
            }
        };
        if !in_set(&self.source_set, packet.source)
            || !in_set(&self.destination_set, packet.destination)
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

/// What happens to a new connection, stage by stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub verdict: Verdict,
    /// The rule that decided (`None`: no pod on either side).
    pub decided_by: Option<&'a MatchRule>,
    /// The egress stage's matching rule, if the source is a pod and one
    /// matched.
    pub egress: Option<&'a MatchRule>,
}

/// Walks the stages as the hosts of the source and the destination do
/// (compiled with [`Scope::Cluster`]).
pub fn explain<'a>(compiled: &'a Compiled, packet: &Packet) -> Decision<'a> {
    let source_is_pod = compiled.cidr.matches(packet.source);
    let destination_is_pod = compiled.cidr.matches(packet.destination);
    if !source_is_pod && !destination_is_pod {
        return Decision {
            verdict: Verdict::Return,
            decided_by: None,
            egress: None,
        };
    }
    let mut egress = None;
    if source_is_pod {
        egress = compiled
            .egress
            .iter()
            .find(|rule| rule.matches(packet, &compiled.sets));
        if let Some(rule) = egress {
            if rule.verdict == Verdict::Drop {
                return Decision {
                    verdict: Verdict::Drop,
                    decided_by: Some(rule),
                    egress,
                };
            }
        }
    }
    if destination_is_pod {
        let rule = compiled
            .ingress
            .iter()
            .find(|rule| rule.matches(packet, &compiled.sets));
        if let Some(rule) = rule {
            return Decision {
                verdict: rule.verdict,
                decided_by: Some(rule),
                egress,
            };
        }
    }
    Decision {
        verdict: Verdict::Accept,
        decided_by: egress.or_else(|| compiled.ingress.last()),
        egress,
    }
}

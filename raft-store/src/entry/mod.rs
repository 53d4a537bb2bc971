//! The entry model: what a log entry says.
//!
//! A log entry is a *request*: what a client asked for, with who asked, a
//! request id for idempotency, and a timestamp taken once by the proposer.
//! Outcomes are never stored in the entry; they are derived by
//! [`crate::state::ClusterState::apply`], so that replaying the log on any
//! machine yields the same outcome for every entry, rejections included.
//!
//! # Layout
//!
//! - this file: [`LogPayload`] (what one Raft entry carries),
//!   [`ClusterRequest`] ([`RequestMeta`] + [`Command`]), [`NodeInfo`] (a
//!   member as Raft knows it), the limits every request is held to.
//! - [`ipam`]: who holds an address ([`ContainerInterface`]) and what an
//!   allocation asks for ([`AllocationRequest`]).
//! - [`policy`]: the network policy model ([`Policy`]: targets, peers,
//!   rules, CIDRs) and its stateless checks.
//! - [`validate`]: checks of names and node addresses shared by `apply` and
//!   by a node before it proposes a request.
//!
//! Nothing here depends on the projection: `state` reads entries, never the
//! other way round.
//!
//! # In the two request paths
//!
//! (a) A CNI ADD becomes a [`Command::AllocateAddress`] carrying an
//! [`AllocationRequest`]; (b) a policy file becomes a
//! [`Command::ApplyPolicies`] carrying [`Policy`]s. The node API wraps
//! either in a [`ClusterRequest`] (actor, request id, time), the leader's
//! batcher packs requests into one [`LogPayload`], and that is what the log
//! stores and replicates.
//!
//! # Encoding
//!
//! Entries are bincode, which encodes enum variants and struct fields by
//! position. Adding a request is one change: add a variant at the *end* of
//! [`Command`] and handle it in `ClusterState::apply`; never reorder or
//! remove a variant or a field of anything here.
//! `raft-store/tests/release_fixture.rs` reads a log written by an earlier
//! release and fails if an encoding changed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::layout::AddressLayout;

pub mod ipam;
pub mod kubernetes;
pub mod network_policy;
pub mod policy;
pub mod validate;

pub use ipam::{
    AllocationRequest, ContainerInterface, MAX_CONTAINER_ID_BYTES, MAX_GC_VALID_ENTRIES,
    MAX_IFNAME_BYTES,
};
pub use kubernetes::{Labels, PodMirror, PodPort, PortProtocol};
pub use network_policy::NetworkPolicy;
pub use policy::Policy;
pub use validate::{validate_label, validate_node_address, validate_node_name};

/// Raft node ids.
pub type NodeId = u64;

/// The entry format this build writes and understands. An entry with a newer
/// format is rejected by `apply` (deterministically, on every replica) rather
/// than misread.
pub const ENTRY_FORMAT_VERSION: u16 = 1;

/// Longest accepted request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Longest accepted actor description, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;

/// Longest accepted operator note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

/// Most requests one log entry may carry.
pub const MAX_REQUESTS_PER_ENTRY: usize = 256;

/// Largest encoded request (bincode): a policy file at its limits (64
/// policies) or a garbage collection naming 1,024 interfaces fits; an
/// allocation is a few hundred bytes. Checked by the node before it
/// proposes (413) and by `apply` (deterministically refused).
pub const MAX_REQUEST_BYTES: u64 = 256 * 1024;

/// Largest entry the batcher builds from several requests (one request
/// alone may reach [`MAX_REQUEST_BYTES`], which is the same).
pub const MAX_ENTRY_BYTES: u64 = MAX_REQUEST_BYTES;

/// Most entries one AppendEntries RPC carries (openraft's
/// `max_payload_entries`). openraft 0.9 batches by count only and gives
/// each AppendEntries one heartbeat interval to complete, so a batch is
/// kept to 4 MiB: far inside the Raft routes' body limit, and quick to
/// send, decode and append, so a follower that fell behind always catches
/// up.
pub const MAX_ENTRIES_PER_APPEND: u64 = 16;

/// The encoded size of `request` (what it adds to an entry).
pub fn encoded_size(request: &ClusterRequest) -> u64 {
    bincode::serialized_size(request).unwrap_or(u64::MAX)
}

/// Refuses a request larger than [`MAX_REQUEST_BYTES`], saying how large.
pub fn check_size(request: &ClusterRequest) -> Result<(), String> {
    let size = encoded_size(request);
    if size > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request encodes to {size} bytes, more than the {MAX_REQUEST_BYTES} a request may have"
        ));
    }
    Ok(())
}

/// What one Raft log entry carries: one or more requests, applied in order.
///
/// Requests that arrive at the leader together share an entry (and so one
/// append, one flush and one replication round); each keeps its own
/// metadata and gets its own outcome. A request is located by the log index
/// of its entry and its position in it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogPayload {
    pub requests: Vec<ClusterRequest>,
}

/// One request in the replicated log, with its metadata.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterRequest {
    /// Format of this entry; see [`ENTRY_FORMAT_VERSION`].
    pub format_version: u16,
    pub meta: RequestMeta,
    pub command: Command,
}

/// Who asked, when, and under which idempotency key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// Who made the request: `node:NAME` for a node acting on its own,
    /// `client:IDENTITY@NODE` for a client request received by NODE.
    pub actor: String,
    /// Idempotency key: the same request id applied twice has one effect, and
    /// the second application returns the first one's outcome.
    pub request_id: String,
    /// Milliseconds since the Unix epoch, taken once by the node that proposed
    /// the entry. `apply` never reads a clock; it uses this.
    pub timestamp_ms: u64,
}

/// What a request asks for. Append new variants at the end only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The first entry of a cluster's history: its name, the number of
    /// voters it keeps, and its address layout (fixed for its lifetime).
    InitCluster {
        cluster_name: String,
        voters_target: u8,
        layout: AddressLayout,
    },
    /// A node joined (or re-announced itself with a new address). It becomes
    /// a host with the lowest free host number.
    RegisterNode {
        node_id: NodeId,
        name: String,
        /// `IPV4:PORT`; the IP is the host's underlay address.
        address: String,
    },
    /// A node was removed by an operator. Refused while the host holds
    /// addresses, unless `force`, which releases them.
    RemoveNode {
        name: String,
        force: bool,
    },
    /// An operator's note in the network's history ("draining host3 for
    /// maintenance"), kept for audit.
    Note {
        text: String,
    },
    /// A tenant, with its `default` segment.
    CreateTenant {
        name: String,
    },
    DeleteTenant {
        name: String,
    },
    CreateSegment {
        tenant: String,
        name: String,
    },
    DeleteSegment {
        tenant: String,
        name: String,
    },
    /// An address for a container's interface on a host.
    AllocateAddress(AllocationRequest),
    /// Give back the address of a container's interface (idempotent).
    ReleaseAddress(ContainerInterface),
    /// Release every address on `host` (of `network`, if given) whose owner
    /// is not in `valid`.
    GarbageCollect {
        host: String,
        network: Option<String>,
        valid: Vec<ContainerInterface>,
    },
    /// Add policies (replacing those of the same names), all or none: one
    /// file, or one Kubernetes NetworkPolicy, may give several.
    ApplyPolicies {
        policies: Vec<Policy>,
    },
    DeletePolicy {
        name: String,
    },
    /// A Kubernetes namespace and its labels (replacing what was recorded),
    /// mirrored by the leader's Kubernetes controller.
    MirrorNamespace {
        name: String,
        labels: Labels,
    },
    /// A Kubernetes namespace is gone (idempotent).
    ForgetNamespace {
        name: String,
    },
    /// A pod on the pod network: its labels and container ports (replacing
    /// what was recorded for the same namespace/name).
    MirrorPod(PodMirror),
    /// A pod is gone (idempotent). Its address goes with its CNI DEL, or
    /// with the controller's garbage collection.
    ForgetPod {
        namespace: String,
        name: String,
    },
    /// A Kubernetes NetworkPolicy (replacing the one of the same
    /// namespace/name), in Kubernetes' own terms.
    ApplyNetworkPolicy(NetworkPolicy),
    DeleteNetworkPolicy {
        namespace: String,
        name: String,
    },
    /// A join token (`romanactl token create`): only its secret's SHA-256
    /// is recorded; it expires `ttl_ms` after the entry's timestamp.
    CreateJoinToken {
        id: String,
        secret_digest: [u8; 32],
        ttl_ms: u64,
    },
    /// A joining node presented a token to a member; accepted once, before
    /// it expires, if the secret's digest matches.
    RedeemJoinToken {
        id: String,
        secret_digest: [u8; 32],
        node: String,
    },
}

impl Command {
    /// A stable name of the command's kind (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "init_cluster",
            Command::RegisterNode { .. } => "register_node",
            Command::RemoveNode { .. } => "remove_node",
            Command::Note { .. } => "note",
            Command::CreateTenant { .. } => "create_tenant",
            Command::DeleteTenant { .. } => "delete_tenant",
            Command::CreateSegment { .. } => "create_segment",
            Command::DeleteSegment { .. } => "delete_segment",
            Command::AllocateAddress(_) => "allocate_address",
            Command::ReleaseAddress(_) => "release_address",
            Command::GarbageCollect { .. } => "garbage_collect",
            Command::ApplyPolicies { .. } => "apply_policies",
            Command::DeletePolicy { .. } => "delete_policy",
            Command::MirrorNamespace { .. } => "mirror_namespace",
            Command::ForgetNamespace { .. } => "forget_namespace",
            Command::MirrorPod(_) => "mirror_pod",
            Command::ForgetPod { .. } => "forget_pod",
            Command::ApplyNetworkPolicy(_) => "apply_network_policy",
            Command::DeleteNetworkPolicy { .. } => "delete_network_policy",
            Command::CreateJoinToken { .. } => "create_join_token",
            Command::RedeemJoinToken { .. } => "redeem_join_token",
        }
    }
}

impl ClusterRequest {
    pub fn new(meta: RequestMeta, command: Command) -> Self {
        Self {
            format_version: ENTRY_FORMAT_VERSION,
            meta,
            command,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::InitCluster {
                cluster_name,
                voters_target,
                layout,
            } => write!(
                f,
                "init-cluster {cluster_name} voters={voters_target} layout={layout}"
            ),
            Command::RegisterNode {
                node_id,
                name,
                address,
            } => write!(f, "register-node {name} id={node_id} address={address}"),
            Command::RemoveNode { name, force } => {
                write!(
                    f,
                    "remove-node {name}{}",
                    if *force { " --force" } else { "" }
                )
            }
            Command::Note { text } => write!(f, "note {text:?}"),
            Command::CreateTenant { name } => write!(f, "create-tenant {name}"),
            Command::DeleteTenant { name } => write!(f, "delete-tenant {name}"),
            Command::CreateSegment { tenant, name } => write!(f, "create-segment {tenant}/{name}"),
            Command::DeleteSegment { tenant, name } => write!(f, "delete-segment {tenant}/{name}"),
            Command::AllocateAddress(request) => write!(
                f,
                "allocate {} on {} in {}/{}",
                request.owner, request.host, request.tenant, request.segment
            ),
            Command::ReleaseAddress(owner) => write!(f, "release {owner}"),
            Command::GarbageCollect { host, valid, .. } => {
                write!(
                    f,
                    "garbage-collect {host} keeping {} interfaces",
                    valid.len()
                )
            }
            Command::ApplyPolicies { policies } => {
                let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
                write!(f, "apply-policies {}", names.join(","))
            }
            Command::DeletePolicy { name } => write!(f, "delete-policy {name}"),
            Command::MirrorNamespace { name, labels } => write!(
                f,
                "mirror-namespace {name} labels={}",
                kubernetes::render_labels(labels)
            ),
            Command::ForgetNamespace { name } => write!(f, "forget-namespace {name}"),
            Command::MirrorPod(pod) => {
                let ports: Vec<String> = pod
                    .ports
                    .iter()
                    .map(|p| match &p.name {
                        Some(name) => format!("{name}:{}/{}", p.port, p.protocol),
                        None => format!("{}/{}", p.port, p.protocol),
                    })
                    .collect();
                write!(
                    f,
                    "mirror-pod {}/{} on {} labels={} ports=[{}]",
                    pod.namespace,
                    pod.name,
                    pod.node.as_deref().unwrap_or("(unscheduled)"),
                    kubernetes::render_labels(&pod.labels),
                    ports.join(",")
                )
            }
            Command::ForgetPod { namespace, name } => write!(f, "forget-pod {namespace}/{name}"),
            Command::ApplyNetworkPolicy(policy) => {
                let types: Vec<&str> = [
                    policy.ingress.as_ref().map(|_| "ingress"),
                    policy.egress.as_ref().map(|_| "egress"),
                ]
                .into_iter()
                .flatten()
                .collect();
                write!(
                    f,
                    "apply-network-policy {} pods={} types={}",
                    policy.key(),
                    policy.pod_selector,
                    types.join(",")
                )
            }
            Command::DeleteNetworkPolicy { namespace, name } => {
                write!(f, "delete-network-policy {namespace}/{name}")
            }
            Command::CreateJoinToken { id, ttl_ms, .. } => {
                write!(f, "create-join-token {id} ttl={}s", ttl_ms / 1000)
            }
            Command::RedeemJoinToken { id, node, .. } => {
                write!(f, "redeem-join-token {id} node={node}")
            }
        }
    }
}

/// A node as Raft's membership knows it: the name operators use and the
/// address peers dial.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `HOST:PORT` that peers use to reach this node's TCP listener.
    pub address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_dns_1123() {
        assert!(validate_node_name("host-1.example").is_ok());
        assert!(validate_node_name("a").is_ok());
        for bad in ["", "Host", "-a", "a-", "a_b", "a b", &"x".repeat(254)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn labels_and_interfaces_are_checked() {
        assert!(validate_label("tenant", "t1").is_ok());
        for bad in ["", "T1", "a.b", "-a", &"x".repeat(64)] {
            assert!(validate_label("tenant", bad).is_err(), "{bad:?}");
        }
        let owner = |c: &str, i: &str| ContainerInterface {
            container_id: c.into(),
            ifname: i.into(),
        };
        assert!(owner("abc123", "eth0").validate().is_ok());
        for (c, i) in [
            ("", "eth0"),
            ("a b", "eth0"),
            ("abc", ""),
            ("abc", "a/b"),
            ("abc", "0123456789abcdef"),
        ] {
            assert!(owner(c, i).validate().is_err(), "{c:?} {i:?}");
        }
    }

    #[test]
    fn payload_round_trips_through_bincode() {
        let request = ClusterRequest::new(
            RequestMeta {
                actor: "client:test@a".into(),
                request_id: "r1".into(),
                timestamp_ms: 42,
            },
            Command::Note { text: "hi".into() },
        );
        let payload = LogPayload {
            requests: vec![request.clone(), request],
        };
        let bytes = bincode::serialize(&payload).expect("serialize");
        let back: LogPayload = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, payload);
    }
}

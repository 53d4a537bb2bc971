//! What applying a request did: an [`Outcome`], either an [`Effect`] or a
//! [`Rejection`], recorded with where the request sat in the log
//! ([`AppliedRequest`]); [`Response`] is what one entry's apply returns to
//! its proposer.
//!
//! These types are part of the audit chain and of the replicated state:
//! their bincode encoding is fixed. Never reorder or remove a variant or a
//! field; append new variants at the end.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::entry::{NodeId, ENTRY_FORMAT_VERSION};

/// Where and how a request was applied.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppliedRequest {
    /// Log index of the entry that carried the request.
    pub index: u64,
    /// Position of the request within that entry.
    pub position: u32,
    pub outcome: Outcome,
}

/// What applying one request did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied(Effect),
    Rejected(Rejection),
}

/// The effect of an applied request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    ClusterInitialised,
    NodeRegistered {
        node_id: NodeId,
        host_number: u32,
    },
    NodeAddressChanged {
        node_id: NodeId,
    },
    NodeAlreadyRegistered {
        node_id: NodeId,
    },
    NodeRemoved {
        node_id: NodeId,
        released: Vec<Ipv4Addr>,
    },
    NoteRecorded {
        number: u64,
    },
    TenantCreated {
        number: u32,
    },
    TenantDeleted {
        number: u32,
    },
    SegmentCreated {
        number: u32,
    },
    SegmentDeleted {
        number: u32,
    },
    /// `existing`: the owner already held this address (a repeated request).
    AddressAllocated {
        address: Ipv4Addr,
        existing: bool,
    },
    AddressReleased {
        address: Ipv4Addr,
    },
    /// Release of an owner that holds nothing: success, no change.
    NothingToRelease,
    GarbageCollected {
        released: Vec<Ipv4Addr>,
    },
    PoliciesApplied {
        names: Vec<String>,
        replaced: usize,
    },
    PolicyDeleted,
    /// A mirrored Kubernetes object was recorded (`changed`: it differed
    /// from what was recorded before).
    Mirrored {
        changed: bool,
    },
    /// A mirrored Kubernetes object was forgotten (`existed`: it was
    /// recorded).
    Forgotten {
        existed: bool,
    },
    JoinTokenCreated {
        expires_at_ms: u64,
    },
    /// `node` redeemed a join token (and receives the cluster's CA).
    JoinTokenRedeemed {
        node: String,
    },
}

/// Why a request was refused. Rejections are outcomes like any other: every
/// replica derives the same one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    UnsupportedFormat {
        version: u16,
    },
    InvalidMeta {
        reason: String,
    },
    NotInitialised,
    AlreadyInitialised {
        name: String,
    },
    InvalidArgument {
        reason: String,
    },
    NodeNameTaken {
        name: String,
        node_id: NodeId,
    },
    NodeIdTaken {
        node_id: NodeId,
        name: String,
    },
    UnknownNode {
        name: String,
    },
    HostHasAddresses {
        name: String,
        count: usize,
    },
    HostsExhausted {
        max: u32,
    },
    TenantExists {
        name: String,
    },
    UnknownTenant {
        name: String,
    },
    TenantsExhausted {
        max: u32,
    },
    TenantHasAddresses {
        name: String,
        count: usize,
    },
    SegmentExists {
        tenant: String,
        name: String,
    },
    UnknownSegment {
        tenant: String,
        name: String,
    },
    SegmentsExhausted {
        tenant: String,
        max: u32,
    },
    SegmentHasAddresses {
        tenant: String,
        name: String,
        count: usize,
    },
    DefaultSegmentIsPermanent {
        tenant: String,
    },
    /// The owner already holds an address in another block.
    OwnerHoldsOtherAddress {
        owner: String,
        address: Ipv4Addr,
    },
    BlockFull {
        host: String,
        tenant: String,
        segment: String,
        capacity: u32,
    },
    UnknownPolicy {
        name: String,
    },
    /// The request id was used before for a different request.
    RequestIdReused {
        request_id: String,
        /// Log index of the request that first used it.
        first_index: u64,
    },
    /// A join token could not be created or redeemed.
    JoinTokenRefused {
        id: String,
        reason: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::UnsupportedFormat { version } => write!(
                f,
                "entry format {version} is newer than this build understands ({ENTRY_FORMAT_VERSION})"
            ),
            Rejection::InvalidMeta { reason } => write!(f, "invalid request metadata: {reason}"),
            Rejection::NotInitialised => write!(f, "the cluster is not initialised yet"),
            Rejection::AlreadyInitialised { name } => {
                write!(f, "the cluster is already initialised as {name:?}; its layout cannot change")
            }
            Rejection::InvalidArgument { reason } => write!(f, "{reason}"),
            Rejection::NodeNameTaken { name, node_id } => write!(
                f,
                "node name {name:?} is already held by node id {node_id}; if that node's data was wiped, remove it first with `romanactl node remove {name}`"
            ),
            Rejection::NodeIdTaken { node_id, name } => {
                write!(f, "node id {node_id} is already registered as {name:?}")
            }
            Rejection::UnknownNode { name } => write!(f, "no node (host) named {name:?}"),
            Rejection::HostHasAddresses { name, count } => write!(
                f,
                "host {name:?} still holds {count} address(es); release them or remove it with --force, which releases them"
            ),
            Rejection::HostsExhausted { max } => {
                write!(f, "all {max} host numbers of the address layout are taken")
            }
            Rejection::TenantExists { name } => write!(f, "tenant {name:?} already exists"),
            Rejection::UnknownTenant { name } => write!(f, "no tenant named {name:?}"),
            Rejection::TenantsExhausted { max } => {
                write!(f, "all {max} tenant numbers of the address layout are taken")
            }
            Rejection::TenantHasAddresses { name, count } => {
                write!(f, "tenant {name:?} still has {count} address(es) allocated")
            }
            Rejection::SegmentExists { tenant, name } => {
                write!(f, "segment {name:?} already exists in tenant {tenant:?}")
            }
            Rejection::UnknownSegment { tenant, name } => {
                write!(f, "tenant {tenant:?} has no segment named {name:?}")
            }
            Rejection::SegmentsExhausted { tenant, max } => {
                write!(f, "tenant {tenant:?} uses all {max} segment numbers of the address layout")
            }
            Rejection::SegmentHasAddresses { tenant, name, count } => write!(
                f,
                "segment {name:?} of tenant {tenant:?} still has {count} address(es) allocated"
            ),
            Rejection::DefaultSegmentIsPermanent { tenant } => write!(
                f,
                "the default segment of tenant {tenant:?} exists as long as the tenant"
            ),
            Rejection::OwnerHoldsOtherAddress { owner, address } => write!(
                f,
                "{owner} already holds {address} in another host/tenant/segment; release it first"
            ),
            Rejection::UnknownPolicy { name } => write!(f, "no policy named {name:?}"),
            Rejection::RequestIdReused {
                request_id,
                first_index,
            } => write!(
                f,
                "request id {request_id:?} was used for a different request (entry {first_index}); use a new id"
            ),
            Rejection::JoinTokenRefused { id, reason } => {
                write!(f, "join token {id}: {reason}")
            }
            Rejection::BlockFull {
                host,
                tenant,
                segment,
                capacity,
            } => write!(
                f,
                "no free address for host {host:?}, tenant {tenant:?}, segment {segment:?}: all {capacity} are allocated"
            ),
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |addresses: &[Ipv4Addr]| {
            addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Effect::ClusterInitialised => write!(f, "cluster initialised"),
            Effect::NodeRegistered {
                node_id,
                host_number,
            } => {
                write!(f, "node {node_id} registered as host {host_number}")
            }
            Effect::NodeAddressChanged { node_id } => write!(f, "node {node_id} has a new address"),
            Effect::NodeAlreadyRegistered { node_id } => {
                write!(f, "node {node_id} already registered")
            }
            Effect::NodeRemoved { node_id, released } if released.is_empty() => {
                write!(f, "node {node_id} removed")
            }
            Effect::NodeRemoved { node_id, released } => {
                write!(f, "node {node_id} removed, released {}", list(released))
            }
            Effect::NoteRecorded { number } => write!(f, "note {number} recorded"),
            Effect::TenantCreated { number } => write!(f, "tenant number {number}"),
            Effect::TenantDeleted { number } => write!(f, "tenant number {number} freed"),
            Effect::SegmentCreated { number } => write!(f, "segment number {number}"),
            Effect::SegmentDeleted { number } => write!(f, "segment number {number} freed"),
            Effect::AddressAllocated {
                address,
                existing: false,
            } => write!(f, "allocated {address}"),
            Effect::AddressAllocated {
                address,
                existing: true,
            } => write!(f, "already held {address}"),
            Effect::AddressReleased { address } => write!(f, "released {address}"),
            Effect::NothingToRelease => write!(f, "nothing to release"),
            Effect::GarbageCollected { released } if released.is_empty() => {
                write!(f, "nothing to collect")
            }
            Effect::GarbageCollected { released } => write!(f, "released {}", list(released)),
            Effect::PoliciesApplied { names, replaced } => {
                write!(f, "applied {} ({replaced} replaced)", names.join(", "))
            }
            Effect::PolicyDeleted => write!(f, "policy deleted"),
            Effect::Mirrored { changed: true } => write!(f, "recorded"),
            Effect::Mirrored { changed: false } => write!(f, "unchanged"),
            Effect::Forgotten { existed: true } => write!(f, "forgotten"),
            Effect::Forgotten { existed: false } => write!(f, "was not recorded"),
            Effect::JoinTokenCreated { expires_at_ms } => {
                write!(f, "join token created, expires at {expires_at_ms} ms")
            }
            Effect::JoinTokenRedeemed { node } => write!(f, "join token redeemed by {node}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied(effect) => write!(f, "{effect}"),
            Outcome::Rejected(reason) => write!(f, "rejected: {reason}"),
        }
    }
}

impl Rejection {
    /// An `InvalidArgument` with `reason`.
    pub(crate) fn invalid(reason: impl fmt::Display) -> Self {
        Rejection::InvalidArgument {
            reason: reason.to_string(),
        }
    }
}

/// What `apply` returns for each entry to the proposer: the outcome of each
/// of its requests, in order (none for Raft's own blank and membership
/// entries).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub index: u64,
    pub applied: Vec<AppliedRequest>,
}

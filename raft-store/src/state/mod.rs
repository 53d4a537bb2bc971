//! `ClusterState`: the projection of the log.
//!
//! [`ClusterState::apply`] is a pure function of (state, log index, entry):
//! no clock, no randomness, no I/O, ordered maps only. Replaying the same log
//! on any machine yields the same state, and [`ClusterState::content_hash`]
//! the same hash.
//!
//! # Layout
//!
//! This file holds the state itself and `apply`, which checks what every
//! request must satisfy and dispatches to the handler of its concern:
//!
//! - [`outcome`]: what applying a request did ([`Outcome`]: an [`Effect`] or
//!   a [`Rejection`]) and where ([`AppliedRequest`]); [`Response`], one
//!   entry's outcomes.
//! - [`ledger`]: the request ledger (idempotency), operator notes, and the
//!   audit hash [`chain`] every applied request extends.
//! - [`topology`]: the cluster, hosts, tenants and segments.
//! - [`ipam`]: address allocations: allocate, release, garbage-collect.
//! - [`policy`]: the network policies in force.
//! - [`invariants`]: what must hold after every apply
//!   ([`ClusterState::check_invariants`]).
//!
//! The handler modules extend [`ClusterState`] with `impl` blocks; they
//! import `outcome` and this module's `ClusterState`, never each other.
//!
//! # In the two request paths
//!
//! (a) A committed `AllocateAddress` (a CNI ADD) reaches [`ClusterState::apply`]
//! on every replica: a request id already in the [`ledger`] returns its
//! first outcome (the plugin's retry gets the same address); otherwise the
//! [`ipam`] handler finds the block from the [`topology`] numbers of host,
//! tenant and segment and takes the next free endpoint. The outcome is
//! recorded in the ledger and extends the audit chain; the state machine
//! returns it to the proposer.
//! (b) A committed `ApplyPolicies` goes to [`policy`], which checks the
//! tenants and segments it names and stores the records, all or none; every
//! host's reconciler and firewall then read [`ClusterState::policies`].
//!
//! Every type here is encoded with bincode in snapshots, in the audit chain
//! and in the content hash: never reorder or remove a field or a variant.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::{
    ClusterRequest, Command, ContainerInterface, ENTRY_FORMAT_VERSION, MAX_ACTOR_BYTES,
    MAX_REQUEST_ID_BYTES,
};

pub mod invariants;
pub mod ipam;
pub mod ledger;
pub mod outcome;
pub mod policy;
pub mod topology;

#[cfg(test)]
mod tests;

pub use ipam::{Allocation, BlockId};
pub use ledger::{chain, NoteRecord, RequestLedger, MAX_REMEMBERED_REQUESTS, MAX_RETAINED_NOTES};
pub use outcome::{AppliedRequest, Effect, Outcome, Rejection, Response};
pub use policy::PolicyRecord;
pub use topology::{
    ClusterInfo, NodeRecord, SegmentRecord, TenantRecord, DEFAULT_SEGMENT_NAME, MAX_VOTERS_TARGET,
};

/// The replicated state of the cluster, as derived from the log.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Set by the first entry; `None` until then.
    pub cluster: Option<ClusterInfo>,
    /// Nodes (hosts) by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Tenants by name, each with its segments.
    pub tenants: BTreeMap<String, TenantRecord>,
    /// Every allocated address, by address.
    pub allocations: BTreeMap<Ipv4Addr, Allocation>,
    /// Who holds which address: the index for idempotent allocation and
    /// release by (container id, interface). Always the inverse of
    /// `allocations`.
    pub owners: BTreeMap<ContainerInterface, Ipv4Addr>,
    /// Per host/tenant/segment block, the endpoint handed out last: the
    /// round-robin cursor.
    pub cursors: BTreeMap<BlockId, u32>,
    /// Network policies by name.
    pub policies: BTreeMap<String, PolicyRecord>,
    /// Number of notes ever recorded.
    pub notes_total: u64,
    /// The most recent notes, oldest first, at most [`MAX_RETAINED_NOTES`].
    pub recent_notes: VecDeque<NoteRecord>,
    /// Outcomes of recent requests, for idempotency and for "did my request
    /// land?" queries.
    pub requests: RequestLedger,
    /// Head of the audit hash chain: every applied request (not repeats)
    /// extends it, so every replica vouches for the same history.
    pub audit_head: String,
    /// Requests in the chain.
    pub audit_count: u64,
}

impl ClusterState {
    /// Apply the request at `position` in the entry at log `index`. Pure and
    /// deterministic.
    ///
    /// A request id seen before returns the recorded outcome and changes
    /// nothing.
    pub fn apply(&mut self, index: u64, position: u32, request: &ClusterRequest) -> AppliedRequest {
        if let Some(previous) = self.requests.get(&request.meta.request_id) {
            return previous.clone();
        }
        let outcome = match self.apply_new(index, request) {
            Ok(effect) => Outcome::Applied(effect),
            Err(rejection) => Outcome::Rejected(rejection),
        };
        let applied = AppliedRequest {
            index,
            position,
            outcome,
        };
        self.requests
            .record(&request.meta.request_id, applied.clone());
        self.audit_head = chain(&self.audit_head, request, &applied);
        self.audit_count += 1;
        applied
    }

    fn apply_new(&mut self, index: u64, request: &ClusterRequest) -> Result<Effect, Rejection> {
        if request.format_version > ENTRY_FORMAT_VERSION {
            return Err(Rejection::UnsupportedFormat {
                version: request.format_version,
            });
        }
        validate_meta(request)?;
        let meta = &request.meta;
        if !matches!(request.command, Command::InitCluster { .. }) {
            self.require_initialised()?;
        }
        match &request.command {
            Command::InitCluster {
                cluster_name,
                voters_target,
                layout,
            } => self.init_cluster(cluster_name, *voters_target, layout, meta),
            Command::RegisterNode {
                node_id,
                name,
                address,
            } => self.register_node(*node_id, name, address, meta.timestamp_ms),
            Command::RemoveNode { name, force } => self.remove_node(name, *force),
            Command::Note { text } => self.record_note(index, meta, text),
            Command::CreateTenant { name } => self.create_tenant(name, meta.timestamp_ms),
            Command::DeleteTenant { name } => self.delete_tenant(name),
            Command::CreateSegment { tenant, name } => {
                self.create_segment(tenant, name, meta.timestamp_ms)
            }
            Command::DeleteSegment { tenant, name } => self.delete_segment(tenant, name),
            Command::AllocateAddress(allocation) => self.allocate(allocation, index, meta),
            Command::ReleaseAddress(owner) => self.release(owner),
            Command::GarbageCollect {
                host,
                network,
                valid,
            } => self.garbage_collect(host, network.as_deref(), valid),
            Command::ApplyPolicies { policies } => self.apply_policies(policies, index, meta),
            Command::DeletePolicy { name } => self.delete_policy(name),
        }
    }

    /// A stable content hash: SHA-256 of the bincode encoding, hex. The state
    /// holds only ordered collections and fixed-width integers, so the same
    /// state encodes to the same bytes on every machine and build.
    pub fn content_hash(&self) -> String {
        let bytes = bincode::serialize(self).expect("ClusterState is always serialisable");
        hex::encode(Sha256::digest(&bytes))
    }
}

fn validate_meta(request: &ClusterRequest) -> Result<(), Rejection> {
    let meta = &request.meta;
    let invalid = |reason: String| Err(Rejection::InvalidMeta { reason });
    if meta.request_id.is_empty() || meta.request_id.len() > MAX_REQUEST_ID_BYTES {
        return invalid(format!(
            "request id must be 1 to {MAX_REQUEST_ID_BYTES} bytes, got {}",
            meta.request_id.len()
        ));
    }
    if meta.actor.is_empty() || meta.actor.len() > MAX_ACTOR_BYTES {
        return invalid(format!(
            "actor must be 1 to {MAX_ACTOR_BYTES} bytes, got {}",
            meta.actor.len()
        ));
    }
    Ok(())
}

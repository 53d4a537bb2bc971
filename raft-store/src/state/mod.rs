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
//! - [`kubernetes`]: the mirrored Kubernetes view (namespaces and pods with
//!   their labels and ports).
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
pub mod kubernetes;
pub mod ledger;
pub mod outcome;
pub mod policy;
pub mod topology;
pub mod trust;

#[cfg(test)]
mod tests;

pub use ipam::{Allocation, BlockId};
pub use kubernetes::{KubernetesView, NamespaceRecord, PodRecord};
pub use ledger::{chain, NoteRecord, RequestLedger, MAX_REMEMBERED_REQUESTS, MAX_RETAINED_NOTES};
pub use outcome::{AppliedRequest, Effect, Outcome, Rejection, Response};
pub use policy::{NetworkPolicyRecord, PolicyRecord};
pub use topology::{
    ClusterInfo, NodeRecord, SegmentRecord, TenantRecord, DEFAULT_SEGMENT_NAME, MAX_VOTERS_TARGET,
};
pub use trust::{JoinTokenRecord, TrustState};

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
    /// Namespaces and pods mirrored from Kubernetes (empty outside it).
    /// Added in snapshot format 2: the last field, so a format-1 snapshot is
    /// this state without it.
    pub kubernetes: KubernetesView,
    /// Kubernetes NetworkPolicies by `NAMESPACE/NAME`. Added in snapshot
    /// format 3 (the last field: a format-2 snapshot is this state without
    /// it).
    pub network_policies: BTreeMap<String, NetworkPolicyRecord>,
    /// For each request id in [`Self::requests`], the digest of what it
    /// asked ([`request_digest`]): a repeated id with a different request is
    /// refused instead of answered with the first one's outcome. Added in
    /// snapshot format 4 (the last field); ids recorded by earlier releases
    /// have none and are matched by id alone, as they were.
    pub request_digests: BTreeMap<String, RequestDigest>,
    /// Revoked node certificates and join tokens. Added in snapshot format
    /// 5 (the last field).
    pub trust: TrustState,
}

/// SHA-256 of a request's format and command (not its metadata: a retry
/// carries a new timestamp, and may come through another node).
pub type RequestDigest = [u8; 32];

/// The digest a request id is bound to.
pub fn request_digest(request: &ClusterRequest) -> RequestDigest {
    let mut hasher = Sha256::new();
    hasher.update(request.format_version.to_be_bytes());
    hasher.update(bincode::serialize(&request.command).expect("commands are always serialisable"));
    hasher.finalize().into()
}

impl ClusterState {
    /// Apply the request at `position` in the entry at log `index`. Pure and
    /// deterministic.
    ///
    /// A request id seen before returns the recorded outcome and changes
    /// nothing.
    pub fn apply(&mut self, index: u64, position: u32, request: &ClusterRequest) -> AppliedRequest {
        match self.previous_outcome(request) {
            Ok(Some(previous)) => return previous.clone(),
            Err(reused) => {
                return AppliedRequest {
                    index,
                    position,
                    outcome: Outcome::Rejected(reused),
                }
            }
            Ok(None) => {}
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
        let forgotten = self
            .requests
            .record(&request.meta.request_id, applied.clone());
        if let Some(forgotten) = forgotten {
            self.request_digests.remove(&forgotten);
        }
        self.request_digests
            .insert(request.meta.request_id.clone(), request_digest(request));
        self.audit_head = chain(&self.audit_head, request, &applied);
        self.audit_count += 1;
        applied
    }

    fn apply_new(&mut self, index: u64, request: &ClusterRequest) -> Result<Effect, Rejection> {
        check_envelope(request)?;
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
            Command::RemoveNode { name, force } => {
                let effect = self.remove_node(name, *force)?;
                self.revoke_node_certificates(name, meta.timestamp_ms);
                Ok(effect)
            }
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
            Command::MirrorNamespace { name, labels } => {
                self.mirror_namespace(name, labels, index, meta)
            }
            Command::ForgetNamespace { name } => self.forget_namespace(name),
            Command::MirrorPod(pod) => self.mirror_pod(pod, index, meta),
            Command::ForgetPod { namespace, name } => self.forget_pod(namespace, name),
            Command::ApplyNetworkPolicy(policy) => self.apply_network_policy(policy, index, meta),
            Command::DeleteNetworkPolicy { namespace, name } => {
                self.delete_network_policy(namespace, name)
            }
            Command::CreateJoinToken {
                id,
                secret_digest,
                ttl_ms,
            } => self.create_join_token(id, *secret_digest, *ttl_ms, meta),
            Command::RedeemJoinToken {
                id,
                secret_digest,
                node,
            } => self.redeem_join_token(id, *secret_digest, node, meta),
        }
    }

    /// The recorded outcome of `request`'s id, if the ledger holds it:
    /// `Ok(Some)` for the same request (a retry: answer it, propose
    /// nothing), `Err` for a different request under the same id.
    pub fn previous_outcome(
        &self,
        request: &ClusterRequest,
    ) -> Result<Option<&AppliedRequest>, Rejection> {
        let Some(previous) = self.requests.get(&request.meta.request_id) else {
            return Ok(None);
        };
        match self.request_digests.get(&request.meta.request_id) {
            Some(recorded) if *recorded != request_digest(request) => {
                Err(Rejection::RequestIdReused {
                    request_id: request.meta.request_id.clone(),
                    first_index: previous.index,
                })
            }
            _ => Ok(Some(previous)),
        }
    }

    /// A stable content hash: SHA-256 of the bincode encoding, hex. The state
    /// holds only ordered collections and fixed-width integers, so the same
    /// state encodes to the same bytes on every machine and build.
    ///
    /// An empty Kubernetes view and an empty set of NetworkPolicies are left
    /// out of the hash, so a history without them hashes as it did before
    /// they existed (a rolling upgrade compares equal hashes across
    /// releases). The request digests are left out always: they are a pure
    /// function of the ledger's requests, which releases before them did
    /// not keep.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let core = StateV1Ref::of(self);
        hasher.update(bincode::serialize(&core).expect("ClusterState is always serialisable"));
        if !self.kubernetes.is_empty() {
            hasher.update(
                bincode::serialize(&self.kubernetes).expect("the view is always serialisable"),
            );
        }
        if !self.network_policies.is_empty() {
            hasher.update(
                bincode::serialize(&self.network_policies)
                    .expect("policies are always serialisable"),
            );
        }
        if !self.trust.is_empty() {
            hasher.update(bincode::serialize(&self.trust).expect("trust is always serialisable"));
        }
        hex::encode(hasher.finalize())
    }
}

/// The refusals a request's own content decides, with no state: a node
/// checks these before it proposes, so such a request never becomes a log
/// entry. `apply` refuses every request this refuses (it runs the same
/// checks), so answering without an entry changes no outcome.
pub fn precheck(request: &ClusterRequest) -> Result<(), Rejection> {
    check_envelope(request)?;
    match &request.command {
        Command::CreateTenant { name } => {
            crate::entry::validate_label("tenant", name).map_err(Rejection::invalid)
        }
        Command::CreateSegment { name, .. } => {
            crate::entry::validate_label("segment", name).map_err(Rejection::invalid)
        }
        Command::AllocateAddress(allocation) => {
            allocation.owner.validate().map_err(Rejection::invalid)?;
            ipam::check_allocation_names(allocation)
        }
        Command::ReleaseAddress(owner) => owner.validate().map_err(Rejection::invalid),
        Command::Note { text } => ledger::check_note(text),
        Command::CreateJoinToken { id, ttl_ms, .. } => {
            trust::check_join_token_id(id)?;
            trust::check_join_token_ttl(*ttl_ms)
        }
        Command::RedeemJoinToken { id, node, .. } => {
            trust::check_join_token_id(id)?;
            crate::entry::validate_node_name(node).map_err(Rejection::invalid)
        }
        Command::GarbageCollect { network, valid, .. } => {
            ipam::check_gc_request(network.as_deref(), valid)
        }
        _ => Ok(()),
    }
}

/// What every request must satisfy whatever it asks: a format this build
/// reads, valid metadata, at most [`crate::entry::MAX_REQUEST_BYTES`].
fn check_envelope(request: &ClusterRequest) -> Result<(), Rejection> {
    if request.format_version > ENTRY_FORMAT_VERSION {
        return Err(Rejection::UnsupportedFormat {
            version: request.format_version,
        });
    }
    validate_meta(request)?;
    crate::entry::check_size(request).map_err(Rejection::invalid)
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

/// The fields of [`ClusterState`] as snapshot format 1 had them, borrowed:
/// its encoding is format 1's.
#[derive(Serialize)]
struct StateV1Ref<'a> {
    cluster: &'a Option<ClusterInfo>,
    nodes: &'a BTreeMap<String, NodeRecord>,
    tenants: &'a BTreeMap<String, TenantRecord>,
    allocations: &'a BTreeMap<Ipv4Addr, Allocation>,
    owners: &'a BTreeMap<ContainerInterface, Ipv4Addr>,
    cursors: &'a BTreeMap<BlockId, u32>,
    policies: &'a BTreeMap<String, PolicyRecord>,
    notes_total: u64,
    recent_notes: &'a VecDeque<NoteRecord>,
    requests: &'a RequestLedger,
    audit_head: &'a str,
    audit_count: u64,
}

impl<'a> StateV1Ref<'a> {
    fn of(state: &'a ClusterState) -> Self {
        Self {
            cluster: &state.cluster,
            nodes: &state.nodes,
            tenants: &state.tenants,
            allocations: &state.allocations,
            owners: &state.owners,
            cursors: &state.cursors,
            policies: &state.policies,
            notes_total: state.notes_total,
            recent_notes: &state.recent_notes,
            requests: &state.requests,
            audit_head: &state.audit_head,
            audit_count: state.audit_count,
        }
    }
}

/// [`ClusterState`] as snapshot format 1 stored it (before the Kubernetes
/// view), for reading old snapshots.
#[derive(Deserialize)]
pub struct StateV1 {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, NodeRecord>,
    tenants: BTreeMap<String, TenantRecord>,
    allocations: BTreeMap<Ipv4Addr, Allocation>,
    owners: BTreeMap<ContainerInterface, Ipv4Addr>,
    cursors: BTreeMap<BlockId, u32>,
    policies: BTreeMap<String, PolicyRecord>,
    notes_total: u64,
    recent_notes: VecDeque<NoteRecord>,
    requests: RequestLedger,
    audit_head: String,
    audit_count: u64,
}

impl From<StateV1> for ClusterState {
    fn from(v1: StateV1) -> Self {
        ClusterState {
            cluster: v1.cluster,
            nodes: v1.nodes,
            tenants: v1.tenants,
            allocations: v1.allocations,
            owners: v1.owners,
            cursors: v1.cursors,
            policies: v1.policies,
            notes_total: v1.notes_total,
            recent_notes: v1.recent_notes,
            requests: v1.requests,
            audit_head: v1.audit_head,
            audit_count: v1.audit_count,
            kubernetes: KubernetesView::default(),
            network_policies: BTreeMap::new(),
            request_digests: BTreeMap::new(),
            trust: TrustState::default(),
        }
    }
}

/// [`ClusterState`] as snapshot format 2 stored it (before NetworkPolicies):
/// bincode encodes nested structs field after field, so this reads the
/// format-1 fields followed by the Kubernetes view.
#[derive(Deserialize)]
pub struct StateV2 {
    core: StateV1,
    kubernetes: KubernetesView,
}

impl From<StateV2> for ClusterState {
    fn from(v2: StateV2) -> Self {
        ClusterState {
            kubernetes: v2.kubernetes,
            ..ClusterState::from(v2.core)
        }
    }
}

/// [`ClusterState`] as snapshot format 3 stored it (before request
/// digests): format 2's fields, then the NetworkPolicies.
#[derive(Deserialize)]
pub struct StateV3 {
    core: StateV2,
    network_policies: BTreeMap<String, NetworkPolicyRecord>,
}

impl From<StateV3> for ClusterState {
    fn from(v3: StateV3) -> Self {
        ClusterState {
            network_policies: v3.network_policies,
            ..ClusterState::from(v3.core)
        }
    }
}

/// [`ClusterState`] as snapshot format 4 stored it (before the trust
/// state): format 3's fields, then the request digests.
#[derive(Deserialize)]
pub struct StateV4 {
    core: StateV3,
    request_digests: BTreeMap<String, RequestDigest>,
}

impl From<StateV4> for ClusterState {
    fn from(v4: StateV4) -> Self {
        ClusterState {
            request_digests: v4.request_digests,
            ..ClusterState::from(v4.core)
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::entry::{PodMirror, RequestMeta};

    #[test]
    fn a_format_2_state_reads_as_this_state_without_network_policies() {
        let mut state = ClusterState::default();
        let meta = RequestMeta {
            actor: "test".into(),
            request_id: "r".into(),
            timestamp_ms: 7,
        };
        let pod = PodMirror {
            namespace: "x".into(),
            name: "a".into(),
            uid: "u1".into(),
            node: None,
            labels: [("pod".to_string(), "a".to_string())].into(),
            ports: Vec::new(),
        };
        state.mirror_pod(&pod, 3, &meta).expect("mirror");
        // What a format-2 release wrote: the format-1 fields, then the view.
        let bytes =
            bincode::serialize(&(StateV1Ref::of(&state), &state.kubernetes)).expect("serialise");
        let read: StateV2 = bincode::deserialize(&bytes).expect("read format 2");
        assert_eq!(ClusterState::from(read), state);
    }

    #[test]
    fn a_format_3_state_reads_as_this_state_without_request_digests() {
        let mut state = ClusterState::default();
        let meta = RequestMeta {
            actor: "test".into(),
            request_id: "r".into(),
            timestamp_ms: 7,
        };
        state
            .mirror_namespace("x", &[("k".to_string(), "v".to_string())].into(), 2, &meta)
            .expect("mirror");
        let bytes = bincode::serialize(&(
            StateV1Ref::of(&state),
            &state.kubernetes,
            &state.network_policies,
        ))
        .expect("serialise");
        let read: StateV3 = bincode::deserialize(&bytes).expect("read format 3");
        assert_eq!(ClusterState::from(read), state);
    }

    #[test]
    fn a_format_4_state_reads_as_this_state_without_trust() {
        let mut state = ClusterState::default();
        state.request_digests.insert("r".into(), [7; 32]);
        let bytes = bincode::serialize(&(
            StateV1Ref::of(&state),
            &state.kubernetes,
            &state.network_policies,
            &state.request_digests,
        ))
        .expect("serialise");
        let read: StateV4 = bincode::deserialize(&bytes).expect("read format 4");
        assert_eq!(ClusterState::from(read), state);
        // And the current encoding is format 4's with the trust appended.
        let mut with_trust = state.clone();
        with_trust.trust.revoked_nodes.insert("host-b".into(), 5);
        let current = bincode::serialize(&with_trust).expect("serialise");
        assert!(current.starts_with(&bytes));
    }
}

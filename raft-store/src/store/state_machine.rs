//! openraft's `RaftStateMachine` over a [`KvBackend`], applying entries to
//! [`ClusterState`].
//!
//! The projection lives in memory and is persisted as snapshots; at start-up
//! the last snapshot is loaded and openraft re-applies the committed log after
//! it. Readers (the node API, the reconciler) share the projection through
//! [`SharedState`] and learn of progress through a watch on the applied
//! index.
//!
//! Each request is applied through an [`Applier`]: [`ClusterStateApply`],
//! i.e. [`ClusterState::apply`], in every build that runs a cluster. The
//! trait is the seam through which the simulation injects a deliberately
//! broken projection, to show that its invariant checks catch one; the
//! production source has no broken path.
//!
//! Snapshot writes are durable before they return; with a [`Flusher`] (what
//! a node runs) the fsync is the flusher thread's, not an async worker's.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backend::{Durability, KvBackend, Tree, WriteOp};
use super::flusher::Flusher;
use super::log_store::{decode, encode};
use crate::audit::{record_key, ArchiveRecord};
use crate::entry::{ClusterRequest, NodeId, NodeInfo};
use crate::raft::TypeConfig;
use crate::state::{AppliedRequest, ClusterState, Response};

/// How the state machine applies one request to the projection.
pub trait Applier: Clone + Send + Sync + 'static {
    /// Applies the request at `position` of the entry at log `index`.
    fn apply(
        &self,
        state: &mut ClusterState,
        index: u64,
        position: u32,
        request: &ClusterRequest,
    ) -> AppliedRequest;
}

/// [`ClusterState::apply`]: the only applier of a running cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterStateApply;

impl Applier for ClusterStateApply {
    fn apply(
        &self,
        state: &mut ClusterState,
        index: u64,
        position: u32,
        request: &ClusterRequest,
    ) -> AppliedRequest {
        state.apply(index, position, request)
    }
}

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// The projection and what Raft needs alongside it.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, NodeInfo>,
    pub state: ClusterState,
}

impl Projection {
    pub fn applied_index(&self) -> u64 {
        self.last_applied.map(|id| id.index).unwrap_or(0)
    }
}

/// The projection shared between the state machine and its readers.
#[derive(Clone)]
pub struct SharedState {
    projection: Arc<RwLock<Projection>>,
    applied_index: watch::Sender<u64>,
    /// Each new audit record, once written (for the node's events and
    /// counters: no re-read of the archive per apply).
    records: tokio::sync::broadcast::Sender<Arc<ArchiveRecord>>,
    /// Size of the stored snapshot as written (0 before the first).
    snapshot_bytes: Arc<AtomicU64>,
}

/// Records a [`SharedState::subscribe_records`] receiver may fall behind by
/// before it is told it lagged (and reads the archive instead).
const RECORD_CHANNEL: usize = 4096;

impl SharedState {
    fn new() -> Self {
        Self {
            projection: Arc::new(RwLock::new(Projection::default())),
            applied_index: watch::Sender::new(0),
            records: tokio::sync::broadcast::Sender::new(RECORD_CHANNEL),
            snapshot_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes of the snapshot this node stores (0 if it has none yet).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes.load(Ordering::Relaxed)
    }

    /// Every audit record applied from now on, in order. A receiver that
    /// falls behind gets `Lagged` and should read the archive from the last
    /// record it saw.
    pub fn subscribe_records(&self) -> tokio::sync::broadcast::Receiver<Arc<ArchiveRecord>> {
        self.records.subscribe()
    }

    /// A consistent view: applied index, membership and state read together.
    pub fn read(&self) -> RwLockReadGuard<'_, Projection> {
        // Writers never panic while holding the lock (apply is infallible on
        // a decoded entry), so poisoning can only come from a bug elsewhere;
        // the data is still whole.
        self.projection
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Projection> {
        self.projection
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Watch the applied log index (the reconciler and read-your-writes
    /// waits use this instead of polling).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    fn publish(&self, index: u64) {
        self.applied_index.send_replace(index);
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

/// Format of the snapshot body; bumped if [`ClusterState`]'s encoding
/// changes. 2: the state gained its Kubernetes view (the last field); 3:
/// and then its NetworkPolicies; 4: and then the request digests; 5: and
/// then the trust state (revocations, join tokens).
const SNAPSHOT_FORMAT_VERSION: u16 = 5;

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    format_version: u16,
    state: ClusterState,
}

/// The format number alone: the first field of every body.
#[derive(Deserialize)]
struct SnapshotFormat {
    format_version: u16,
}

/// A format-1 body (written by releases before the Kubernetes view).
#[derive(Deserialize)]
struct SnapshotBodyV1 {
    #[allow(dead_code)]
    format_version: u16,
    state: crate::state::StateV1,
}

/// A format-2 body (written by releases before NetworkPolicies).
#[derive(Deserialize)]
struct SnapshotBodyV2 {
    #[allow(dead_code)]
    format_version: u16,
    state: crate::state::StateV2,
}

/// A format-3 body (written by releases before request digests).
#[derive(Deserialize)]
struct SnapshotBodyV3 {
    #[allow(dead_code)]
    format_version: u16,
    state: crate::state::StateV3,
}

/// A format-4 body (written by releases before the trust state).
#[derive(Deserialize)]
struct SnapshotBodyV4 {
    #[allow(dead_code)]
    format_version: u16,
    state: crate::state::StateV4,
}

/// Makes snapshot ids unique within a process (with term and index, globally).
static SNAPSHOT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct StateMachineStore<B: KvBackend, A: Applier = ClusterStateApply> {
    backend: B,
    shared: SharedState,
    /// Applies each request to the projection.
    applier: A,
    /// Makes the snapshot flushes off the async workers; `None`: inline.
    flusher: Option<Flusher>,
}

impl<B: KvBackend> StateMachineStore<B> {
    /// Opens the state machine, loading the last snapshot if there is one.
    /// Snapshot writes flush inline.
    pub fn open(backend: B) -> Result<Self, StorageError<NodeId>> {
        Self::open_with(backend, ClusterStateApply, None)
    }
}

impl<B: KvBackend, A: Applier> StateMachineStore<B, A> {
    /// Opens the state machine with `applier`, and snapshot flushes made by
    /// `flusher` if given; loads the last snapshot if there is one.
    pub fn open_with(
        backend: B,
        applier: A,
        flusher: Option<Flusher>,
    ) -> Result<Self, StorageError<NodeId>> {
        let store = Self {
            backend,
            shared: SharedState::new(),
            applier,
            flusher,
        };
        if let Some(stored) = store.read_stored_snapshot()? {
            store.load(&stored.meta, &stored.data)?;
        }
        Ok(store)
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn read_stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        let subject = ErrorSubject::Snapshot(None);
        match self.backend.get(Tree::StateMachine, KEY_SNAPSHOT) {
            Ok(Some(bytes)) => {
                self.shared
                    .snapshot_bytes
                    .store(bytes.len() as u64, Ordering::Relaxed);
                decode(&bytes, subject).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(StorageError::IO {
                source: openraft::StorageIOError::read_snapshot(None, &e),
            }),
        }
    }

    /// Stores the snapshot; durable before it returns.
    async fn write_stored_snapshot(
        &self,
        stored: &StoredSnapshot,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = stored.meta.signature();
        let bytes = encode(stored, ErrorSubject::Snapshot(Some(signature.clone())))?;
        let size = bytes.len() as u64;
        let write_error = |e: &dyn std::fmt::Display| StorageError::IO {
            source: openraft::StorageIOError::write_snapshot(
                Some(signature.clone()),
                &std::io::Error::other(e.to_string()),
            ),
        };
        let durability = match self.flusher {
            Some(_) => Durability::Lazy,
            None => Durability::Flush,
        };
        self.backend
            .write(
                Tree::StateMachine,
                vec![WriteOp::Put(KEY_SNAPSHOT.to_vec(), bytes)],
                durability,
            )
            .map_err(|e| write_error(&e))?;
        if let Some(flusher) = &self.flusher {
            flusher
                .flush()
                .await
                .map_err(|e| write_error(&e))?
                .map_err(|e| write_error(&e))?;
        }
        self.shared.snapshot_bytes.store(size, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the projection with a snapshot's.
    fn load(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let format: SnapshotFormat = decode(data, subject())?;
        let state = match format.format_version {
            SNAPSHOT_FORMAT_VERSION => decode::<SnapshotBody>(data, subject())?.state,
            1 => ClusterState::from(decode::<SnapshotBodyV1>(data, subject())?.state),
            2 => ClusterState::from(decode::<SnapshotBodyV2>(data, subject())?.state),
            3 => ClusterState::from(decode::<SnapshotBodyV3>(data, subject())?.state),
            4 => ClusterState::from(decode::<SnapshotBodyV4>(data, subject())?.state),
            other => {
                return Err(StorageError::IO {
                    source: openraft::StorageIOError::read_snapshot(
                        Some(meta.signature()),
                        &std::io::Error::other(format!(
                            "snapshot format {other} is not supported (1 to {SNAPSHOT_FORMAT_VERSION})"
                        )),
                    ),
                });
            }
        };
        let index = {
            let mut projection = self.shared.write();
            projection.last_applied = meta.last_log_id;
            projection.last_membership = meta.last_membership.clone();
            projection.state = state;
            projection.applied_index()
        };
        self.shared.publish(index);
        Ok(())
    }
}

impl<B: KvBackend, A: Applier> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<B, A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, data) = {
            let projection = self.shared.read();
            let sequence = SNAPSHOT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match projection.last_applied {
                Some(last) => format!("{}-{}-{sequence}", last.leader_id, last.index),
                None => format!("--{sequence}"),
            };
            let meta = SnapshotMeta {
                last_log_id: projection.last_applied,
                last_membership: projection.last_membership.clone(),
                snapshot_id,
            };
            let body = SnapshotBody {
                format_version: SNAPSHOT_FORMAT_VERSION,
                state: projection.state.clone(),
            };
            let data = encode(&body, ErrorSubject::Snapshot(Some(meta.signature())))?;
            (meta, data)
        };
        let stored = StoredSnapshot { meta, data };
        self.write_stored_snapshot(&stored).await?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<B: KvBackend, A: Applier> RaftStateMachine<TypeConfig> for StateMachineStore<B, A> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>>
    {
        let projection = self.shared.read();
        Ok((projection.last_applied, projection.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut archive: Vec<ArchiveRecord> = Vec::new();
        let index = {
            let mut projection = self.shared.write();
            for entry in entries {
                let index = entry.log_id.index;
                assert!(
                    projection
                        .last_applied
                        .is_none_or(|last| last.index < index),
                    "entries must be applied in increasing index order"
                );
                projection.last_applied = Some(entry.log_id);
                let applied = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(payload) => payload
                        .requests
                        .iter()
                        .enumerate()
                        .map(|(position, request)| {
                            let before = projection.state.audit_count;
                            let applied = self.applier.apply(
                                &mut projection.state,
                                index,
                                position as u32,
                                request,
                            );
                            // A new request (not a repeat) extends the chain:
                            // archive it with the chain head it produced.
                            if projection.state.audit_count != before {
                                let record = ArchiveRecord {
                                    request: request.clone(),
                                    applied: applied.clone(),
                                    sequence: projection.state.audit_count,
                                    chain: projection.state.audit_head.clone(),
                                };
                                archive.push(record);
                            }
                            applied
                        })
                        .collect(),
                    EntryPayload::Membership(membership) => {
                        projection.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        Vec::new()
                    }
                };
                responses.push(Response { index, applied });
            }
            projection.applied_index()
        };
        if !archive.is_empty() {
            let mut ops = Vec::with_capacity(archive.len());
            for record in &archive {
                ops.push(WriteOp::Put(
                    record_key(record.sequence).to_vec(),
                    encode(record, ErrorSubject::StateMachine)?,
                ));
            }
            // Written with the entries' flush: the log stays the durable
            // source until a snapshot lets it be purged, and every flush
            // (the next append's, or the snapshot's) covers these writes.
            self.backend
                .write(Tree::Audit, ops, Durability::Lazy)
                .map_err(|e| StorageError::IO {
                    source: openraft::StorageIOError::write_state_machine(&e),
                })?;
        }
        if self.shared.records.receiver_count() > 0 {
            for record in archive {
                let _ = self.shared.records.send(Arc::new(record));
            }
        }
        self.shared.publish(index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        // Validate by loading before persisting: a snapshot that cannot be
        // decoded is refused and the old one stays.
        self.load(&stored.meta, &stored.data)?;
        self.write_stored_snapshot(&stored).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.read_stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

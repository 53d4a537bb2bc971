//! Storage: openraft's log and state machine traits implemented once over
//! the [`KvBackend`] trait, with sled and in-memory backends.
//!
//! # Layout
//!
//! - [`backend`]: the [`KvBackend`] trait (ordered trees, atomic batches,
//!   explicit flush), [`SledBackend`] (production) and [`MemoryBackend`]
//!   (simulation, tests).
//! - [`flusher`]: the thread that makes every fsync of a node's stores, off
//!   openraft's async workers; appends are group-committed through it.
//! - [`log_store`]: openraft's `RaftLogStorage`: entries, vote, committed
//!   and purge points; durable before acknowledged.
//! - [`state_machine`]: openraft's `RaftStateMachine`: applies committed
//!   entries to [`crate::state::ClusterState`] through an [`Applier`],
//!   archives each new request with its outcome, snapshots, and shares the
//!   projection with readers ([`SharedState`]).
//! - this file: opening the stores together, and reading and pruning the
//!   audit archive.
//!
//! In the two request paths (see the crate root): an entry reaches
//! [`LogStore`] `append` on every replica and is acknowledged once flushed;
//! once committed, [`StateMachineStore`] `apply` feeds it to the projection
//! and publishes the new applied index, which the node API (read-your-writes)
//! and the reconciler wait on.

// openraft's traits fix `StorageError` (large) as the error type; boxing it
// in our helpers would only add conversions at every trait method.
#![allow(clippy::result_large_err)]

pub mod backend;
pub mod flusher;
pub mod log_store;
pub mod state_machine;

use std::path::Path;

pub use backend::{
    BackendError, Durability, KeyValue, KvBackend, MemoryBackend, SledBackend, Tree, WriteOp,
};
pub use flusher::{Flusher, MAX_APPENDS_PER_FLUSH, MAX_FLUSHES_QUEUED};
pub use log_store::LogStore;
pub use state_machine::{Applier, ClusterStateApply, Projection, SharedState, StateMachineStore};

use crate::audit::{record_key, ArchiveRecord};
use crate::entry::NodeId;
use crate::error::Error;

/// The log store and the state machine store of one node, on one backend.
pub type Stores<B, A = ClusterStateApply> = (LogStore<B>, StateMachineStore<B, A>);

/// Opens both stores on one backend; durable writes flush inline
/// (deterministic: no thread of their own).
pub fn open_stores<B: KvBackend>(
    backend: B,
) -> Result<(LogStore<B>, StateMachineStore<B>), openraft::StorageError<NodeId>> {
    open_stores_with(backend, ClusterStateApply)
}

/// [`open_stores`] with the requests applied by `applier` (the simulation's
/// seam for a deliberately broken projection).
pub fn open_stores_with<B: KvBackend, A: Applier>(
    backend: B,
    applier: A,
) -> Result<Stores<B, A>, openraft::StorageError<NodeId>> {
    let state_machine = StateMachineStore::open_with(backend.clone(), applier, None)?;
    Ok((LogStore::new(backend), state_machine))
}

/// Opens both stores on one backend, with every fsync made by one flusher
/// thread: appends group-committed, votes, purges and snapshots awaited
/// (what a node runs).
pub fn open_stores_group_commit<B: KvBackend>(
    backend: B,
) -> Result<(LogStore<B>, StateMachineStore<B>), openraft::StorageError<NodeId>> {
    let flusher = Flusher::spawn(backend.clone()).map_err(|e| openraft::StorageError::IO {
        source: openraft::StorageIOError::write_logs(&e),
    })?;
    let state_machine =
        StateMachineStore::open_with(backend.clone(), ClusterStateApply, Some(flusher.clone()))?;
    Ok((LogStore::with_flusher(backend, flusher), state_machine))
}

/// Opens a sled database in `dir`.
pub fn open_sled(dir: &Path) -> Result<SledBackend, BackendError> {
    SledBackend::open(dir)
}

/// Every record of the audit archive, in chain order. A record that does not
/// decode is an error naming its sequence (the archive was damaged).
///
/// Returns the error as text: `romana-node` hands it on as one.
pub fn read_archive<B: KvBackend>(backend: &B) -> Result<Vec<ArchiveRecord>, String> {
    archive_records(backend).map_err(|e| e.to_string())
}

/// [`read_archive`], with the typed error.
pub fn archive_records<B: KvBackend>(backend: &B) -> Result<Vec<ArchiveRecord>, Error> {
    archive_records_after(backend, 0)
}

/// The records after sequence `after` (all of them for 0), in chain order.
pub fn archive_records_after<B: KvBackend>(
    backend: &B,
    after: u64,
) -> Result<Vec<ArchiveRecord>, Error> {
    let start = if after == 0 {
        Vec::new()
    } else {
        record_key(after.saturating_add(1)).to_vec()
    };
    let pairs = backend
        .range(Tree::Audit, &start, None)
        .map_err(|e| Error::ArchiveUnreadable {
            reason: e.to_string(),
        })?;
    pairs
        .iter()
        .map(|(key, value)| {
            let sequence = key
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            bincode::deserialize(value).map_err(|e| Error::ArchiveRecordCorrupt {
                sequence,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The sequence of the archive's last record (0 if it is empty).
pub fn last_archive_sequence<B: KvBackend>(backend: &B) -> Result<u64, Error> {
    let last = backend
        .last(Tree::Audit)
        .map_err(|e| Error::ArchiveUnreadable {
            reason: e.to_string(),
        })?;
    Ok(last
        .and_then(|(key, _)| key.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// Deletes the audit records of requests stamped before `before_ms`; how
/// many. Records are in time order (the proposer's clock, per request), so
/// the oldest go first.
pub fn prune_archive<B: KvBackend>(backend: &B, before_ms: u64) -> Result<usize, Error> {
    let records = archive_records(backend)?;
    let doomed: Vec<WriteOp> = records
        .iter()
        .filter(|r| r.request.meta.timestamp_ms < before_ms)
        .map(|r| WriteOp::Delete(record_key(r.sequence).to_vec()))
        .collect();
    let count = doomed.len();
    if count > 0 {
        backend
            .write(Tree::Audit, doomed, Durability::Flush)
            .map_err(|e| Error::ArchivePrune {
                reason: e.to_string(),
            })?;
    }
    Ok(count)
}

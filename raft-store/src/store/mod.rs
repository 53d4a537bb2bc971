//! Storage: openraft's log and state machine traits implemented once over
//! the [`KvBackend`] trait, with sled and in-memory backends.

// openraft's traits fix `StorageError` (large) as the error type; boxing it
// in our helpers would only add conversions at every trait method.
#![allow(clippy::result_large_err)]

pub mod backend;
pub mod log_store;
pub mod state_machine;

use std::path::Path;

pub use backend::{
    BackendError, Durability, KeyValue, KvBackend, MemoryBackend, SledBackend, Tree, WriteOp,
};
pub use log_store::{LogStore, MAX_APPENDS_PER_FLUSH};
pub use state_machine::{Projection, Response, SharedState, StateMachineStore};

use crate::NodeId;

/// Opens both stores on one backend; appends flush inline (deterministic:
/// no thread of their own).
pub fn open_stores<B: KvBackend>(
    backend: B,
) -> Result<(LogStore<B>, StateMachineStore<B>), openraft::StorageError<NodeId>> {
    let state_machine = StateMachineStore::open(backend.clone())?;
    Ok((LogStore::new(backend), state_machine))
}

/// Opens both stores on one backend, with appends group-committed by a
/// flusher thread (what a node runs).
pub fn open_stores_group_commit<B: KvBackend>(
    backend: B,
) -> Result<(LogStore<B>, StateMachineStore<B>), openraft::StorageError<NodeId>> {
    let state_machine = StateMachineStore::open(backend.clone())?;
    Ok((LogStore::with_group_commit(backend)?, state_machine))
}

/// Opens a sled database in `dir`.
pub fn open_sled(dir: &Path) -> Result<SledBackend, BackendError> {
    SledBackend::open(dir)
}

/// Every record of the audit archive, in chain order. A record that does not
/// decode is an error naming its sequence (the archive was damaged).
pub fn read_archive<B: KvBackend>(backend: &B) -> Result<Vec<crate::audit::ArchiveRecord>, String> {
    let pairs = backend
        .range(Tree::Audit, &[], None)
        .map_err(|e| format!("cannot read the audit archive: {e}"))?;
    pairs
        .iter()
        .map(|(key, value)| {
            let sequence = key
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            bincode::deserialize(value)
                .map_err(|e| format!("audit record {sequence} does not decode: {e}"))
        })
        .collect()
}

/// Deletes the audit records of requests stamped before `before_ms`; how
/// many. Records are in time order (the proposer's clock, per request), so
/// the oldest go first.
pub fn prune_archive<B: KvBackend>(backend: &B, before_ms: u64) -> Result<usize, String> {
    let records = read_archive(backend)?;
    let doomed: Vec<WriteOp> = records
        .iter()
        .filter(|r| r.request.meta.timestamp_ms < before_ms)
        .map(|r| WriteOp::Delete(crate::audit::record_key(r.sequence).to_vec()))
        .collect();
    let count = doomed.len();
    if count > 0 {
        backend
            .write(Tree::Audit, doomed, Durability::Flush)
            .map_err(|e| format!("cannot prune the audit archive: {e}"))?;
    }
    Ok(count)
}

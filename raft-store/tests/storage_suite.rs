//! openraft's storage conformance suite, run against both backends: sled in a
//! temporary directory (the production store, both with inline flushes and
//! with the flusher thread a node runs) and memory (the simulation's).

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_store::store::{
    open_stores, open_stores_group_commit, LogStore, MemoryBackend, SledBackend, StateMachineStore,
};
use raft_store::{NodeId, TypeConfig};

/// How a builder opens the stores over a fresh sled directory.
type OpenSled =
    fn(
        SledBackend,
    )
        -> Result<(LogStore<SledBackend>, StateMachineStore<SledBackend>), StorageError<NodeId>>;

/// sled in a temporary directory, opened with `open`: inline flushes
/// (`open_stores`) or every fsync on the flusher thread, as a node opens it
/// (`open_stores_group_commit`).
struct SledBuilder {
    open: OpenSled,
}

impl
    StoreBuilder<
        TypeConfig,
        LogStore<SledBackend>,
        StateMachineStore<SledBackend>,
        tempfile::TempDir,
    > for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<SledBackend>,
            StateMachineStore<SledBackend>,
        ),
        StorageError<NodeId>,
    > {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = SledBackend::open(dir.path()).expect("open sled");
        let (log, state_machine) = (self.open)(backend)?;
        Ok((dir, log, state_machine))
    }
}

struct MemoryBuilder;

impl StoreBuilder<TypeConfig, LogStore<MemoryBackend>, StateMachineStore<MemoryBackend>, ()>
    for MemoryBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            (),
            LogStore<MemoryBackend>,
            StateMachineStore<MemoryBackend>,
        ),
        StorageError<NodeId>,
    > {
        let (log, state_machine) = open_stores(MemoryBackend::new())?;
        Ok(((), log, state_machine))
    }
}

#[test]
fn sled_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(SledBuilder { open: open_stores }) {
        panic!("sled store failed the suite: {e}");
    }
}

#[test]
fn sled_store_with_the_flusher_thread_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(SledBuilder {
        open: open_stores_group_commit,
    }) {
        panic!("sled store with group commit failed the suite: {e}");
    }
}

#[test]
fn memory_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(MemoryBuilder) {
        panic!("memory store failed the suite: {e}");
    }
}

//! openraft's storage conformance suite, run against both backends: sled in a
//! temporary directory (the production store, both with inline flushes and
//! with the flusher thread a node runs) and memory (the simulation's).

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_store::store::{
    open_stores, open_stores_group_commit, LogStore, MemoryBackend, SledBackend, StateMachineStore,
};
use raft_store::{NodeId, TypeConfig};

struct SledBuilder;

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
        let (log, state_machine) = open_stores(backend)?;
        Ok((dir, log, state_machine))
    }
}

/// sled with every fsync on the flusher thread, as a node opens it.
struct SledGroupCommitBuilder;

impl
    StoreBuilder<
        TypeConfig,
        LogStore<SledBackend>,
        StateMachineStore<SledBackend>,
        tempfile::TempDir,
    > for SledGroupCommitBuilder
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
        let (log, state_machine) = open_stores_group_commit(backend)?;
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
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("sled store failed the suite: {e}");
    }
}

#[test]
fn sled_store_with_the_flusher_thread_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(SledGroupCommitBuilder) {
        panic!("sled store with group commit failed the suite: {e}");
    }
}

#[test]
fn memory_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(MemoryBuilder) {
        panic!("memory store failed the suite: {e}");
    }
}

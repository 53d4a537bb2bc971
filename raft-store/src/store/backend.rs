//! The storage backend trait and its two implementations.
//!
//! The Raft log store and the state machine store are written once, against
//! [`KvBackend`]: a handful of ordered key-value trees with atomic batches
//! and an explicit flush. [`SledBackend`] is the production backend;
//! [`MemoryBackend`] keeps everything in memory and is what the simulation
//! uses. A `MemoryBackend` clone shares its data, so a simulated crash that
//! drops a node but keeps the backend keeps its "durable" state.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The trees the stores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tree {
    /// Raft log entries by index (big-endian u64 keys, so order is index order).
    Log,
    /// Raft metadata: vote, committed, last purged log id; node identity.
    Meta,
    /// The state machine's current snapshot.
    StateMachine,
    /// The audit archive: every applied request with its outcome, kept
    /// after the log is purged.
    Audit,
}

impl Tree {
    fn name(self) -> &'static str {
        match self {
            Tree::Log => "log",
            Tree::Meta => "meta",
            Tree::StateMachine => "state-machine",
            Tree::Audit => "audit",
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Delete every key in `[from, to)`; `to = None` means to the end.
    DeleteRange {
        from: Vec<u8>,
        to: Option<Vec<u8>>,
    },
}

/// Whether a write must reach stable storage before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed before returning: log appends, votes, snapshots, purges.
    Flush,
    /// Written, flushed with the next durable write or by the backend's own
    /// background flush. Used for data Raft can re-derive (the committed id).
    Lazy,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(String);

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An ordered key-value store with atomic batches.
pub trait KvBackend: Clone + Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Applies `ops` to `tree` atomically.
    fn write(
        &self,
        tree: Tree,
        ops: Vec<WriteOp>,
        durability: Durability,
    ) -> Result<(), BackendError>;
    /// Key-value pairs with keys in `[from, to)` (`to = None`: to the end), in key order.
    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Vec<KeyValue>, BackendError>;
    /// The pair with the greatest key.
    fn last(&self, tree: Tree) -> Result<Option<KeyValue>, BackendError>;
    /// Makes every write made so far durable.
    fn flush(&self) -> Result<(), BackendError>;
}

/// sled, one tree per [`Tree`].
#[derive(Clone)]
pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    state_machine: sled::Tree,
    audit: sled::Tree,
}

/// sled's page cache (`romana-node bench --memory` measures the effect).
pub const SLED_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl SledBackend {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let db = sled::Config::new()
            .path(path)
            // Our own flushes give durability; sled's timer flush is a backstop.
            .flush_every_ms(Some(1000))
            // sled's page cache defaults to 1 GiB and keeps what was ever
            // read or written (the audit archive grows with every record):
            // a node's resident set grew past 230 MiB over 100,000 log
            // entries. Reads are of recent entries; a small cache is enough.
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|e| {
                BackendError(format!(
                    "cannot open sled database at {}: {e}",
                    path.display()
                ))
            })?;
        let open_tree = |tree: Tree| {
            db.open_tree(tree.name())
                .map_err(|e| BackendError(format!("cannot open tree {}: {e}", tree.name())))
        };
        Ok(Self {
            log: open_tree(Tree::Log)?,
            meta: open_tree(Tree::Meta)?,
            state_machine: open_tree(Tree::StateMachine)?,
            audit: open_tree(Tree::Audit)?,
            db,
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Log => &self.log,
            Tree::Meta => &self.meta,
            Tree::StateMachine => &self.state_machine,
            Tree::Audit => &self.audit,
        }
    }
}

fn sled_error(e: sled::Error) -> BackendError {
    BackendError(format!("sled: {e}"))
}

impl KvBackend for SledBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(sled_error)?
            .map(|v| v.to_vec()))
    }

    fn write(
        &self,
        tree: Tree,
        ops: Vec<WriteOp>,
        durability: Durability,
    ) -> Result<(), BackendError> {
        let sled_tree = self.tree(tree);
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                WriteOp::Put(key, value) => batch.insert(key, value),
                WriteOp::Delete(key) => batch.remove(key),
                WriteOp::DeleteRange { from, to } => {
                    let range = match &to {
                        Some(to) => sled_tree.range(from.as_slice()..to.as_slice()),
                        None => sled_tree.range(from.as_slice()..),
                    };
                    for item in range.keys() {
                        batch.remove(item.map_err(sled_error)?);
                    }
                }
            }
        }
        sled_tree.apply_batch(batch).map_err(sled_error)?;
        if durability == Durability::Flush {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.flush().map(|_| ()).map_err(sled_error)
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Vec<KeyValue>, BackendError> {
        let sled_tree = self.tree(tree);
        let iter = match to {
            Some(to) => sled_tree.range(from..to),
            None => sled_tree.range(from..),
        };
        iter.map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(sled_error)
        })
        .collect()
    }

    fn last(&self, tree: Tree) -> Result<Option<KeyValue>, BackendError> {
        Ok(self
            .tree(tree)
            .last()
            .map_err(sled_error)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
}

type MemoryTrees = BTreeMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Everything in memory; clones share the data.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    trees: Arc<Mutex<MemoryTrees>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryTrees) -> T) -> T {
        // A poisoned lock means a panic while holding it; the maps are still
        // structurally valid, so carry on with them.
        let mut guard = self
            .trees
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

fn range_bounds<'a>(from: &'a [u8], to: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(from),
        match to {
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        },
    )
}

impl KvBackend for MemoryBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.with(|trees| trees.get(&tree).and_then(|t| t.get(key).cloned())))
    }

    fn write(
        &self,
        tree: Tree,
        ops: Vec<WriteOp>,
        _durability: Durability,
    ) -> Result<(), BackendError> {
        self.with(|trees| {
            let t = trees.entry(tree).or_default();
            for op in ops {
                match op {
                    WriteOp::Put(key, value) => {
                        t.insert(key, value);
                    }
                    WriteOp::Delete(key) => {
                        t.remove(&key);
                    }
                    WriteOp::DeleteRange { from, to } => {
                        let doomed: Vec<Vec<u8>> = t
                            .range::<[u8], _>(range_bounds(&from, to.as_deref()))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in doomed {
                            t.remove(&key);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn range(
        &self,
        tree: Tree,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Vec<KeyValue>, BackendError> {
        Ok(self.with(|trees| {
            trees
                .get(&tree)
                .map(|t| {
                    t.range::<[u8], _>(range_bounds(from, to))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn last(&self, tree: Tree) -> Result<Option<KeyValue>, BackendError> {
        Ok(self.with(|trees| {
            trees
                .get(&tree)
                .and_then(|t| t.iter().next_back().map(|(k, v)| (k.clone(), v.clone())))
        }))
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

//! openraft's `RaftLogStorage` over a [`KvBackend`].
//!
//! Durable before acknowledged: an append, a truncate, a purge and a vote are
//! flushed before openraft is told they are done. Only the committed log id
//! is written lazily: openraft re-derives it from a quorum if it is lost.
//!
//! With a [`Flusher`] ([`LogStore::with_group_commit`], what a node runs)
//! no fsync runs on openraft's async tasks. Appends are group-committed:
//! `append` writes the entries and hands openraft's completion callback to
//! the flusher thread, which completes it after the flush that covers it;
//! openraft meanwhile goes on appending (its storage-v2 API is built for
//! this), so under load one fsync covers many appends instead of one each.
//! A vote, a truncation and a purge are written, then awaited until the
//! flusher's next flush covers them, before they return.
//!
//! With [`LogStore::new`] (no flusher: the simulation's mode on the
//! in-memory backend, where threads would break determinism and a flush
//! costs nothing) every durable write flushes inline before it returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::backend::{Durability, KvBackend, Tree, WriteOp};
use super::flusher::Flusher;
use crate::entry::NodeId;
use crate::raft::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log and its metadata.
#[derive(Clone)]
pub struct LogStore<B: KvBackend> {
    backend: B,
    /// Makes the flushes off the async workers; `None`: flush inline.
    flusher: Option<Flusher>,
}

fn index_key(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::error(e.to_string())),
    }
}

pub(crate) fn encode<T: Serialize>(
    value: &T,
    subject: ErrorSubject<NodeId>,
) -> Result<Vec<u8>, StorageError<NodeId>> {
    bincode::serialize(value).map_err(|e| io_error(subject, ErrorVerb::Write, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    subject: ErrorSubject<NodeId>,
) -> Result<T, StorageError<NodeId>> {
    bincode::deserialize(bytes).map_err(|e| io_error(subject, ErrorVerb::Read, e))
}

impl<B: KvBackend> LogStore<B> {
    /// Each append flushes before it returns.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            flusher: None,
        }
    }

    /// Appends are flushed in groups, and every other durable write too,
    /// by a flusher thread of its own.
    pub fn with_group_commit(backend: B) -> Result<Self, StorageError<NodeId>> {
        let flusher = Flusher::spawn(backend.clone())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(Self::with_flusher(backend, flusher))
    }

    /// Durable writes go through `flusher` (which may be shared with the
    /// state machine).
    pub fn with_flusher(backend: B, flusher: Flusher) -> Self {
        Self {
            backend,
            flusher: Some(flusher),
        }
    }

    /// Writes `ops`; durable before it returns. With a flusher the write is
    /// lazy and the flusher's next flush is awaited, so no fsync runs here.
    async fn write_durable(
        &self,
        tree: Tree,
        ops: Vec<WriteOp>,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> Result<(), StorageError<NodeId>> {
        let durability = match self.flusher {
            Some(_) => Durability::Lazy,
            None => Durability::Flush,
        };
        self.backend
            .write(tree, ops, durability)
            .map_err(|e| io_error(subject.clone(), verb, e))?;
        if let Some(flusher) = &self.flusher {
            flusher
                .flush()
                .await
                .map_err(|e| io_error(subject.clone(), verb, e))?
                .map_err(|e| io_error(subject, verb, e))?;
        }
        Ok(())
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.backend.get(Tree::Meta, key) {
            Ok(Some(bytes)) => decode(&bytes, subject).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(io_error(subject, ErrorVerb::Read, e)),
        }
    }

    /// A durable metadata write (vote, purge point).
    async fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(value, subject.clone())?;
        let ops = vec![WriteOp::Put(key.to_vec(), bytes)];
        self.write_durable(Tree::Meta, ops, subject, ErrorVerb::Write)
            .await
    }

    /// A metadata write that may be lost (the committed id).
    fn write_meta_lazy<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(value, subject.clone())?;
        self.backend
            .write(
                Tree::Meta,
                vec![WriteOp::Put(key.to_vec(), bytes)],
                Durability::Lazy,
            )
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }

    async fn delete_logs(&self, from: u64, to: Option<u64>) -> Result<(), StorageError<NodeId>> {
        let op = WriteOp::DeleteRange {
            from: index_key(from),
            to: to.map(index_key),
        };
        self.write_durable(Tree::Log, vec![op], ErrorSubject::Logs, ErrorVerb::Delete)
            .await
    }
}

impl<B: KvBackend> RaftLogReader<TypeConfig> for LogStore<B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let from = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(x) => x.checked_add(1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        if to.is_some_and(|to| to <= from) {
            return Ok(Vec::new());
        }
        let to_key = to.map(index_key);
        let pairs = self
            .backend
            .range(Tree::Log, &index_key(from), to_key.as_deref())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        pairs
            .iter()
            .map(|(key, value)| {
                let entry: Entry = decode(value, ErrorSubject::Logs)?;
                // Invariant checked where read as well as where written.
                assert_eq!(
                    key.as_slice(),
                    index_key(entry.log_id.index).as_slice(),
                    "log entry stored under the wrong index"
                );
                Ok(entry)
            })
            .collect()
    }
}

impl<B: KvBackend> RaftLogStorage<TypeConfig> for LogStore<B> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.read_meta(KEY_LAST_PURGED, ErrorSubject::Store)?;
        let last = self
            .backend
            .last(Tree::Log)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((_, value)) => Some(decode::<Entry>(&value, ErrorSubject::Logs)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_VOTE, vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Lazy: losing it only means openraft re-applies fewer entries at
        // start-up and learns the rest from the leader.
        self.write_meta_lazy(KEY_COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut ops = Vec::new();
        for entry in entries {
            ops.push(WriteOp::Put(
                index_key(entry.log_id.index),
                encode(&entry, ErrorSubject::Logs)?,
            ));
        }
        let durability = match self.flusher {
            Some(_) => Durability::Lazy,
            None => Durability::Flush,
        };
        let result = self
            .backend
            .write(Tree::Log, ops, durability)
            .map_err(|e| std::io::Error::other(e.to_string()));
        if let (Some(flusher), Ok(())) = (&self.flusher, &result) {
            // Completed by the flusher after the flush that covers it.
            return flusher
                .complete_after_flush(callback)
                .await
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e));
        }
        let storage_result = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e));
        callback.log_io_completed(result);
        storage_result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.delete_logs(log_id.index, None).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash between the two writes leaves
        // entries below it, which readers never ask for.
        self.write_meta(KEY_LAST_PURGED, &log_id, ErrorSubject::Store)
            .await?;
        self.delete_logs(0, log_id.index.checked_add(1)).await
    }
}

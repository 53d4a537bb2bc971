//! The flusher: one thread that makes the backend's fsyncs, so that none
//! runs on an async worker of openraft's runtime.
//!
//! Stores hand it two kinds of request over a bounded channel: an append's
//! completion callback, completed after the flush that covers the append
//! (group commit), and a plain "flush, then tell me" for the other writes
//! that must be durable before they are acknowledged (a vote, a truncation,
//! a purge, a snapshot). The thread takes every request waiting (up to
//! [`MAX_APPENDS_PER_FLUSH`]), makes one flush, then answers them in order:
//! under load one fsync covers many writes.
//!
//! Nothing here is used by the simulation, whose stores flush inline (on the
//! in-memory backend, where a flush costs nothing): a thread of its own
//! would break determinism.

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};

use super::backend::KvBackend;
use crate::raft::TypeConfig;

/// Longest run of requests one flush may cover: bounds how long the first
/// caller in a group waits behind the others.
pub const MAX_APPENDS_PER_FLUSH: usize = 1024;

/// Most requests waiting for the flusher at once. A store that finds the
/// queue full waits (asynchronously) for room: backpressure on openraft
/// instead of unbounded memory when the disk is slower than the appends.
pub const MAX_FLUSHES_QUEUED: usize = 4 * MAX_APPENDS_PER_FLUSH;

/// The flusher thread is gone (it panicked, or the process is ending).
#[derive(Debug, thiserror::Error)]
#[error("the log flusher thread is gone")]
pub struct FlusherGone;

/// What a store asks of the flusher.
enum FlushRequest {
    /// An append's completion callback: completed after the flush.
    Append(LogFlushed<TypeConfig>),
    /// Writes already made that must be durable: answered after the flush,
    /// with its error as text.
    Sync(oneshot::Sender<Result<(), String>>),
}

/// A handle to the flusher thread; clones share it. The thread ends when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Flusher {
    requests: mpsc::Sender<FlushRequest>,
}

impl Flusher {
    /// Starts the flusher thread over `backend`.
    pub fn spawn<B: KvBackend>(backend: B) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(MAX_FLUSHES_QUEUED);
        std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || run(backend, receiver))?;
        Ok(Self { requests: sender })
    }

    /// Hands an append's callback over, to be completed after the flush that
    /// covers the entries already written.
    pub async fn complete_after_flush(
        &self,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), FlusherGone> {
        self.requests
            .send(FlushRequest::Append(callback))
            .await
            .map_err(|_| FlusherGone)
    }

    /// Returns once every write made before the call is durable.
    pub async fn flush(&self) -> Result<Result<(), String>, FlusherGone> {
        let (done, wait) = oneshot::channel();
        self.requests
            .send(FlushRequest::Sync(done))
            .await
            .map_err(|_| FlusherGone)?;
        wait.await.map_err(|_| FlusherGone)
    }
}

/// The thread: flush once, answer every waiting request.
fn run<B: KvBackend>(backend: B, mut requests: mpsc::Receiver<FlushRequest>) {
    // Ends when every handle (and so every sender) is gone.
    while let Some(first) = requests.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_APPENDS_PER_FLUSH {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let result = backend.flush().map_err(|e| e.to_string());
        for request in group {
            match request {
                FlushRequest::Append(callback) => {
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                FlushRequest::Sync(done) => {
                    // The asker may have given up (its task was cancelled):
                    // nothing to tell then.
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

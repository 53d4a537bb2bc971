//! Group requests into log entries.
//!
//! openraft 0.9 appends, flushes and applies every `client_write` on its own.
//! Requests that reach the leader while earlier ones are being committed
//! wait here and go into the next entry together, so a burst of N requests
//! costs one append, one flush and one replication round instead of N. With
//! one client nothing waits and each request goes alone.
//!
//! A request whose id the leader's projection already holds is answered
//! from it and never becomes an entry: the same request gets its first
//! outcome, a different one under the same id is refused (409).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use raft_store::entry::{encoded_size, MAX_ENTRY_BYTES, MAX_REQUESTS_PER_ENTRY};
use raft_store::state::AppliedRequest;
use raft_store::store::SharedState;
use raft_store::{ClusterRequest, LogPayload, Raft};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::api_error::ApiError;

/// Entries being committed at once. More than one lets the next entry be
/// appended while the previous one replicates.
pub const MAX_ENTRIES_IN_FLIGHT: usize = 2;

/// Requests waiting for an entry; a full queue makes callers wait.
pub const MAX_QUEUED_REQUESTS: usize = 4096;

type Reply = oneshot::Sender<Result<AppliedRequest, ApiError>>;

/// The sending half: where the write path hands requests to the batcher.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<(ClusterRequest, Reply)>,
}

impl Batcher {
    /// Starts the batching task for `raft`. Each entry is given
    /// `write_timeout` to commit.
    pub fn start(
        raft: Raft,
        shared: SharedState,
        write_timeout: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_REQUESTS);
        tokio::spawn(run(raft, shared, receiver, write_timeout, metrics));
        Self { queue }
    }

    /// Commits `request` (in some entry) if this node leads. `Misdirected`
    /// if it does not; `Unavailable` if no quorum commits it in time.
    pub async fn write(&self, request: ClusterRequest) -> Result<AppliedRequest, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?
    }
}

/// The answer for `request` from the projection alone, if it has one: its
/// id's recorded outcome, or the refusal of a reused id.
pub fn decided_without_entry(
    shared: &SharedState,
    request: &ClusterRequest,
) -> Option<Result<AppliedRequest, ApiError>> {
    let projection = shared.read();
    match projection.state.previous_outcome(request) {
        Ok(Some(previous)) => Some(Ok(previous.clone())),
        Ok(None) => None,
        Err(rejection) => Some(Err(ApiError::from_rejection(&rejection))),
    }
}

async fn run(
    raft: Raft,
    shared: SharedState,
    mut receiver: mpsc::Receiver<(ClusterRequest, Reply)>,
    write_timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    let decided = |(request, reply): (ClusterRequest, Reply)| match decided_without_entry(
        &shared, &request,
    ) {
        Some(answer) => {
            let _ = reply.send(answer);
            None
        }
        None => Some((request, reply)),
    };
    // A request that did not fit the previous entry starts the next one.
    let mut carried: Option<(ClusterRequest, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match receiver.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let Some(first) = decided(first) else {
            continue;
        };
        // Waiting for a slot is what lets a batch build up behind it.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut size = encoded_size(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_REQUESTS_PER_ENTRY {
            let Ok(next) = receiver.try_recv() else {
                break;
            };
            let Some(next) = decided(next) else {
                continue;
            };
            let next_size = encoded_size(&next.0);
            if size + next_size > MAX_ENTRY_BYTES {
                carried = Some(next);
                break;
            }
            size += next_size;
            batch.push(next);
        }
        if metrics.enabled() {
            metrics.batch_size.observe(batch.len() as f64);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<ClusterRequest>, Vec<Reply>) = batch.into_iter().unzip();
            let count = requests.len();
            let result =
                tokio::time::timeout(write_timeout, raft.client_write(LogPayload { requests }))
                    .await;
            drop(permit);
            match result {
                Ok(Ok(written)) => {
                    let applied = written.data.applied;
                    assert_eq!(applied.len(), count, "one outcome per request in the entry");
                    for (reply, outcome) in replies.into_iter().zip(applied) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(Err(e)) => {
                    let error = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                            ApiError::Misdirected("not the leader".into())
                        }
                        e => ApiError::Unavailable(format!("write failed: {e}")),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                Err(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(ApiError::outcome_unknown(
                            write_timeout,
                            "no leader committed the write",
                        )));
                    }
                }
            }
        });
    }
}

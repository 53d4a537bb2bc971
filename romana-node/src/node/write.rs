//! The write path: a request is stamped (actor, request id, time), handed
//! to whoever leads (this node's [`Batcher`](super::batcher::Batcher), or the
//! leader's `/v1/internal/propose`), committed, and answered once this node
//! has applied it.

use std::time::{Duration, Instant};

use raft_store::state::AppliedRequest;
use raft_store::{ClusterRequest, Command, RequestMeta};
use romana_api::paths::PATH_INTERNAL_PROPOSE;

use super::{new_request_id, now_ms, Node};
use crate::api_error::ApiError;
use crate::http_client::{CallError, Endpoint};

impl Node {
    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    /// Propose a command as `actor`; returns once it is committed and applied
    /// on this node (read-your-writes), or an error by the write deadline.
    pub async fn propose(
        &self,
        command: Command,
        actor: String,
        request_id: Option<String>,
    ) -> Result<AppliedRequest, ApiError> {
        if !self.metrics.enabled() {
            return self.propose_timed(command, actor, request_id).await;
        }
        let kind = command.kind();
        let started = Instant::now();
        let result = self.propose_timed(command, actor, request_id).await;
        let refused = match &result {
            Ok(applied) => match &applied.outcome {
                raft_store::state::Outcome::Rejected(rejection) => {
                    Some(crate::metrics::serde_label(rejection))
                }
                raft_store::state::Outcome::Applied(_) => None,
            },
            Err(e) => Some(crate::metrics::serde_label(&e.code())),
        };
        self.metrics
            .observe_write(kind, started.elapsed(), refused.as_deref());
        result
    }

    async fn propose_timed(
        &self,
        command: Command,
        actor: String,
        request_id: Option<String>,
    ) -> Result<AppliedRequest, ApiError> {
        let request = ClusterRequest::new(
            RequestMeta {
                actor,
                request_id: request_id.unwrap_or_else(new_request_id),
                timestamp_ms: now_ms(),
            },
            command,
        );
        // What the request alone decides is refused here, never logged;
        // too large a request is a 413.
        raft_store::state::precheck(&request).map_err(|rejection| {
            match raft_store::entry::check_size(&request) {
                Err(too_large) => ApiError::TooLarge(too_large),
                Ok(()) => ApiError::from_rejection(&rejection),
            }
        })?;
        // A retry this replica has seen applied is answered here; a reused
        // id is refused here (the leader and the state machine check again).
        if let Some(answer) = super::batcher::decided_without_entry(&self.shared, &request) {
            return answer;
        }
        let deadline = Instant::now() + self.write_timeout();
        let response = self.submit(request, deadline).await?;
        // Read-your-writes: wait until this replica has applied it too.
        // Callers read their answer from this replica (an allocation's
        // block and gateway), so a lagging replica must not answer as if
        // the write were absent: the write is committed, its effect here is
        // not yet visible, and the caller learns exactly that. Retrying with
        // the same request id returns the committed outcome.
        let mut applied = self.shared.subscribe();
        let wait = applied.wait_for(|index| *index >= response.index);
        let waited =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await;
        match waited {
            Ok(Ok(_)) => Ok(response),
            Ok(Err(_)) => Err(ApiError::Unavailable("the node is shutting down".into())),
            Err(_) => Err(ApiError::OutcomeUnknown(format!(
                "entry {} is committed but this node had not applied it within {} ms; retry with the same request id",
                response.index,
                self.write_timeout().as_millis()
            ))),
        }
    }

    /// Get `request` committed by whoever leads, until `deadline`.
    pub async fn submit(
        &self,
        request: ClusterRequest,
        deadline: Instant,
    ) -> Result<AppliedRequest, ApiError> {
        let mut metrics = self.raft.metrics();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ApiError::outcome_unknown(
                    self.write_timeout(),
                    "no leader committed the write",
                ));
            }
            let leader = metrics.borrow_and_update().current_leader;
            match leader {
                Some(leader) if leader == self.node_id => {
                    match self.batcher.write(request.clone()).await {
                        Ok(applied) => return Ok(applied),
                        // Leadership moved meanwhile: look again.
                        Err(ApiError::Misdirected(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(leader) => {
                    if let Some(address) = self.member_address(leader) {
                        self.metrics.forwarded_writes.inc();
                        match self.forward(&address, &request, remaining).await {
                            Ok(response) => return Ok(response),
                            Err(ForwardError::Retry(reason)) => {
                                tracing::debug!(%address, %reason, "forwarded write not taken; retrying");
                            }
                            Err(ForwardError::Fail(error)) => return Err(error),
                        }
                    }
                }
                None => {}
            }
            // Wait for a leadership change, a little, within the deadline.
            let pause = remaining.min(Duration::from_millis(100));
            let _ = tokio::time::timeout(pause, metrics.changed()).await;
        }
    }

    async fn forward(
        &self,
        address: &str,
        request: &ClusterRequest,
        remaining: Duration,
    ) -> Result<AppliedRequest, ForwardError> {
        let body = bincode::serialize(request)
            .map_err(|e| ForwardError::Fail(ApiError::Internal(format!("encode request: {e}"))))?;
        let client = self
            .peers
            .with_endpoint(Endpoint::Tcp(address.to_string()))
            .with_timeout(remaining);
        let (status, bytes) = match client
            .raw(
                hyper::Method::POST,
                PATH_INTERNAL_PROPOSE,
                raft_store::transport::BINCODE_CONTENT_TYPE,
                body,
            )
            .await
        {
            Ok(answer) => answer,
            Err(CallError::Timeout { .. }) => {
                return Err(ForwardError::Fail(ApiError::outcome_unknown(
                    self.write_timeout(),
                    "no leader committed the write",
                )))
            }
            Err(e) => return Err(ForwardError::Retry(e.to_string())),
        };
        match status {
            hyper::StatusCode::OK => bincode::deserialize(&bytes).map_err(|e| {
                ForwardError::Fail(ApiError::Internal(format!("decode forwarded answer: {e}")))
            }),
            hyper::StatusCode::MISDIRECTED_REQUEST => {
                Err(ForwardError::Retry("not the leader any more".into()))
            }
            status => Err(ForwardError::Fail(ApiError::Unavailable(format!(
                "leader at {address} answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            )))),
        }
    }

    /// Write locally if leader; `Misdirected` otherwise. The end point of a
    /// forwarded write: it never forwards again, so writes cannot ping-pong.
    pub async fn write_as_leader(
        &self,
        request: ClusterRequest,
    ) -> Result<AppliedRequest, ApiError> {
        self.batcher.write(request).await
    }
}

enum ForwardError {
    /// The leader moved or could not be reached: look again.
    Retry(String),
    Fail(ApiError),
}

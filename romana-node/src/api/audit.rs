//! The network's history and this node's events: the audit archive, the
//! timeline of the web view, the state at a point of history, the event
//! stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use raft_store::audit::ArchiveRecord;
use romana_api::events::{EventView, EventsQuery};
use romana_api::paths::{
    PATH_AUDIT_RECORDS, PATH_EVENTS, PATH_HISTORY_STATE, PATH_HISTORY_TIMELINE,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::api_error::ApiError;
use crate::events::EventBus;
use crate::history::{self, StateView, TimelineEntry};
use crate::node::Node;

/// Records the timeline answers with at most (the most recent).
pub const TIMELINE_LIMIT: usize = 10_000;

/// A follower that saw nothing for this long gets an empty line, so a dead
/// connection is noticed and a proxy does not time the stream out.
const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_AUDIT_RECORDS, get(audit_records))
        .route(PATH_HISTORY_TIMELINE, get(timeline))
        .route(PATH_HISTORY_STATE, get(state_at))
        .route(PATH_EVENTS, get(events))
}

async fn archive(node: &Node) -> Result<Vec<ArchiveRecord>, ApiError> {
    let backend = node.backend.clone();
    tokio::task::spawn_blocking(move || raft_store::store::read_archive(&backend))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)
}

/// The audit archive of this node, in chain order.
async fn audit_records(State(node): State<Node>) -> Result<Json<Vec<ArchiveRecord>>, ApiError> {
    archive(&node).await.map(Json)
}

/// One summary per record (the last [`TIMELINE_LIMIT`]), oldest first.
async fn timeline(State(node): State<Node>) -> Result<Json<Vec<TimelineEntry>>, ApiError> {
    let records = archive(&node).await?;
    Ok(Json(history::timeline(&records, TIMELINE_LIMIT)))
}

#[derive(Deserialize)]
struct StateQuery {
    /// After this record; the latest if absent.
    sequence: Option<u64>,
}

/// The network after record `sequence`, rebuilt by replaying the archive.
async fn state_at(
    State(node): State<Node>,
    Query(query): Query<StateQuery>,
) -> Result<Json<StateView>, ApiError> {
    let records = archive(&node).await?;
    tokio::task::spawn_blocking(move || history::view_at(&records, query.sequence))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .map_err(ApiError::NotFound)
}

fn line(event: &EventView) -> Bytes {
    let mut text = serde_json::to_vec(event).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// This node's events after `since`, one JSON object per line; with
/// `follow`, the answer stays open and every new event follows.
async fn events(State(node): State<Node>, Query(query): Query<EventsQuery>) -> Response {
    let bus = node.events.clone();
    let since = query.since.unwrap_or(0);
    let headers = [
        (CONTENT_TYPE, "application/x-ndjson"),
        (CACHE_CONTROL, "no-store"),
    ];
    if !query.follow {
        let (events, lost) = bus.after(since);
        let mut body = Vec::new();
        if lost > 0 {
            body.extend_from_slice(&line(&bus.lost(lost, since + lost)));
        }
        for event in &events {
            body.extend_from_slice(&line(event));
        }
        return (headers, body).into_response();
    }
    let follower = Follower {
        latest: bus.subscribe(),
        bus,
        last: since,
        pending: VecDeque::new(),
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
    };
    let stream = futures::stream::unfold(follower, |mut follower| async move {
        follower
            .next()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), follower))
    });
    (headers, Body::from_stream(stream)).into_response()
}

/// One `--follow` stream's position.
struct Follower {
    bus: std::sync::Arc<EventBus>,
    latest: watch::Receiver<Option<u64>>,
    last: u64,
    pending: VecDeque<EventView>,
    heartbeat: tokio::time::Interval,
}

impl Follower {
    /// The next line to send; `None` when the node stops.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.id;
                return Some(line(&event));
            }
            // Marked seen before the buffer is read: an event emitted after
            // this wakes the wait below.
            self.latest.borrow_and_update().as_ref()?;
            let (events, lost) = self.bus.after(self.last);
            if lost > 0 {
                self.pending
                    .push_back(self.bus.lost(lost, self.last + lost));
            }
            self.pending.extend(events);
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.latest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b"\n")),
            }
        }
    }
}

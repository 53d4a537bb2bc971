//! The Raft RPC routes a node serves to its peers.
//!
//! Each route takes a bincode body and answers 200 with a bincode
//! `Result<response, RaftError>`: errors from Raft itself travel back to the
//! caller as values (openraft's `RemoteError`), while transport problems use
//! HTTP statuses: 400 for a body that does not decode, 409 for an RPC meant
//! for another node. Neither reaches Raft. Who may call them is decided by
//! the server in front (the node: mutual TLS, node certificates only; the
//! simulation: its own network).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    BINCODE_CONTENT_TYPE, RAFT_PATH_APPEND, RAFT_PATH_SNAPSHOT, RAFT_PATH_VOTE, TARGET_NODE_HEADER,
};
use crate::entry::NodeId;
use crate::raft::Raft;

/// Largest Raft RPC body accepted. Snapshot chunks are configured smaller
/// than this (see the node's Raft config), append batches far smaller.
pub const MAX_RAFT_BODY_BYTES: usize = 32 * 1024 * 1024;

// Every AppendEntries batch fits, with room for its framing.
const _: () = assert!(
    crate::entry::MAX_ENTRY_BYTES * crate::entry::MAX_ENTRIES_PER_APPEND + 1024 * 1024
        <= MAX_RAFT_BODY_BYTES as u64,
    "an AppendEntries batch must fit the Raft body limit"
);

/// The peer routes, behind the target check.
///
/// Every RPC names the node id it is meant for ([`TARGET_NODE_HEADER`]). A
/// node that was wiped and restarted at the same address has a new id; RPCs
/// still aimed at its old identity are refused (409) instead of being
/// answered from an empty log, which the leader would read as a follower's
/// log going backwards.
pub fn raft_routes(raft: Raft, node_id: NodeId) -> Router {
    Router::new()
        .route(RAFT_PATH_APPEND, post(append))
        .route(RAFT_PATH_VOTE, post(vote))
        .route(RAFT_PATH_SNAPSHOT, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(node_id, require_target))
        .with_state(raft)
}

async fn require_target(State(node_id): State<NodeId>, request: Request, next: Next) -> Response {
    let target = request
        .headers()
        .get(TARGET_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    match target {
        Some(target) if target == node_id => next.run(request).await,
        Some(target) => (
            StatusCode::CONFLICT,
            format!("this is node {node_id}, not node {target}\n"),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            format!("missing or malformed {TARGET_NODE_HEADER} header\n"),
        )
            .into_response(),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(body)
}

fn malformed(e: bincode::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("malformed Raft RPC body: {e}\n"),
    )
        .into_response()
}

fn encode<T: Serialize>(value: &T) -> Response {
    match bincode::serialize(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, BINCODE_CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode Raft RPC response: {e}\n"),
        )
            .into_response(),
    }
}

async fn append(State(raft): State<Raft>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => encode(&raft.append_entries(request).await),
        Err(e) => malformed(e),
    }
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => encode(&raft.vote(request).await),
        Err(e) => malformed(e),
    }
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => encode(&raft.install_snapshot(request).await),
        Err(e) => malformed(e),
    }
}

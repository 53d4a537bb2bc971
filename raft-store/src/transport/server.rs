//! The Raft RPC routes a node serves to its peers.
//!
//! Each route takes a bincode body and answers 200 with a bincode
//! `Result<response, RaftError>`: errors from Raft itself travel back to the
//! caller as values (openraft's `RemoteError`), while transport problems use
//! HTTP statuses: 401 without the cluster secret, 400 for a body that does not
//! decode. Neither reaches Raft.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    auth, ClusterSecret, BINCODE_CONTENT_TYPE, RAFT_PATH_APPEND, RAFT_PATH_SNAPSHOT, RAFT_PATH_VOTE,
};
use crate::Raft;

/// Largest Raft RPC body accepted. Snapshot chunks are configured smaller
/// than this (see the node's Raft config), append batches far smaller.
pub const MAX_RAFT_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The peer routes, behind the cluster-secret check.
pub fn raft_routes(raft: Raft, secret: ClusterSecret) -> Router {
    Router::new()
        .route(RAFT_PATH_APPEND, post(append))
        .route(RAFT_PATH_VOTE, post(vote))
        .route(RAFT_PATH_SNAPSHOT, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
        .route_layer(middleware::from_fn_with_state(secret, auth::require_secret))
        .with_state(raft)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    bincode::deserialize(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("malformed Raft RPC body: {e}\n"),
        )
            .into_response()
    })
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
        Err(response) => response,
    }
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => encode(&raft.vote(request).await),
        Err(response) => response,
    }
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(request) => encode(&raft.install_snapshot(request).await),
        Err(response) => response,
    }
}

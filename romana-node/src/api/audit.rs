//! The audit archive of this node.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use romana_api::paths::PATH_AUDIT_RECORDS;

use crate::api_error::ApiError;
use crate::node::Node;

pub fn routes() -> Router<Node> {
    Router::new().route(PATH_AUDIT_RECORDS, get(audit_records))
}

/// The audit archive of this node, in chain order.
async fn audit_records(
    State(node): State<Node>,
) -> Result<Json<Vec<raft_store::audit::ArchiveRecord>>, ApiError> {
    let backend = node.backend.clone();
    tokio::task::spawn_blocking(move || raft_store::store::read_archive(&backend))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .map_err(ApiError::Internal)
}

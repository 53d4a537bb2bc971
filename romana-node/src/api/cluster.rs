//! Status, readiness, members, notes, requests, joins and join tokens, and
//! the writes other members forward to this one while it leads.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use openraft::ServerState;
use raft_store::state::{AppliedRequest, Outcome};
use raft_store::transport::BINCODE_CONTENT_TYPE;
use raft_store::{ClusterRequest, Command, NodeId};
use romana_api::cluster::{
    JoinRequest, JoinTokenBody, JoinTokenView, MemberView, NodeView, NoteBody, ReadyView,
    RedeemBody, RedeemView, RemoveQuery, StatusView, WriteResult,
};
use romana_api::paths::{
    NODE_ROUTE, PATH_INTERNAL_PROPOSE, PATH_JOIN, PATH_JOIN_TOKENS, PATH_JOIN_TOKEN_REDEEM,
    PATH_NODES, PATH_NOTES, PATH_READY, PATH_STATUS, REQUEST_ROUTE,
};

use super::{client_actor, forward_to_leader, parse_json, write_result, Listener};
use crate::api_error::ApiError;
use crate::node::{new_request_id, Node};

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_STATUS, get(status))
        .route(PATH_READY, get(ready))
        .route(PATH_NODES, get(list_nodes))
        .route(NODE_ROUTE, delete(remove_node))
        .route(PATH_NOTES, post(add_note))
        .route(REQUEST_ROUTE, get(find_request))
        .route(PATH_JOIN, post(join))
        .route(PATH_JOIN_TOKENS, post(create_join_token))
        .route(PATH_JOIN_TOKEN_REDEEM, post(redeem_join_token))
        .route(PATH_INTERNAL_PROPOSE, post(internal_propose))
}

async fn status(State(node): State<Node>) -> Response {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, info)| MemberView {
            name: info.name.clone(),
            id: *id,
            address: info.address.clone(),
            role: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            }
            .to_string(),
        })
        .collect();
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    };
    let leader = metrics
        .current_leader
        .and_then(|id| membership.get_node(&id).map(|info| info.name.clone()));
    let (applied_index, state_hash, cluster, voters_target) = match state_hash(&node).await {
        Ok(hashed) => hashed,
        Err(e) => return e.into_response(),
    };
    Json(StatusView {
        name: node.config.name.clone(),
        id: node.node_id,
        role: role.to_string(),
        leader,
        term: metrics.current_term,
        applied_index,
        state_hash,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        snapshot_index: metrics.snapshot.map(|id| id.index),
        purged_index: metrics.purged.map(|id| id.index),
        cluster,
        voters_target,
        members,
    })
    .into_response()
}

/// Applied index, content hash, cluster name and voter target, read under
/// one lock so that index and hash belong together. Hashing walks the whole
/// projection: it runs on a blocking thread (never on an async worker) and
/// once per applied index (the answer is cached on the node).
async fn state_hash(node: &Node) -> Result<(u64, String, Option<String>, Option<u8>), ApiError> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || {
        let projection = node.shared.read();
        let index = projection.applied_index();
        let cluster = projection.state.cluster.as_ref();
        let (name, voters_target) = (
            cluster.map(|c| c.name.clone()),
            cluster.map(|c| c.voters_target),
        );
        let mut cache = node
            .state_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let hash = match cache.as_ref() {
            Some((cached_index, hash)) if *cached_index == index => hash.clone(),
            _ => {
                let hash = projection.state.content_hash();
                *cache = Some((index, hash.clone()));
                hash
            }
        };
        (index, hash, name, voters_target)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("state hash task: {e}")))
}

/// What the CNI STATUS verb asks: is there a leader, and is this node a
/// host. Raft's metrics and one map lookup; no member list, no hash.
async fn ready(State(node): State<Node>) -> Json<ReadyView> {
    let leader = {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|info| info.name.clone())
        })
    };
    let registered_host = node
        .shared
        .read()
        .state
        .nodes
        .contains_key(&node.config.name);
    Json(ReadyView {
        name: node.config.name.clone(),
        leader,
        registered_host,
        isolation_ready: node
            .firewall_ready
            .load(std::sync::atomic::Ordering::SeqCst),
    })
}

async fn list_nodes(State(node): State<Node>) -> Json<Vec<NodeView>> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let projection = node.shared.read();
    let views = projection
        .state
        .nodes
        .iter()
        .map(|(name, record)| NodeView {
            name: name.clone(),
            id: record.node_id,
            address: record.address.clone(),
            role: if voters.contains(&record.node_id) {
                "voter"
            } else if membership.get_node(&record.node_id).is_some() {
                "learner"
            } else {
                "removed"
            }
            .to_string(),
            registered_at_ms: record.registered_at_ms,
        })
        .collect();
    Json(views)
}

async fn add_note(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let note: NoteBody = parse_json(&body)?;
    let request_id = note.request_id.unwrap_or_else(new_request_id);
    let actor = client_actor(&node, listener, &headers);
    let response = node
        .propose(
            Command::Note { text: note.text },
            actor,
            Some(request_id.clone()),
        )
        .await?;
    write_result(request_id, response)
}

async fn find_request(
    State(node): State<Node>,
    Path(request_id): Path<String>,
) -> Result<Json<AppliedRequest>, ApiError> {
    let projection = node.shared.read();
    projection
        .state
        .requests
        .get(&request_id)
        .cloned()
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "request {request_id:?} is not among the last {} applied",
                raft_store::state::MAX_REMEMBERED_REQUESTS
            ))
        })
}

async fn remove_node(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Response {
    if !node.is_leader() {
        return forward_to_leader(
            &node,
            Method::DELETE,
            &format!("{}?force={}", romana_api::paths::node(&name), query.force),
            &headers,
            Vec::new(),
        )
        .await;
    }
    let actor = client_actor(&node, listener, &headers);
    let request_id = new_request_id();
    match node
        .remove_member(&name, query.force, actor, request_id.clone())
        .await
    {
        Ok(response) => write_result(request_id, response).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn create_join_token(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<JoinTokenView>, ApiError> {
    let body: JoinTokenBody = parse_json(&body)?;
    let actor = client_actor(&node, listener, &headers);
    node.create_join_token(std::time::Duration::from_millis(body.ttl_ms), actor)
        .await
        .map(Json)
}

async fn redeem_join_token(
    State(node): State<Node>,
    body: Bytes,
) -> Result<Json<RedeemView>, ApiError> {
    let body: RedeemBody = parse_json(&body)?;
    node.redeem_join_token(body).await.map(Json)
}

async fn join(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: JoinRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    if let Err(reason) = raft_store::entry::validate_node_name(&request.name) {
        return ApiError::BadRequest(reason).into_response();
    }
    // A node joins as itself: the name in its certificate (plaintext
    // benchmark clusters have none).
    let actor = client_actor(&node, listener, &headers);
    if listener == Listener::Tcp
        && !node.config.insecure_plaintext
        && actor != format!("node:{}", request.name)
    {
        return ApiError::Forbidden(format!(
            "{actor} may not join the cluster as {:?}",
            request.name
        ))
        .into_response();
    }
    if !node.is_leader() {
        return forward_to_leader(&node, Method::POST, PATH_JOIN, &headers, body.to_vec()).await;
    }
    tracing::info!(name = %request.name, id = request.node_id, address = %request.address, "admitting a node");
    let request_id = format!("register-{}", request.node_id);
    match node
        .admit(request.node_id, request.name, request.address)
        .await
    {
        Ok(response) => write_result(request_id, response).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A write forwarded by another member: bincode `ClusterRequest` in, bincode
/// `Response` out. Never forwarded again.
async fn internal_propose(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    body: Bytes,
) -> Response {
    if listener != Listener::Tcp {
        return ApiError::NotFound("forwarded writes are accepted from peers only".into())
            .into_response();
    }
    let request: ClusterRequest = match bincode::deserialize(&body) {
        Ok(request) => request,
        Err(e) => {
            return ApiError::BadRequest(format!("malformed forwarded request: {e}"))
                .into_response()
        }
    };
    match node.write_as_leader(request).await {
        Ok(response) => match bincode::serialize(&response) {
            Ok(bytes) => (
                [(axum::http::header::CONTENT_TYPE, BINCODE_CONTENT_TYPE)],
                bytes,
            )
                .into_response(),
            Err(e) => ApiError::Internal(format!("encode answer: {e}")).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

//! The node API: one axum router, served on the unix socket (local tools, the
//! CNI plugin; protected by file mode 0600) and on TCP (peers and remote
//! `romanactl`; every request must carry the cluster secret).
//!
//! Operator routes speak JSON; `/v1/internal/propose` (a write forwarded by
//! another member) and the Raft routes speak bincode. Every error is a JSON
//! `{"error": "..."}` with the status decided in [`ApiError`]'s one `match`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Extension, Json, Router};
use openraft::ServerState;
use raft_store::state::{AppliedRequest, Outcome, Rejection};
use raft_store::transport::{raft_routes, require_secret, BINCODE_CONTENT_TYPE};
use raft_store::{ClusterRequest, Command, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http_client::{CallError, Endpoint, ErrorBody, ACTOR_HEADER};
use crate::node::{JoinRequest, Node};

pub const PATH_STATUS: &str = "/v1/status";
pub const PATH_NODES: &str = "/v1/nodes";
pub const PATH_NOTES: &str = "/v1/notes";
pub const PATH_REQUESTS: &str = "/v1/requests";
pub const PATH_JOIN: &str = "/v1/cluster/join";
pub const PATH_INTERNAL_PROPOSE: &str = "/v1/internal/propose";

/// Longest accepted actor name from the `x-romana-actor` header.
const MAX_ACTOR_NAME_BYTES: usize = 64;

/// An API failure; its HTTP status is decided here and only here.
#[derive(Debug, Clone)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// Sent to a node that is not the leader (forwarded writes only).
    Misdirected(String),
    /// No leader, no quorum, or a deadline passed: try again later.
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Misdirected(m)
            | ApiError::Unavailable(m)
            | ApiError::Internal(m) => m,
        }
    }

    /// The error for a request the state machine rejected.
    pub fn from_rejection(rejection: &Rejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            Rejection::UnknownNode { .. }
            | Rejection::UnknownTenant { .. }
            | Rejection::UnknownSegment { .. }
            | Rejection::UnknownPolicy { .. } => ApiError::NotFound(message),
            Rejection::InvalidArgument { .. }
            | Rejection::InvalidMeta { .. }
            | Rejection::UnsupportedFormat { .. } => ApiError::BadRequest(message),
            Rejection::NotInitialised => ApiError::Unavailable(message),
            Rejection::AlreadyInitialised { .. }
            | Rejection::NodeNameTaken { .. }
            | Rejection::NodeIdTaken { .. }
            | Rejection::HostHasAddresses { .. }
            | Rejection::HostsExhausted { .. }
            | Rejection::TenantExists { .. }
            | Rejection::TenantsExhausted { .. }
            | Rejection::TenantHasAddresses { .. }
            | Rejection::SegmentExists { .. }
            | Rejection::SegmentsExhausted { .. }
            | Rejection::SegmentHasAddresses { .. }
            | Rejection::DefaultSegmentIsPermanent { .. }
            | Rejection::OwnerHoldsOtherAddress { .. }
            | Rejection::BlockFull { .. } => ApiError::Conflict(message),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ApiError::BadRequest(message)
        | ApiError::NotFound(message)
        | ApiError::Conflict(message)
        | ApiError::Misdirected(message)
        | ApiError::Unavailable(message)
        | ApiError::Internal(message)) = self;
        write!(f, "{}: {message}", self.status().as_u16())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (
            status,
            Json(ErrorBody {
                error: self.message(),
            }),
        )
            .into_response()
    }
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Unix,
    Tcp,
}

/// The router for the unix socket: the operator API.
pub fn unix_router(node: Node) -> Router {
    api_routes(node).layer(Extension(Listener::Unix))
}

/// The router for TCP: the operator API and the Raft routes, all behind the
/// cluster secret.
pub fn tcp_router(node: Node) -> Router {
    let secret = node.secret.clone();
    let raft = raft_routes(node.raft.clone(), secret.clone(), node.node_id);
    api_routes(node)
        .layer(Extension(Listener::Tcp))
        .route_layer(middleware::from_fn_with_state(secret, require_secret))
        .merge(raft)
}

fn api_routes(node: Node) -> Router {
    Router::new()
        .route(PATH_STATUS, get(status))
        .route(PATH_NODES, get(list_nodes))
        .route("/v1/nodes/{name}", delete(remove_node))
        .route(PATH_NOTES, post(add_note))
        .route("/v1/requests/{request_id}", get(find_request))
        .route(PATH_JOIN, post(join))
        .route(PATH_INTERNAL_PROPOSE, post(internal_propose))
        .merge(crate::ipam_api::routes())
        .merge(crate::policy_api::routes())
        .route(crate::audit_cli::PATH_AUDIT_RECORDS, get(audit_records))
        .with_state(node)
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))
}

/// `client:WHO@NODE` for requests from outside the cluster.
pub(crate) fn client_actor(node: &Node, listener: Listener, headers: &HeaderMap) -> String {
    let who = headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_ACTOR_NAME_BYTES
                && v.chars().all(|c| c.is_ascii_graphic())
        })
        .unwrap_or(match listener {
            Listener::Unix => "local",
            Listener::Tcp => "remote",
        });
    format!("client:{who}@{}", node.config.name)
}

/// What a write returns.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WriteResult {
    pub index: u64,
    pub request_id: String,
    pub outcome: Outcome,
}

/// A committed write as the API reports it: applied → 200, rejected → the
/// rejection's error.
pub(crate) fn write_result(
    request_id: String,
    applied: AppliedRequest,
) -> Result<Json<WriteResult>, ApiError> {
    if let Outcome::Rejected(rejection) = &applied.outcome {
        return Err(ApiError::from_rejection(rejection));
    }
    Ok(Json(WriteResult {
        index: applied.index,
        request_id,
        outcome: applied.outcome,
    }))
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub id: NodeId,
    pub address: String,
    /// voter or learner
    pub role: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StatusView {
    pub name: String,
    pub id: NodeId,
    /// leader, follower, learner or candidate
    pub role: String,
    /// Name of the current leader, if one is known.
    pub leader: Option<String>,
    pub term: u64,
    pub applied_index: u64,
    /// Content hash of the projection at `applied_index`.
    pub state_hash: String,
    pub last_log_index: u64,
    /// Index of the last snapshot, if any.
    pub snapshot_index: Option<u64>,
    /// Highest index purged from the log, if any.
    pub purged_index: Option<u64>,
    pub cluster: Option<String>,
    pub voters_target: Option<u8>,
    pub members: Vec<MemberView>,
}

async fn status(State(node): State<Node>) -> Json<StatusView> {
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
    // Index and hash read under one lock, so they always belong together.
    let (applied_index, state_hash, cluster, voters_target) = {
        let projection = node.shared.read();
        let cluster = projection.state.cluster.as_ref();
        (
            projection.applied_index(),
            projection.state.content_hash(),
            cluster.map(|c| c.name.clone()),
            cluster.map(|c| c.voters_target),
        )
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
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub id: NodeId,
    pub address: String,
    /// voter, learner, or removed (recorded but no longer a Raft member)
    pub role: String,
    pub registered_at_ms: u64,
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

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NoteBody {
    pub text: String,
    /// Idempotency key; generated when absent.
    #[serde(default)]
    pub request_id: Option<String>,
}

async fn add_note(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult>, ApiError> {
    let note: NoteBody = parse_json(&body)?;
    let request_id = note.request_id.unwrap_or_else(crate::node::new_request_id);
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

/// Query of `DELETE /v1/nodes/{name}`.
#[derive(Deserialize, Debug, Default)]
pub struct RemoveQuery {
    /// Release the host's addresses instead of refusing.
    #[serde(default)]
    pub force: bool,
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
            &format!("{PATH_NODES}/{name}?force={}", query.force),
            &headers,
            Vec::new(),
        )
        .await;
    }
    let actor = client_actor(&node, listener, &headers);
    let request_id = crate::node::new_request_id();
    match node
        .remove_member(&name, query.force, actor, request_id.clone())
        .await
    {
        Ok(response) => write_result(request_id, response).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn join(State(node): State<Node>, headers: HeaderMap, body: Bytes) -> Response {
    let request: JoinRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    if let Err(reason) = raft_store::entry::validate_node_name(&request.name) {
        return ApiError::BadRequest(reason).into_response();
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

/// Passes a leader-only request on to the leader and its answer back.
async fn forward_to_leader(
    node: &Node,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    let deadline = Instant::now() + Duration::from_millis(node.config.write_timeout_ms);
    let mut metrics = node.raft.metrics();
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        if let Some(address) = leader
            .filter(|id| *id != node.node_id)
            .and_then(|id| node.member_address(id))
        {
            let mut client = node.peers.with_endpoint(Endpoint::Tcp(address.clone()));
            if let Some(actor) = headers.get(ACTOR_HEADER).and_then(|v| v.to_str().ok()) {
                client = client.with_actor(actor);
            }
            match client
                .raw(method.clone(), path, "application/json", body.clone())
                .await
            {
                Ok((status, bytes)) if status != StatusCode::MISDIRECTED_REQUEST => {
                    return (
                        status,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        bytes,
                    )
                        .into_response()
                }
                Ok(_) | Err(CallError::Unreachable { .. }) => {}
                Err(e) => return ApiError::Unavailable(e.to_string()).into_response(),
            }
        } else if leader == Some(node.node_id) {
            return ApiError::Misdirected("leadership moved here while forwarding; retry".into())
                .into_response();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return ApiError::Unavailable("no leader is known (is a quorum of voters up?)".into())
                .into_response();
        }
        let _ = tokio::time::timeout(remaining.min(Duration::from_millis(100)), metrics.changed())
            .await;
    }
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

//! The policy part of the node API: apply (any supported format, detected),
//! list, show, delete, explain; and the seed's third-party-resource URL.

use std::net::Ipv4Addr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use raft_store::entry::policy::{Policy, Protocol};
use raft_store::Command;
use serde::{Deserialize, Serialize};

use crate::api::{client_actor, write_result, ApiError, Listener, WriteResult};
use crate::node::{new_request_id, Node};
use crate::policy_compiler::{compile, explain, Packet, Verdict};
use crate::policy_formats::{parse_policy_file, parse_tpr};

pub const PATH_POLICIES: &str = "/v1/policies";
pub const PATH_EXPLAIN: &str = "/v1/explain";

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_POLICIES, get(list).post(apply))
        .route("/v1/policies/{*name}", get(show).delete(delete))
        .route(PATH_EXPLAIN, get(explain_packet))
        .route(
            "/apis/romana.io/demo/v1/namespaces/{namespace}/networkpolicys",
            post(apply_tpr),
        )
        .route(
            "/apis/romana.io/demo/v1/namespaces/{namespace}/networkpolicys/",
            post(apply_tpr),
        )
}

async fn propose_policies(
    node: &Node,
    listener: Listener,
    headers: &HeaderMap,
    policies: Vec<Policy>,
) -> Result<Json<WriteResult>, ApiError> {
    let request_id = new_request_id();
    let actor = client_actor(node, listener, headers);
    let applied = node
        .propose(
            Command::ApplyPolicies { policies },
            actor,
            Some(request_id.clone()),
        )
        .await?;
    write_result(request_id, applied)
}

async fn apply(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the policy file is not UTF-8".into()))?;
    let policies = parse_policy_file(text).map_err(ApiError::BadRequest)?;
    propose_policies(&node, listener, &headers, policies).await
}

async fn apply_tpr(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Result<Json<WriteResult>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the policy is not UTF-8".into()))?;
    let policies = parse_tpr(&namespace, text).map_err(ApiError::BadRequest)?;
    propose_policies(&node, listener, &headers, policies).await
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PolicyView {
    pub name: String,
    pub applied_at_ms: u64,
    pub applied_index: u64,
    pub actor: String,
    pub policy: Policy,
}

async fn list(State(node): State<Node>) -> Json<Vec<PolicyView>> {
    let projection = node.shared.read();
    Json(
        projection
            .state
            .policies
            .iter()
            .map(|(name, record)| PolicyView {
                name: name.clone(),
                applied_at_ms: record.applied_at_ms,
                applied_index: record.applied_index,
                actor: record.actor.clone(),
                policy: record.policy.clone(),
            })
            .collect(),
    )
}

async fn show(
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    let projection = node.shared.read();
    let record = projection
        .state
        .policies
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no policy named {name:?}")))?;
    Ok(Json(PolicyView {
        name,
        applied_at_ms: record.applied_at_ms,
        applied_index: record.applied_index,
        actor: record.actor.clone(),
        policy: record.policy.clone(),
    }))
}

async fn delete(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<WriteResult>, ApiError> {
    let request_id = new_request_id();
    let actor = client_actor(&node, listener, &headers);
    let applied = node
        .propose(
            Command::DeletePolicy { name },
            actor,
            Some(request_id.clone()),
        )
        .await?;
    write_result(request_id, applied)
}

/// Query of `GET /v1/explain`.
#[derive(Deserialize, Debug)]
pub struct ExplainQuery {
    pub src: String,
    pub dst: String,
    /// tcp, udp, icmp or any (default any).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Destination port (tcp, udp) or ICMP type.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ExplainView {
    /// allowed, denied, or not-romana (no pod on either side).
    pub verdict: String,
    /// The rule or default that decides.
    pub decided_by: String,
}

pub fn parse_protocol(text: Option<&str>) -> Result<Protocol, String> {
    match text.map(|t| t.to_ascii_lowercase()).as_deref() {
        None | Some("any") => Ok(Protocol::Any),
        Some("tcp") => Ok(Protocol::Tcp),
        Some("udp") => Ok(Protocol::Udp),
        Some("icmp") => Ok(Protocol::Icmp),
        Some(other) => Err(format!(
            "protocol {other:?}: expected tcp, udp, icmp or any"
        )),
    }
}

async fn explain_packet(
    State(node): State<Node>,
    Query(query): Query<ExplainQuery>,
) -> Result<Json<ExplainView>, ApiError> {
    let address = |text: &str, what: &str| {
        text.parse::<Ipv4Addr>()
            .map_err(|_| ApiError::BadRequest(format!("{what} {text:?} is not an IPv4 address")))
    };
    let packet = Packet {
        source: address(&query.src, "source")?,
        destination: address(&query.dst, "destination")?,
        protocol: parse_protocol(query.protocol.as_deref()).map_err(ApiError::BadRequest)?,
        port: query.port,
    };
    let projection = node.shared.read();
    let rules = compile(&projection.state)
        .ok_or_else(|| ApiError::Unavailable("the cluster is not initialised yet".into()))?;
    let rule = explain(&rules, &packet).ok_or_else(|| {
        ApiError::Internal("no rule matched (the last rule matches everything)".into())
    })?;
    let verdict = match rule.verdict {
        Verdict::Accept => "allowed",
        Verdict::Drop => "denied",
        Verdict::Return => "not-romana",
    };
    Ok(Json(ExplainView {
        verdict: verdict.to_string(),
        decided_by: rule.origin.clone(),
    }))
}

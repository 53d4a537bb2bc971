//! The policy part of the node API: apply (any supported format, detected),
//! list, show, delete, explain; and the seed's third-party-resource URL.

use std::net::Ipv4Addr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use raft_store::entry::policy::{Policy, Protocol};
use raft_store::state::Outcome;
use raft_store::Command;
use romana_api::cluster::WriteResult;
use romana_api::paths::{PATH_EXPLAIN, PATH_POLICIES, POLICY_ROUTE, TPR_POLICIES_ROUTE};
use romana_api::policy::{ExplainQuery, ExplainView, PolicyView};

use super::{client_actor, write_result, Listener};
use crate::api_error::ApiError;
use crate::node::{new_request_id, Node};
use crate::policy::compiler::{compile, explain, Packet, Verdict};
use crate::policy::formats::{parse_policy_file, parse_tpr};

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_POLICIES, get(list).post(apply))
        .route(POLICY_ROUTE, get(show).delete(delete))
        .route(PATH_EXPLAIN, get(explain_packet))
        .route(TPR_POLICIES_ROUTE, post(apply_tpr))
        .route(&format!("{TPR_POLICIES_ROUTE}/"), post(apply_tpr))
}

async fn propose_policies(
    node: &Node,
    listener: Listener,
    headers: &HeaderMap,
    policies: Vec<Policy>,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
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
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
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
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the policy is not UTF-8".into()))?;
    let policies = parse_tpr(&namespace, text).map_err(ApiError::BadRequest)?;
    propose_policies(&node, listener, &headers, policies).await
}

async fn list(State(node): State<Node>) -> Json<Vec<PolicyView<Policy>>> {
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
) -> Result<Json<PolicyView<Policy>>, ApiError> {
    let projection = node.shared.read();
    let record = projection.state.policies.get(&name).ok_or_else(|| {
        ApiError::from_rejection(&raft_store::state::Rejection::UnknownPolicy {
            name: name.clone(),
        })
    })?;
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
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
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

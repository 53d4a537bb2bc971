//! The policy part of the node API: apply (any supported format, detected),
//! list, show, delete, explain; and the seed's third-party-resource URL.

use std::net::Ipv4Addr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use raft_store::entry::policy::{Policy, Protocol};
use raft_store::state::{ClusterState, Effect, NetworkPolicyRecord, Outcome, PolicyRecord};
use raft_store::Command;
use romana_api::cluster::WriteResult;
use romana_api::paths::{
    PATH_EXPLAIN, PATH_EXPLAIN_MATRIX, PATH_POLICIES, POLICY_ROUTE, TPR_POLICIES_ROUTE,
};
use romana_api::policy::{ExplainQuery, ExplainView, MatrixQuery, MatrixView, PolicyView};

use super::{client_actor, write_result, Listener};
use crate::api_error::ApiError;
use crate::node::{new_request_id, Node};
use crate::policy::compiler::{compile, explain, Packet, Scope, Verdict};
use crate::policy::formats::{parse_policy_file, parse_tpr, PolicyFile};

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_POLICIES, get(list).post(apply))
        .route(POLICY_ROUTE, get(show).delete(delete))
        .route(PATH_EXPLAIN, get(explain_packet))
        .route(PATH_EXPLAIN_MATRIX, get(explain_matrix))
        .route(TPR_POLICIES_ROUTE, post(apply_tpr))
        .route(&format!("{TPR_POLICIES_ROUTE}/"), post(apply_tpr))
}

async fn propose_policies(
    node: &Node,
    listener: Listener,
    headers: &HeaderMap,
    policies: Vec<Policy>,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    propose_file(
        node,
        listener,
        headers,
        PolicyFile {
            policies,
            network_policies: Vec::new(),
        },
    )
    .await
}

/// Proposes a file's Romana policies (one request, all or none), then each
/// of its NetworkPolicies; stops at the first refusal. The answer is the
/// last request's, naming every policy applied.
async fn propose_file(
    node: &Node,
    listener: Listener,
    headers: &HeaderMap,
    file: PolicyFile,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let actor = client_actor(node, listener, headers);
    let mut commands = Vec::new();
    if !file.policies.is_empty() {
        commands.push(Command::ApplyPolicies {
            policies: file.policies,
        });
    }
    commands.extend(
        file.network_policies
            .into_iter()
            .map(Command::ApplyNetworkPolicy),
    );
    let mut names = Vec::new();
    let mut replaced = 0;
    let mut last = None;
    for command in commands {
        let request_id = new_request_id();
        let applied = node
            .propose(command, actor.clone(), Some(request_id.clone()))
            .await?;
        let Json(result) = write_result(request_id, applied)?;
        if let Outcome::Applied(Effect::PoliciesApplied {
            names: applied_names,
            replaced: applied_replaced,
        }) = &result.outcome
        {
            names.extend(applied_names.iter().cloned());
            replaced += applied_replaced;
        }
        last = Some(result);
    }
    let mut result =
        last.ok_or_else(|| ApiError::BadRequest("no policy found in the file".into()))?;
    if !names.is_empty() {
        result.outcome = Outcome::Applied(Effect::PoliciesApplied { names, replaced });
    }
    Ok(Json(result))
}

async fn apply(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let file = parse_off_workers(body, parse_policy_file).await?;
    propose_file(&node, listener, &headers, file).await
}

/// Policy parses running at once; more wait their turn.
static POLICY_PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Parses a policy body on a blocking thread, one at a time: a large file
/// (up to the body limit) never holds up the async workers that serve Raft
/// and the CNI plugin.
async fn parse_off_workers<T: Send + 'static>(
    body: Bytes,
    parse: impl FnOnce(&str) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    let _turn = POLICY_PARSES
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::BadRequest("the policy file is not UTF-8".into()))?;
        parse(text).map_err(ApiError::BadRequest)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("policy parser: {e}")))?
}

async fn apply_tpr(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let policies = parse_off_workers(body, move |text| parse_tpr(&namespace, text)).await?;
    propose_policies(&node, listener, &headers, policies).await
}

/// A policy in force and when: (applied at, log index, actor).
fn policy_view(
    name: &str,
    policy: &impl serde::Serialize,
    (applied_at_ms, applied_index, actor): (u64, u64, &str),
) -> PolicyView {
    PolicyView {
        name: name.to_string(),
        applied_at_ms,
        applied_index,
        actor: actor.to_string(),
        policy: serde_json::to_value(policy).unwrap_or_default(),
    }
}

fn view_of(name: &str, record: &PolicyRecord) -> PolicyView {
    let when = (
        record.applied_at_ms,
        record.applied_index,
        record.actor.as_str(),
    );
    policy_view(name, &record.policy, when)
}

fn network_view_of(name: &str, record: &NetworkPolicyRecord) -> PolicyView {
    let when = (
        record.applied_at_ms,
        record.applied_index,
        record.actor.as_str(),
    );
    policy_view(name, &record.policy, when)
}

/// Romana policies and NetworkPolicies, by name.
async fn list(State(node): State<Node>) -> Json<Vec<PolicyView>> {
    let projection = node.shared.read();
    let state = &projection.state;
    let mut views: Vec<PolicyView> = state
        .policies
        .iter()
        .map(|(name, record)| view_of(name, record))
        .chain(
            state
                .network_policies
                .iter()
                .map(|(name, record)| network_view_of(name, record)),
        )
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Json(views)
}

async fn show(
    State(node): State<Node>,
    Path(name): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    let projection = node.shared.read();
    let state = &projection.state;
    if let Some(record) = state.network_policies.get(&name) {
        return Ok(Json(network_view_of(&name, record)));
    }
    let record = state.policies.get(&name).ok_or_else(|| {
        ApiError::from_rejection(&raft_store::state::Rejection::UnknownPolicy {
            name: name.clone(),
        })
    })?;
    Ok(Json(view_of(&name, record)))
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
        Some("sctp") => Ok(Protocol::Sctp),
        Some(other) => Err(format!(
            "protocol {other:?}: expected tcp, udp, sctp, icmp or any"
        )),
    }
}

/// An address, or a pod by `NAMESPACE/NAME` (its first address).
fn endpoint_address(state: &ClusterState, text: &str, what: &str) -> Result<Ipv4Addr, ApiError> {
    if let Ok(address) = text.parse::<Ipv4Addr>() {
        return Ok(address);
    }
    let Some((namespace, name)) = text.split_once('/') else {
        return Err(ApiError::BadRequest(format!(
            "{what} {text:?} is neither an IPv4 address nor a pod (NAMESPACE/NAME)"
        )));
    };
    state
        .allocations
        .iter()
        .find(|(_, a)| {
            a.pod_namespace.as_deref() == Some(namespace) && a.pod_name.as_deref() == Some(name)
        })
        .map(|(address, _)| *address)
        .ok_or_else(|| ApiError::NotFound(format!("{what}: no pod {text} holds an address")))
}

fn pod_at(state: &ClusterState, address: Ipv4Addr) -> Option<String> {
    let allocation = state.allocations.get(&address)?;
    romana_api::ipam::pod_label(
        allocation.pod_namespace.as_deref(),
        allocation.pod_name.as_deref(),
    )
}

async fn explain_packet(
    State(node): State<Node>,
    Query(query): Query<ExplainQuery>,
) -> Result<Json<ExplainView>, ApiError> {
    let projection = node.shared.read();
    let state = &projection.state;
    let packet = Packet {
        source: endpoint_address(state, &query.src, "source")?,
        destination: endpoint_address(state, &query.dst, "destination")?,
        protocol: parse_protocol(query.protocol.as_deref()).map_err(ApiError::BadRequest)?,
        port: query.port,
    };
    let compiled = compile(state, Scope::Cluster)
        .ok_or_else(|| ApiError::Unavailable("the cluster is not initialised yet".into()))?;
    let decision = explain(&compiled, &packet);
    let verdict = match decision.verdict {
        Verdict::Accept => "allowed",
        Verdict::Drop => "denied",
        Verdict::Return => "not-romana",
    };
    let policies = match decision.decided_by {
        Some(rule) if rule.verdict == Verdict::Drop && !rule.policies.is_empty() => {
            // Isolated: every policy isolating the pod in that stage decides.
            let stage = if decision.egress == Some(rule) {
                &compiled.egress
            } else {
                &compiled.ingress
            };
            let mut names: Vec<String> = stage
                .iter()
                .filter(|r| r.verdict == Verdict::Drop && r.matches(&packet, &compiled.sets))
                .flat_map(|r| r.policies.iter().cloned())
                .collect();
            names.sort();
            names.dedup();
            names
        }
        Some(rule) => rule.policies.clone(),
        None => Vec::new(),
    };
    Ok(Json(ExplainView {
        verdict: verdict.to_string(),
        decided_by: decision
            .decided_by
            .map(|rule| rule.origin.clone())
            .unwrap_or_else(|| "not pod traffic".into()),
        source_pod: pod_at(state, packet.source),
        destination_pod: pod_at(state, packet.destination),
        policies,
        egress: decision.egress.map(|rule| rule.origin.clone()),
    }))
}

/// Most pods one matrix may name (the answer grows with the square).
const MAX_MATRIX_PODS: usize = 64;

async fn explain_matrix(
    State(node): State<Node>,
    Query(query): Query<MatrixQuery>,
) -> Result<Json<MatrixView>, ApiError> {
    let names: Vec<String> = query
        .pods
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() || names.len() > MAX_MATRIX_PODS {
        return Err(ApiError::BadRequest(format!(
            "pods: give 1 to {MAX_MATRIX_PODS}, got {}",
            names.len()
        )));
    }
    let protocol = parse_protocol(query.protocol.as_deref()).map_err(ApiError::BadRequest)?;
    let projection = node.shared.read();
    let state = &projection.state;
    let addresses = names
        .iter()
        .map(|name| endpoint_address(state, name, "pod"))
        .collect::<Result<Vec<_>, _>>()?;
    let compiled = compile(state, Scope::Cluster)
        .ok_or_else(|| ApiError::Unavailable("the cluster is not initialised yet".into()))?;
    let mut allowed = Vec::new();
    let mut decided_by = Vec::new();
    for (i, source) in addresses.iter().enumerate() {
        let mut row = Vec::new();
        let mut why = Vec::new();
        for (j, destination) in addresses.iter().enumerate() {
            if i == j || source == destination {
                row.push(true);
                why.push("a pod reaches itself".to_string());
                continue;
            }
            let decision = explain(
                &compiled,
                &Packet {
                    source: *source,
                    destination: *destination,
                    protocol,
                    port: query.port,
                },
            );
            row.push(decision.verdict == Verdict::Accept);
            why.push(
                decision
                    .decided_by
                    .map(|rule| rule.origin.clone())
                    .unwrap_or_else(|| "not pod traffic".into()),
            );
        }
        allowed.push(row);
        decided_by.push(why);
    }
    Ok(Json(MatrixView {
        pods: names,
        allowed,
        decided_by,
    }))
}

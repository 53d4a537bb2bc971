//! The node API: one axum router, served on the unix socket (local tools, the
//! CNI plugin; protected by file mode 0600) and on TCP (peers and remote
//! `romanactl`: mutual TLS, see [`crate::tls`]).
//!
//! [`authorize`] runs before every handler: on TCP it refuses a client
//! without a certificate (401), a revoked one (401), an operator on a
//! member's route or a reader on a write (403); on both listeners it sets
//! the actor the request is recorded under, from what the listener's
//! handshake established ([`Peer`]), never from what the client claims.
//!
//! The wire types (paths, bodies, answers, the error body) are
//! [`romana_api`]'s; this module holds the handlers, one file per resource:
//!
//! - [`cluster`]: status, readiness, members, notes, requests, joins, and
//!   the forwarded writes of other members.
//! - [`ipam`]: layout, hosts, tenants, segments, allocations.
//! - [`policy`]: policies and `explain`.
//! - [`audit`]: the audit archive, the history, the event stream.
//! - [`ui`]: the web view's embedded files.
//!
//! Operator routes speak JSON; `/v1/internal/propose` (a write forwarded by
//! another member) and the Raft routes speak bincode. Every error is a JSON
//! [`romana_api::ErrorBody`] with the status and code decided in
//! [`ApiError`].

pub mod audit;
pub mod cluster;
pub mod ipam;
pub mod policy;
pub mod ui;

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Extension, Json, Router};
use raft_store::entry::MAX_ACTOR_BYTES;
use raft_store::state::{AppliedRequest, Outcome};
use raft_store::transport::raft_routes;
use romana_api::cluster::WriteResult;
use romana_api::headers::ACTOR_HEADER;
use romana_api::paths::{
    PATH_ALLOCATIONS, PATH_EXPLAIN, PATH_EXPLAIN_MATRIX, PATH_JOIN, PATH_JOIN_TOKEN_REDEEM,
    PATH_METRICS, PATH_READY,
};
use romana_api::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;

use crate::api_error::ApiError;
use crate::http_client::{CallError, Endpoint};
use crate::node::Node;
use crate::server::Peer;
use crate::tls::Role;

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Unix,
    Tcp,
}

/// Largest request body of the operator API (a policy file, a forwarded
/// request); the Raft routes take larger ones
/// ([`raft_store::transport::server::MAX_RAFT_BODY_BYTES`]).
pub const MAX_API_BODY_BYTES: usize = 1024 * 1024;

/// The router for the unix socket: the operator API.
pub fn unix_router(node: Node, kubernetes: Option<crate::kubernetes::Context>) -> Router {
    api_routes(node.clone())
        .layer(Extension(Listener::Unix))
        .layer(Extension(Kubernetes(kubernetes)))
        .layer(middleware::from_fn_with_state(node.clone(), authorize))
        .layer(middleware::from_fn_with_state((node, "unix"), track))
        .layer(middleware::map_response(json_errors))
}

/// Kubernetes mode's context for the handlers (resolving a pod's tenant on
/// ADD), `None` outside Kubernetes.
#[derive(Clone)]
pub struct Kubernetes(pub Option<crate::kubernetes::Context>);

/// The router for TCP: the operator API and the Raft routes, all behind
/// [`authorize`].
pub fn tcp_router(node: Node, kubernetes: Option<crate::kubernetes::Context>) -> Router {
    let raft = raft_routes(node.raft.clone(), node.node_id);
    api_routes(node.clone())
        .layer(Extension(Listener::Tcp))
        .layer(Extension(Kubernetes(kubernetes)))
        .merge(raft)
        .layer(middleware::from_fn_with_state(node.clone(), authorize))
        .layer(middleware::from_fn_with_state((node, "tcp"), track))
        .layer(middleware::map_response(json_errors))
}

/// Counts every answered request by listener, method, route pattern and
/// status, and times it by route (refusals of [`authorize`] included).
async fn track(
    State((node, listener)): State<(Node, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let cni = cni_command(&request, &route);
    if !node.metrics.enabled() && cni.is_none() {
        return next.run(request).await;
    }
    let method = method_label(request.method()).to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    if cni.is_some() {
        // The plugin logs the node's share of its round trip (its phases).
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("node;dur={took_ms:.3}")) {
            response.headers_mut().insert("server-timing", value);
        }
    }
    if !node.metrics.enabled() {
        return response;
    }
    let metrics = &node.metrics;
    if let Some(command) = cni {
        let outcome = if response.status().is_success() {
            "ok".to_string()
        } else {
            let code = response
                .extensions()
                .get::<ErrorCode>()
                .copied()
                .unwrap_or_else(|| code_of_status(response.status()));
            crate::metrics::serde_label(&code)
        };
        metrics.observe_cni(command, started.elapsed(), &outcome);
    }
    metrics
        .request_duration
        .get_or_create(&crate::metrics::RouteLatencyLabels {
            listener: listener.into(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&crate::metrics::RouteLabels {
            listener: listener.into(),
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// The error code of an answer that carries only a status.
fn code_of_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::MISDIRECTED_REQUEST => ErrorCode::Misdirected,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        status if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// The CNI command a request serves, if the plugin sent it and this is
/// the request that carries out the command: ADD's allocation, DEL's
/// release, CHECK's address lookup, GC's collection, STATUS's readiness
/// (an ADD's tenant lookup or rollback is not counted as a second ADD).
fn cni_command(request: &Request, route: &str) -> Option<&'static str> {
    let command = request
        .headers()
        .get(romana_api::paths::CNI_COMMAND_HEADER)?
        .to_str()
        .ok()?;
    let method = request.method();
    let (name, wanted_method, wanted_route) = match command {
        "ADD" => ("ADD", Method::POST, PATH_ALLOCATIONS),
        "DEL" => ("DEL", Method::POST, romana_api::paths::PATH_RELEASE),
        "CHECK" => ("CHECK", Method::GET, romana_api::paths::ADDRESS_ROUTE),
        "GC" => ("GC", Method::POST, romana_api::paths::PATH_GC),
        "STATUS" => ("STATUS", Method::GET, PATH_READY),
        _ => return None,
    };
    (*method == wanted_method && route == wanted_route).then_some(name)
}

/// The method as a metric label: the standard ones by name, anything else
/// (a client may send any token) as `other`, so labels stay bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: the OpenMetrics text exposition.
async fn metrics_text(State(node): State<Node>) -> Response {
    let node_for_render = node.clone();
    match tokio::task::spawn_blocking(move || {
        node_for_render
            .metrics
            .render(&node_for_render.raft, &node_for_render.shared)
    })
    .await
    {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("metrics: {e}")).into_response(),
    }
}

/// The plain metrics listener's router (`--metrics-listen`): `GET
/// /metrics` and nothing else.
pub fn metrics_router(node: Node) -> Router {
    Router::new()
        .route(PATH_METRICS, axum::routing::get(metrics_text))
        .with_state(node)
        .layer(middleware::map_response(json_errors))
}

/// Routes only members may call: Raft RPCs, forwarded writes, joins.
fn is_member_route(path: &str) -> bool {
    path.starts_with("/raft/") || path.starts_with("/v1/internal/") || path == PATH_JOIN
}

/// Requests that change nothing: what a reader may send.
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && (path == PATH_EXPLAIN || path == PATH_EXPLAIN_MATRIX))
}

/// Authorises a request by the [`Peer`] its connection established and
/// records who it is as the request's actor (in the [`ACTOR_HEADER`],
/// which this replaces: whatever a client put there is discarded, except
/// from a member relaying a request it received, whose actor it already
/// set the same way).
async fn authorize(State(node): State<Node>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or(Peer::Anonymous);
    let claimed = request
        .headers_mut()
        .remove(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    let here = &node.config.name;
    let actor = match peer {
        Peer::Plaintext => match claimed {
            Some(relayed) if is_printable_actor(&relayed) => relayed,
            _ => format!("client:plaintext@{here}"),
        },
        Peer::Local { uid, pid } => format!("client:uid={uid}{}@{here}", process_name(pid)),
        // The one thing a client without a certificate may do: redeem a
        // join token (checked by the handler).
        Peer::Anonymous
            if request.method() == Method::POST
                && request.uri().path() == PATH_JOIN_TOKEN_REDEEM =>
        {
            format!("client:anonymous@{here}")
        }
        Peer::Anonymous => {
            return ApiError::Unauthorized(
                "a client certificate of this cluster is required (romanactl --cert/--key/--ca-cert, or --cluster-secret-file)".into(),
            )
            .into_response()
        }
        Peer::Certified(identity) => {
            if node.is_revoked(&identity) {
                return ApiError::Unauthorized(format!(
                    "the certificate of {} {} is revoked",
                    identity.role.as_str(),
                    identity.name
                ))
                .into_response();
            }
            let path = request.uri().path();
            if identity.role != Role::Node && is_member_route(path) {
                return ApiError::Forbidden(format!("{path} is for members of the cluster"))
                    .into_response();
            }
            if !identity.role.may_write() && !is_read(request.method(), path) {
                return ApiError::Forbidden(format!(
                    "{} {} may only read",
                    identity.role.as_str(),
                    identity.name
                ))
                .into_response();
            }
            match (identity.role, claimed) {
                (Role::Node, Some(relayed)) if is_printable_actor(&relayed) => relayed,
                (Role::Node, _) => format!("node:{}", identity.name),
                (role, _) => format!("client:{}:{}@{here}", role.as_str(), identity.name),
            }
        }
    };
    match HeaderValue::from_str(&actor) {
        Ok(value) => {
            request.headers_mut().insert(ACTOR_HEADER, value);
        }
        Err(_) => return ApiError::BadRequest("unprintable actor".into()).into_response(),
    }
    next.run(request).await
}

/// A relayed actor the log can take.
fn is_printable_actor(actor: &str) -> bool {
    !actor.is_empty()
        && actor.len() <= MAX_ACTOR_BYTES
        && actor.chars().all(|c| c.is_ascii_graphic())
}

/// `(COMM)` of a local process, from the kernel, or nothing.
fn process_name(pid: Option<i32>) -> String {
    let Some(pid) = pid.filter(|pid| *pid > 0) else {
        return String::new();
    };
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm: String = comm
                .trim()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(16)
                .collect();
            format!("({comm})")
        }
        Err(_) => String::new(),
    }
}

fn api_routes(node: Node) -> Router {
    Router::new()
        .merge(cluster::routes())
        .merge(ipam::routes())
        .merge(policy::routes())
        .merge(audit::routes())
        .merge(ui::routes())
        .route(PATH_METRICS, axum::routing::get(metrics_text))
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .with_state(node)
}

/// Every error answer in the JSON error shape: those of the handlers are
/// already; the rest (401 from the secret check, 413 and 400 from axum's
/// extractors, 404 and 405 of the router, the Raft routes' refusals) carry
/// text, which becomes the `error` of an [`ErrorBody`] with the status's
/// code.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (_, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let code = code_of_status(status);
    (status, Json(ErrorBody { error, code })).into_response()
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))
}

/// The actor a request is recorded under, as [`authorize`] established it:
/// `client:uid=UID(COMM)@NODE` on the unix socket,
/// `client:ROLE:NAME@NODE` for an operator's certificate, `node:NAME` for a
/// member, or the actor a member relayed.
pub(crate) fn client_actor(node: &Node, _listener: Listener, headers: &HeaderMap) -> String {
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("client:unknown@{}", node.config.name))
}

/// A committed write as the API reports it: applied → 200, rejected → the
/// rejection's error.
pub(crate) fn write_result(
    request_id: String,
    applied: AppliedRequest,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    if let Outcome::Rejected(rejection) = &applied.outcome {
        return Err(ApiError::from_rejection(rejection));
    }
    Ok(Json(WriteResult {
        index: applied.index,
        request_id,
        outcome: applied.outcome,
    }))
}

/// Passes a leader-only request on to the leader and its answer back.
pub(crate) async fn forward_to_leader(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_of_methods_are_bounded() {
        assert_eq!(method_label(&Method::POST), "POST");
        let invented = Method::from_bytes(b"FROBNICATE-12345").expect("a token");
        assert_eq!(method_label(&invented), "other");
    }
}

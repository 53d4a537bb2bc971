//! `romanactl ui`: the node's web view in a local browser. Opens a port on
//! the loopback interface and relays the browser's read requests (GET and
//! HEAD of `/ui/` and `/v1/`) to the node with this command's credentials:
//! the local socket's, or a certificate with `--server`. Nothing else is
//! relayed: the view is read-only whatever the credentials allow.
//!
//! The port is open to every local user, so it asks for a token: the URL
//! printed at start carries it once, the answer sets it as a cookie
//! (`HttpOnly`, `SameSite=Strict`) and redirects to the same URL without it.
//! Requests naming another host than the loopback address are refused (DNS
//! rebinding).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use romana_api::paths::PATH_UI;

use crate::error::Error;
use crate::http_client::ApiClient;

const COOKIE_NAME: &str = "romana_ui";

#[derive(Clone)]
struct Relay {
    client: ApiClient,
    token: String,
    /// `Host` values the browser may use (`127.0.0.1:PORT`, `localhost:PORT`).
    hosts: Vec<String>,
}

/// Runs the relay on `listen` until Ctrl-C or SIGTERM.
pub async fn run(client: ApiClient, listen: SocketAddr) -> Result<String, Error> {
    if !listen.ip().is_loopback() {
        return Err(Error::Config(format!(
            "--listen {listen}: the web view relays with your credentials; it listens on a loopback address only"
        )));
    }
    // Fail early, with the node's own message, if it cannot be reached.
    let _: romana_api::cluster::StatusView = client
        .get(romana_api::paths::PATH_STATUS)
        .await
        .map_err(|e| Error::Api(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random)
        .map_err(|e| Error::Config(format!("no random source for the token: {e}")))?;
    let token = hex::encode(random);
    let port = address.port();
    let relay = Relay {
        client,
        token: token.clone(),
        hosts: vec![
            format!("{}:{port}", address.ip()),
            format!("localhost:{port}"),
        ],
    };
    println!(
        "romana web view: http://{address}{PATH_UI}/?token={token}\n(relaying to the node; Ctrl-C to stop)"
    );
    let router = Router::new().fallback(relay_request).with_state(relay);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| Error::Api(format!("the web view stopped: {e}")))?;
    Ok(String::new())
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Equal without an early exit (the token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
}

/// `path?query` without its `token` parameter, and the token if there was
/// one.
fn strip_token(path: &str, query: Option<&str>) -> (String, Option<String>) {
    let mut token = None;
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| match pair.strip_prefix("token=") {
            Some(value) => {
                token = Some(value.to_string());
                false
            }
            None => true,
        })
        .collect();
    let target = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    (target, token)
}

async fn relay_request(State(relay): State<Relay>, request: Request) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !relay.hosts.iter().any(|allowed| allowed == host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this relay answers only to its loopback address",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "the web view is read-only: GET and HEAD only",
        );
    }
    let uri = request.uri().clone();
    let (target, offered) = strip_token(uri.path(), uri.query());
    if let Some(offered) = offered {
        if !same(&offered, &relay.token) {
            return refuse(StatusCode::UNAUTHORIZED, "wrong token");
        }
        // Trade the token in the URL for a cookie, and drop it from the
        // address bar (and from the history).
        let cookie = format!(
            "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/",
            relay.token
        );
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let (Ok(cookie), Ok(location)) = (
            HeaderValue::from_str(&cookie),
            HeaderValue::from_str(&target),
        ) {
            response.headers_mut().insert(SET_COOKIE, cookie);
            response.headers_mut().insert(LOCATION, location);
        }
        return response;
    }
    if !cookie_token(&request).is_some_and(|t| same(&t, &relay.token)) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "open the URL `romanactl ui` printed (it carries this session's token)",
        );
    }
    let path = uri.path();
    if path == "/" {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui/"));
        return response;
    }
    let allowed = (path == PATH_UI || path.starts_with("/ui/") || path.starts_with("/v1/"))
        && !path.starts_with("/v1/internal");
    if !allowed {
        return refuse(StatusCode::NOT_FOUND, "not part of the web view");
    }
    let answer = match relay
        .client
        .send(
            request.method().clone(),
            &target,
            "application/json",
            Vec::new(),
        )
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(romana_api::ErrorBody {
                    error: format!("the node did not answer: {e}"),
                    code: romana_api::ErrorCode::Unavailable,
                }),
            )
                .into_response()
        }
    };
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    for name in [
        CONTENT_TYPE,
        CACHE_CONTROL,
        CONTENT_SECURITY_POLICY,
        X_CONTENT_TYPE_OPTIONS,
        LOCATION,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_leaves_the_url_and_other_parameters_stay() {
        assert_eq!(
            strip_token("/ui/", Some("token=abc")),
            ("/ui/".to_string(), Some("abc".to_string()))
        );
        assert_eq!(
            strip_token("/v1/explain", Some("src=a&token=t&dst=b")),
            ("/v1/explain?src=a&dst=b".to_string(), Some("t".to_string()))
        );
        assert_eq!(
            strip_token("/v1/hosts", None),
            ("/v1/hosts".to_string(), None)
        );
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}

//! The web view: three files embedded in the binary, served read-only
//! under `/ui/` behind the same authentication as the rest of the API. The
//! page reads the ordinary JSON routes (status, hosts, tenants,
//! allocations, policies, explain, the history); it writes nothing.
//!
//! A browser reaches it through `romanactl ui`, which opens a local port
//! and relays read requests to the node with the operator's credentials.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use romana_api::paths::PATH_UI;

use crate::node::Node;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// Only the page's own files and API; nothing inline, nothing from
/// elsewhere, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_UI, get(|| async { Redirect::permanent("/ui/") }))
        .route(
            &format!("{PATH_UI}/"),
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            &format!("{PATH_UI}/index.html"),
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            &format!("{PATH_UI}/app.js"),
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            &format!("{PATH_UI}/app.css"),
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The files change with the binary; a restarted node may be another
    // release.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

//! A small HTTP client for the node API, over TLS (pooled) or the local unix
//! socket. Used by `romanactl`, by nodes talking to each other (join, write
//! forwarding), by the benchmark and by the tests. Over TCP it speaks TLS
//! only, with the client configuration it is given ([`crate::tls`]): the
//! certificate it presents is who the node records as the actor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use raft_store::transport::client::POOL_IDLE_TIMEOUT;
use romana_api::ErrorBody;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use romana_api::headers::ACTOR_HEADER;

use crate::tls::TlsConnector;

/// Where the node API is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `HOST:PORT` of a node's TCP listener.
    Tcp(String),
    /// The node's local unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(address) => write!(f, "{address}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A failed call: could not talk to the node at all, or the node answered
/// with an error status.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("{endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    #[error("unexpected answer from {endpoint}: {reason}")]
    BadAnswer { endpoint: String, reason: String },
}

/// A client bound to one endpoint.
#[derive(Clone)]
pub struct ApiClient {
    endpoint: Endpoint,
    /// How TCP endpoints are reached (none: they are refused).
    tcp: Option<TcpClient>,
    timeout: Duration,
    actor: Option<String>,
}

/// A pooled HTTP client for nodes' TCP listeners.
#[derive(Clone)]
enum TcpClient {
    Tls(Client<TlsConnector, Full<Bytes>>),
    /// Nodes run with `--insecure-plaintext` (loopback benchmarks).
    Plain(Client<HttpConnector, Full<Bytes>>),
}

/// Default deadline of one API call. Writes wait for a commit, which the
/// node bounds by its own write deadline; this is longer than that.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl ApiClient {
    /// A client of `endpoint`; `tls` is needed for TCP endpoints.
    pub fn new(endpoint: Endpoint, tls: Option<Arc<ClientConfig>>) -> Self {
        let tcp = tls.map(|config| {
            TcpClient::Tls(
                Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(64)
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .build(TlsConnector::new(config)),
            )
        });
        Self {
            endpoint,
            tcp,
            timeout: DEFAULT_CALL_TIMEOUT,
            actor: None,
        }
    }

    /// A client speaking plain HTTP to nodes run with
    /// `--insecure-plaintext` (the benchmark's comparison).
    pub fn plaintext(endpoint: Endpoint) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            endpoint,
            tcp: Some(TcpClient::Plain(client)),
            timeout: DEFAULT_CALL_TIMEOUT,
            actor: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client (and connection pool) aimed at another endpoint.
    pub fn with_endpoint(&self, endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            ..self.clone()
        }
    }

    /// Relays an actor: honoured only when this client presents a node
    /// certificate (a member forwarding a request it received); every
    /// other caller is recorded as what its certificate or its socket
    /// credentials say.
    pub fn with_actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_string());
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.json(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        self.json(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.json(Method::DELETE, path, None::<&()>).await
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CallError> {
        let bytes = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| self.bad_answer(format!("encode request: {e}")))?,
            None => Vec::new(),
        };
        let (status, bytes) = self.raw(method, path, "application/json", bytes).await?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => body.error,
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
            };
            return Err(CallError::Status { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.bad_answer(format!("decode answer: {e}")))
    }

    fn bad_answer(&self, reason: String) -> CallError {
        CallError::BadAnswer {
            endpoint: self.endpoint.to_string(),
            reason,
        }
    }

    /// One request with any body; returns status and body bytes, all
    /// within the client's timeout.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let exchange = async {
            let response = self.exchange(method, path, content_type, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.bad_answer(format!("read body: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.timed_out())?
    }

    /// One request; the answer once its head is in (within the client's
    /// timeout), its body still to be read: for streams (`events
    /// --follow`) and for relaying answers as they are (`romanactl ui`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
        tokio::time::timeout(
            self.timeout,
            self.exchange(method, path, content_type, body),
        )
        .await
        .map_err(|_| self.timed_out())?
    }

    fn timed_out(&self) -> CallError {
        CallError::Timeout {
            endpoint: self.endpoint.to_string(),
            timeout: self.timeout,
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
        let authority = match &self.endpoint {
            Endpoint::Tcp(address) => address.as_str(),
            Endpoint::Unix(_) => "localhost",
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!(
                "{}://{authority}{path}",
                match (&self.endpoint, &self.tcp) {
                    (Endpoint::Tcp(_), Some(TcpClient::Tls(_))) => "https",
                    _ => "http",
                }
            ))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::HOST, authority);
        if let Some(actor) = &self.actor {
            builder = builder.header(ACTOR_HEADER, actor.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.bad_answer(format!("build request: {e}")))?;
        match &self.endpoint {
            Endpoint::Tcp(_) => {
                let Some(tcp) = &self.tcp else {
                    return Err(CallError::Unreachable {
                        endpoint: self.endpoint.to_string(),
                        reason: "no TLS credentials for a TCP endpoint".into(),
                    });
                };
                let sent = match tcp {
                    TcpClient::Tls(client) => client.request(request).await,
                    TcpClient::Plain(client) => client.request(request).await,
                };
                sent.map_err(|e| CallError::Unreachable {
                    endpoint: self.endpoint.to_string(),
                    reason: error_chain(&e),
                })
            }
            Endpoint::Unix(path) => {
                send_unix(path, request)
                    .await
                    .map_err(|reason| CallError::Unreachable {
                        endpoint: self.endpoint.to_string(),
                        reason,
                    })
            }
        }
    }
}

async fn send_unix(
    path: &std::path::Path,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| error_chain(&e))
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

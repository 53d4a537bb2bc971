//! openraft's network factory: Raft RPCs to peers over HTTP.
//!
//! One hyper client (with its connection pool, keyed by peer) is shared by
//! every peer connection, so connections to a peer are reused across RPCs.
//! Every RPC has a deadline: openraft's `hard_ttl` for it. Failures are
//! classified for openraft's retry logic:
//! - cannot connect, or another node now answers at that address →
//!   `Unreachable` (openraft backs off),
//! - deadline passed → `Timeout`,
//! - other transport or HTTP-level failures (401, 400, 5xx) → `Network`,
//! - an error from the peer's Raft → `RemoteError`.
//!
//! The client is generic over the connector, so the simulation can dial over
//! a simulated network.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, StatusCode};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    BINCODE_CONTENT_TYPE, RAFT_PATH_APPEND, RAFT_PATH_SNAPSHOT, RAFT_PATH_VOTE, TARGET_NODE_HEADER,
};
use crate::entry::{NodeId, NodeInfo};
use crate::raft::TypeConfig;

/// How long a pooled connection may sit idle before the client closes it:
/// below the servers' idle timeout (10 s), so a server never closes a
/// connection just as the client sends on it.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Idle pooled connections kept per peer.
pub const MAX_IDLE_CONNECTIONS_PER_PEER: usize = 8;

/// Told of every Raft RPC this node makes (the node's metrics): the peer's
/// name, the RPC, how long
/// it took, and how it failed (`unreachable`, `timeout`, `network`,
/// `remote`) if it did.
pub trait RpcObserver: Send + Sync {
    /// The observer of the RPCs to one peer (asked once per connection, so
    /// that each RPC costs only its recording).
    fn peer(&self, peer: &str) -> std::sync::Arc<dyn PeerRpcObserver>;
}

/// Told of every Raft RPC to one peer; see [`RpcObserver`].
pub trait PeerRpcObserver: Send + Sync {
    fn observed(&self, rpc: RPCTypes, took: std::time::Duration, error: Option<&'static str>);
}

/// Dials peers for one node.
#[derive(Clone)]
pub struct PeerNetwork<C = HttpConnector> {
    /// This node's id (for error reports).
    node_id: NodeId,
    client: Client<C, Full<Bytes>>,
    /// `http` or `https`: what the connector speaks.
    scheme: &'static str,
    observer: Option<std::sync::Arc<dyn RpcObserver>>,
}

impl PeerNetwork<HttpConnector> {
    /// Over plain TCP (benchmarks of the transport itself; a node dials
    /// its peers over TLS, [`Self::with_connector`]).
    pub fn new(node_id: NodeId) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self::with_connector(node_id, connector, "http")
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> PeerNetwork<C> {
    /// Over any connector (the simulation's network, for one).
    pub fn with_connector(node_id: NodeId, connector: C, scheme: &'static str) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_PEER)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self {
            node_id,
            client,
            scheme,
            observer: None,
        }
    }

    /// Tells `observer` of every RPC.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn RpcObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> RaftNetworkFactory<TypeConfig> for PeerNetwork<C> {
    type Network = PeerConnection<C>;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerConnection {
            network: self.clone(),
            target,
            observer: self.observer.as_ref().map(|o| o.peer(&node.name)),
            base_url: format!("{}://{}", self.scheme, node.address),
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerConnection<C> {
    network: PeerNetwork<C>,
    target: NodeId,
    observer: Option<std::sync::Arc<dyn PeerRpcObserver>>,
    base_url: String,
}

/// A transport failure described in words, for openraft's error types.
#[derive(Debug)]
struct TransportError(String);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for TransportError {}

/// Renders an error with its chain of sources ("connect: refused: ...").
fn error_chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl<C: Connect + Clone + Send + Sync + 'static> PeerConnection<C> {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned,
    {
        let network_error =
            |text: String| RPCError::Network(NetworkError::new(&TransportError(text)));
        let body = bincode::serialize(request)
            .map_err(|e| network_error(format!("encode {action:?}: {e}")))?;
        let http_request = hyper::Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base_url))
            .header(header::CONTENT_TYPE, BINCODE_CONTENT_TYPE)
            .header(TARGET_NODE_HEADER, self.target.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| {
                network_error(format!(
                    "build {action:?} request to {}: {e}",
                    self.base_url
                ))
            })?;

        let exchange = async {
            let response = self
                .network
                .client
                .request(http_request)
                .await
                .map_err(|e| {
                    let text = format!("{action:?} to {}: {}", self.base_url, error_chain(&e));
                    if e.is_connect() {
                        RPCError::Unreachable(Unreachable::new(&TransportError(text)))
                    } else {
                        network_error(text)
                    }
                })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| network_error(format!("read {action:?} response: {e}")))?
                .to_bytes();
            if status == StatusCode::CONFLICT {
                // Another node lives at that address now (the old one was
                // wiped or replaced): unreachable, as far as Raft goes.
                let text = String::from_utf8_lossy(&bytes);
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    format!("{action:?} to {}: {}", self.base_url, text.trim()),
                ))));
            }
            if status != StatusCode::OK {
                let text = String::from_utf8_lossy(&bytes);
                return Err(network_error(format!(
                    "{action:?} to {} answered {status}: {}",
                    self.base_url,
                    text.trim()
                )));
            }
            let result: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&bytes)
                .map_err(|e| network_error(format!("decode {action:?} response: {e}")))?;
            result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        };

        let deadline = option.hard_ttl();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.network.node_id,
                target: self.target,
                timeout: deadline,
            })),
        };
        if let Some(observer) = &self.observer {
            let error = match &result {
                Ok(_) => None,
                Err(RPCError::Unreachable(_)) => Some("unreachable"),
                Err(RPCError::Timeout(_)) => Some("timeout"),
                Err(RPCError::RemoteError(_)) => Some("remote"),
                Err(_) => Some("network"),
            };
            observer.observed(action, started.elapsed(), error);
        }
        result
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> RaftNetwork<TypeConfig> for PeerConnection<C> {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(RAFT_PATH_APPEND, RPCTypes::AppendEntries, &request, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            RAFT_PATH_SNAPSHOT,
            RPCTypes::InstallSnapshot,
            &request,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(RAFT_PATH_VOTE, RPCTypes::Vote, &request, &option)
            .await
    }
}

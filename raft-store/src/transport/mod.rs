//! The Raft RPC transport: HTTP, bincode bodies. The node serves and dials
//! it over mutual TLS (romana-node's `tls`); the cluster secret never
//! travels.
//!
//! # Layout
//!
//! - [`auth`]: the cluster secret, the root the node derives its
//!   certificate authority from.
//! - [`server`]: the axum routes a node serves for its peers.
//! - [`client`]: openraft's `RaftNetworkFactory`, dialing peers through one
//!   pooled HTTP client with a deadline on every RPC.
//!
//! # In the two request paths
//!
//! Both a CNI ADD's allocation and a policy travel the same way once the
//! leader's batcher has packed them into an entry: the leader's openraft
//! sends it to every follower and learner as an `append` RPC ([`client`]),
//! each peer's node API serves it ([`server`], behind mutual TLS) into its
//! own `LogStore`, and the flushed acknowledgements make it committed. Votes
//! and snapshots (a node far behind) take the same routes.

pub mod auth;
pub mod client;
pub mod server;

pub use auth::ClusterSecret;
pub use client::{PeerNetwork, PeerRpcObserver, RpcObserver};
pub use server::raft_routes;

/// Path prefix of the Raft RPC routes.
pub const RAFT_PATH_APPEND: &str = "/raft/append";
pub const RAFT_PATH_VOTE: &str = "/raft/vote";
pub const RAFT_PATH_SNAPSHOT: &str = "/raft/snapshot";

/// Header naming the node id an RPC is meant for.
pub const TARGET_NODE_HEADER: &str = "x-romana-target-node";

/// Content type of bincode bodies.
pub const BINCODE_CONTENT_TYPE: &str = "application/x-bincode";

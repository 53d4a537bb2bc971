//! # raft-store: Romana's replicated event log
//!
//! Every Romana node holds a replica of one Raft-replicated, append-only log
//! of cluster requests and derives its state by projecting it. This crate is
//! everything about that log that is not specific to running a node.
//!
//! ## Layout
//!
//! - [`entry`]: what a log entry says: a [`LogPayload`] of one or more
//!   [`ClusterRequest`]s (each a [`Command`] with actor, request id and
//!   proposer timestamp), and [`NodeInfo`], a member as Raft knows it.
//! - [`state`]: [`ClusterState`], the projection, and its pure,
//!   deterministic `apply`; outcomes and rejections; the content hash.
//! - [`store`]: openraft's `RaftLogStorage` and `RaftStateMachine`,
//!   written once over the [`store::KvBackend`] trait, with a sled backend
//!   (production) and an in-memory one (simulation, tests).
//! - [`transport`]: Raft RPCs over HTTP with bincode bodies: the axum routes
//!   a node serves, the pooled client it dials peers with (generic over the
//!   connector so a simulated network can stand in), and cluster-secret
//!   authentication.
//!
//! ## The path of a write
//!
//! `romanactl` → node API → the leader's batcher gathers the requests that
//! arrive together into one `LogPayload` → `Raft::client_write` → [`store::LogStore::append`] (flushed) on a quorum via
//! [`transport`] → committed → [`store::StateMachineStore`] `apply` →
//! [`ClusterState::apply`] on every replica → the applied index is published
//! on a watch, which the API (read-your-writes) and the reconciler follow.

pub mod audit;
pub mod entry;
pub mod layout;
pub mod policy;
pub mod runtime;
pub mod state;
pub mod store;
pub mod topology;
pub mod transport;

use std::io::Cursor;

pub use entry::{ClusterRequest, Command, LogPayload, NodeInfo, RequestMeta};
pub use state::{AppliedRequest, ClusterState, Effect, Outcome, Rejection};
pub use store::Response;

/// Raft node ids.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The Raft type configuration of a Romana cluster.
    pub TypeConfig:
        D = LogPayload,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::RomanaRuntime,
);

/// A Romana Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

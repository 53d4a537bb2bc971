//! # raft-store: Romana's replicated event log
//!
//! Every Romana node holds a replica of one Raft-replicated, append-only log
//! of cluster requests and derives its state by projecting it. This crate is
//! everything about that log that is not specific to running a node.
//!
//! # Layout
//!
//! Listed from the bottom up: a module uses only those above it.
//!
//! - [`error`]: [`Error`], the crate's error type.
//! - [`layout`]: Romana's hierarchical address layout (host, tenant,
//!   segment, endpoint bit fields of one CIDR).
//! - [`entry`]: the entry model, what a log entry says: a [`LogPayload`]
//!   of one or more [`ClusterRequest`]s (each a [`Command`] with its
//!   [`RequestMeta`]: actor, request id, proposer timestamp), the policies
//!   and address requests commands carry, the stateless checks of their
//!   fields, and [`NodeInfo`], a member as Raft knows it.
//! - [`state`]: [`ClusterState`], the projection, and its pure,
//!   deterministic `apply`, split by concern (topology, IPAM, policy, the
//!   request ledger and audit chain head); outcomes and rejections; the
//!   content hash; the invariants.
//! - [`audit`]: the audit archive: every applied request with its outcome,
//!   hash-chained; verify and replay.
//! - [`runtime`]: openraft's async runtime (tokio with a seedable random
//!   generator, for the simulation).
//! - [`raft`]: the openraft type configuration ([`TypeConfig`], [`Raft`]).
//! - [`store`]: openraft's `RaftLogStorage` and `RaftStateMachine`,
//!   written once over the [`store::KvBackend`] trait, with a sled backend
//!   (production) and an in-memory one (simulation, tests).
//! - [`transport`]: Raft RPCs over HTTP with bincode bodies: the axum routes
//!   a node serves, the pooled client it dials peers with (generic over the
//!   connector so a simulated network can stand in: the node's is TLS), and
//!   the cluster secret the node derives its CA from.
//!
//! # The path of a request
//!
//! The pieces of `romana-node` are named by role: the *node API* (axum,
//! unix socket and TCP), the *batcher* (gathers the leader's writes into
//! entries), the *reconciler* (routes, through the dataplane trait over
//! netlink) and the *firewall* (iptables).
//!
//! **(a) A CNI ADD to a committed allocation.** The `romana` CNI plugin
//! sends the container id, interface, tenant and segment over the node's
//! unix socket → the node API builds a [`ClusterRequest`] with
//! [`Command::AllocateAddress`] ([`entry::AllocationRequest`]), stamped
//! with actor, request id and time, and forwards it to the leader if this
//! node does not lead → the leader's batcher packs it with whatever else
//! arrived into one [`LogPayload`] → `Raft::client_write` →
//! [`store::LogStore`] `append` (flushed before it is acknowledged) on a
//! quorum, via [`transport`] → committed → [`store::StateMachineStore`]
//! `apply` → [`ClusterState::apply`] on every replica: the IPAM handler
//! ([`state::ipam`]) picks the address, the outcome ([`AppliedRequest`])
//! goes into the request ledger, the audit chain and the archive → the
//! leader's [`Response`] carries the outcome back to the node API, which
//! answers the plugin (after waiting, read-your-writes, for its own
//! replica's applied index) → the plugin wires the veth and prints the
//! CNI result.
//!
//! **(b) A committed policy to iptables on every host.** `romanactl policy
//! apply` (Romana JSON or a Kubernetes NetworkPolicy, translated to
//! [`entry::policy::Policy`] by the node API) → [`Command::ApplyPolicies`]
//! → batcher → log → committed as in (a) → on every replica
//! [`state::policy`] checks the tenants and segments it names and stores
//! it in [`ClusterState::policies`] → the state machine publishes the new
//! applied index on a watch ([`store::SharedState::subscribe`]) → each
//! host's reconciler wakes, computes the desired rules for that host from
//! the projection, and the firewall converges iptables to them.

pub mod audit;
pub mod entry;
pub mod error;
pub mod layout;
pub mod raft;
pub mod runtime;
pub mod state;
pub mod store;
pub mod transport;

pub use entry::{ClusterRequest, Command, LogPayload, NodeId, NodeInfo, RequestMeta};
pub use error::Error;
pub use raft::{Raft, TypeConfig};
pub use state::{AppliedRequest, ClusterState, Effect, Outcome, Rejection, Response};

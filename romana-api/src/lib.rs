//! # romana-api: the node API on the wire
//!
//! The paths, headers, request bodies, answers and the error body that
//! `romana-node` serves and `romanactl`, the CNI plugin `romana`, peers and
//! tests speak. Serde types and constants only: no HTTP stack, no Raft, so
//! the short-lived plugin links nothing it does not need.
//!
//! ## Layout
//!
//! - [`paths`]: every route of the API, and the default unix socket.
//! - [`headers`]: the headers the API reads.
//! - [`cluster`]: status, members, notes, joins, written requests.
//! - [`ipam`]: layout, hosts, tenants, segments, allocations.
//! - [`policy`]: policies and `explain`.
//! - [`error`]: the error body every failure carries, with a machine-readable
//!   [`error::ErrorCode`] so that clients never decide by message text.
//!
//! Types whose content is the event model (an entry's outcome, a policy) are
//! generic over it, defaulting to [`serde_json::Value`]: the server fills in
//! `raft_store`'s types, a client that only passes them on needs no
//! `raft_store`.

//! ## Words
//!
//! A **node** is a `romana-node` process and its Raft member (`/v1/nodes`,
//! `romanactl node`); a **host** is the same machine as the address layout
//! sees it: a host number and the prefix it owns (`/v1/hosts`,
//! `romanactl host`). Every node registers as one host, under the same
//! name.

pub mod cluster;
pub mod error;
pub mod events;
pub mod headers;
pub mod ipam;
pub mod paths;
pub mod policy;

pub use error::{ErrorBody, ErrorCode};

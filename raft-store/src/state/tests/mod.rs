//! Tests of the projection, driven through `ClusterState::apply` the way
//! the log drives it.
//!
//! # Layout
//!
//! - [`apply`]: `apply` as a whole: initialisation, idempotency, node
//!   identity, entry formats, the bounded ledger, the pinned content hash.
//! - [`topology`]: hosts, tenants, segments and addresses (the IPAM step of
//!   request path (a), a CNI ADD to a committed allocation), with
//!   `check_invariants` after every request.
//! - [`kubernetes`]: the mirrored namespaces and pods.
//!
//! Policies (request path (b)) are checked in `entry::policy` and
//! `state::policy`; the store and the archive in `raft-store/tests/`.

mod apply;
mod kubernetes;
mod topology;

//! # romana-node: the per-host daemon and the operator CLI
//!
//! # Layout
//!
//! - [`daemon`]: `romana-node run`: binds the listeners, opens the node,
//!   serves the API, starts the controller and the reconciler, shuts down.
//! - [`node`]: a node: start-up (resume, join or initialise), the write
//!   path (`propose` → leader → commit → applied here) and its
//!   [`batcher`](node::batcher), [`membership`](node::membership) (admit,
//!   remove, the controller that promotes learners).
//! - [`api`]: the axum routers (unix socket and TCP), one file per
//!   resource: [`cluster`](api::cluster), [`ipam`](api::ipam),
//!   [`policy`](api::policy), [`audit`](api::audit). The wire types are
//!   the `romana-api` crate's.
//! - [`dataplane`]: this host's kernel state from the projection:
//!   [`routes`](dataplane::routes), [`firewall`](dataplane::firewall), the
//!   [`reconciler`](dataplane::reconciler), behind the
//!   [`Dataplane`](dataplane::Dataplane) trait with a
//!   [`kernel`](dataplane::kernel) and a [`recording`](dataplane::recording)
//!   implementation.
//! - [`policy`]: policy file [`formats`](policy::formats) and the
//!   [`compiler`](policy::compiler) from projection to match rules (pure).
//! - [`ctl`]: `romanactl` (a client of the API only) and its
//!   [`audit`](ctl::audit) commands.
//! - [`server`]: serving a router on a listener with a connection cap, a
//!   header (and idle) timeout and a graceful drain.
//! - [`http_client`]: the async client for the API (romanactl, peers, the
//!   benchmark, tests).
//! - [`config`]: `romana-node run` flags and the TOML file with the same keys.
//! - [`error`]: start-up and command errors (shared with `romanactl`, so
//!   nothing of the server).
//! - [`api_error`]: [`api_error::ApiError`] decides every HTTP status and
//!   error code of the API.
//!
//! The benchmark (`romana-node bench`) lives in the binary
//! (`src/bin/romana-node/bench.rs`), not in this library. Still to come, and
//! where: the Kubernetes controller in `kubernetes/` (started by
//! [`daemon`], leader only), per-selector ipsets in `dataplane/ipset`, TLS
//! in [`server`], metrics as a layer on [`api::tcp_router`].
//!
//! Dependencies between these modules point one way (checked by
//! `deploy/check-module-cycles.py`): `daemon` → `api` → `node` →
//! `api_error`/`error`/`config`/`http_client`; `daemon` → `dataplane` → `policy`;
//! `ctl` → `http_client`.
//!
//! # The path of a request
//!
//! **A CNI ADD to a committed allocation.** The plugin posts
//! `/v1/ipam/allocations` on the unix socket → [`api::ipam`] checks that
//! this host's isolation rules are in place (`firewall_ready`) →
//! [`node::Node::propose`] stamps actor, request id and time →
//! [`node::Node::submit`]: on the leader, [`node::batcher`] gathers it into
//! one entry with others and calls `Raft::client_write`; on a follower it is
//! forwarded to the leader's `/v1/internal/propose` → replicated and
//! committed ([`raft_store::transport`], [`raft_store::store`]) → applied on
//! every replica ([`raft_store::ClusterState::apply`]) → `propose` waits
//! until this replica has applied it (or answers `outcome_unknown`, retry
//! with the same request id) → the handler answers the allocation with its
//! block and gateway.
//!
//! **A committed policy to iptables on every host.** `romanactl policy
//! apply` → [`api::policy`] parses it ([`policy::formats`]) and proposes
//! `ApplyPolicies` as above → applied on every replica → each node's
//! [`dataplane::reconciler`] wakes on the applied index, sees that the
//! firewall's inputs changed, renders the chains
//! ([`policy::compiler`] → [`dataplane::firewall`]) and converges them with
//! one `iptables-restore` through [`dataplane::kernel`].

pub mod api;
pub mod api_error;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod error;
pub mod events;
pub mod history;
pub mod http_client;
pub mod kubernetes;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod server;
pub mod tls;

/// Sets up `tracing` output: `RUST_LOG`-style filter (default `info`), text
/// or JSON lines on stderr.
pub fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,sled=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

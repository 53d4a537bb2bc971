//! # romana-node: the per-host daemon and the operator CLI
//!
//! ## Layout
//!
//! - [`config`]: `romana-node run` flags and the TOML file with the same keys.
//! - [`node`]: a running node: start-up (resume, join or initialise), the
//!   write path (`propose` → leader → commit → applied here), membership
//!   (admit, remove, promote learners) and shutdown.
//! - [`api`]: the axum router served on the unix socket and on TCP; errors
//!   and their HTTP statuses.
//! - [`batcher`]: gathers requests that reach the leader together into one
//!   log entry.
//! - [`http_client`]: the client for that API (romanactl, peers, tests).
//! - [`reconciler`]: routes to the other hosts' prefixes, derived from the
//!   projection and converged in the kernel.
//! - [`firewall`]: tenant isolation as one iptables chain derived from the
//!   projection, applied in one `iptables-restore` transaction.
//! - [`ctl`]: `romanactl`'s commands and output.
//! - [`bench`]: `romana-node bench`, the commit-rate benchmark.
//! - [`error`]: the crate's error type.
//!
//! ## The path of a write
//!
//! `romanactl note TEXT` → `POST /v1/notes` on any node ([`api`]) →
//! [`node::Node::propose`] stamps actor, request id and time → if this node
//! leads, `Raft::client_write`; otherwise the request is forwarded to the
//! leader's `/v1/internal/propose` → replicated and committed
//! ([`raft_store::transport`], [`raft_store::store`]) → applied on every
//! replica ([`raft_store::ClusterState::apply`]) → the receiving node waits
//! until it has applied the entry itself, then answers.

pub mod api;
pub mod audit_cli;
pub mod batcher;
pub mod bench;
pub mod config;
pub mod ctl;
pub mod error;
pub mod firewall;
pub mod http_client;
pub mod ipam_api;
pub mod node;
pub mod policy_api;
pub mod policy_compiler;
pub mod policy_formats;
pub mod reconciler;

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

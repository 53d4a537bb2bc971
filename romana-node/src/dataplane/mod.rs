//! The dataplane: this host's kernel state derived from the projection.
//!
//! - [`routes`]: the routes to the other hosts' prefixes (pure).
//! - [`firewall`]: tenant isolation and policies as iptables chains (pure
//!   rendering; `iptables-save`/`iptables-restore` to observe and apply).
//! - [`reconciler`]: the loop that converges the kernel to both, on every
//!   applied change that touches them and on a periodic drift check.
//! - [`kernel`]: the real [`Dataplane`] (rtnetlink and iptables) and
//!   `romana-node cleanup`.
//! - [`reaper`]: deletes the pod veths CNI DELs retired, in batches.
//! - [`recording`]: an in-memory [`Dataplane`] that records what it was
//!   asked to do (tests, the simulation).
//!
//! Per-selector ipsets for Kubernetes NetworkPolicy go in `ipset` here, as
//! a third effect behind the same trait.

pub mod firewall;
pub mod ipsets;
pub mod kernel;
pub mod reaper;
pub mod reconciler;
pub mod recording;
pub mod routes;

use std::net::Ipv4Addr;

use raft_store::layout::AddressLayout;

use firewall::Desired;
use routes::HostRoute;

/// A failed kernel operation, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DataplaneError(pub String);

/// Runs `program args` with `input` on its standard input (a restore
/// transaction); the error says what `what` refused and why.
pub(crate) fn run_with_input(
    program: &str,
    args: &[&str],
    input: &str,
    what: &str,
) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("write to {program}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} refused {what}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The kernel effects the reconciler needs, in pairs of verbs. Blocking:
/// the reconciler calls them off the async workers.
pub trait Dataplane: Send + 'static {
    /// Romana's host routes in the kernel (protocol 77, host-prefix length,
    /// inside `layout`'s CIDR).
    fn observe_routes(&mut self, layout: &AddressLayout) -> Result<Vec<HostRoute>, DataplaneError>;
    /// Adds `route`, or replaces the route to its destination.
    fn setup_route(&mut self, route: &HostRoute) -> Result<(), DataplaneError>;
    /// Removes Romana's route to `destination/prefix_len`; gone already is
    /// fine.
    fn teardown_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), DataplaneError>;
    /// Makes the project's sets and chains exactly `desired`: sets created
    /// and updated first (one transaction), then the chains (observe, then
    /// one transaction), then sets no rule uses any more destroyed. Returns
    /// whether anything changed.
    fn converge_firewall(&mut self, desired: &Desired) -> Result<bool, DataplaneError>;
    /// The time of each step of the last [`Dataplane::converge_firewall`],
    /// where the dataplane measures them (the kernel's does).
    fn last_firewall_steps(&self) -> Option<FirewallSteps> {
        None
    }
}

/// The steps of one firewall convergence: the ipset transactions (create
/// and update, then destroy what no rule uses), the iptables-restore
/// transaction (`None` if it did not run), and which of the two failed,
/// if one did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirewallSteps {
    pub ipset: std::time::Duration,
    pub iptables: Option<std::time::Duration>,
    pub failed: Option<&'static str>,
}

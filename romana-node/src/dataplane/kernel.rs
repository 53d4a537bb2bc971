//! The real [`Dataplane`]: routes through rtnetlink, isolation through
//! `iptables-save`/`iptables-restore`; and `romana-node cleanup`.

use std::net::Ipv4Addr;

use raft_store::layout::AddressLayout;
use romana_netlink::{Netlink, NetlinkError, ROMANA_ROUTE_PROTOCOL};

use super::firewall::{self, Desired};
use super::ipsets;
use super::routes::HostRoute;
use super::{Dataplane, DataplaneError, FirewallSteps};

/// This host's kernel. The netlink socket is opened on first use and
/// dropped after a failure, so a pass after an error starts afresh.
#[derive(Default)]
pub struct Kernel {
    netlink: Option<Netlink>,
    last_steps: Option<FirewallSteps>,
}

impl Kernel {
    fn netlink(&mut self) -> Result<&mut Netlink, DataplaneError> {
        if self.netlink.is_none() {
            self.netlink = Some(Netlink::open_here().map_err(netlink_error)?);
        }
        self.netlink
            .as_mut()
            .ok_or_else(|| DataplaneError("netlink socket not open".into()))
    }

    /// Runs `operation` on the socket, dropping the socket if it fails.
    fn with_netlink<T>(
        &mut self,
        operation: impl FnOnce(&mut Netlink) -> Result<T, NetlinkError>,
    ) -> Result<T, DataplaneError> {
        let result = operation(self.netlink()?).map_err(netlink_error);
        if result.is_err() {
            self.netlink = None;
        }
        result
    }
}

fn netlink_error(e: NetlinkError) -> DataplaneError {
    DataplaneError(e.to_string())
}

impl Dataplane for Kernel {
    fn observe_routes(&mut self, layout: &AddressLayout) -> Result<Vec<HostRoute>, DataplaneError> {
        let host_prefix_len = layout.host_prefix_len();
        let routes = self.with_netlink(|netlink| netlink.routes())?;
        Ok(routes
            .into_iter()
            .filter(|r| r.protocol == ROMANA_ROUTE_PROTOCOL && r.prefix_len == host_prefix_len)
            // Another cluster's routes on the same machine are not ours.
            .filter(|r| layout.contains(r.destination))
            .filter_map(|r| {
                r.gateway.map(|gateway| HostRoute {
                    destination: r.destination,
                    prefix_len: r.prefix_len,
                    gateway,
                })
            })
            .collect())
    }

    fn setup_route(&mut self, route: &HostRoute) -> Result<(), DataplaneError> {
        self.with_netlink(|netlink| {
            netlink.replace_gateway_route(route.destination, route.prefix_len, route.gateway)
        })
    }

    fn teardown_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), DataplaneError> {
        self.with_netlink(|netlink| netlink.delete_romana_route(destination, prefix_len))
    }

    fn converge_firewall(&mut self, desired: &Desired) -> Result<bool, DataplaneError> {
        let steps = self.last_steps.insert(FirewallSteps::default());
        let failed = |steps: &mut FirewallSteps, step: &'static str, e: &dyn std::fmt::Display| {
            steps.failed = Some(step);
            DataplaneError(e.to_string())
        };
        let (sets, before) = timed(&mut steps.ipset, || ipsets::converge(&desired.sets))
            .map_err(|e| failed(steps, "ipset", &e))?;
        let chains = timed(steps.iptables.get_or_insert_default(), || {
            firewall::reconcile(&desired.chains)
        })
        .map_err(|e| failed(steps, "iptables", &e))?;
        let stale = timed(&mut steps.ipset, || {
            ipsets::remove_stale(&desired.sets, &before)
        })
        .map_err(|e| failed(steps, "ipset", &e))?;
        Ok(sets || chains || stale)
    }

    fn last_firewall_steps(&self) -> Option<FirewallSteps> {
        self.last_steps
    }
}

/// Runs `step`, adding its time to `total`.
fn timed<T>(total: &mut std::time::Duration, step: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = step();
    *total += started.elapsed();
    result
}

/// Turns on IPv4 forwarding (pods on other hosts are reached through this
/// one). A failure is logged: routes still converge.
pub fn enable_forwarding() {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH)
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
    {
        return;
    }
    if let Err(e) = std::fs::write(PATH, "1") {
        tracing::warn!(error = %e, "cannot enable IPv4 forwarding; pods on other hosts will be unreachable");
    }
}

/// `romana-node cleanup`: removes the isolation rules, every Romana host
/// route (proto 77 with a gateway) of this host and the pod veths DELs
/// retired that are still there. Keeps going past failures
/// and reports them together.
pub fn cleanup_host() -> Result<(), crate::error::Error> {
    let mut problems = firewall::cleanup();
    // The rules that used the sets are gone: the sets can go.
    problems.extend(ipsets::cleanup());
    match Netlink::open_here() {
        Ok(mut netlink) => match netlink.routes() {
            Ok(routes) => {
                for route in routes
                    .into_iter()
                    .filter(|r| r.protocol == ROMANA_ROUTE_PROTOCOL && r.gateway.is_some())
                {
                    if let Err(e) = netlink.delete_romana_route(route.destination, route.prefix_len)
                    {
                        problems.push(e.to_string());
                    }
                }
                // Pod veths retired by DELs the reaper did not get to.
                if let Err(e) = netlink.delete_group(romana_netlink::RETIRED_LINK_GROUP) {
                    problems.push(e.to_string());
                }
            }
            Err(e) => problems.push(e.to_string()),
        },
        Err(e) => problems.push(e.to_string()),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Api(format!(
            "cleanup incomplete: {}",
            problems.join("; ")
        )))
    }
}

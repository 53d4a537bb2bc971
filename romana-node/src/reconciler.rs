//! The reconciler: derives this host's routes from the projection and
//! converges the kernel to them.
//!
//! Desired state (a pure function of the state and this host's name): one
//! route per other host, to that host's prefix (`10.<h>.0.0/16` by default)
//! via its underlay IP, marked with Romana's routing protocol number. The
//! kernel's routes with that number and a host-prefix length are the
//! observed state. The difference is applied with the fewest changes: add
//! what is missing, replace what points elsewhere, delete what is no longer
//! wanted; routes of other protocols (and Romana's per-pod /32 routes, which
//! the CNI plugin owns) are never touched.
//!
//! It runs at start, on every applied change (a watch on the applied index)
//! and every `--reconcile-interval-ms` to repair drift. A restart with
//! nothing changed finds nothing to do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use raft_store::layout::AddressLayout;
use raft_store::state::ClusterState;
use romana_cni::netlink::{Netlink, NetlinkError, ROMANA_ROUTE_PROTOCOL};
use tokio::sync::watch;

use crate::node::Node;

/// A host route: `destination/prefix_len via gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostRoute {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// What the kernel must change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Missing, or pointing at the wrong gateway: add or replace.
    pub upsert: Vec<HostRoute>,
    /// No longer wanted.
    pub delete: Vec<(Ipv4Addr, u8)>,
}

impl RoutePlan {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.delete.is_empty()
    }
}

/// The routes host `me` must have: one per other host. Empty until the
/// cluster and this host are known.
pub fn desired_routes(state: &ClusterState, me: &str) -> Vec<HostRoute> {
    let Some(layout) = state.layout() else {
        return Vec::new();
    };
    let Some(my_record) = state.nodes.get(me) else {
        return Vec::new();
    };
    state
        .nodes
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        // A host on this host's own underlay address (several nodes on one
        // machine, as in loopback tests) or on loopback cannot be a gateway.
        .filter(|(_, record)| {
            record.underlay_ip != my_record.underlay_ip && !record.underlay_ip.is_loopback()
        })
        .map(|(_, record)| {
            let cidr = layout.host_cidr(record.host_number);
            let destination = cidr
                .split('/')
                .next()
                .and_then(|a| a.parse().ok())
                .expect("host_cidr renders an IPv4 address");
            HostRoute {
                destination,
                prefix_len: layout.host_prefix_len(),
                gateway: record.underlay_ip,
            }
        })
        .collect()
}

/// The plan turning `observed` (our host routes in the kernel) into `desired`.
pub fn plan(desired: &[HostRoute], observed: &[HostRoute]) -> RoutePlan {
    let want: BTreeMap<(Ipv4Addr, u8), Ipv4Addr> = desired
        .iter()
        .map(|r| ((r.destination, r.prefix_len), r.gateway))
        .collect();
    let have: BTreeMap<(Ipv4Addr, u8), Ipv4Addr> = observed
        .iter()
        .map(|r| ((r.destination, r.prefix_len), r.gateway))
        .collect();
    RoutePlan {
        upsert: desired
            .iter()
            .filter(|r| have.get(&(r.destination, r.prefix_len)) != Some(&r.gateway))
            .copied()
            .collect(),
        delete: have
            .keys()
            .filter(|key| !want.contains_key(key))
            .copied()
            .collect(),
    }
}

/// Our host routes in the kernel: Romana's protocol, host-prefix length, a
/// gateway.
fn observed_routes(
    netlink: &mut Netlink,
    layout: &AddressLayout,
) -> Result<Vec<HostRoute>, NetlinkError> {
    let host_prefix_len = layout.host_prefix_len();
    Ok(netlink
        .routes()?
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

/// One pass: observe, plan, apply. Blocking (netlink); run off the async
/// workers. Returns the plan it applied.
fn reconcile_once(
    desired: &[HostRoute],
    layout: &AddressLayout,
) -> Result<RoutePlan, NetlinkError> {
    let mut netlink = Netlink::open_here()?;
    let observed = observed_routes(&mut netlink, layout)?;
    let plan = plan(desired, &observed);
    for route in &plan.upsert {
        netlink.replace_gateway_route(route.destination, route.prefix_len, route.gateway)?;
    }
    for (destination, prefix_len) in &plan.delete {
        netlink.delete_romana_route(*destination, *prefix_len)?;
    }
    Ok(plan)
}

fn enable_forwarding() {
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

/// Runs until `stop`: reconcile isolation rules and routes on every applied
/// change and every `interval`.
pub async fn run(node: Node, interval: Duration, mut stop: watch::Receiver<bool>) {
    enable_forwarding();
    let mut applied = node.shared.subscribe();
    let mut last_desired: Option<Vec<HostRoute>> = None;
    loop {
        let (desired, layout, rules) = {
            let projection = node.shared.read();
            let state = &projection.state;
            (
                desired_routes(state, &node.config.name),
                state.layout().copied(),
                crate::firewall::desired_chains(state, node.config.allow_host_to_pods),
            )
        };
        if let (true, Some(rules)) = (node.config.firewall, rules) {
            match tokio::task::spawn_blocking(move || crate::firewall::reconcile(&rules)).await {
                Ok(Ok(changed)) => {
                    if changed {
                        tracing::info!("isolation rules converged");
                    }
                    node.firewall_ready
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "firewall reconcile failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "firewall reconcile task failed"),
            }
        }
        if let (true, Some(layout)) = (node.config.manage_routes, layout) {
            let changed = last_desired.as_ref() != Some(&desired);
            let work = desired.clone();
            match tokio::task::spawn_blocking(move || reconcile_once(&work, &layout)).await {
                Ok(Ok(plan)) => {
                    if !plan.is_empty() {
                        tracing::info!(upsert = ?plan.upsert, delete = ?plan.delete, "routes converged");
                    } else if changed {
                        tracing::debug!(routes = desired.len(), "routes already converged");
                    }
                    last_desired = Some(desired);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "route reconcile failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "route reconcile task failed"),
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = applied.changed() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// `romana-node cleanup`: removes the isolation rules and every Romana host
/// route (proto 77 with a gateway) of this host.
pub fn cleanup_host() -> Result<(), crate::error::Error> {
    let mut problems = crate::firewall::cleanup();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(d: [u8; 4], g: [u8; 4]) -> HostRoute {
        HostRoute {
            destination: Ipv4Addr::from(d),
            prefix_len: 16,
            gateway: Ipv4Addr::from(g),
        }
    }

    #[test]
    fn plan_adds_replaces_and_deletes_the_minimum() {
        let desired = [
            route([10, 1, 0, 0], [192, 0, 2, 1]),
            route([10, 2, 0, 0], [192, 0, 2, 2]),
        ];
        assert!(
            plan(&desired, &desired).is_empty(),
            "converged: nothing to do"
        );
        let observed = [
            route([10, 1, 0, 0], [192, 0, 2, 9]),
            route([10, 3, 0, 0], [192, 0, 2, 3]),
        ];
        let plan = plan(&desired, &observed);
        assert_eq!(
            plan.upsert,
            desired.to_vec(),
            "wrong gateway replaced, missing added"
        );
        assert_eq!(plan.delete, vec![(Ipv4Addr::new(10, 3, 0, 0), 16)]);
    }
}

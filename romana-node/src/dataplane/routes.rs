//! Routes to the other hosts, as a pure function of the projection.
//!
//! Desired state (a pure function of the state and this host's name): one
//! route per other host, to that host's prefix (`10.<h>.0.0/16` by default)
//! via its underlay IP, marked with Romana's routing protocol number. The
//! kernel's routes with that number and a host-prefix length are the
//! observed state. The difference is applied with the fewest changes: add
//! what is missing, replace what points elsewhere, delete what is no longer
//! wanted; routes of other protocols (and Romana's per-pod /32 routes, which
//! the CNI plugin owns) are never touched.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use raft_store::state::ClusterState;

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

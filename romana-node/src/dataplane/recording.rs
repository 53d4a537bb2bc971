//! A [`Dataplane`] in memory: it holds routes and chains as a kernel would
//! and records every call that reads or changes them, so tests can assert
//! what the reconciler did (and what it did not).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use raft_store::layout::AddressLayout;

use super::firewall::{Chains, Desired};
use super::routes::HostRoute;
use super::{Dataplane, DataplaneError};
use crate::policy::compiler::Sets;

/// One call made to the dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ObserveRoutes,
    SetupRoute(HostRoute),
    TeardownRoute(Ipv4Addr, u8),
    ConvergeFirewall,
}

#[derive(Debug, Default)]
pub struct Recording {
    /// Romana's host routes "in the kernel": (destination, length) → gateway.
    pub routes: BTreeMap<(Ipv4Addr, u8), Ipv4Addr>,
    /// The chains "in the kernel"; `None` before the first convergence.
    pub chains: Option<Chains>,
    /// The sets "in the kernel".
    pub sets: Sets,
    /// Every call, in order.
    pub calls: Vec<Call>,
}

impl Recording {
    /// How many times the firewall was observed and converged.
    pub fn firewall_passes(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| **c == Call::ConvergeFirewall)
            .count()
    }
}

impl Dataplane for Recording {
    fn observe_routes(&mut self, layout: &AddressLayout) -> Result<Vec<HostRoute>, DataplaneError> {
        self.calls.push(Call::ObserveRoutes);
        Ok(self
            .routes
            .iter()
            .filter(|((destination, _), _)| layout.contains(*destination))
            .map(|((destination, prefix_len), gateway)| HostRoute {
                destination: *destination,
                prefix_len: *prefix_len,
                gateway: *gateway,
            })
            .collect())
    }

    fn setup_route(&mut self, route: &HostRoute) -> Result<(), DataplaneError> {
        self.calls.push(Call::SetupRoute(*route));
        self.routes
            .insert((route.destination, route.prefix_len), route.gateway);
        Ok(())
    }

    fn teardown_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), DataplaneError> {
        self.calls
            .push(Call::TeardownRoute(destination, prefix_len));
        self.routes.remove(&(destination, prefix_len));
        Ok(())
    }

    fn converge_firewall(&mut self, desired: &Desired) -> Result<bool, DataplaneError> {
        self.calls.push(Call::ConvergeFirewall);
        let changed = self.chains.as_ref() != Some(&desired.chains) || self.sets != desired.sets;
        self.chains = Some(desired.chains.clone());
        self.sets = desired.sets.clone();
        Ok(changed)
    }
}

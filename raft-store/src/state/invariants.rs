//! Structural invariants of the projection: what must hold after every
//! apply, whatever the log said.
//!
//! `apply` does not call [`ClusterState::check_invariants`] itself (it costs
//! a pass over every allocation, on every request): the unit and property
//! tests check it after every request they apply, and the simulation on
//! every node at every step. `apply`'s handlers assert the local facts they
//! rely on where they write them (an owner holds one address, the owner
//! index matches on release).

use std::collections::BTreeSet;

use super::ClusterState;
use crate::error::Error;

impl ClusterState {
    /// Checks the structural invariants of the projection: the owner index is
    /// the inverse of the allocations, host numbers are unique, every
    /// allocation is a usable address inside the block of its host, tenant
    /// and segment. The error names the first one broken.
    pub fn check_invariants(&self) -> Result<(), Error> {
        if self.allocations.len() != self.owners.len() {
            return Err(Error::invariant(format!(
                "{} allocations but {} owners",
                self.allocations.len(),
                self.owners.len()
            )));
        }
        let Some(layout) = self.layout() else {
            return if self.allocations.is_empty() {
                Ok(())
            } else {
                Err(Error::invariant("allocations before initialisation"))
            };
        };
        let mut host_numbers = BTreeSet::new();
        for (name, node) in &self.nodes {
            if !host_numbers.insert(node.host_number) {
                return Err(Error::invariant(format!(
                    "host number {} used twice (again by {name})",
                    node.host_number
                )));
            }
        }
        for (address, allocation) in &self.allocations {
            if self.owners.get(&allocation.owner) != Some(address) {
                return Err(Error::invariant(format!(
                    "{address} held by {} but the owner index disagrees",
                    allocation.owner
                )));
            }
            let parts = layout
                .decode(*address)
                .ok_or_else(|| Error::invariant(format!("{address} outside the CIDR")))?;
            if !layout.is_usable_endpoint(parts.endpoint) {
                return Err(Error::invariant(format!(
                    "{address} is a reserved endpoint"
                )));
            }
            let node = self.nodes.get(&allocation.host).ok_or_else(|| {
                Error::invariant(format!("{address} on unknown host {}", allocation.host))
            })?;
            let tenant = self.tenants.get(&allocation.tenant).ok_or_else(|| {
                Error::invariant(format!("{address} in unknown tenant {}", allocation.tenant))
            })?;
            let segment = tenant.segments.get(&allocation.segment).ok_or_else(|| {
                Error::invariant(format!(
                    "{address} in unknown segment {}",
                    allocation.segment
                ))
            })?;
            if (parts.host, parts.tenant, parts.segment)
                != (node.host_number, tenant.number, segment.number)
            {
                return Err(Error::invariant(format!(
                    "{address} lies outside the block of {}/{}/{}",
                    allocation.host, allocation.tenant, allocation.segment
                )));
            }
        }
        Ok(())
    }
}

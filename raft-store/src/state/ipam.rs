//! Addresses: the allocation records of the projection and the handlers
//! that allocate, release and garbage-collect them.
//!
//! Addresses are handed out round-robin within their host/tenant/segment
//! block, starting after the one handed out last, as the reference
//! host-local IPAM does: a just-released address is not reused while others
//! are free, so stale ARP and conntrack entries for it die out before a new
//! pod gets it.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::outcome::{Effect, Rejection};
use super::ClusterState;
use crate::entry::{AllocationRequest, ContainerInterface, RequestMeta, MAX_GC_VALID_ENTRIES};
use crate::layout::{AddressParts, RESERVED_LOW_ENDPOINTS};

/// A host/tenant/segment block, by numbers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockId {
    pub host: u32,
    pub tenant: u32,
    pub segment: u32,
}

/// Who holds an address, and since when.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub owner: ContainerInterface,
    pub host: String,
    pub tenant: String,
    pub segment: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    /// The CNI network it was allocated for, if any.
    pub network: Option<String>,
    pub allocated_at_ms: u64,
    /// Log index of the allocating request.
    pub allocated_index: u64,
    pub actor: String,
}

impl ClusterState {
    /// The block an allocation request names, checked.
    fn block_for(&self, request: &AllocationRequest) -> Result<BlockId, Rejection> {
        let host = self
            .nodes
            .get(&request.host)
            .ok_or_else(|| Rejection::UnknownNode {
                name: request.host.clone(),
            })?;
        let tenant = self.tenant(&request.tenant)?;
        let segment =
            tenant
                .segments
                .get(&request.segment)
                .ok_or_else(|| Rejection::UnknownSegment {
                    tenant: request.tenant.clone(),
                    name: request.segment.clone(),
                })?;
        Ok(BlockId {
            host: host.host_number,
            tenant: tenant.number,
            segment: segment.number,
        })
    }

    pub(crate) fn allocate(
        &mut self,
        request: &AllocationRequest,
        index: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        request.owner.validate().map_err(Rejection::invalid)?;
        check_allocation_names(request)?;
        let block = self.block_for(request)?;
        if let Some(address) = self.owners.get(&request.owner) {
            let held = layout
                .decode(*address)
                .map(|p| (p.host, p.tenant, p.segment));
            return if held == Some((block.host, block.tenant, block.segment)) {
                Ok(Effect::AddressAllocated {
                    address: *address,
                    existing: true,
                })
            } else {
                Err(Rejection::OwnerHoldsOtherAddress {
                    owner: request.owner.to_string(),
                    address: *address,
                })
            };
        }
        let address_of = |endpoint: u32| {
            layout.address(AddressParts {
                host: block.host,
                tenant: block.tenant,
                segment: block.segment,
                endpoint,
            })
        };
        // Round-robin: start after the endpoint handed out last, wrap once.
        // Offsets count usable endpoints from the first one.
        let usable = layout.usable_endpoints();
        let start = match self.cursors.get(&block) {
            Some(last) => (last.saturating_sub(RESERVED_LOW_ENDPOINTS) + 1) % usable,
            None => 0,
        };
        let endpoint = (0..usable)
            .map(|step| RESERVED_LOW_ENDPOINTS + (start + step) % usable)
            .find(|endpoint| !self.allocations.contains_key(&address_of(*endpoint)))
            .ok_or_else(|| Rejection::BlockFull {
                host: request.host.clone(),
                tenant: request.tenant.clone(),
                segment: request.segment.clone(),
                capacity: usable,
            })?;
        assert!(
            layout.is_usable_endpoint(endpoint),
            "allocator chose a reserved endpoint {endpoint}"
        );
        let address = address_of(endpoint);
        self.cursors.insert(block, endpoint);
        self.allocations.insert(
            address,
            Allocation {
                owner: request.owner.clone(),
                host: request.host.clone(),
                tenant: request.tenant.clone(),
                segment: request.segment.clone(),
                pod_namespace: request.pod_namespace.clone(),
                pod_name: request.pod_name.clone(),
                network: request.network.clone(),
                allocated_at_ms: meta.timestamp_ms,
                allocated_index: index,
                actor: meta.actor.clone(),
            },
        );
        let previous = self.owners.insert(request.owner.clone(), address);
        assert!(
            previous.is_none(),
            "owner {} held two addresses",
            request.owner
        );
        Ok(Effect::AddressAllocated {
            address,
            existing: false,
        })
    }

    pub(crate) fn remove_allocation(&mut self, address: Ipv4Addr) {
        if let Some(allocation) = self.allocations.remove(&address) {
            let owned = self.owners.remove(&allocation.owner);
            assert_eq!(
                owned,
                Some(address),
                "owner index out of step for {address}"
            );
        }
    }

    pub(crate) fn release(&mut self, owner: &ContainerInterface) -> Result<Effect, Rejection> {
        owner.validate().map_err(Rejection::invalid)?;
        match self.owners.get(owner).copied() {
            Some(address) => {
                self.remove_allocation(address);
                Ok(Effect::AddressReleased { address })
            }
            None => Ok(Effect::NothingToRelease),
        }
    }

    pub(crate) fn garbage_collect(
        &mut self,
        host: &str,
        network: Option<&str>,
        valid: &[ContainerInterface],
    ) -> Result<Effect, Rejection> {
        check_gc_request(network, valid)?;
        if !self.nodes.contains_key(host) {
            return Err(Rejection::UnknownNode {
                name: host.to_string(),
            });
        }
        // A HashSet only for lookups; iteration order comes from the BTreeMap.
        let keep: HashSet<&ContainerInterface> = valid.iter().collect();
        let doomed: Vec<Ipv4Addr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.host == host && !keep.contains(&a.owner))
            .filter(|(_, a)| network.is_none_or(|network| a.network.as_deref() == Some(network)))
            .map(|(address, _)| *address)
            .collect();
        for address in &doomed {
            self.remove_allocation(*address);
        }
        Ok(Effect::GarbageCollected { released: doomed })
    }
}

/// An optional name, when given, is 1 to 253 bytes.
fn check_optional_name(what: &str, value: Option<&str>) -> Result<(), Rejection> {
    if value.is_some_and(|v| v.is_empty() || v.len() > 253) {
        return Err(Rejection::invalid(format!("{what} must be 1 to 253 bytes")));
    }
    Ok(())
}

/// The lengths of an allocation's optional names.
pub(crate) fn check_allocation_names(request: &AllocationRequest) -> Result<(), Rejection> {
    check_optional_name("pod namespace", request.pod_namespace.as_deref())?;
    check_optional_name("pod name", request.pod_name.as_deref())?;
    check_optional_name("CNI network name", request.network.as_deref())
}

/// The bounds of a garbage collection's arguments.
pub(crate) fn check_gc_request(
    network: Option<&str>,
    valid: &[ContainerInterface],
) -> Result<(), Rejection> {
    if valid.len() > MAX_GC_VALID_ENTRIES {
        return Err(Rejection::invalid(format!(
            "garbage collection may name at most {MAX_GC_VALID_ENTRIES} interfaces, got {}",
            valid.len()
        )));
    }
    check_optional_name("CNI network name", network)
}

//! Hosts, tenants, segments and addresses: the handlers `ClusterState::apply`
//! dispatches to. Pure functions of the state and the request, like the rest
//! of `apply`.
//!
//! Numbers are handed out lowest-free-first (hosts from 0, tenants from 1,
//! segments from 1 with `default` at 0). Addresses are handed out round-robin
//! within their host/tenant/segment block, starting after the one handed out
//! last, as the reference host-local IPAM does: a just-released address is
//! not reused while others are free, so stale ARP and conntrack entries for
//! it die out before a new pod gets it.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use crate::entry::{
    validate_label, validate_node_name, AllocationRequest, ContainerInterface, RequestMeta, MAX_GC_VALID_ENTRIES,
};
use crate::layout::{AddressLayout, AddressParts, DEFAULT_SEGMENT, RESERVED_LOW_ENDPOINTS};
use crate::state::{
    Allocation, BlockId, ClusterState, Effect, NodeRecord, Rejection, SegmentRecord, TenantRecord,
};
use crate::NodeId;

/// Name of the segment every tenant has.
pub const DEFAULT_SEGMENT_NAME: &str = "default";

/// Checks a node's `IPV4:PORT` address against the layout; returns the
/// underlay IP. Used by `apply` and, before anything is changed, by the node
/// admitting a joiner.
pub fn validate_node_address(layout: &AddressLayout, address: &str) -> Result<Ipv4Addr, String> {
    let (ip, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("node address {address:?} must be IPV4:PORT"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("node address {address:?} must be IPV4:PORT (the host's underlay IPv4 address)"))?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("node address {address:?} has no valid port"));
    }
    if layout.contains(ip) {
        return Err(format!(
            "node address {ip} lies inside the pod CIDR {}: the underlay must be outside it",
            layout.cidr()
        ));
    }
    Ok(ip)
}

fn invalid(reason: impl Into<String>) -> Rejection {
    Rejection::InvalidArgument { reason: reason.into() }
}

/// Lowest number in `first..=last` not in `used`.
fn lowest_free(used: impl IntoIterator<Item = u32>, first: u32, last: u32) -> Option<u32> {
    let used: BTreeSet<u32> = used.into_iter().collect();
    (first..=last).find(|n| !used.contains(n))
}

impl ClusterState {
    fn layout_or_reject(&self) -> Result<AddressLayout, Rejection> {
        self.layout().copied().ok_or(Rejection::NotInitialised)
    }

    pub(crate) fn register_node(
        &mut self,
        node_id: NodeId,
        name: &str,
        address: &str,
        timestamp_ms: u64,
    ) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        validate_node_name(name).map_err(invalid)?;
        let underlay_ip = validate_node_address(&layout, address).map_err(invalid)?;
        if let Some((other_name, _)) = self
            .nodes
            .iter()
            .find(|(other_name, record)| record.node_id == node_id && other_name.as_str() != name)
        {
            return Err(Rejection::NodeIdTaken {
                node_id,
                name: other_name.clone(),
            });
        }
        if let Some(record) = self.nodes.get_mut(name) {
            if record.node_id != node_id {
                return Err(Rejection::NodeNameTaken {
                    name: name.to_string(),
                    node_id: record.node_id,
                });
            }
            if record.address == address {
                return Ok(Effect::NodeAlreadyRegistered { node_id });
            }
            record.address = address.to_string();
            record.underlay_ip = underlay_ip;
            return Ok(Effect::NodeAddressChanged { node_id });
        }
        let max_hosts = layout.max_hosts();
        let host_number = lowest_free(self.nodes.values().map(|r| r.host_number), 0, max_hosts - 1)
            .ok_or(Rejection::HostsExhausted { max: max_hosts })?;
        self.nodes.insert(
            name.to_string(),
            NodeRecord {
                node_id,
                address: address.to_string(),
                underlay_ip,
                host_number,
                registered_at_ms: timestamp_ms,
            },
        );
        Ok(Effect::NodeRegistered { node_id, host_number })
    }

    pub(crate) fn remove_node(&mut self, name: &str, force: bool) -> Result<Effect, Rejection> {
        let record = self.nodes.get(name).ok_or_else(|| Rejection::UnknownNode { name: name.to_string() })?;
        let (node_id, host_number) = (record.node_id, record.host_number);
        let held: Vec<Ipv4Addr> = self
            .allocations
            .iter()
            .filter(|(_, allocation)| allocation.host == name)
            .map(|(address, _)| *address)
            .collect();
        if !held.is_empty() && !force {
            return Err(Rejection::HostHasAddresses {
                name: name.to_string(),
                count: held.len(),
            });
        }
        for address in &held {
            self.remove_allocation(*address);
        }
        self.cursors.retain(|block, _| block.host != host_number);
        self.nodes.remove(name);
        Ok(Effect::NodeRemoved {
            node_id,
            released: held,
        })
    }

    pub(crate) fn create_tenant(&mut self, name: &str, timestamp_ms: u64) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        validate_label("tenant", name).map_err(invalid)?;
        if self.tenants.contains_key(name) {
            return Err(Rejection::TenantExists { name: name.to_string() });
        }
        let max = layout.max_tenants();
        let number = lowest_free(self.tenants.values().map(|t| t.number), 1, max)
            .ok_or(Rejection::TenantsExhausted { max })?;
        let default = SegmentRecord {
            number: DEFAULT_SEGMENT,
            created_at_ms: timestamp_ms,
        };
        self.tenants.insert(
            name.to_string(),
            TenantRecord {
                number,
                created_at_ms: timestamp_ms,
                segments: [(DEFAULT_SEGMENT_NAME.to_string(), default)].into(),
            },
        );
        Ok(Effect::TenantCreated { number })
    }

    pub(crate) fn delete_tenant(&mut self, name: &str) -> Result<Effect, Rejection> {
        let tenant = self.tenants.get(name).ok_or_else(|| Rejection::UnknownTenant { name: name.to_string() })?;
        let count = self.allocations.values().filter(|a| a.tenant == name).count();
        if count > 0 {
            return Err(Rejection::TenantHasAddresses {
                name: name.to_string(),
                count,
            });
        }
        let number = tenant.number;
        self.cursors.retain(|block, _| block.tenant != number);
        self.tenants.remove(name);
        Ok(Effect::TenantDeleted { number })
    }

    pub(crate) fn create_segment(&mut self, tenant: &str, name: &str, timestamp_ms: u64) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        validate_label("segment", name).map_err(invalid)?;
        let record = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| Rejection::UnknownTenant { name: tenant.to_string() })?;
        if record.segments.contains_key(name) {
            return Err(Rejection::SegmentExists {
                tenant: tenant.to_string(),
                name: name.to_string(),
            });
        }
        let last = layout.max_segments_per_tenant() - 1;
        let number = lowest_free(record.segments.values().map(|s| s.number), DEFAULT_SEGMENT + 1, last).ok_or(
            Rejection::SegmentsExhausted {
                tenant: tenant.to_string(),
                max: last + 1,
            },
        )?;
        record.segments.insert(
            name.to_string(),
            SegmentRecord {
                number,
                created_at_ms: timestamp_ms,
            },
        );
        Ok(Effect::SegmentCreated { number })
    }

    pub(crate) fn delete_segment(&mut self, tenant: &str, name: &str) -> Result<Effect, Rejection> {
        let record = self
            .tenants
            .get(tenant)
            .ok_or_else(|| Rejection::UnknownTenant { name: tenant.to_string() })?;
        if name == DEFAULT_SEGMENT_NAME {
            return Err(Rejection::DefaultSegmentIsPermanent {
                tenant: tenant.to_string(),
            });
        }
        let segment = record.segments.get(name).ok_or_else(|| Rejection::UnknownSegment {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })?;
        let count = self
            .allocations
            .values()
            .filter(|a| a.tenant == tenant && a.segment == name)
            .count();
        if count > 0 {
            return Err(Rejection::SegmentHasAddresses {
                tenant: tenant.to_string(),
                name: name.to_string(),
                count,
            });
        }
        let (tenant_number, number) = (record.number, segment.number);
        self.cursors
            .retain(|block, _| !(block.tenant == tenant_number && block.segment == number));
        if let Some(record) = self.tenants.get_mut(tenant) {
            record.segments.remove(name);
        }
        Ok(Effect::SegmentDeleted { number })
    }

    /// The block an allocation request names, checked.
    fn block_for(&self, request: &AllocationRequest) -> Result<BlockId, Rejection> {
        let host = self.nodes.get(&request.host).ok_or_else(|| Rejection::UnknownNode {
            name: request.host.clone(),
        })?;
        let tenant = self.tenants.get(&request.tenant).ok_or_else(|| Rejection::UnknownTenant {
            name: request.tenant.clone(),
        })?;
        let segment = tenant.segments.get(&request.segment).ok_or_else(|| Rejection::UnknownSegment {
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
        request.owner.validate().map_err(invalid)?;
        for (what, value) in [("pod namespace", &request.pod_namespace), ("pod name", &request.pod_name)] {
            if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 253) {
                return Err(invalid(format!("{what} must be 1 to 253 bytes")));
            }
        }
        let block = self.block_for(request)?;
        if let Some(address) = self.owners.get(&request.owner) {
            let held = layout.decode(*address).map(|p| (p.host, p.tenant, p.segment));
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
        let last_handed = self.cursors.get(&block).copied().unwrap_or(RESERVED_LOW_ENDPOINTS - 1);
        let usable = layout.usable_endpoints();
        let endpoint = (1..=usable)
            .map(|step| RESERVED_LOW_ENDPOINTS + (last_handed - RESERVED_LOW_ENDPOINTS + step + usable) % usable)
            .find(|endpoint| !self.allocations.contains_key(&address_of(*endpoint)))
            .ok_or_else(|| Rejection::BlockFull {
                host: request.host.clone(),
                tenant: request.tenant.clone(),
                segment: request.segment.clone(),
                capacity: usable,
            })?;
        assert!(layout.is_usable_endpoint(endpoint), "allocator chose a reserved endpoint {endpoint}");
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
                allocated_at_ms: meta.timestamp_ms,
                allocated_index: index,
                actor: meta.actor.clone(),
            },
        );
        let previous = self.owners.insert(request.owner.clone(), address);
        assert!(previous.is_none(), "owner {} held two addresses", request.owner);
        Ok(Effect::AddressAllocated {
            address,
            existing: false,
        })
    }

    fn remove_allocation(&mut self, address: Ipv4Addr) {
        if let Some(allocation) = self.allocations.remove(&address) {
            let owned = self.owners.remove(&allocation.owner);
            assert_eq!(owned, Some(address), "owner index out of step for {address}");
        }
    }

    pub(crate) fn release(&mut self, owner: &ContainerInterface) -> Result<Effect, Rejection> {
        owner.validate().map_err(invalid)?;
        match self.owners.get(owner).copied() {
            Some(address) => {
                self.remove_allocation(address);
                Ok(Effect::AddressReleased { address })
            }
            None => Ok(Effect::NothingToRelease),
        }
    }

    pub(crate) fn garbage_collect(&mut self, host: &str, valid: &[ContainerInterface]) -> Result<Effect, Rejection> {
        if valid.len() > MAX_GC_VALID_ENTRIES {
            return Err(invalid(format!(
                "garbage collection may name at most {MAX_GC_VALID_ENTRIES} interfaces, got {}",
                valid.len()
            )));
        }
        if !self.nodes.contains_key(host) {
            return Err(Rejection::UnknownNode { name: host.to_string() });
        }
        // A HashSet only for lookups; iteration order comes from the BTreeMap.
        let keep: HashSet<&ContainerInterface> = valid.iter().collect();
        let doomed: Vec<Ipv4Addr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.host == host && !keep.contains(&a.owner))
            .map(|(address, _)| *address)
            .collect();
        for address in &doomed {
            self.remove_allocation(*address);
        }
        Ok(Effect::GarbageCollected { released: doomed })
    }

    /// Structural invariants of the projection; checked after every apply in
    /// debug builds and by the tests and the simulation.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.allocations.len() != self.owners.len() {
            return Err(format!(
                "{} allocations but {} owners",
                self.allocations.len(),
                self.owners.len()
            ));
        }
        let Some(layout) = self.layout() else {
            return if self.allocations.is_empty() {
                Ok(())
            } else {
                Err("allocations before initialisation".into())
            };
        };
        let mut host_numbers = BTreeSet::new();
        for (name, node) in &self.nodes {
            if !host_numbers.insert(node.host_number) {
                return Err(format!("host number {} used twice (again by {name})", node.host_number));
            }
        }
        for (address, allocation) in &self.allocations {
            if self.owners.get(&allocation.owner) != Some(address) {
                return Err(format!("{address} held by {} but the owner index disagrees", allocation.owner));
            }
            let parts = layout.decode(*address).ok_or_else(|| format!("{address} outside the CIDR"))?;
            if !layout.is_usable_endpoint(parts.endpoint) {
                return Err(format!("{address} is a reserved endpoint"));
            }
            let node = self.nodes.get(&allocation.host).ok_or_else(|| format!("{address} on unknown host {}", allocation.host))?;
            let tenant = self
                .tenants
                .get(&allocation.tenant)
                .ok_or_else(|| format!("{address} in unknown tenant {}", allocation.tenant))?;
            let segment = tenant
                .segments
                .get(&allocation.segment)
                .ok_or_else(|| format!("{address} in unknown segment {}", allocation.segment))?;
            if (parts.host, parts.tenant, parts.segment) != (node.host_number, tenant.number, segment.number) {
                return Err(format!("{address} lies outside the block of {}/{}/{}", allocation.host, allocation.tenant, allocation.segment));
            }
        }
        Ok(())
    }
}

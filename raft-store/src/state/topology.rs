//! Hosts, tenants and segments: their records in the projection and the
//! handlers `ClusterState::apply` dispatches to. Pure functions of the state
//! and the request, like the rest of `apply`.
//!
//! Numbers are handed out lowest-free-first (hosts from 0, tenants from 1,
//! segments from 1 with `default` at 0).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::outcome::{Effect, Rejection};
use super::ClusterState;
use crate::entry::{
    validate_label, validate_node_address, validate_node_name, NodeId, RequestMeta,
};
use crate::layout::{AddressLayout, DEFAULT_SEGMENT};

/// Largest voter count a cluster may ask for.
pub const MAX_VOTERS_TARGET: u8 = 9;

/// Name of the segment every tenant has.
pub const DEFAULT_SEGMENT_NAME: &str = "default";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub voters_target: u8,
    pub layout: AddressLayout,
    pub initialised_at_ms: u64,
    pub initialised_by: String,
}

/// A node, which is also a host of the address layout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node_id: NodeId,
    /// `IPV4:PORT` peers reach it at.
    pub address: String,
    /// The host's underlay address: other hosts route its prefix via it.
    pub underlay_ip: Ipv4Addr,
    /// Its host number, which fixes its address prefix.
    pub host_number: u32,
    pub registered_at_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub number: u32,
    pub created_at_ms: u64,
    /// Segments by name; `default` (number 0) always exists.
    pub segments: BTreeMap<String, SegmentRecord>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub number: u32,
    pub created_at_ms: u64,
}

/// Lowest number in `first..=last` not in `used`.
fn lowest_free(used: impl IntoIterator<Item = u32>, first: u32, last: u32) -> Option<u32> {
    let used: BTreeSet<u32> = used.into_iter().collect();
    (first..=last).find(|n| !used.contains(n))
}

impl ClusterState {
    /// The first entry of a history: the cluster name, voter target and
    /// address layout, fixed from then on.
    pub(crate) fn init_cluster(
        &mut self,
        cluster_name: &str,
        voters_target: u8,
        layout: &AddressLayout,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        if let Some(cluster) = &self.cluster {
            return Err(Rejection::AlreadyInitialised {
                name: cluster.name.clone(),
            });
        }
        if voters_target == 0 || voters_target > MAX_VOTERS_TARGET {
            return Err(Rejection::InvalidArgument {
                reason: format!(
                    "voters target must be 1 to {MAX_VOTERS_TARGET}, got {voters_target}"
                ),
            });
        }
        validate_node_name(cluster_name).map_err(|reason| Rejection::InvalidArgument {
            reason: format!("cluster name: {reason}"),
        })?;
        layout
            .validate()
            .map_err(|reason| Rejection::InvalidArgument {
                reason: format!("address layout: {reason}"),
            })?;
        self.cluster = Some(ClusterInfo {
            name: cluster_name.to_string(),
            voters_target,
            layout: *layout,
            initialised_at_ms: meta.timestamp_ms,
            initialised_by: meta.actor.clone(),
        });
        Ok(Effect::ClusterInitialised)
    }

    pub(crate) fn require_initialised(&self) -> Result<&ClusterInfo, Rejection> {
        self.cluster.as_ref().ok_or(Rejection::NotInitialised)
    }

    /// The address layout, once initialised.
    pub fn layout(&self) -> Option<&AddressLayout> {
        self.cluster.as_ref().map(|c| &c.layout)
    }

    /// The node registered under `node_id`, if any.
    pub fn node_by_id(&self, node_id: NodeId) -> Option<(&String, &NodeRecord)> {
        self.nodes
            .iter()
            .find(|(_, record)| record.node_id == node_id)
    }

    pub(crate) fn layout_or_reject(&self) -> Result<AddressLayout, Rejection> {
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
        validate_node_name(name).map_err(Rejection::invalid)?;
        let underlay_ip = validate_node_address(&layout, address).map_err(Rejection::invalid)?;
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
        Ok(Effect::NodeRegistered {
            node_id,
            host_number,
        })
    }

    pub(crate) fn remove_node(&mut self, name: &str, force: bool) -> Result<Effect, Rejection> {
        let record = self.nodes.get(name).ok_or_else(|| Rejection::UnknownNode {
            name: name.to_string(),
        })?;
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

    pub(crate) fn create_tenant(
        &mut self,
        name: &str,
        timestamp_ms: u64,
    ) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        validate_label("tenant", name).map_err(Rejection::invalid)?;
        if self.tenants.contains_key(name) {
            return Err(Rejection::TenantExists {
                name: name.to_string(),
            });
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

    /// The tenant record of that name, or the rejection that names it.
    pub(crate) fn tenant(&self, name: &str) -> Result<&TenantRecord, Rejection> {
        self.tenants
            .get(name)
            .ok_or_else(|| Rejection::UnknownTenant {
                name: name.to_string(),
            })
    }

    pub(crate) fn delete_tenant(&mut self, name: &str) -> Result<Effect, Rejection> {
        let tenant = self.tenant(name)?;
        let count = self
            .allocations
            .values()
            .filter(|a| a.tenant == name)
            .count();
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

    pub(crate) fn create_segment(
        &mut self,
        tenant: &str,
        name: &str,
        timestamp_ms: u64,
    ) -> Result<Effect, Rejection> {
        let layout = self.layout_or_reject()?;
        validate_label("segment", name).map_err(Rejection::invalid)?;
        let record = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| Rejection::UnknownTenant {
                name: tenant.to_string(),
            })?;
        if record.segments.contains_key(name) {
            return Err(Rejection::SegmentExists {
                tenant: tenant.to_string(),
                name: name.to_string(),
            });
        }
        let last = layout.max_segments_per_tenant() - 1;
        let number = lowest_free(
            record.segments.values().map(|s| s.number),
            DEFAULT_SEGMENT + 1,
            last,
        )
        .ok_or(Rejection::SegmentsExhausted {
            tenant: tenant.to_string(),
            max: last + 1,
        })?;
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
        let record = self.tenant(tenant)?;
        if name == DEFAULT_SEGMENT_NAME {
            return Err(Rejection::DefaultSegmentIsPermanent {
                tenant: tenant.to_string(),
            });
        }
        let segment = record
            .segments
            .get(name)
            .ok_or_else(|| Rejection::UnknownSegment {
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
}

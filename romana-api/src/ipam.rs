//! Layout, hosts, tenants, segments and address allocations.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LayoutView {
    pub cidr: String,
    pub host_bits: u8,
    pub tenant_bits: u8,
    pub segment_bits: u8,
    pub endpoint_bits: u8,
    pub max_hosts: u32,
    pub max_tenants: u32,
    pub segments_per_tenant: u32,
    pub pods_per_block: u32,
    /// The bit layout drawn in text.
    pub drawing: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HostView {
    pub name: String,
    pub host_number: u32,
    /// The block of pod addresses the host owns.
    pub prefix: String,
    pub underlay_ip: Ipv4Addr,
    pub address: String,
    pub allocations: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SegmentView {
    pub name: String,
    pub number: u32,
    pub allocations: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TenantView {
    pub name: String,
    pub number: u32,
    /// `ADDRESS/MASK` matching every address of the tenant on every host.
    pub match_mask: String,
    pub segments: Vec<SegmentView>,
    pub allocations: usize,
}

/// Body of the create requests (tenants, segments).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NameBody {
    pub name: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// A container's interface: who holds an address.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerInterface {
    pub container_id: String,
    pub ifname: String,
}

/// Body of `POST /v1/ipam/allocations`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AllocateBody {
    /// Defaults to the node answering (what the CNI plugin wants).
    #[serde(default)]
    pub host: Option<String>,
    /// Absent: a node run with `--kubernetes` resolves it from the pod's
    /// labels (`pod_namespace` and `pod_name` are then required).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Defaults to `default` (with a Kubernetes pod: its label
    /// `romana.io/segment`, else `default`).
    #[serde(default)]
    pub segment: Option<String>,
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// The CNI network asking (scopes its garbage collection).
    #[serde(default)]
    pub network: Option<String>,
    /// Idempotency key; generated when absent. A caller that got
    /// `outcome_unknown` retries with the same one.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// An allocated address and everything about it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AllocationView {
    pub address: Ipv4Addr,
    /// The host/tenant/segment block the address is in, `ADDRESS/LEN`.
    pub block: String,
    /// The gateway address of that block (endpoint 1).
    pub gateway: Ipv4Addr,
    pub host: String,
    pub tenant: String,
    pub segment: String,
    pub container_id: String,
    pub ifname: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub network: Option<String>,
    pub allocated_at_ms: u64,
    pub allocated_index: u64,
    pub actor: String,
    /// In the answer to an allocation: false when the owner already held
    /// this address (a repeated request). Always true in listings.
    #[serde(default = "yes")]
    pub newly_allocated: bool,
}

fn yes() -> bool {
    true
}

/// Body of `POST /v1/ipam/release`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ReleaseBody {
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Body of `POST /v1/ipam/gc`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GcBody {
    /// Defaults to the node answering.
    #[serde(default)]
    pub host: Option<String>,
    /// Only this CNI network's addresses (default: every address on the host).
    #[serde(default)]
    pub network: Option<String>,
    /// The (container, interface) pairs still in use on the host.
    pub valid: Vec<ContainerInterface>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Filters of `GET /v1/ipam/allocations`.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct AllocationFilter {
    pub host: Option<String>,
    pub tenant: Option<String>,
    pub segment: Option<String>,
}

/// An address taken apart, and who holds it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AddressView {
    pub address: Ipv4Addr,
    pub host_number: u32,
    pub tenant_number: u32,
    pub segment_number: u32,
    pub endpoint: u32,
    /// Names, where the numbers are in use.
    pub host: Option<String>,
    pub tenant: Option<String>,
    pub segment: Option<String>,
    /// What the endpoint number means: pod, network, gateway or broadcast.
    pub kind: String,
    pub allocation: Option<AllocationView>,
}

/// A pod as people name it: `NAMESPACE/NAME`, or `NAME` without a
/// namespace; `None` without a name.
pub fn pod_label(namespace: Option<&str>, name: Option<&str>) -> Option<String> {
    name.map(|name| match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    })
}

//! Addresses in the entry model: who holds one ([`ContainerInterface`])
//! and what an allocation asks for ([`AllocationRequest`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A container's interface: who holds an address.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerInterface {
    pub container_id: String,
    pub ifname: String,
}

/// What an allocation asks for.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// The host (node name) the container runs on.
    pub host: String,
    pub tenant: String,
    pub segment: String,
    pub owner: ContainerInterface,
    /// Kubernetes pod namespace and name, when known (recorded for audit).
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    /// The CNI network (conflist name) the address is for, when allocated
    /// by the CNI plugin: garbage collection of one network leaves the
    /// others' addresses alone.
    pub network: Option<String>,
}

/// Longest accepted container id, in bytes.
pub const MAX_CONTAINER_ID_BYTES: usize = 256;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_BYTES: usize = 15;

/// Most (container, interface) pairs one garbage collection may name: far
/// more pods than a host runs (the kubelet's default is 110). With
/// runtime-length ids (64 hex digits) that many fit a request
/// ([`crate::entry::MAX_REQUEST_BYTES`]) several times over.
pub const MAX_GC_VALID_ENTRIES: usize = 1024;

impl ContainerInterface {
    pub fn validate(&self) -> Result<(), String> {
        if self.container_id.is_empty() || self.container_id.len() > MAX_CONTAINER_ID_BYTES {
            return Err(format!(
                "container id must be 1 to {MAX_CONTAINER_ID_BYTES} bytes, got {}",
                self.container_id.len()
            ));
        }
        if !self.container_id.chars().all(|c| c.is_ascii_graphic()) {
            return Err("container id must be printable ASCII without spaces".into());
        }
        if self.ifname.is_empty()
            || self.ifname.len() > MAX_IFNAME_BYTES
            || self.ifname == "."
            || self.ifname == ".."
            || !self
                .ifname
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
        {
            return Err(format!(
                "interface name {:?} is not a valid Linux interface name (1 to {MAX_IFNAME_BYTES} printable characters, no '/' or ':')",
                self.ifname
            ));
        }
        Ok(())
    }
}

impl fmt::Display for ContainerInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

//! # romana-cni: the CNI plugin `romana`
//!
//! ## Layout
//!
//! - [`config`]: stdin network config, `CNI_*` environment, `CNI_ARGS`,
//!   tenant and segment resolution.
//! - [`plugin`]: the verbs (ADD, DEL, CHECK, VERSION, STATUS, GC).
//! - [`node_client`]: a blocking HTTP client for the local node's API.
//! - [`version`]: supported spec versions and result conversion.
//! - [`error`]: CNI error codes and the error object.
//! - [`log`]: the log file.
//!
//! ## The path of an ADD
//!
//! runtime → `romana` (stdin config, `CNI_*`) → [`config`] → tenant/segment
//! → `POST /v1/ipam/allocations` on the local node's unix socket (an entry
//! in the replicated log, applied on every node) → [`romana_netlink`]: veth with its
//! pod end created in the pod's namespace, addresses, routes → result on
//! stdout. A failure after the allocation undoes everything and releases the
//! address.

pub mod config;
pub mod error;
pub mod log;
pub mod node_client;
pub mod plugin;
pub mod version;

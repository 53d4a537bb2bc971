//! # romana-cni: the CNI plugin `romana`
//!
//! # Layout
//!
//! - [`config`]: stdin network config, `CNI_*` environment, `CNI_ARGS`,
//!   tenant and segment resolution.
//! - [`plugin`]: the verbs (ADD, DEL, CHECK, VERSION, STATUS, GC).
//! - [`node_client`]: a blocking HTTP client for the local node's API
//!   (paths, headers, bodies and error codes are [`romana_api`]'s).
//! - [`version`]: supported spec versions and result conversion.
//! - [`error`]: CNI error codes and the error object.
//! - [`log`]: the log file.
//! - [`timing`]: the phases of an invocation, logged with its outcome.
//!
//! Links, addresses and routes are [`romana_netlink`]'s.
//!
//! # The path of an ADD to a committed allocation
//!
//! runtime → `romana` (stdin config, `CNI_*`) → [`config`] → tenant/segment
//! → `POST /v1/ipam/allocations` on the local node's unix socket, with a
//! request id of this invocation (the node proposes it; it is committed in
//! the replicated log and applied on every node; the node answers once its
//! own replica has it, or says `outcome_unknown` and the plugin asks again
//! with the same id) → the rollback guard is armed → the answer is read →
//! [`romana_netlink`]: veth with its pod end created in the pod's
//! namespace, addresses, routes → result on stdout. A failure after the
//! allocation undoes everything and releases the address. (A committed
//! policy reaches this host's iptables through the node's reconciler; the
//! plugin has no part in it.)

pub mod config;
pub mod error;
pub mod log;
pub mod node_client;
pub mod plugin;
pub mod timing;
pub mod version;

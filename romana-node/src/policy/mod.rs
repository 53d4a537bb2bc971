//! Network policies: the file formats operators write and the compiler that
//! turns the projection's tenants, hosts and policies into ordered match
//! rules (pure, no I/O).
//!
//! - [`formats`]: Romana JSON, Kubernetes NetworkPolicy (YAML/JSON) and the
//!   seed's third-party-resource form, parsed into `raft_store::entry::policy`.
//! - [`compiler`]: rules from the projection; `explain` of one packet.

pub mod compiler;
pub mod formats;

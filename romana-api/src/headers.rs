//! Headers the node API reads.

/// Names the person or tool behind a request, recorded as the entry's actor
/// (`client:WHO@NODE`).
pub const ACTOR_HEADER: &str = "x-romana-actor";

/// The cluster secret; every request on TCP must carry it. The same name as
/// `raft_store::transport::SECRET_HEADER` (the Raft routes check it there).
pub const SECRET_HEADER: &str = "x-romana-cluster-secret";

/// The actor the CNI plugin names itself as.
pub const CNI_ACTOR: &str = "cni";

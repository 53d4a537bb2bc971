//! Every route of the node API. Routes with a parameter have a function
//! building the concrete path and a `*_ROUTE` pattern for the router.

/// Where `romana-node` serves the API for local tools and the CNI plugin.
pub const DEFAULT_API_SOCKET: &str = "/run/romana/romana.sock";

pub const PATH_STATUS: &str = "/v1/status";
/// Prometheus metrics (the OpenMetrics text format).
pub const PATH_METRICS: &str = "/metrics";
/// What the CNI STATUS verb needs, without the members or the state hash.
pub const PATH_READY: &str = "/v1/ready";
pub const PATH_NODES: &str = "/v1/nodes";
pub const NODE_ROUTE: &str = "/v1/nodes/{name}";
pub const PATH_NOTES: &str = "/v1/notes";
pub const PATH_REQUESTS: &str = "/v1/requests";
pub const REQUEST_ROUTE: &str = "/v1/requests/{request_id}";
pub const PATH_JOIN: &str = "/v1/cluster/join";
/// Create a join token (admins).
pub const PATH_JOIN_TOKENS: &str = "/v1/join-tokens";
/// Redeem a join token: the one route a client without a certificate may
/// call (over TLS, having pinned the CA).
pub const PATH_JOIN_TOKEN_REDEEM: &str = "/v1/join-tokens/redeem";
/// A write forwarded by another member (bincode; peers only).
pub const PATH_INTERNAL_PROPOSE: &str = "/v1/internal/propose";

pub const PATH_LAYOUT: &str = "/v1/layout";
pub const PATH_HOSTS: &str = "/v1/hosts";
pub const PATH_TENANTS: &str = "/v1/tenants";
pub const TENANT_ROUTE: &str = "/v1/tenants/{tenant}";
pub const SEGMENTS_ROUTE: &str = "/v1/tenants/{tenant}/segments";
pub const SEGMENT_ROUTE: &str = "/v1/tenants/{tenant}/segments/{segment}";
pub const PATH_ALLOCATIONS: &str = "/v1/ipam/allocations";
pub const PATH_RELEASE: &str = "/v1/ipam/release";
pub const PATH_GC: &str = "/v1/ipam/gc";
pub const PATH_ADDRESSES: &str = "/v1/ipam/addresses";
pub const ADDRESS_ROUTE: &str = "/v1/ipam/addresses/{address}";

pub const PATH_POLICIES: &str = "/v1/policies";
/// Policy names may contain `/` (`namespace/name`).
pub const POLICY_ROUTE: &str = "/v1/policies/{*name}";
/// The seed's third-party-resource URL for a namespace's policies.
pub const TPR_POLICIES_ROUTE: &str =
    "/apis/romana.io/demo/v1/namespaces/{namespace}/networkpolicys";
pub const PATH_EXPLAIN: &str = "/v1/explain";
/// Who reaches whom among given pods (`policy matrix`).
pub const PATH_EXPLAIN_MATRIX: &str = "/v1/explain/matrix";

pub const PATH_AUDIT_RECORDS: &str = "/v1/audit/records";
/// One summary per audit record, for the web view's timeline.
pub const PATH_HISTORY_TIMELINE: &str = "/v1/history/timeline";
/// The network as it was after an audit record (`?sequence=N`).
pub const PATH_HISTORY_STATE: &str = "/v1/history/state";
/// The node's events, as JSON lines (`?since=ID&follow=true`).
pub const PATH_EVENTS: &str = "/v1/events";
/// The web view (embedded pages, read-only).
pub const PATH_UI: &str = "/ui";

/// `/v1/nodes/NAME`
pub fn node(name: &str) -> String {
    format!("{PATH_NODES}/{name}")
}

/// `/v1/requests/ID`
pub fn request(request_id: &str) -> String {
    format!("{PATH_REQUESTS}/{request_id}")
}

/// `/v1/tenants/TENANT`
pub fn tenant(tenant: &str) -> String {
    format!("{PATH_TENANTS}/{tenant}")
}

/// `/v1/tenants/TENANT/segments`
pub fn segments(tenant: &str) -> String {
    format!("{PATH_TENANTS}/{tenant}/segments")
}

/// `/v1/tenants/TENANT/segments/SEGMENT`
pub fn segment(tenant: &str, segment: &str) -> String {
    format!("{PATH_TENANTS}/{tenant}/segments/{segment}")
}

/// `/v1/ipam/addresses/ADDRESS`
pub fn address(address: impl std::fmt::Display) -> String {
    format!("{PATH_ADDRESSES}/{address}")
}

/// `/v1/policies/NAME`
pub fn policy(name: &str) -> String {
    format!("{PATH_POLICIES}/{name}")
}

/// Header the CNI plugin sends with every request: the CNI command it runs
/// (`ADD`, `DEL`, `CHECK`, `STATUS`, `GC`), so the node can count CNI
/// requests apart from romanactl's.
pub const CNI_COMMAND_HEADER: &str = "x-romana-cni-command";

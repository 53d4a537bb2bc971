//! Policies and `explain`.

use serde::{Deserialize, Serialize};

/// A policy in force. `P` is the policy itself (`raft_store::entry::policy::Policy`
/// on the server).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PolicyView<P = serde_json::Value> {
    pub name: String,
    pub applied_at_ms: u64,
    pub applied_index: u64,
    pub actor: String,
    pub policy: P,
}

/// Query of `GET /v1/explain`.
#[derive(Serialize, Deserialize, Debug)]
pub struct ExplainQuery {
    pub src: String,
    pub dst: String,
    /// tcp, udp, icmp or any (default any).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Destination port (tcp, udp) or ICMP type.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ExplainView {
    /// allowed, denied, or not-romana (no pod on either side).
    pub verdict: String,
    /// The rule or default that decides.
    pub decided_by: String,
    /// The source's pod (`NAMESPACE/NAME`), if it is one.
    #[serde(default)]
    pub source_pod: Option<String>,
    #[serde(default)]
    pub destination_pod: Option<String>,
    /// The Kubernetes NetworkPolicies that decide (`NAMESPACE/NAME`): the
    /// one whose rule allows, or every one isolating the pod when none does.
    #[serde(default)]
    pub policies: Vec<String>,
    /// What the source's egress stage said, when a rule there matched.
    #[serde(default)]
    pub egress: Option<String>,
}

/// Query of `GET /v1/explain/matrix`.
#[derive(Serialize, Deserialize, Debug)]
pub struct MatrixQuery {
    /// Comma-separated pods (`NAMESPACE/NAME`) or addresses.
    pub pods: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// Every (from, to) pair of the pods asked for, as `explain` decides it; a
/// pod always reaches itself (its traffic to its own address never leaves
/// it).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MatrixView {
    pub pods: Vec<String>,
    /// `allowed[from][to]`.
    pub allowed: Vec<Vec<bool>>,
    /// `decided_by[from][to]`.
    pub decided_by: Vec<Vec<String>>,
}

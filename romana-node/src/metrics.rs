//! Prometheus metrics (`GET /metrics`, the text format, `prometheus-client`).
//!
//! Three kinds of figures:
//! - **counted where they happen**: API requests by route and status, write
//!   latency by request kind, refusals by reason, forwarded writes, leader
//!   changes, reconciler passes;
//! - **sampled from Raft** at each scrape and whenever openraft's metrics
//!   change: role, term, log, applied and snapshot indexes, apply lag,
//!   members;
//! - **computed from the projection** at each scrape: addresses in use and
//!   free per host/tenant/segment block, tenants, policies.
//!
//! Every name starts with `romana_`; `deploy/grafana/romana.json` uses them.

use std::time::Duration;

use openraft::{RPCTypes, ServerState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use raft_store::state::ClusterState;
use raft_store::store::SharedState;
use raft_store::Raft;

/// The serde name of a value (an error code, a rejection) as a label.
pub fn serde_label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => "unknown".into(),
    }
}

/// Latency buckets: 0.25 ms to about 4 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: String,
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLatencyLabels {
    pub listener: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabels {
    pub host: String,
    pub tenant: String,
    pub segment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerRpcLabels {
    pub peer: String,
    pub rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerRpcErrorLabels {
    pub peer: String,
    pub rpc: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabels {
    pub what: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandOutcomeLabels {
    pub command: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceKindLabels {
    pub resource: String,
    pub kind: String,
}

/// Entries per log entry the batcher proposes: 1 to 512.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every metric of a node.
pub struct Metrics {
    /// Off (`--metrics=false`): nothing is counted or rendered.
    enabled: bool,
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub request_duration: Family<RouteLatencyLabels, Histogram, fn() -> Histogram>,
    pub write_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub refusals: Family<ReasonLabels, Counter>,
    pub forwarded_writes: Counter,
    pub leader_changes: Counter,
    pub reconciler_passes: Family<OutcomeLabels, Counter>,
    pub reconciler_duration: Histogram,
    pub drift_repairs: Family<WhatLabels, Counter>,
    pub rpc_duration: Family<PeerRpcLabels, Histogram, fn() -> Histogram>,
    pub rpc_errors: Family<PeerRpcErrorLabels, Counter>,
    pub batch_size: Histogram,
    pub allocations: Counter,
    pub releases: Family<CauseLabels, Counter>,
    pub dataplane_duration: Family<WhatLabels, Histogram, fn() -> Histogram>,
    pub dataplane_failures: Family<WhatLabels, Counter>,
    pub iptables_rules: Gauge,
    pub ipset_entries: Gauge,
    pub host_routes: Gauge,
    pub cni_requests: Family<CommandOutcomeLabels, Counter>,
    pub cni_duration: Family<CommandLabels, Histogram, fn() -> Histogram>,
    pub kubernetes_watch_restarts: Family<ResourceLabels, Counter>,
    pub kubernetes_events: Family<ResourceKindLabels, Counter>,
    pub kubernetes_mirror_duration: Histogram,
    log_entries: Gauge,
    snapshot_bytes: Gauge,
    commit_index: Gauge,
    replication_lag: Family<PeerLabels, Gauge>,
    role: Family<RoleLabels, Gauge>,
    term: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    apply_lag: Gauge,
    snapshot_index: Gauge,
    members: Family<RoleLabels, Gauge>,
    addresses_in_use: Family<BlockLabels, Gauge>,
    addresses_free: Family<BlockLabels, Gauge>,
    tenants: Gauge,
    policies: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Metrics {
    pub fn new(enabled: bool) -> Self {
        let mut registry = Registry::with_prefix("romana");
        let metrics = Self {
            enabled,
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            write_duration: Family::new_with_constructor(latency_histogram),
            refusals: Family::default(),
            forwarded_writes: Counter::default(),
            leader_changes: Counter::default(),
            reconciler_passes: Family::default(),
            reconciler_duration: latency_histogram(),
            drift_repairs: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            rpc_errors: Family::default(),
            batch_size: batch_histogram(),
            allocations: Counter::default(),
            releases: Family::default(),
            dataplane_duration: Family::new_with_constructor(latency_histogram),
            dataplane_failures: Family::default(),
            iptables_rules: Gauge::default(),
            ipset_entries: Gauge::default(),
            host_routes: Gauge::default(),
            cni_requests: Family::default(),
            cni_duration: Family::new_with_constructor(latency_histogram),
            kubernetes_watch_restarts: Family::default(),
            kubernetes_events: Family::default(),
            kubernetes_mirror_duration: latency_histogram(),
            log_entries: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            commit_index: Gauge::default(),
            replication_lag: Family::default(),
            role: Family::default(),
            term: Gauge::default(),
            last_log_index: Gauge::default(),
            applied_index: Gauge::default(),
            apply_lag: Gauge::default(),
            snapshot_index: Gauge::default(),
            members: Family::default(),
            addresses_in_use: Family::default(),
            addresses_free: Family::default(),
            tenants: Gauge::default(),
            policies: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "api_requests",
            "API requests answered, by listener, method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API request, by listener and route",
            metrics.request_duration.clone(),
        );
        registry.register(
            "write_duration_seconds",
            "Time from a write's proposal here to its apply here, by request kind",
            metrics.write_duration.clone(),
        );
        registry.register(
            "write_refusals",
            "Writes refused, by reason",
            metrics.refusals.clone(),
        );
        registry.register(
            "forwarded_writes",
            "Writes this node forwarded to the leader",
            metrics.forwarded_writes.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times this node saw the leader change (including to none)",
            metrics.leader_changes.clone(),
        );
        registry.register(
            "reconciler_passes",
            "Dataplane reconciler passes, by outcome",
            metrics.reconciler_passes.clone(),
        );
        registry.register(
            "reconciler_pass_duration_seconds",
            "Time of one reconciler pass",
            metrics.reconciler_duration.clone(),
        );
        registry.register(
            "reconciler_drift_repairs",
            "Repairs of a kernel that had drifted from the projection, by what (firewall, routes)",
            metrics.drift_repairs.clone(),
        );
        registry.register(
            "raft_rpc_duration_seconds",
            "Raft RPCs this node made, by peer and RPC (append_entries, vote, install_snapshot)",
            metrics.rpc_duration.clone(),
        );
        registry.register(
            "raft_rpc_errors",
            "Raft RPCs that failed, by peer, RPC and error (unreachable, timeout, network, remote)",
            metrics.rpc_errors.clone(),
        );
        registry.register(
            "raft_log_entries",
            "Entries in this node's Raft log (last index minus purged index)",
            metrics.log_entries.clone(),
        );
        registry.register(
            "raft_snapshot_bytes",
            "Size of the snapshot this node stores",
            metrics.snapshot_bytes.clone(),
        );
        registry.register(
            "raft_commit_index",
            "Highest index a majority of voters holds, as the leader sees their replication (leader only: openraft 0.9 does not tell a follower; a follower's applied index trails it)",
            metrics.commit_index.clone(),
        );
        registry.register(
            "raft_replication_lag",
            "Entries a member lacks of the leader's log, by peer (leader only)",
            metrics.replication_lag.clone(),
        );
        registry.register(
            "write_batch_size",
            "Requests per log entry this node proposed as leader",
            metrics.batch_size.clone(),
        );
        registry.register(
            "ipam_allocations",
            "Addresses allocated by entries this node applied since it started (repeats of a held address not counted)",
            metrics.allocations.clone(),
        );
        registry.register(
            "ipam_releases",
            "Addresses released by entries this node applied since it started, by cause (release, gc, host_removed)",
            metrics.releases.clone(),
        );
        registry.register(
            "dataplane_transaction_duration_seconds",
            "Time of one kernel transaction, by what (firewall: the whole convergence, of which ipset: ipset restore and stale set removal, iptables: iptables-restore with its observation; routes: observe and apply)",
            metrics.dataplane_duration.clone(),
        );
        registry.register(
            "dataplane_transaction_failures",
            "Kernel transactions that failed, by what (firewall, ipset, iptables, routes)",
            metrics.dataplane_failures.clone(),
        );
        registry.register(
            "dataplane_iptables_rules",
            "Rules in Romana's chains as last installed",
            metrics.iptables_rules.clone(),
        );
        registry.register(
            "dataplane_ipset_entries",
            "Members of Romana's ipsets as last installed",
            metrics.ipset_entries.clone(),
        );
        registry.register(
            "dataplane_routes",
            "Romana host routes as last converged",
            metrics.host_routes.clone(),
        );
        registry.register(
            "cni_requests",
            "CNI requests as the node sees them (ADD: allocation, DEL: release, CHECK: address lookup on the local socket), by command and outcome (ok or the error code)",
            metrics.cni_requests.clone(),
        );
        registry.register(
            "cni_request_duration_seconds",
            "Time the node took to answer a CNI request, by command",
            metrics.cni_duration.clone(),
        );
        registry.register(
            "kubernetes_watch_restarts",
            "Kubernetes watches restarted after an error, by resource",
            metrics.kubernetes_watch_restarts.clone(),
        );
        registry.register(
            "kubernetes_events",
            "Kubernetes watch events the controller handled, by resource and kind (apply, delete, init)",
            metrics.kubernetes_events.clone(),
        );
        registry.register(
            "kubernetes_mirror_duration_seconds",
            "Time from a watch event's arrival to its mirror write being committed",
            metrics.kubernetes_mirror_duration.clone(),
        );
        registry.register(
            "raft_role",
            "1 for this node's current Raft role",
            metrics.role.clone(),
        );
        registry.register("raft_term", "Current Raft term", metrics.term.clone());
        registry.register(
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            metrics.last_log_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Index of the last entry applied to this node's projection",
            metrics.applied_index.clone(),
        );
        registry.register(
            "raft_apply_lag",
            "Entries in the log not yet applied here",
            metrics.apply_lag.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "Last index covered by this node's snapshot",
            metrics.snapshot_index.clone(),
        );
        registry.register(
            "raft_members",
            "Members of the cluster, by role (voter, learner)",
            metrics.members.clone(),
        );
        registry.register(
            "ipam_addresses_in_use",
            "Allocated addresses per host/tenant/segment block",
            metrics.addresses_in_use.clone(),
        );
        registry.register(
            "ipam_addresses_free",
            "Free addresses per host/tenant/segment block with an allocation",
            metrics.addresses_free.clone(),
        );
        registry.register("tenants", "Tenants", metrics.tenants.clone());
        registry.register(
            "policies",
            "Policies in force (Romana and Kubernetes NetworkPolicies)",
            metrics.policies.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The text exposition, with the sampled and computed figures fresh.
    pub fn render(&self, raft: &Raft, shared: &SharedState) -> String {
        if !self.enabled {
            return "# EOF\n".into();
        }
        self.sample_raft(raft);
        self.snapshot_bytes
            .set(i64::try_from(shared.snapshot_bytes()).unwrap_or(i64::MAX));
        self.compute_state(&shared.read().state);
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }

    fn sample_raft(&self, raft: &Raft) {
        let metrics = raft.metrics().borrow().clone();
        self.role.clear();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        self.role
            .get_or_create(&RoleLabels { role: role.into() })
            .set(1);
        let index = |id: Option<openraft::LogId<u64>>| id.map_or(0, |id| id.index);
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.term.set(to_i64(metrics.current_term));
        let last_log = metrics.last_log_index.unwrap_or(0);
        let applied = index(metrics.last_applied);
        self.last_log_index.set(to_i64(last_log));
        self.applied_index.set(to_i64(applied));
        self.apply_lag.set(to_i64(last_log.saturating_sub(applied)));
        self.snapshot_index.set(to_i64(index(metrics.snapshot)));
        self.log_entries
            .set(to_i64(last_log.saturating_sub(index(metrics.purged))));
        let membership = metrics.membership_config.membership();
        self.replication_lag.clear();
        self.commit_index.set(0);
        if let Some(replication) = &metrics.replication {
            let matched = |id: u64| {
                if id == metrics.id {
                    last_log
                } else {
                    replication
                        .get(&id)
                        .and_then(|m| m.map(|log_id| log_id.index))
                        .unwrap_or(0)
                }
            };
            let mut voters: Vec<u64> = membership.voter_ids().map(matched).collect();
            voters.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(committed) = voters.get(voters.len() / 2) {
                self.commit_index.set(to_i64(*committed));
            }
            for (id, node) in membership.nodes() {
                if *id != metrics.id {
                    self.replication_lag
                        .get_or_create(&PeerLabels {
                            peer: node.name.clone(),
                        })
                        .set(to_i64(last_log.saturating_sub(matched(*id))));
                }
            }
        }
        let voters = membership.voter_ids().count();
        let all = membership.nodes().count();
        self.members
            .get_or_create(&RoleLabels {
                role: "voter".into(),
            })
            .set(to_i64(voters as u64));
        self.members
            .get_or_create(&RoleLabels {
                role: "learner".into(),
            })
            .set(to_i64(all.saturating_sub(voters) as u64));
    }

    fn compute_state(&self, state: &ClusterState) {
        self.addresses_in_use.clear();
        self.addresses_free.clear();
        let Some(layout) = state.layout() else {
            return;
        };
        let mut used: std::collections::BTreeMap<(String, String, String), i64> =
            Default::default();
        for allocation in state.allocations.values() {
            *used
                .entry((
                    allocation.host.clone(),
                    allocation.tenant.clone(),
                    allocation.segment.clone(),
                ))
                .or_default() += 1;
        }
        let capacity = i64::from(layout.usable_endpoints());
        for ((host, tenant, segment), count) in used {
            let labels = BlockLabels {
                host,
                tenant,
                segment,
            };
            self.addresses_in_use.get_or_create(&labels).set(count);
            self.addresses_free
                .get_or_create(&labels)
                .set(capacity.saturating_sub(count));
        }
        self.tenants
            .set(i64::try_from(state.tenants.len()).unwrap_or(i64::MAX));
        self.policies.set(
            i64::try_from(state.policies.len() + state.network_policies.len()).unwrap_or(i64::MAX),
        );
    }

    /// Records one write: its kind, how long it took, and its refusal reason
    /// if it was refused.
    pub fn observe_write(&self, kind: &str, took: Duration, refused: Option<&str>) {
        if !self.enabled {
            return;
        }
        self.write_duration
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
        if let Some(reason) = refused {
            self.refusals
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }
}

impl Metrics {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts what one applied record did to the address pool.
    pub fn observe_record(&self, record: &raft_store::audit::ArchiveRecord) {
        use raft_store::entry::Command;
        use raft_store::{Effect, Outcome};
        if !self.enabled {
            return;
        }
        let release = |cause: &str, count: usize| {
            if count > 0 {
                self.releases
                    .get_or_create(&CauseLabels {
                        cause: cause.into(),
                    })
                    .inc_by(count as u64);
            }
        };
        match (&record.request.command, &record.applied.outcome) {
            (
                Command::AllocateAddress(_),
                Outcome::Applied(Effect::AddressAllocated {
                    existing: false, ..
                }),
            ) => {
                self.allocations.inc();
            }
            (Command::ReleaseAddress(_), Outcome::Applied(Effect::AddressReleased { .. })) => {
                release("release", 1);
            }
            (_, Outcome::Applied(Effect::GarbageCollected { released })) => {
                release("gc", released.len());
            }
            (_, Outcome::Applied(Effect::NodeRemoved { released, .. })) => {
                release("host_removed", released.len());
            }
            _ => {}
        }
    }

    /// Records one CNI request as the node answered it.
    pub fn observe_cni(&self, command: &str, took: Duration, outcome: &str) {
        if !self.enabled {
            return;
        }
        self.cni_duration
            .get_or_create(&CommandLabels {
                command: command.into(),
            })
            .observe(took.as_secs_f64());
        self.cni_requests
            .get_or_create(&CommandOutcomeLabels {
                command: command.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

impl raft_store::transport::RpcObserver for Metrics {
    fn peer(&self, peer: &str) -> std::sync::Arc<dyn raft_store::transport::PeerRpcObserver> {
        let histogram = |rpc: &str| {
            self.rpc_duration
                .get_or_create(&PeerRpcLabels {
                    peer: peer.into(),
                    rpc: rpc.into(),
                })
                .clone()
        };
        std::sync::Arc::new(PeerRpcs {
            enabled: self.enabled,
            peer: peer.into(),
            append_entries: histogram("append_entries"),
            vote: histogram("vote"),
            install_snapshot: histogram("install_snapshot"),
            errors: self.rpc_errors.clone(),
        })
    }
}

/// The RPC figures of one peer, resolved once per connection.
struct PeerRpcs {
    enabled: bool,
    peer: String,
    append_entries: Histogram,
    vote: Histogram,
    install_snapshot: Histogram,
    errors: Family<PeerRpcErrorLabels, Counter>,
}

impl raft_store::transport::PeerRpcObserver for PeerRpcs {
    fn observed(&self, rpc: RPCTypes, took: Duration, error: Option<&'static str>) {
        if !self.enabled {
            return;
        }
        let (histogram, name) = match rpc {
            RPCTypes::AppendEntries => (&self.append_entries, "append_entries"),
            RPCTypes::Vote => (&self.vote, "vote"),
            RPCTypes::InstallSnapshot => (&self.install_snapshot, "install_snapshot"),
        };
        histogram.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors
                .get_or_create(&PeerRpcErrorLabels {
                    peer: self.peer.clone(),
                    rpc: name.into(),
                    error: error.into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the registry exports, with their series suffixes.
    fn exported() -> std::collections::BTreeSet<String> {
        let metrics = Metrics::new(true);
        // Touch every family so that each appears in the exposition.
        metrics.observe_write("note", Duration::from_millis(1), Some("conflict"));
        metrics
            .requests
            .get_or_create(&RouteLabels {
                listener: "tcp".into(),
                method: "GET".into(),
                route: "/v1/status".into(),
                status: "200".into(),
            })
            .inc();
        metrics
            .request_duration
            .get_or_create(&RouteLatencyLabels {
                listener: "tcp".into(),
                route: "/v1/status".into(),
            })
            .observe(0.001);
        let role = RoleLabels {
            role: "leader".into(),
        };
        metrics.role.get_or_create(&role).set(1);
        metrics.members.get_or_create(&role).set(1);
        let block = BlockLabels {
            host: "h".into(),
            tenant: "t".into(),
            segment: "s".into(),
        };
        metrics.addresses_in_use.get_or_create(&block).set(1);
        metrics.addresses_free.get_or_create(&block).set(1);
        metrics
            .reconciler_passes
            .get_or_create(&OutcomeLabels {
                outcome: "ok".into(),
            })
            .inc();
        use raft_store::transport::RpcObserver;
        metrics.peer("n1").observed(
            RPCTypes::AppendEntries,
            Duration::from_millis(1),
            Some("timeout"),
        );
        metrics.batch_size.observe(3.0);
        metrics
            .replication_lag
            .get_or_create(&PeerLabels { peer: "n1".into() })
            .set(0);
        metrics.allocations.inc();
        metrics
            .releases
            .get_or_create(&CauseLabels { cause: "gc".into() })
            .inc();
        let what = WhatLabels {
            what: "firewall".into(),
        };
        metrics
            .dataplane_duration
            .get_or_create(&what)
            .observe(0.01);
        metrics.dataplane_failures.get_or_create(&what).inc();
        metrics.observe_cni("ADD", Duration::from_millis(3), "ok");
        metrics
            .drift_repairs
            .get_or_create(&WhatLabels {
                what: "routes".into(),
            })
            .inc();
        metrics
            .kubernetes_watch_restarts
            .get_or_create(&ResourceLabels {
                resource: "pods".into(),
            })
            .inc();
        metrics
            .kubernetes_events
            .get_or_create(&ResourceKindLabels {
                resource: "pods".into(),
                kind: "apply".into(),
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).expect("encode");
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .flat_map(|name| {
                ["", "_total", "_bucket", "_count", "_sum"].map(|suffix| format!("{name}{suffix}"))
            })
            .collect()
    }

    #[test]
    fn the_grafana_dashboard_names_only_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/grafana/romana.json"))
                .expect("the dashboard is JSON");
        let exported = exported();
        let mut named = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(start) = rest.find("romana_") {
                    let tail = &rest[start..];
                    let end = tail
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(tail.len());
                    named.push(tail[..end].to_string());
                    rest = &tail[end..];
                }
            }
        }
        assert!(named.len() >= 16, "{named:?}");
        for name in &named {
            assert!(
                exported.contains(name),
                "the dashboard names {name}, which no node exports"
            );
        }
    }
}

//! The reconciler: converges this host's kernel to what the projection
//! says, through a [`Dataplane`].
//!
//! It wakes at start, on every applied change (a watch on the applied
//! index) and every `interval` (the drift check). Routes are planned on
//! every wake (one route per host: cheap) and applied with the fewest
//! changes. The firewall's inputs are the layout, the hosts, the tenants,
//! the policies and the shared-service pods (the cluster DNS: address and
//! declared ports): the chains are rendered again only when one of those
//! changed, and handed to the kernel (an `iptables-save` and at most one
//! `iptables-restore`) only when they changed, when the last attempt
//! failed, or on the drift check. Other pods' allocations, which change on
//! every pod start, never touch the firewall. A restart with nothing changed finds
//! nothing to do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_store::layout::AddressLayout;
use raft_store::state::{
    ClusterState, NetworkPolicyRecord, NodeRecord, PolicyRecord, TenantRecord,
};
use raft_store::store::SharedState;
use tokio::sync::watch;

use super::firewall::{desired, Desired};
use super::routes::{desired_routes, plan, HostRoute, RoutePlan};
use super::{Dataplane, DataplaneError};
use crate::policy::compiler::{shared_endpoints, SharedEndpoint};

/// What the reconciler manages, from the node's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's name (whose routes are wanted).
    pub host: String,
    /// `--manage-routes`: converge the routes to the other hosts.
    pub manage_routes: bool,
    /// `--firewall`: converge the isolation chains.
    pub firewall: bool,
    /// `--allow-host-to-pods`.
    pub allow_host_to_pods: bool,
    /// How often the kernel is checked for drift with nothing applied.
    pub interval: Duration,
}

/// The part of the projection the firewall is rendered from.
#[derive(Debug, Clone, PartialEq)]
struct FirewallInputs {
    layout: Option<AddressLayout>,
    nodes: BTreeMap<String, NodeRecord>,
    tenants: BTreeMap<String, TenantRecord>,
    policies: BTreeMap<String, PolicyRecord>,
    network_policies: BTreeMap<String, NetworkPolicyRecord>,
    /// Shared-service pods (the cluster DNS) and their ports.
    shared: Vec<SharedEndpoint>,
}

impl FirewallInputs {
    /// `shared`: [`shared_endpoints`] of `state`, computed once per pass.
    fn of(state: &ClusterState, shared: Vec<SharedEndpoint>) -> Self {
        Self {
            layout: state.layout().copied(),
            nodes: state.nodes.clone(),
            tenants: state.tenants.clone(),
            policies: state.policies.clone(),
            network_policies: state.network_policies.clone(),
            shared,
        }
    }

    /// Compared field by field against the live state, without copying it.
    fn matches(&self, state: &ClusterState, shared: &[SharedEndpoint]) -> bool {
        self.layout.as_ref() == state.layout()
            && self.nodes == state.nodes
            && self.tenants == state.tenants
            && self.policies == state.policies
            && self.network_policies == state.network_policies
            && self.shared == shared
    }
}

/// What one wake asks of the kernel.
#[derive(Debug, Default)]
pub struct Pass {
    /// Sets and chains to converge, if the firewall must be looked at.
    pub firewall: Option<Desired>,
    /// Desired routes and the layout they live in, if routes are managed
    /// and the layout is known.
    pub routes: Option<(Vec<HostRoute>, AddressLayout)>,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// `Some(changed)` if the firewall was converged.
    pub firewall: Option<Result<bool, DataplaneError>>,
    /// The route plan applied, if routes were converged.
    pub routes: Option<Result<RoutePlan, DataplaneError>>,
    /// How long the firewall's transaction and the routes' took.
    pub firewall_took: Duration,
    pub routes_took: Duration,
    /// The firewall's steps, where the dataplane measured them.
    pub firewall_steps: Option<super::FirewallSteps>,
}

/// The reconciler's memory between wakes.
pub struct Reconciler {
    settings: Settings,
    /// The inputs the current chains were rendered from.
    firewall_inputs: Option<FirewallInputs>,
    /// The sets and chains rendered from them (`None` before the layout is
    /// known).
    desired: Option<Desired>,
    /// Whether `desired` is known to be in the kernel.
    firewall_in_place: bool,
    /// Routes last converged, to log changes once.
    last_routes: Option<Vec<HostRoute>>,
}

impl Reconciler {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            firewall_inputs: None,
            desired: None,
            firewall_in_place: false,
            last_routes: None,
        }
    }

    /// Plans one pass from the state (cheap; called under the read lock).
    /// `drift_check` forces the firewall to be looked at.
    pub fn plan(&mut self, state: &ClusterState, drift_check: bool) -> Pass {
        let mut pass = Pass::default();
        if self.settings.firewall {
            let shared = shared_endpoints(state);
            // NetworkPolicies' sets follow every pod: with any in force,
            // every pass renders (a set change alone leaves the chains as
            // they are in the kernel).
            let stale = !state.network_policies.is_empty()
                || !self
                    .firewall_inputs
                    .as_ref()
                    .is_some_and(|inputs| inputs.matches(state, &shared));
            if stale {
                let host = state.nodes.get(&self.settings.host).map(|n| n.host_number);
                let desired = desired(state, host, self.settings.allow_host_to_pods);
                if desired != self.desired {
                    self.firewall_in_place = false;
                }
                self.desired = desired;
                self.firewall_inputs = Some(FirewallInputs::of(state, shared));
            }
            if !self.firewall_in_place || drift_check {
                pass.firewall = self.desired.clone();
            }
        }
        if self.settings.manage_routes {
            if let Some(layout) = state.layout() {
                pass.routes = Some((desired_routes(state, &self.settings.host), *layout));
            }
        }
        pass
    }

    /// Records the outcome of a pass: whether the isolation rules are in
    /// place, and what the pass repaired that had been in place already
    /// (the kernel drifted: someone flushed a chain or deleted a route).
    pub fn record(&mut self, pass: &Pass, report: &PassReport) -> Recorded {
        let mut drift = Vec::new();
        match &report.firewall {
            Some(Ok(changed)) => {
                if *changed {
                    // In place before and the same rules wanted (a change
                    // of them clears `firewall_in_place` in `plan`): the
                    // kernel's copy had drifted.
                    if self.firewall_in_place {
                        drift.push(DriftRepair {
                            what: "firewall",
                            detail: "isolation rules or sets differed from the projection".into(),
                        });
                        tracing::warn!("isolation rules had drifted; restored");
                    } else {
                        tracing::info!("isolation rules converged");
                    }
                }
                self.firewall_in_place = true;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "firewall reconcile failed; retrying");
                self.firewall_in_place = false;
            }
            None => {}
        }
        if let (Some(result), Some((desired, _))) = (&report.routes, &pass.routes) {
            match result {
                Ok(plan) => {
                    if !plan.is_empty() {
                        if self.last_routes.as_ref() == Some(desired) {
                            drift.push(DriftRepair {
                                what: "routes",
                                detail: format!(
                                    "{} routes restored, {} removed",
                                    plan.upsert.len(),
                                    plan.delete.len()
                                ),
                            });
                        }
                        tracing::info!(upsert = ?plan.upsert, delete = ?plan.delete, "routes converged");
                    } else if self.last_routes.as_ref() != Some(desired) {
                        tracing::debug!(routes = desired.len(), "routes already converged");
                    }
                    self.last_routes = Some(desired.clone());
                }
                Err(e) => tracing::warn!(error = %e, "route reconcile failed; retrying"),
            }
        }
        Recorded {
            firewall_in_place: self.firewall_in_place,
            drift,
        }
    }
}

/// What [`Reconciler::record`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub firewall_in_place: bool,
    /// What the pass put back.
    pub drift: Vec<DriftRepair>,
}

/// One repair of drift: `what` (`firewall` or `routes`) and how much.
#[derive(Debug, PartialEq, Eq)]
pub struct DriftRepair {
    pub what: &'static str,
    pub detail: String,
}

/// Carries out a pass on the dataplane. Blocking.
pub fn execute<D: Dataplane>(dataplane: &mut D, pass: &Pass) -> PassReport {
    let started = std::time::Instant::now();
    let firewall = pass
        .firewall
        .as_ref()
        .map(|desired| dataplane.converge_firewall(desired));
    let firewall_took = started.elapsed();
    let firewall_steps = firewall.as_ref().and(dataplane.last_firewall_steps());
    let started = std::time::Instant::now();
    let routes = pass
        .routes
        .as_ref()
        .map(|(desired, layout)| converge_routes(dataplane, desired, layout));
    PassReport {
        firewall,
        routes,
        firewall_took,
        routes_took: started.elapsed(),
        firewall_steps,
    }
}

/// The dataplane's figures of one pass: transaction times and failures,
/// and what is installed once a transaction succeeded.
fn observe_pass(metrics: &crate::metrics::Metrics, pass: &Pass, report: &PassReport) {
    if !metrics.enabled() {
        return;
    }
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let transaction = |what: &str, took: Duration, failed: bool| {
        let labels = crate::metrics::WhatLabels { what: what.into() };
        metrics
            .dataplane_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            metrics.dataplane_failures.get_or_create(&labels).inc();
        }
    };
    if let (Some(result), Some(desired)) = (&report.firewall, &pass.firewall) {
        transaction("firewall", report.firewall_took, result.is_err());
        if let Some(steps) = report.firewall_steps {
            transaction("ipset", steps.ipset, steps.failed == Some("ipset"));
            if let Some(took) = steps.iptables {
                transaction("iptables", took, steps.failed == Some("iptables"));
            }
        }
        if result.is_ok() {
            metrics
                .iptables_rules
                .set(to_i64(desired.chains.values().map(Vec::len).sum()));
            metrics
                .ipset_entries
                .set(to_i64(desired.sets.values().map(|s| s.members.len()).sum()));
        }
    }
    if let (Some(result), Some((desired, _))) = (&report.routes, &pass.routes) {
        transaction("routes", report.routes_took, result.is_err());
        if result.is_ok() {
            metrics.host_routes.set(to_i64(desired.len()));
        }
    }
}

/// Observe, plan, apply. Returns the plan it applied.
fn converge_routes<D: Dataplane>(
    dataplane: &mut D,
    desired: &[HostRoute],
    layout: &AddressLayout,
) -> Result<RoutePlan, DataplaneError> {
    let observed = dataplane.observe_routes(layout)?;
    let plan = plan(desired, &observed);
    for route in &plan.upsert {
        dataplane.setup_route(route)?;
    }
    for (destination, prefix_len) in &plan.delete {
        dataplane.teardown_route(*destination, *prefix_len)?;
    }
    Ok(plan)
}

/// Runs until `stop`: converges the kernel on every applied change and on
/// every drift check. Raises `firewall_ready` once the isolation rules are
/// in place (the API refuses this host's addresses until then).
pub async fn run<D: Dataplane>(
    shared: SharedState,
    settings: Settings,
    firewall_ready: Arc<AtomicBool>,
    dataplane: D,
    metrics: Arc<crate::metrics::Metrics>,
    events: Arc<crate::events::EventBus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied = shared.subscribe();
    let mut drift = tokio::time::interval(settings.interval);
    drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconciler = Reconciler::new(settings);
    let dataplane = Arc::new(Mutex::new(dataplane));
    loop {
        // The first tick completes at once: a full pass at start.
        let drift_check = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = applied.changed() => false,
            _ = drift.tick() => true,
        };
        let pass = reconciler.plan(&shared.read().state, drift_check);
        if pass.firewall.is_none() && pass.routes.is_none() {
            continue;
        }
        let dataplane = dataplane.clone();
        let started = std::time::Instant::now();
        let (pass, report) = match tokio::task::spawn_blocking(move || {
            // Only this loop takes the lock; a panic in a previous pass
            // leaves a dataplane that the next pass observes afresh.
            let mut dataplane = dataplane
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let report = execute(&mut *dataplane, &pass);
            (pass, report)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile task failed");
                continue;
            }
        };
        metrics
            .reconciler_duration
            .observe(started.elapsed().as_secs_f64());
        observe_pass(&metrics, &pass, &report);
        let failed =
            matches!(report.firewall, Some(Err(_))) || matches!(report.routes, Some(Err(_)));
        metrics
            .reconciler_passes
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: if failed { "failed" } else { "ok" }.into(),
            })
            .inc();
        let recorded = reconciler.record(&pass, &report);
        for repair in recorded.drift {
            metrics
                .drift_repairs
                .get_or_create(&crate::metrics::WhatLabels {
                    what: repair.what.into(),
                })
                .inc();
            events.emit(crate::events::NewEvent::new(
                "drift_repaired",
                format!("{} repaired: {}", repair.what, repair.detail),
                serde_json::json!({ "what": repair.what, "detail": repair.detail }),
            ));
        }
        if recorded.firewall_in_place {
            firewall_ready.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::recording::{Call, Recording};
    use raft_store::entry::{
        AllocationRequest, ClusterRequest, Command, ContainerInterface, RequestMeta,
    };

    fn apply(state: &mut ClusterState, index: u64, command: Command) {
        let meta = RequestMeta {
            actor: "test".into(),
            request_id: format!("r{index}"),
            timestamp_ms: 1,
        };
        state.apply(index, 0, &ClusterRequest::new(meta, command));
    }

    fn settings() -> Settings {
        Settings {
            host: "h1".into(),
            manage_routes: true,
            firewall: true,
            allow_host_to_pods: false,
            interval: Duration::from_secs(10),
        }
    }

    fn two_hosts_one_tenant() -> ClusterState {
        let mut state = ClusterState::default();
        apply(
            &mut state,
            1,
            Command::InitCluster {
                cluster_name: "romana".into(),
                voters_target: 1,
                layout: AddressLayout::default(),
            },
        );
        for (i, name) in ["h1", "h2"].iter().enumerate() {
            apply(
                &mut state,
                2 + i as u64,
                Command::RegisterNode {
                    node_id: 1 + i as u64,
                    name: name.to_string(),
                    address: format!("192.0.2.{}:9600", 1 + i),
                },
            );
        }
        apply(&mut state, 4, Command::CreateTenant { name: "t1".into() });
        state
    }

    fn pass(
        reconciler: &mut Reconciler,
        dataplane: &mut Recording,
        state: &ClusterState,
        drift_check: bool,
    ) -> bool {
        let pass = reconciler.plan(state, drift_check);
        let report = execute(dataplane, &pass);
        reconciler.record(&pass, &report).firewall_in_place
    }

    #[test]
    fn allocations_do_not_touch_the_firewall_but_tenants_and_drift_checks_do() {
        // Goal: the firewall is converged at start, again when a tenant is
        // added and on the drift check, and never because of an allocation.
        let mut state = two_hosts_one_tenant();
        let mut reconciler = Reconciler::new(settings());
        let mut dataplane = Recording::default();
        assert!(
            pass(&mut reconciler, &mut dataplane, &state, true),
            "rules in place after the first pass"
        );
        assert_eq!(dataplane.firewall_passes(), 1);
        assert_eq!(
            dataplane
                .routes
                .get(&("10.1.0.0".parse().expect("address"), 16)),
            Some(&"192.0.2.2".parse().expect("address")),
            "a route to the other host's prefix"
        );

        apply(
            &mut state,
            5,
            Command::AllocateAddress(AllocationRequest {
                host: "h1".into(),
                tenant: "t1".into(),
                segment: "default".into(),
                owner: ContainerInterface {
                    container_id: "c1".into(),
                    ifname: "eth0".into(),
                },
                pod_namespace: None,
                pod_name: None,
                network: None,
            }),
        );
        assert_eq!(state.allocations.len(), 1, "the allocation was applied");
        pass(&mut reconciler, &mut dataplane, &state, false);
        assert_eq!(
            dataplane.firewall_passes(),
            1,
            "an allocation must not re-read iptables"
        );
        assert!(dataplane.calls.contains(&Call::ObserveRoutes));

        apply(&mut state, 6, Command::CreateTenant { name: "t2".into() });
        pass(&mut reconciler, &mut dataplane, &state, false);
        assert_eq!(
            dataplane.firewall_passes(),
            2,
            "a new tenant changes the chains"
        );

        pass(&mut reconciler, &mut dataplane, &state, true);
        assert_eq!(
            dataplane.firewall_passes(),
            3,
            "the drift check looks again"
        );
    }

    #[test]
    fn removed_hosts_lose_their_route() {
        // Goal: routes follow the hosts, with the fewest changes.
        let mut state = two_hosts_one_tenant();
        let mut reconciler = Reconciler::new(settings());
        let mut dataplane = Recording::default();
        pass(&mut reconciler, &mut dataplane, &state, true);
        assert_eq!(dataplane.routes.len(), 1);
        apply(
            &mut state,
            5,
            Command::RemoveNode {
                name: "h2".into(),
                force: false,
            },
        );
        pass(&mut reconciler, &mut dataplane, &state, false);
        assert!(
            dataplane.routes.is_empty(),
            "the route to a removed host goes"
        );
        assert!(dataplane.calls.contains(&Call::TeardownRoute(
            "10.1.0.0".parse().expect("address"),
            16
        )));
    }

    #[test]
    fn a_kernel_changed_behind_the_reconcilers_back_is_repaired_and_reported_as_drift() {
        // Goal: changes the projection asked for are not drift; a flushed
        // chain or a deleted route found by the drift check is, once each.
        let mut state = two_hosts_one_tenant();
        let mut reconciler = Reconciler::new(settings());
        let mut dataplane = Recording::default();
        let run = |reconciler: &mut Reconciler, dataplane: &mut Recording, state: &ClusterState| {
            let pass = reconciler.plan(state, true);
            let report = execute(dataplane, &pass);
            reconciler.record(&pass, &report).drift
        };
        assert!(
            run(&mut reconciler, &mut dataplane, &state).is_empty(),
            "first convergence"
        );
        apply(&mut state, 5, Command::CreateTenant { name: "t2".into() });
        assert!(
            run(&mut reconciler, &mut dataplane, &state).is_empty(),
            "a new tenant's rules are a change, not drift"
        );
        assert!(
            run(&mut reconciler, &mut dataplane, &state).is_empty(),
            "nothing changed"
        );

        dataplane.chains = None;
        dataplane.routes.clear();
        let drift = run(&mut reconciler, &mut dataplane, &state);
        let what: Vec<&str> = drift.iter().map(|d| d.what).collect();
        assert_eq!(what, ["firewall", "routes"], "{drift:?}");
        assert_eq!(dataplane.routes.len(), 1, "the route is back");
        assert!(dataplane.chains.is_some(), "the chains are back");
        assert!(
            run(&mut reconciler, &mut dataplane, &state).is_empty(),
            "repaired once, then quiet"
        );
    }
}

//! The Kubernetes controller: runs on the Raft leader only, so the
//! apiserver carries one set of watches per cluster whatever the number of
//! nodes, and mirrors what the network needs into the log as ordinary
//! idempotent requests.
//!
//! While this node leads it watches (kube-rs `watcher`, resource versions,
//! relist on restart) namespaces, pods, nodes, NetworkPolicies and
//! `RomanaNetworkPolicy` objects into reflector stores, and on every change
//! (and every [`TICK`]) reconciles, level-triggered, each kind whose store
//! has completed its initial list:
//!
//! - namespaces and pods (not host-network ones): labels, node, container
//!   ports → `MirrorNamespace` / `MirrorPod`; gone → `ForgetNamespace` /
//!   `ForgetPod`;
//! - NetworkPolicies → `ApplyNetworkPolicy` / `DeleteNetworkPolicy`, and
//!   `RomanaNetworkPolicy` objects → `ApplyPolicies` / `DeletePolicy` (the
//!   controller owns the policies whose actor starts with `kubernetes:`; an
//!   object it cannot read keeps what was in force and is reported as a
//!   Kubernetes Event on the object);
//! - nodes: a host registered in the log whose Kubernetes Node is gone is
//!   removed from the membership, its addresses released;
//! - garbage: an address held for a pod that no longer exists (its host
//!   was down when it was deleted) is released after [`GC_GRACE`];
//! - the configured tenants exist; the bootstrap Secret exists.
//!
//! A new leader starts from a relist and reconciles against the projection,
//! so nothing depends on events seen by an earlier leader.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use openraft::ServerState;
use raft_store::entry::policy::PolicyFormat;
use raft_store::entry::ContainerInterface;
use raft_store::entry::{PodMirror, PodPort, Policy, PortProtocol};
use raft_store::state::{Outcome, Rejection};
use raft_store::Command;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::{labels_of, Context};
use crate::node::{now_ms, Node};
use crate::policy::formats;

/// How often the controller reconciles without a change (garbage
/// collection is time-based).
pub const TICK: Duration = Duration::from_secs(10);
/// How long an address held for a pod that does not exist is kept before it
/// is released: a pod's sandbox is set up after the pod object exists, so
/// this only covers the mirror's own lag.
pub const GC_GRACE: Duration = Duration::from_secs(60);
/// Changes arriving within this window are reconciled together.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Proposals in flight at once (the leader's batcher packs them).
const CONCURRENT_WRITES: usize = 64;
/// Actor prefix of everything the controller writes.
pub const ACTOR_PREFIX: &str = "kubernetes:";

/// The seed's policy object as a custom resource: `romana.io/v1`,
/// `RomanaNetworkPolicy`, namespace = tenant, the `romana.io/demo/v1`
/// NetworkPolicy's `spec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RomanaNetworkPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
}

impl k8s_openapi::Resource for RomanaNetworkPolicy {
    const API_VERSION: &'static str = "romana.io/v1";
    const GROUP: &'static str = "romana.io";
    const KIND: &'static str = "RomanaNetworkPolicy";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "romananetworkpolicies";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for RomanaNetworkPolicy {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Runs until `stop`: leads the mirror whenever this node is the leader.
pub async fn run(node: Node, context: Context, mut stop: watch::Receiver<bool>) {
    let mut metrics = node.raft.metrics();
    loop {
        loop {
            if *stop.borrow() {
                return;
            }
            if metrics.borrow().state == ServerState::Leader {
                break;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => {}
            }
        }
        tracing::info!("leading: starting the Kubernetes controller");
        let leading = lead(node.clone(), context.clone());
        tokio::pin!(leading);
        loop {
            tokio::select! {
                _ = &mut leading => break,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if metrics.borrow().state != ServerState::Leader {
                        tracing::info!("no longer leading: the Kubernetes controller stops");
                        break;
                    }
                }
                _ = stop.changed() => if *stop.borrow() { return },
            }
        }
    }
}

/// A watched kind: its store and whether its initial list completed.
struct Watched<K: kube::Resource + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    ready: Arc<AtomicBool>,
}

impl<K> Watched<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    fn start(
        api: Api<K>,
        kind: &'static str,
        tasks: &mut JoinSet<()>,
        notify: Arc<Notify>,
        observed: Observed,
    ) -> Self {
        let (store, writer) = reflector::store();
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default()).default_backoff(),
        );
        tasks.spawn(async move {
            futures::pin_mut!(stream);
            loop {
                let next = stream.try_next().await;
                if let Ok(Some(event)) = &next {
                    observed.event(kind, event);
                }
                match next {
                    Ok(Some(Event::InitDone)) => {
                        flag.store(true, Ordering::SeqCst);
                        notify.notify_one();
                    }
                    Ok(Some(_)) => notify.notify_one(),
                    Ok(None) => return,
                    Err(e) => {
                        observed.restart(kind);
                        tracing::warn!(kind, error = %e, "watch failed; retrying");
                    }
                }
            }
        });
        Self { store, ready }
    }

    fn ready(&self) -> Option<Vec<Arc<K>>> {
        self.ready
            .load(Ordering::SeqCst)
            .then(|| self.store.state())
    }
}

/// What the watches tell the metrics: events by resource and kind, watch
/// restarts, and since when changes wait to be mirrored.
#[derive(Clone)]
struct Observed {
    metrics: Arc<crate::metrics::Metrics>,
    /// When the oldest event not yet mirrored arrived.
    pending_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Observed {
    fn event<K>(&self, resource: &'static str, event: &Event<K>) {
        let kind = match event {
            Event::Apply(_) => "apply",
            Event::Delete(_) => "delete",
            Event::Init => "init",
            Event::InitApply(_) => "init_apply",
            Event::InitDone => "init_done",
        };
        self.metrics
            .kubernetes_events
            .get_or_create(&crate::metrics::ResourceKindLabels {
                resource: resource.into(),
                kind: kind.into(),
            })
            .inc();
        let mut pending = self.pending_since.lock().unwrap_or_else(|p| p.into_inner());
        pending.get_or_insert_with(std::time::Instant::now);
    }

    fn restart(&self, resource: &'static str) {
        self.metrics
            .kubernetes_watch_restarts
            .get_or_create(&crate::metrics::ResourceLabels {
                resource: resource.into(),
            })
            .inc();
    }

    /// Before a reconcile: the arrival of the oldest event it covers.
    fn take_pending(&self) -> Option<std::time::Instant> {
        self.pending_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

struct Watches {
    namespaces: Watched<Namespace>,
    pods: Watched<Pod>,
    nodes: Watched<KubeNode>,
    policies: Watched<NetworkPolicy>,
    romana_policies: Watched<RomanaNetworkPolicy>,
}

/// The controller while this node leads (dropped when it stops leading:
/// the watches stop with it).
async fn lead(node: Node, context: Context) {
    let client = context.client.clone();
    let notify = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let observed = Observed {
        metrics: node.metrics.clone(),
        pending_since: Default::default(),
    };
    let watches = Watches {
        namespaces: Watched::start(
            Api::all(client.clone()),
            "namespaces",
            &mut tasks,
            notify.clone(),
            observed.clone(),
        ),
        pods: Watched::start(
            Api::all(client.clone()),
            "pods",
            &mut tasks,
            notify.clone(),
            observed.clone(),
        ),
        nodes: Watched::start(
            Api::all(client.clone()),
            "nodes",
            &mut tasks,
            notify.clone(),
            observed.clone(),
        ),
        policies: Watched::start(
            Api::all(client.clone()),
            "networkpolicies",
            &mut tasks,
            notify.clone(),
            observed.clone(),
        ),
        romana_policies: Watched::start(
            Api::all(client.clone()),
            "romananetworkpolicies",
            &mut tasks,
            notify.clone(),
            observed.clone(),
        ),
    };
    if let Some(text) = cluster_secret_text(&node) {
        super::bootstrap::ensure_secret(&context, &node.config, node.node_id, &text).await;
    }
    let mut reports = Reports::new(&context, &node.config.name);
    loop {
        tokio::select! {
            _ = notify.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(TICK) => {}
        }
        let since = observed.take_pending();
        ensure_tenants(&node, &context).await;
        reconcile(&node, &watches, &mut reports).await;
        if let Some(since) = since {
            node.metrics
                .kubernetes_mirror_duration
                .observe(since.elapsed().as_secs_f64());
        }
    }
}

fn cluster_secret_text(node: &Node) -> Option<String> {
    std::fs::read_to_string(crate::node::cluster_secret_path(&node.config))
        .ok()
        .map(|text| text.trim().to_string())
}

async fn ensure_tenants(node: &Node, context: &Context) {
    for tenant in &context.settings.tenants {
        {
            let projection = node.shared.read();
            // A leader just elected may not have applied the first entry.
            if projection.state.cluster.is_none() || projection.state.tenants.contains_key(tenant) {
                continue;
            }
        }
        let result = node
            .propose(
                Command::CreateTenant {
                    name: tenant.clone(),
                },
                format!("{ACTOR_PREFIX}config@{}", node.config.name),
                Some(format!("k8s-tenant-{tenant}")),
            )
            .await;
        match result.map(|applied| applied.outcome) {
            Ok(Outcome::Applied(_)) => {
                tracing::info!(tenant = %tenant, "created a configured tenant")
            }
            Ok(Outcome::Rejected(Rejection::TenantExists { .. })) => {}
            Ok(Outcome::Rejected(reason)) => {
                tracing::warn!(tenant = %tenant, %reason, "cannot create a configured tenant")
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "cannot create a configured tenant")
            }
        }
    }
}

/// `(namespace, name)` of a namespaced object.
fn namespaced(meta: &ObjectMeta) -> Option<(&str, &str)> {
    Some((meta.namespace.as_deref()?, meta.name.as_deref()?))
}

/// What the log should say of a pod, or `None` for pods not on the pod
/// network (host-network pods have no address of ours).
pub fn pod_mirror(pod: &Pod) -> Option<PodMirror> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let mut ports = Vec::new();
    for container in &spec.containers {
        for port in container.ports.iter().flatten() {
            let Ok(number) = u16::try_from(port.container_port) else {
                continue;
            };
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => PortProtocol::Udp,
                Some("SCTP") => PortProtocol::Sctp,
                _ => PortProtocol::Tcp,
            };
            ports.push(PodPort {
                name: port.name.clone(),
                port: number,
                protocol,
            });
        }
    }
    ports.sort();
    ports.dedup();
    Some(PodMirror {
        namespace: pod.metadata.namespace.clone()?,
        name: pod.metadata.name.clone()?,
        uid: pod.metadata.uid.clone()?,
        node: spec.node_name.clone(),
        labels: labels_of(&pod.metadata),
        ports,
    })
}

/// An allocation held for a Kubernetes pod: owner, pod namespace, pod
/// name, when it was allocated.
pub type PodAllocation = (ContainerInterface, String, String, u64);

/// The owners of addresses held for pods that do not exist (`existing`:
/// `NAMESPACE/NAME` of every pod the apiserver lists), allocated at least
/// `grace` before `now_ms`: a sandbox is set up after its pod object exists,
/// so the grace only covers the mirror's lag.
pub fn stale_allocations(
    allocations: &[PodAllocation],
    existing: &HashSet<String>,
    now_ms: u64,
    grace: Duration,
) -> Vec<ContainerInterface> {
    allocations
        .iter()
        .filter(|(_, namespace, name, allocated_at_ms)| {
            now_ms.saturating_sub(*allocated_at_ms) >= grace.as_millis() as u64
                && !existing.contains(&format!("{namespace}/{name}"))
        })
        .map(|(owner, ..)| owner.clone())
        .collect()
}

/// Refused policy objects, reported once per version as a Kubernetes
/// Event on the object (the object itself is the user's: never changed).
struct Reports {
    recorder: Recorder,
    /// Policy key → the resource version last reported.
    reported: HashMap<String, String>,
}

impl Reports {
    fn new(context: &Context, me: &str) -> Self {
        Self {
            recorder: Recorder::new(
                context.client.clone(),
                Reporter {
                    controller: "romana".into(),
                    instance: Some(me.to_string()),
                },
            ),
            reported: HashMap::new(),
        }
    }

    fn forget(&mut self, key: &str) {
        self.reported.remove(key);
    }

    async fn refused<K>(&mut self, object: &K, key: &str, reason: &str)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let version = object.meta().resource_version.clone().unwrap_or_default();
        if self.reported.get(key) == Some(&version) {
            return;
        }
        let mut note = format!("not enforced (what was in force for it stays): {reason}");
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: "PolicyRefused".into(),
            note: Some(note),
            action: "Enforce".into(),
            secondary: None,
        };
        match self.recorder.publish(&event, &object.object_ref(&())).await {
            Ok(()) => {
                self.reported.insert(key.to_string(), version);
            }
            Err(e) => {
                tracing::warn!(policy = %key, error = %e, "cannot report a refused policy as an Event")
            }
        }
    }
}

/// A write the controller makes, with its actor.
struct Write {
    command: Command,
    actor: String,
}

async fn reconcile(node: &Node, watches: &Watches, reports: &mut Reports) {
    let me = &node.config.name;
    let mirror_actor = format!("{ACTOR_PREFIX}controller@{me}");
    let mut writes: Vec<Write> = Vec::new();
    let (view, policies, network_policies, allocations, hosts) = {
        let projection = node.shared.read();
        let state = &projection.state;
        let owned: BTreeMap<String, Policy> = state
            .policies
            .iter()
            .filter(|(_, record)| record.actor.starts_with(ACTOR_PREFIX))
            .map(|(name, record)| (name.clone(), record.policy.clone()))
            .collect();
        let network_policies: BTreeMap<String, raft_store::entry::NetworkPolicy> = state
            .network_policies
            .iter()
            .filter(|(_, record)| record.actor.starts_with(ACTOR_PREFIX))
            .map(|(name, record)| (name.clone(), record.policy.clone()))
            .collect();
        let allocations: Vec<PodAllocation> = state
            .allocations
            .values()
            .filter_map(|a| {
                Some((
                    a.owner.clone(),
                    a.pod_namespace.clone()?,
                    a.pod_name.clone()?,
                    a.allocated_at_ms,
                ))
            })
            .collect();
        let hosts: Vec<String> = state.nodes.keys().cloned().collect();
        (
            state.kubernetes.clone(),
            owned,
            network_policies,
            allocations,
            hosts,
        )
    };

    // Namespaces.
    let namespaces = watches.namespaces.ready();
    if let Some(namespaces) = &namespaces {
        let mut seen = BTreeSet::new();
        for namespace in namespaces {
            let Some(name) = namespace.metadata.name.clone() else {
                continue;
            };
            let labels = labels_of(&namespace.metadata);
            if view.namespaces.get(&name).map(|r| &r.labels) != Some(&labels) {
                writes.push(Write {
                    command: Command::MirrorNamespace {
                        name: name.clone(),
                        labels,
                    },
                    actor: mirror_actor.clone(),
                });
            }
            seen.insert(name);
        }
        for name in view.namespaces.keys().filter(|n| !seen.contains(*n)) {
            writes.push(Write {
                command: Command::ForgetNamespace { name: name.clone() },
                actor: mirror_actor.clone(),
            });
        }
    }

    // Pods, and addresses of pods that no longer exist.
    if let Some(pods) = watches.pods.ready() {
        let mut seen = HashSet::new();
        for pod in &pods {
            let Some(mirror) = pod_mirror(pod) else {
                continue;
            };
            let key = mirror.key();
            if !view.pods.get(&key).is_some_and(|r| r.same_as(&mirror)) {
                writes.push(Write {
                    command: Command::MirrorPod(mirror),
                    actor: mirror_actor.clone(),
                });
            }
            seen.insert(key);
        }
        for (key, record) in &view.pods {
            if !seen.contains(key) {
                writes.push(Write {
                    command: Command::ForgetPod {
                        namespace: record.pod.namespace.clone(),
                        name: record.pod.name.clone(),
                    },
                    actor: mirror_actor.clone(),
                });
            }
        }
        let existing: HashSet<String> = pods
            .iter()
            .filter_map(|p| namespaced(&p.metadata).map(|(ns, name)| format!("{ns}/{name}")))
            .collect();
        for owner in stale_allocations(&allocations, &existing, now_ms(), GC_GRACE) {
            tracing::info!(owner = %owner, "releasing the address of a pod that no longer exists");
            writes.push(Write {
                command: Command::ReleaseAddress(owner),
                actor: format!("{ACTOR_PREFIX}garbage-collector@{me}"),
            });
        }
    }

    // Policies: what the Kubernetes objects say, against what the
    // controller put in force. NetworkPolicies are recorded as they are
    // (NetworkPolicy entries); the seed's RomanaNetworkPolicy objects are
    // translated into Romana policies.
    let policies_ready = watches.policies.ready();
    if let Some(items) = &policies_ready {
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for object in items {
            let Some((namespace, name)) = namespaced(&object.metadata) else {
                continue;
            };
            let key = format!("{namespace}/{name}");
            wanted.insert(key.clone());
            let parsed = serde_json::to_value(object.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|value| formats::parse_kubernetes_object(&value));
            match parsed {
                Ok(policy) => {
                    if network_policies.get(&key) != Some(&policy) {
                        writes.push(Write {
                            command: Command::ApplyNetworkPolicy(policy),
                            actor: format!("{ACTOR_PREFIX}NetworkPolicy {key}@{me}"),
                        });
                    }
                    reports.forget(&key);
                }
                Err(reason) => {
                    tracing::warn!(policy = %key, %reason, "cannot enforce this NetworkPolicy; what was in force for it stays");
                    reports.refused(object.as_ref(), &key, &reason).await;
                }
            }
        }
        for key in network_policies.keys().filter(|k| !wanted.contains(*k)) {
            if let Some((namespace, name)) = key.split_once('/') {
                writes.push(Write {
                    command: Command::DeleteNetworkPolicy {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    },
                    actor: format!("{ACTOR_PREFIX}policy-deleted@{me}"),
                });
            }
        }
        // NetworkPolicies as earlier releases stored them (translated into
        // Romana policies named NS/NAME/DIRECTION/I): replaced by the
        // entries above.
        for (name, policy) in &policies {
            if policy.format == PolicyFormat::Kubernetes {
                writes.push(Write {
                    command: Command::DeletePolicy { name: name.clone() },
                    actor: format!("{ACTOR_PREFIX}policy-migrated@{me}"),
                });
            }
        }
    }
    if let Some(items) = watches.romana_policies.ready() {
        // The seed's object: its namespace is its tenant.
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for object in &items {
            let Some((namespace, name)) = namespaced(&object.metadata) else {
                continue;
            };
            let key = format!("{namespace}/{name}");
            wanted.insert(key.clone());
            let document = serde_json::json!({
                "apiVersion": "romana.io/demo/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name},
                "spec": object.spec,
            });
            match formats::parse_tpr(namespace, &document.to_string()) {
                Ok(translated) => {
                    if translated.iter().any(|p| policies.get(&p.name) != Some(p)) {
                        writes.push(Write {
                            command: Command::ApplyPolicies {
                                policies: translated,
                            },
                            actor: format!("{ACTOR_PREFIX}RomanaNetworkPolicy {key}@{me}"),
                        });
                    }
                }
                Err(reason) => {
                    tracing::warn!(policy = %key, %reason, "cannot enforce this RomanaNetworkPolicy; what was in force for it stays");
                    reports.refused(object.as_ref(), &key, &reason).await;
                }
            }
        }
        for name in policies
            .iter()
            .filter(|(_, p)| p.format == PolicyFormat::ThirdPartyResource)
            .map(|(name, _)| name)
        {
            if !wanted.contains(name) {
                writes.push(Write {
                    command: Command::DeletePolicy { name: name.clone() },
                    actor: format!("{ACTOR_PREFIX}policy-deleted@{me}"),
                });
            }
        }
    }

    // Segments are named by pods' labels: create those a policy names in a
    // configured tenant before the policy (which needs them to exist).
    for (tenant, segment) in missing_segments(node, &writes) {
        if let Err(reason) =
            super::ensure_segment(node, &tenant, &segment, mirror_actor.clone()).await
        {
            tracing::warn!(tenant = %tenant, segment = %segment, %reason, "cannot create a segment a policy names");
        }
    }
    submit(node, writes).await;

    // Nodes: a host whose Kubernetes Node is gone leaves the membership,
    // its addresses released.
    if let Some(kube_nodes) = watches.nodes.ready() {
        let names: HashSet<String> = kube_nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if !names.is_empty() {
            for host in hosts.iter().filter(|h| !names.contains(*h)) {
                if host == me {
                    tracing::warn!(
                        "this node's own Kubernetes Node is gone; another leader will remove it"
                    );
                    continue;
                }
                tracing::info!(host = %host, "its Kubernetes Node is gone: removing it from the membership and releasing its addresses");
                let result = node
                    .remove_member(
                        host,
                        true,
                        format!("{ACTOR_PREFIX}node-deleted {host}@{me}"),
                        format!("k8s-node-deleted-{host}-{}", now_ms()),
                    )
                    .await;
                if let Err(e) = result {
                    tracing::warn!(host = %host, error = %e, "cannot remove a deleted node");
                }
            }
        }
    }
}

/// The segments of existing tenants that the policies in `writes` name and
/// that do not exist yet.
fn missing_segments(node: &Node, writes: &[Write]) -> BTreeSet<(String, String)> {
    use raft_store::entry::policy::{Peer, Target};
    let projection = node.shared.read();
    let tenants = &projection.state.tenants;
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    for write in writes {
        let Command::ApplyPolicies { policies } = &write.command else {
            continue;
        };
        for policy in policies {
            let targets = policy.applied_to.iter().filter_map(|t| match t {
                Target::Pods {
                    tenant,
                    segment: Some(segment),
                } => Some((tenant, segment)),
                _ => None,
            });
            let peers = policy.peers.iter().filter_map(|p| match p {
                Peer::Pods {
                    tenant,
                    segment: Some(segment),
                } => Some((tenant, segment)),
                _ => None,
            });
            for (tenant, segment) in targets.chain(peers) {
                if tenants
                    .get(tenant)
                    .is_some_and(|record| !record.segments.contains_key(segment))
                {
                    wanted.insert((tenant.clone(), segment.clone()));
                }
            }
        }
    }
    wanted
}

async fn submit(node: &Node, writes: Vec<Write>) {
    if writes.is_empty() {
        return;
    }
    let count = writes.len();
    let failures = futures::stream::iter(writes)
        .map(|write| async move {
            let description = write.command.to_string();
            match node.propose(write.command, write.actor, None).await {
                Ok(applied) => match applied.outcome {
                    Outcome::Applied(_) => 0,
                    Outcome::Rejected(reason) => {
                        tracing::warn!(request = %description, %reason, "the log refused a mirrored change");
                        1
                    }
                },
                Err(e) => {
                    tracing::warn!(request = %description, error = %e, "cannot write a mirrored change");
                    1
                }
            }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .fold(0usize, |sum, failed| async move { sum + failed })
        .await;
    tracing::debug!(count, failures, "mirrored changes written");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: &str) -> ContainerInterface {
        ContainerInterface {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn only_old_addresses_of_pods_that_are_gone_are_collected() {
        let now = 1_000_000;
        let grace = Duration::from_secs(60);
        let allocations = vec![
            (owner("alive"), "default".into(), "web".into(), 0),
            (owner("gone"), "default".into(), "old".into(), 0),
            // Gone from the list, but too recent: the mirror may lag.
            (owner("young"), "default".into(), "new".into(), now - 1_000),
        ];
        let existing = HashSet::from(["default/web".to_string()]);
        assert_eq!(
            stale_allocations(&allocations, &existing, now, grace),
            vec![owner("gone")]
        );
        assert!(stale_allocations(&allocations, &existing, 30_000, grace).is_empty());
    }

    #[test]
    fn pods_on_the_pod_network_are_mirrored_with_their_ports() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "kube-system", "name": "dns", "uid": "u1",
                         "labels": {"k8s-app": "kube-dns"}},
            "spec": {"nodeName": "host2", "containers": [{"name": "dns", "ports": [
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "containerPort": 53}]}]}
        }))
        .expect("a pod");
        let mirror = pod_mirror(&pod).expect("mirrored");
        assert_eq!(mirror.node.as_deref(), Some("host2"));
        assert_eq!(mirror.ports.len(), 2);
        assert!(mirror
            .ports
            .iter()
            .any(|p| p.protocol == PortProtocol::Udp && p.port == 53));
        let host_network: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "kube-system", "name": "romana-node-x", "uid": "u2"},
            "spec": {"hostNetwork": true, "containers": [{"name": "c"}]}
        }))
        .expect("a pod");
        assert!(
            pod_mirror(&host_network).is_none(),
            "host-network pods have no address of ours"
        );
    }
}

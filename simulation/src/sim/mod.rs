//! The deterministic simulation: a Romana cluster in one process, on
//! turmoil's simulated network and clock, driving the real `raft-store`
//! (entry model, projection, openraft storage on the in-memory backend,
//! the HTTP Raft transport) while faults are injected on purpose.
//!
//! A run is defined by its seed: turmoil's network and scheduling, the
//! workload, the faults, and openraft's election timeouts (through
//! [`raft_store::runtime::seed_thread_rng`]) all draw from it. Every step the
//! invariants are checked ([`invariants`]); a violation names the seed, and
//! `cargo run -p simulation --release -- --seed S` replays the run.
//!
//! - [`net`]: the Raft transport over the simulated network.
//! - [`workload`]: what the clients ask for.
//! - [`invariants`]: what must hold, one function per property.
//! - [`faults`]: bugs put in on purpose (feature `broken-allocator`), to
//!   show that the invariants catch them.

pub mod faults;
pub mod invariants;
pub mod net;
pub mod scale;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{Config, SnapshotPolicy};
use raft_store::state::AppliedRequest;
use raft_store::store::{open_stores_with, MemoryBackend, SharedState};
use raft_store::transport::{raft_routes, PeerNetwork};
use raft_store::{LogPayload, NodeId, NodeInfo, Raft};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub use invariants::Violation;

/// How the nodes apply requests: the production projection, or with
/// `--features broken-allocator` a deliberately broken one.
#[cfg(not(feature = "broken-allocator"))]
type Applier = raft_store::store::ClusterStateApply;
#[cfg(feature = "broken-allocator")]
type Applier = faults::BrokenAllocator;

/// Port every simulated node serves Raft on.
pub(crate) const RAFT_PORT: u16 = 9000;
/// Longest a client waits for one write, in simulated time.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Simulated time between two fault decisions.
const FAULT_INTERVAL_STEPS: u64 = 200;
/// Simulated time between two invariant checks.
const CHECK_INTERVAL_STEPS: u64 = 50;
/// After the faults heal, every live node must converge within this.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(20);
/// Largest run, in simulated time, before the workload must have finished.
const MAX_SIMULATED: Duration = Duration::from_secs(600);

/// What one run does.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Nodes (voters + learners).
    pub nodes: usize,
    /// Voters among them (3 to 7); the rest join as learners, and the
    /// workload swaps voters and learners while faults go on.
    pub voters: usize,
    /// Requests the client makes.
    pub operations: usize,
    /// Whether faults are injected.
    pub faults: bool,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub operations: usize,
    pub acknowledged: usize,
    pub faults: usize,
    pub simulated: Duration,
    pub real: Duration,
    pub violations: Vec<Violation>,
    /// SHA-256 of the event trace: the same seed gives the same digest.
    pub trace_digest: String,
    /// The event trace: faults, heals, and every request's fate.
    pub trace: Vec<String>,
}

/// Shared between the node hosts, the client and the driver.
#[derive(Default)]
pub struct Registry {
    /// "Durable" storage per node: survives a crash of its host.
    pub backends: BTreeMap<String, MemoryBackend>,
    /// The running Raft of each node (replaced when the host restarts).
    pub rafts: BTreeMap<String, Raft>,
    /// Each node's projection.
    pub states: BTreeMap<String, SharedState>,
    /// Requests the cluster acknowledged, in order.
    pub acknowledged: Vec<(raft_store::ClusterRequest, AppliedRequest)>,
    /// The event trace.
    pub trace: Vec<String>,
    /// The client has formed the cluster (first entries, learners added):
    /// faults start from here.
    pub bootstrapped: bool,
}

pub type SharedRegistry = Arc<Mutex<Registry>>;

pub fn lock(registry: &SharedRegistry) -> std::sync::MutexGuard<'_, Registry> {
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn node_name(index: usize) -> String {
    format!("n{}", index + 1)
}

pub(crate) fn raft_config() -> Arc<Config> {
    let config = Config {
        cluster_name: "romana-sim".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Keep the whole log: the replay invariant reads it from index 1.
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    };
    Arc::new(
        config
            .validate()
            .expect("the simulation's Raft config is valid"),
    )
}

/// The future of node `index`'s host: open its durable store, start Raft
/// (node 1 initialises the cluster on its first start), serve peers.
pub(crate) async fn node_host(
    registry: SharedRegistry,
    index: usize,
    voters: usize,
) -> turmoil::Result {
    let name = node_name(index);
    let node_id = index as NodeId + 1;
    let backend = lock(&registry)
        .backends
        .entry(name.clone())
        .or_default()
        .clone();
    let (log, state_machine) =
        open_stores_with(backend, Applier::default()).map_err(|e| e.to_string())?;
    let shared = state_machine.shared();
    let network = PeerNetwork::with_connector(node_id, net::SimConnector, "http");
    let raft = Raft::new(node_id, raft_config(), network, log, state_machine)
        .await
        .map_err(|e| e.to_string())?;
    {
        let mut registry = lock(&registry);
        registry.rafts.insert(name.clone(), raft.clone());
        registry.states.insert(name.clone(), shared);
    }
    if node_id == 1 && !raft.is_initialized().await.map_err(|e| e.to_string())? {
        let members: BTreeMap<NodeId, NodeInfo> = (0..voters)
            .map(|i| {
                let peer = node_name(i);
                let address = format!("{}:{RAFT_PORT}", turmoil::lookup(peer.as_str()));
                (
                    i as NodeId + 1,
                    NodeInfo {
                        name: peer,
                        address,
                    },
                )
            })
            .collect();
        raft.initialize(members).await.map_err(|e| e.to_string())?;
    }
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
    axum::serve(net::SimListener(listener), raft_routes(raft, node_id)).await?;
    Ok(())
}

/// The Raft of the node that believes it leads, if any.
pub fn leader(registry: &SharedRegistry) -> Option<Raft> {
    lock(registry)
        .rafts
        .values()
        .find(|raft| raft.metrics().borrow().state == openraft::ServerState::Leader)
        .cloned()
}

/// Writes one request through whoever leads; the outcome once committed.
pub async fn submit(
    registry: &SharedRegistry,
    request: raft_store::ClusterRequest,
) -> Result<AppliedRequest, String> {
    let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let leader = leader(registry);
        if let Some(raft) = leader {
            let payload = LogPayload {
                requests: vec![request.clone()],
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A failed or timed-out attempt is retried on whoever leads next.
            if let Ok(Ok(written)) =
                tokio::time::timeout(remaining, raft.client_write(payload)).await
            {
                return written
                    .data
                    .applied
                    .into_iter()
                    .next()
                    .ok_or_else(|| "no outcome for the request".to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("not committed in time".into())
}

/// The fault currently in force.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    Partition(String, String),
    /// One node cut off from all the others (e.g. the leader).
    Isolation(String, Vec<String>),
    OneWay(String, String),
    /// Messages held (delayed) until healed.
    Hold(String, String),
    Crash(String),
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> RunReport {
    let started = Instant::now();
    raft_store::runtime::seed_thread_rng(config.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .simulation_duration(MAX_SIMULATED + CONVERGENCE_BOUND * 2)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();
    let registry: SharedRegistry = Arc::default();
    let names: Vec<String> = (0..config.nodes).map(node_name).collect();
    for index in 0..config.nodes {
        let registry = registry.clone();
        let voters = config.voters;
        sim.host(node_name(index).as_str(), move || {
            node_host(registry.clone(), index, voters)
        });
    }
    let client_registry = registry.clone();
    let workload_seed = config.seed.rotate_left(17) ^ 0x5eed;
    let operations = config.operations;
    let node_names = names.clone();
    let voters = config.voters;
    sim.client("client", async move {
        workload::run(
            client_registry,
            workload_seed,
            operations,
            node_names,
            voters,
        )
        .await;
        Ok(())
    });

    let mut faults_rng = StdRng::seed_from_u64(config.seed ^ 0xfa17);
    let mut violations = Vec::new();
    let mut faults_injected = 0;
    let mut active: Vec<Fault> = Vec::new();
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    let mut steps: u64 = 0;
    let mut finished = false;
    while !finished && sim.elapsed() < MAX_SIMULATED {
        match sim.step() {
            Ok(done) => finished = done,
            Err(e) => {
                violations.push(Violation::SimulationError(e.to_string()));
                break;
            }
        }
        steps += 1;
        if config.faults
            && steps.is_multiple_of(FAULT_INTERVAL_STEPS)
            && lock(&registry).bootstrapped
        {
            let event = if active.is_empty() || faults_rng.gen_bool(0.5) {
                inject_fault(&mut sim, &mut faults_rng, &names, &mut active).map(|f| {
                    faults_injected += 1;
                    format!("fault {f:?}")
                })
            } else {
                heal_one(&mut sim, &mut active).map(|f| format!("heal {f:?}"))
            };
            if let Some(event) = event {
                lock(&registry)
                    .trace
                    .push(format!("{}ms {event}", sim.elapsed().as_millis()));
            }
        }
        if steps.is_multiple_of(CHECK_INTERVAL_STEPS) {
            violations.extend(invariants::check_step(&registry, &mut hashes));
        }
        if violations.len() > 20 {
            break;
        }
    }
    if !finished && violations.is_empty() {
        violations.push(Violation::WorkloadUnfinished);
    }
    // Fault-free phase: heal everything; every live node must converge.
    while !active.is_empty() {
        heal_one(&mut sim, &mut active);
    }
    let heal_started = sim.elapsed();
    let mut converged = false;
    while sim.elapsed() - heal_started < CONVERGENCE_BOUND {
        if sim.step().is_err() {
            break;
        }
        if invariants::converged(&registry) {
            converged = true;
            break;
        }
    }
    if !converged {
        violations.push(Violation::NoConvergence {
            within: CONVERGENCE_BOUND,
        });
    }
    violations.extend(invariants::check_step(&registry, &mut hashes));
    violations.extend(invariants::check_final(&registry));

    let registry = lock(&registry);
    let mut digest = Sha256::new();
    for line in &registry.trace {
        digest.update(line.as_bytes());
        digest.update(b"\n");
    }
    RunReport {
        seed: config.seed,
        operations: config.operations,
        acknowledged: registry.acknowledged.len(),
        faults: faults_injected,
        simulated: sim.elapsed(),
        real: started.elapsed(),
        violations,
        trace_digest: hex::encode(digest.finalize()),
        trace: registry.trace.clone(),
    }
}

fn inject_fault(
    sim: &mut turmoil::Sim<'_>,
    rng: &mut StdRng,
    names: &[String],
    active: &mut Vec<Fault>,
) -> Option<Fault> {
    // At most one crashed node at a time, so that a quorum can form again.
    let pick = |rng: &mut StdRng| names[rng.gen_range(0..names.len())].clone();
    let fault = match rng.gen_range(0..5) {
        0 => {
            let (a, b) = (pick(rng), pick(rng));
            if a == b {
                return None;
            }
            sim.partition(a.as_str(), b.as_str());
            Fault::Partition(a, b)
        }
        1 => {
            let a = pick(rng);
            let others: Vec<String> = names.iter().filter(|n| **n != a).cloned().collect();
            for other in &others {
                sim.partition(a.as_str(), other.as_str());
            }
            Fault::Isolation(a, others)
        }
        2 => {
            let (a, b) = (pick(rng), pick(rng));
            if a == b {
                return None;
            }
            sim.partition_oneway(a.as_str(), b.as_str());
            Fault::OneWay(a, b)
        }
        3 => {
            let (a, b) = (pick(rng), pick(rng));
            if a == b {
                return None;
            }
            // Delay rather than drop: hold, released when healed.
            sim.hold(a.as_str(), b.as_str());
            Fault::Hold(a, b)
        }
        _ => {
            if active.iter().any(|f| matches!(f, Fault::Crash(_))) {
                return None;
            }
            let a = pick(rng);
            sim.crash(a.as_str());
            Fault::Crash(a)
        }
    };
    active.push(fault.clone());
    Some(fault)
}

fn heal_one(sim: &mut turmoil::Sim<'_>, active: &mut Vec<Fault>) -> Option<Fault> {
    let fault = active.pop()?;
    match &fault {
        Fault::Partition(a, b) => sim.repair(a.as_str(), b.as_str()),
        Fault::OneWay(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
        Fault::Hold(a, b) => sim.release(a.as_str(), b.as_str()),
        Fault::Isolation(a, others) => {
            for other in others {
                sim.repair(a.as_str(), other.as_str());
            }
        }
        Fault::Crash(a) => sim.bounce(a.as_str()),
    }
    Some(fault)
}

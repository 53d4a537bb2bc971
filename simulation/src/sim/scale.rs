//! The scale run: many nodes (a few voters, the rest learners holding the
//! full log), a burst of allocations, and how long the whole cluster takes
//! to converge — in simulated time, and in real time per simulated second.

use std::time::{Duration, Instant};

use raft_store::entry::{AllocationRequest, ContainerInterface};
use raft_store::layout::AddressLayout;
use raft_store::{ClusterRequest, Command, LogPayload, NodeId, NodeInfo, RequestMeta};

use super::{invariants, leader, lock, node_host, node_name, submit, SharedRegistry, RAFT_PORT};

/// Requests per log entry in the burst (the node's batcher takes up to 256).
const BURST_ENTRY_REQUESTS: usize = 250;
/// Longest the scale run may take in simulated time.
const SCALE_LIMIT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
pub struct ScaleReport {
    pub nodes: usize,
    pub voters: usize,
    pub allocations: usize,
    /// From the first burst entry until every node has applied everything.
    pub converged_after: Option<Duration>,
    pub simulated: Duration,
    pub real: Duration,
}

fn meta(sequence: u64) -> RequestMeta {
    RequestMeta {
        actor: "client:scale".into(),
        request_id: format!("s{sequence}"),
        timestamp_ms: sequence,
    }
}

/// Writes a whole batch as one entry through the leader.
async fn submit_batch(registry: &SharedRegistry, requests: Vec<ClusterRequest>) -> bool {
    for _ in 0..100 {
        let leader = leader(registry);
        if let Some(raft) = leader {
            let payload = LogPayload {
                requests: requests.clone(),
            };
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(10), raft.client_write(payload)).await
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn run(seed: u64, nodes: usize, voters: usize, allocations: usize) -> ScaleReport {
    let started = Instant::now();
    raft_store::runtime::seed_thread_rng(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SCALE_LIMIT)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build();
    let registry: SharedRegistry = SharedRegistry::default();
    for index in 0..nodes {
        let registry = registry.clone();
        sim.host(node_name(index).as_str(), move || {
            node_host(registry.clone(), index, voters)
        });
    }
    let burst_started = std::sync::Arc::new(std::sync::Mutex::new(None::<Duration>));
    let client_registry = registry.clone();
    let client_burst = burst_started.clone();
    sim.client("client", async move {
        let registry = client_registry;
        let mut sequence = 0u64;
        let mut next = || {
            sequence += 1;
            sequence
        };
        let init = Command::InitCluster {
            cluster_name: "scale".into(),
            voters_target: voters as u8,
            layout: AddressLayout::default(),
        };
        submit(&registry, ClusterRequest::new(meta(next()), init)).await?;
        // Learners: every node past the voters, added through the leader.
        for index in voters..nodes {
            let name = node_name(index);
            let address = format!("{}:{RAFT_PORT}", turmoil::lookup(name.as_str()));
            loop {
                let leader = leader(&registry);
                if let Some(raft) = leader {
                    let info = NodeInfo {
                        name: name.clone(),
                        address: address.clone(),
                    };
                    if raft
                        .add_learner(index as NodeId + 1, info, false)
                        .await
                        .is_ok()
                    {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let registrations: Vec<ClusterRequest> = (0..nodes)
            .map(|index| {
                let name = node_name(index);
                let address = format!("{}:{RAFT_PORT}", turmoil::lookup(name.as_str()));
                ClusterRequest::new(
                    meta(next()),
                    Command::RegisterNode {
                        node_id: index as NodeId + 1,
                        name,
                        address,
                    },
                )
            })
            .collect();
        for chunk in registrations.chunks(BURST_ENTRY_REQUESTS) {
            submit_batch(&registry, chunk.to_vec()).await;
        }
        submit(
            &registry,
            ClusterRequest::new(meta(next()), Command::CreateTenant { name: "t1".into() }),
        )
        .await?;
        *client_burst.lock().unwrap_or_else(|p| p.into_inner()) = Some(turmoil::elapsed());
        let burst: Vec<ClusterRequest> = (0..allocations)
            .map(|i| {
                ClusterRequest::new(
                    meta(next()),
                    Command::AllocateAddress(AllocationRequest {
                        host: node_name(i % nodes),
                        tenant: "t1".into(),
                        segment: "default".into(),
                        owner: ContainerInterface {
                            container_id: format!("burst{i}"),
                            ifname: "eth0".into(),
                        },
                        pod_namespace: None,
                        pod_name: None,
                        network: None,
                    }),
                )
            })
            .collect();
        for chunk in burst.chunks(BURST_ENTRY_REQUESTS) {
            if !submit_batch(&registry, chunk.to_vec()).await {
                return Err("a burst entry was not committed".into());
            }
        }
        Ok(())
    });
    let mut client_done = false;
    let mut converged_after = None;
    while sim.elapsed() < SCALE_LIMIT {
        match sim.step() {
            Ok(done) => client_done |= done,
            Err(e) => {
                eprintln!("simulation error: {e}");
                break;
            }
        }
        if client_done && sim.elapsed().as_millis() % 10 == 0 && invariants::converged(&registry) {
            let all_there = lock(&registry).states.len() == nodes;
            if all_there {
                let start = burst_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_default();
                converged_after = Some(sim.elapsed().saturating_sub(start));
                break;
            }
        }
    }
    ScaleReport {
        nodes,
        voters,
        allocations,
        converged_after,
        simulated: sim.elapsed(),
        real: started.elapsed(),
    }
}

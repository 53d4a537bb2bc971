//! What the simulated client asks for: the cluster's first entries, then a
//! seeded mix of tenants, allocations, releases, policies and notes on
//! random hosts. Every request has a unique id; what the cluster
//! acknowledged is recorded for the invariants.

use std::time::Duration;

use raft_store::entry::policy::{Direction, Peer, Policy, PolicyFormat, Protocol, Rule, Target};
use raft_store::entry::{AllocationRequest, ContainerInterface};
use raft_store::layout::AddressLayout;
use raft_store::{ClusterRequest, Command, NodeId, RequestMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{leader, lock, submit, SharedRegistry};

const TENANTS: [&str; 3] = ["t1", "t2", "t3"];
/// Container ids the workload draws from: few, so that allocations,
/// repeats and releases meet.
const CONTAINERS: u32 = 40;
/// Attempts (100 ms apart) to add a learner before the client gives up.
const MAX_LEARNER_ATTEMPTS: u32 = 600;

fn request(sequence: u64, command: Command) -> ClusterRequest {
    ClusterRequest::new(
        RequestMeta {
            actor: "client:simulation".into(),
            request_id: format!("r{sequence}"),
            // A logical timestamp: apply never reads a clock, and neither
            // does the simulation's client.
            timestamp_ms: sequence,
        },
        command,
    )
}

fn random_command(rng: &mut StdRng, nodes: &[String]) -> Command {
    let tenant = TENANTS[rng.gen_range(0..TENANTS.len())].to_string();
    let owner = ContainerInterface {
        container_id: format!("c{}", rng.gen_range(0..CONTAINERS)),
        ifname: "eth0".into(),
    };
    match rng.gen_range(0..100) {
        0..=54 => Command::AllocateAddress(AllocationRequest {
            host: nodes[rng.gen_range(0..nodes.len())].clone(),
            tenant,
            segment: "default".into(),
            owner,
            pod_namespace: None,
            pod_name: None,
            network: None,
        }),
        55..=84 => Command::ReleaseAddress(owner),
        85..=89 => Command::ApplyPolicies {
            policies: vec![Policy {
                name: format!("p{}", rng.gen_range(0..4)),
                description: String::new(),
                direction: Direction::Ingress,
                applied_to: vec![Target::Pods {
                    tenant,
                    segment: None,
                }],
                peers: vec![Peer::Pods {
                    tenant: TENANTS[rng.gen_range(0..TENANTS.len())].to_string(),
                    segment: None,
                }],
                rules: vec![Rule {
                    protocol: Protocol::Tcp,
                    ports: vec![rng.gen_range(1..1024)],
                    ..Rule::any()
                }],
                isolates: false,
                format: PolicyFormat::Romana,
            }],
        },
        90..=94 => Command::DeletePolicy {
            name: format!("p{}", rng.gen_range(0..4)),
        },
        _ => Command::Note {
            text: format!("note {}", rng.gen::<u32>()),
        },
    }
}

async fn write(registry: &SharedRegistry, sequence: u64, command: Command) {
    let request = request(sequence, command);
    let label = request.command.to_string();
    match submit(registry, request.clone()).await {
        Ok(applied) => {
            let mut registry = lock(registry);
            registry.trace.push(format!(
                "ack r{sequence} at {}.{} {label}: {}",
                applied.index, applied.position, applied.outcome
            ));
            registry.acknowledged.push((request, applied));
        }
        Err(e) => lock(registry)
            .trace
            .push(format!("fail r{sequence} {label}: {e}")),
    }
}

/// Adds the nodes past the voters as learners, through the leader.
async fn add_learners(registry: &SharedRegistry, nodes: &[String], voters: usize) {
    for (index, name) in nodes.iter().enumerate().skip(voters) {
        let info = raft_store::NodeInfo {
            name: name.clone(),
            address: format!("{}:9000", turmoil::lookup(name.as_str())),
        };
        for attempt in 0..MAX_LEARNER_ATTEMPTS {
            if attempt + 1 == MAX_LEARNER_ATTEMPTS {
                lock(registry)
                    .trace
                    .push(format!("learner {name} NOT added"));
            }
            if let Some(raft) = leader(registry) {
                let added = tokio::time::timeout(
                    Duration::from_secs(3),
                    raft.add_learner(index as NodeId + 1, info.clone(), false),
                )
                .await;
                if let Ok(Ok(_)) = added {
                    lock(registry).trace.push(format!("learner {name} added"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Swaps a random voter for a random learner (a membership change while
/// faults go on); the outcome goes in the trace.
async fn swap_voter(registry: &SharedRegistry, rng: &mut StdRng) {
    let Some(raft) = leader(registry) else { return };
    let membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    if voters.is_empty() || learners.is_empty() {
        return;
    }
    let out = voters[rng.gen_range(0..voters.len())];
    let inn = learners[rng.gen_range(0..learners.len())];
    let new_voters: std::collections::BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| *v != out)
        .chain([inn])
        .collect();
    let change = openraft::ChangeMembers::ReplaceAllVoters(new_voters);
    let result =
        tokio::time::timeout(Duration::from_secs(5), raft.change_membership(change, true)).await;
    let outcome = match result {
        Ok(Ok(_)) => "done".to_string(),
        Ok(Err(e)) => format!("refused: {e}"),
        Err(_) => "timed out".to_string(),
    };
    lock(registry).trace.push(format!(
        "membership: voter {out} -> learner, learner {inn} -> voter: {outcome}"
    ));
}

/// The client: bootstraps the cluster's state, then `operations` requests.
pub async fn run(
    registry: SharedRegistry,
    seed: u64,
    operations: usize,
    nodes: Vec<String>,
    voters: usize,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sequence = 0u64;
    let mut next = || {
        sequence += 1;
        sequence
    };
    write(
        &registry,
        next(),
        Command::InitCluster {
            cluster_name: "simulation".into(),
            voters_target: nodes.len() as u8,
            layout: AddressLayout::default(),
        },
    )
    .await;
    for (i, name) in nodes.iter().enumerate() {
        let address = format!("{}:9000", turmoil::lookup(name.as_str()));
        let command = Command::RegisterNode {
            node_id: i as NodeId + 1,
            name: name.clone(),
            address,
        };
        write(&registry, next(), command).await;
    }
    for tenant in TENANTS {
        write(
            &registry,
            next(),
            Command::CreateTenant {
                name: tenant.into(),
            },
        )
        .await;
    }
    add_learners(&registry, &nodes, voters).await;
    lock(&registry).bootstrapped = true;
    for _ in 0..operations {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..60))).await;
        if nodes.len() > voters && rng.gen_range(0..100) < 4 {
            swap_voter(&registry, &mut rng).await;
            continue;
        }
        let command = random_command(&mut rng, &nodes);
        write(&registry, next(), command).await;
    }
}

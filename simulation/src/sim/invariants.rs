//! What must hold in every run. One function per property; violations are
//! typed, and each names where it was found.
//!
//! - no address is held twice, and the projection's structural invariants
//!   hold on every node, at every check (`ClusterState::check_invariants`);
//! - replicas at the same applied index have equal state hashes;
//! - every acknowledged write is present, with its acknowledged outcome,
//!   after recovery;
//! - each node's projection equals a replay of its own log from scratch;
//! - after the faults heal, every live node converges within a bound.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::EntryPayload;
use raft_store::state::ClusterState;
use raft_store::store::{KvBackend, Tree};
use raft_store::TypeConfig;

use super::{lock, SharedRegistry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// turmoil reported an error (a host's future failed).
    SimulationError(String),
    /// The client did not finish its requests in the simulated time allowed.
    WorkloadUnfinished,
    /// The projection broke one of its own invariants (an address held
    /// twice, an allocation outside its block, ...).
    StateInvariant { node: String, reason: String },
    /// Two replicas disagree at the same applied index.
    HashMismatch {
        index: u64,
        node: String,
        expected: String,
        found: String,
    },
    /// An acknowledged write is missing, or has another outcome, after recovery.
    LostWrite { request_id: String, detail: String },
    /// A node's projection differs from a replay of its log.
    ReplayMismatch { node: String, index: u64 },
    /// Live nodes still disagree this long after the faults healed.
    NoConvergence { within: Duration },
    /// What a node's reconciler would install is wrong: not one route per
    /// other host, or isolation rules that differ from another node's.
    Dataplane { node: String, reason: String },
}

/// Structural invariants and equal hashes at equal indexes; `hashes`
/// remembers every (index, hash) seen in the run.
pub fn check_step(registry: &SharedRegistry, hashes: &mut BTreeMap<u64, String>) -> Vec<Violation> {
    let registry = lock(registry);
    let mut violations = Vec::new();
    for (node, shared) in &registry.states {
        let projection = shared.read();
        if let Err(reason) = projection.state.check_invariants() {
            violations.push(Violation::StateInvariant {
                node: node.clone(),
                reason: reason.to_string(),
            });
        }
        let index = projection.applied_index();
        let hash = projection.state.content_hash();
        match hashes.get(&index) {
            Some(expected) if *expected != hash => violations.push(Violation::HashMismatch {
                index,
                node: node.clone(),
                expected: expected.clone(),
                found: hash,
            }),
            Some(_) => {}
            None => {
                hashes.insert(index, hash);
            }
        }
    }
    violations
}

/// Every node applied the same index, with the same hash.
pub fn converged(registry: &SharedRegistry) -> bool {
    let registry = lock(registry);
    let views: Vec<(u64, String)> = registry
        .states
        .values()
        .map(|shared| {
            let projection = shared.read();
            (projection.applied_index(), projection.state.content_hash())
        })
        .collect();
    !views.is_empty() && views.iter().all(|v| *v == views[0]) && views[0].0 > 0
}

/// The fake dataplane: what each node's reconciler would install, from its
/// projection (routes to the other hosts, the isolation chains).
fn check_dataplane(registry: &super::Registry) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut first_chains = None;
    for (node, shared) in &registry.states {
        let projection = shared.read();
        let state = &projection.state;
        let routes = romana_node::dataplane::routes::desired_routes(state, node);
        let others = state.nodes.keys().filter(|n| *n != node).count();
        if state.nodes.contains_key(node) && routes.len() != others {
            violations.push(Violation::Dataplane {
                node: node.clone(),
                reason: format!("{} routes for {others} other hosts", routes.len()),
            });
        }
        let chains = romana_node::dataplane::firewall::desired(state, None, true).map(|d| d.chains);
        match &first_chains {
            None => first_chains = Some(chains),
            Some(first) if *first != chains => violations.push(Violation::Dataplane {
                node: node.clone(),
                reason: "isolation rules differ from another node's".into(),
            }),
            Some(_) => {}
        }
    }
    violations
}

/// After the run: acknowledged writes present, projections equal to a
/// replay of each node's own log, and the dataplane each would install.
pub fn check_final(registry: &SharedRegistry) -> Vec<Violation> {
    let registry = lock(registry);
    let mut violations = check_dataplane(&registry);
    let Some(shared) = registry.states.values().next() else {
        return violations;
    };
    {
        let projection = shared.read();
        for (request, applied) in &registry.acknowledged {
            match projection.state.requests.get(&request.meta.request_id) {
                Some(found) if found == applied => {}
                Some(found) => violations.push(Violation::LostWrite {
                    request_id: request.meta.request_id.clone(),
                    detail: format!("acknowledged as {applied:?}, the state says {found:?}"),
                }),
                None => violations.push(Violation::LostWrite {
                    request_id: request.meta.request_id.clone(),
                    detail: "not in the state".into(),
                }),
            }
        }
    }
    for (node, backend) in &registry.backends {
        let Some(shared) = registry.states.get(node) else {
            continue;
        };
        let projection = shared.read();
        let applied = projection.applied_index();
        let Ok(pairs) = backend.range(Tree::Log, &0u64.to_be_bytes(), None) else {
            continue;
        };
        let mut replayed = ClusterState::default();
        let mut last = 0;
        for (_, value) in pairs {
            let Ok(entry) = bincode::deserialize::<openraft::Entry<TypeConfig>>(&value) else {
                continue;
            };
            if entry.log_id.index > applied {
                break;
            }
            if let EntryPayload::Normal(payload) = &entry.payload {
                for (position, request) in payload.requests.iter().enumerate() {
                    replayed.apply(entry.log_id.index, position as u32, request);
                }
            }
            last = entry.log_id.index;
        }
        if last == applied && replayed.content_hash() != projection.state.content_hash() {
            violations.push(Violation::ReplayMismatch {
                node: node.clone(),
                index: applied,
            });
        }
    }
    violations
}

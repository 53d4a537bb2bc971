//! Membership: admitting a node (learner first, then its host record),
//! removing one, and the controller that keeps the cluster whole while this
//! node leads (first entry, missing host records, promotion of caught-up
//! learners to keep an odd number of voters).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use raft_store::entry::validate_node_address;
use raft_store::entry::validate_node_name;
use raft_store::state::{AppliedRequest, Rejection};
use raft_store::{Command, NodeId, NodeInfo};
use tokio::sync::watch;

use super::Node;
use crate::api_error::ApiError;

/// How often the controller looks at the cluster even without a change.
const CONTROLLER_TICK: Duration = Duration::from_millis(300);

/// A learner within this many entries of the leader's log counts as caught
/// up and may be promoted to voter.
const CATCH_UP_SLACK_ENTRIES: u64 = 100;

impl Node {
    /// Add a new node as a learner and record it. Leader only.
    pub async fn admit(
        &self,
        node_id: NodeId,
        name: String,
        address: String,
    ) -> Result<AppliedRequest, ApiError> {
        {
            // Check what `apply` would refuse before Raft's membership is
            // touched: a learner whose registration is then rejected would
            // be a member without a host record.
            let projection = self.shared.read();
            let layout = projection.state.layout().ok_or_else(|| {
                ApiError::Unavailable("the cluster is not initialised yet".into())
            })?;
            validate_node_name(&name).map_err(ApiError::BadRequest)?;
            validate_node_address(layout, &address).map_err(ApiError::BadRequest)?;
            if let Some(record) = projection.state.nodes.get(&name) {
                if record.node_id != node_id {
                    return Err(ApiError::Conflict(format!(
                        "node name {name:?} is already held by node id {}; if that node's data was wiped, remove it first with `romanactl node remove {name}`",
                        record.node_id
                    )));
                }
            }
        }
        let node = NodeInfo {
            name: name.clone(),
            address: address.clone(),
        };
        self.raft
            .add_learner(node_id, node, false)
            .await
            .map_err(|e| match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                    ApiError::Misdirected("not the leader".into())
                }
                e => ApiError::Unavailable(format!("cannot add learner: {e}")),
            })?;
        self.propose(
            Command::RegisterNode {
                node_id,
                name,
                address,
            },
            format!("node:{}", self.config.name),
            Some(format!("register-{node_id}")),
        )
        .await
    }

    /// Remove a node from Raft's membership and from the state. Leader only.
    /// `request_id` is the removal's idempotency key: a fresh one per
    /// operator action, so a removal refused once (addresses still held)
    /// can be tried again (with --force) instead of replaying the refusal.
    pub async fn remove_member(
        &self,
        name: &str,
        force: bool,
        actor: String,
        request_id: String,
    ) -> Result<AppliedRequest, ApiError> {
        // Refuse before touching Raft's membership what `apply` would refuse.
        let held = {
            let projection = self.shared.read();
            projection
                .state
                .allocations
                .values()
                .filter(|a| a.host == name)
                .count()
        };
        if held > 0 && !force {
            return Err(ApiError::from_rejection(&Rejection::HostHasAddresses {
                name: name.to_string(),
                count: held,
            }));
        }
        let (node_id, is_voter, voter_count) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let found = membership
                .nodes()
                .find(|(_, node)| node.name == name)
                .map(|(id, _)| *id);
            let recorded = self.shared.read().state.nodes.get(name).map(|r| r.node_id);
            let Some(node_id) = found.or(recorded) else {
                return Err(ApiError::NotFound(format!("no node named {name:?}")));
            };
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            (node_id, voters.contains(&node_id), voters.len())
        };
        if is_voter && voter_count == 1 {
            return Err(ApiError::Conflict(format!(
                "{name} is the only voter; removing it would leave no cluster"
            )));
        }
        if self.member_address(node_id).is_some() {
            let change = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            self.raft
                .change_membership(change, false)
                .await
                .map_err(|e| match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                        ApiError::Misdirected("not the leader".into())
                    }
                    e => ApiError::Unavailable(format!("membership change failed: {e}")),
                })?;
        }
        self.propose(
            Command::RemoveNode {
                name: name.to_string(),
                force,
            },
            actor,
            Some(request_id),
        )
        .await
    }
}

/// Leader housekeeping, on every node (it acts only while leading):
/// - a cluster without its first entry gets one (after a crash between
///   Raft's initialisation and that entry);
/// - every Raft member has a node record (after a crash between adding a
///   learner and recording it);
/// - caught-up learners are promoted while voters are below the target,
///   keeping the voter count odd.
pub async fn controller(node: Node, mut stop: watch::Receiver<bool>) {
    let mut metrics_rx = node.raft.metrics();
    let mut layout_checked = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(CONTROLLER_TICK) => {}
            _ = metrics_rx.changed() => {}
        }
        if !layout_checked {
            layout_checked = check_layout_flags(&node);
        }
        if let Err(e) = control_once(&node).await {
            tracing::debug!(error = %e, "controller step");
        }
    }
}

/// Once the cluster's layout is known: warn if this node was given layout
/// flags that differ from it (they only apply when creating a cluster).
/// Returns whether the check could be made.
fn check_layout_flags(node: &Node) -> bool {
    let projection = node.shared.read();
    let Some(layout) = projection.state.layout() else {
        return false;
    };
    if node.config.layout_explicit && *layout != node.config.layout {
        tracing::warn!(
            cluster = %layout,
            flags = %node.config.layout,
            "ignoring this node's --cidr/--*-bits: the cluster's address layout was fixed when it was created and cannot change"
        );
    }
    true
}

fn state_request_unseen(node: &Node, request_id: &str) -> bool {
    node.shared.read().state.requests.get(request_id).is_none()
}

async fn control_once(node: &Node) -> Result<(), ApiError> {
    let metrics = node.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Ok(());
    }
    let applied = metrics.last_applied.map(|id| id.index).unwrap_or(0);
    if metrics.last_log_index.is_some_and(|last| applied < last) {
        // Not caught up with our own log yet: the state may be stale.
        return Ok(());
    }
    let membership = metrics.membership_config.membership().clone();
    let (initialised, voters_target, unrecorded) = {
        let projection = node.shared.read();
        let state = &projection.state;
        // Members without a host record, whose registration has not been
        // tried yet: a rejected one is not proposed again and again.
        let unrecorded: Vec<(NodeId, NodeInfo)> = membership
            .nodes()
            .filter(|(id, _)| state.node_by_id(**id).is_none())
            .filter(|(id, _)| state.requests.get(&format!("register-{id}")).is_none())
            .map(|(id, info)| (*id, info.clone()))
            .collect();
        (
            state.cluster.is_some(),
            state
                .cluster
                .as_ref()
                .map(|c| c.voters_target)
                .unwrap_or(node.config.voters),
            unrecorded,
        )
    };
    let actor = format!("node:{}", node.config.name);
    if !initialised && state_request_unseen(node, "init-cluster") {
        node.propose(
            Command::InitCluster {
                cluster_name: "romana".into(),
                voters_target: node.config.voters,
                layout: node.config.layout,
            },
            actor.clone(),
            Some("init-cluster".into()),
        )
        .await?;
    }
    for (node_id, info) in unrecorded {
        node.propose(
            Command::RegisterNode {
                node_id,
                name: info.name,
                address: info.address,
            },
            actor.clone(),
            Some(format!("register-{node_id}")),
        )
        .await?;
    }
    if membership.get_joint_config().len() > 1 {
        return Ok(());
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let target = usize::from(voters_target);
    if voters.len() >= target {
        return Ok(());
    }
    let last_index = metrics.last_log_index.unwrap_or(0);
    let replication = metrics.replication.clone().unwrap_or_default();
    let caught_up: Vec<NodeId> = membership
        .learner_ids()
        .filter(|id| {
            replication
                .get(id)
                .and_then(|matched| *matched)
                .is_some_and(|matched| matched.index + CATCH_UP_SLACK_ENTRIES >= last_index)
        })
        .collect();
    let mut new_count = (voters.len() + caught_up.len()).min(target);
    if new_count.is_multiple_of(2) && new_count < target {
        // An even voter count tolerates no more failures than one fewer.
        new_count -= 1;
    }
    if new_count <= voters.len() {
        return Ok(());
    }
    let promote: BTreeSet<NodeId> = caught_up
        .into_iter()
        .take(new_count - voters.len())
        .collect();
    tracing::info!(?promote, "promoting caught-up learners to voters");
    node.raft
        .change_membership(ChangeMembers::AddVoterIds(promote), true)
        .await
        .map_err(|e| ApiError::Unavailable(format!("promotion failed: {e}")))?;
    Ok(())
}

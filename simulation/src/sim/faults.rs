//! Bugs put in on purpose, to show that the invariants catch them.
//!
//! Injected from outside through raft-store's [`Applier`] seam (the one
//! place the state machine hands a request to the projection), so that the
//! code a cluster runs has no broken path at all.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use raft_store::entry::ContainerInterface;
use raft_store::store::Applier;
use raft_store::{AppliedRequest, ClusterRequest, ClusterState, Command, Effect, Outcome};

/// An allocator whose releases forget the owner index: a released owner
/// keeps its entry, so the address can be handed out again while it still
/// counts as held. `check_invariants` must notice (`tests/broken_allocator.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokenAllocator;

impl Applier for BrokenAllocator {
    fn apply(
        &self,
        state: &mut ClusterState,
        index: u64,
        position: u32,
        request: &ClusterRequest,
    ) -> AppliedRequest {
        let releases = matches!(
            request.command,
            Command::ReleaseAddress(_)
                | Command::GarbageCollect { .. }
                | Command::RemoveNode { .. }
        );
        if !releases {
            return state.apply(index, position, request);
        }
        let holders: BTreeMap<Ipv4Addr, ContainerInterface> = state
            .allocations
            .iter()
            .map(|(address, allocation)| (*address, allocation.owner.clone()))
            .collect();
        let chain_before = state.audit_count;
        let applied = state.apply(index, position, request);
        if state.audit_count == chain_before {
            // A repeated request id: nothing was released again.
            return applied;
        }
        let released: &[Ipv4Addr] = match &applied.outcome {
            Outcome::Applied(Effect::AddressReleased { address }) => std::slice::from_ref(address),
            Outcome::Applied(Effect::GarbageCollected { released })
            | Outcome::Applied(Effect::NodeRemoved { released, .. }) => released,
            _ => &[],
        };
        for address in released {
            if let Some(owner) = holders.get(address) {
                state.owners.insert(owner.clone(), *address);
            }
        }
        applied
    }
}

//! Property tests of the address-management part of the projection: random
//! sequences of topology and address requests over a small universe (3 hosts,
//! 3 tenants, 2 segments besides `default`, 10 containers with 2 interfaces
//! each) and a small layout (`10.0.0.0/24` with 2 host, 2 tenant, 1 segment
//! and 3 endpoint bits: 5 usable addresses per block), so that numbers run out
//! and blocks fill up.
//!
//! After every request: the invariants hold, the owner index is the exact
//! inverse of the allocations, every address lies in its records' block, a
//! rejection changes nothing but the request ledger, and the allocations
//! change by exactly what the outcome says. At the end: replaying the same
//! requests from scratch gives the same outcomes and hash, and the state
//! survives a bincode round trip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;
use proptest::sample::Index;
use raft_store::entry::{AllocationRequest, ContainerInterface};
use raft_store::layout::{AddressLayout, AddressParts, DEFAULT_SEGMENT};
use raft_store::state::DEFAULT_SEGMENT_NAME;
use raft_store::state::{Allocation, RequestLedger};
use raft_store::{
    AppliedRequest, ClusterRequest, ClusterState, Command, Effect, Outcome, Rejection, RequestMeta,
};

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
const TENANTS: [&str; 3] = ["t1", "t2", "t3"];
/// Index 0 is every tenant's `default` segment.
const SEGMENTS: [&str; 3] = [DEFAULT_SEGMENT_NAME, "s1", "s2"];
const CONTAINERS: usize = 10;
const IFNAMES: [&str; 2] = ["eth0", "eth1"];

fn layout() -> AddressLayout {
    AddressLayout::new("10.0.0.0/24", 2, 2, 1, 3).expect("valid test layout")
}

/// One generated step, by indices into the universe above.
#[derive(Debug, Clone)]
enum Op {
    Register {
        host: usize,
        moved: bool,
    },
    Remove {
        host: usize,
        force: bool,
    },
    CreateTenant {
        tenant: usize,
    },
    DeleteTenant {
        tenant: usize,
    },
    CreateSegment {
        tenant: usize,
        segment: usize,
    },
    DeleteSegment {
        tenant: usize,
        segment: usize,
    },
    Allocate {
        host: usize,
        tenant: usize,
        segment: usize,
        owner: (usize, usize),
    },
    Release {
        owner: (usize, usize),
    },
    Collect {
        host: usize,
        valid: Vec<(usize, usize)>,
    },
    /// Re-apply an earlier request, request id and all.
    Repeat {
        which: Index,
    },
}

/// Skewed towards the first element, so that one block fills up.
fn skewed(len: usize) -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0), 2 => 0..len]
}

fn owner_ix() -> impl Strategy<Value = (usize, usize)> {
    (0..CONTAINERS, prop_oneof![3 => Just(0), 1 => Just(1)])
}

fn op() -> impl Strategy<Value = Op> {
    let hosts = HOSTS.len();
    let tenants = TENANTS.len();
    let segments = SEGMENTS.len();
    prop_oneof![
        3 => (skewed(hosts), prop::bool::weighted(0.2))
            .prop_map(|(host, moved)| Op::Register { host, moved }),
        1 => (skewed(hosts), any::<bool>()).prop_map(|(host, force)| Op::Remove { host, force }),
        3 => skewed(tenants).prop_map(|tenant| Op::CreateTenant { tenant }),
        1 => skewed(tenants).prop_map(|tenant| Op::DeleteTenant { tenant }),
        2 => (skewed(tenants), 0..segments)
            .prop_map(|(tenant, segment)| Op::CreateSegment { tenant, segment }),
        1 => (skewed(tenants), 0..segments)
            .prop_map(|(tenant, segment)| Op::DeleteSegment { tenant, segment }),
        12 => (skewed(hosts), skewed(tenants), skewed(segments), owner_ix()).prop_map(
            |(host, tenant, segment, owner)| Op::Allocate { host, tenant, segment, owner }
        ),
        4 => owner_ix().prop_map(|owner| Op::Release { owner }),
        1 => (skewed(hosts), prop::collection::vec(owner_ix(), 0..8))
            .prop_map(|(host, valid)| Op::Collect { host, valid }),
        1 => any::<Index>().prop_map(|which| Op::Repeat { which }),
    ]
}

/// Steps, each flagged whether it shares the previous step's log entry.
fn steps() -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((op(), prop::bool::weighted(0.2)), 1..200)
}

fn owner(ix: (usize, usize)) -> ContainerInterface {
    ContainerInterface {
        container_id: format!("container-{}", ix.0),
        ifname: IFNAMES[ix.1].to_string(),
    }
}

fn node_id(host: usize) -> u64 {
    host as u64 + 1
}

fn request(number: usize, command: Command) -> ClusterRequest {
    ClusterRequest::new(
        RequestMeta {
            actor: "client:proptest@host-a".into(),
            request_id: format!("req-{number}"),
            timestamp_ms: 1_700_000_000_000 + number as u64,
        },
        command,
    )
}

fn init() -> ClusterRequest {
    request(
        0,
        Command::InitCluster {
            cluster_name: "romana".into(),
            voters_target: 3,
            layout: layout(),
        },
    )
}

/// The command for a generated step (`None` for a repeat).
fn command(op: &Op) -> Option<Command> {
    let s = |x: &str| x.to_string();
    Some(match op {
        Op::Register { host, moved } => Command::RegisterNode {
            node_id: node_id(*host),
            name: s(HOSTS[*host]),
            address: format!("192.0.2.{}:{}", host + 1, if *moved { 9601 } else { 9600 }),
        },
        Op::Remove { host, force } => Command::RemoveNode {
            name: s(HOSTS[*host]),
            force: *force,
        },
        Op::CreateTenant { tenant } => Command::CreateTenant {
            name: s(TENANTS[*tenant]),
        },
        Op::DeleteTenant { tenant } => Command::DeleteTenant {
            name: s(TENANTS[*tenant]),
        },
        Op::CreateSegment { tenant, segment } => Command::CreateSegment {
            tenant: s(TENANTS[*tenant]),
            name: s(SEGMENTS[*segment]),
        },
        Op::DeleteSegment { tenant, segment } => Command::DeleteSegment {
            tenant: s(TENANTS[*tenant]),
            name: s(SEGMENTS[*segment]),
        },
        Op::Allocate {
            host,
            tenant,
            segment,
            owner: who,
        } => Command::AllocateAddress(AllocationRequest {
            host: s(HOSTS[*host]),
            tenant: s(TENANTS[*tenant]),
            segment: s(SEGMENTS[*segment]),
            owner: owner(*who),
            pod_namespace: Some("default".into()),
            pod_name: Some(format!("pod-{}", who.0)),
            network: None,
        }),
        Op::Release { owner: who } => Command::ReleaseAddress(owner(*who)),
        Op::Collect { host, valid } => Command::GarbageCollect {
            host: s(HOSTS[*host]),
            network: None,
            valid: valid.iter().map(|who| owner(*who)).collect(),
        },
        Op::Repeat { .. } => return None,
    })
}

/// Everything but the request ledger, which records every new request id.
fn projection(state: &ClusterState) -> ClusterState {
    let mut state = state.clone();
    state.requests = RequestLedger::default();
    state.request_digests.clear();
    // The audit chain records every request, refused ones too.
    state.audit_head = String::new();
    state.audit_count = 0;
    state
}

/// The host/tenant/segment numbers an allocation record names, per `state`.
fn block_of(state: &ClusterState, allocation: &Allocation) -> Result<(u32, u32, u32), String> {
    let host = state.nodes.get(&allocation.host).ok_or("unknown host")?;
    let tenant = state
        .tenants
        .get(&allocation.tenant)
        .ok_or("unknown tenant")?;
    let segment = tenant
        .segments
        .get(&allocation.segment)
        .ok_or("unknown segment")?;
    Ok((host.host_number, tenant.number, segment.number))
}

/// Structural checks beyond `check_invariants`.
fn check_structure(state: &ClusterState) -> Result<(), TestCaseError> {
    let layout = layout();
    if let Err(broken) = state.check_invariants() {
        return Err(TestCaseError::fail(format!("check_invariants: {broken}")));
    }
    // The owner index is the exact inverse of the allocations.
    prop_assert_eq!(state.owners.len(), state.allocations.len());
    for (address, allocation) in &state.allocations {
        prop_assert_eq!(state.owners.get(&allocation.owner), Some(address));
    }
    for (who, address) in &state.owners {
        let allocation = state.allocations.get(address);
        prop_assert_eq!(allocation.map(|a| &a.owner), Some(who));
    }
    // Every address decodes into the block of its host/tenant/segment records.
    for (address, allocation) in &state.allocations {
        let parts = layout.decode(*address);
        prop_assert!(parts.is_some(), "{} outside the CIDR", address);
        let parts = parts.unwrap_or(AddressParts {
            host: 0,
            tenant: 0,
            segment: 0,
            endpoint: 0,
        });
        prop_assert!(
            layout.is_usable_endpoint(parts.endpoint),
            "{} is reserved",
            address
        );
        let block = block_of(state, allocation).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            (parts.host, parts.tenant, parts.segment),
            block,
            "{}",
            address
        );
    }
    // Numbers: tenants 1..=3 distinct, segments per tenant distinct with default = 0.
    let tenant_numbers: BTreeSet<u32> = state.tenants.values().map(|t| t.number).collect();
    prop_assert_eq!(tenant_numbers.len(), state.tenants.len());
    prop_assert!(tenant_numbers
        .iter()
        .all(|n| (1..=layout.max_tenants()).contains(n)));
    for (name, tenant) in &state.tenants {
        prop_assert_eq!(
            tenant.segments.get(DEFAULT_SEGMENT_NAME).map(|s| s.number),
            Some(DEFAULT_SEGMENT),
            "tenant {} lost its default segment",
            name
        );
        let numbers: BTreeSet<u32> = tenant.segments.values().map(|s| s.number).collect();
        prop_assert_eq!(numbers.len(), tenant.segments.len());
        prop_assert!(numbers
            .iter()
            .all(|n| *n < layout.max_segments_per_tenant()));
    }
    prop_assert!(state
        .nodes
        .values()
        .all(|n| n.host_number < layout.max_hosts()));
    prop_assert!(state
        .cursors
        .values()
        .all(|e| layout.is_usable_endpoint(*e)));
    Ok(())
}

/// The addresses `outcome` says were added and removed.
fn expected_delta(outcome: &Outcome) -> (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>) {
    let none = BTreeSet::new();
    match outcome {
        Outcome::Applied(Effect::AddressAllocated {
            address,
            existing: false,
        }) => ([*address].into(), none),
        Outcome::Applied(Effect::AddressReleased { address }) => (none, [*address].into()),
        Outcome::Applied(Effect::GarbageCollected { released })
        | Outcome::Applied(Effect::NodeRemoved { released, .. }) => {
            (none, released.iter().copied().collect())
        }
        _ => (BTreeSet::new(), none),
    }
}

/// Checks one new (not repeated) request's outcome against the state before
/// and after it.
fn check_outcome(
    command: &Command,
    outcome: &Outcome,
    before: &ClusterState,
    after: &ClusterState,
) -> Result<(), TestCaseError> {
    let usable = layout().usable_endpoints();
    // Allocations change by exactly what the outcome names; the rest stay as they were.
    let (added, removed) = expected_delta(outcome);
    let was: BTreeSet<Ipv4Addr> = before.allocations.keys().copied().collect();
    let is: BTreeSet<Ipv4Addr> = after.allocations.keys().copied().collect();
    prop_assert_eq!(
        &is.difference(&was).copied().collect::<BTreeSet<_>>(),
        &added
    );
    prop_assert_eq!(
        &was.difference(&is).copied().collect::<BTreeSet<_>>(),
        &removed
    );
    for (address, allocation) in &after.allocations {
        if let Some(old) = before.allocations.get(address) {
            prop_assert_eq!(old, allocation, "{} changed in place", address);
        }
    }
    if let Outcome::Rejected(rejection) = outcome {
        prop_assert!(
            projection(before) == projection(after),
            "{} was refused ({}) but changed the state",
            command,
            rejection
        );
    }
    let on_host = |host: &str| -> Vec<Ipv4Addr> {
        before
            .allocations
            .iter()
            .filter(|(_, a)| a.host == host)
            .map(|(address, _)| *address)
            .collect()
    };
    match (command, outcome) {
        (
            Command::AllocateAddress(request),
            Outcome::Applied(Effect::AddressAllocated { address, existing }),
        ) => {
            let allocation = after.allocations.get(address);
            prop_assert!(
                allocation.is_some(),
                "{} allocated but not in the state",
                address
            );
            let allocation = allocation.cloned().expect("checked");
            prop_assert_eq!(&allocation.owner, &request.owner);
            prop_assert_eq!(
                (&allocation.host, &allocation.tenant, &allocation.segment),
                (&request.host, &request.tenant, &request.segment)
            );
            prop_assert_eq!(after.owners.get(&request.owner), Some(address));
            if *existing {
                prop_assert_eq!(before.owners.get(&request.owner), Some(address));
                prop_assert!(projection(before) == projection(after));
            } else {
                prop_assert!(!before.owners.contains_key(&request.owner));
            }
        }
        (
            Command::AllocateAddress(request),
            Outcome::Rejected(Rejection::BlockFull { capacity, .. }),
        ) => {
            prop_assert_eq!(*capacity, usable);
            let in_block = before
                .allocations
                .values()
                .filter(|a| {
                    (&a.host, &a.tenant, &a.segment)
                        == (&request.host, &request.tenant, &request.segment)
                })
                .count();
            prop_assert_eq!(
                in_block as u32,
                usable,
                "BlockFull but the block is not full"
            );
        }
        (
            Command::AllocateAddress(request),
            Outcome::Rejected(Rejection::OwnerHoldsOtherAddress { address, .. }),
        ) => {
            prop_assert_eq!(before.owners.get(&request.owner), Some(address));
            let held = &before.allocations[address];
            prop_assert!(
                (&held.host, &held.tenant, &held.segment)
                    != (&request.host, &request.tenant, &request.segment)
            );
        }
        (Command::ReleaseAddress(who), Outcome::Applied(Effect::AddressReleased { address })) => {
            prop_assert_eq!(before.owners.get(who), Some(address));
            prop_assert!(!after.owners.contains_key(who));
        }
        (Command::ReleaseAddress(who), Outcome::Applied(Effect::NothingToRelease)) => {
            prop_assert!(!before.owners.contains_key(who));
        }
        (
            Command::GarbageCollect { host, valid, .. },
            Outcome::Applied(Effect::GarbageCollected { released }),
        ) => {
            let doomed: Vec<Ipv4Addr> = before
                .allocations
                .iter()
                .filter(|(_, a)| &a.host == host && !valid.contains(&a.owner))
                .map(|(address, _)| *address)
                .collect();
            prop_assert_eq!(released, &doomed);
        }
        (
            Command::RemoveNode { name, force },
            Outcome::Applied(Effect::NodeRemoved { released, .. }),
        ) => {
            prop_assert_eq!(released, &on_host(name));
            prop_assert!(
                *force || released.is_empty(),
                "{} removed without force while holding addresses",
                name
            );
            prop_assert!(!after.nodes.contains_key(name));
            prop_assert!(after.allocations.values().all(|a| &a.host != name));
        }
        (
            Command::RemoveNode { name, force },
            Outcome::Rejected(Rejection::HostHasAddresses { count, .. }),
        ) => {
            prop_assert!(!force);
            prop_assert!(*count > 0);
            prop_assert_eq!(*count, on_host(name).len());
        }
        (
            Command::RegisterNode { name, .. },
            Outcome::Applied(Effect::NodeRegistered { host_number, .. }),
        ) => {
            let used: BTreeSet<u32> = before.nodes.values().map(|n| n.host_number).collect();
            let lowest = (0..).find(|n| !used.contains(n));
            prop_assert_eq!(
                Some(*host_number),
                lowest,
                "{} not given the lowest free host number",
                name
            );
        }
        (Command::CreateTenant { .. }, Outcome::Applied(Effect::TenantCreated { number })) => {
            let used: BTreeSet<u32> = before.tenants.values().map(|t| t.number).collect();
            prop_assert_eq!(Some(*number), (1..).find(|n| !used.contains(n)));
        }
        (Command::CreateTenant { .. }, Outcome::Rejected(Rejection::TenantsExhausted { max })) => {
            prop_assert_eq!(before.tenants.len() as u32, *max);
        }
        (Command::DeleteTenant { name }, outcome) => {
            let count = before
                .allocations
                .values()
                .filter(|a| &a.tenant == name)
                .count();
            if let Outcome::Rejected(Rejection::TenantHasAddresses { count: said, .. }) = outcome {
                prop_assert_eq!(*said, count);
            } else if let Outcome::Applied(_) = outcome {
                prop_assert_eq!(count, 0, "deleted tenant {} with addresses", name);
            }
        }
        (Command::DeleteSegment { tenant, name }, outcome) => {
            let count = before
                .allocations
                .values()
                .filter(|a| &a.tenant == tenant && &a.segment == name)
                .count();
            if let Outcome::Rejected(Rejection::SegmentHasAddresses { count: said, .. }) = outcome {
                prop_assert_eq!(*said, count);
            } else if let Outcome::Applied(_) = outcome {
                prop_assert!(name != DEFAULT_SEGMENT_NAME);
                prop_assert_eq!(
                    count,
                    0,
                    "deleted segment {}/{} with addresses",
                    tenant,
                    name
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Per host/tenant/segment block (by numbers), the endpoint handed out last.
type Cursors = BTreeMap<(u32, u32, u32), u32>;

/// Round-robin, as a model: a new address is the first free endpoint after
/// the one the block handed out last (from endpoint 2 in a new block), so a
/// just-released address comes back only once the rest of the block is
/// taken. A block whose host, tenant or segment goes away starts afresh.
fn check_round_robin(
    model: &mut Cursors,
    command: &Command,
    outcome: &Outcome,
    before: &ClusterState,
) -> Result<(), TestCaseError> {
    let layout = layout();
    let usable = layout.usable_endpoints();
    match (command, outcome) {
        (
            Command::AllocateAddress(_),
            Outcome::Applied(Effect::AddressAllocated {
                address,
                existing: false,
            }),
        ) => {
            let parts = layout.decode(*address).expect("checked to decode");
            let block = (parts.host, parts.tenant, parts.segment);
            let start = model.get(&block).map_or(0, |last| last - 2 + 1);
            let expected = (0..usable)
                .map(|step| 2 + (start + step) % usable)
                .find(|endpoint| {
                    let candidate = layout.address(AddressParts {
                        endpoint: *endpoint,
                        ..parts
                    });
                    !before.allocations.contains_key(&candidate)
                });
            prop_assert_eq!(
                Some(parts.endpoint),
                expected,
                "{} is not the next in round-robin order",
                address
            );
            model.insert(block, parts.endpoint);
        }
        (Command::RemoveNode { name, .. }, Outcome::Applied(Effect::NodeRemoved { .. })) => {
            let host = before.nodes[name].host_number;
            model.retain(|block, _| block.0 != host);
        }
        (Command::DeleteTenant { .. }, Outcome::Applied(Effect::TenantDeleted { number })) => {
            model.retain(|block, _| block.1 != *number);
        }
        (
            Command::DeleteSegment { tenant, .. },
            Outcome::Applied(Effect::SegmentDeleted { number }),
        ) => {
            let tenant = before.tenants[tenant].number;
            model.retain(|block, _| (block.1, block.2) != (tenant, *number));
        }
        _ => {}
    }
    Ok(())
}

/// Applies `steps` after an InitCluster, checking every step; returns the
/// log as applied (index, position, request) and the outcomes.
#[allow(clippy::type_complexity)]
fn run(
    steps: &[(Op, bool)],
) -> Result<
    (
        ClusterState,
        Vec<(u64, u32, ClusterRequest)>,
        Vec<AppliedRequest>,
    ),
    TestCaseError,
> {
    let mut state = ClusterState::default();
    let mut log = vec![(1, 0, init())];
    let mut outcomes = vec![state.apply(1, 0, &log[0].2)];
    prop_assert_eq!(
        &outcomes[0].outcome,
        &Outcome::Applied(Effect::ClusterInitialised)
    );
    let (mut index, mut position) = (1u64, 0u32);
    let mut cursors = Cursors::new();
    for (number, (op, same_entry)) in steps.iter().enumerate() {
        if *same_entry {
            position += 1;
        } else {
            index += 1;
            position = 0;
        }
        let before = state.clone();
        let (request, repeat_of) = match (op, command(op)) {
            (Op::Repeat { which }, _) => {
                let earlier = which.index(log.len());
                (log[earlier].2.clone(), Some(outcomes[earlier].clone()))
            }
            (_, Some(cmd)) => (request(number + 1, cmd), None),
            (_, None) => unreachable!("only repeats have no command"),
        };
        let applied = state.apply(index, position, &request);
        check_structure(&state)?;
        if let Some(first) = repeat_of {
            prop_assert_eq!(
                &applied,
                &first,
                "a repeated request id must return its first outcome"
            );
            prop_assert!(state == before, "a repeated request id changed the state");
        } else {
            prop_assert_eq!((applied.index, applied.position), (index, position));
            prop_assert_eq!(state.requests.get(&request.meta.request_id), Some(&applied));
            check_outcome(&request.command, &applied.outcome, &before, &state)?;
            check_round_robin(&mut cursors, &request.command, &applied.outcome, &before)?;
        }
        log.push((index, position, request));
        outcomes.push(applied);
    }
    Ok((state, log, outcomes))
}

// proptest's default of 256 cases (about 3 s in debug); PROPTEST_CASES=N
// raises it for a longer hunt.
proptest! {
    #[test]
    fn random_request_sequences_keep_the_address_space_consistent(steps in steps()) {
        // Goal: any sequence of topology and address requests keeps the projection consistent, replays identically and survives serialisation.
        let (state, log, outcomes) = run(&steps)?;

        let mut replayed = ClusterState::default();
        let again: Vec<AppliedRequest> = log
            .iter()
            .map(|(index, position, request)| replayed.apply(*index, *position, request))
            .collect();
        prop_assert_eq!(&again, &outcomes, "replay must give the same outcomes");
        prop_assert_eq!(replayed.content_hash(), state.content_hash());
        prop_assert!(replayed == state);

        let bytes = bincode::serialize(&state).expect("serialise state");
        let back: ClusterState = bincode::deserialize(&bytes).expect("deserialise state");
        prop_assert!(back == state, "bincode round trip changed the state");
        prop_assert_eq!(back.content_hash(), state.content_hash());
    }
}

/// Tallies of outcome kinds over many generated sequences, to see that the
/// generator reaches the interesting cases (full blocks, exhausted numbers,
/// forced removals, ...). Not a property: it asserts a coverage floor.
#[test]
fn the_generator_reaches_the_interesting_outcomes() {
    // Goal: the random sequences above really exercise full blocks, refusals, releases, collections and forced removals, not just the happy path.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..64 {
        let steps = steps().new_tree(&mut runner).expect("generate").current();
        let (_, _, outcomes) = run(&steps).expect("a valid run");
        for applied in outcomes {
            let kind = match applied.outcome {
                Outcome::Applied(Effect::AddressAllocated { existing, .. }) => {
                    format!("allocated existing={existing}")
                }
                Outcome::Applied(Effect::NodeRemoved { released, .. }) => {
                    format!("node removed, released any={}", !released.is_empty())
                }
                Outcome::Applied(Effect::GarbageCollected { released }) => {
                    format!("collected any={}", !released.is_empty())
                }
                Outcome::Applied(effect) => format!("{effect:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string(),
                Outcome::Rejected(rejection) => format!("{rejection:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            *tally.entry(kind).or_default() += 1;
        }
    }
    eprintln!("outcomes over 64 sequences: {tally:#?}");
    for wanted in [
        "allocated existing=false",
        "allocated existing=true",
        "BlockFull",
        "OwnerHoldsOtherAddress",
        "AddressReleased",
        "NothingToRelease",
        "collected any=true",
        "node removed, released any=true",
        "HostHasAddresses",
        "TenantHasAddresses",
        "SegmentHasAddresses",
        "SegmentsExhausted",
        "DefaultSegmentIsPermanent",
        "TenantDeleted",
        "SegmentDeleted",
        "NodeAddressChanged",
    ] {
        assert!(
            tally.get(wanted).is_some_and(|n| *n > 0),
            "never reached {wanted:?}: {tally:#?}"
        );
    }
}

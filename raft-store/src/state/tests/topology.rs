//! The topology handlers, driven through `ClusterState::apply` the way the
//! log drives them. The harness checks `check_invariants()` after every
//! request it applies, and that every rejection leaves the projection
//! (everything but the request ledger) exactly as it was.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::entry::{
    validate_node_address, AllocationRequest, ClusterRequest, Command, ContainerInterface,
    RequestMeta,
};
use crate::layout::{
    AddressLayout, AddressParts, DEFAULT_SEGMENT, HOST_TENANT, RESERVED_LOW_ENDPOINTS,
};
use crate::state::{ClusterState, Effect, Outcome, Rejection, RequestLedger, DEFAULT_SEGMENT_NAME};

const ACTOR: &str = "client:test@host-a";
const NOW_MS: u64 = 1_700_000_000_000;

fn request(id: &str, command: Command) -> ClusterRequest {
    ClusterRequest::new(
        RequestMeta {
            actor: ACTOR.into(),
            request_id: id.into(),
            timestamp_ms: NOW_MS,
        },
        command,
    )
}

/// `10.0.0.0/24` with 1 host, 1 tenant, 3 segment and 3 endpoint bits:
/// 2 hosts, 1 tenant, 8 segments, endpoints 2..=6 usable (5 per block).
fn small_layout() -> AddressLayout {
    AddressLayout::new("10.0.0.0/24", 1, 1, 3, 3).expect("valid small layout")
}

fn owner(container_id: &str, ifname: &str) -> ContainerInterface {
    ContainerInterface {
        container_id: container_id.into(),
        ifname: ifname.into(),
    }
}

fn create_tenant(name: &str) -> Command {
    Command::CreateTenant { name: name.into() }
}

fn delete_tenant(name: &str) -> Command {
    Command::DeleteTenant { name: name.into() }
}

fn create_segment(tenant: &str, name: &str) -> Command {
    Command::CreateSegment {
        tenant: tenant.into(),
        name: name.into(),
    }
}

fn delete_segment(tenant: &str, name: &str) -> Command {
    Command::DeleteSegment {
        tenant: tenant.into(),
        name: name.into(),
    }
}

fn allocate(host: &str, tenant: &str, segment: &str, owner: ContainerInterface) -> Command {
    Command::AllocateAddress(AllocationRequest {
        host: host.into(),
        tenant: tenant.into(),
        segment: segment.into(),
        owner,
        pod_namespace: Some("default".into()),
        pod_name: Some("pod".into()),
        network: None,
    })
}

fn release(owner: ContainerInterface) -> Command {
    Command::ReleaseAddress(owner)
}

fn remove_node(name: &str, force: bool) -> Command {
    Command::RemoveNode {
        name: name.into(),
        force,
    }
}

fn garbage_collect(host: &str, valid: &[ContainerInterface]) -> Command {
    Command::GarbageCollect {
        host: host.into(),
        network: None,
        valid: valid.to_vec(),
    }
}

/// A state fed one request per log index, each with a fresh request id.
struct Harness {
    state: ClusterState,
    index: u64,
    registered: u64,
}

impl Harness {
    fn new(layout: AddressLayout) -> Self {
        let mut harness = Self {
            state: ClusterState::default(),
            index: 0,
            registered: 0,
        };
        let init = Command::InitCluster {
            cluster_name: "romana".into(),
            voters_target: 3,
            layout,
        };
        assert_eq!(harness.applied(init), Effect::ClusterInitialised);
        harness
    }

    fn layout(&self) -> AddressLayout {
        *self.state.layout().expect("initialised")
    }

    /// Applies `command` under a new request id; invariants must hold after.
    fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let id = format!("req-{}", self.index);
        let applied = self
            .state
            .apply(self.index, 0, &request(&id, command.clone()));
        assert_eq!(
            applied.index, self.index,
            "{command}: a new request id is applied now"
        );
        if let Err(broken) = self.state.check_invariants() {
            panic!("after {command}: invariant broken: {broken}");
        }
        applied.outcome
    }

    /// Applies `command`, which must succeed.
    fn applied(&mut self, command: Command) -> Effect {
        match self.apply(command.clone()) {
            Outcome::Applied(effect) => effect,
            Outcome::Rejected(rejection) => panic!("{command} was rejected: {rejection}"),
        }
    }

    /// Applies `command`, which must be refused without changing anything
    /// but the request ledger.
    fn rejected(&mut self, command: Command) -> Rejection {
        let before = self.projection();
        match self.apply(command.clone()) {
            Outcome::Rejected(rejection) => {
                assert!(
                    self.projection() == before,
                    "{command} was refused ({rejection}) but changed the state"
                );
                rejection
            }
            Outcome::Applied(effect) => {
                panic!("{command} should have been refused, got {effect}")
            }
        }
    }

    /// The content hash of everything but the request ledger. (The full
    /// `content_hash` changes with every new request id, rejected or not,
    /// because the ledger records its outcome.)
    fn projection(&self) -> String {
        let mut state = self.state.clone();
        state.requests = RequestLedger::default();
        // The audit chain records every request, refused ones too.
        state.audit_head = String::new();
        state.audit_count = 0;
        state.content_hash()
    }

    /// Registers a node under a fresh node id and underlay address;
    /// returns its host number.
    fn host(&mut self, name: &str) -> u32 {
        self.registered += 1;
        let node_id = 100 + self.registered;
        let command = Command::RegisterNode {
            node_id,
            name: name.into(),
            address: format!("192.0.2.{}:9600", self.registered),
        };
        match self.applied(command) {
            Effect::NodeRegistered {
                node_id: id,
                host_number,
            } if id == node_id => host_number,
            other => panic!("registering {name}: {other}"),
        }
    }

    fn tenant(&mut self, name: &str) -> u32 {
        match self.applied(create_tenant(name)) {
            Effect::TenantCreated { number } => number,
            other => panic!("creating tenant {name}: {other}"),
        }
    }

    fn segment(&mut self, tenant: &str, name: &str) -> u32 {
        match self.applied(create_segment(tenant, name)) {
            Effect::SegmentCreated { number } => number,
            other => panic!("creating segment {tenant}/{name}: {other}"),
        }
    }

    /// A new address for `container/ifname`, which must not hold one yet.
    fn allocate(
        &mut self,
        host: &str,
        tenant: &str,
        segment: &str,
        container: &str,
        ifname: &str,
    ) -> Ipv4Addr {
        let who = owner(container, ifname);
        assert!(
            !self.state.owners.contains_key(&who),
            "{who} already holds an address"
        );
        let held_before: Vec<Ipv4Addr> = self.state.allocations.keys().copied().collect();
        match self.applied(allocate(host, tenant, segment, who.clone())) {
            Effect::AddressAllocated {
                address,
                existing: false,
            } => {
                assert!(
                    !held_before.contains(&address),
                    "{address} handed out twice"
                );
                assert_eq!(self.state.owners.get(&who), Some(&address));
                let parts = self.parts(address);
                assert!(
                    self.layout().is_usable_endpoint(parts.endpoint),
                    "{address} is a reserved endpoint"
                );
                address
            }
            other => panic!("allocating for {who}: {other}"),
        }
    }

    fn endpoint_of(&mut self, host: &str, tenant: &str, segment: &str, container: &str) -> u32 {
        let address = self.allocate(host, tenant, segment, container, "eth0");
        self.parts(address).endpoint
    }

    fn parts(&self, address: Ipv4Addr) -> AddressParts {
        self.layout()
            .decode(address)
            .unwrap_or_else(|| panic!("{address} outside the cluster CIDR"))
    }

    fn tenant_numbers(&self) -> BTreeMap<String, u32> {
        self.state
            .tenants
            .iter()
            .map(|(name, t)| (name.clone(), t.number))
            .collect()
    }

    fn segment_numbers(&self, tenant: &str) -> BTreeMap<String, u32> {
        self.state.tenants[tenant]
            .segments
            .iter()
            .map(|(name, s)| (name.clone(), s.number))
            .collect()
    }

    fn addresses_on(&self, host: &str) -> Vec<Ipv4Addr> {
        self.state
            .allocations
            .iter()
            .filter(|(_, allocation)| allocation.host == host)
            .map(|(address, _)| *address)
            .collect()
    }
}

fn numbers(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs
        .iter()
        .map(|(name, number)| (name.to_string(), *number))
        .collect()
}

#[test]
fn tenants_get_the_lowest_free_number_from_one() {
    // Goal: tenant numbers are handed out lowest-free-first from 1 (never 0, the host's own) and a freed number is reused.
    let mut h = Harness::new(AddressLayout::default());
    assert_eq!(h.tenant("t1"), 1);
    assert_eq!(h.tenant("t2"), 2);
    assert_eq!(
        h.applied(delete_tenant("t1")),
        Effect::TenantDeleted { number: 1 }
    );
    assert!(!h.state.tenants.contains_key("t1"));
    assert_eq!(h.tenant("t3"), 1, "the freed number 1 is the lowest free");
    assert_eq!(h.tenant("t4"), 3);
    assert_eq!(
        h.tenant_numbers(),
        numbers(&[("t2", 2), ("t3", 1), ("t4", 3)])
    );
    assert!(h.state.tenants.values().all(|t| t.number != HOST_TENANT));
    assert_eq!(
        h.rejected(delete_tenant("t1")),
        Rejection::UnknownTenant { name: "t1".into() }
    );
}

#[test]
fn tenant_and_segment_names_must_be_dns_labels() {
    // Goal: only DNS-1123 labels are accepted as tenant and segment names; anything else is refused and creates nothing.
    let mut h = Harness::new(AddressLayout::default());
    let too_long = "a".repeat(64);
    let bad = [
        "",
        "T1",
        "t_1",
        "t.1",
        "-t1",
        "t1-",
        "t 1",
        " t1",
        "té",
        "t/1",
        too_long.as_str(),
    ];
    for name in bad {
        match h.rejected(create_tenant(name)) {
            Rejection::InvalidArgument { reason } => {
                assert!(reason.contains("DNS-1123"), "{name:?}: {reason}")
            }
            other => panic!("tenant {name:?}: {other}"),
        }
    }
    assert!(h.state.tenants.is_empty());
    let longest = "b".repeat(63);
    for name in ["a", "7", "a-1", "1-a", "x--y", longest.as_str()] {
        h.tenant(name);
    }
    assert_eq!(h.state.tenants.len(), 6);
    for name in bad {
        match h.rejected(create_segment("a", name)) {
            Rejection::InvalidArgument { reason } => {
                assert!(reason.contains("DNS-1123"), "{name:?}: {reason}")
            }
            other => panic!("segment {name:?}: {other}"),
        }
    }
    assert_eq!(h.segment_numbers("a"), numbers(&[("default", 0)]));
    assert_eq!(h.segment("a", longest.as_str()), 1);
}

#[test]
fn duplicate_tenant_and_segment_names_are_refused() {
    // Goal: a tenant or segment name that exists is refused and its number is kept, not reallocated.
    let mut h = Harness::new(AddressLayout::default());
    assert_eq!(h.tenant("t1"), 1);
    assert_eq!(
        h.rejected(create_tenant("t1")),
        Rejection::TenantExists { name: "t1".into() }
    );
    assert_eq!(h.segment("t1", "s1"), 1);
    assert_eq!(
        h.rejected(create_segment("t1", "s1")),
        Rejection::SegmentExists {
            tenant: "t1".into(),
            name: "s1".into()
        }
    );
    assert_eq!(
        h.rejected(create_segment("t1", DEFAULT_SEGMENT_NAME)),
        Rejection::SegmentExists {
            tenant: "t1".into(),
            name: "default".into()
        }
    );
    assert_eq!(
        h.rejected(create_segment("nope", "s1")),
        Rejection::UnknownTenant {
            name: "nope".into()
        }
    );
    // The same segment name in another tenant is a different segment.
    assert_eq!(h.tenant("t2"), 2);
    assert_eq!(h.segment("t2", "s1"), 1);
    assert_eq!(h.tenant_numbers(), numbers(&[("t1", 1), ("t2", 2)]));
    assert_eq!(
        h.segment_numbers("t1"),
        numbers(&[("default", 0), ("s1", 1)])
    );
}

#[test]
fn tenant_numbers_run_out_with_a_clear_error() {
    // Goal: with 2 tenant bits exactly 3 tenants fit; the 4th is TenantsExhausted and creates nothing, until one is deleted.
    let layout = AddressLayout::new("10.0.0.0/16", 4, 2, 2, 8).expect("valid layout");
    let mut h = Harness::new(layout);
    assert_eq!([h.tenant("t1"), h.tenant("t2"), h.tenant("t3")], [1, 2, 3]);
    assert_eq!(
        h.rejected(create_tenant("t4")),
        Rejection::TenantsExhausted { max: 3 }
    );
    assert!(!h.state.tenants.contains_key("t4"));
    h.applied(delete_tenant("t2"));
    assert_eq!(h.tenant("t4"), 2);
    assert_eq!(
        h.rejected(create_tenant("t5")),
        Rejection::TenantsExhausted { max: 3 }
    );
}

#[test]
fn every_tenant_has_a_permanent_default_segment_and_segments_count_from_one() {
    // Goal: a tenant starts with `default` = 0, which cannot be deleted; other segments are lowest-free from 1 per tenant, up to the layout's width.
    let layout = AddressLayout::new("10.0.0.0/16", 4, 2, 2, 8).expect("valid layout");
    let mut h = Harness::new(layout);
    h.tenant("t1");
    assert_eq!(
        h.segment_numbers("t1"),
        numbers(&[("default", DEFAULT_SEGMENT)])
    );
    assert_eq!(h.segment("t1", "s1"), 1);
    assert_eq!(h.segment("t1", "s2"), 2);
    assert_eq!(
        h.applied(delete_segment("t1", "s1")),
        Effect::SegmentDeleted { number: 1 }
    );
    assert_eq!(
        h.segment("t1", "s3"),
        1,
        "the freed number 1 is the lowest free"
    );
    assert_eq!(
        h.rejected(delete_segment("t1", DEFAULT_SEGMENT_NAME)),
        Rejection::DefaultSegmentIsPermanent {
            tenant: "t1".into()
        }
    );
    assert_eq!(h.segment_numbers("t1")["default"], 0);
    assert_eq!(
        h.rejected(delete_segment("t1", "s1")),
        Rejection::UnknownSegment {
            tenant: "t1".into(),
            name: "s1".into()
        }
    );
    assert_eq!(
        h.rejected(delete_segment("t9", "s1")),
        Rejection::UnknownTenant { name: "t9".into() }
    );
    // 2 segment bits: default plus 3 more.
    assert_eq!(h.segment("t1", "s4"), 3);
    assert_eq!(
        h.rejected(create_segment("t1", "s5")),
        Rejection::SegmentsExhausted {
            tenant: "t1".into(),
            max: 4
        }
    );
    assert_eq!(
        h.segment_numbers("t1"),
        numbers(&[("default", 0), ("s2", 2), ("s3", 1), ("s4", 3)])
    );
    // Numbering is per tenant, and a new tenant gets its own default.
    h.tenant("t2");
    assert_eq!(h.segment_numbers("t2"), numbers(&[("default", 0)]));
    assert_eq!(h.segment("t2", "s1"), 1);
}

#[test]
fn tenants_and_segments_holding_addresses_cannot_be_deleted() {
    // Goal: deleting a tenant or segment that still has addresses is refused and changes nothing; once empty, it can be deleted.
    let mut h = Harness::new(AddressLayout::default());
    h.host("host-a");
    h.tenant("t1");
    h.segment("t1", "s1");
    h.segment("t1", "s2");
    h.tenant("t2");
    h.allocate("host-a", "t1", "s1", "c1", "eth0");
    h.allocate("host-a", "t1", "default", "c2", "eth0");
    let before = h.projection();
    assert_eq!(
        h.rejected(delete_segment("t1", "s1")),
        Rejection::SegmentHasAddresses {
            tenant: "t1".into(),
            name: "s1".into(),
            count: 1
        }
    );
    assert_eq!(
        h.rejected(delete_tenant("t1")),
        Rejection::TenantHasAddresses {
            name: "t1".into(),
            count: 2
        }
    );
    assert_eq!(h.projection(), before, "refusals change nothing");
    assert_eq!(h.state.allocations.len(), 2);
    // Empty neighbours are not held back by t1's addresses.
    assert_eq!(
        h.applied(delete_segment("t1", "s2")),
        Effect::SegmentDeleted { number: 2 }
    );
    assert_eq!(
        h.applied(delete_tenant("t2")),
        Effect::TenantDeleted { number: 2 }
    );
    h.applied(release(owner("c1", "eth0")));
    assert_eq!(
        h.applied(delete_segment("t1", "s1")),
        Effect::SegmentDeleted { number: 1 }
    );
    assert_eq!(
        h.rejected(delete_tenant("t1")),
        Rejection::TenantHasAddresses {
            name: "t1".into(),
            count: 1
        }
    );
    h.applied(release(owner("c2", "eth0")));
    assert_eq!(
        h.applied(delete_tenant("t1")),
        Effect::TenantDeleted { number: 1 }
    );
    assert!(h.state.tenants.is_empty());
    assert!(h.state.allocations.is_empty() && h.state.owners.is_empty());
}

#[test]
fn topology_requests_before_init_are_refused() {
    // Goal: no tenant, segment or address request takes effect before the cluster is initialised.
    let mut state = ClusterState::default();
    let commands = [
        create_tenant("t1"),
        create_segment("t1", "s1"),
        allocate("host-a", "t1", "default", owner("c1", "eth0")),
        release(owner("c1", "eth0")),
        garbage_collect("host-a", &[]),
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let applied = state.apply(i as u64 + 1, 0, &request(&format!("r{i}"), command.clone()));
        assert_eq!(
            applied.outcome,
            Outcome::Rejected(Rejection::NotInitialised),
            "{command}"
        );
    }
    assert!(state.tenants.is_empty() && state.allocations.is_empty());
    assert_eq!(state.check_invariants(), Ok(()));
}

// Regression: `allocate` once computed `last_handed - RESERVED_LOW_ENDPOINTS`
// in u32 with `last_handed` = 1 for a block without a cursor, so the first
// allocation in every block panicked (subtract with overflow) in debug
// builds and only wrapped to the right answer in release builds.
#[test]
fn the_first_allocation_in_a_fresh_block_does_not_panic() {
    // Goal: allocating in a block that never had an address succeeds (with endpoint 2) instead of panicking.
    let mut h = Harness::new(small_layout());
    h.host("host-a");
    h.tenant("t1");
    let address = h.allocate("host-a", "t1", "default", "c1", "eth0");
    assert_eq!(h.parts(address).endpoint, RESERVED_LOW_ENDPOINTS);
    assert_eq!(h.state.allocations.len(), 1);
}

#[test]
fn romanas_example_first_address_is_10_0_17_2() {
    // Goal: in the default layout, host 0 / tenant 1 / segment 1 hands out 10.0.17.2 first (0 and 1 reserved), then 10.0.17.3, and they decode back.
    let mut h = Harness::new(AddressLayout::default());
    assert_eq!(h.host("host-a"), 0);
    assert_eq!(h.tenant("t1"), 1);
    assert_eq!(h.segment("t1", "s1"), 1);
    let first = h.allocate("host-a", "t1", "s1", "c1", "eth0");
    assert_eq!(first, Ipv4Addr::new(10, 0, 17, 2));
    let parts = AddressParts {
        host: 0,
        tenant: 1,
        segment: 1,
        endpoint: 2,
    };
    assert_eq!(h.layout().decode(first), Some(parts));
    assert_eq!(h.layout().address(parts), first);
    let second = h.allocate("host-a", "t1", "s1", "c2", "eth0");
    assert_eq!(
        second,
        Ipv4Addr::new(10, 0, 17, 3),
        "the design's example address"
    );
    assert_eq!(
        h.layout().decode(second),
        Some(AddressParts {
            endpoint: 3,
            ..parts
        })
    );
    for reserved in [
        Ipv4Addr::new(10, 0, 17, 0),
        Ipv4Addr::new(10, 0, 17, 1),
        Ipv4Addr::new(10, 0, 17, 255),
    ] {
        assert!(
            !h.state.allocations.contains_key(&reserved),
            "{reserved} is reserved"
        );
    }
    let record = &h.state.allocations[&first];
    assert_eq!(record.owner, owner("c1", "eth0"));
    assert_eq!(
        (
            record.host.as_str(),
            record.tenant.as_str(),
            record.segment.as_str()
        ),
        ("host-a", "t1", "s1")
    );
    assert_eq!(record.pod_namespace.as_deref(), Some("default"));
    assert_eq!(record.pod_name.as_deref(), Some("pod"));
    assert_eq!(
        (record.allocated_at_ms, record.actor.as_str()),
        (NOW_MS, ACTOR)
    );
    assert_eq!(record.allocated_index, h.index - 1);
}

#[test]
fn allocation_is_idempotent_per_container_interface() {
    // Goal: the same (container id, ifname) gets the same address again without change, is refused in another block, and releases exactly once.
    let mut h = Harness::new(AddressLayout::default());
    h.host("host-a");
    h.host("host-b");
    h.tenant("t1");
    h.tenant("t2");
    h.segment("t1", "s1");
    let who = owner("c1", "eth0");
    let address = h.allocate("host-a", "t1", "s1", "c1", "eth0");
    let before = h.projection();
    assert_eq!(
        h.applied(allocate("host-a", "t1", "s1", who.clone())),
        Effect::AddressAllocated {
            address,
            existing: true
        }
    );
    assert_eq!(
        h.projection(),
        before,
        "a repeated allocation changes nothing"
    );
    assert_eq!(h.state.allocations.len(), 1);
    // The very same request (same id) replayed: the full hash is unchanged too.
    let same = request(
        "alloc-once",
        allocate("host-a", "t1", "default", owner("c9", "eth0")),
    );
    let first = h.state.apply(1000, 0, &same);
    let hash = h.state.content_hash();
    let again = h.state.apply(1001, 0, &same);
    assert_eq!(
        again, first,
        "a repeated request id returns the first outcome"
    );
    assert_eq!(h.state.content_hash(), hash);
    // Another block: refused, whichever field differs.
    for other_block in [
        allocate("host-a", "t1", "default", who.clone()),
        allocate("host-a", "t2", "default", who.clone()),
        allocate("host-b", "t1", "s1", who.clone()),
    ] {
        assert_eq!(
            h.rejected(other_block),
            Rejection::OwnerHoldsOtherAddress {
                owner: "c1/eth0".into(),
                address
            }
        );
    }
    assert_eq!(h.state.owners[&who], address);
    // Another interface of the same container is another owner.
    let eth1 = h.allocate("host-a", "t1", "s1", "c1", "eth1");
    assert_ne!(eth1, address);
    // Release: once for real, then nothing to do.
    assert_eq!(
        h.applied(release(who.clone())),
        Effect::AddressReleased { address }
    );
    assert!(!h.state.owners.contains_key(&who));
    assert!(!h.state.allocations.contains_key(&address));
    let before = h.projection();
    assert_eq!(h.applied(release(who.clone())), Effect::NothingToRelease);
    assert_eq!(h.projection(), before);
    assert_eq!(
        h.state.owners[&owner("c1", "eth1")],
        eth1,
        "the other interface keeps its address"
    );
    // Released, the owner may now allocate in another block.
    let moved = h.allocate("host-b", "t1", "s1", "c1", "eth0");
    assert_eq!(h.parts(moved).host, 1);
    // Malformed owners are refused, not released.
    match h.rejected(release(owner("c1", "a/b"))) {
        Rejection::InvalidArgument { .. } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn a_full_block_is_a_clear_error_never_a_duplicate() {
    // Goal: a block hands out its 5 usable endpoints 2..=6 in order, then reports BlockFull naming the block; a released endpoint is the one handed out next when nothing else is free.
    let mut h = Harness::new(small_layout());
    assert_eq!(h.layout().usable_endpoints(), 5);
    h.host("host-a");
    h.tenant("t1");
    h.segment("t1", "s1");
    let endpoints: Vec<u32> = (0..5)
        .map(|i| h.endpoint_of("host-a", "t1", "s1", &format!("c{i}")))
        .collect();
    assert_eq!(endpoints, [2, 3, 4, 5, 6]);
    assert_eq!(
        h.rejected(allocate("host-a", "t1", "s1", owner("c5", "eth0"))),
        Rejection::BlockFull {
            host: "host-a".into(),
            tenant: "t1".into(),
            segment: "s1".into(),
            capacity: 5
        }
    );
    assert!(!h.state.owners.contains_key(&owner("c5", "eth0")));
    // Free endpoint 3 (held by c1): the only free one, so it comes back.
    let three = h.state.owners[&owner("c1", "eth0")];
    assert_eq!(h.parts(three).endpoint, 3);
    assert_eq!(
        h.applied(release(owner("c1", "eth0"))),
        Effect::AddressReleased { address: three }
    );
    assert_eq!(h.allocate("host-a", "t1", "s1", "c5", "eth0"), three);
    assert_eq!(h.state.allocations.len(), 5);
    assert!(matches!(
        h.rejected(allocate("host-a", "t1", "s1", owner("c6", "eth0"))),
        Rejection::BlockFull { capacity: 5, .. }
    ));
    // A full block does not hold back its neighbours.
    assert_eq!(h.endpoint_of("host-a", "t1", "default", "c6"), 2);
}

#[test]
fn a_released_address_is_not_reused_while_others_are_free() {
    // Goal: allocation is round-robin: a just-released address comes back only after the rest of the block has been handed out.
    let mut h = Harness::new(small_layout());
    h.host("host-a");
    h.tenant("t1");
    let endpoints: Vec<u32> = (0..4)
        .map(|i| h.endpoint_of("host-a", "t1", "default", &format!("c{i}")))
        .collect();
    assert_eq!(endpoints, [2, 3, 4, 5]);
    h.applied(release(owner("c1", "eth0"))); // endpoint 3
    assert_eq!(
        h.endpoint_of("host-a", "t1", "default", "c4"),
        6,
        "not the just-released 3"
    );
    assert_eq!(
        h.endpoint_of("host-a", "t1", "default", "c5"),
        3,
        "3 once nothing else is free"
    );
    // Release 2 then 5: the cursor (at 3) moves on to 5 before wrapping to 2.
    h.applied(release(owner("c0", "eth0"))); // endpoint 2
    h.applied(release(owner("c3", "eth0"))); // endpoint 5
    assert_eq!(h.endpoint_of("host-a", "t1", "default", "c6"), 5);
    assert_eq!(h.endpoint_of("host-a", "t1", "default", "c7"), 2);
    let mut held: Vec<u32> = h
        .state
        .allocations
        .keys()
        .map(|a| h.parts(*a).endpoint)
        .collect();
    held.sort_unstable();
    assert_eq!(
        held,
        [2, 3, 4, 5, 6],
        "every usable endpoint once, no reserved one"
    );
}

#[test]
fn blocks_allocate_independently() {
    // Goal: each host/tenant/segment block has its own endpoints and cursor, so filling one neither skips nor shares addresses in another.
    let mut h = Harness::new(small_layout());
    h.host("host-a");
    h.host("host-b");
    h.tenant("t1");
    h.segment("t1", "s1");
    for i in 0..3 {
        h.allocate("host-a", "t1", "s1", &format!("a{i}"), "eth0");
    }
    let b = h.allocate("host-b", "t1", "s1", "b0", "eth0");
    let d = h.allocate("host-a", "t1", "default", "d0", "eth0");
    assert_eq!(
        b,
        Ipv4Addr::new(10, 0, 0, 128 + 64 + 8 + 2),
        "host 1 | tenant 1 | segment 1 | endpoint 2"
    );
    assert_eq!(
        h.parts(b),
        AddressParts {
            host: 1,
            tenant: 1,
            segment: 1,
            endpoint: 2
        }
    );
    assert_eq!(
        h.parts(d),
        AddressParts {
            host: 0,
            tenant: 1,
            segment: 0,
            endpoint: 2
        }
    );
}

#[test]
fn host_numbers_are_lowest_free_from_zero_and_run_out() {
    // Goal: hosts are numbered lowest-free from 0, a removed host's number is reused, and registering past the layout's width is HostsExhausted.
    let mut h = Harness::new(small_layout());
    assert_eq!(h.host("host-a"), 0);
    assert_eq!(h.host("host-b"), 1);
    assert_eq!(
        h.rejected(Command::RegisterNode {
            node_id: 7,
            name: "host-c".into(),
            address: "192.0.2.99:9600".into()
        }),
        Rejection::HostsExhausted { max: 2 }
    );
    assert!(!h.state.nodes.contains_key("host-c"));
    h.applied(remove_node("host-a", false));
    assert_eq!(h.host("host-c"), 0);
    assert_eq!(h.state.nodes["host-b"].host_number, 1);
    assert_eq!(
        h.rejected(remove_node("host-a", true)),
        Rejection::UnknownNode {
            name: "host-a".into()
        }
    );
}

#[test]
fn removing_a_host_with_addresses_needs_force() {
    // Goal: a host holding addresses is removed only with force, which releases exactly its addresses and leaves other hosts alone.
    let mut h = Harness::new(AddressLayout::default());
    assert_eq!(h.host("host-a"), 0);
    assert_eq!(h.host("host-b"), 1);
    assert_eq!(h.host("host-c"), 2);
    h.tenant("t1");
    h.segment("t1", "s1");
    let a1 = h.allocate("host-a", "t1", "s1", "a1", "eth0");
    let a2 = h.allocate("host-a", "t1", "default", "a2", "eth0");
    let b1 = h.allocate("host-b", "t1", "s1", "b1", "eth0");
    let node_a = h.state.nodes["host-a"].node_id;
    assert_eq!(
        h.rejected(remove_node("host-a", false)),
        Rejection::HostHasAddresses {
            name: "host-a".into(),
            count: 2
        }
    );
    assert!(h.state.nodes.contains_key("host-a"));
    let b_before = h.state.allocations[&b1].clone();
    let mut released = vec![a1, a2];
    released.sort();
    assert_eq!(
        h.applied(remove_node("host-a", true)),
        Effect::NodeRemoved {
            node_id: node_a,
            released
        }
    );
    assert!(!h.state.nodes.contains_key("host-a"));
    assert!(h.addresses_on("host-a").is_empty());
    assert!(!h.state.owners.contains_key(&owner("a1", "eth0")));
    assert!(!h.state.owners.contains_key(&owner("a2", "eth0")));
    assert!(
        h.state.cursors.keys().all(|block| block.host != 0),
        "host 0's cursors go with it"
    );
    assert_eq!(h.state.allocations.len(), 1);
    assert_eq!(h.state.allocations[&b1], b_before, "host-b untouched");
    assert_eq!(h.state.owners[&owner("b1", "eth0")], b1);
    // The freed number 0 goes to the next host, whose addresses are its own.
    assert_eq!(h.host("host-d"), 0);
    let d1 = h.allocate("host-d", "t1", "s1", "a1", "eth0");
    assert_eq!(h.parts(d1).host, 0);
    assert_eq!(h.state.allocations[&d1].host, "host-d");
    // A host without addresses goes without force.
    let node_c = h.state.nodes["host-c"].node_id;
    assert_eq!(
        h.applied(remove_node("host-c", false)),
        Effect::NodeRemoved {
            node_id: node_c,
            released: vec![]
        }
    );
    assert_eq!(h.host("host-e"), 2);
    assert!(matches!(
        h.rejected(allocate("host-a", "t1", "s1", owner("x", "eth0"))),
        Rejection::UnknownNode { .. }
    ));
}

#[test]
fn garbage_collection_releases_exactly_the_unlisted_owners_on_that_host() {
    // Goal: garbage collection on a host releases every address there whose owner is not listed, and nothing listed or on another host.
    let mut h = Harness::new(AddressLayout::default());
    h.host("host-a");
    h.host("host-b");
    h.tenant("t1");
    let keep1 = h.allocate("host-a", "t1", "default", "c1", "eth0");
    let doomed1 = h.allocate("host-a", "t1", "default", "c2", "eth0");
    let keep2 = h.allocate("host-a", "t1", "default", "c2", "eth1");
    let doomed2 = h.allocate("host-a", "t1", "default", "c3", "eth0");
    let b1 = h.allocate("host-b", "t1", "default", "c4", "eth0");
    let b2 = h.allocate("host-b", "t1", "default", "c5", "eth0");
    let on_b = h
        .state
        .allocations
        .iter()
        .filter(|(_, a)| a.host == "host-b")
        .count();
    assert_eq!(on_b, 2);
    let valid = [
        owner("c1", "eth0"),
        owner("c2", "eth1"),
        owner("c4", "eth0"), // on host-b: irrelevant here
        owner("c9", "eth0"), // holds nothing
    ];
    let mut expected = vec![doomed1, doomed2];
    expected.sort();
    assert_eq!(
        h.applied(garbage_collect("host-a", &valid)),
        Effect::GarbageCollected { released: expected }
    );
    assert_eq!(h.addresses_on("host-a"), [keep1, keep2]);
    assert_eq!(
        h.addresses_on("host-b"),
        [b1, b2],
        "host-b untouched (c5 is not listed but lives elsewhere)"
    );
    assert!(!h.state.owners.contains_key(&owner("c2", "eth0")));
    assert_eq!(h.state.owners[&owner("c2", "eth1")], keep2);
    // Again: nothing more to collect, nothing changes.
    let before = h.projection();
    assert_eq!(
        h.applied(garbage_collect("host-a", &valid)),
        Effect::GarbageCollected { released: vec![] }
    );
    assert_eq!(h.projection(), before);
    assert_eq!(
        h.rejected(garbage_collect("host-z", &[])),
        Rejection::UnknownNode {
            name: "host-z".into()
        }
    );
    // An empty list releases everything on that host only.
    assert_eq!(
        h.applied(garbage_collect("host-b", &[])),
        Effect::GarbageCollected {
            released: vec![b1, b2]
        }
    );
    assert_eq!(h.addresses_on("host-a"), [keep1, keep2]);
    assert_eq!(h.state.allocations.len(), 2);
}

#[test]
fn node_addresses_must_be_ipv4_with_a_port_outside_the_pod_cidr() {
    // Goal: `validate_node_address` accepts IPV4:PORT outside the pod CIDR and refuses everything else, and RegisterNode applies the same check.
    let layout = AddressLayout::default();
    assert_eq!(
        validate_node_address(&layout, "192.0.2.1:9600"),
        Ok(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(
        validate_node_address(&layout, "11.0.0.1:1"),
        Ok(Ipv4Addr::new(11, 0, 0, 1))
    );
    assert_eq!(
        validate_node_address(&layout, "9.255.255.255:65535"),
        Ok(Ipv4Addr::new(9, 255, 255, 255))
    );
    let refused = [
        ("[::1]:9600", "IPV4:PORT"),
        ("::1", "IPV4:PORT"),
        ("fe80::1:9600", "IPV4:PORT"),
        ("node-a:9600", "IPV4:PORT"),
        ("192.0.2:9600", "IPV4:PORT"),
        ("192.0.2.1", "IPV4:PORT"),
        ("", "IPV4:PORT"),
        ("192.0.2.1:", "port"),
        ("192.0.2.1:0", "port"),
        ("192.0.2.1:65536", "port"),
        ("192.0.2.1:http", "port"),
        ("192.0.2.1:-1", "port"),
        ("10.1.2.3:9600", "pod CIDR"),
        ("10.0.0.0:9600", "pod CIDR"),
        ("10.255.255.255:9600", "pod CIDR"),
    ];
    for (address, why) in refused {
        match validate_node_address(&layout, address) {
            Err(reason) => assert!(
                reason.contains(why),
                "{address:?}: {reason:?} should mention {why:?}"
            ),
            Ok(ip) => panic!("{address:?} accepted as {ip}"),
        }
    }
    // The pod CIDR is the layout's, not a fixed 10/8.
    assert!(validate_node_address(&small_layout(), "10.0.1.1:9600").is_ok());
    assert!(validate_node_address(&small_layout(), "10.0.0.200:9600").is_err());
    // And RegisterNode refuses the same, registering nothing.
    let mut h = Harness::new(layout);
    for (address, _) in refused {
        let command = Command::RegisterNode {
            node_id: 1,
            name: "host-a".into(),
            address: address.into(),
        };
        assert!(
            matches!(h.rejected(command), Rejection::InvalidArgument { .. }),
            "{address:?}"
        );
    }
    assert!(h.state.nodes.is_empty());
}

// Regression: the port used to be parsed with `u16::from_str`, which
// accepts a leading '+', so "192.0.2.1:+9600" was accepted although peers
// cannot dial it.
#[test]
fn accepted_node_addresses_are_socket_addresses() {
    // Goal: every address the validator accepts parses as a socket address with the same IP, and no other form (such as a '+' sign on the port) is accepted.
    let layout = AddressLayout::default();
    for address in ["192.0.2.1:9600", "192.0.2.1:1", "192.0.2.1:65535"] {
        let ip = validate_node_address(&layout, address).expect(address);
        assert_eq!(address.parse::<SocketAddrV4>().map(|s| *s.ip()), Ok(ip));
    }
    for address in ["192.0.2.1: 9600", "192.0.2.1:+9600"] {
        assert!(address.parse::<SocketAddrV4>().is_err());
        assert!(
            validate_node_address(&layout, address).is_err(),
            "{address:?} accepted but is not IPV4:PORT"
        );
    }
}

#[test]
fn check_invariants_catches_a_corrupted_state() {
    // Goal: `check_invariants` really detects the corruptions the other tests rely on it to rule out.
    let mut h = Harness::new(small_layout());
    h.host("host-a");
    h.host("host-b");
    h.tenant("t1");
    let address = h.allocate("host-a", "t1", "default", "c1", "eth0");
    assert_eq!(h.state.check_invariants(), Ok(()));
    let good = h.state.clone();
    let corrupt = |change: &dyn Fn(&mut ClusterState)| {
        let mut state = good.clone();
        change(&mut state);
        state.check_invariants()
    };
    assert!(corrupt(&|s| {
        s.owners.clear();
    })
    .is_err());
    assert!(corrupt(&|s| {
        s.owners
            .insert(owner("c1", "eth0"), Ipv4Addr::new(10, 0, 0, 3));
    })
    .is_err());
    assert!(corrupt(&|s| {
        s.nodes.get_mut("host-b").expect("host-b").host_number = 0;
    })
    .is_err());
    assert!(corrupt(&|s| {
        let record = s.allocations.remove(&address).expect("allocated");
        let broadcast = Ipv4Addr::from(u32::from(address) | 7);
        s.owners.insert(record.owner.clone(), broadcast);
        s.allocations.insert(broadcast, record);
    })
    .is_err());
    assert!(corrupt(&|s| {
        s.allocations.get_mut(&address).expect("allocated").host = "host-b".into();
    })
    .is_err());
    assert!(corrupt(&|s| {
        s.allocations.get_mut(&address).expect("allocated").segment = "nope".into();
    })
    .is_err());
}

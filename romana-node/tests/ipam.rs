//! Topology and IPAM through real multi-process clusters: concurrent
//! allocation through every node, idempotency, exhaustion, host removal,
//! layout validation at start, and a leader killed mid-burst.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use raft_store::layout::AddressLayout;
use raft_store::state::{Effect, Outcome};
use romana_api::ipam::{AllocateBody, AllocationView, HostView, NameBody, ReleaseBody, TenantView};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_HOSTS, PATH_RELEASE, PATH_TENANTS};
use romana_node::http_client::{ApiClient, CallError};

/// A write's answer with the event model's outcome.
type WriteResult = romana_api::cluster::WriteResult<raft_store::state::Outcome>;

fn allocate_body(host: &str, tenant: &str, segment: &str, container_id: &str) -> AllocateBody {
    AllocateBody {
        host: Some(host.to_string()),
        tenant: Some(tenant.to_string()),
        segment: Some(segment.to_string()),
        container_id: container_id.to_string(),
        ifname: "eth0".into(),
        pod_namespace: Some(tenant.to_string()),
        pod_name: Some(format!("pod-{container_id}")),
        network: None,
        request_id: None,
    }
}

async fn allocate(
    client: &ApiClient,
    host: &str,
    tenant: &str,
    segment: &str,
    container_id: &str,
) -> Result<AllocationView, CallError> {
    client
        .post(
            PATH_ALLOCATIONS,
            &allocate_body(host, tenant, segment, container_id),
        )
        .await
}

async fn release(client: &ApiClient, container_id: &str) -> WriteResult {
    let body = ReleaseBody {
        container_id: container_id.into(),
        ifname: "eth0".into(),
        request_id: None,
    };
    client
        .post(PATH_RELEASE, &body)
        .await
        .expect("release answered")
}

async fn create_tenant(client: &ApiClient, name: &str) {
    let body = NameBody {
        name: name.into(),
        request_id: None,
    };
    let _: WriteResult = client
        .post(PATH_TENANTS, &body)
        .await
        .expect("create tenant");
}

async fn create_segment(client: &ApiClient, tenant: &str, name: &str) {
    let body = NameBody {
        name: name.into(),
        request_id: None,
    };
    let _: WriteResult = client
        .post(&format!("{PATH_TENANTS}/{tenant}/segments"), &body)
        .await
        .expect("create segment");
}

/// Asserts that every allocation lies in the block of its host, tenant and
/// segment, and that no address appears twice.
async fn assert_allocations_consistent(client: &ApiClient, allocations: &[AllocationView]) {
    let layout = AddressLayout::default();
    let hosts: Vec<HostView> = client.get(PATH_HOSTS).await.expect("hosts");
    let tenants: Vec<TenantView> = client.get(PATH_TENANTS).await.expect("tenants");
    let mut seen = BTreeSet::new();
    for allocation in allocations {
        assert!(
            seen.insert(allocation.address),
            "{} allocated twice",
            allocation.address
        );
        let parts = layout.decode(allocation.address).expect("inside the CIDR");
        let host = hosts
            .iter()
            .find(|h| h.name == allocation.host)
            .expect("known host");
        let tenant = tenants
            .iter()
            .find(|t| t.name == allocation.tenant)
            .expect("known tenant");
        let segment = tenant
            .segments
            .iter()
            .find(|s| s.name == allocation.segment)
            .expect("known segment");
        assert_eq!(
            (parts.host, parts.tenant, parts.segment),
            (host.host_number, tenant.number, segment.number),
            "{} is outside the block of {}/{}/{}",
            allocation.address,
            allocation.host,
            allocation.tenant,
            allocation.segment
        );
        assert!(
            layout.is_usable_endpoint(parts.endpoint),
            "{} is reserved",
            allocation.address
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_through_every_node_are_distinct_and_agree() {
    // Goal: 300 allocations issued at once through all three nodes, for
    // several tenants on several hosts, are all distinct, each inside its
    // block, and every node lists exactly the same allocations.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let client = cluster.nodes[0].client();
    for tenant in ["t1", "t2", "t3"] {
        create_tenant(&client, tenant).await;
        create_segment(&client, tenant, "web").await;
    }
    let hosts: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let clients: Vec<ApiClient> = cluster.nodes.iter().map(|n| n.client()).collect();
    let mut tasks = Vec::new();
    for i in 0..300usize {
        // Through node i % 3, for host (i / 3) % 3, tenant (i / 9) % 3:
        // every node takes requests for every host and tenant.
        let client = clients[i % 3].clone();
        let host = hosts[(i / 3) % 3].clone();
        let tenant = ["t1", "t2", "t3"][(i / 9) % 3].to_string();
        let segment = if i % 2 == 0 { "default" } else { "web" };
        tasks.push(tokio::spawn(async move {
            allocate(&client, &host, &tenant, segment, &format!("c{i}")).await
        }));
    }
    let mut allocated = Vec::new();
    for task in tasks {
        allocated.push(task.await.expect("task").expect("allocation accepted"));
    }
    assert_eq!(allocated.len(), 300);
    assert_allocations_consistent(&client, &allocated).await;

    cluster.wait_converged(&[0, 1, 2]).await;
    let lists: Vec<Vec<AllocationView>> = {
        let mut lists = Vec::new();
        for node in &cluster.nodes {
            lists.push(node.client().get(PATH_ALLOCATIONS).await.expect("list"));
        }
        lists
    };
    assert_eq!(lists[0].len(), 300);
    assert_eq!(lists[0], lists[1], "node 0 and node 1 disagree");
    assert_eq!(lists[0], lists[2], "node 0 and node 2 disagree");
    // Every acknowledged allocation is what the list says.
    for view in &allocated {
        let listed = lists[0]
            .iter()
            .find(|l| l.address == view.address)
            .expect("listed");
        assert_eq!(listed.container_id, view.container_id);
    }
    // romanactl's table shows them too, identically from every node.
    let outputs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            let (ok, stdout, stderr) =
                romanactl(&["--socket", &path_arg(&n.socket), "ipam", "list"]);
            assert!(ok, "{stderr}");
            stdout
        })
        .collect();
    assert_eq!(outputs[0].lines().count(), 301, "a header and 300 rows");
    assert!(
        outputs.iter().all(|o| *o == outputs[0]),
        "ipam list differs between nodes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_and_release_are_idempotent_and_exhaustion_is_clear() {
    // Goal: the same (container, interface) twice gets the same address;
    // release twice succeeds once and changes nothing the second time; a
    // full block fails naming host, tenant and segment; freed addresses come
    // back only after the rest of the block was handed out.
    let layout_args = [
        "--cidr",
        "10.0.0.0/24",
        "--host-bits",
        "1",
        "--tenant-bits",
        "2",
        "--segment-bits",
        "2",
        "--endpoint-bits",
        "3",
    ];
    let mut cluster = TestCluster::new(1, &layout_args);
    cluster.start_all().await;
    let client = cluster.nodes[0].client();
    let host = cluster.nodes[0].name.clone();
    create_tenant(&client, "t1").await;

    let first = allocate(&client, &host, "t1", "default", "a")
        .await
        .expect("allocate");
    let again = allocate(&client, &host, "t1", "default", "a")
        .await
        .expect("repeat");
    assert_eq!(
        first.address, again.address,
        "a repeated allocation returns the same address"
    );
    // Tenant bits start above 3 endpoint and 2 segment bits: tenant 1 is 32.
    assert_eq!(
        first.address,
        Ipv4Addr::new(10, 0, 0, 32 + 2),
        "host 0, tenant 1, default segment, endpoint 2"
    );

    let released = release(&client, "a").await;
    assert!(
        matches!(released.outcome, Outcome::Applied(Effect::AddressReleased { address }) if address == first.address)
    );
    let released_again = release(&client, "a").await;
    assert_eq!(
        released_again.outcome,
        Outcome::Applied(Effect::NothingToRelease)
    );

    // 3 endpoint bits: endpoints 2..=6 are usable, five addresses.
    let mut held = Vec::new();
    for name in ["b", "c", "d", "e", "f"] {
        held.push(
            allocate(&client, &host, "t1", "default", name)
                .await
                .expect("fits")
                .address,
        );
    }
    assert_eq!(
        held.last(),
        Some(&first.address),
        "the freed address is handed out only once the rest is used"
    );
    match allocate(&client, &host, "t1", "default", "g").await {
        Err(CallError::Status { status, message }) => {
            assert_eq!(status, StatusCode::CONFLICT);
            for part in [host.as_str(), "t1", "default"] {
                assert!(message.contains(part), "{message:?} should name {part}");
            }
        }
        other => panic!("a full block must refuse, got {other:?}"),
    }
    let listed: Vec<AllocationView> = client.get(PATH_ALLOCATIONS).await.expect("list");
    assert_eq!(
        listed.len(),
        5,
        "the refused allocation left nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_only_its_own_request() {
    // Goal: a retry with the same request id returns the first outcome and
    // adds no log entry, through any node; the same id with a different
    // body is refused with 409 naming the id, and allocates nothing.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let client = cluster.nodes[follower].client();
    let host = cluster.nodes[follower].name.clone();
    create_tenant(&client, "t1").await;
    let mut body = allocate_body(&host, "t1", "default", "x");
    body.request_id = Some("rid-1".into());
    let first: AllocationView = client.post(PATH_ALLOCATIONS, &body).await.expect("first");
    cluster.wait_converged(&[0, 1, 2]).await;
    let before = cluster.nodes[leader].status().await.expect("status");
    for node in [follower, leader] {
        let again: AllocationView = cluster.nodes[node]
            .client()
            .post(PATH_ALLOCATIONS, &body)
            .await
            .expect("retry");
        assert_eq!(again.address, first.address, "retry through node {node}");
    }
    let mut other = allocate_body(&host, "t1", "default", "y");
    other.request_id = Some("rid-1".into());
    for node in [follower, leader] {
        match cluster.nodes[node]
            .client()
            .post::<_, AllocationView>(PATH_ALLOCATIONS, &other)
            .await
        {
            Err(CallError::Status { status, message }) => {
                assert_eq!(status, StatusCode::CONFLICT, "{message}");
                assert!(message.contains("rid-1"), "{message:?} should name the id");
            }
            answer => panic!("a reused id must be refused, got {answer:?}"),
        }
    }
    let after = cluster.nodes[leader].status().await.expect("status");
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "neither the retries nor the refusals became log entries"
    );
    let listed: Vec<AllocationView> = client.get(PATH_ALLOCATIONS).await.expect("list");
    assert_eq!(listed.len(), 1, "only the first request allocated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_host_with_addresses_needs_force_and_releases_them() {
    // Goal: unforced removal of a host holding addresses is refused and
    // changes nothing; forced removal releases exactly its addresses.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let client = cluster.nodes[0].client();
    create_tenant(&client, "t1").await;
    let doomed = cluster.nodes[2].name.clone();
    let kept = cluster.nodes[1].name.clone();
    for i in 0..3 {
        allocate(&client, &doomed, "t1", "default", &format!("d{i}"))
            .await
            .expect("allocate");
    }
    let survivor = allocate(&client, &kept, "t1", "default", "k0")
        .await
        .expect("allocate");

    let socket = path_arg(&cluster.nodes[0].socket);
    let before = cluster.wait_converged(&[0, 1, 2]).await;
    let (ok, _, stderr) = romanactl(&["--socket", &socket, "node", "remove", &doomed]);
    assert!(!ok, "unforced removal must be refused");
    assert!(stderr.contains("still holds 3 address"), "{stderr}");
    let after = cluster.wait_converged(&[0, 1, 2]).await;
    assert_eq!(
        after.state_hash, before.state_hash,
        "a refused removal changed the state"
    );
    assert_eq!(
        after.members.len(),
        3,
        "a refused removal changed the membership"
    );

    let (ok, stdout, stderr) =
        romanactl(&["--socket", &socket, "node", "remove", "--force", &doomed]);
    assert!(ok, "forced removal failed: {stderr}");
    assert!(stdout.contains("released"), "{stdout}");
    let doomed_index = 2;
    cluster.nodes[doomed_index].kill();
    wait_for("the host to be gone", || async {
        match client.get::<Vec<HostView>>(PATH_HOSTS).await {
            Ok(hosts) => hosts.iter().all(|h| h.name != doomed),
            Err(_) => false,
        }
    })
    .await;
    let listed: Vec<AllocationView> = client.get(PATH_ALLOCATIONS).await.expect("list");
    assert_eq!(
        listed.len(),
        1,
        "only the other host's address is left: {listed:?}"
    );
    assert_eq!(listed[0].address, survivor.address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_layout_is_refused_at_start_and_nothing_is_written() {
    // Goal: widths that do not sum, a CIDR with host bits set, zero-width
    // fields: the node refuses to start, says what is wrong, and creates no
    // data dir.
    let root = tempfile::Builder::new()
        .prefix("romana-test-")
        .tempdir()
        .expect("temp");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--endpoint-bits", "4"],
            "host (8) + tenant (4) + segment (4) + endpoint (4) bits = 20, but /8 leaves 24",
        ),
        (&["--cidr", "10.0.0.1/8"], "did you mean 10.0.0.0/8"),
        (
            &["--tenant-bits", "0", "--segment-bits", "8"],
            "tenant bits must be at least 1",
        ),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let data_dir = root.path().join(format!("data-{i}"));
        let output = std::process::Command::new(NODE_BINARY)
            .args([
                "run",
                "--name",
                "x",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--api-socket")
            .arg(root.path().join(format!("{i}.sock")))
            .args(*args)
            .output()
            .expect("run romana-node");
        assert!(!output.status.success(), "{args:?} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: {stderr:?} should say {expected:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!data_dir.exists(), "{args:?}: nothing may be written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_burst_loses_and_duplicates_no_allocation() {
    // Goal: allocations keep coming while the leader is killed; every
    // acknowledged allocation survives with its address, and no address is
    // held twice.
    const ALLOCATIONS: usize = 300;
    const WRITERS: usize = 4;
    const KILL_AFTER: usize = 100;
    const ATTEMPTS: usize = 100;
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let client = cluster.nodes[0].client();
    create_tenant(&client, "t1").await;
    cluster.wait_converged(&[0, 1, 2]).await;
    let leader = cluster.leader_index().await.expect("leader");
    let hosts: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let clients: Vec<ApiClient> = cluster
        .nodes
        .iter()
        .map(|n| n.client().with_timeout(Duration::from_secs(10)))
        .collect();
    let acknowledged = Arc::new(Mutex::new(Vec::<AllocationView>::new()));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (clients, hosts, acknowledged) = (clients.clone(), hosts.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for n in 0..ALLOCATIONS / WRITERS {
                let container = format!("w{writer}-{n}");
                let host = &hosts[n % hosts.len()];
                let mut result = None;
                // Retrying on another node is safe: allocation is idempotent
                // on (container, interface).
                for attempt in 0..ATTEMPTS {
                    let client = &clients[(writer + n + attempt) % clients.len()];
                    if let Ok(view) = allocate(client, host, "t1", "default", &container).await {
                        result = Some(view);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                match result {
                    Some(view) => acknowledged.lock().expect("lock").push(view),
                    None => failures.push(container),
                }
            }
            failures
        }));
    }
    wait_for("allocations before the kill", || async {
        acknowledged.lock().expect("lock").len() >= KILL_AFTER
    })
    .await;
    cluster.nodes[leader].kill();
    for writer in writers {
        let failures = writer.await.expect("writer");
        assert!(failures.is_empty(), "never acknowledged: {failures:?}");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert_eq!(acknowledged.len(), ALLOCATIONS);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.wait_converged(&survivors).await;
    let listed: Vec<AllocationView> = cluster.nodes[survivors[0]]
        .client()
        .get(PATH_ALLOCATIONS)
        .await
        .expect("list");
    assert_allocations_consistent(&cluster.nodes[survivors[0]].client(), &listed).await;
    assert_eq!(
        listed.len(),
        ALLOCATIONS,
        "exactly one address per container"
    );
    for view in &acknowledged {
        let held = listed
            .iter()
            .find(|l| l.container_id == view.container_id)
            .unwrap_or_else(|| panic!("acknowledged allocation of {} lost", view.container_id));
        assert_eq!(
            held.address, view.address,
            "{} changed address",
            view.container_id
        );
    }
    cluster.nodes[leader].start();
    cluster.wait_converged(&[0, 1, 2]).await;
}

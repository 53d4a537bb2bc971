//! The kill -9 soak, behind the `soak` feature (not in the default test
//! run): `cargo test -p romana-node --features soak --test soak -- --nocapture`.
//! `ROMANA_SOAK_KILLS` (default 100) and `ROMANA_SOAK_SEED` (default: the
//! time, printed) set it.
//!
//! Three real nodes; four clients allocate addresses through the unix
//! sockets of nodes chosen at random, and release their oldest once they
//! hold [`LIVE_PER_CLIENT`] (so addresses are reused), retrying a failed
//! request with the same request id on another node; meanwhile a random
//! node is killed with SIGKILL and restarted, again and again. Afterwards:
//! every node answers, all converge to one hash, no address is held twice,
//! and the allocations are exactly the acknowledged ones not released since,
//! each with the address it was acknowledged with (none lost, none leaked).

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use romana_api::cluster::WriteResult;
use romana_api::ipam::{AllocateBody, AllocationView, NameBody, ReleaseBody};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_RELEASE, PATH_TENANTS};
use romana_node::http_client::{ApiClient, Endpoint};

/// xorshift64*: reproducible from the printed seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Addresses a client holds before it releases its oldest.
const LIVE_PER_CLIENT: usize = 20;

/// How long one request may take to be acknowledged, retries included.
const ACK_DEADLINE: Duration = Duration::from_secs(120);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Posts `body` to random nodes until one acknowledges it (the same
/// request id every time); the answer and how many attempts failed.
async fn until_acknowledged<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    what: &str,
    path: &str,
    body: &B,
    sockets: &[std::path::PathBuf],
    random: &mut Random,
) -> (T, u64) {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let socket = &sockets[random.below(sockets.len() as u64) as usize];
        let api = ApiClient::new(Endpoint::Unix(socket.clone()), None)
            .with_timeout(Duration::from_secs(10));
        match api.post::<_, T>(path, body).await {
            Ok(answer) => return (answer, failed),
            Err(e) => {
                failed += 1;
                assert!(
                    started.elapsed() < ACK_DEADLINE,
                    "{what} not acknowledged within {ACK_DEADLINE:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One client's loop until `stop`: allocate for a fresh container id,
/// release the oldest beyond [`LIVE_PER_CLIENT`]; the number of failed
/// attempts. A request in flight is finished even after `stop`.
async fn client_loop(
    client: usize,
    sockets: Arc<Vec<std::path::PathBuf>>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<BTreeMap<String, Ipv4Addr>>>,
    seed: u64,
) -> (u64, u64) {
    let mut random = Random(seed ^ (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut failed, mut released) = (0, 0);
    let mut mine = std::collections::VecDeque::new();
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        sequence += 1;
        let container_id = format!("soak-{client}-{sequence}");
        let body = AllocateBody {
            host: Some("n0".into()),
            tenant: Some("soak".into()),
            segment: None,
            container_id: container_id.clone(),
            ifname: "eth0".into(),
            pod_namespace: None,
            pod_name: None,
            network: None,
            request_id: Some(format!("alloc-{container_id}")),
        };
        let (view, failures): (AllocationView, u64) = until_acknowledged(
            &container_id,
            PATH_ALLOCATIONS,
            &body,
            &sockets,
            &mut random,
        )
        .await;
        failed += failures;
        let previous = live
            .lock()
            .expect("lock")
            .insert(container_id.clone(), view.address);
        assert!(previous.is_none(), "{container_id} acknowledged twice");
        mine.push_back(container_id);
        if mine.len() > LIVE_PER_CLIENT {
            let Some(oldest) = mine.pop_front() else {
                continue;
            };
            let body = ReleaseBody {
                container_id: oldest.clone(),
                ifname: "eth0".into(),
                request_id: Some(format!("release-{oldest}")),
            };
            let (_, failures): (WriteResult, u64) =
                until_acknowledged(&oldest, PATH_RELEASE, &body, &sockets, &mut random).await;
            failed += failures;
            live.lock().expect("lock").remove(&oldest);
            released += 1;
        }
    }
    (failed, released)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_soak_loses_nothing_and_leaks_nothing() {
    let kills = env_u64("ROMANA_SOAK_KILLS").unwrap_or(100);
    let seed = env_u64("ROMANA_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    eprintln!("soak: {kills} kills, ROMANA_SOAK_SEED={seed}");
    let mut random = Random(seed);
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let body = NameBody {
        name: "soak".into(),
        request_id: Some("soak-tenant".into()),
    };
    let _: WriteResult = cluster.nodes[0]
        .client()
        .post(PATH_TENANTS, &body)
        .await
        .expect("tenant");
    cluster.wait_converged(&[0, 1, 2]).await;

    let sockets: Arc<Vec<_>> = Arc::new(cluster.nodes.iter().map(|n| n.socket.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Mutex::new(BTreeMap::new()));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            tokio::spawn(client_loop(
                client,
                sockets.clone(),
                stop.clone(),
                live.clone(),
                seed,
            ))
        })
        .collect();

    let started = Instant::now();
    for kill in 1..=kills {
        let victim = random.below(3) as usize;
        cluster.nodes[victim].kill();
        tokio::time::sleep(Duration::from_millis(100 + random.below(900))).await;
        cluster.nodes[victim].start();
        // Serving again (its socket answers) before the next kill, so that a
        // quorum is never lost for long.
        wait_for(
            &format!("n{victim} to serve again after kill {kill}"),
            || async { cluster.nodes[victim].status().await.is_ok() },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200 + random.below(800))).await;
        if kill % 10 == 0 {
            let count = live.lock().expect("lock").len();
            eprintln!(
                "soak: {kill} kills, {count} held, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut failed, mut released) = (0, 0);
    for client in clients {
        let (f, r) = client.await.expect("client");
        failed += f;
        released += r;
    }
    let converged = cluster.wait_converged(&[0, 1, 2]).await;
    let acknowledged = live.lock().expect("lock").clone();
    let mut held: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for node in &cluster.nodes {
        let allocations: Vec<AllocationView> = node
            .client()
            .get(PATH_ALLOCATIONS)
            .await
            .expect("allocations");
        let mine: BTreeMap<String, Ipv4Addr> = allocations
            .iter()
            .map(|a| (a.container_id.clone(), a.address))
            .collect();
        assert_eq!(
            mine.len(),
            allocations.len(),
            "{}: a container holds two addresses",
            node.name
        );
        assert_eq!(
            mine, acknowledged,
            "{}: the allocations are not exactly the acknowledged ones not released",
            node.name
        );
        held.clear();
        for allocation in &allocations {
            if let Some(other) = held.insert(allocation.address, allocation.container_id.clone()) {
                panic!(
                    "{} is held by {other} and {}",
                    allocation.address, allocation.container_id
                );
            }
        }
    }
    eprintln!(
        "soak: {kills} kills in {:.0} s; {} addresses held at the end, {released} released, {failed} failed attempts retried; no duplicate, none lost, none leaked; all at index {} hash {}",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        converged.applied_index,
        converged.state_hash
    );
    assert!(released > 0, "the load released nothing: it did not run");
}

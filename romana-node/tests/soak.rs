//! The kill -9 soak, behind the `soak` feature (not in the default test
//! run): `cargo test -p romana-node --features soak --test soak -- --nocapture`.
//! `ROMANA_SOAK_KILLS` (default 100) and `ROMANA_SOAK_SEED` (default: the
//! time, printed) set it.
//!
//! Three real nodes; four clients allocate addresses through the unix
//! sockets of nodes chosen at random, retrying a failed request with the
//! same request id on another node; meanwhile a random node is killed with
//! SIGKILL and restarted, again and again. Afterwards: every node answers,
//! all converge to one hash, no address is held twice, and the allocations
//! are exactly the acknowledged ones, each with the address it was
//! acknowledged with (none lost, none leaked).

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use romana_api::cluster::WriteResult;
use romana_api::ipam::{AllocateBody, AllocationView, NameBody};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_TENANTS};
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

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// One client's loop: allocate for fresh container ids until `stop`, each
/// request retried (same id, another node) until acknowledged.
async fn client_loop(
    client: usize,
    sockets: Arc<Vec<std::path::PathBuf>>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<String, Ipv4Addr>>>,
    seed: u64,
) -> u64 {
    let mut random = Random(seed ^ (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut retries = 0;
    let mut sequence = 0;
    // A request in flight is finished even after `stop`: its outcome may
    // be committed, and the check below counts what was acknowledged.
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
            request_id: Some(format!("req-{container_id}")),
        };
        let started = Instant::now();
        loop {
            let socket = &sockets[random.below(sockets.len() as u64) as usize];
            let api = ApiClient::new(Endpoint::Unix(socket.clone()), None)
                .with_timeout(Duration::from_secs(10));
            match api.post::<_, AllocationView>(PATH_ALLOCATIONS, &body).await {
                Ok(view) => {
                    let previous = acknowledged
                        .lock()
                        .expect("lock")
                        .insert(container_id.clone(), view.address);
                    assert!(previous.is_none(), "{container_id} acknowledged twice");
                    break;
                }
                Err(e) => {
                    retries += 1;
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "{container_id} not acknowledged within 120 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    retries
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
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            tokio::spawn(client_loop(
                client,
                sockets.clone(),
                stop.clone(),
                acknowledged.clone(),
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
            let count = acknowledged.lock().expect("lock").len();
            eprintln!(
                "soak: {kill} kills, {count} acknowledged, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut retries = 0;
    for client in clients {
        retries += client.await.expect("client");
    }
    let converged = cluster.wait_converged(&[0, 1, 2]).await;
    let acknowledged = acknowledged.lock().expect("lock").clone();
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
            "{}: the allocations are not exactly the acknowledged ones",
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
        "soak: {kills} kills in {:.0} s, {} allocations acknowledged, {retries} retried requests, no duplicate, none lost, none leaked; all at index {} hash {}",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        converged.applied_index,
        converged.state_hash
    );
    assert!(!acknowledged.is_empty(), "the load made no allocation");
}

//! Real multi-process clusters on loopback: formation, failover, restart,
//! rejoin after a wipe, learners, snapshots, and bad input.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hyper::{Method, StatusCode};
use raft_store::state::AppliedRequest;
use romana_api::cluster::{NodeView, StatusView};
use romana_api::paths::{PATH_NODES, PATH_NOTES, PATH_STATUS};
use romana_node::http_client::{ApiClient, CallError, Endpoint};

/// Is `request_id` recorded in `node`'s replica?
async fn has_request(node: &TestNode, request_id: &str) -> bool {
    node.client()
        .get::<AppliedRequest>(&format!("/v1/requests/{request_id}"))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_apply_a_write_made_through_any_of_them() {
    // Goal: a write through any member is applied on all three, and at the
    // same applied index their state hashes are equal.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    wait_for("three voters", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if s.members.iter().filter(|m| m.role == "voter").count() == 3)
    })
    .await;

    for (i, node) in cluster.nodes.iter().enumerate() {
        let result = write_note(&node.client(), &format!("through-{i}"))
            .await
            .expect("write accepted");
        assert!(result.index > 0);
        // Read-your-writes: the node that took the write has applied it.
        assert!(has_request(node, &format!("through-{i}")).await);
    }
    cluster.wait_converged(&[0, 1, 2]).await;
    for node in &cluster.nodes {
        for i in 0..3 {
            assert!(
                has_request(node, &format!("through-{i}")).await,
                "{} lacks write {i}",
                node.name
            );
        }
    }
    // The same request id again has no second effect.
    let before = cluster.wait_converged(&[0, 1, 2]).await;
    let again = write_note(&cluster.nodes[2].client(), "through-0")
        .await
        .expect("repeat answered");
    let original = cluster.nodes[0]
        .client()
        .get::<AppliedRequest>("/v1/requests/through-0")
        .await
        .expect("recorded");
    assert_eq!(
        again.index, original.index,
        "a repeated request id returns the first outcome"
    );
    let after = cluster.wait_converged(&[0, 1, 2]).await;
    assert_eq!(
        before.state_hash, after.state_hash,
        "a repeated request changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_write_loses_no_acknowledged_write() {
    // Goal: while a client writes 1,000 entries, kill -9 the leader; a new
    // leader takes over within 3 s, every acknowledged write is on both
    // survivors, and the killed node restarted from disk catches up.
    const WRITES: usize = 1000;
    const WRITERS: usize = 4;
    const KILL_AFTER: usize = 300;
    const ATTEMPTS_PER_WRITE: usize = 100;
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    let status = cluster.wait_converged(&[0, 1, 2]).await;
    let old_term = status.term;
    let leader = cluster.leader_index().await.expect("a leader");

    let clients: Vec<ApiClient> = cluster
        .nodes
        .iter()
        .map(|n| n.client().with_timeout(Duration::from_secs(10)))
        .collect();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let progress = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let clients = clients.clone();
        let acknowledged = acknowledged.clone();
        let progress = progress.clone();
        writers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for n in 0..WRITES / WRITERS {
                let request_id = format!("w{writer}-{n}");
                let mut done = false;
                // On an error, retry the same request id on the next node:
                // idempotency makes the retry safe.
                for attempt in 0..ATTEMPTS_PER_WRITE {
                    let client = &clients[(writer + n + attempt) % clients.len()];
                    if write_note(client, &request_id).await.is_ok() {
                        done = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if done {
                    acknowledged.lock().expect("lock").insert(request_id);
                    progress.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.push(request_id);
                }
            }
            failures
        }));
    }

    wait_for("writes before the kill", || async {
        progress.load(Ordering::SeqCst) >= KILL_AFTER
    })
    .await;
    cluster.nodes[leader].kill();
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let failover = loop {
        let mut new_leader = false;
        for &i in &survivors {
            if let Ok(s) = cluster.nodes[i].status().await {
                if s.role == "leader" && s.term > old_term {
                    new_leader = true;
                }
            }
        }
        if new_leader {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no new leader 10 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("failover took {failover:?}");
    assert!(
        failover <= Duration::from_secs(3),
        "a new leader must take over within 3 s, took {failover:?}"
    );

    for writer in writers {
        let failures = writer.await.expect("writer task");
        assert!(
            failures.is_empty(),
            "writes never acknowledged: {failures:?}"
        );
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert_eq!(acknowledged.len(), WRITES);
    cluster.wait_converged(&survivors).await;
    for &i in &survivors {
        for request_id in &acknowledged {
            assert!(
                has_request(&cluster.nodes[i], request_id).await,
                "{} lost acknowledged write {request_id}",
                cluster.nodes[i].name
            );
        }
    }

    cluster.nodes[leader].start();
    let converged = cluster.wait_converged(&[0, 1, 2]).await;
    println!(
        "restarted node caught up at index {}",
        converged.applied_index
    );
    for request_id in &acknowledged {
        assert!(
            has_request(&cluster.nodes[leader], request_id).await,
            "restarted node lacks {request_id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_state_and_never_reinitialises() {
    // Goal: stop and restart all three: same state hash, same members,
    // the cluster's first entry not written again.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    for i in 0..20 {
        write_note(&cluster.nodes[i % 3].client(), &format!("before-{i}"))
            .await
            .expect("write");
    }
    let before = cluster.wait_converged(&[0, 1, 2]).await;
    let init_before: AppliedRequest = cluster.nodes[0]
        .client()
        .get("/v1/requests/init-cluster")
        .await
        .expect("init recorded");
    let members_before: BTreeSet<(String, u64)> = before
        .members
        .iter()
        .map(|m| (m.name.clone(), m.id))
        .collect();

    for node in &mut cluster.nodes {
        node.stop();
    }
    for node in &mut cluster.nodes {
        node.start();
    }
    let after = cluster.wait_converged(&[0, 1, 2]).await;
    assert_eq!(
        after.state_hash, before.state_hash,
        "state changed across a full restart"
    );
    assert!(after.applied_index >= before.applied_index);
    let members_after: BTreeSet<(String, u64)> = after
        .members
        .iter()
        .map(|m| (m.name.clone(), m.id))
        .collect();
    assert_eq!(members_after, members_before);
    let init_after: AppliedRequest = cluster.nodes[1]
        .client()
        .get("/v1/requests/init-cluster")
        .await
        .expect("init recorded");
    assert_eq!(init_after, init_before, "the cluster was initialised again");
    for node in &cluster.nodes {
        assert_eq!(
            node.log_text()
                .matches("initialised a new single-node cluster")
                .count(),
            usize::from(node.name == "n0")
        );
    }
    write_note(&cluster.nodes[2].client(), "after-restart")
        .await
        .expect("writes after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_by_the_documented_procedure() {
    // Goal: a node whose data dir was wiped cannot silently take its old
    // identity; after `romanactl node remove NAME` it rejoins with --join,
    // and the others are unharmed.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    write_note(&cluster.nodes[0].client(), "before-wipe")
        .await
        .expect("write");
    cluster.wait_converged(&[0, 1, 2]).await;
    let old_id = cluster.nodes[2].status().await.expect("status").id;

    cluster.nodes[2].kill();
    cluster.nodes[2].wipe();
    cluster.nodes[2].start();
    let status = cluster.nodes[2]
        .wait_exit(Duration::from_secs(30))
        .expect("the wiped node must refuse to start");
    assert!(!status.success());
    let log = cluster.nodes[2].log_text();
    assert!(
        log.contains("romanactl node remove n2"),
        "the refusal names the procedure: {log}"
    );

    // The documented procedure: remove the old identity, then rejoin.
    let socket = path_arg(&cluster.nodes[0].socket);
    let (ok, stdout, stderr) = romanactl(&["--socket", &socket, "node", "remove", "n2"]);
    assert!(ok, "node remove failed: {stdout} {stderr}");
    cluster.nodes[2].wipe();
    cluster.nodes[2].start();
    let converged = cluster.wait_converged(&[0, 1, 2]).await;
    let new_id = cluster.nodes[2].status().await.expect("status").id;
    assert_ne!(new_id, old_id);
    assert!(
        converged.members.iter().all(|m| m.id != old_id),
        "the old identity is gone"
    );
    assert_eq!(converged.members.len(), 3);
    assert!(
        has_request(&cluster.nodes[2], "before-wipe").await,
        "the rejoined node has the history"
    );
    write_note(&cluster.nodes[2].client(), "after-rejoin")
        .await
        .expect("writes after rejoin");
    cluster.wait_converged(&[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_keep_three_voters_and_promote_a_learner_on_removal() {
    // Goal: with --voters 3, five nodes settle as 3 voters and 2 learners
    // holding the full log; removing a voter promotes a learner and writes
    // go on.
    let mut cluster = TestCluster::new(5, &["--voters", "3"]);
    cluster.start_all().await;
    let roles = |status: &StatusView| {
        let voters = status.members.iter().filter(|m| m.role == "voter").count();
        (voters, status.members.len() - voters)
    };
    wait_for("3 voters and 2 learners", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if roles(&s) == (3, 2))
    })
    .await;
    write_note(&cluster.nodes[4].client(), "five")
        .await
        .expect("write via a learner");
    let converged = cluster.wait_converged(&[0, 1, 2, 3, 4]).await;
    let learners: Vec<String> = converged
        .members
        .iter()
        .filter(|m| m.role == "learner")
        .map(|m| m.name.clone())
        .collect();
    for node in &cluster.nodes {
        if learners.contains(&node.name) {
            let status = node.status().await.expect("status");
            assert_eq!(status.role, "learner");
            assert!(
                has_request(node, "five").await,
                "learner {} holds the log",
                node.name
            );
        }
    }

    let leader = converged.leader.clone().expect("leader");
    let victim = converged
        .members
        .iter()
        .find(|m| m.role == "voter" && m.name != leader)
        .map(|m| m.name.clone())
        .expect("a follower voter");
    let socket = path_arg(&cluster.nodes[0].socket);
    let (ok, stdout, stderr) = romanactl(&["--socket", &socket, "node", "remove", &victim]);
    assert!(ok, "node remove failed: {stdout} {stderr}");
    let victim_index = cluster
        .nodes
        .iter()
        .position(|n| n.name == victim)
        .expect("victim");
    cluster.nodes[victim_index].kill();

    let remaining: Vec<usize> = (0..5).filter(|i| *i != victim_index).collect();
    let observer = remaining[0];
    wait_for(
        "a learner promoted to replace the removed voter",
        || async {
            match cluster.nodes[observer].status().await {
                Ok(s) => roles(&s) == (3, 1) && s.members.iter().all(|m| m.name != victim),
                Err(_) => false,
            }
        },
    )
    .await;
    let status = cluster.nodes[observer].status().await.expect("status");
    let promoted = status
        .members
        .iter()
        .filter(|m| m.role == "voter" && learners.contains(&m.name))
        .count();
    assert_eq!(promoted, 1, "exactly one former learner became a voter");
    write_note(&cluster.nodes[observer].client(), "after-removal")
        .await
        .expect("writes go on");
    cluster.wait_converged(&remaining).await;
    let nodes: Vec<NodeView> = cluster.nodes[observer]
        .client()
        .get(PATH_NODES)
        .await
        .expect("node list");
    assert!(
        nodes.iter().all(|n| n.name != victim),
        "the removed node's record is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_log_purge_is_brought_up_by_snapshot() {
    // Goal: past the snapshot threshold the log is purged; a node joining
    // afterwards is brought up by a snapshot and converges to the same hash.
    let args = ["--snapshot-logs", "50", "--purge-keep-logs", "0"];
    let mut cluster = TestCluster::new(3, &args);
    cluster.start_all().await;
    for i in 0..200 {
        write_note(&cluster.nodes[i % 3].client(), &format!("s{i}"))
            .await
            .expect("write");
    }
    let leader = cluster.leader_index().await.expect("leader");
    wait_for("the leader to purge its log", || async {
        matches!(cluster.nodes[leader].status().await, Ok(s) if s.purged_index.is_some_and(|p| p > 100))
    })
    .await;

    let newcomer = cluster.add_node(&args);
    cluster.nodes[newcomer].start();
    let converged = cluster.wait_converged(&[0, 1, 2, newcomer]).await;
    let status = cluster.nodes[newcomer].status().await.expect("status");
    assert!(
        status.snapshot_index.is_some_and(|s| s > 100),
        "the newcomer was brought up by a snapshot, not by replaying the log: {status:?}"
    );
    assert_eq!(status.state_hash, converged.state_hash);
    for i in [0, 99, 199] {
        assert!(has_request(&cluster.nodes[newcomer], &format!("s{i}")).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    // Goal: no client certificate → 401, another CA's → no session;
    // garbage → 400; none of them changes state. A write without quorum fails clearly in bounded time.
    let mut cluster = TestCluster::new(3, &["--write-timeout-ms", "2000"]);
    cluster.start_all().await;
    let before = cluster.wait_converged(&[0, 1, 2]).await;
    let address = cluster.nodes[1].address();

    // TLS without a client certificate: every route but a token's
    // redemption answers 401.
    let ca_hash = cluster.nodes[1].ca_cert_hash();
    let anonymous = ApiClient::new(
        Endpoint::Tcp(address.clone()),
        Some(romana_node::tls::pinned_client_config(&ca_hash).expect("config")),
    );
    for (method, path, body) in [
        (Method::GET, PATH_STATUS, Vec::new()),
        (Method::POST, PATH_NOTES, br#"{"text":"sneaky"}"#.to_vec()),
        (Method::POST, "/raft/append", b"\x00\x01".to_vec()),
        (Method::POST, "/raft/vote", Vec::new()),
        (
            Method::POST,
            "/v1/cluster/join",
            br#"{"node_id":5,"name":"evil","address":"127.0.0.1:1"}"#.to_vec(),
        ),
    ] {
        let (status, _) = anonymous
            .raw(method, path, "application/json", body)
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // A certificate of another CA (another secret): no TLS session at all.
    let foreign = ApiClient::new(
        Endpoint::Tcp(address.clone()),
        Some(
            romana_node::tls::secret_client_config(
                &raft_store::transport::ClusterSecret::new("wrong-secret-wrong-secret")
                    .expect("valid"),
                romana_node::tls::Role::Node,
                "host-1",
            )
            .expect("config"),
        ),
    );
    match foreign.get::<serde_json::Value>(PATH_STATUS).await {
        Err(CallError::Unreachable { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("a foreign CA's client must not get an answer: {other:?}"),
    }
    let tcp = cluster.nodes[1].tcp_client_as(romana_node::tls::Role::Node, "probe");
    for (path, body) in [
        ("/raft/append", b"garbage".to_vec()),
        ("/raft/vote", Vec::new()),
        ("/raft/snapshot", b"\xff\xff".to_vec()),
        (PATH_NOTES, b"{not json".to_vec()),
        ("/v1/cluster/join", b"[]".to_vec()),
    ] {
        let (status, text) = tcp
            .raw(Method::POST, path, "application/json", body)
            .await
            .expect("answered");
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let (status, _) = cluster.nodes[1]
        .client()
        .raw(
            Method::POST,
            PATH_NOTES,
            "application/json",
            br#"{"txt":1}"#.to_vec(),
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let after = cluster.wait_converged(&[0, 1, 2]).await;
    assert_eq!(
        after.state_hash, before.state_hash,
        "refused requests changed the state"
    );
    assert_eq!(after.members.len(), 3, "no member was added");

    // No quorum: kill two of three; a write to the survivor fails clearly.
    let survivor = 1;
    for i in [0, 2] {
        cluster.nodes[i].kill();
    }
    let started = Instant::now();
    let result = write_note(&cluster.nodes[survivor].client(), "no-quorum").await;
    let elapsed = started.elapsed();
    match result {
        Err(CallError::Status { status, message }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(message.contains("quorum"), "the error says why: {message}");
        }
        other => panic!("a write without quorum must fail, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(10),
        "the failure must come in bounded time, took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_an_unusable_data_dir_or_a_port_in_use() {
    // Goal: start-up problems end the process non-zero with one line saying why.
    let root = tempfile::Builder::new()
        .prefix("romana-test-")
        .tempdir()
        .expect("temp");
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let port = free_port();
    let run = |data_dir: &std::path::Path, listen: &str, socket: &str| {
        std::process::Command::new(NODE_BINARY)
            .args(["run", "--name", "x", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(["--api-socket"])
            .arg(root.path().join(socket))
            .output()
            .expect("run romana-node")
    };
    let output = run(&file, &format!("127.0.0.1:{port}"), "a.sock");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_address = busy.local_addr().expect("address").to_string();
    let output = run(&root.path().join("data"), &busy_address, "b.sock");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&busy_address),
        "{stderr}"
    );

    // A socket directory others may write to is refused (they could put
    // their own socket there for the CNI plugin to talk to).
    use std::os::unix::fs::PermissionsExt;
    let open_dir = root.path().join("open");
    std::fs::create_dir(&open_dir).expect("dir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let output = run(
        &root.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        "open/c.sock",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("writable by no one else") && stderr.contains("0777"),
        "{stderr}"
    );
    assert!(!open_dir.join("c.sock").exists(), "no socket was made");
}

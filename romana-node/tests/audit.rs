//! The audit archive: replay reproduces the live state hash for hash, every
//! holder of a reused address in order, tamper detection naming the record,
//! completeness after log purge, offline answers equal to online ones, and
//! clear errors for bad arguments.

mod common;

use common::*;
use raft_store::store::{KvBackend, SledBackend, Tree, WriteOp};
use serde_json::Value;

/// romanactl with the given args against `socket`; its JSON output.
fn ctl_json(socket: &str, args: &[&str]) -> Value {
    let mut full = vec!["--socket", socket, "-o", "json"];
    full.extend_from_slice(args);
    let (ok, stdout, stderr) = romanactl(&full);
    assert!(ok, "romanactl {args:?}: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("romanactl {args:?} printed {stdout:?}: {e}"))
}

const SMALL_LAYOUT: [&str; 10] = [
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reproduces_the_live_state_and_every_holder_of_an_address() {
    // Goal: a scripted history (tenants, allocations, release and reuse of
    // one address, policies applied and deleted, a host removed): `audit at`
    // gives, hash for hash, the state captured live at several points, and
    // `audit ip` lists every holder of the reused address in order.
    let mut args: Vec<&str> = SMALL_LAYOUT.to_vec();
    args.extend(["--voters", "1"]);
    let mut cluster = TestCluster::new(2, &args);
    cluster.start_all().await;
    let socket = path_arg(&cluster.nodes[0].socket);
    let s = socket.as_str();
    let mut points: Vec<(u64, String)> = Vec::new();
    let capture = |points: &mut Vec<(u64, String)>| {
        let status = ctl_json(s, &["status"]);
        points.push((
            status["applied_index"].as_u64().expect("index"),
            status["state_hash"].as_str().expect("hash").to_string(),
        ));
    };
    ctl_ok(s, &["tenant", "create", "t1"]);
    ctl_ok(s, &["tenant", "create", "t2"]);
    capture(&mut points);
    let first = ctl_json(
        s,
        &[
            "ipam",
            "allocate",
            "--tenant",
            "t1",
            "--container-id",
            "first",
            "--host",
            "n0",
        ],
    );
    let reused = first["address"].as_str().expect("address").to_string();
    ctl_ok(s, &["ipam", "release", "--container-id", "first"]);
    capture(&mut points);
    // Four more fill the other endpoints; the fifth gets the freed address.
    for c in ["b", "c", "d", "e", "second"] {
        ctl_ok(
            s,
            &[
                "ipam",
                "allocate",
                "--tenant",
                "t1",
                "--container-id",
                c,
                "--host",
                "n0",
            ],
        );
    }
    let policy = r#"{"securitypolicies":[{"name":"p","direction":"ingress","applied_to":[{"tenant":"t1"}],"peers":[{"tenant":"t2"}],"rules":[{"protocol":"tcp","ports":[80]}]}]}"#;
    let policy_file = cluster.root.path().join("p.json");
    std::fs::write(&policy_file, policy).expect("write policy");
    ctl_ok(s, &["policy", "apply", "-f", &path_arg(&policy_file)]);
    capture(&mut points);
    ctl_ok(s, &["policy", "delete", "p"]);
    ctl_ok(
        s,
        &[
            "ipam",
            "allocate",
            "--tenant",
            "t2",
            "--container-id",
            "on-n1",
            "--host",
            "n1",
        ],
    );
    ctl_ok(s, &["node", "remove", "n1", "--force"]);
    capture(&mut points);

    for (index, hash) in &points {
        let at = ctl_json(s, &["audit", "at", &index.to_string()]);
        assert_eq!(
            at["state_hash"].as_str(),
            Some(hash.as_str()),
            "audit at {index}"
        );
    }
    let holders = ctl_json(s, &["audit", "ip", &reused]);
    let holders = holders.as_array().expect("holders");
    assert_eq!(holders.len(), 2, "{holders:?}");
    assert_eq!(holders[0]["owner"], "first/eth0");
    assert!(
        holders[0]["to_index"].as_u64().is_some(),
        "the first holder released it"
    );
    assert_eq!(holders[1]["owner"], "second/eth0");
    assert!(
        holders[1]["to_index"].is_null(),
        "the second still holds it"
    );
    assert!(holders[0]["to_index"].as_u64() <= holders[1]["from_index"].as_u64());
    let (ok, stdout, _) = romanactl(&["--socket", s, "audit", "verify"]);
    assert!(ok && stdout.starts_with("ok:"), "{stdout}");
}

/// Rewrites the archive of a (stopped) node's data dir.
fn tamper(
    data_dir: &std::path::Path,
    change: impl FnOnce(&SledBackend, &mut Vec<(Vec<u8>, Vec<u8>)>),
) {
    let backend = SledBackend::open(&data_dir.join("raft")).expect("open the copy");
    let mut records = backend.range(Tree::Audit, &[], None).expect("records");
    change(&backend, &mut records);
    backend.flush().expect("flush");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_and_located_and_offline_answers_match_online() {
    // Goal: after snapshots and log purge the history is complete; offline
    // audit of the stopped node's data dir answers as the running node did;
    // a flipped byte, a dropped record and two swapped records each make
    // `audit verify` fail naming the record, while an untouched copy passes.
    let mut cluster = TestCluster::new(1, &["--snapshot-logs", "10", "--purge-keep-logs", "0"]);
    cluster.start_all().await;
    let socket = path_arg(&cluster.nodes[0].socket);
    let s = socket.as_str();
    ctl_ok(s, &["tenant", "create", "t1"]);
    for i in 0..40 {
        ctl_ok(
            s,
            &[
                "ipam",
                "allocate",
                "--tenant",
                "t1",
                "--container-id",
                &format!("c{i}"),
            ],
        );
    }
    let status = ctl_json(s, &["status"]);
    assert!(
        status["purged_index"].as_u64().is_some_and(|p| p > 10),
        "the log was purged: {status}"
    );
    let online_log = ctl_json(s, &["audit", "log"]);
    let online_count = online_log.as_array().expect("log").len();
    assert_eq!(
        online_count,
        2 + 1 + 40,
        "init, register, tenant and 40 allocations: the whole history"
    );
    let online_ip = ctl_json(s, &["audit", "ip", "10.0.16.5"]);
    cluster.nodes[0].stop();

    let data = cluster.nodes[0].data_dir.clone();
    let data_arg = path_arg(&data);
    let offline_log = ctl_json(s, &["audit", "--data-dir", &data_arg, "log"]);
    let (offline, online) = (
        offline_log.as_array().expect("log"),
        online_log.as_array().expect("log"),
    );
    assert_eq!(
        offline.len(),
        online.len(),
        "offline and online hold as many records"
    );
    for (a, b) in offline.iter().zip(online) {
        assert_eq!(a, b, "offline record differs from online");
    }
    assert_eq!(
        ctl_json(s, &["audit", "--data-dir", &data_arg, "ip", "10.0.16.5"]),
        online_ip
    );
    let (ok, stdout, stderr) = romanactl(&["audit", "--data-dir", &data_arg, "verify"]);
    assert!(ok, "the untouched archive verifies: {stdout} {stderr}");

    type Records = Vec<(Vec<u8>, Vec<u8>)>;
    type Change = Box<dyn Fn(&SledBackend, &mut Records)>;
    let cases: [(&str, Change); 3] = [
        (
            "flip",
            Box::new(|backend, records| {
                // Flip one character of record 20's request id ("…c16…").
                let (key, mut value) = records[19].clone();
                let at = value
                    .windows(3)
                    .position(|w| w == b"c16")
                    .expect("the container id in the record");
                value[at + 1] = b'9';
                backend
                    .write(
                        Tree::Audit,
                        vec![WriteOp::Put(key, value)],
                        raft_store::store::Durability::Flush,
                    )
                    .expect("write");
            }),
        ),
        (
            "delete",
            Box::new(|backend, records| {
                let key = records[19].0.clone();
                backend
                    .write(
                        Tree::Audit,
                        vec![WriteOp::Delete(key)],
                        raft_store::store::Durability::Flush,
                    )
                    .expect("write");
            }),
        ),
        (
            "swap",
            Box::new(|backend, records| {
                let (a, b) = (records[19].clone(), records[20].clone());
                backend
                    .write(
                        Tree::Audit,
                        vec![WriteOp::Put(a.0, b.1), WriteOp::Put(b.0, a.1)],
                        raft_store::store::Durability::Flush,
                    )
                    .expect("write");
            }),
        ),
    ];
    for (name, change) in cases {
        let copy = cluster.root.path().join(format!("copy-{name}"));
        copy_dir(&data, &copy);
        tamper(&copy, change);
        // sled's background flusher lets go of the database lock a moment
        // after the tampering handle is dropped.
        let copy_arg = path_arg(&copy);
        let mut attempt = romanactl(&["audit", "--data-dir", &copy_arg, "verify"]);
        for _ in 0..50 {
            if !attempt.2.contains("could not acquire lock") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            attempt = romanactl(&["audit", "--data-dir", &copy_arg, "verify"]);
        }
        let (ok, stdout, stderr) = attempt;
        assert!(!ok, "{name}: tampering must be detected ({stdout})");
        assert!(
            stderr.contains("broken at record 20") || stderr.contains("broken at record 21"),
            "{name}: the error names the record: {stderr}"
        );
    }
}

#[test]
fn bad_audit_arguments_get_clear_errors() {
    // Goal: an unparseable time, an address that is not IPv4 and a data dir
    // that is not one are refused with a message saying so.
    let dir = tempfile::tempdir().expect("temp");
    let d = path_arg(dir.path());
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["audit", "--data-dir", &d, "log"],
            "not a romana data dir",
        ),
        (
            vec![
                "--socket",
                "/nonexistent.sock",
                "audit",
                "log",
                "--since",
                "yesterday",
            ],
            "time \"yesterday\"",
        ),
        (
            vec!["--socket", "/nonexistent.sock", "audit", "ip", "10.0.0"],
            "\"10.0.0\" is not an IPv4 address",
        ),
        (
            vec!["--socket", "/nonexistent.sock", "audit", "at", "tomorrow"],
            "time \"tomorrow\"",
        ),
    ];
    for (args, needle) in &cases {
        let (ok, _, stderr) = romanactl(args);
        assert!(!ok, "{args:?} must fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

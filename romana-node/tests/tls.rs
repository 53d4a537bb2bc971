//! TLS on the peer port, identities from certificates, join tokens and
//! revocation, against real `romana-node` processes.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode};
use raft_store::audit::ArchiveRecord;
use romana_api::cluster::{JoinTokenView, NoteBody, StatusView};
use romana_api::paths::{
    PATH_ALLOCATIONS, PATH_AUDIT_RECORDS, PATH_JOIN_TOKENS, PATH_NOTES, PATH_STATUS, PATH_TENANTS,
};
use romana_node::http_client::{ApiClient, CallError, Endpoint};
use romana_node::tls::{Credentials, Role};
use romana_testkit::ChildGuard;

/// The actor the node recorded for `request_id`, from its audit archive.
async fn recorded_actor(client: &ApiClient, request_id: &str) -> String {
    let records: Vec<ArchiveRecord> = client.get(PATH_AUDIT_RECORDS).await.expect("archive");
    records
        .iter()
        .find(|r| r.request.meta.request_id == request_id)
        .map(|r| r.request.meta.actor.clone())
        .unwrap_or_else(|| panic!("{request_id} is not in the archive"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_speaks_only_tls_and_certificates_decide_who_may_do_what() {
    let mut cluster = TestCluster::new(1, &[]);
    cluster.start_all().await;
    let node = &cluster.nodes[0];

    // Plain HTTP: no HTTP answer, whatever the request.
    let mut plain = std::net::TcpStream::connect(node.address()).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/") && !String::from_utf8_lossy(&answer).contains("leader"),
        "plain HTTP got an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // A reader reads, and nothing else.
    let reader = node.tcp_client_as(Role::Reader, "bob");
    let status: StatusView = reader
        .get(PATH_STATUS)
        .await
        .expect("a reader reads status");
    assert_eq!(status.name, "n0");
    reader
        .get::<serde_json::Value>(PATH_ALLOCATIONS)
        .await
        .expect("a reader lists allocations");
    for (method, path, body) in [
        (Method::POST, PATH_NOTES, br#"{"text":"x"}"#.to_vec()),
        (Method::POST, PATH_TENANTS, br#"{"name":"t1"}"#.to_vec()),
        (Method::DELETE, "/v1/nodes/n0", Vec::new()),
        (
            Method::POST,
            PATH_JOIN_TOKENS,
            br#"{"ttl_ms":1000}"#.to_vec(),
        ),
        (Method::POST, "/raft/vote", Vec::new()),
        (Method::POST, "/v1/internal/propose", Vec::new()),
    ] {
        let (status, text) = reader
            .raw(method.clone(), path, "application/json", body)
            .await
            .expect("answered");
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "reader {method} {path}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    // An admin writes, but not on the members' routes.
    let admin = node
        .tcp_client_as(Role::Admin, "alice")
        .with_actor("client:mallory@n0");
    write_note(&admin, "by-alice")
        .await
        .expect("an admin writes");
    let (status, _) = admin
        .raw(
            Method::POST,
            "/raft/append",
            "application/x-bincode",
            Vec::new(),
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The actor is the certificate's, not the header's; on the socket, the
    // kernel's word on the caller.
    write_note(&node.client().with_actor("client:mallory@n0"), "by-local")
        .await
        .expect("a local write");
    let local = node.client();
    assert_eq!(
        recorded_actor(&local, "by-alice").await,
        "client:admin:alice@n0"
    );
    let by_local = recorded_actor(&local, "by-local").await;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert!(
        by_local.starts_with(&format!("client:uid={uid}(")) && by_local.ends_with("@n0"),
        "{by_local}"
    );
    // romanactl with an operator certificate it minted from the CA.
    let certs = cluster.root.path().join("certs");
    let data_dir = path_arg(&node.data_dir);
    let certs_arg = path_arg(&certs);
    let (ok, out, err) = romanactl(&[
        "cert",
        "create",
        "--name",
        "carol",
        "--role",
        "reader",
        "--out-dir",
        &certs_arg,
        "--data-dir",
        &data_dir,
        "--cluster-secret-file",
        &path_arg(&cluster.secret_file),
    ]);
    assert!(ok, "cert create: {out}{err}");
    let server = node.address();
    let cert_args = [
        "--server".to_string(),
        server.clone(),
        "--cert".into(),
        path_arg(&certs.join("carol.crt")),
        "--key".into(),
        path_arg(&certs.join("carol.key")),
        "--ca-cert".into(),
        path_arg(&certs.join("ca.crt")),
    ];
    let with = |rest: &[&str]| {
        let mut args: Vec<&str> = cert_args.iter().map(String::as_str).collect();
        args.extend_from_slice(rest);
        romanactl(&args)
    };
    let (ok, out, err) = with(&["status"]);
    assert!(ok && out.contains("n0"), "reader status: {out}{err}");
    let (ok, _, err) = with(&["ipam", "list"]);
    assert!(ok, "reader ipam list: {err}");
    let (ok, _, err) = with(&["tenant", "create", "t2"]);
    assert!(!ok && err.contains("may only read"), "reader write: {err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("carol.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
}

/// Starts node `index` and waits for it to exit on its own; its log.
fn run_until_exit(cluster: &mut TestCluster, index: usize) -> String {
    cluster.nodes[index].start();
    let status = cluster.nodes[index].wait_exit(Duration::from_secs(60));
    let log = cluster.nodes[index].log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "node {index} should have exited with an error: {log}"
    );
    log
}

fn create_token(socket: &Path, ttl: &str) -> JoinTokenView {
    let socket = path_arg(socket);
    let (ok, out, err) = romanactl(&[
        "--socket", &socket, "-o", "json", "token", "create", "--ttl", ttl,
    ]);
    assert!(ok, "token create: {out}{err}");
    serde_json::from_str(&out).expect("token JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_single_use_token_and_a_pinned_ca() {
    // A cluster without a shared secret: the first node generates its CA.
    let mut cluster = TestCluster::new(1, &[]);
    cluster.nodes[0].secret_file = None;
    cluster.start_all().await;
    let first = cluster.nodes[0].address();
    let token = create_token(&cluster.nodes[0].socket, "1m");
    assert_eq!(token.ca_cert_hash, cluster.nodes[0].ca_cert_hash());

    let joiner = |cluster: &mut TestCluster, token: &str, hash: &str| {
        let index = cluster.add_node(&["--join-token", token, "--ca-cert-hash", hash]);
        cluster.nodes[index].secret_file = None;
        cluster.nodes[index].join = Some(first.clone());
        index
    };
    // The right token and hash: joins, and holds the same CA.
    let b = joiner(&mut cluster, &token.token, &token.ca_cert_hash);
    cluster.nodes[b].start();
    wait_for("the token holder to be a member", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if s.members.len() == 2)
    })
    .await;
    assert_eq!(cluster.nodes[b].ca_cert_hash(), token.ca_cert_hash);
    write_note(&cluster.nodes[b].client(), "through-b")
        .await
        .expect("the joined node writes through the leader");

    // The same token again: refused (single use).
    let c = joiner(&mut cluster, &token.token, &token.ca_cert_hash);
    let log = run_until_exit(&mut cluster, c);
    assert!(log.contains("unknown, used or expired"), "{log}");
    // A wrong secret for a live token id.
    let fresh = create_token(&cluster.nodes[0].socket, "1m");
    let (id, _) = fresh.token.split_once('.').expect("ID.SECRET");
    let d = joiner(
        &mut cluster,
        &format!("{id}.0000000000000000"),
        &fresh.ca_cert_hash,
    );
    let log = run_until_exit(&mut cluster, d);
    assert!(log.contains("unknown, used or expired"), "{log}");
    // The right token but another CA pinned: the joiner trusts nothing.
    let wrong_hash = format!("sha256:{}", "0".repeat(64));
    let e = joiner(&mut cluster, &fresh.token, &wrong_hash);
    let log = run_until_exit(&mut cluster, e);
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    // An expired token.
    let short = create_token(&cluster.nodes[0].socket, "1s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let f = joiner(&mut cluster, &short.token, &short.ca_cert_hash);
    let log = run_until_exit(&mut cluster, f);
    assert!(log.contains("unknown, used or expired"), "{log}");
    // The fresh token still works after all that (the wrong secret and the
    // wrong CA used it up nowhere).
    let g = joiner(&mut cluster, &fresh.token, &fresh.ca_cert_hash);
    cluster.nodes[g].start();
    wait_for("the second token holder to be a member", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if s.members.len() == 3)
    })
    .await;
    // No refusal became a log entry: the refused redemptions were checked
    // against the replica first.
    let records: Vec<ArchiveRecord> = cluster.nodes[0]
        .client()
        .get(PATH_AUDIT_RECORDS)
        .await
        .expect("archive");
    let redemptions: Vec<String> = records
        .iter()
        .filter(|r| {
            r.request
                .command
                .to_string()
                .starts_with("redeem-join-token")
        })
        .map(|r| format!("{} → {}", r.request.command, r.applied.outcome))
        .collect();
    assert_eq!(redemptions.len(), 2, "{redemptions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_refused_by_every_member_and_may_rejoin_wiped() {
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    cluster.wait_converged(&[0, 1, 2]).await;
    // n2's own credentials, as it holds them.
    let tls_dir = cluster.nodes[2].data_dir.join("tls");
    let credentials = Credentials::from_files(
        &tls_dir.join("node.crt"),
        &tls_dir.join("node.key"),
        &tls_dir.join("ca.crt"),
    )
    .expect("n2's certificate");
    let as_n2 = |address: String| {
        ApiClient::new(
            Endpoint::Tcp(address),
            Some(
                credentials
                    .client_config(romana_node::tls::no_revocations())
                    .expect("config"),
            ),
        )
        .with_timeout(Duration::from_secs(10))
    };
    for i in [0, 1] {
        as_n2(cluster.nodes[i].address())
            .get::<StatusView>(PATH_STATUS)
            .await
            .expect("a member's certificate is accepted");
    }
    let (status, text) = cluster.nodes[0]
        .client()
        .raw(
            Method::DELETE,
            "/v1/nodes/n2?force=true",
            "application/json",
            Vec::new(),
        )
        .await
        .expect("answered");
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&text));
    cluster.wait_converged(&[0, 1]).await;
    // n2 still runs, with its certificate: every member refuses it.
    for i in [0, 1] {
        match as_n2(cluster.nodes[i].address())
            .get::<StatusView>(PATH_STATUS)
            .await
        {
            Err(CallError::Unreachable { reason, .. }) => {
                assert!(reason.to_lowercase().contains("revoked"), "n{i}: {reason}")
            }
            other => panic!("n{i} accepted a removed node's certificate: {other:?}"),
        }
    }
    // Wiped and started again under its name, it gets a new certificate
    // and joins.
    cluster.nodes[2].stop();
    cluster.nodes[2].wipe();
    cluster.nodes[2].start();
    let deadline = std::time::Instant::now() + CONVERGE_TIMEOUT;
    while !matches!(cluster.nodes[0].status().await, Ok(s) if s.members.len() == 3) {
        assert!(
            std::time::Instant::now() < deadline,
            "the wiped node did not rejoin: {}",
            cluster.nodes[2].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_converged(&[0, 1, 2]).await;
}

/// Captures loopback traffic to and from `ports` while it lives.
struct Capture {
    process: Option<ChildGuard>,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(dir: &Path, ports: &[u16]) -> Self {
        let file = dir.join("capture.pcap");
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut command = std::process::Command::new("tcpdump");
        command
            .args(["-i", "lo", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(&filter);
        let process = ChildGuard::spawn(command, &dir.join("tcpdump.log")).expect("tcpdump");
        // tcpdump says when it listens.
        let log = dir.join("tcpdump.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "tcpdump did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            process: Some(process),
            file,
        }
    }

    /// Stops the capture; the captured bytes.
    fn finish(mut self) -> Vec<u8> {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(5));
        }
        std::fs::read(&self.file).expect("capture file")
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_or_written_crosses_the_wire_in_clear() {
    let mut cluster = TestCluster::new(3, &[]);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let capture = Capture::start(cluster.root.path(), &ports);
    cluster.start_all().await;
    // Load: writes through a follower (forwarded), through the leader, a
    // token created and redeemed by a fourth node.
    let marker = "plaintext-marker-7d1f";
    for i in 0..60 {
        let node = &cluster.nodes[i % 3];
        node.client()
            .post::<_, serde_json::Value>(
                PATH_NOTES,
                &NoteBody {
                    text: format!("{marker} {i}"),
                    request_id: None,
                },
            )
            .await
            .expect("write");
    }
    let token = create_token(&cluster.nodes[1].socket, "1m");
    let d = cluster.add_node(&[
        "--join-token",
        &token.token,
        "--ca-cert-hash",
        &token.ca_cert_hash,
    ]);
    cluster.nodes[d].secret_file = None;
    cluster.nodes[d].start();
    wait_for("the token holder to join", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if s.members.len() == 4)
    })
    .await;
    cluster.wait_converged(&[0, 1, 2, 3]).await;
    let bytes = capture.finish();
    let secret = std::fs::read_to_string(&cluster.secret_file).expect("secret");
    // The capture saw the traffic (a control: it can fail), and none of it
    // in clear.
    assert!(
        bytes.len() > 50_000,
        "the capture is too small: {} bytes",
        bytes.len()
    );
    assert!(
        !contains(&bytes, secret.trim()),
        "the cluster secret crossed the wire"
    );
    let (_, token_secret) = token.token.split_once('.').expect("ID.SECRET");
    assert!(
        !contains(&bytes, token_secret),
        "the join token crossed the wire in clear"
    );
    assert!(
        !contains(&bytes, marker),
        "written data crossed the wire in clear"
    );
    assert!(
        !contains(&bytes, "HTTP/1.1"),
        "HTTP crossed the wire in clear"
    );
}

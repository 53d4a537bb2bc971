//! Bounds on what a client can make a node hold, with real processes:
//! oversized fields and bodies are refused in the JSON error shape, large
//! entries never wedge replication, and a flood of unfinished requests
//! neither locks out the local socket nor stays open.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use hyper::{Method, StatusCode};
use romana_api::ipam::AllocateBody;
use romana_api::paths::{PATH_ALLOCATIONS, PATH_POLICIES, PATH_STATUS};
use romana_api::ErrorBody;
use romana_node::http_client::{ApiClient, CallError, Endpoint};
use serde_json::json;

fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not the JSON error shape ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

fn allocation(network: String) -> AllocateBody {
    AllocateBody {
        host: None,
        tenant: Some("default".into()),
        segment: None,
        container_id: "c1".into(),
        ifname: "eth0".into(),
        pod_namespace: None,
        pod_name: None,
        network: Some(network),
        request_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_is_refused_in_the_json_error_shape() {
    // Goal: a 1.9 MB field is a 413, a 300-byte network name a 400 naming
    // the field, no client certificate a 401, an unknown route a 404: every one
    // a JSON error body with its code, and nothing allocated.
    let mut cluster = TestCluster::new(1, &[]);
    cluster.start_all().await;
    let node = &cluster.nodes[0];
    let unix = node.client();

    let huge = serde_json::to_vec(&allocation("n".repeat(1_900_000))).expect("encode");
    let (status, bytes) = unix
        .raw(Method::POST, PATH_ALLOCATIONS, "application/json", huge)
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        serde_json::to_value(error_body(&bytes).code).expect("code"),
        json!("payload_too_large")
    );

    let long = serde_json::to_vec(&allocation("n".repeat(300))).expect("encode");
    let (status, bytes) = unix
        .raw(Method::POST, PATH_ALLOCATIONS, "application/json", long)
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = error_body(&bytes);
    assert!(body.error.contains("CNI network name"), "{}", body.error);

    let (status, bytes) = unix
        .raw(
            Method::POST,
            PATH_ALLOCATIONS,
            "application/json",
            b"{".to_vec(),
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_body(&bytes);

    // TLS without a client certificate.
    let anonymous = ApiClient::new(
        Endpoint::Tcp(node.address()),
        Some(romana_node::tls::pinned_client_config(&node.ca_cert_hash()).expect("config")),
    );
    let (status, bytes) = anonymous
        .raw(Method::GET, PATH_STATUS, "application/json", Vec::new())
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::to_value(error_body(&bytes).code).expect("code"),
        json!("unauthorized")
    );
    let (status, bytes) = anonymous
        .raw(
            Method::POST,
            "/raft/append",
            "application/x-bincode",
            vec![0; 16],
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_body(&bytes);

    let (status, bytes) = unix
        .raw(
            Method::GET,
            "/v1/nothing-here",
            "application/json",
            Vec::new(),
        )
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_body(&bytes);

    let deep = "{a: ".repeat(25_000).into_bytes();
    let (status, bytes) = unix
        .raw(Method::POST, PATH_POLICIES, "application/yaml", deep)
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_body(&bytes).error.contains("nest deeper"));

    let listed: Vec<serde_json::Value> = unix.get(PATH_ALLOCATIONS).await.expect("list");
    assert!(listed.is_empty(), "nothing was allocated: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_the_request_alone_decides_add_no_log_entry() {
    // Goal: 200 writes refused for their own content (a bad tenant name, an
    // empty note) are answered 400 and leave the log as it was.
    let mut cluster = TestCluster::new(1, &[]);
    cluster.start_all().await;
    let node = &cluster.nodes[0];
    let before = node.status().await.expect("status");
    for i in 0..100 {
        let (status, _) = node
            .client()
            .raw(
                Method::POST,
                romana_api::paths::PATH_TENANTS,
                "application/json",
                serde_json::to_vec(&json!({"name": format!("Bad_{i}")})).expect("encode"),
            )
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = node
            .client()
            .raw(
                Method::POST,
                romana_api::paths::PATH_NOTES,
                "application/json",
                serde_json::to_vec(&json!({"text": ""})).expect("encode"),
            )
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let after = node.status().await.expect("status");
    assert_eq!(after.last_log_index, before.last_log_index);
}

/// A Romana policy file of `count` policies with long descriptions (about
/// 1 KB each), the same names every time (the projection stays small while
/// the log grows).
fn big_policy_file(round: usize, count: usize) -> Vec<u8> {
    let policies: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            json!({
                "name": format!("big-{i}"),
                "description": format!("round {round} {}", "x".repeat(1000)),
                "direction": "ingress",
                "applied_to": [{"cidr": "10.0.0.0/8"}],
                "peers": [{"cidr": "192.168.0.0/16"}],
                "rules": [{"protocol": "tcp", "ports": [80]}],
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "securitypolicies": policies })).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_more_than_a_body_limit_of_entries_catches_up() {
    // Goal: with a follower down, 640 policy files of ~70 KB each, from 16
    // writers at once (more than the 32 MB Raft body limit in all), are
    // committed; started again, the follower catches up by AppendEntries
    // in batches that fit the limit instead of being refused 413 forever.
    let mut cluster = TestCluster::new(3, &[]);
    cluster.start_all().await;
    cluster.wait_converged(&[0, 1, 2]).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let behind = (leader + 1) % 3;
    cluster.nodes[behind].stop();
    let client = cluster.nodes[leader].client();
    // 16 writers at once: the batcher packs their requests into entries
    // (which, uncapped, grew to megabytes each).
    let mut writers = Vec::new();
    for writer in 0..16 {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            for round in 0..40 {
                let body = big_policy_file(writer * 1000 + round, 64);
                sent += body.len();
                let (status, bytes) = client
                    .raw(Method::POST, PATH_POLICIES, "application/json", body)
                    .await
                    .expect("answered");
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "writer {writer} round {round}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            sent
        }));
    }
    let mut total = 0usize;
    for writer in writers {
        total += writer.await.expect("writer");
    }
    assert!(
        total > 32 * 1024 * 1024,
        "the log outgrew one body: {total}"
    );
    cluster.nodes[behind].start();
    // Equal applied index and state hash on all three, the follower too.
    cluster.wait_converged(&[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_requests_is_capped_and_timed_out() {
    // Goal: 600 connections that never finish their headers (no secret
    // needed) do not stop the local socket or writes; beyond the per-address
    // cap they are closed at once; the rest are closed by the header
    // timeout, after which the TCP API answers again.
    let mut cluster = TestCluster::new(1, &[]);
    cluster.start_all().await;
    let node = &cluster.nodes[0];
    let mut flood = Vec::new();
    for _ in 0..600 {
        let mut stream = std::net::TcpStream::connect(node.address()).expect("connect");
        stream
            .write_all(b"POST /v1/notes HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("send part of a request");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        flood.push(stream);
    }
    let status = node.status().await.expect("the unix socket answers");
    assert_eq!(status.role, "leader");
    write_note(&node.client(), "during-the-flood")
        .await
        .expect("a write commits during the flood");

    // Every flood connection is closed by the node: at once beyond the cap,
    // after the header timeout (10 s) for the others.
    let started = Instant::now();
    let mut closed = 0;
    for stream in &mut flood {
        let mut buffer = [0u8; 256];
        match stream.read(&mut buffer) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!(
                "a flood connection was still open after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    assert_eq!(closed, 600);
    let answer: Result<romana_api::cluster::StatusView, CallError> =
        node.tcp_client().get(PATH_STATUS).await;
    assert!(answer.is_ok(), "the TCP API answers again: {answer:?}");
}

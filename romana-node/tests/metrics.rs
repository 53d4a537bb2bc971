//! `GET /metrics` of real nodes, parsed with a Prometheus text parser
//! (`prometheus-parse`), checked to move as the cluster does.

mod common;

use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode};
use romana_api::cluster::StatusView;
use romana_api::ipam::{AllocateBody, AllocationView, NameBody};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_METRICS, PATH_STATUS, PATH_TENANTS};
use romana_node::http_client::ApiClient;
use romana_node::tls::Role;

/// One scrape, parsed; panics if the text does not parse.
async fn scrape(client: &ApiClient) -> prometheus_parse::Scrape {
    let (status, body) = client
        .raw(Method::GET, PATH_METRICS, "text/plain", Vec::new())
        .await
        .expect("scrape");
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    assert!(text.contains("# TYPE romana_raft_term gauge"), "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    assert!(scrape.samples.len() > 10, "{text}");
    scrape
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_the_cluster() {
    let mut cluster = TestCluster::new(3, &[]);
    let plain_port = free_port();
    cluster.nodes[0].extra_args.extend([
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{plain_port}"),
    ]);
    cluster.start_all().await;
    // The plain listener (for a Prometheus without a certificate) serves
    // the metrics and nothing else.
    let plain = |path: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", plain_port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        use std::io::{Read, Write};
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let answer = plain(PATH_METRICS);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("the plain exposition parses");
    assert!(value(&parsed, "romana_raft_term", &[]) >= 1.0, "{body}");
    assert!(
        plain(PATH_STATUS).starts_with("HTTP/1.1 404"),
        "only /metrics"
    );
    let tenant = NameBody {
        name: "t1".into(),
        request_id: None,
    };
    let _: serde_json::Value = cluster.nodes[0]
        .client()
        .post(PATH_TENANTS, &tenant)
        .await
        .expect("tenant");
    cluster.wait_converged(&[0, 1, 2]).await;
    let readers: Vec<ApiClient> = cluster
        .nodes
        .iter()
        .map(|n| n.tcp_client_as(Role::Reader, "prometheus"))
        .collect();
    let mut allocations_before = Vec::new();
    for reader in &readers {
        let before = scrape(reader).await;
        assert_eq!(value(&before, "romana_ipam_addresses_in_use", &[]), 0.0);
        allocations_before.push(value(&before, "romana_ipam_allocations_total", &[]));
    }

    // Ten allocations through n1's socket.
    for i in 0..10 {
        let body = AllocateBody {
            host: Some("n0".into()),
            tenant: Some("t1".into()),
            segment: None,
            container_id: format!("m{i}"),
            ifname: "eth0".into(),
            pod_namespace: None,
            pod_name: None,
            network: None,
            request_id: None,
        };
        let _: AllocationView = cluster.nodes[1]
            .client()
            .post(PATH_ALLOCATIONS, &body)
            .await
            .expect("allocate");
    }
    cluster.wait_converged(&[0, 1, 2]).await;
    for (i, reader) in readers.iter().enumerate() {
        let after = scrape(reader).await;
        let block = [("host", "n0"), ("tenant", "t1"), ("segment", "default")];
        assert_eq!(
            value(&after, "romana_ipam_addresses_in_use", &block),
            10.0,
            "n{i}"
        );
        assert_eq!(
            value(&after, "romana_raft_members", &[("role", "voter")]),
            3.0
        );
        // Counted from the applied log on every node, not only where
        // the allocations were made.
        assert_eq!(
            value(&after, "romana_ipam_allocations_total", &[]) - allocations_before[i],
            10.0,
            "n{i}"
        );
        assert!(
            value(&after, "romana_raft_log_entries", &[]) >= 10.0,
            "n{i}"
        );
        // The applied index is the status's (read until both agree: the
        // cluster is quiet, nothing else is written).
        let status: StatusView = reader.get(PATH_STATUS).await.expect("status");
        let again = scrape(reader).await;
        assert_eq!(
            value(&again, "romana_raft_applied_index", &[]),
            status.applied_index as f64,
            "n{i}"
        );
    }
    let n1 = scrape(&readers[1]).await;
    assert_eq!(
        value(
            &n1,
            "romana_api_requests_total",
            &[
                ("listener", "unix"),
                ("route", PATH_ALLOCATIONS),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        10.0
    );
    assert_eq!(
        value(
            &n1,
            "romana_write_duration_seconds_count",
            &[("kind", "allocate_address")]
        ),
        10.0
    );
    let leader = cluster.statuses().await[0]
        .leader
        .clone()
        .expect("a leader");
    let leader_index: usize = leader[1..].parse().expect("nN");
    // The leader replicates to both peers and batches the writes.
    let on_leader = scrape(&readers[leader_index]).await;
    for peer in (0..3).filter(|i| *i != leader_index) {
        let peer = format!("n{peer}");
        assert!(
            value(
                &on_leader,
                "romana_raft_rpc_duration_seconds_count",
                &[("peer", &peer), ("rpc", "append_entries")]
            ) > 0.0,
            "append_entries to {peer}"
        );
    }
    assert!(value(&on_leader, "romana_write_batch_size_count", &[]) >= 1.0);
    // Quiet and converged: the leader's commit index is its applied one and
    // no peer lags.
    let status: StatusView = readers[leader_index]
        .get(PATH_STATUS)
        .await
        .expect("status");
    let on_leader = scrape(&readers[leader_index]).await;
    assert_eq!(
        value(&on_leader, "romana_raft_commit_index", &[]),
        status.applied_index as f64
    );
    for peer in (0..3).filter(|i| *i != leader_index) {
        let peer = format!("n{peer}");
        assert_eq!(
            value(
                &on_leader,
                "romana_raft_replication_lag",
                &[("peer", &peer)]
            ),
            0.0,
            "{peer}"
        );
    }
    assert!(value(&on_leader, "romana_write_batch_size_sum", &[]) >= 10.0);
    // Anonymous TLS clients get no metrics.
    let anonymous = romana_node::http_client::ApiClient::new(
        romana_node::http_client::Endpoint::Tcp(cluster.nodes[0].address()),
        Some(
            romana_node::tls::pinned_client_config(&cluster.nodes[0].ca_cert_hash())
                .expect("config"),
        ),
    );
    let (status, _) = anonymous
        .raw(Method::GET, PATH_METRICS, "text/plain", Vec::new())
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Kill the leader: the survivors count a leader change.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader_index).collect();
    let mut changes_before = Vec::new();
    for &i in &survivors {
        changes_before.push(value(
            &scrape(&readers[i]).await,
            "romana_raft_leader_changes_total",
            &[],
        ));
    }
    cluster.nodes[leader_index].kill();
    wait_for("a new leader", || async {
        let mut ok = true;
        for &i in &survivors {
            ok &= matches!(cluster.nodes[i].status().await, Ok(s) if s.leader.as_deref().is_some_and(|l| l != leader));
        }
        ok
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (k, &i) in survivors.iter().enumerate() {
        let now = value(
            &scrape(&readers[i]).await,
            "romana_raft_leader_changes_total",
            &[],
        );
        assert!(
            now > changes_before[k],
            "n{i}: leader changes {now} after the leader's death, {} before",
            changes_before[k]
        );
        let roles = scrape(&readers[i]).await;
        assert_eq!(
            value(&roles, "romana_raft_role", &[("role", "leader")])
                + value(&roles, "romana_raft_role", &[("role", "follower")]),
            1.0
        );
    }
}

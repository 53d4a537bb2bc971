//! Events: what the log applies (tenants, policies, refused allocations),
//! what Raft does (a new leader) and what the reconciler repairs, seen on
//! every node through `romanactl events` (and `--follow`), and written as
//! structured log lines with stable fields.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use romana_testkit::ChildGuard;
use serde_json::Value;

/// `romanactl events -o json` on `socket`: one JSON object per line.
fn events(socket: &str) -> Vec<Value> {
    let (ok, stdout, stderr) = romanactl(&["--socket", socket, "-o", "json", "events"]);
    assert!(ok, "romanactl events: {stderr}");
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?}: {e}"))
        })
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_node_and_the_followers_stream() {
    // A small block (8 endpoints) so that an allocation can be refused.
    let layout = [
        "--cidr",
        "10.0.0.0/24",
        "--host-bits",
        "2",
        "--tenant-bits",
        "2",
        "--segment-bits",
        "1",
        "--endpoint-bits",
        "3",
        "--log-format",
        "json",
    ];
    let mut cluster = TestCluster::new(3, &layout);
    cluster.start_all().await;
    let sockets: Vec<String> = cluster.nodes.iter().map(|n| path_arg(&n.socket)).collect();

    // A follower of a non-leader's stream, started before the changes it
    // must see (and kept: the leader is the one killed below).
    let first_leader = cluster.leader_index().await.expect("a leader");
    let followed = (first_leader + 1) % 3;
    let follow_log = cluster.root.path().join("follow.out");
    let mut command = Command::new(CTL_BINARY);
    command.args([
        "--socket",
        &sockets[followed],
        "-o",
        "json",
        "events",
        "--follow",
    ]);
    let mut follower = ChildGuard::spawn(command, &follow_log).expect("romanactl events -f");
    // The stream is open once it has replayed what the node buffered.
    wait_for("the follower to replay the buffered events", || async {
        std::fs::read_to_string(&follow_log).is_ok_and(|t| t.contains("host_joined"))
    })
    .await;

    ctl_ok(&sockets[0], &["tenant", "create", "t1"]);
    let policy = r#"{"securitypolicies":[{"name":"web","direction":"ingress","applied_to":[{"tenant":"t1"}],"peers":[{"tenant":"t1"}],"rules":[{"protocol":"tcp","ports":[80]}]}]}"#;
    let policy_file = cluster.root.path().join("web.json");
    std::fs::write(&policy_file, policy).expect("write policy");
    ctl_ok(
        &sockets[1],
        &["policy", "apply", "-f", &path_arg(&policy_file)],
    );
    // Fill n0's t1 block until an allocation is refused.
    let mut refused = false;
    for i in 0..16 {
        let container = format!("c{i}");
        let (ok, _, stderr) = romanactl(&[
            "--socket",
            &sockets[0],
            "ipam",
            "allocate",
            "--tenant",
            "t1",
            "--host",
            "n0",
            "--container-id",
            &container,
        ]);
        if !ok {
            assert!(stderr.contains("no free address"), "{stderr}");
            refused = true;
            break;
        }
    }
    assert!(refused, "a block of 8 endpoints holds fewer than 16 pods");
    let converged = cluster.wait_converged(&[0, 1, 2]).await;

    // Every node reports the same log events, at the same index.
    let mut indexes: Option<Vec<(String, u64)>> = None;
    for (i, socket) in sockets.iter().enumerate() {
        let all = events(socket);
        let tenant = of_kind(&all, "tenant_created");
        assert_eq!(tenant.len(), 1, "n{i}: {all:?}");
        assert_eq!(tenant[0]["fields"]["tenant"], "t1");
        let policy = of_kind(&all, "policy_applied");
        assert_eq!(policy.len(), 1, "n{i}: {all:?}");
        assert_eq!(policy[0]["fields"]["names"], serde_json::json!(["web"]));
        let refusal = of_kind(&all, "address_refused");
        assert_eq!(refusal.len(), 1, "n{i}: {all:?}");
        assert_eq!(refusal[0]["fields"]["host"], "n0");
        assert_eq!(refusal[0]["node"], format!("n{i}"));
        let mine: Vec<(String, u64)> = [tenant[0], policy[0], refusal[0]]
            .iter()
            .map(|e| {
                let index = e["index"].as_u64().expect("a log event has its index");
                assert!(index <= converged.applied_index);
                (e["kind"].as_str().unwrap_or_default().to_string(), index)
            })
            .collect();
        match &indexes {
            None => indexes = Some(mine),
            Some(first) => assert_eq!(first, &mine, "n{i} numbers the events as n0 does"),
        }
        // Ids rise: `--since` resumes after one.
        let ids: Vec<u64> = all.iter().filter_map(|e| e["id"].as_u64()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let last_but_one = ids[ids.len() - 2].to_string();
        let (ok, stdout, stderr) = romanactl(&[
            "--socket",
            socket,
            "-o",
            "json",
            "events",
            "--since",
            &last_but_one,
        ]);
        assert!(ok, "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "only the last event: {stdout}");
    }
    // `--kind` filters; the text form names node, kind and index.
    let text = ctl_ok(&sockets[1], &["events", "--kind", "tenant_created"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("n1 tenant_created [") && text.contains("tenant t1 created"),
        "{text}"
    );

    // The follower got them as they happened.
    wait_for("the follower to see the policy and the refusal", || async {
        let text = std::fs::read_to_string(&follow_log).unwrap_or_default();
        text.contains("\"policy_applied\"") && text.contains("\"address_refused\"")
    })
    .await;
    assert!(!follower.has_exited(), "--follow keeps streaming");

    // The structured log line: target romana::event, with stable fields.
    let log = cluster.nodes[0].log_text();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["target"] == "romana::event" && l["fields"]["event"] == "tenant_created")
        .unwrap_or_else(|| panic!("no tenant_created event line in n0's log:\n{log}"));
    assert!(line["fields"]["index"].as_u64().is_some(), "{line}");
    let fields: Value = serde_json::from_str(line["fields"]["fields"].as_str().expect("fields"))
        .expect("the fields are JSON");
    assert_eq!(fields["tenant"], "t1");

    // Kill the leader: each survivor reports the new one.
    let leader = cluster.leader_index().await.expect("a leader");
    assert_ne!(leader, followed, "the leader changed on its own");
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let before: Vec<usize> = survivors
        .iter()
        .map(|&i| of_kind(&events(&sockets[i]), "leader_elected").len())
        .collect();
    cluster.nodes[leader].kill();
    wait_for("a new leader", || async {
        cluster
            .leader_index()
            .await
            .is_some_and(|new| new != leader)
    })
    .await;
    let new_leader = format!("n{}", cluster.leader_index().await.expect("the new leader"));
    for (k, &i) in survivors.iter().enumerate() {
        let want = before[k];
        let socket = sockets[i].clone();
        wait_for("the survivors to report the new leader", || {
            let socket = socket.clone();
            async move { of_kind(&events(&socket), "leader_elected").len() > want }
        })
        .await;
        let seen = events(&sockets[i]);
        let elected = of_kind(&seen, "leader_elected");
        let last = elected.last().expect("an election");
        assert_eq!(
            last["fields"]["leader"],
            new_leader.as_str(),
            "n{i}: {last}"
        );
    }
    // The follower of a node that stops is told the stream ended.
    assert!(
        !follower.has_exited(),
        "--follow outlives another node's death"
    );
    cluster.nodes[followed].stop();
    let status = follower
        .wait_exit(Duration::from_secs(20))
        .expect("the follower ends when its node stops");
    assert!(
        !status.success(),
        "an ended stream is an error for --follow"
    );
    let out = std::fs::read_to_string(&follow_log).unwrap_or_default();
    assert!(out.contains("ended the event stream"), "{out}");
}

//! The lab tests (root): three hosts as network namespaces, each with its
//! own romana-node, pods wired by the real CNI plugin. Routing across hosts,
//! route counts, the data plane surviving its control plane, drift repair,
//! and a host leaving.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tcp_client, tcp_server, LabGuard, RECONCILE_INTERVAL_MS};
use simulation::lab::in_netns;

#[test]
fn pods_of_a_tenant_reach_each_other_across_hosts_by_icmp_and_tcp() {
    // Goal: three hosts, a t1 pod on each: every pod pings every other, and
    // a TCP server in one pod answers a client in a pod on another host.
    let mut lab = LabGuard::up(3);
    let ips: Vec<String> = (1..=3)
        .map(|h| lab.pod(&format!("host{h}"), "t1", &format!("p{h}")))
        .collect();
    for from in 1..=3 {
        for to in 1..=3 {
            if from != to {
                assert!(
                    lab.pings(&format!("p{from}"), &ips[to - 1]),
                    "p{from} cannot ping p{to} {}",
                    ips[to - 1]
                );
            }
        }
    }
    let mut server = tcp_server(&lab.netns("p3"), 8080);
    let answer = tcp_client(&lab.netns("p1"), &ips[2], 8080);
    server.stop();
    assert_eq!(answer, "hello", "TCP from p1 (host1) to p3 (host3)");
}

#[test]
fn a_host_has_one_route_per_other_host_and_one_per_local_pod() {
    // Goal: the romana routes of a host are one per other host plus one per
    // local pod, with 3 pods and with 60: never one per remote pod.
    let mut lab = LabGuard::up(3);
    let mut local_pods: BTreeMap<String, usize> = BTreeMap::new();
    for (round, total) in [(0, 3), (1, 60)] {
        let already: usize = local_pods.values().sum();
        for i in already..total {
            let host = format!("host{}", i % 3 + 1);
            lab.pod(&host, "t1", &format!("r{round}-{i}"));
            *local_pods.entry(host).or_default() += 1;
        }
        for host in ["host1", "host2", "host3"] {
            let routes = lab.romana_routes(host);
            let via_underlay = routes.iter().filter(|r| r.contains(" via ")).count();
            let to_pods = routes.iter().filter(|r| r.contains(" dev rom")).count();
            assert_eq!(via_underlay, 2, "{host} with {total} pods: {routes:#?}");
            assert_eq!(to_pods, local_pods[host], "{host}: one route per local pod");
            assert_eq!(routes.len(), 2 + local_pods[host], "{host}: nothing else");
        }
    }
}

#[test]
fn pods_keep_talking_while_their_node_is_down_and_restart_changes_no_route() {
    // Goal: kill -9 host2's node: its pods still reach pods on other hosts;
    // restarted, the node converges without deleting or re-adding a route.
    let mut lab = LabGuard::up(3);
    let a = lab.pod("host1", "t1", "a");
    let b = lab.pod("host2", "t1", "b");
    lab.lab.kill_node("host2").expect("kill");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.pings("b", &a),
        "host2's pod lost connectivity with its node down"
    );
    assert!(
        lab.pings("a", &b),
        "host1's pod cannot reach host2's pod with host2's node down"
    );

    // Watch host2's routes while its node comes back.
    let mut monitor = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("host2"),
            "ip",
            "-o",
            "monitor",
            "route",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip monitor");
    std::thread::sleep(Duration::from_millis(200));
    lab.lab.restart_node("host2").expect("restart");
    lab.wait_until("host2's node to answer", |lab| {
        lab.lab
            .ctl(lab.lab.host("host2").expect("host"), &["status"])
            .is_ok_and(|s| s.contains("leader"))
    });
    // Several reconcile passes.
    std::thread::sleep(Duration::from_millis(3 * RECONCILE_INTERVAL_MS));
    let _ = monitor.kill();
    let output = monitor.wait_with_output().expect("monitor output");
    let events = String::from_utf8_lossy(&output.stdout);
    let romana_events: Vec<&str> = events.lines().filter(|l| l.contains("proto 77")).collect();
    assert!(
        romana_events.is_empty(),
        "a restart with nothing changed changed routes: {romana_events:#?}"
    );
    assert!(lab.pings("b", &a));
}

#[test]
fn a_route_deleted_by_hand_comes_back_and_foreign_routes_stay() {
    // Goal: the reconciler repairs drift within its interval and leaves
    // routes of other protocols alone.
    let lab = LabGuard::up(3);
    let netns = lab.netns("host1");
    let host3_route = lab
        .romana_routes("host1")
        .into_iter()
        .find(|r| r.contains("192.168"))
        .expect("a route via another host");
    let destination = host3_route
        .split_whitespace()
        .next()
        .expect("destination")
        .to_string();
    // A foreign route in the same table, via host2's underlay address.
    let gateway = lab.lab.host("host2").expect("host2").underlay_ip.clone();
    in_netns(
        &netns,
        &[
            "ip",
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            &gateway,
            "proto",
            "static",
        ],
    )
    .expect("foreign route");
    in_netns(&netns, &["ip", "route", "del", &destination]).expect("delete by hand");
    let removed_at = Instant::now();
    lab.wait_until("the deleted route to come back", |lab| {
        lab.romana_routes("host1")
            .iter()
            .any(|r| r.starts_with(&destination))
    });
    let repaired_after = removed_at.elapsed();
    println!("route repaired after {repaired_after:?} (interval {RECONCILE_INTERVAL_MS} ms)");
    assert!(
        repaired_after < Duration::from_millis(4 * RECONCILE_INTERVAL_MS),
        "repair took {repaired_after:?}, the interval is {RECONCILE_INTERVAL_MS} ms"
    );
    std::thread::sleep(Duration::from_millis(2 * RECONCILE_INTERVAL_MS));
    let all = in_netns(&netns, &["ip", "route"]).expect("routes");
    assert!(
        all.contains("198.51.100.0/24"),
        "the foreign route was removed: {all}"
    );
}

#[test]
fn a_removed_host_loses_its_route_everywhere() {
    // Goal: romanactl node remove of host3, then its namespace deleted:
    // host1 and host2 drop their route to host3's prefix.
    let mut lab = LabGuard::up(3);
    lab.pod("host3", "t1", "c");
    let host3_ip = lab.lab.host("host3").expect("host3").underlay_ip.clone();
    for host in ["host1", "host2"] {
        assert!(
            lab.romana_routes(host)
                .iter()
                .any(|r| r.contains(&host3_ip)),
            "{host} routes to host3"
        );
    }
    lab.ctl("host1", &["node", "remove", "host3", "--force"]);
    lab.lab.kill_node("host3").expect("kill host3's node");
    let netns = lab.netns("host3");
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    lab.wait_until("host1 and host2 to drop the route to host3", |lab| {
        ["host1", "host2"]
            .iter()
            .all(|h| !lab.romana_routes(h).iter().any(|r| r.contains(&host3_ip)))
    });
    let hosts = lab.ctl("host1", &["host", "list"]);
    assert!(!hosts.contains("host3"), "{hosts}");
}

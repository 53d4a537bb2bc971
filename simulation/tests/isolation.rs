//! Tenant isolation with real packets in the lab (root): within a tenant
//! everything flows, between tenants nothing does, whatever the number of
//! pods, and neither a restart nor a flush of the rules opens a window.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tcp_reaches, tcp_server, udp_reaches, LabGuard, RECONCILE_INTERVAL_MS};
use simulation::lab::in_netns;

#[test]
fn tenants_are_isolated_and_traffic_within_a_tenant_flows() {
    // Goal: t1 <-> t1 across hosts passes ICMP, TCP and UDP; t1 -> t2 and
    // t2 -> t1 pass none of them, on the same host and across hosts.
    let mut lab = LabGuard::up(3);
    let a1 = lab.pod("host1", "t1", "a1");
    let a2 = lab.pod("host2", "t1", "a2");
    let b1 = lab.pod("host1", "t2", "b1");
    let b3 = lab.pod("host3", "t2", "b3");
    assert!(
        lab.pings("a1", &a2) && lab.pings("a2", &a1),
        "t1 <-> t1 ICMP"
    );
    let mut server = tcp_server(&lab.netns("a2"), 8080);
    assert!(tcp_reaches(&lab.netns("a1"), &a2, 8080), "t1 -> t1 TCP");
    server.stop();
    assert!(
        udp_reaches(&lab.netns("a1"), &lab.netns("a2"), &a2, 9000),
        "t1 -> t1 UDP"
    );

    for (from, to, address) in [
        ("a1", "b3", &b3),
        ("b3", "a1", &a1),
        ("a1", "b1", &b1),
        ("b1", "a2", &a2),
    ] {
        assert!(
            !lab.pings(from, address),
            "{from} -> {to} ICMP must be dropped"
        );
        assert!(
            !tcp_reaches(&lab.netns(from), address, 8080),
            "{from} -> {to} TCP must be dropped"
        );
        assert!(
            !udp_reaches(&lab.netns(from), &lab.netns(to), address, 9001),
            "{from} -> {to} UDP must be dropped"
        );
    }
    // The host reaches its own pods (kubelet probes).
    assert!(lab.pings("host1", &b1));
    // `policy explain` says what the packets did.
    let explain = |src: &str, dst: &str, what: &str| {
        let out = lab
            .try_ctl(&["policy", "explain", src, dst, what])
            .expect("explain");
        out.split(':').next().unwrap_or_default().trim().to_string()
    };
    for what in ["icmp/8", "tcp/8080", "udp/9000"] {
        assert_eq!(explain(&a1, &a2, what), "allowed", "t1 -> t1 {what}");
        assert_eq!(explain(&a1, &b3, what), "denied", "t1 -> t2 {what}");
        assert_eq!(explain(&b3, &a1, what), "denied", "t2 -> t1 {what}");
        assert_eq!(explain(&b1, &a2, what), "denied", "t2 -> t1 {what}");
    }
}

fn rule_count(lab: &LabGuard, host: &str) -> usize {
    in_netns(&lab.netns(host), &["iptables", "-S"])
        .expect("iptables -S")
        .lines()
        .count()
}

#[test]
fn the_number_of_rules_does_not_grow_with_pods() {
    // Goal: the same rules with 3 pods and with 300.
    let mut lab = LabGuard::up(3);
    for i in 0..3 {
        lab.pod(
            &format!("host{}", i % 3 + 1),
            if i % 2 == 0 { "t1" } else { "t2" },
            &format!("s{i}"),
        );
    }
    let small: Vec<usize> = (1..=3)
        .map(|h| rule_count(&lab, &format!("host{h}")))
        .collect();
    for i in 3..300 {
        lab.pod(
            &format!("host{}", i % 3 + 1),
            if i % 2 == 0 { "t1" } else { "t2" },
            &format!("s{i}"),
        );
    }
    let large: Vec<usize> = (1..=3)
        .map(|h| rule_count(&lab, &format!("host{h}")))
        .collect();
    assert_eq!(small, large, "rules with 3 pods vs 300 pods");
}

/// Pings `address` from `netns` every 10 ms for `seconds`; how many answers.
fn probe(netns: &str, address: &str, seconds: u32) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "ping",
            "-i",
            "0.01",
            "-W",
            "0.1",
            "-w",
            &seconds.to_string(),
            address,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("probe")
}

fn answers(probe: std::process::Child) -> (u64, u64) {
    let output = probe.wait_with_output().expect("probe output");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    )
}

#[test]
fn neither_a_restart_nor_a_flush_opens_a_window() {
    // Goal: a t2 pod probing a t1 pod throughout a node restart and a hand
    // flush of the host's rules never gets an answer, and isolation is
    // restored afterwards with t1 traffic flowing again.
    let mut lab = LabGuard::up(3);
    let a2 = lab.pod("host2", "t1", "a2");
    let _a1 = lab.pod("host1", "t1", "a1");
    lab.pod("host2", "t2", "b2");
    lab.pod("host1", "t2", "b1");
    let probe_local = probe(&lab.netns("b2"), &a2, 8);
    let probe_remote = probe(&lab.netns("b1"), &a2, 8);
    std::thread::sleep(Duration::from_millis(500));
    lab.lab.kill_node("host2").expect("kill");
    std::thread::sleep(Duration::from_millis(500));
    lab.lab.restart_node("host2").expect("restart");
    std::thread::sleep(Duration::from_millis(1500));
    in_netns(&lab.netns("host2"), &["iptables", "-F"]).expect("flush by hand");
    std::thread::sleep(Duration::from_millis(4 * RECONCILE_INTERVAL_MS));
    let (sent_local, got_local) = answers(probe_local);
    let (sent_remote, got_remote) = answers(probe_remote);
    assert!(
        sent_local > 100 && sent_remote > 100,
        "the probes ran ({sent_local}, {sent_remote})"
    );
    assert_eq!(
        got_local, 0,
        "t2 -> t1 on the same host got {got_local} answers"
    );
    assert_eq!(
        got_remote, 0,
        "t2 -> t1 across hosts got {got_remote} answers"
    );
    lab.wait_until("isolation rules back after the flush", |lab| {
        in_netns(&lab.netns("host2"), &["iptables", "-S", "ROMANA-FORWARD"]).is_ok()
    });
    assert!(lab.pings("a1", &a2), "t1 flows again after the repair");
}

#[test]
fn hosts_can_be_kept_from_opening_connections_to_their_pods() {
    // Goal: with --allow-host-to-pods=false a host cannot reach its pods
    // (default: it can), while pods still reach each other and the host.
    let mut lab = LabGuard::up_with(2, &["--allow-host-to-pods=false"]);
    let a = lab.pod("host1", "t1", "a");
    let b = lab.pod("host2", "t1", "b");
    lab.wait_rules("the OUTPUT chain", |_| true);
    lab.wait_until("host1's OUTPUT rule", |lab| {
        in_netns(&lab.netns("host1"), &["iptables", "-S", "OUTPUT"])
            .is_ok_and(|r| r.contains("ROMANA-OUTPUT"))
    });
    assert!(!lab.pings("host1", &a), "the host must not reach its pod");
    assert!(lab.pings("a", &b), "pods still reach each other");
    let underlay = lab.lab.host("host1").expect("host1").underlay_ip.clone();
    assert!(
        lab.pings("a", &underlay),
        "a pod still reaches its host (replies pass)"
    );
}

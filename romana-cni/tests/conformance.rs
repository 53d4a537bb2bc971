//! Conformance of the `romana` CNI plugin, invoked as a runtime invokes it,
//! against a single-node cluster, with real network namespaces (root).

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::*;
use romana_cni::plugin::host_veth_name;
use serde_json::{json, Value};

fn with_prev_result(mut config: Value, result: &Value) -> Value {
    config["prevResult"] = result.clone();
    config
}

fn result_address(result: &Value) -> Ipv4Addr {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("an IPv4 address in the result")
}

#[test]
fn version_lists_exactly_the_supported_versions() {
    // Goal: VERSION answers with the versions that work, and nothing else.
    let answer = invoke(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert!(answer.success, "{answer:?}");
    let json = answer.json();
    assert_eq!(json["cniVersion"], "1.0.0");
    assert_eq!(
        json["supportedVersions"],
        json!(["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"])
    );
}

#[test]
fn every_supported_version_round_trips_add_check_del() {
    // Goal: for each version, ADD gives a result of that version (with the
    // container interface carrying sandbox and MAC, IP indices in range),
    // CHECK passes where the version has it, and DEL cleans up.
    let node = Node::start();
    for version in ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"] {
        let netns = Netns::new();
        let container = unique("rt");
        let config = node.config("t1", version);
        let add = verb("ADD", &config, &container, Some(&netns), "eth0");
        assert!(add.success, "{version}: {add:?}");
        let result = add.json();
        assert_eq!(result["cniVersion"], version);
        let interfaces = result["interfaces"].as_array().expect("interfaces");
        assert_eq!(interfaces.len(), 2);
        assert!(
            interfaces[0].get("sandbox").is_none(),
            "the host veth has no sandbox"
        );
        assert_eq!(interfaces[1]["name"], "eth0");
        assert_eq!(interfaces[1]["sandbox"], netns.path());
        assert!(
            interfaces[1]["mac"].as_str().is_some_and(|m| m.len() == 17),
            "container MAC"
        );
        for ip in result["ips"].as_array().expect("ips") {
            let index = ip["interface"].as_u64().expect("interface index") as usize;
            assert!(index < interfaces.len(), "interface index in range");
            assert_eq!(
                ip["version"].as_str(),
                version.starts_with("0.").then_some("4")
            );
        }
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
        if version != "0.3.0" && version != "0.3.1" {
            let check = verb(
                "CHECK",
                &with_prev_result(config.clone(), &result),
                &container,
                Some(&netns),
                "eth0",
            );
            assert!(check.success, "{version} CHECK: {check:?}");
        } else {
            let check = verb(
                "CHECK",
                &with_prev_result(config.clone(), &result),
                &container,
                Some(&netns),
                "eth0",
            );
            assert_eq!(check.code(), 1, "{version} has no CHECK");
        }
        let del = verb(
            "DEL",
            &with_prev_result(config, &result),
            &container,
            Some(&netns),
            "eth0",
        );
        assert!(del.success, "{version} DEL: {del:?}");
        assert!(del.stdout.is_empty(), "DEL prints nothing");
    }
    assert!(
        node.allocations().is_empty(),
        "every DEL released its address"
    );

    // The node counted each command once, and a refused ADD by its code.
    let netns = Netns::new();
    let refused = verb(
        "ADD",
        &node.config("no-such-tenant", "1.0.0"),
        &unique("rt"),
        Some(&netns),
        "eth0",
    );
    assert!(!refused.success, "{refused:?}");
    let metrics = node.metrics();
    let count = |command: &str, outcome: &str| {
        let series =
            format!("romana_cni_requests_total{{command=\"{command}\",outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse::<f64>().expect("a number"))
    };
    assert_eq!(count("ADD", "ok"), 5.0, "{metrics}");
    assert_eq!(count("CHECK", "ok"), 3.0, "{metrics}");
    assert_eq!(count("DEL", "ok"), 5.0, "{metrics}");
    assert_eq!(count("ADD", "unknown_tenant"), 1.0, "{metrics}");
    assert!(
        metrics.contains("romana_cni_request_duration_seconds_count{command=\"ADD\"} 6"),
        "{metrics}"
    );
}

#[test]
fn bad_environment_input_and_config_get_their_codes() {
    // Goal: missing variables → 4 naming them, undecodable input → 6,
    // invalid config → 7 naming the key; nothing allocated by any of them.
    let node = Node::start();
    let netns = Netns::new();
    let config = node.config("t1", "1.0.0").to_string();
    let path = netns.path();
    // (environment, stdin, expected code, what the message must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u64, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], &config, 4, "CNI_COMMAND"),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", &path),
            ],
            &config,
            4,
            "CNI_CONTAINERID",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", &path),
            ],
            &config,
            4,
            "CNI_IFNAME",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            &config,
            4,
            "CNI_NETNS",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/nonexistent/ns"),
            ],
            &config,
            4,
            "CNI_NETNS",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "bad id!"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", &path),
            ],
            &config,
            4,
            "CNI_CONTAINERID",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/proc/self/ns/net"),
            ],
            &config,
            4,
            "host's own network namespace",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "a/b"),
                ("CNI_NETNS", &path),
            ],
            &config,
            4,
            "CNI_IFNAME",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", &path),
                ("CNI_ARGS", "NOPE=1"),
            ],
            &config,
            4,
            "CNI_ARGS",
        ),
        (
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", &path),
            ],
            "{not json",
            6,
            "decode",
        ),
    ];
    for (env, stdin, code, needle) in &cases {
        let answer = invoke(env, stdin);
        assert_eq!(answer.code(), *code, "{env:?}: {answer:?}");
        let msg = answer.json()["msg"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            msg.contains(needle),
            "{env:?}: {msg:?} should name {needle}"
        );
    }
    let add_env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", path.as_str()),
    ];
    for (patch, key) in [
        (json!({"mtu": "big"}), "mtu"),
        (json!({"tenant": 7}), "tenant"),
        (json!({"type": "other"}), "type"),
        (json!({"node_url": "ftp://x"}), "node_url"),
    ] {
        let mut bad = node.config("t1", "1.0.0");
        for (k, v) in patch.as_object().expect("object") {
            bad[k] = v.clone();
        }
        let answer = invoke(&add_env, &bad.to_string());
        assert_eq!(answer.code(), 7, "{patch}: {answer:?}");
        assert!(
            answer.json()["msg"]
                .as_str()
                .unwrap_or_default()
                .contains(key),
            "{answer:?} should name {key}"
        );
    }
    let mut unsupported = node.config("t1", "1.0.0");
    unsupported["cniVersion"] = json!("0.2.0");
    assert_eq!(
        invoke(&add_env, &unsupported.to_string()).code(),
        1,
        "unsupported version is error 1"
    );
    assert!(
        node.allocations().is_empty(),
        "no refused ADD allocated anything"
    );
    assert!(
        netns
            .exec(&["ip", "link", "show", "eth0"])
            .stdout
            .is_empty(),
        "no interface in the pod"
    );
}

#[test]
fn the_log_cannot_be_forged_or_redirected() {
    // Goal: a container id with a newline stays on its own line (escaped);
    // the log is created mode 0600 and never written through a symlink.
    use std::os::unix::fs::{symlink, PermissionsExt};
    let node = Node::start();
    let netns = Netns::new();
    let path = netns.path();
    let config = node.config("t1", "1.0.0");
    let log = std::path::PathBuf::from(config["log_file"].as_str().expect("log_file"));
    let forged = "c1\n0.000 INFO pid=1 ADD container=forged ok";
    let answer = invoke(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", forged),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &path),
        ],
        &config.to_string(),
    );
    assert_eq!(answer.code(), 4, "{answer:?}");
    let text = std::fs::read_to_string(&log).expect("the refusal is logged");
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            !line.starts_with("0.000"),
            "a forged line reached the log: {text}"
        );
    }
    assert!(
        text.contains("c1\\n0.000"),
        "the id is logged escaped: {text}"
    );
    let mode = std::fs::metadata(&log).expect("log").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "log file mode");

    let target = log.with_file_name("victim");
    std::fs::write(&target, b"").expect("victim file");
    let link = log.with_file_name("link.log");
    symlink(&target, &link).expect("symlink");
    let mut linked = config.clone();
    linked["log_file"] = json!(link);
    let answer = invoke(&[("CNI_COMMAND", "ADD")], &linked.to_string());
    assert_eq!(answer.code(), 4, "{answer:?}");
    let answer = invoke(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ],
        &linked.to_string(),
    );
    assert!(answer.success, "{answer:?}");
    assert_eq!(
        std::fs::read(&target).expect("victim").len(),
        0,
        "nothing was written through the symlink"
    );
}

#[test]
fn a_second_add_for_the_same_container_and_interface_fails_and_keeps_the_first() {
    // Goal: ADD twice for one (container, ifname): the second fails, and the
    // first pod keeps its interface and address.
    let node = Node::start();
    let netns = Netns::new();
    let container = unique("dup");
    let config = node.config("t1", "1.0.0");
    let first = verb("ADD", &config, &container, Some(&netns), "eth0");
    assert!(first.success, "{first:?}");
    let second = verb("ADD", &config, &container, Some(&netns), "eth0");
    assert!(second.code() >= 100, "{second:?}");
    let check = verb(
        "CHECK",
        &with_prev_result(config.clone(), &first.json()),
        &container,
        Some(&netns),
        "eth0",
    );
    assert!(check.success, "the first pod is intact: {check:?}");
    assert_eq!(node.allocations().len(), 1);
    assert!(verb("DEL", &config, &container, Some(&netns), "eth0").success);
}

#[test]
fn del_is_idempotent_in_every_case() {
    // Goal: a second DEL, a DEL whose netns is gone, a DEL with no netns, a
    // DEL without prevResult, and a DEL for a container never added all
    // succeed, and leave nothing behind.
    let node = Node::start();
    let config = node.config("t1", "1.1.0");
    let container = unique("del");
    let netns = Netns::new();
    let add = verb("ADD", &config, &container, Some(&netns), "eth0");
    assert!(add.success, "{add:?}");
    let del = verb(
        "DEL",
        &with_prev_result(config.clone(), &add.json()),
        &container,
        Some(&netns),
        "eth0",
    );
    assert!(del.success, "{del:?}");
    assert!(
        verb("DEL", &config, &container, Some(&netns), "eth0").success,
        "second DEL"
    );

    let gone = unique("gone");
    let doomed = Netns::new();
    assert!(verb("ADD", &config, &gone, Some(&doomed), "eth0").success);
    let doomed_path = doomed.path();
    drop(doomed);
    let after_netns_gone = invoke(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", &gone),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &doomed_path),
        ],
        &config.to_string(),
    );
    assert!(
        after_netns_gone.success,
        "DEL with the netns gone: {after_netns_gone:?}"
    );
    assert!(
        verb("DEL", &config, &gone, None, "eth0").success,
        "DEL without CNI_NETNS"
    );
    assert!(
        verb("DEL", &config, &unique("never"), None, "eth0").success,
        "DEL of a container never added"
    );
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    let veths: Vec<String> = [&container, &gone]
        .iter()
        .map(|container| host_veth_name(container, "eth0"))
        .collect();
    if let Err(left) = veths_gone_within_a_second(&veths) {
        panic!("veths left a second after their DELs: {left:?}");
    }
}

#[test]
fn a_del_cuts_the_pod_off_at_once_and_nothing_of_it_outlives_the_del_by_a_second() {
    // Goal: when DEL returns, the pod's route is gone and its host end is
    // down (the pod can reach nothing); within a second its veth (both
    // ends) is gone too, deleted by the node in a batch; an ADD of the same
    // container right after its DEL works.
    let node = Node::start();
    let config = node.config("t1", "1.0.0");
    let container = unique("cut");
    let netns = Netns::new();
    let add = verb("ADD", &config, &container, Some(&netns), "eth0");
    assert!(add.success, "{add:?}");
    let address = result_address(&add.json());
    let gateway = add.json()["ips"][0]["gateway"]
        .as_str()
        .expect("gateway")
        .to_string();
    let veth = host_veth_name(&container, "eth0");
    assert!(netns
        .exec(&["ping", "-c", "1", "-W", "2", &gateway])
        .status
        .success());

    let del = verb("DEL", &config, &container, Some(&netns), "eth0");
    assert!(del.success, "{del:?}");
    let routes = sh("ip", &["route"]);
    assert!(
        !routes.contains(&format!("{address} dev {veth}")),
        "the route to {address} outlived the DEL: {routes}"
    );
    let link = sh("ip", &["-o", "link", "show", "dev", &veth]);
    assert!(
        link.is_empty() || (!link.contains(",UP") && !link.contains("<UP")),
        "the host end is still up after the DEL: {link}"
    );
    assert!(
        !netns
            .exec(&["ping", "-c", "1", "-W", "1", &gateway])
            .status
            .success(),
        "the pod still reaches its gateway after its DEL"
    );
    match veths_gone_within_a_second(std::slice::from_ref(&veth)) {
        Ok(took) => eprintln!("{veth} gone {} ms after the DEL", took.as_millis()),
        Err(left) => panic!("{left:?} outlived the DEL by more than a second"),
    }
    let pod_links = netns.exec(&["ip", "-o", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&pod_links.stdout).contains("eth0"),
        "the pod's end is still there"
    );
    assert!(
        !sh("ip", &["-o", "addr", "show"]).contains(&format!("{address}/")),
        "the pod's address is still on a host interface"
    );

    // DEL and ADD again at once: the retired veth may still be there, and
    // the ADD replaces it.
    let again = Netns::new();
    assert!(verb("ADD", &config, &container, Some(&again), "eth0").success);
    assert!(verb("DEL", &config, &container, Some(&again), "eth0").success);
    let readd = verb("ADD", &config, &container, Some(&again), "eth0");
    assert!(readd.success, "ADD right after DEL: {readd:?}");
    assert!(again
        .exec(&["ping", "-c", "1", "-W", "2", &gateway])
        .status
        .success());
    assert!(verb("DEL", &config, &container, Some(&again), "eth0").success);
    if let Err(left) = veths_gone_within_a_second(&[veth]) {
        panic!("{left:?} outlived the last DEL by more than a second");
    }
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
}

#[test]
fn check_fails_when_the_route_or_address_is_removed_by_hand() {
    // Goal: CHECK passes after ADD and names what is wrong once the default
    // route, or the address, is removed behind the plugin's back.
    let node = Node::start();
    let config = node.config("t1", "1.0.0");
    for broken in ["route", "address"] {
        let netns = Netns::new();
        let container = unique("chk");
        let add = verb("ADD", &config, &container, Some(&netns), "eth0");
        assert!(add.success, "{add:?}");
        let result = add.json();
        let checked = with_prev_result(config.clone(), &result);
        assert!(verb("CHECK", &checked, &container, Some(&netns), "eth0").success);
        let address = result_address(&result);
        let removal = if broken == "route" {
            netns.exec(&["ip", "route", "del", "default"])
        } else {
            netns.exec(&["ip", "addr", "del", &format!("{address}/32"), "dev", "eth0"])
        };
        assert!(removal.status.success(), "{removal:?}");
        let check = verb("CHECK", &checked, &container, Some(&netns), "eth0");
        assert_eq!(check.code(), 102, "{broken}: {check:?}");
        let msg = check.json()["msg"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains(broken),
            "the message names the {broken}: {msg}"
        );
        assert!(verb("DEL", &checked, &container, Some(&netns), "eth0").success);
    }
}

#[test]
fn gc_frees_stale_addresses_of_its_network_only() {
    // Goal: GC releases this network's addresses that are not in the valid
    // attachments, keeps the valid ones, and leaves other networks alone.
    let node = Node::start();
    let t1 = node.config("t1", "1.1.0");
    let t2 = node.config("t2", "1.1.0");
    let (keep, stale, other) = (unique("keep"), unique("stale"), unique("other"));
    let netns: Vec<Netns> = (0..3).map(|_| Netns::new()).collect();
    assert!(verb("ADD", &t1, &keep, Some(&netns[0]), "eth0").success);
    assert!(verb("ADD", &t1, &stale, Some(&netns[1]), "eth0").success);
    assert!(verb("ADD", &t2, &other, Some(&netns[2]), "eth0").success);
    let mut gc = t1.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": keep, "ifname": "eth0" }]);
    let answer = invoke(&[("CNI_COMMAND", "GC")], &gc.to_string());
    assert!(answer.success, "{answer:?}");
    let held: BTreeSet<String> = node
        .allocations()
        .iter()
        .filter_map(|a| a["container_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(held, BTreeSet::from([keep.clone(), other.clone()]));
    for (container, config, ns) in [
        (&keep, &t1, &netns[0]),
        (&stale, &t1, &netns[1]),
        (&other, &t2, &netns[2]),
    ] {
        assert!(verb("DEL", config, container, Some(ns), "eth0").success);
    }
}

#[test]
fn status_is_ok_with_a_node_and_50_without() {
    // Goal: STATUS succeeds while the node is up and leads, and answers 50
    // with the reason once it is gone.
    let mut node = Node::start();
    let config = node.config("t1", "1.1.0").to_string();
    assert!(invoke(&[("CNI_COMMAND", "STATUS")], &config).success);
    node.stop();
    let down = invoke(&[("CNI_COMMAND", "STATUS")], &config);
    assert_eq!(down.code(), 50, "{down:?}");
    assert!(down.json()["msg"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot reach"));
}

#[test]
fn fifty_parallel_adds_get_distinct_addresses_and_fifty_dels_leave_nothing() {
    // Goal: 50 ADDs at once: 50 distinct addresses, each pod reaches its
    // gateway; then 50 DELs at once leave no veth, route or allocation.
    const PODS: usize = 50;
    let node = Node::start();
    let config = node.config("t1", "1.0.0");
    let pods: Vec<(String, Netns)> = (0..PODS).map(|_| (unique("par"), Netns::new())).collect();
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(container, netns)| {
                let config = &config;
                scope.spawn(move || verb("ADD", config, container, Some(netns), "eth0"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let add = h.join().expect("ADD thread");
                assert!(add.success, "{add:?}");
                add.json()
            })
            .collect()
    });
    let addresses: BTreeSet<Ipv4Addr> = results.iter().map(result_address).collect();
    assert_eq!(addresses.len(), PODS, "50 distinct addresses");
    assert_eq!(node.allocations().len(), PODS);
    for ((_, netns), result) in pods.iter().zip(&results) {
        let gateway = result["ips"][0]["gateway"].as_str().expect("gateway");
        let ping = netns.exec(&["ping", "-c", "1", "-W", "2", gateway]);
        assert!(
            ping.status.success(),
            "pod {} cannot ping {gateway}: {:?}",
            netns.name,
            ping
        );
    }
    std::thread::scope(|scope| {
        for (container, netns) in &pods {
            let config = &config;
            scope.spawn(move || {
                let del = verb("DEL", config, container, Some(netns), "eth0");
                assert!(del.success, "{del:?}");
            });
        }
    });
    assert!(node.allocations().is_empty());
    let routes = sh("ip", &["route"]);
    let veths: Vec<String> = pods
        .iter()
        .map(|(container, _)| host_veth_name(container, "eth0"))
        .collect();
    if let Err(left) = veths_gone_within_a_second(&veths) {
        panic!("veths left a second after their DELs: {left:?}");
    }
    for address in &addresses {
        assert!(
            !routes.contains(&format!("{address} dev rom")),
            "route to {address} left"
        );
    }
}

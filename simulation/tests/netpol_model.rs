//! The upstream NetworkPolicy suite's cases ([`simulation::netpol`])
//! against the policy compiler, in-process: for every probe of every case,
//! the table `policy explain` predicts must be the expected one. The same
//! cases run against real kubelets in `kubernetes_netpol.rs`.

use simulation::netpol::{cases, Model, Table};

#[test]
fn the_compiler_predicts_every_upstream_table() {
    let mut failures = Vec::new();
    let mut probes = 0;
    for case in cases() {
        let mut model = Model::new();
        let steps = (case.steps)(&model.addresses);
        for (i, step) in steps.iter().enumerate() {
            for action in &step.actions {
                model
                    .act(action)
                    .unwrap_or_else(|e| panic!("{}: step {i}: {e}", case.name));
            }
            for probe in &step.probes {
                probes += 1;
                let expected = Table::expected(probe);
                let predicted = model.predict(probe);
                if predicted != expected {
                    failures.push(format!(
                        "{} step {i} {}/{}: expected\n{expected}predicted\n{predicted}",
                        case.name, probe.protocol, probe.port
                    ));
                }
            }
        }
    }
    assert!(probes >= 40, "only {probes} probes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Installs `desired` into a fresh network namespace (sets, then rules,
/// as the node does) and reads it back.
fn install(
    netns: &romana_testkit::Netns,
    desired: &romana_node::dataplane::firewall::Desired,
) -> (usize, usize) {
    use romana_node::dataplane::{firewall, ipsets};
    let pipe = |program: &str, args: &[&str], input: &str| -> String {
        simulation::netpol::in_netns(&netns.name, program, args, input)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let sets = ipsets::restore_input(&desired.sets, &ipsets::Observed::new()).unwrap_or_default();
    pipe("ipset", &["restore"], &sets);
    let rules = firewall::restore_input(&desired.chains, &firewall::Observed::default())
        .expect("rules to install");
    pipe("iptables-restore", &["-w", "--noflush"], &rules);
    // Read back: what the kernel holds is exactly what was rendered (a
    // second pass would change nothing).
    let observed = firewall::parse_observed(&pipe("iptables", &["-w", "-S"], ""));
    assert_eq!(
        firewall::restore_input(&desired.chains, &observed),
        None,
        "the kernel prints the rules as they were rendered"
    );
    let observed_sets = ipsets::parse_save(&pipe("ipset", &["save"], ""));
    assert_eq!(ipsets::restore_input(&desired.sets, &observed_sets), None);
    let rules = observed.chains.values().map(Vec::len).sum();
    let entries = observed_sets.values().map(|s| s.members.len()).sum();
    (rules, entries)
}

#[test]
fn rules_grow_with_policies_and_set_entries_with_pods() {
    // Goal: under the same 20 policies, a host holds the same number of
    // iptables rules with 10 pods as with 300; only set entries grow. The
    // rules and sets are installed in a real kernel (a namespace) and read
    // back.
    let mut counts = Vec::new();
    for pods in [10, 300] {
        let model = Model::scaled(pods, 20);
        let host = model.host_number("host1");
        let desired = romana_node::dataplane::firewall::desired(&model.state, host, true)
            .expect("initialised");
        let netns = romana_testkit::Netns::new();
        counts.push((pods, install(&netns, &desired)));
    }
    let [(_, (rules_10, entries_10)), (_, (rules_300, entries_300))] = counts[..] else {
        panic!("two counts");
    };
    eprintln!(
        "host1, 20 policies: 10 pods: {rules_10} rules, {entries_10} set entries; \
         300 pods: {rules_300} rules, {entries_300} set entries"
    );
    assert!(rules_10 > 20, "the policies have rules ({rules_10})");
    assert_eq!(rules_10, rules_300, "rules do not grow with pods");
    assert!(
        entries_300 > 10 * entries_10.max(1),
        "set entries grow with pods: {entries_10} -> {entries_300}"
    );
}

#[test]
fn a_named_port_resolves_per_pod_and_peer_sets_fill_only_where_a_policy_applies() {
    // Goal: `port: web` opens each destination pod's own port of that name
    // (8080 on one pod, 9090 on another), never the other's number; and a
    // host with none of the policy's pods holds its peer sets empty.
    use raft_store::entry::{Labels, PodPort, PortProtocol};
    use romana_node::policy::compiler::{compile, explain, Packet, Scope, Verdict};
    use simulation::netpol::Action;
    let mut model = Model::cluster();
    let web = |port| PodPort {
        name: Some("web".into()),
        port,
        protocol: PortProtocol::Tcp,
    };
    let labels = |app: &str| Labels::from([("app".to_string(), app.to_string())]);
    let one = model
        .add_pod("x", "one", "host1", labels("web"), vec![web(8080)])
        .expect("address");
    let two = model
        .add_pod("x", "two", "host2", labels("web"), vec![web(9090)])
        .expect("address");
    let client = model
        .add_pod("y", "client", "host3", labels("client"), Vec::new())
        .expect("address");
    model
        .act(&Action::Apply(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: web, namespace: x}\n\
             spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  \
             - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]\n    \
             ports: [{port: web}]\n"
                .into(),
        ))
        .expect("apply");
    let compiled = compile(&model.state, Scope::Cluster).expect("initialised");
    let verdict = |destination, port| {
        explain(
            &compiled,
            &Packet {
                source: client,
                destination,
                protocol: raft_store::entry::policy::Protocol::Tcp,
                port: Some(port),
            },
        )
        .verdict
    };
    assert_eq!(verdict(one, 8080), Verdict::Accept);
    assert_eq!(
        verdict(one, 9090),
        Verdict::Drop,
        "not the other pod's number"
    );
    assert_eq!(verdict(two, 9090), Verdict::Accept);
    assert_eq!(verdict(two, 8080), Verdict::Drop);

    // host1 and host2 run the policy's pods: the peer set holds the client;
    // host3 runs none: the same sets exist there, empty.
    for (host, filled) in [("host1", true), ("host2", true), ("host3", false)] {
        let desired =
            romana_node::dataplane::firewall::desired(&model.state, model.host_number(host), true)
                .expect("initialised");
        let holds_client = desired
            .sets
            .values()
            .any(|set| set.members.iter().any(|m| m.address == client));
        assert_eq!(holds_client, filled, "{host}");
        let local_targets: usize = desired
            .sets
            .values()
            .filter(|set| set.description.ends_with("on this host"))
            .map(|set| set.members.len())
            .sum();
        assert_eq!(
            local_targets,
            usize::from(filled),
            "{host}: its own pods only"
        );
    }
}

//! The upstream Kubernetes NetworkPolicy e2e suite's model, ported
//! ([`simulation::netpol`]), on the Kubernetes lab with real kubelets and
//! Romana installed with `kubectl apply -f deploy/kubernetes/`: namespaces
//! x, y, z with pods a, b, c (a on host1, b on host2, c on host3), each
//! serving TCP and UDP on 80 and 81 under named ports. Every probe of every
//! case compares the whole 81-cell table observed from the pods with the
//! expected one, and with what `romanactl policy matrix` (`policy explain`
//! for every pair, the same compiler as the rules) says.
//!
//! Also: a policy the apiserver accepts but Romana cannot enforce (an IPv6
//! ipBlock) is reported as an Event on the policy and changes nothing.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::kubernetes::{leftovers, KubernetesLabGuard};
use serde_json::Value;
use simulation::lab::kubernetes::LabCni;
use simulation::netpol::{cases, pods, Action, Addresses, Pod, Probe, Table, NAMESPACES};

const HOSTS: [&str; 3] = ["host1", "host2", "host3"];
/// How long a probe waits for a connection or an answer.
const PROBE_TIMEOUT_MS: &str = "1000";
/// Probe rounds before a table that does not match is a failure (a label
/// change reaches the hosts' sets within a round or two).
const ATTEMPTS: usize = 6;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

struct Netpol<'a> {
    guard: &'a KubernetesLabGuard,
    bin: PathBuf,
    addresses: Addresses,
}

impl Netpol<'_> {
    fn romanactl(&self, host: &str, args: &[&str]) -> Result<String, String> {
        self.guard.romanactl(&self.bin, host, args)
    }

    /// The table observed from the pods: every source probes every pod at
    /// once (one exec per source, the nine in parallel).
    fn observe(&self, probe: &Probe) -> Table {
        let all = pods();
        let targets: Vec<String> = all.iter().map(|p| self.addresses[p].to_string()).collect();
        let port = probe.port.to_string();
        let protocol = probe.protocol.to_string();
        let rows: Vec<(Pod, Result<String, String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = all
                .iter()
                .map(|from| {
                    let (targets, port, protocol) = (&targets, &port, &protocol);
                    scope.spawn(move || {
                        let mut args = vec![
                            "-n",
                            from.namespace,
                            "exec",
                            from.name,
                            "--",
                            "/bin/netpol-agent",
                            "probe",
                            protocol.as_str(),
                            port.as_str(),
                            PROBE_TIMEOUT_MS,
                        ];
                        args.extend(targets.iter().map(String::as_str));
                        (
                            *from,
                            self.guard.lab.kubectl(&args).map_err(|e| e.to_string()),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread"))
                .collect()
        });
        let mut cells = BTreeMap::new();
        for (from, output) in rows {
            let output = output.unwrap_or_else(|e| panic!("probe from {from}: {e}"));
            let results: BTreeMap<&str, bool> = output
                .lines()
                .filter_map(|line| line.split_once(' '))
                .map(|(address, result)| (address, result == "ok"))
                .collect();
            for (to, address) in all.iter().zip(&targets) {
                let reached = results.get(address.as_str()).copied().unwrap_or(false);
                // A pod's traffic to itself never leaves it.
                cells.insert((from, *to), reached || from == *to);
            }
        }
        Table { cells }
    }

    /// What `policy explain` says of every cell, from host1's replica.
    fn explained(&self, probe: &Probe) -> Table {
        let all = pods();
        let names: Vec<String> = all.iter().map(Pod::to_string).collect();
        let spec = format!("{}/{}", probe.protocol, probe.port);
        let mut args = vec!["-o", "json", "policy", "matrix", spec.as_str()];
        args.extend(names.iter().map(String::as_str));
        let text = self.romanactl("host1", &args).expect("policy matrix");
        let view: Value = serde_json::from_str(&text).expect("matrix JSON");
        let mut cells = BTreeMap::new();
        for (i, from) in all.iter().enumerate() {
            for (j, to) in all.iter().enumerate() {
                let allowed = view["allowed"][i][j].as_bool().expect("a cell");
                cells.insert((*from, *to), allowed);
            }
        }
        Table { cells }
    }

    /// Every host enforces (or no longer enforces) the NetworkPolicy `key`:
    /// its rules name it.
    fn wait_rules(&self, key: &str, present: bool) {
        let needle = format!("NetworkPolicy {key} ");
        self.guard.wait_until(
            &format!(
                "{key} {} on every host",
                if present { "enforced" } else { "gone" }
            ),
            Duration::from_secs(30),
            |g| {
                HOSTS.iter().all(|host| {
                    g.lab
                        .exec_in_host(host, &["iptables-save", "-t", "filter"])
                        .is_ok_and(|rules| rules.contains(&needle) == present)
                })
            },
        );
    }

    fn act(&self, action: &Action) {
        let g = self.guard;
        match action {
            Action::Apply(text) => {
                g.apply(text);
                let key = policy_key(text);
                self.wait_rules(&key, true);
            }
            Action::Delete(key) => {
                let (namespace, name) = key.split_once('/').expect("NAMESPACE/NAME");
                g.kubectl(&["-n", namespace, "delete", "networkpolicy", name]);
                self.wait_rules(key, false);
            }
            Action::LabelPod(pod, key, value) => {
                let label = match value {
                    Some(value) => format!("{key}={value}"),
                    None => format!("{key}-"),
                };
                g.kubectl(&[
                    "-n",
                    pod.namespace,
                    "label",
                    "pod",
                    pod.name,
                    &label,
                    "--overwrite",
                ]);
            }
            Action::LabelNamespace(namespace, key, value) => {
                let label = match value {
                    Some(value) => format!("{key}={value}"),
                    None => format!("{key}-"),
                };
                g.kubectl(&["label", "namespace", namespace, &label, "--overwrite"]);
            }
        }
    }

    /// Removes every NetworkPolicy of the model's namespaces.
    fn clear(&self) {
        for namespace in NAMESPACES {
            self.guard.kubectl(&[
                "-n",
                namespace,
                "delete",
                "networkpolicy",
                "--all",
                "--wait=true",
            ]);
        }
        self.guard.wait_until(
            "no NetworkPolicy enforced on any host",
            Duration::from_secs(30),
            |g| {
                HOSTS.iter().all(|host| {
                    g.lab
                        .exec_in_host(host, &["iptables-save", "-t", "filter"])
                        .is_ok_and(|rules| !rules.contains("NetworkPolicy "))
                })
            },
        );
    }
}

/// `NAMESPACE/NAME` of a NetworkPolicy's YAML.
fn policy_key(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_string()
    };
    format!("{}/{}", field("namespace"), field("name"))
}

fn model_manifest() -> String {
    let mut text = String::new();
    for namespace in NAMESPACES {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{namespace}\"\n  labels: {{ns: \"{namespace}\"}}\n---\n"
        ));
    }
    for pod in pods() {
        text.push_str(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: "{namespace}"
  labels: {{pod: "{name}"}}
spec:
  nodeName: {host}
  terminationGracePeriodSeconds: 1
  containers:
  - name: agent
    image: localhost/romana-test:latest
    imagePullPolicy: Never
    command: ["/bin/netpol-agent", "serve", "80", "81"]
    ports:
    - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}
    - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
    - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}
    - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}
---
"#,
            name = pod.name,
            namespace = pod.namespace,
            host = pod.host(),
        ));
    }
    text
}

const UNSUPPORTED_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ipv6-only, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: "fd00::/64"}}]
"#;

#[test]
fn the_upstream_network_policy_truth_tables_hold_on_real_kubelets() {
    let guard = KubernetesLabGuard::up(3, LabCni::None);
    let (name, state_dir) = (guard.name.clone(), guard.state_dir.clone());
    let bin = common::bin_dir();
    guard.import_romana_image(&bin);
    let manifests = repo().join("deploy/kubernetes").display().to_string();
    guard.kubectl(&["apply", "-f", &manifests]);
    let mut netpol = Netpol {
        guard: &guard,
        bin,
        addresses: Addresses::new(),
    };
    // What `romanactl ready` last said on each host, printed when it
    // changes: a timeout then shows why the hosts were not ready.
    let said = std::cell::RefCell::new(std::collections::BTreeMap::new());
    guard.wait_until(
        "Romana ready on every host",
        Duration::from_secs(180),
        |_| {
            HOSTS.iter().all(|h| {
                let answer = netpol.romanactl(h, &["ready"]);
                let text = match &answer {
                    Ok(out) => format!("ready: {}", out.trim()),
                    Err(e) => format!("not ready: {}", e.trim()),
                };
                if said.borrow_mut().insert(*h, text.clone()).as_ref() != Some(&text) {
                    eprintln!("romanactl ready on {h}: {text}");
                }
                answer.is_ok()
            })
        },
    );

    guard.apply(&model_manifest());
    let phase_and_ip = |g: &KubernetesLabGuard, pod: &Pod| -> Option<Ipv4Addr> {
        let out = g
            .lab
            .kubectl(&[
                "-n",
                pod.namespace,
                "get",
                "pod",
                pod.name,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ])
            .ok()?;
        let (phase, ip) = out.trim().split_once(' ')?;
        (phase == "Running").then_some(())?;
        ip.parse().ok()
    };
    guard.wait_until(
        "the model's 9 pods Running with addresses",
        Duration::from_secs(180),
        |g| pods().iter().all(|pod| phase_and_ip(g, pod).is_some()),
    );
    for pod in pods() {
        let ip = phase_and_ip(&guard, &pod).expect("a running pod's address");
        netpol.addresses.insert(pod, ip);
    }
    // The controller mirrors the pods (their labels and named ports) before
    // the first case relies on them.
    guard.wait_until("the pods mirrored", Duration::from_secs(60), |_| {
        netpol
            .romanactl(
                "host1",
                &["-o", "json", "policy", "matrix", "tcp/80", "x/a", "z/c"],
            )
            .is_ok()
    });

    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut tables, mut cells, mut rounds) = (0, 0, 0);
    let mut names = Vec::new();
    for case in cases() {
        names.push(case.name);
        let case_started = Instant::now();
        for (i, step) in (case.steps)(&netpol.addresses).iter().enumerate() {
            for action in &step.actions {
                netpol.act(action);
            }
            for probe in &step.probes {
                let expected = Table::expected(probe);
                let mut observed = netpol.observe(probe);
                rounds += 1;
                for _ in 1..ATTEMPTS {
                    if observed == expected {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    observed = netpol.observe(probe);
                    rounds += 1;
                }
                let explained = netpol.explained(probe);
                tables += 1;
                cells += observed.cells.len();
                let label = format!("{} step {i} {}/{}", case.name, probe.protocol, probe.port);
                if observed != expected {
                    failures.push(format!(
                        "{label}: observed differs from expected at {:?}\nexpected\n{expected}observed\n{observed}",
                        observed.differences(&expected)
                    ));
                }
                if explained != observed {
                    failures.push(format!(
                        "{label}: policy explain differs from what was observed at {:?}\nexplained\n{explained}observed\n{observed}",
                        explained.differences(&observed)
                    ));
                }
            }
        }
        netpol.clear();
        eprintln!(
            "case {}: {:.1} s",
            case.name,
            case_started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "{} cases, {tables} tables ({cells} cells, {rounds} probe rounds) in {:.0} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(names.len() >= 25, "at least 25 cases: {}", names.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // A policy the apiserver accepts but Romana cannot enforce: reported as
    // an Event on it (Romana may only read NetworkPolicies: the object
    // stays the user's), and nothing changes.
    let all_open = Probe {
        protocol: simulation::netpol::Protocol::Tcp,
        port: 80,
        expect: Box::new(|_, _| true),
    };
    assert_eq!(netpol.observe(&all_open), Table::expected(&all_open));
    guard.apply(UNSUPPORTED_POLICY);
    guard.wait_until(
        "the refused policy reported as an Event",
        Duration::from_secs(30),
        |g| {
            g.lab
                .kubectl(&[
                    "-n",
                    "x",
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=ipv6-only",
                    "-o",
                    "json",
                ])
                .is_ok_and(|text| text.contains("PolicyRefused") && text.contains("ipBlock.cidr"))
        },
    );
    let listed = netpol
        .romanactl("host1", &["policy", "list"])
        .expect("policy list");
    assert!(
        !listed.contains("x/ipv6-only"),
        "the refused policy is not in force:\n{listed}"
    );
    assert_eq!(
        netpol.observe(&all_open),
        Table::expected(&all_open),
        "nothing changed"
    );

    let processes = guard.lab.kubernetes_processes();
    drop(netpol);
    drop(guard);
    let left = leftovers(&name, &state_dir, &processes);
    assert!(left.is_empty(), "left behind: {left:?}");
}

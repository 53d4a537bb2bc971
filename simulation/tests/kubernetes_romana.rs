//! Romana in real Kubernetes: the 3-host lab with `--cni none` (real
//! etcd, apiserver, scheduler, controller-manager, kubelets, containerd and
//! kube-proxy), Romana installed with one `kubectl apply -f
//! deploy/kubernetes/` of the image `deploy/kubernetes/image.sh` builds.
//! Nothing here is a mock.
//!
//! One test, in steps (a lab takes a minute to start): the watch count with
//! 1 and 3 nodes; ten installs from scratch, each forming exactly one Raft
//! cluster; the seed's "How to test"; tenants from namespace labels; the
//! cluster DNS across tenants; a NetworkPolicy and the seed's CRD object;
//! the audit; a rolling restart under a probe; `kubectl delete node`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kubernetes::{leftovers, KubernetesLabGuard};
use serde_json::Value;
use simulation::lab::kubernetes::LabCni;

const HOSTS: [&str; 3] = ["host1", "host2", "host3"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn manifests() -> String {
    repo().join("deploy/kubernetes").display().to_string()
}

fn example(name: &str) -> String {
    repo()
        .join("deploy/kubernetes/examples")
        .join(name)
        .display()
        .to_string()
}

struct Romana<'a> {
    guard: &'a KubernetesLabGuard,
    bin: PathBuf,
}

impl Romana<'_> {
    fn romanactl(&self, host: &str, args: &[&str]) -> Result<String, String> {
        self.guard.romanactl(&self.bin, host, args)
    }

    fn romanactl_json(&self, host: &str, args: &[&str]) -> Result<Value, String> {
        let mut full = vec!["-o", "json"];
        full.extend(args);
        let text = self.romanactl(host, &full)?;
        serde_json::from_str(&text).map_err(|e| format!("romanactl printed {text:?}: {e}"))
    }

    /// Every host of `hosts` is a voter of one cluster with one leader, as
    /// every one of them sees it.
    fn one_cluster(&self, hosts: &[&str]) -> Result<String, String> {
        let mut leaders = BTreeSet::new();
        let want: BTreeSet<String> = hosts.iter().map(|h| h.to_string()).collect();
        for host in hosts {
            let status = self.romanactl_json(host, &["status"])?;
            let leader = status["leader"]
                .as_str()
                .ok_or_else(|| format!("{host} knows no leader"))?;
            leaders.insert(leader.to_string());
            let voters: BTreeSet<String> = status["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect();
            if voters != want {
                return Err(format!("{host} sees voters {voters:?}"));
            }
        }
        match leaders.len() {
            1 => Ok(leaders.into_iter().next().unwrap_or_default()),
            _ => Err(format!("leaders seen: {leaders:?}")),
        }
    }

    fn conflist_on(&self, host: &str) -> bool {
        self.guard
            .lab
            .exec_in_host(host, &["cat", "/etc/cni/net.d/10-romana.conflist"])
            .is_ok_and(|text| text.contains("\"romana\"") && text.contains("portmap"))
    }

    fn ready_nodes(&self) -> BTreeSet<String> {
        let nodes = self.guard.kubectl_json(&["get", "nodes"]);
        nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Removes Romana as an operator would: the manifest's DaemonSet, the
    /// bootstrap Secret, then `romana-node cleanup --uninstall` on each host.
    fn uninstall(&self) {
        let g = self.guard;
        g.kubectl(&[
            "-n",
            "kube-system",
            "delete",
            "daemonset",
            "romana-node",
            "--ignore-not-found",
            "--wait=true",
        ]);
        g.wait_until("the romana-node pods gone", Duration::from_secs(120), |g| {
            g.lab
                .kubectl(&[
                    "-n",
                    "kube-system",
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/name=romana-node",
                    "-o",
                    "name",
                ])
                .is_ok_and(|out| out.trim().is_empty())
        });
        g.kubectl(&[
            "-n",
            "kube-system",
            "delete",
            "secret",
            "romana-cluster",
            "--ignore-not-found",
        ]);
        let node = self.bin.join("romana-node").display().to_string();
        for host in HOSTS {
            g.lab
                .exec_in_host(host, &[&node, "cleanup", "--uninstall"])
                .unwrap_or_else(|e| panic!("cleanup on {host}: {e}"));
            // The host is as it was: no rules, conflist, plugin or data.
            let rules = g
                .lab
                .exec_in_host(host, &["iptables-save"])
                .unwrap_or_default();
            assert!(
                !rules.contains("ROMANA"),
                "{host} keeps Romana's rules:\n{rules}"
            );
            let files = g
                .lab
                .exec_in_host(
                    host,
                    &[
                        "ls",
                        "-A",
                        "/etc/cni/net.d",
                        "/opt/cni/bin",
                        "/var/lib/romana",
                    ],
                )
                .unwrap_or_default();
            for left in [
                "10-romana.conflist",
                "romana\n",
                ".romana-installed",
                "loopback",
                "portmap",
                "raft",
                "cluster-secret",
            ] {
                assert!(
                    !files.contains(left),
                    "{host} keeps {left:?} after the uninstall:\n{files}"
                );
            }
        }
    }

    /// Installs and waits for one cluster of all hosts with every node
    /// Ready; returns the time it took.
    fn install(&self) -> Duration {
        let started = Instant::now();
        self.guard.kubectl(&["apply", "-f", &manifests()]);
        self.guard.wait_until(
            "one Raft cluster of 3, 3 nodes Ready with Romana's conflist",
            Duration::from_secs(180),
            |_| {
                self.one_cluster(&HOSTS).is_ok()
                    && HOSTS.iter().all(|h| self.conflist_on(h))
                    && self.ready_nodes().len() == 3
            },
        );
        started.elapsed()
    }

    /// Open WATCH requests on the apiserver for the kinds the controller
    /// watches.
    fn watches(&self) -> u64 {
        self.watch_counts().values().sum()
    }

    /// Open WATCH requests by kind, for the kinds the controller watches.
    fn watch_counts(&self) -> BTreeMap<String, u64> {
        let metrics = self.guard.kubectl(&["get", "--raw", "/metrics"]);
        let kinds = [
            "pods",
            "namespaces",
            "nodes",
            "networkpolicies",
            "romananetworkpolicies",
        ];
        let mut counts = BTreeMap::new();
        for line in metrics.lines().filter(|l| {
            l.starts_with("apiserver_longrunning_requests{") && l.contains("verb=\"WATCH\"")
        }) {
            let Some(kind) = kinds
                .iter()
                .find(|k| line.contains(&format!("resource=\"{k}\"")))
            else {
                continue;
            };
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            *counts.entry(kind.to_string()).or_insert(0) += value as u64;
        }
        counts
    }

    /// The watch count once it holds still for three reads in a row.
    fn steady_watches(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen.push(self.watches());
            if seen.len() >= 3 && seen[seen.len() - 3..].windows(2).all(|w| w[0] == w[1]) {
                return seen[seen.len() - 1];
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("the watch count never held still: {seen:?}");
    }

    fn pod_ip(&self, namespace: &str, name: &str) -> String {
        self.guard
            .kubectl(&[
                "-n",
                namespace,
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.podIP}",
            ])
            .trim()
            .to_string()
    }

    fn wait_running(&self, namespace: &str, names: &[&str]) {
        self.guard.wait_until(
            &format!("{names:?} Running in {namespace}"),
            Duration::from_secs(120),
            |_| {
                names.iter().all(|n| {
                    let phase = self
                        .guard
                        .lab
                        .kubectl(&[
                            "-n",
                            namespace,
                            "get",
                            "pod",
                            n,
                            "-o",
                            "jsonpath={.status.phase}",
                        ])
                        .unwrap_or_default();
                    phase.trim() == "Running" && !self.pod_ip(namespace, n).is_empty()
                })
            },
        );
    }

    fn pings(&self, namespace: &str, from: &str, to_ip: &str) -> bool {
        self.guard
            .lab
            .kubectl(&[
                "-n", namespace, "exec", from, "--", "ping", "-c", "1", "-W", "2", to_ip,
            ])
            .is_ok_and(|out| out.contains("1 packets received"))
    }

    fn http(&self, namespace: &str, from: &str, to_ip: &str) -> bool {
        let url = format!("http://{to_ip}/");
        self.guard
            .lab
            .kubectl(&[
                "-n", namespace, "exec", from, "--", "timeout", "3", "wget", "-q", "-O-", &url,
            ])
            .is_ok_and(|page| page.contains("romana test image"))
    }

    /// `(tenant number, segment number)` of a tenant and segment.
    fn numbers(&self, tenant: &str, segment: &str) -> (u64, u64) {
        let tenants = self
            .romanactl_json("host1", &["tenant", "list"])
            .expect("tenant list");
        let record = tenants
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == tenant)
            .unwrap_or_else(|| panic!("tenant {tenant} in {tenants}"));
        let segment_number = record["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == segment)
            .and_then(|s| s["number"].as_u64())
            .unwrap_or_else(|| panic!("segment {segment} of {record}"));
        (record["number"].as_u64().expect("number"), segment_number)
    }

    /// Host number of each host.
    fn host_numbers(&self) -> BTreeMap<String, u64> {
        let hosts = self
            .romanactl_json("host1", &["host", "list"])
            .expect("host list");
        hosts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h["name"].as_str()?.to_string(), h["host_number"].as_u64()?)))
            .collect()
    }

    /// Address and owner of every allocation.
    fn allocations(&self, host: &str) -> BTreeSet<(String, String, String)> {
        let list = self
            .romanactl_json(host, &["ipam", "list"])
            .expect("ipam list");
        list.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
                (text("address"), text("host"), text("container_id"))
            })
            .collect()
    }
}

/// Host, tenant and segment numbers of an address under the default layout
/// (10.0.0.0/8, 8 host, 4 tenant, 4 segment, 8 endpoint bits).
fn address_parts(ip: &str) -> (u64, u64, u64) {
    let octets: Vec<u64> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    assert_eq!(octets.len(), 4, "{ip} is an IPv4 address");
    (octets[1], octets[2] >> 4, octets[2] & 0xf)
}

const LABELLED_NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {romana.io/tenant: t2}}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: team-b}
spec:
  nodeName: host2
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
---
apiVersion: v1
kind: Namespace
metadata: {name: alpha}
---
apiVersion: v1
kind: Namespace
metadata: {name: beta}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: alpha}
spec:
  nodeName: host1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: beta}
spec:
  nodeName: host3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx-t9, namespace: default, labels: {romana.io/tenant: t9}}
spec:
  nodeName: host1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
"#;

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {romana.io/tenant: t2}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {romana.io/segment: backend}}
spec:
  nodeName: host2
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: localhost/romana-test:latest
    imagePullPolicy: Never
    command: ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/var/www"]
    ports: [{containerPort: 80, name: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: shop, labels: {romana.io/segment: frontend}}
spec:
  nodeName: host1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  nodeName: host3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: localhost/romana-test:latest, imagePullPolicy: Never}
"#;

const NETWORK_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {romana.io/segment: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {romana.io/segment: frontend}}}]
    ports: [{protocol: TCP, port: 80}]
"#;

/// The seed's policy object, as the CRD: namespace = tenant (t1 here),
/// opening t1's pods' port 80 to pods of tenant t2.
const SEED_POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: t1}
---
apiVersion: romana.io/v1
kind: RomanaNetworkPolicy
metadata: {name: pol1, namespace: t1}
spec:
  allowIncoming:
    toPorts: [{port: 80, protocol: TCP}]
    from: [{pods: {tenant: t2, segment: default}}]
"#;

#[test]
fn romana_installs_with_one_apply_and_isolates_tenants_in_real_kubernetes() {
    let guard = KubernetesLabGuard::up(3, LabCni::None);
    let (name, state_dir) = (guard.name.clone(), guard.state_dir.clone());
    let romana = Romana {
        guard: &guard,
        bin: common::bin_dir(),
    };

    // The image, from this build's binaries, into every host's containerd.
    guard.import_romana_image(&romana.bin);

    // 1. Watches with 1 node, then the full install adds 2 nodes: the
    //    controller's watches on the apiserver do not grow.
    //    The CRD comes first: the controller-manager's garbage collector
    //    watches every resource it discovers (every 30 s), the CRD's too,
    //    and that watch belongs to the baseline.
    let rendered = guard.kubectl(&[
        "apply",
        "-f",
        &manifests(),
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let mut list: Value = serde_json::from_str(&rendered).expect("kubectl printed JSON");
    let mut everything_else = list.clone();
    if let Some(items) = everything_else["items"].as_array_mut() {
        items.retain(|item| item["kind"] != "DaemonSet");
    }
    guard.apply(&everything_else.to_string());
    guard.wait_until(
        "the controller-manager watching the CRD",
        Duration::from_secs(90),
        |_| {
            romana
                .watch_counts()
                .get("romananetworkpolicies")
                .is_some_and(|n| *n >= 1)
        },
    );
    let baseline = romana.steady_watches();
    println!(
        "watches by kind before romana-node runs: {:?}",
        romana.watch_counts()
    );
    for item in list["items"].as_array_mut().expect("a List") {
        if item["kind"] == "DaemonSet" {
            item["spec"]["template"]["spec"]["nodeSelector"] =
                serde_json::json!({"kubernetes.io/hostname": "host1"});
        }
    }
    guard.apply(&list.to_string());
    guard.wait_until("a cluster of host1 alone", Duration::from_secs(120), |_| {
        romana.one_cluster(&["host1"]).is_ok() && romana.conflist_on("host1")
    });
    let with_one = romana.steady_watches() - baseline;
    println!("watches by kind with 1 node: {:?}", romana.watch_counts());
    let took = romana.install();
    let with_three = romana.steady_watches() - baseline;
    println!("watches by kind with 3 nodes: {:?}", romana.watch_counts());
    println!("controller watches: {with_one} with 1 node, {with_three} with 3 nodes; 2 nodes joined in {took:?}");
    assert_eq!(with_one, with_three, "the watch count grows with nodes");
    assert_eq!(
        with_one, 5,
        "one watch per kind (namespaces, pods, nodes, networkpolicies, romananetworkpolicies)"
    );

    // 2. Ten installs from scratch (no data, no Secret), every DaemonSet pod
    //    started at once: exactly one cluster each time.
    let rounds: usize = std::env::var("ROMANA_BOOTSTRAP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut times = Vec::new();
    let mut creators = BTreeMap::new();
    for _ in 0..rounds {
        romana.uninstall();
        times.push(romana.install());
        let secret = guard.kubectl_json(&["-n", "kube-system", "get", "secret", "romana-cluster"]);
        let creator = secret["metadata"]["annotations"]["romana.io/bootstrap-node"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        *creators.entry(creator).or_insert(0) += 1;
    }
    println!("{rounds} installs from scratch, one cluster of 3 each: {times:?}; bootstrap winners {creators:?}");

    // 3. The seed's "How to test": t1 pods on every host, a t2 pod.
    guard.kubectl(&[
        "apply",
        "-f",
        &example("pods.yaml"),
        "-f",
        &example("dns-server.yaml"),
    ]);
    let t1 = ["nginx-t1-1", "nginx-t1-2", "nginx-t1-3"];
    romana.wait_running(
        "default",
        &["nginx-t1-1", "nginx-t1-2", "nginx-t1-3", "nginx-t2-1"],
    );
    romana.wait_running("kube-system", &["dns"]);
    let listing = Command::new("jq")
        .arg("-c")
        .arg(".items[] | { podIP: .status.podIP, containerID: .status.containerStatuses[].containerID, Node:.spec.nodeName, Name: .metadata.name }")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut jq| {
            use std::io::Write;
            let pods = guard.kubectl(&["get", "pods", "-o", "json"]);
            jq.stdin.take().expect("stdin").write_all(pods.as_bytes())?;
            jq.wait_with_output()
        })
        .expect("jq");
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    println!("{listing}");
    let hosts = romana.host_numbers();
    let (t1_number, default_segment) = romana.numbers("t1", "default");
    let (t2_number, _) = romana.numbers("t2", "default");
    let mut t1_ips = Vec::new();
    for line in listing.lines().filter(|l| l.contains("nginx-t1-")) {
        let pod: Value = serde_json::from_str(line).expect("jq printed JSON");
        let ip = pod["podIP"].as_str().expect("podIP").to_string();
        let node = pod["Node"].as_str().expect("Node");
        assert!(pod["containerID"]
            .as_str()
            .is_some_and(|c| c.starts_with("containerd://")));
        assert_eq!(
            address_parts(&ip),
            (hosts[node], t1_number, default_segment),
            "{ip} of {} on {node} says host, tenant t1, segment default",
            pod["Name"]
        );
        t1_ips.push(ip);
    }
    assert_eq!(t1_ips.len(), 3, "three t1 pods listed: {listing}");
    let t2_ip = romana.pod_ip("default", "nginx-t2-1");
    assert_eq!(address_parts(&t2_ip).1, t2_number, "{t2_ip} is in t2");
    for ip in &t1_ips[1..] {
        assert!(
            romana.pings("default", t1[0], ip),
            "t1 reaches t1 at {ip} across hosts"
        );
    }
    assert!(
        !romana.pings("default", "nginx-t2-1", &t1_ips[1]),
        "t2 must not reach t1"
    );
    assert!(
        !romana.pings("default", t1[0], &t2_ip),
        "t1 must not reach t2"
    );
    for (host, pod) in HOSTS.iter().zip(t1) {
        let log = guard
            .lab
            .exec_in_host(host, &["cat", "/tmp/romana-cni.log"])
            .unwrap_or_default();
        let ip = romana.pod_ip("default", pod);
        assert!(
            log.contains(" Add ") && log.contains(&ip),
            "{host}'s /tmp/romana-cni.log records the ADD of {ip}:\n{log}"
        );
    }

    // 4. Tenants from namespace labels; unlabelled namespaces behave like
    //    stock Kubernetes; an unknown tenant fails the ADD with a message
    //    `kubectl describe pod` shows.
    guard.apply(LABELLED_NAMESPACE);
    romana.wait_running("team-b", &["plain"]);
    romana.wait_running("alpha", &["a"]);
    romana.wait_running("beta", &["b"]);
    let plain = romana.pod_ip("team-b", "plain");
    assert_eq!(
        address_parts(&plain).1,
        t2_number,
        "{plain}: an unlabelled pod of a t2 namespace is in t2"
    );
    let b = romana.pod_ip("beta", "b");
    assert!(
        romana.pings("alpha", "a", &b),
        "pods of unlabelled namespaces reach each other"
    );
    guard.wait_until("the t9 pod's event", Duration::from_secs(60), |g| {
        g.lab
            .kubectl(&["describe", "pod", "nginx-t9"])
            .is_ok_and(|d| d.contains("tenant \"t9\"") && d.contains("is not configured"))
    });

    // 5. The cluster DNS (kube-system, k8s-app: kube-dns) serves every
    //    tenant through its Service, while tenants stay apart.
    // (The Service's endpoints and the DNS pod's mirror take a moment.)
    for pod in [t1[0], "nginx-t2-1"] {
        guard.wait_until(
            &format!("{pod} resolving through the cluster DNS"),
            Duration::from_secs(60),
            |g| {
                g.lab
                    .kubectl(&["exec", pod, "--", "nslookup", "example.org"])
                    .is_ok_and(|answer| answer.contains("192.0.2.53"))
            },
        );
    }
    let dns_ip = romana.pod_ip("kube-system", "dns");
    assert!(
        !romana.pings("default", t1[0], &dns_ip),
        "only the DNS ports are shared, not the pod"
    );
    assert!(
        !romana.pings("default", "nginx-t2-1", &t1_ips[0]),
        "t2 still must not reach t1"
    );

    // 6. A Kubernetes NetworkPolicy and the seed's CRD, applied and deleted
    //    with kubectl.
    guard.apply(SHOP);
    romana.wait_running("shop", &["web", "front", "client"]);
    let web = romana.pod_ip("shop", "web");
    assert!(
        romana.http("shop", "client", &web),
        "without a policy, a tenant's pods reach each other"
    );
    guard.apply(NETWORK_POLICY);
    guard.wait_until(
        "the NetworkPolicy enforced",
        Duration::from_secs(30),
        |_| !romana.http("shop", "client", &web),
    );
    assert!(
        romana.http("shop", "front", &web),
        "the policy lets the frontend in"
    );
    guard.kubectl(&[
        "-n",
        "shop",
        "delete",
        "networkpolicy",
        "backend-from-frontend",
    ]);
    guard.wait_until("the NetworkPolicy removed", Duration::from_secs(30), |_| {
        romana.http("shop", "client", &web)
    });
    let t1_web = &t1_ips[0];
    assert!(
        !romana.http("default", "nginx-t2-1", t1_web),
        "t2 is refused by t1's web"
    );
    guard.apply(SEED_POLICY);
    guard.wait_until(
        "the seed's policy enforced",
        Duration::from_secs(30),
        |_| romana.http("default", "nginx-t2-1", t1_web),
    );
    guard.kubectl(&["-n", "t1", "delete", "romananetworkpolicy", "pol1"]);
    guard.wait_until("the seed's policy removed", Duration::from_secs(30), |_| {
        !romana.http("default", "nginx-t2-1", t1_web)
    });

    // 7. The audit log answers which labels and policies were in force.
    let audit = romana
        .romanactl("host2", &["audit", "log"])
        .expect("audit log");
    for wanted in [
        "mirror-pod default/nginx-t1-1",
        "mirror-namespace team-b labels={kubernetes.io/metadata.name=team-b,romana.io/tenant=t2}",
        "kubernetes:NetworkPolicy shop/backend-from-frontend",
        "kubernetes:RomanaNetworkPolicy t1/pol1",
        "delete-network-policy shop/backend-from-frontend",
    ] {
        assert!(
            audit.contains(wanted),
            "the audit log shows {wanted:?}:\n{audit}"
        );
    }

    // 8. A rolling restart of the DaemonSet under a probe: traffic keeps
    //    flowing, no address changes.
    let before = romana.allocations("host1");
    let probe = guard
        .lab
        .kubectl_command(&[
            "exec", t1[0], "--", "ping", "-i", "0.2", "-w", "60", &t1_ips[2],
        ])
        .expect("kubectl command")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the probe");
    let restarted = Instant::now();
    guard.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "restart",
        "daemonset/romana-node",
    ]);
    guard.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/romana-node",
        "--timeout=240s",
    ]);
    let rollout = restarted.elapsed();
    let probed = probe.wait_with_output().expect("the probe ends");
    let output = String::from_utf8_lossy(&probed.stdout);
    let sequences: Vec<u64> = output
        .lines()
        .filter_map(|l| {
            l.split("seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let longest_gap = sequences
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(u64::MAX);
    println!(
        "rolling restart took {rollout:?}; probe: {} replies, longest gap {} ms",
        sequences.len(),
        longest_gap.saturating_sub(1) * 200
    );
    assert!(
        sequences.len() > 100,
        "the probe saw replies throughout: {output}"
    );
    assert!(
        longest_gap <= 10,
        "a gap of at most 2 s in pod-to-pod traffic, saw {longest_gap} intervals"
    );
    romana
        .one_cluster(&HOSTS)
        .expect("one cluster after the restart");
    assert_eq!(
        romana.allocations("host1"),
        before,
        "the restart changed no address"
    );

    // 9. host3's machine is lost with pods on it (cordoned, its kubelet
    //    and romana-node killed; a drain would have DEL'd its pods and
    //    released their addresses itself), then `kubectl delete node
    //    host3`: its addresses are released and it leaves the membership.
    guard.kubectl(&["cordon", "host3"]);
    for (pid, command) in guard.lab.kubernetes_processes() {
        let on_host3 = command.contains("host3");
        if (command.contains("kubelet") && on_host3)
            || (command.contains("romana-node run") && command.contains("--name host3"))
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    assert!(
        romana.allocations("host1").iter().any(|a| a.1 == "host3"),
        "host3 held addresses before it was lost"
    );
    guard.kubectl(&["delete", "node", "host3"]);
    guard.wait_until(
        "host3 removed, its addresses released",
        Duration::from_secs(90),
        |_| {
            romana.one_cluster(&["host1", "host2"]).is_ok()
                && !romana.allocations("host1").iter().any(|a| a.1 == "host3")
        },
    );

    let processes = guard.lab.kubernetes_processes();
    drop(guard);
    let left = leftovers(&name, &state_dir, &processes);
    assert!(left.is_empty(), "down left behind: {left:#?}");
}

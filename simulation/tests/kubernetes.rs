//! The Kubernetes test bed itself, on the stock CNI (ptp + host-local):
//! real etcd, kube-apiserver, controller-manager and scheduler on host1,
//! containerd, a kubelet and kube-proxy on every host. Nothing here is a
//! mock: if this test passes, the lab is a Kubernetes cluster.
//!
//! Needs the Kubernetes build and the lab images (deploy/test.sh makes them
//! first: deploy/lab/build-kubernetes.sh, deploy/lab/build-images.sh).

mod common;

use std::time::Duration;

use common::kubernetes::{leftovers, KubernetesLabGuard};
use simulation::lab;
use simulation::lab::kubernetes::LabCni;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 6
  selector:
    matchLabels: {app: spread}
  template:
    metadata:
      labels: {app: spread}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: spread}
      containers:
      - name: test
        image: localhost/romana-test:latest
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "echo romana-test up on $(hostname); trap 'exit 0' TERM; sleep 2147483647 & wait"]
"#;

const BACKEND: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: backend
  labels: {app: backend}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: host2}
  containers:
  - name: httpd
    image: localhost/romana-test:latest
    imagePullPolicy: Never
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/var/www"]
    ports:
    - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector: {app: backend}
  ports:
  - {port: 80, targetPort: http}
"#;

/// The 3-host lab comes up as a Kubernetes cluster; pods spread over the
/// hosts, reach each other and a Service across hosts; `kubectl exec` and
/// `logs` work; `down` leaves nothing behind.
#[test]
fn three_host_kubernetes_lab_runs_pods_services_and_cleans_up() {
    let guard = KubernetesLabGuard::up(3, LabCni::Ptp);
    let (name, state_dir) = (guard.name.clone(), guard.state_dir.clone());

    // Three Ready nodes, named as the lab's hosts.
    let nodes = guard.kubectl_json(&["get", "nodes"]);
    let mut names: Vec<String> = nodes["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|n| {
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["host1", "host2", "host3"], "3 Ready nodes");

    // Six pods, two per host, all Running with an address from their host's
    // subnet.
    guard.apply(DEPLOYMENT);
    guard.wait_until("6 spread pods Running", Duration::from_secs(180), |g| {
        let pods = g.pods("app=spread");
        pods.len() == 6 && pods.iter().all(|p| p.2 == "Running" && !p.3.is_empty())
    });
    let pods = guard.pods("app=spread");
    for host in ["host1", "host2", "host3"] {
        let on_host: Vec<_> = pods.iter().filter(|p| p.1 == host).collect();
        assert_eq!(on_host.len(), 2, "two pods on {host}: {pods:?}");
        let number = &host[4..];
        for pod in on_host {
            assert!(
                pod.3.starts_with(&format!("10.244.{number}.")),
                "{} on {host} has {} (want 10.244.{number}.x)",
                pod.0,
                pod.3
            );
        }
    }

    // kubectl exec and kubectl logs go through the apiserver to the kubelet.
    let first = pods
        .iter()
        .find(|p| p.1 == "host1")
        .expect("a pod on host1");
    let hostname = guard.kubectl(&["exec", &first.0, "--", "hostname"]);
    assert_eq!(hostname.trim(), first.0, "exec runs in the pod");
    guard.wait_until("the pod's log line", Duration::from_secs(30), |g| {
        g.lab
            .kubectl(&["logs", &first.0])
            .is_ok_and(|log| log.contains(&format!("romana-test up on {}", first.0)))
    });

    // A pod pings a pod on another host.
    let remote = pods
        .iter()
        .find(|p| p.1 == "host2")
        .expect("a pod on host2");
    let ping = guard.kubectl(&[
        "exec", &first.0, "--", "ping", "-c", "1", "-W", "3", &remote.3,
    ]);
    assert!(
        ping.contains("1 packets received"),
        "ping {}: {ping}",
        remote.3
    );

    // A pod on host3 reaches a ClusterIP Service backed by a pod on host2.
    guard.apply(BACKEND);
    guard.wait_until("the backend pod Running", Duration::from_secs(120), |g| {
        g.pods("app=backend").iter().any(|p| p.2 == "Running")
    });
    let cluster_ip = guard
        .kubectl(&[
            "get",
            "service",
            "backend",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .trim()
        .to_string();
    assert!(cluster_ip.starts_with("172.20."), "ClusterIP {cluster_ip}");
    let client = pods
        .iter()
        .find(|p| p.1 == "host3")
        .expect("a pod on host3");
    let url = format!("http://{cluster_ip}/");
    // `timeout`, not wget -T: Debian's static busybox 1.35 wget segfaults on -T.
    guard.wait_until("the Service to answer", Duration::from_secs(60), |g| {
        g.lab
            .kubectl(&[
                "exec", &client.0, "--", "timeout", "5", "wget", "-q", "-O-", &url,
            ])
            .is_ok_and(|page| page.contains("romana test image"))
    });

    // Deleting pods removes their interfaces from the hosts; the backend
    // stays, so that `down` has a running pod to end.
    guard.kubectl(&["delete", "deployment", "spread", "--wait=true"]);
    guard.wait_until("the spread pods gone", Duration::from_secs(90), |g| {
        g.pods("app=spread").is_empty()
    });
    let pod_veths = |g: &KubernetesLabGuard, host: &str| {
        g.lab
            .exec(host, &["ip", "-o", "link", "show", "type", "veth"])
            .map(|links| links.lines().filter(|l| !l.contains("eth0@")).count())
            .unwrap_or(usize::MAX)
    };
    guard.wait_until("pod veths removed", Duration::from_secs(60), |g| {
        pod_veths(g, "host1") == 0 && pod_veths(g, "host2") == 1 && pod_veths(g, "host3") == 0
    });

    let processes = guard.lab.kubernetes_processes();
    assert!(
        processes.iter().any(|(_, c)| c.contains("containerd-shim")),
        "the hosts' processes include the runtime's shims: {processes:?}"
    );
    drop(guard);
    let left = leftovers(&name, &state_dir, &processes);
    assert!(left.is_empty(), "down left behind: {left:#?}");
}

/// `down` after a crash: the lab's own record (lab.json) is gone and a
/// kubelet was killed with a pod running; `down` still finds and removes
/// every process, mount, cgroup and namespace by the lab's names.
#[test]
fn down_cleans_up_after_a_crash_without_the_lab_record() {
    let exists =
        || lab::kubernetes::HOST_PRIVATE_PATHS.map(|path| std::path::Path::new(path).exists());
    let before = exists();
    let guard = KubernetesLabGuard::up(1, LabCni::Ptp);
    let (name, state_dir, dir) = (
        guard.name.clone(),
        guard.state_dir.clone(),
        guard.dir.clone(),
    );
    guard.apply(BACKEND.replace("host2", "host1").as_str());
    guard.wait_until("the backend pod Running", Duration::from_secs(120), |g| {
        g.pods("app=backend").iter().any(|p| p.2 == "Running")
    });
    let processes = guard.lab.kubernetes_processes();
    let kubelet = processes
        .iter()
        .find(|(_, command)| command.contains("kubelet --config"))
        .expect("a kubelet runs");
    lab::run("kill", &["-9", &kubelet.0.to_string()]).expect("kill the kubelet");
    std::fs::remove_file(dir.join("lab.json")).expect("remove lab.json");
    // The guard's down now runs without the lab's record.
    drop(guard);
    let mut left = leftovers(&name, &state_dir, &processes);
    for ((path, was), is) in lab::kubernetes::HOST_PRIVATE_PATHS
        .iter()
        .zip(before)
        .zip(exists())
    {
        if was != is {
            left.push(format!("{path} existed before: {was}, after: {is}"));
        }
    }
    assert!(left.is_empty(), "down after a crash left behind: {left:#?}");
}

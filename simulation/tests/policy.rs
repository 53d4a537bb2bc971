//! Network policies with real packets in the lab (root): a policy opens
//! exactly what it says, in each of its three formats; Kubernetes egress and
//! ipBlock semantics; `policy explain` agrees with the packets; bad policies
//! change nothing.

mod common;

use std::io::Write;

use common::{tcp_reaches, tcp_server, udp_reaches, LabGuard};

/// What `policy explain` says: "allowed" or "denied".
fn explain(lab: &LabGuard, src: &str, dst: &str, what: &str) -> String {
    let out = lab
        .try_ctl(&["policy", "explain", src, dst, what])
        .expect("explain");
    out.split(':').next().unwrap_or_default().trim().to_string()
}

fn apply(lab: &LabGuard, text: &str) -> Result<String, String> {
    let mut file = tempfile_in_tmp();
    file.1.write_all(text.as_bytes()).expect("write policy");
    let path = file.0.display().to_string();
    let result = lab.try_ctl(&["policy", "apply", "-f", &path]);
    let _ = std::fs::remove_file(&file.0);
    result
}

fn tempfile_in_tmp() -> (std::path::PathBuf, std::fs::File) {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("romana-policy-{}-{n}.txt", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    (path, file)
}

const ROMANA_POLICY: &str = r#"{"securitypolicies": [{
  "name": "fe-to-be", "description": "t2 frontend may reach t1 backend on TCP 80",
  "direction": "ingress",
  "applied_to": [{"tenant": "t1", "segment": "backend"}],
  "peers": [{"tenant": "t2", "segment": "frontend"}],
  "rules": [{"protocol": "tcp", "ports": [80]}]
}]}"#;

const KUBERNETES_POLICY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: fe-to-be
  namespace: t1
spec:
  podSelector:
    matchLabels:
      romana.io/segment: backend
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: t2
      podSelector:
        matchLabels:
          romana.io/segment: frontend
    ports:
    - protocol: TCP
      port: 80
"#;

const TPR_POLICY: &str = r#"{"apiVersion": "romana.io/demo/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "fe-to-be"},
  "spec": {"podSelector": {"segment": "backend"},
    "allowIncoming": {"toPorts": [{"port": 80, "protocol": "TCP"}],
      "from": [{"pods": {"tenant": "t2", "segment": "frontend"}}]}}}"#;

/// Applies a policy in one of the three formats; returns the name to delete.
fn apply_format(lab: &LabGuard, format: &str) -> String {
    match format {
        "romana" => {
            apply(lab, ROMANA_POLICY).expect("apply Romana policy");
            "fe-to-be".into()
        }
        "kubernetes" => {
            apply(lab, KUBERNETES_POLICY).expect("apply Kubernetes policy");
            "t1/fe-to-be".into()
        }
        _ => {
            let socket = lab
                .lab
                .host("host1")
                .expect("host1")
                .socket
                .display()
                .to_string();
            let output = std::process::Command::new("curl")
                .args([
                    "-s",
                    "--fail-with-body",
                    "--unix-socket",
                    &socket,
                    "-X",
                    "POST",
                    "-d",
                    TPR_POLICY,
                ])
                .arg("http://localhost/apis/romana.io/demo/v1/namespaces/t1/networkpolicys/")
                .output()
                .expect("curl");
            assert!(
                output.status.success(),
                "TPR POST: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            "t1/fe-to-be".into()
        }
    }
}

#[test]
fn a_policy_opens_exactly_what_it_says_in_every_format() {
    // Goal: t2/frontend -> t1/backend TCP 80 opens with the policy (Romana
    // JSON, Kubernetes YAML, the seed's TPR URL); TCP 81, UDP 80, ICMP and
    // other segments stay blocked; deleting it closes it; explain agrees.
    let mut lab = LabGuard::up(3);
    lab.ctl("host1", &["segment", "create", "t1", "backend"]);
    lab.ctl("host1", &["segment", "create", "t2", "frontend"]);
    let backend = lab.pod_in("host1", "t1", "backend", "be");
    lab.pod_in("host2", "t2", "frontend", "fe");
    lab.pod("host3", "t2", "other");
    let (fe, other, be) = (lab.netns("fe"), lab.netns("other"), lab.netns("be"));
    let fe_ip = lab.lab.pod("fe").expect("fe").ip.clone();
    let other_ip = lab.lab.pod("other").expect("other").ip.clone();
    for format in ["romana", "kubernetes", "tpr"] {
        assert!(
            !tcp_reaches(&fe, &backend, 80),
            "{format}: closed before the policy"
        );
        let name = apply_format(&lab, format);
        lab.wait_rules("the policy on every host", |rules| {
            rules.contains("dport 80")
        });
        let mut server = tcp_server(&be, 80);
        let opened = tcp_reaches(&fe, &backend, 80);
        server.stop();
        assert!(opened, "{format}: TCP 80 from t2/frontend must pass");
        assert_eq!(explain(&lab, &fe_ip, &backend, "tcp/80"), "allowed");
        assert!(
            !tcp_reaches(&fe, &backend, 81),
            "{format}: TCP 81 must stay blocked"
        );
        assert_eq!(explain(&lab, &fe_ip, &backend, "tcp/81"), "denied");
        assert!(
            !udp_reaches(&fe, &be, &backend, 80),
            "{format}: UDP 80 must stay blocked"
        );
        assert_eq!(explain(&lab, &fe_ip, &backend, "udp/80"), "denied");
        assert!(
            !lab.pings("fe", &backend),
            "{format}: ICMP must stay blocked"
        );
        assert_eq!(explain(&lab, &fe_ip, &backend, "icmp/8"), "denied");
        assert!(
            !tcp_reaches(&other, &backend, 80),
            "{format}: t2/default must stay blocked"
        );
        assert_eq!(explain(&lab, &other_ip, &backend, "tcp/80"), "denied");
        lab.try_ctl(&["policy", "delete", &name]).expect("delete");
        lab.wait_rules("the policy gone everywhere", |rules| {
            !rules.contains("dport 80")
        });
        assert!(
            !tcp_reaches(&fe, &backend, 80),
            "{format}: closed again after delete"
        );
        assert_eq!(explain(&lab, &fe_ip, &backend, "tcp/80"), "denied");
    }
}

#[test]
fn egress_and_ip_block_except_behave_as_kubernetes_documents() {
    // Goal: an egress policy lets t1/backend pods send only to an ipBlock
    // minus its exception: the allowed part passes, the excepted part and
    // everything else (even within the tenant) is dropped.
    let mut lab = LabGuard::up(2);
    lab.ctl("host1", &["segment", "create", "t1", "backend"]);
    lab.pod_in("host1", "t1", "backend", "be");
    let peer = lab.pod("host2", "t1", "peer");
    let local = lab.pod("host1", "t1", "local");
    // Allow TCP to host2's block of t1 (10.1.16.0/24) except the peer pod.
    let policy = format!(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: out, namespace: t1}}
spec:
  podSelector:
    matchLabels: {{romana.io/segment: backend}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.1.16.0/24
        except: [{peer}/32]
"#
    );
    assert!(lab.pings("be", &peer), "t1 traffic flows before the policy");
    apply(&lab, &policy).expect("apply egress policy");
    lab.wait_rules("the egress policy", |rules| rules.contains("ROMANA-X-"));
    let be_ip = lab.lab.pod("be").expect("be").ip.clone();
    assert!(!lab.pings("be", &peer), "the excepted address is dropped");
    assert_eq!(explain(&lab, &be_ip, &peer, "icmp/8"), "denied");
    let second = lab.pod("host2", "t1", "second");
    assert!(lab.pings("be", &second), "the rest of the ipBlock passes");
    assert_eq!(explain(&lab, &be_ip, &second, "icmp/8"), "allowed");
    assert!(
        !lab.pings("be", &local),
        "outside the ipBlock, even within the tenant, is dropped"
    );
    assert_eq!(explain(&lab, &be_ip, &local, "icmp/8"), "denied");
    // The peer can still reach the backend pod: egress isolation is one-way.
    assert!(lab.pings("peer", &be_ip));
}

#[test]
fn bad_policies_are_refused_and_change_nothing() {
    // Goal: unknown protocol, port out of range, unknown tenant, unknown
    // selector operator, invalid port name, conflicting fields: refused with
    // an error naming the field, no rule changes.
    let lab = LabGuard::up(1);
    lab.ctl("host1", &["segment", "create", "t1", "backend"]);
    lab.ctl("host1", &["segment", "create", "t2", "frontend"]);
    lab.wait_rules("both tenants' rules", |rules| rules.contains("tenant t2"));
    let before = common::rules_of(&lab, "host1");
    let cases = [
        (ROMANA_POLICY.replace("\"tcp\"", "\"sctp\""), "protocol"),
        (ROMANA_POLICY.replace("[80]", "[70000]"), "ports"),
        (
            ROMANA_POLICY.replace("\"tenant\": \"t1\"", "\"tenant\": \"nope\""),
            "nope",
        ),
        (
            KUBERNETES_POLICY.replace(
                "    matchLabels:\n      romana.io/segment: backend",
                "    matchExpressions:\n    - {key: app, operator: Near, values: [web]}",
            ),
            "spec.podSelector.matchExpressions[0].operator",
        ),
        (
            KUBERNETES_POLICY.replace("port: 80", "port: Not_A_Name"),
            "spec.ingress[0].ports[0].port",
        ),
        (
            KUBERNETES_POLICY.replace("port: 80", "port: http\n      endPort: 90"),
            "spec.ingress[0].ports[0].endPort",
        ),
    ];
    for (text, needle) in &cases {
        let error = apply(&lab, text).expect_err("must be refused");
        assert!(error.contains(needle), "{error:?} should name {needle}");
    }
    assert!(
        lab.try_ctl(&["policy", "list"])
            .expect("list")
            .lines()
            .count()
            <= 1,
        "no policy stored"
    );
    assert_eq!(common::rules_of(&lab, "host1"), before, "rules changed");
}

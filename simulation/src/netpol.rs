//! A port of the upstream Kubernetes e2e NetworkPolicy suite's model
//! (`test/e2e/network/netpol`), in this project's own code: namespaces `x`,
//! `y`, `z` (labelled `ns: NAME`), each with pods `a`, `b`, `c` (labelled
//! `pod: NAME`), every pod serving TCP and UDP on 80 and 81 under the named
//! ports `serve-80-tcp`, `serve-80-udp`, `serve-81-tcp`, `serve-81-udp`;
//! reachability probed across all 81 (from, to) pairs and compared with the
//! whole expected truth table.
//!
//! The cases here are written as upstream writes them: policies, and the
//! expected table as a rule over (from, to) pairs, independent of how the
//! policies are enforced. They run twice: against the policy compiler
//! ([`Model`], in-process: `tests/netpol_model.rs`) and against real
//! kubelets in the Kubernetes lab (`tests/kubernetes_netpol.rs`), where
//! `policy explain` must also agree with every observed cell.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use raft_store::entry::{
    AllocationRequest, ClusterRequest, Command, ContainerInterface, Labels, PodMirror, PodPort,
    PortProtocol, RequestMeta,
};
use raft_store::layout::AddressLayout;
use raft_store::state::{ClusterState, Outcome};
use romana_node::policy::compiler::{compile, explain, Packet, Scope, Verdict};
use romana_node::policy::formats::parse_policy_file;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
/// The lab's hosts; pod `a` of every namespace runs on the first, `b` on the
/// second, `c` on the third (so both same-host and cross-host pairs occur).
pub const HOSTS: [&str; 3] = ["host1", "host2", "host3"];

/// A pod of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pod {
    pub namespace: &'static str,
    pub name: &'static str,
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Pod {
    pub fn host(&self) -> &'static str {
        match self.name {
            "a" => HOSTS[0],
            "b" => HOSTS[1],
            _ => HOSTS[2],
        }
    }

    pub fn is(&self, text: &str) -> bool {
        self.to_string() == text
    }
}

/// The 9 pods, x/a first.
pub fn pods() -> Vec<Pod> {
    NAMESPACES
        .iter()
        .flat_map(|ns| {
            PODS.iter().map(|name| Pod {
                namespace: ns,
                name,
            })
        })
        .collect()
}

/// The container ports every pod declares.
pub fn pod_ports() -> Vec<PodPort> {
    let mut ports = Vec::new();
    for port in PORTS {
        for (protocol, word) in [(PortProtocol::Tcp, "tcp"), (PortProtocol::Udp, "udp")] {
            ports.push(PodPort {
                name: Some(format!("serve-{port}-{word}")),
                port,
                protocol,
            });
        }
    }
    ports.sort();
    ports
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// What is expected of (from, to); a pod always reaches itself (its own
/// traffic never leaves it), as upstream expects.
pub type Expectation = Box<dyn Fn(Pod, Pod) -> bool>;

pub struct Probe {
    pub protocol: Protocol,
    pub port: u16,
    pub expect: Expectation,
}

fn probe(protocol: Protocol, port: u16, expect: impl Fn(Pod, Pod) -> bool + 'static) -> Probe {
    Probe {
        protocol,
        port,
        expect: Box::new(expect),
    }
}

pub enum Action {
    /// `kubectl apply` of a NetworkPolicy (YAML).
    Apply(String),
    /// Delete the NetworkPolicy `NAMESPACE/NAME`.
    Delete(String),
    /// Set (`Some`) or remove a label of a pod.
    LabelPod(Pod, &'static str, Option<&'static str>),
    /// Set or remove a label of a namespace.
    LabelNamespace(&'static str, &'static str, Option<&'static str>),
}

pub struct Step {
    pub actions: Vec<Action>,
    pub probes: Vec<Probe>,
}

/// Pod addresses (for ipBlock cases).
pub type Addresses = BTreeMap<Pod, Ipv4Addr>;

/// Builds a case's steps from the pods' addresses.
pub type Steps = Box<dyn Fn(&Addresses) -> Vec<Step>>;

pub struct Case {
    pub name: &'static str,
    pub steps: Steps,
}

/// A truth table: (from, to) → reachable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub cells: BTreeMap<(Pod, Pod), bool>,
}

impl Table {
    pub fn expected(probe: &Probe) -> Self {
        let mut cells = BTreeMap::new();
        for from in pods() {
            for to in pods() {
                cells.insert((from, to), from == to || (probe.expect)(from, to));
            }
        }
        Self { cells }
    }

    /// The cells where `self` and `other` differ.
    pub fn differences(&self, other: &Table) -> Vec<(Pod, Pod)> {
        self.cells
            .iter()
            .filter(|(key, value)| other.cells.get(key) != Some(value))
            .map(|(key, _)| *key)
            .collect()
    }
}

/// Upstream's layout: a row per source, a column per destination, `.`
/// reachable, `X` not.
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = pods();
        write!(f, "     ")?;
        for to in &all {
            write!(f, " {to}")?;
        }
        writeln!(f)?;
        for from in &all {
            write!(f, "{from}  ")?;
            for to in &all {
                let cell = match self.cells.get(&(*from, *to)) {
                    Some(true) => '.',
                    Some(false) => 'X',
                    None => '?',
                };
                write!(f, "   {cell}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn policy(namespace: &str, name: &str, spec: &str) -> String {
    let mut text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: \"{namespace}\"\nspec:\n"
    );
    for line in spec.trim_matches('\n').lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn apply(namespace: &str, name: &str, spec: &str) -> Action {
    Action::Apply(policy(namespace, name, spec))
}

fn all(_: Pod, _: Pod) -> bool {
    true
}

/// `p` is x/a.
fn xa(p: Pod) -> bool {
    p.is("x/a")
}

fn step(actions: Vec<Action>, probes: Vec<Probe>) -> Step {
    Step { actions, probes }
}

fn case(name: &'static str, steps: impl Fn(&Addresses) -> Vec<Step> + 'static) -> Case {
    Case {
        name,
        steps: Box::new(steps),
    }
}

/// Ingress to x/a allowed only from `allowed`; everything else as without
/// policies.
fn into_xa(allowed: impl Fn(Pod) -> bool + 'static) -> impl Fn(Pod, Pod) -> bool {
    move |from, to| !xa(to) || allowed(from)
}

/// Egress from x/a allowed only to `allowed`.
fn from_xa(allowed: impl Fn(Pod) -> bool + 'static) -> impl Fn(Pod, Pod) -> bool {
    move |from, to| !xa(from) || allowed(to)
}

/// The cases, each covering a feature of the NetworkPolicy API (named as
/// upstream's `It(...)` they port, shortened).
pub fn cases() -> Vec<Case> {
    use Protocol::{Tcp, Udp};
    vec![
        case("default-deny-ingress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "deny-ingress",
                    "podSelector: {}\npolicyTypes: [Ingress]",
                )],
                vec![probe(Tcp, 80, |_, to| to.namespace != "x")],
            )]
        }),
        case("default-deny-all (ingress and egress)", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "deny-all",
                    "podSelector: {}\npolicyTypes: [Ingress, Egress]",
                )],
                vec![probe(Tcp, 80, |from, to| {
                    from.namespace != "x" && to.namespace != "x"
                })],
            )]
        }),
        case("allow-ingress-from-namespace-by-label", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "from-y",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.namespace == "y"))],
            )]
        }),
        case("allow-ingress-from-pod-in-same-namespace", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "from-b",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - podSelector: {matchLabels: {pod: b}}",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.is("x/b")))],
            )]
        }),
        case("namespace-and-pod-selector-in-one-peer-are-ANDed", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "and",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}\n    podSelector: {matchLabels: {pod: b}}",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.is("y/b")))],
            )]
        }),
        case("separate-peers-are-ORed", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "or",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}\n  - podSelector: {matchLabels: {pod: b}}",
                )],
                vec![probe(
                    Tcp,
                    80,
                    into_xa(|f| f.namespace == "y" || f.is("x/b")),
                )],
            )]
        }),
        case("separate-policies-are-ORed", |_| {
            vec![step(
                vec![
                    apply(
                        "x",
                        "from-b",
                        "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - podSelector: {matchLabels: {pod: b}}",
                    ),
                    apply(
                        "x",
                        "from-z-c",
                        "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"z\"}}\n    podSelector: {matchLabels: {pod: c}}",
                    ),
                ],
                vec![probe(Tcp, 80, into_xa(|f| f.is("x/b") || f.is("z/c")))],
            )]
        }),
        case("namespace-selector-matchExpressions-In", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "ns-in",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector:\n      matchExpressions: [{key: ns, operator: In, values: [\"y\"]}]",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.namespace == "y"))],
            )]
        }),
        case("namespace-selector-matchExpressions-NotIn", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "ns-notin",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector:\n      matchExpressions: [{key: ns, operator: NotIn, values: [\"x\"]}]",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.namespace != "x"))],
            )]
        }),
        case(
            "pod-selector-matchExpressions-Exists-and-DoesNotExist",
            |_| {
                // Targets: pods with a `pod` label that is not b (a, c); peers:
                // pods of any namespace without a `role` label whose pod is c.
                vec![step(
                vec![apply(
                    "x",
                    "exprs",
                    "podSelector:\n  matchExpressions:\n  - {key: pod, operator: Exists}\n  - {key: pod, operator: NotIn, values: [b]}\ningress:\n- from:\n  - namespaceSelector: {}\n    podSelector:\n      matchExpressions:\n      - {key: role, operator: DoesNotExist}\n      - {key: pod, operator: In, values: [c]}",
                )],
                vec![probe(Tcp, 80, |from, to| {
                    !(to.namespace == "x" && to.name != "b") || from.name == "c"
                })],
            )]
            },
        ),
        case("allow-ingress-from-all-namespaces-by-pod-label", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "all-ns-b",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {}\n    podSelector: {matchLabels: {pod: b}}",
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.name == "b"))],
            )]
        }),
        case("numbered-port-ingress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "port-81",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports:\n  - port: 81",
                )],
                vec![probe(Tcp, 81, all), probe(Tcp, 80, into_xa(|_| false))],
            )]
        }),
        case("named-port-ingress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "named-80",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports:\n  - port: serve-80-tcp",
                )],
                vec![
                    probe(Tcp, 80, all),
                    probe(Tcp, 81, into_xa(|_| false)),
                ],
            )]
        }),
        case("named-port-ingress-from-namespace", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "named-81-from-y",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}\n  ports:\n  - port: serve-81-tcp",
                )],
                vec![
                    probe(Tcp, 81, into_xa(|f| f.namespace == "y")),
                    probe(Tcp, 80, into_xa(|_| false)),
                ],
            )]
        }),
        case("endPort-range-ingress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "range",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports:\n  - port: 81\n    endPort: 90",
                )],
                vec![
                    probe(Tcp, 81, all),
                    probe(Tcp, 80, into_xa(|_| false)),
                ],
            )]
        }),
        case("protocol-without-port", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "udp-only",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}\n  ports:\n  - protocol: UDP",
                )],
                vec![
                    probe(Udp, 80, into_xa(|f| f.namespace == "y")),
                    probe(Udp, 81, into_xa(|f| f.namespace == "y")),
                    probe(Tcp, 80, into_xa(|_| false)),
                ],
            )]
        }),
        case("udp-port-not-tcp", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "udp-81",
                    "podSelector: {matchLabels: {pod: a}}\ningress:\n- ports:\n  - protocol: UDP\n    port: 81",
                )],
                vec![
                    probe(Udp, 81, all),
                    probe(Udp, 80, into_xa(|_| false)),
                    probe(Tcp, 81, into_xa(|_| false)),
                ],
            )]
        }),
        case("default-deny-egress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "deny-egress",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]",
                )],
                vec![
                    probe(Tcp, 80, from_xa(|_| false)),
                    probe(Udp, 81, from_xa(|_| false)),
                ],
            )]
        }),
        case("egress-to-namespace-by-label", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "to-y",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}",
                )],
                vec![probe(Tcp, 80, from_xa(|t| t.namespace == "y"))],
            )]
        }),
        case("named-port-egress", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "to-named-80",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- ports:\n  - port: serve-80-tcp",
                )],
                vec![
                    probe(Tcp, 80, all),
                    probe(Tcp, 81, from_xa(|_| false)),
                ],
            )]
        }),
        case("named-port-egress-udp-to-namespace", |_| {
            vec![step(
                vec![apply(
                    "x",
                    "to-z-named-81-udp",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector: {matchLabels: {ns: \"z\"}}\n  ports:\n  - protocol: UDP\n    port: serve-81-udp",
                )],
                vec![
                    probe(Udp, 81, from_xa(|t| t.namespace == "z")),
                    probe(Tcp, 81, from_xa(|_| false)),
                ],
            )]
        }),
        case("egress-ipBlock-with-except", |addresses| {
            let except = addresses
                .get(&Pod {
                    namespace: "y",
                    name: "b",
                })
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            vec![step(
                vec![apply(
                    "x",
                    "to-block",
                    &format!(
                        "podSelector: {{matchLabels: {{pod: a}}}}\npolicyTypes: [Egress]\negress:\n- to:\n  - ipBlock:\n      cidr: 10.0.0.0/8\n      except: [{except}/32]"
                    ),
                )],
                vec![probe(Tcp, 80, from_xa(|t| !t.is("y/b")))],
            )]
        }),
        case("ingress-ipBlock", |addresses| {
            let allowed = addresses
                .get(&Pod {
                    namespace: "z",
                    name: "c",
                })
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            vec![step(
                vec![apply(
                    "x",
                    "from-block",
                    &format!(
                        "podSelector: {{matchLabels: {{pod: a}}}}\ningress:\n- from:\n  - ipBlock:\n      cidr: {allowed}/32"
                    ),
                )],
                vec![probe(Tcp, 80, into_xa(|f| f.is("z/c")))],
            )]
        }),
        case("ingress-and-egress-policies-together", |_| {
            vec![step(
                vec![
                    apply(
                        "x",
                        "a-from-y",
                        "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {ns: \"y\"}}",
                    ),
                    apply(
                        "y",
                        "b-to-x-a-only",
                        "podSelector: {matchLabels: {pod: b}}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector: {matchLabels: {ns: x}}\n    podSelector: {matchLabels: {pod: a}}",
                    ),
                ],
                vec![probe(Tcp, 80, |from, to| {
                    (!xa(to) || from.namespace == "y") && (!from.is("y/b") || xa(to))
                })],
            )]
        }),
        case("policy-update", |_| {
            let from = |ns: &str| {
                apply(
                    "x",
                    "update-me",
                    &format!(
                        "podSelector: {{matchLabels: {{pod: a}}}}\ningress:\n- from:\n  - namespaceSelector: {{matchLabels: {{ns: \"{ns}\"}}}}"
                    ),
                )
            };
            vec![
                step(
                    vec![from("y")],
                    vec![probe(Tcp, 80, into_xa(|f| f.namespace == "y"))],
                ),
                step(
                    vec![from("z")],
                    vec![probe(Tcp, 80, into_xa(|f| f.namespace == "z"))],
                ),
            ]
        }),
        case("policy-delete", |_| {
            vec![
                step(
                    vec![apply(
                        "x",
                        "delete-me",
                        "podSelector: {}\npolicyTypes: [Ingress]",
                    )],
                    vec![probe(Tcp, 80, |_, to| to.namespace != "x")],
                ),
                step(
                    vec![Action::Delete("x/delete-me".into())],
                    vec![probe(Tcp, 80, all)],
                ),
            ]
        }),
        case("updated-pod-labels", |_| {
            let b = Pod {
                namespace: "x",
                name: "b",
            };
            vec![
                step(
                    vec![apply(
                        "x",
                        "from-clients",
                        "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - podSelector: {matchLabels: {role: client}}",
                    )],
                    vec![probe(Tcp, 80, into_xa(|_| false))],
                ),
                step(
                    vec![Action::LabelPod(b, "role", Some("client"))],
                    vec![probe(Tcp, 80, into_xa(|f| f.is("x/b")))],
                ),
                step(
                    vec![Action::LabelPod(b, "role", None)],
                    vec![probe(Tcp, 80, into_xa(|_| false))],
                ),
            ]
        }),
        case("updated-namespace-labels", |_| {
            vec![
                step(
                    vec![apply(
                        "x",
                        "from-team",
                        "podSelector: {matchLabels: {pod: a}}\ningress:\n- from:\n  - namespaceSelector: {matchLabels: {team: blue}}",
                    )],
                    vec![probe(Tcp, 80, into_xa(|_| false))],
                ),
                step(
                    vec![Action::LabelNamespace("z", "team", Some("blue"))],
                    vec![probe(Tcp, 80, into_xa(|f| f.namespace == "z"))],
                ),
                step(
                    vec![Action::LabelNamespace("z", "team", None)],
                    vec![probe(Tcp, 80, into_xa(|_| false))],
                ),
            ]
        }),
    ]
}

/// The model's state in-process: a cluster of the three hosts, the
/// namespaces and pods mirrored as the controller mirrors them, an address
/// per pod, and the policies as `kubectl apply` would have them recorded.
pub struct Model {
    pub state: ClusterState,
    index: u64,
    pub addresses: Addresses,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// The upstream model: x, y, z with a, b, c.
    pub fn new() -> Self {
        let mut model = Self::cluster();
        for pod in pods() {
            let labels = Labels::from([("pod".to_string(), pod.name.to_string())]);
            if let Some(address) =
                model.add_pod(pod.namespace, pod.name, pod.host(), labels, pod_ports())
            {
                model.addresses.insert(pod, address);
            }
        }
        model
    }

    /// The three hosts, tenant `default`, namespaces x, y, z; no pods.
    pub fn cluster() -> Self {
        let mut model = Self {
            state: ClusterState::default(),
            index: 0,
            addresses: Addresses::new(),
        };
        model.submit(Command::InitCluster {
            cluster_name: "netpol".into(),
            voters_target: 3,
            layout: AddressLayout::default(),
        });
        for (i, host) in HOSTS.iter().enumerate() {
            model.submit(Command::RegisterNode {
                node_id: i as u64 + 1,
                name: host.to_string(),
                address: format!("192.0.2.{}:9000", i + 1),
            });
        }
        model.submit(Command::CreateTenant {
            name: "default".into(),
        });
        for namespace in NAMESPACES {
            model.submit(Command::MirrorNamespace {
                name: namespace.into(),
                labels: Labels::from([
                    ("ns".to_string(), namespace.to_string()),
                    (
                        "kubernetes.io/metadata.name".to_string(),
                        namespace.to_string(),
                    ),
                ]),
            });
        }
        model
    }

    /// A pod mirrored and given an address on `host`, as a pod start does.
    pub fn add_pod(
        &mut self,
        namespace: &str,
        name: &str,
        host: &str,
        labels: Labels,
        ports: Vec<PodPort>,
    ) -> Option<Ipv4Addr> {
        self.submit(Command::MirrorPod(PodMirror {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
            node: Some(host.into()),
            labels,
            ports,
        }));
        match self.submit(Command::AllocateAddress(AllocationRequest {
            host: host.into(),
            tenant: "default".into(),
            segment: "default".into(),
            owner: ContainerInterface {
                container_id: format!("{namespace}-{name}"),
                ifname: "eth0".into(),
            },
            pod_namespace: Some(namespace.into()),
            pod_name: Some(name.into()),
            network: None,
        })) {
            Outcome::Applied(raft_store::state::Effect::AddressAllocated { address, .. }) => {
                Some(address)
            }
            _ => None,
        }
    }

    fn submit(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let request = ClusterRequest::new(
            RequestMeta {
                actor: "netpol-model".into(),
                request_id: format!("r{}", self.index),
                timestamp_ms: self.index,
            },
            command,
        );
        self.state.apply(self.index, 0, &request).outcome
    }

    /// The host number of a host of the model.
    pub fn host_number(&self, host: &str) -> Option<u32> {
        self.state.nodes.get(host).map(|n| n.host_number)
    }

    fn mirror(&mut self, pod: Pod, labels: Labels) {
        self.submit(Command::MirrorPod(PodMirror {
            namespace: pod.namespace.into(),
            name: pod.name.into(),
            uid: format!("uid-{}-{}", pod.namespace, pod.name),
            node: Some(pod.host().into()),
            labels,
            ports: pod_ports(),
        }));
    }

    /// Carries out an action as the cluster would record it.
    pub fn act(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::Apply(text) => {
                let file = parse_policy_file(text)?;
                for policy in file.network_policies {
                    match self.submit(Command::ApplyNetworkPolicy(policy)) {
                        Outcome::Applied(_) => {}
                        Outcome::Rejected(r) => return Err(r.to_string()),
                    }
                }
            }
            Action::Delete(key) => {
                let (namespace, name) = key.split_once('/').ok_or("NAMESPACE/NAME")?;
                if let Outcome::Rejected(r) = self.submit(Command::DeleteNetworkPolicy {
                    namespace: namespace.into(),
                    name: name.into(),
                }) {
                    return Err(r.to_string());
                }
            }
            Action::LabelPod(pod, key, value) => {
                let record = self
                    .state
                    .kubernetes
                    .pod(pod.namespace, pod.name)
                    .ok_or("pod not mirrored")?;
                let mut labels = record.pod.labels.clone();
                match value {
                    Some(value) => labels.insert(key.to_string(), value.to_string()),
                    None => labels.remove(*key),
                };
                self.mirror(*pod, labels);
            }
            Action::LabelNamespace(namespace, key, value) => {
                let mut labels = self
                    .state
                    .kubernetes
                    .namespaces
                    .get(*namespace)
                    .map(|r| r.labels.clone())
                    .ok_or("namespace not mirrored")?;
                match value {
                    Some(value) => labels.insert(key.to_string(), value.to_string()),
                    None => labels.remove(*key),
                };
                self.submit(Command::MirrorNamespace {
                    name: namespace.to_string(),
                    labels,
                });
            }
        }
        Ok(())
    }

    /// `pods` pods spread over the namespaces and hosts (labels `pod:
    /// a|b|c`, `app: app0..app9`, the model's ports) under `policies`
    /// NetworkPolicies of every shape (selectors by label and expression,
    /// namespaces, named and numbered ports, ranges, SCTP, ipBlocks,
    /// deny-all, egress).
    pub fn scaled(pods: usize, policies: usize) -> Self {
        let mut model = Self::cluster();
        for i in 0..pods {
            let namespace = NAMESPACES[i % 3];
            let labels = Labels::from([
                ("pod".to_string(), PODS[(i / 3) % 3].to_string()),
                ("app".to_string(), format!("app{}", i % 10)),
            ]);
            model.add_pod(
                namespace,
                &format!("p{i}"),
                HOSTS[(i / 9) % 3],
                labels,
                pod_ports(),
            );
        }
        for i in 0..policies {
            let namespace = NAMESPACES[i % 3];
            let app = format!("app{}", i % 10);
            let spec = match i % 5 {
                0 => format!("podSelector: {{matchLabels: {{app: {app}}}}}\ningress:\n- from:\n  - namespaceSelector: {{matchLabels: {{ns: \"y\"}}}}\n    podSelector: {{matchLabels: {{pod: b}}}}\n  ports:\n  - port: serve-80-tcp"),
                1 => format!("podSelector:\n  matchExpressions: [{{key: app, operator: In, values: [{app}, app9]}}]\ningress:\n- from:\n  - podSelector: {{matchLabels: {{pod: c}}}}\n  - ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}\n  ports:\n  - port: 81\n    endPort: 90"),
                2 => format!("podSelector: {{matchLabels: {{app: {app}}}}}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector: {{matchLabels: {{ns: \"z\"}}}}\n  ports:\n  - protocol: UDP\n    port: serve-81-udp"),
                3 => format!("podSelector: {{matchLabels: {{app: {app}}}}}\npolicyTypes: [Ingress, Egress]"),
                _ => format!("podSelector: {{matchLabels: {{pod: a, app: {app}}}}}\ningress:\n- from:\n  - namespaceSelector: {{}}\n  ports:\n  - protocol: TCP\n    port: 80\n  - protocol: UDP\n  - protocol: SCTP\n    port: 9000"),
            };
            let text = policy(namespace, &format!("policy-{i}"), &spec);
            model
                .act(&Action::Apply(text))
                .unwrap_or_else(|e| panic!("policy {i}: {e}"));
        }
        model
    }

    /// The table the policy compiler predicts for `probe` (what `policy
    /// explain` says for every cell).
    pub fn predict(&self, probe: &Probe) -> Table {
        let compiled = compile(&self.state, Scope::Cluster).expect("initialised");
        let mut cells = BTreeMap::new();
        for from in pods() {
            for to in pods() {
                let allowed = from == to || {
                    let packet = Packet {
                        source: self.addresses[&from],
                        destination: self.addresses[&to],
                        protocol: match probe.protocol {
                            Protocol::Tcp => raft_store::entry::policy::Protocol::Tcp,
                            Protocol::Udp => raft_store::entry::policy::Protocol::Udp,
                        },
                        port: Some(probe.port),
                    };
                    explain(&compiled, &packet).verdict == Verdict::Accept
                };
                cells.insert((from, to), allowed);
            }
        }
        Table { cells }
    }
}

/// Runs `program args` inside the network namespace `netns` with `input` on
/// its standard input; its standard output, or what it said on failure.
/// (The kernel round trips of `tests/netpol_model.rs` and `netpol-scale`.)
pub fn in_netns(netns: &str, program: &str, args: &[&str], input: &str) -> Result<String, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

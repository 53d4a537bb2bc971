//! Kubernetes `networking.k8s.io/v1` NetworkPolicy, as the log records it.
//!
//! The object is kept in Kubernetes' own terms (label selectors, rules of
//! peers and ports, named ports), not translated into tenants and masks:
//! what a selector selects changes with every pod's labels, so it is
//! resolved by each host from the mirrored pods (see `romana-node`'s policy
//! compiler), while the log records what the user asked for and when.
//!
//! Semantics, as Kubernetes documents them:
//! - `pod_selector` selects pods of the policy's own namespace (`{}`: all);
//! - `ingress` / `egress` are `None` when `policyTypes` leaves the direction
//!   out, and `Some(rules)` otherwise: the selected pods are then isolated in
//!   that direction and accept (send) only what one of the rules allows;
//!   `Some(vec![])` is "deny all";
//! - a rule allows traffic matching one of its peers (none given: every
//!   peer) and one of its ports (none given: every port);
//! - a peer is pods (a namespace selector and a pod selector, ANDed; no
//!   namespace selector: the policy's namespace) or an IP block with
//!   exceptions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::kubernetes::{validate_labels, validate_namespace_name, Labels, PortProtocol};
use super::policy::{Cidr, MAX_POLICY_ITEMS};

/// Longest NetworkPolicy name (a DNS-1123 subdomain).
pub const MAX_NETWORK_POLICY_NAME_BYTES: usize = 253;
/// Most values of one selector requirement.
pub const MAX_SELECTOR_VALUES: usize = 64;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// One `matchExpressions` entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

/// A Kubernetes label selector: every `match_labels` pair and every
/// requirement must hold (an empty selector selects everything).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => !value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Checks sizes and the operators' value rules; errors name the field
    /// under `path`.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        validate_labels(&self.match_labels).map_err(|e| format!("{path}.matchLabels: {e}"))?;
        if self.match_expressions.len() > MAX_POLICY_ITEMS {
            return Err(format!(
                "{path}.matchExpressions: at most {MAX_POLICY_ITEMS} entries"
            ));
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            let field = format!("{path}.matchExpressions[{i}]");
            let key_labels = Labels::from([(r.key.clone(), String::new())]);
            validate_labels(&key_labels).map_err(|e| format!("{field}.key: {e}"))?;
            match r.operator {
                SelectorOperator::In | SelectorOperator::NotIn => {
                    if r.values.is_empty() {
                        return Err(format!(
                            "{field}.values: operator {} needs at least one value",
                            r.operator
                        ));
                    }
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist => {
                    if !r.values.is_empty() {
                        return Err(format!(
                            "{field}.values: operator {} takes no values",
                            r.operator
                        ));
                    }
                }
            }
            if r.values.len() > MAX_SELECTOR_VALUES {
                return Err(format!(
                    "{field}.values: at most {MAX_SELECTOR_VALUES} values"
                ));
            }
            for value in &r.values {
                let labels = Labels::from([(r.key.clone(), value.clone())]);
                validate_labels(&labels).map_err(|e| format!("{field}.values: {e}"))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            items.push(match r.operator {
                SelectorOperator::In => format!("{} in ({})", r.key, r.values.join(",")),
                SelectorOperator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                SelectorOperator::Exists => r.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", r.key),
            });
        }
        write!(f, "{{{}}}", items.join(","))
    }
}

/// A port of a rule: by number or by the name of a container port.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    pub protocol: PortProtocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
    /// With a numeric `port`: the last port of the range.
    pub end_port: Option<u16>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPolicyPeer {
    /// Pods selected by both selectors. `namespaces: None`: the policy's own
    /// namespace; `pods: None`: every pod of the selected namespaces.
    Pods {
        namespaces: Option<LabelSelector>,
        pods: Option<LabelSelector>,
    },
    IpBlock {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyRule {
    /// Empty: every peer.
    pub peers: Vec<NetworkPolicyPeer>,
    /// Empty: every port and protocol.
    pub ports: Vec<NetworkPolicyPort>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `None`: not an ingress policy; `Some([])`: deny all ingress.
    pub ingress: Option<Vec<NetworkPolicyRule>>,
    /// `None`: not an egress policy; `Some([])`: deny all egress.
    pub egress: Option<Vec<NetworkPolicyRule>>,
}

/// Whether `name` is a valid container port name (IANA_SVC_NAME, as
/// Kubernetes checks it): 1 to 15 lowercase letters, digits and '-', at
/// least one letter, no '-' at either end or twice in a row.
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

impl NetworkPolicy {
    /// `NAMESPACE/NAME`: the policy's key in the projection.
    pub fn key(&self) -> String {
        network_policy_key(&self.namespace, &self.name)
    }

    /// Checks everything that needs no state; errors name the field as the
    /// Kubernetes object spells it (`spec.ingress[0].ports[1].endPort`).
    pub fn validate(&self) -> Result<(), String> {
        validate_namespace_name(&self.namespace).map_err(|e| format!("metadata.namespace: {e}"))?;
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NETWORK_POLICY_NAME_BYTES
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
        if !name_ok {
            return Err(format!(
                "metadata.name: {:?} is not a Kubernetes object name",
                self.name
            ));
        }
        self.pod_selector.validate("spec.podSelector")?;
        if self.ingress.is_none() && self.egress.is_none() {
            return Err("spec.policyTypes: gives neither Ingress nor Egress".into());
        }
        for (key, peer_key, rules) in [
            ("ingress", "from", &self.ingress),
            ("egress", "to", &self.egress),
        ] {
            let Some(rules) = rules else { continue };
            let field = format!("spec.{key}");
            if rules.len() > MAX_POLICY_ITEMS {
                return Err(format!("{field}: at most {MAX_POLICY_ITEMS} rules"));
            }
            for (i, rule) in rules.iter().enumerate() {
                let rule_field = format!("{field}[{i}]");
                validate_peers(&rule.peers, &format!("{rule_field}.{peer_key}"))?;
                validate_ports(&rule.ports, &format!("{rule_field}.ports"))?;
            }
        }
        Ok(())
    }
}

fn validate_peers(peers: &[NetworkPolicyPeer], field: &str) -> Result<(), String> {
    if peers.len() > MAX_POLICY_ITEMS {
        return Err(format!("{field}: at most {MAX_POLICY_ITEMS} peers"));
    }
    for (j, peer) in peers.iter().enumerate() {
        let peer_field = format!("{field}[{j}]");
        match peer {
            NetworkPolicyPeer::Pods { namespaces, pods } => {
                if namespaces.is_none() && pods.is_none() {
                    return Err(format!(
                        "{peer_field}: give podSelector, namespaceSelector or ipBlock"
                    ));
                }
                if let Some(s) = namespaces {
                    s.validate(&format!("{peer_field}.namespaceSelector"))?;
                }
                if let Some(s) = pods {
                    s.validate(&format!("{peer_field}.podSelector"))?;
                }
            }
            NetworkPolicyPeer::IpBlock { cidr, except } => {
                for cidr in std::iter::once(cidr).chain(except) {
                    cidr.check()
                        .map_err(|e| format!("{peer_field}.ipBlock: {e}"))?;
                }
                if except.len() > MAX_POLICY_ITEMS {
                    return Err(format!(
                        "{peer_field}.ipBlock.except: at most {MAX_POLICY_ITEMS} entries"
                    ));
                }
                for (k, e) in except.iter().enumerate() {
                    if !(cidr.contains(e.address) && e.prefix_len > cidr.prefix_len) {
                        return Err(format!(
                            "{peer_field}.ipBlock.except[{k}]: {e} is not strictly inside {cidr}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn validate_ports(ports: &[NetworkPolicyPort], field: &str) -> Result<(), String> {
    if ports.len() > MAX_POLICY_ITEMS {
        return Err(format!("{field}: at most {MAX_POLICY_ITEMS} ports"));
    }
    for (j, port) in ports.iter().enumerate() {
        let port_field = format!("{field}[{j}]");
        match (&port.port, port.end_port) {
            (Some(PortRef::Number(0)), _) => {
                return Err(format!("{port_field}.port: 0 is not a port (1 to 65535)"));
            }
            (Some(PortRef::Name(name)), end) => {
                if !is_port_name(name) {
                    return Err(format!(
                        "{port_field}.port: {name:?} is not a port name (1 to 15 lowercase \
                         letters, digits and '-', with at least one letter)"
                    ));
                }
                if end.is_some() {
                    return Err(format!(
                        "{port_field}.endPort: cannot be given with a named port"
                    ));
                }
            }
            (None, Some(_)) => return Err(format!("{port_field}.endPort: needs port")),
            (Some(PortRef::Number(start)), Some(end)) if end < *start => {
                return Err(format!("{port_field}.endPort: {end} is below port {start}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `NAMESPACE/NAME`.
pub fn network_policy_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_match_as_kubernetes_defines_them() {
        let pod = labels(&[("pod", "a"), ("tier", "web")]);
        assert!(LabelSelector::default().matches(&pod), "{{}} selects all");
        let by_label = LabelSelector {
            match_labels: labels(&[("pod", "a")]),
            ..Default::default()
        };
        assert!(by_label.matches(&pod));
        assert!(!by_label.matches(&labels(&[("pod", "b")])));
        let cases = [
            (SelectorOperator::In, vec!["a", "b"], true, false),
            (SelectorOperator::NotIn, vec!["a"], false, true),
            (SelectorOperator::Exists, vec![], true, false),
            (SelectorOperator::DoesNotExist, vec![], false, true),
        ];
        for (operator, values, on_pod, on_unlabelled) in cases {
            let selector = LabelSelector {
                match_expressions: vec![requirement("pod", operator, &values)],
                ..Default::default()
            };
            assert_eq!(
                selector.matches(&pod),
                on_pod,
                "{operator} on a labelled pod"
            );
            assert_eq!(
                selector.matches(&labels(&[])),
                on_unlabelled,
                "{operator} on an unlabelled pod"
            );
        }
        // matchLabels and matchExpressions are ANDed.
        let both = LabelSelector {
            match_labels: labels(&[("tier", "web")]),
            match_expressions: vec![requirement("pod", SelectorOperator::In, &["b"])],
        };
        assert!(!both.matches(&pod));
    }

    #[test]
    fn bad_fields_are_named() {
        let policy = NetworkPolicy {
            namespace: "x".into(),
            name: "p".into(),
            pod_selector: LabelSelector::default(),
            ingress: Some(vec![NetworkPolicyRule {
                peers: vec![],
                ports: vec![NetworkPolicyPort {
                    protocol: PortProtocol::Tcp,
                    port: Some(PortRef::Number(80)),
                    end_port: Some(81),
                }],
            }]),
            egress: None,
        };
        assert!(policy.validate().is_ok());
        let mut bad = policy.clone();
        bad.ingress.as_mut().expect("rules")[0].ports[0].port = Some(PortRef::Name("web".into()));
        assert!(bad
            .validate()
            .expect_err("named port with endPort")
            .contains("spec.ingress[0].ports[0].endPort"));
        let mut bad = policy.clone();
        bad.ingress.as_mut().expect("rules")[0].ports[0] = NetworkPolicyPort {
            protocol: PortProtocol::Tcp,
            port: Some(PortRef::Name("Not_A_Name".into())),
            end_port: None,
        };
        assert!(bad
            .validate()
            .expect_err("bad name")
            .contains("spec.ingress[0].ports[0].port"));
        let mut bad = policy.clone();
        bad.pod_selector.match_expressions =
            vec![requirement("k", SelectorOperator::Exists, &["v"])];
        assert!(bad
            .validate()
            .expect_err("values with Exists")
            .contains("spec.podSelector.matchExpressions[0].values"));
        let mut bad = policy;
        bad.ingress = None;
        assert!(bad.validate().is_err());
        for (name, ok) in [
            ("http", true),
            ("serve-80-tcp", true),
            ("80", false),
            ("-a", false),
            ("a--b", false),
            ("sixteen-letters1", false),
        ] {
            assert_eq!(is_port_name(name), ok, "{name}");
        }
    }
}

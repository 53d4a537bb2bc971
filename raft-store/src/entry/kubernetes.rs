//! Kubernetes objects mirrored into the log: what the network needs to know
//! of namespaces and pods (their labels and container ports), written by the
//! leader's Kubernetes controller as ordinary idempotent requests.
//!
//! Only what the network needs is kept: a namespace's labels; a pod's uid,
//! node, labels and container ports. Nothing else of the object (specs,
//! status, annotations) enters the log.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Labels of a Kubernetes object, ordered (so every replica encodes them
/// alike).
pub type Labels = BTreeMap<String, String>;

/// Most labels a mirrored object may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key Kubernetes accepts: a 253-byte prefix, '/', a 63-byte name.
pub const MAX_LABEL_KEY_BYTES: usize = 317;
/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE_BYTES: usize = 63;
/// Most container ports a mirrored pod may carry.
pub const MAX_POD_PORTS: usize = 128;
/// Longest namespace, pod or node name (a DNS-1123 subdomain).
pub const MAX_OBJECT_NAME_BYTES: usize = 253;

/// A pod's container port as its spec declares it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodPort {
    /// The port's name (`containerPorts[].name`), which NetworkPolicies and
    /// Services may use instead of the number.
    pub name: Option<String>,
    pub port: u16,
    pub protocol: PortProtocol,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
            PortProtocol::Sctp => "SCTP",
        })
    }
}

/// A pod on the pod network, as mirrored (replaces what was recorded for
/// the same namespace/name).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PodMirror {
    pub namespace: String,
    pub name: String,
    /// The pod's uid: a pod deleted and created again under the same name is
    /// a different pod.
    pub uid: String,
    /// The node it is scheduled to, once scheduled.
    pub node: Option<String>,
    pub labels: Labels,
    pub ports: Vec<PodPort>,
}

fn object_name(kind: &str, name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES || !name.chars().all(ok_char) {
        return Err(format!(
            "{kind} name {name:?} is not a Kubernetes object name (1 to {MAX_OBJECT_NAME_BYTES} lowercase letters, digits, '-' or '.')"
        ));
    }
    Ok(())
}

/// Checks a namespace name.
pub fn validate_namespace_name(name: &str) -> Result<(), String> {
    object_name("namespace", name)
}

/// Checks labels as the apiserver would have (sizes and printable ASCII),
/// so that nothing unbounded or unprintable enters the log.
pub fn validate_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels: at most {MAX_LABELS} are mirrored",
            labels.len()
        ));
    }
    let printable = |s: &str| s.chars().all(|c| c.is_ascii_graphic());
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES || !printable(key) {
            return Err(format!("label key {key:?} is not a valid label key"));
        }
        if value.len() > MAX_LABEL_VALUE_BYTES || !printable(value) {
            return Err(format!(
                "label {key}: value {value:?} is not a valid label value"
            ));
        }
    }
    Ok(())
}

impl PodMirror {
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }

    pub fn validate(&self) -> Result<(), String> {
        validate_namespace_name(&self.namespace)?;
        object_name("pod", &self.name)?;
        if self.uid.is_empty()
            || self.uid.len() > 64
            || !self.uid.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(format!("pod uid {:?} is not a valid uid", self.uid));
        }
        if let Some(node) = &self.node {
            object_name("node", node)?;
        }
        validate_labels(&self.labels)?;
        if self.ports.len() > MAX_POD_PORTS {
            return Err(format!(
                "{} container ports: at most {MAX_POD_PORTS} are mirrored",
                self.ports.len()
            ));
        }
        for port in &self.ports {
            if port.port == 0 {
                return Err("container port 0 is not a port".into());
            }
            if let Some(name) = &port.name {
                if name.is_empty() || name.len() > 15 || !name.chars().all(|c| c.is_ascii_graphic())
                {
                    return Err(format!("container port name {name:?} is not a port name"));
                }
            }
        }
        Ok(())
    }
}

/// `NAMESPACE/NAME`: how a pod is keyed in the projection.
pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Labels as `k=v,k=v` (for the log's one-line descriptions).
pub fn render_labels(labels: &Labels) -> String {
    let items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodMirror {
        PodMirror {
            namespace: "default".into(),
            name: "nginx-t1-1".into(),
            uid: "6f0c7a1e-0000-4000-8000-000000000001".into(),
            node: Some("host1".into()),
            labels: Labels::from([("romana.io/tenant".into(), "t1".into())]),
            ports: vec![PodPort {
                name: Some("http".into()),
                port: 80,
                protocol: PortProtocol::Tcp,
            }],
        }
    }

    #[test]
    fn mirrored_pods_are_checked() {
        assert!(pod().validate().is_ok());
        let mut bad = pod();
        bad.namespace = "Default".into();
        assert!(bad.validate().is_err());
        let mut bad = pod();
        bad.labels.insert("k".into(), "x".repeat(64));
        assert!(bad.validate().is_err());
        let mut bad = pod();
        bad.labels.insert("k\nforged".into(), "v".into());
        assert!(bad.validate().is_err());
        let mut bad = pod();
        bad.ports[0].port = 0;
        assert!(bad.validate().is_err());
        let mut bad = pod();
        bad.uid = String::new();
        assert!(bad.validate().is_err());
        let mut bad = pod();
        for i in 0..=MAX_LABELS {
            bad.labels.insert(format!("k{i}"), "v".into());
        }
        assert!(bad.validate().is_err());
    }
}

//! The mirrored Kubernetes view: namespaces and pods with what the network
//! needs of them (labels, container ports, node), as the leader's
//! Kubernetes controller recorded them. Every replica projects the same
//! view, and the audit log answers which labels were in force when.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Effect, Rejection};
use super::ClusterState;
use crate::entry::kubernetes::{pod_key, validate_labels, validate_namespace_name};
use crate::entry::{Labels, PodMirror, RequestMeta};

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesView {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    /// Pods by `NAMESPACE/NAME`.
    pub pods: BTreeMap<String, PodRecord>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub labels: Labels,
    /// Log index of the request that recorded these labels.
    pub updated_index: u64,
    pub updated_at_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// What the controller mirrored.
    pub pod: PodMirror,
    pub updated_index: u64,
    pub updated_at_ms: u64,
}

impl KubernetesView {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.pods.is_empty()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodRecord> {
        self.pods.get(&pod_key(namespace, name))
    }
}

impl PodRecord {
    /// Whether this record says what `mirror` says (ignoring when).
    pub fn same_as(&self, mirror: &PodMirror) -> bool {
        self.pod == *mirror
    }
}

impl ClusterState {
    pub(crate) fn mirror_namespace(
        &mut self,
        name: &str,
        labels: &Labels,
        index: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        validate_namespace_name(name).map_err(Rejection::invalid)?;
        validate_labels(labels).map_err(Rejection::invalid)?;
        if let Some(record) = self.kubernetes.namespaces.get(name) {
            if &record.labels == labels {
                return Ok(Effect::Mirrored { changed: false });
            }
        }
        self.kubernetes.namespaces.insert(
            name.to_string(),
            NamespaceRecord {
                labels: labels.clone(),
                updated_index: index,
                updated_at_ms: meta.timestamp_ms,
            },
        );
        Ok(Effect::Mirrored { changed: true })
    }

    pub(crate) fn forget_namespace(&mut self, name: &str) -> Result<Effect, Rejection> {
        let existed = self.kubernetes.namespaces.remove(name).is_some();
        Ok(Effect::Forgotten { existed })
    }

    pub(crate) fn mirror_pod(
        &mut self,
        pod: &PodMirror,
        index: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        pod.validate().map_err(Rejection::invalid)?;
        let key = pod.key();
        if let Some(record) = self.kubernetes.pods.get(&key) {
            if record.same_as(pod) {
                return Ok(Effect::Mirrored { changed: false });
            }
        }
        self.kubernetes.pods.insert(
            key,
            PodRecord {
                pod: pod.clone(),
                updated_index: index,
                updated_at_ms: meta.timestamp_ms,
            },
        );
        Ok(Effect::Mirrored { changed: true })
    }

    pub(crate) fn forget_pod(&mut self, namespace: &str, name: &str) -> Result<Effect, Rejection> {
        let existed = self
            .kubernetes
            .pods
            .remove(&pod_key(namespace, name))
            .is_some();
        Ok(Effect::Forgotten { existed })
    }
}

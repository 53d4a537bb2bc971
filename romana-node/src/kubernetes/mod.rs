//! Romana in Kubernetes (`romana-node run --kubernetes`).
//!
//! - this file: [`Context`] (the client, this cluster's settings), the
//!   labels Romana reads, and how a pod's tenant and segment are found
//!   ([`Context::resolve_pod`]).
//! - [`bootstrap`]: how nodes that all start at once form exactly one Raft
//!   cluster, with the cluster secret kept in a Secret.
//! - [`controller`]: the leader-only controller that mirrors namespaces,
//!   pods, nodes, NetworkPolicies and `RomanaNetworkPolicy` objects into the
//!   log, creates the configured tenants, removes deleted nodes and
//!   collects addresses of pods that no longer exist.
//! - [`cni`]: the CNI side of the install: `install-cni` (the init
//!   container's atomic copy) and the conflist written once the node serves.
//!
//! The CNI plugin holds no Kubernetes credentials: it sends the pod's
//! namespace and name to its node, which resolves them here.

pub mod bootstrap;
pub mod cni;
pub mod controller;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::Client;
use raft_store::entry::Labels;
use raft_store::state::{Outcome, Rejection, DEFAULT_SEGMENT_NAME};
use raft_store::Command;

use crate::api_error::ApiError;
use crate::config::KubernetesConfig;

/// The pod (or namespace) label naming a pod's tenant.
pub const TENANT_LABEL: &str = "romana.io/tenant";
/// The pod label naming a pod's segment.
pub const SEGMENT_LABEL: &str = "romana.io/segment";
/// A pod labelled `romana.io/shared: "true"` is reachable from every tenant
/// on its declared container ports (a shared service).
pub use crate::policy::compiler::SHARED_LABEL;

/// The Kubernetes side of a node: its client and the cluster's settings.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: KubernetesConfig,
}

/// Where a pod's tenant came from (logged, and named in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    PodLabel,
    NamespaceLabel,
    Default,
}

impl std::fmt::Display for TenantSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TenantSource::PodLabel => "the pod's label romana.io/tenant",
            TenantSource::NamespaceLabel => "its namespace's label romana.io/tenant",
            TenantSource::Default => "the cluster's default tenant",
        })
    }
}

/// A pod's tenant and segment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub tenant: String,
    pub tenant_source: TenantSource,
    pub segment: String,
}

/// The tenant and segment of a pod with `pod_labels` in a namespace with
/// `namespace_labels`: the pod's `romana.io/tenant`, else the namespace's,
/// else `default_tenant`; the pod's `romana.io/segment`, else `default`.
pub fn pod_network(
    pod_labels: &Labels,
    namespace_labels: Option<&Labels>,
    default_tenant: &str,
) -> PodNetwork {
    let (tenant, tenant_source) = match pod_labels.get(TENANT_LABEL) {
        Some(tenant) => (tenant.clone(), TenantSource::PodLabel),
        None => match namespace_labels.and_then(|labels| labels.get(TENANT_LABEL)) {
            Some(tenant) => (tenant.clone(), TenantSource::NamespaceLabel),
            None => (default_tenant.to_string(), TenantSource::Default),
        },
    };
    let segment = pod_labels
        .get(SEGMENT_LABEL)
        .cloned()
        .unwrap_or_else(|| DEFAULT_SEGMENT_NAME.to_string());
    PodNetwork {
        tenant,
        tenant_source,
        segment,
    }
}

/// An object's labels (none: empty).
pub(crate) fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// Creates segment `segment` of the existing tenant `tenant` unless it
/// exists: segments are named by pods' labels (and by the policies that
/// select them), tenants are configured. One request id per segment, so
/// the node resolving an ADD and the controller creating it at once make
/// one entry; a creation that lost a race (`SegmentExists`) is success.
pub async fn ensure_segment(
    node: &crate::node::Node,
    tenant: &str,
    segment: &str,
    actor: String,
) -> Result<(), String> {
    let created = node
        .propose(
            Command::CreateSegment {
                tenant: tenant.to_string(),
                name: segment.to_string(),
            },
            actor,
            Some(format!("k8s-segment-{tenant}-{segment}")),
        )
        .await
        .map_err(|e| e.to_string())?;
    match created.outcome {
        Outcome::Applied(_) | Outcome::Rejected(Rejection::SegmentExists { .. }) => Ok(()),
        Outcome::Rejected(reason) => Err(reason.to_string()),
    }
}

impl Context {
    pub async fn connect(settings: KubernetesConfig) -> Result<Self, crate::error::Error> {
        let client = Client::try_default().await.map_err(|e| {
            crate::error::Error::Config(format!(
                "--kubernetes: cannot build a Kubernetes client (in-cluster service account or KUBECONFIG): {e}"
            ))
        })?;
        Ok(Self { client, settings })
    }

    /// The tenant and segment of pod `namespace/name`: from the mirrored
    /// view when the pod is there, else from the apiserver directly (a pod
    /// is created before its sandbox, but the leader's mirror may not have
    /// caught up with it yet).
    pub async fn resolve_pod(
        &self,
        state: &raft_store::store::SharedState,
        namespace: &str,
        name: &str,
    ) -> Result<PodNetwork, ApiError> {
        {
            let projection = state.read();
            let view = &projection.state.kubernetes;
            if let Some(pod) = view.pod(namespace, name) {
                let namespace_labels = view.namespaces.get(namespace).map(|n| &n.labels);
                return Ok(pod_network(
                    &pod.pod.labels,
                    namespace_labels,
                    &self.settings.default_tenant,
                ));
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = pods.get_opt(name).await.map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot look up pod {namespace}/{name} in the Kubernetes API: {e}"
            ))
        })?;
        let Some(pod) = pod else {
            return Err(ApiError::NotFound(format!(
                "pod {namespace}/{name} does not exist in the Kubernetes API"
            )));
        };
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace_object = namespaces.get_opt(namespace).await.map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot look up namespace {namespace} in the Kubernetes API: {e}"
            ))
        })?;
        let namespace_labels = namespace_object.map(|n| labels_of(&n.metadata));
        Ok(pod_network(
            &labels_of(&pod.metadata),
            namespace_labels.as_ref(),
            &self.settings.default_tenant,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[(&str, &str)]) -> Labels {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_pod_label_wins_then_the_namespace_then_the_default() {
        let namespace = labels(&[(TENANT_LABEL, "t2")]);
        let pod = labels(&[(TENANT_LABEL, "t1"), (SEGMENT_LABEL, "frontend")]);
        let found = pod_network(&pod, Some(&namespace), "default");
        assert_eq!(
            (found.tenant.as_str(), found.segment.as_str()),
            ("t1", "frontend")
        );
        assert_eq!(found.tenant_source, TenantSource::PodLabel);
        let found = pod_network(&labels(&[]), Some(&namespace), "default");
        assert_eq!(
            (found.tenant.as_str(), found.tenant_source),
            ("t2", TenantSource::NamespaceLabel)
        );
        assert_eq!(found.segment, DEFAULT_SEGMENT_NAME);
        let found = pod_network(&labels(&[("app", "web")]), None, "default");
        assert_eq!(
            (found.tenant.as_str(), found.tenant_source),
            ("default", TenantSource::Default)
        );
    }
}

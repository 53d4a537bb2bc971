//! Bootstrap without a master: nodes that start with an empty data dir find
//! the cluster through the Kubernetes API, and exactly one Raft cluster
//! forms even when every DaemonSet pod starts at the same instant.
//!
//! The lock is the Secret `romana-cluster` (in Romana's namespace), which
//! also carries the cluster secret, so no credential is ever committed to
//! the manifests:
//!
//! 1. A node with an empty store first persists its node id (done by
//!    [`crate::node::open`] before this runs), then tries to **create** the
//!    Secret with a fresh random cluster secret and annotations naming
//!    itself (node name, node id, advertised address).
//! 2. The apiserver admits exactly one create of a name (etcd's
//!    transactional create); every other node gets 409 Conflict and reads
//!    the winner's Secret.
//! 3. Only the node whose name *and* persisted node id match the Secret's
//!    annotations initialises a cluster; every other node joins, through
//!    the winner and every other Kubernetes node's address.
//!
//! Why this cannot split into two clusters: a cluster is created only by
//! `raft.initialize` on the Secret's creator. A second creator would need a
//! second successful create of the same Secret name, which the apiserver
//! refuses while the Secret exists. The creator restarting with the same
//! data dir either has a log (it resumes, never initialising again) or
//! crashed before initialising (it initialises, still the only one). A
//! creator whose data dir was wiped gets a new node id, so it no longer
//! matches and joins like any other node. Deleting the Secret while the
//! cluster runs would re-open the lock; the leader's controller recreates
//! it from its own secret at once (see [`ensure_secret`]).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node as KubeNode, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use raft_store::NodeId;

use super::Context;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::node::{new_cluster_secret, write_generated_secret};

/// Key of the cluster secret in the Secret's data.
pub const SECRET_KEY: &str = "cluster-secret";
pub const ANNOTATION_NODE: &str = "romana.io/bootstrap-node";
pub const ANNOTATION_NODE_ID: &str = "romana.io/bootstrap-node-id";
pub const ANNOTATION_ADDRESS: &str = "romana.io/bootstrap-address";

/// How often a node retries reaching the apiserver before it gives up.
const API_ATTEMPTS: u32 = 60;

/// What a node with an empty store does: `Initialise` when it won the lock.
pub use crate::node::EmptyStore as Decision;

/// Decides how a node with an empty store starts, and writes the cluster
/// secret into its data dir (where a resumed node reads it).
pub async fn decide(
    context: &Context,
    config: &NodeConfig,
    node_id: NodeId,
) -> Result<Decision, Error> {
    let settings = &context.settings;
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &settings.namespace);
    let mut last_error = String::new();
    for attempt in 1..=API_ATTEMPTS {
        match try_decide(context, &secrets, config, node_id).await {
            Ok(decision) => return Ok(decision),
            Err(e) => {
                last_error = e;
                tracing::warn!(attempt, error = %last_error, "bootstrap through the Kubernetes API");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Error::Join(format!(
        "cannot bootstrap through the Kubernetes API after {API_ATTEMPTS} attempts: {last_error}"
    )))
}

async fn try_decide(
    context: &Context,
    secrets: &Api<Secret>,
    config: &NodeConfig,
    node_id: NodeId,
) -> Result<Decision, String> {
    let name = &context.settings.secret_name;
    let existing = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {name}: {e}"))?;
    let secret = match existing {
        Some(secret) => secret,
        None => {
            let text = new_cluster_secret();
            let candidate = lock_object(name, config, node_id, &text);
            match secrets.create(&PostParams::default(), &candidate).await {
                Ok(created) => {
                    tracing::info!(secret = %name, "won the bootstrap lock: creating the cluster");
                    created
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::info!(secret = %name, "another node won the bootstrap lock");
                    secrets
                        .get(name)
                        .await
                        .map_err(|e| format!("cannot read Secret {name}: {e}"))?
                }
                Err(e) => return Err(format!("cannot create Secret {name}: {e}")),
            }
        }
    };
    let text = secret
        .data
        .as_ref()
        .and_then(|data| data.get(SECRET_KEY))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_string())
        .ok_or_else(|| format!("Secret {name} has no {SECRET_KEY:?} key"))?;
    write_generated_secret(&config.data_dir, &text).map_err(|e| e.to_string())?;
    let annotations = secret.metadata.annotations.unwrap_or_default();
    let creator = annotations
        .get(ANNOTATION_NODE)
        .cloned()
        .unwrap_or_default();
    let creator_id = annotations
        .get(ANNOTATION_NODE_ID)
        .and_then(|id| id.parse::<NodeId>().ok());
    if creator == config.name && creator_id == Some(node_id) {
        return Ok(Decision::Initialise);
    }
    let mut members = Vec::new();
    if let Some(address) = annotations.get(ANNOTATION_ADDRESS) {
        if address != &config.advertise {
            members.push(address.clone());
        }
    }
    for address in peer_addresses(context, config).await? {
        if !members.contains(&address) {
            members.push(address);
        }
    }
    if members.is_empty() {
        return Err("no other node to join yet".into());
    }
    tracing::info!(via = ?members, "joining the cluster created by {creator}");
    Ok(Decision::Join(members))
}

/// The Secret a node tries to create: the lock, naming it.
fn lock_object(name: &str, config: &NodeConfig, node_id: NodeId, text: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_NODE.to_string(), config.name.clone()),
                (ANNOTATION_NODE_ID.to_string(), node_id.to_string()),
                (ANNOTATION_ADDRESS.to_string(), config.advertise.clone()),
            ])),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "romana-node".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            SECRET_KEY.to_string(),
            ByteString(text.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    }
}

/// The other Kubernetes nodes' InternalIP with this node's port.
async fn peer_addresses(context: &Context, config: &NodeConfig) -> Result<Vec<String>, String> {
    let port = config
        .advertise
        .rsplit_once(':')
        .map(|(_, port)| port.to_string())
        .unwrap_or_else(|| "9600".to_string());
    let nodes: Api<KubeNode> = Api::all(context.client.clone());
    let list = nodes
        .list(&Default::default())
        .await
        .map_err(|e| format!("cannot list nodes: {e}"))?;
    let mut addresses = Vec::new();
    for node in list.items {
        if node.metadata.name.as_deref() == Some(config.name.as_str()) {
            continue;
        }
        let internal = node
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.type_ == "InternalIP");
        if let Some(address) = internal {
            addresses.push(format!("{}:{port}", address.address));
        }
    }
    addresses.sort();
    Ok(addresses)
}

/// Recreates the Secret from this node's cluster secret if it is gone (run
/// by the leader): an existing cluster keeps the bootstrap lock closed.
pub async fn ensure_secret(context: &Context, config: &NodeConfig, node_id: NodeId, text: &str) {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &context.settings.namespace);
    let name = &context.settings.secret_name;
    match secrets.get_opt(name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let object = lock_object(name, config, node_id, text);
            match secrets.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    tracing::warn!(secret = %name, "the bootstrap Secret was missing; recreated it from this cluster's secret")
                }
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "cannot recreate the bootstrap Secret")
                }
            }
        }
        Err(e) => tracing::warn!(secret = %name, error = %e, "cannot read the bootstrap Secret"),
    }
}

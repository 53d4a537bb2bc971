//! Network policies in the projection: the [`PolicyRecord`]s in force and
//! the handlers that apply and delete them, checked against the tenants and
//! segments they name.

use serde::{Deserialize, Serialize};

use super::outcome::{Effect, Rejection};
use super::ClusterState;
use crate::entry::network_policy::network_policy_key;
use crate::entry::policy::{validate, Peer, Policy, Target, MAX_POLICY_ITEMS};
use crate::entry::{NetworkPolicy, RequestMeta};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub policy: Policy,
    pub applied_at_ms: u64,
    pub applied_index: u64,
    pub actor: String,
}

/// A Kubernetes NetworkPolicy in force.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyRecord {
    pub policy: NetworkPolicy,
    pub applied_at_ms: u64,
    pub applied_index: u64,
    pub actor: String,
}

impl ClusterState {
    /// The tenant (and segment) a policy names must exist.
    fn check_pods(
        &self,
        field: &str,
        tenant: &str,
        segment: Option<&str>,
    ) -> Result<(), Rejection> {
        let record = self.tenant(tenant)?;
        if let Some(segment) = segment {
            if !record.segments.contains_key(segment) {
                return Err(Rejection::InvalidArgument {
                    reason: format!("{field}: tenant {tenant:?} has no segment {segment:?}"),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn apply_policies(
        &mut self,
        policies: &[Policy],
        index: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        if policies.is_empty() || policies.len() > MAX_POLICY_ITEMS {
            return Err(Rejection::InvalidArgument {
                reason: format!(
                    "apply 1 to {MAX_POLICY_ITEMS} policies at once, got {}",
                    policies.len()
                ),
            });
        }
        // Every policy is checked before any is stored: all or none.
        for policy in policies {
            validate(policy).map_err(|reason| Rejection::InvalidArgument {
                reason: format!("policy {:?}: {reason}", policy.name),
            })?;
            for (i, target) in policy.applied_to.iter().enumerate() {
                if let Target::Pods { tenant, segment } = target {
                    self.check_pods(&format!("applied_to[{i}]"), tenant, segment.as_deref())?;
                }
            }
            for (i, peer) in policy.peers.iter().enumerate() {
                if let Peer::Pods { tenant, segment } = peer {
                    self.check_pods(&format!("peers[{i}]"), tenant, segment.as_deref())?;
                }
            }
        }
        let mut replaced = 0;
        for policy in policies {
            let record = PolicyRecord {
                policy: policy.clone(),
                applied_at_ms: meta.timestamp_ms,
                applied_index: index,
                actor: meta.actor.clone(),
            };
            if self.policies.insert(policy.name.clone(), record).is_some() {
                replaced += 1;
            }
        }
        Ok(Effect::PoliciesApplied {
            names: policies.iter().map(|p| p.name.clone()).collect(),
            replaced,
        })
    }

    /// Deletes the policy `name`, every policy named `name/...` (earlier
    /// releases stored a Kubernetes NetworkPolicy `NS/NAME` as
    /// `NS/NAME/ingress/0`, ...; deleting `NS/NAME` deletes them all), and
    /// the NetworkPolicy `name`.
    pub(crate) fn delete_policy(&mut self, name: &str) -> Result<Effect, Rejection> {
        let prefix = format!("{name}/");
        let doomed: Vec<String> = self
            .policies
            .keys()
            .filter(|key| key.as_str() == name || key.starts_with(&prefix))
            .cloned()
            .collect();
        let network_policy = self.network_policies.remove(name).is_some();
        if doomed.is_empty() && !network_policy {
            return Err(Rejection::UnknownPolicy {
                name: name.to_string(),
            });
        }
        for key in &doomed {
            self.policies.remove(key);
        }
        Ok(Effect::PolicyDeleted)
    }

    pub(crate) fn apply_network_policy(
        &mut self,
        policy: &NetworkPolicy,
        index: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        policy
            .validate()
            .map_err(|reason| Rejection::InvalidArgument {
                reason: format!("NetworkPolicy {}: {reason}", policy.key()),
            })?;
        let key = policy.key();
        let record = NetworkPolicyRecord {
            policy: policy.clone(),
            applied_at_ms: meta.timestamp_ms,
            applied_index: index,
            actor: meta.actor.clone(),
        };
        let replaced = self.network_policies.insert(key.clone(), record).is_some();
        Ok(Effect::PoliciesApplied {
            names: vec![key],
            replaced: usize::from(replaced),
        })
    }

    pub(crate) fn delete_network_policy(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<Effect, Rejection> {
        let key = network_policy_key(namespace, name);
        match self.network_policies.remove(&key) {
            Some(_) => Ok(Effect::PolicyDeleted),
            None => Err(Rejection::UnknownPolicy { name: key }),
        }
    }
}

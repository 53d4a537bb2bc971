//! Events: the significant changes a node saw, one JSON object per line on
//! `GET /v1/events` (and one structured log line each).

use serde::{Deserialize, Serialize};

/// One event. `kind` and the keys of `fields` are stable: tools may match
/// on them. Kinds from the log (every node sees the same ones, with their
/// log `index`): `cluster_initialised`, `host_joined`, `host_removed`,
/// `tenant_created`, `tenant_deleted`, `segment_created`,
/// `segment_deleted`, `policy_applied`, `policy_deleted`,
/// `addresses_released_by_gc`, `address_refused`, `note`. Kinds of this
/// node only: `leader_elected`, `drift_repaired`, `add_refused` (a CNI ADD
/// refused before it reached the log), `events_lost` (a follower fell
/// behind the node's buffer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventView {
    /// Position in this node's stream (from 1 at the node's start), for
    /// `?since=`.
    pub id: u64,
    pub time_ms: u64,
    pub time: String,
    /// The node that saw it.
    pub node: String,
    pub kind: String,
    /// The log index, for events from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Who asked, for events from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub message: String,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/events` parameters.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct EventsQuery {
    /// Only events after this id (default: every buffered event).
    #[serde(default)]
    pub since: Option<u64>,
    /// Keep the answer open and stream new events as they happen.
    #[serde(default)]
    pub follow: bool,
}

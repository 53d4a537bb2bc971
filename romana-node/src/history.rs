//! The network's history, from the audit archive: what `romanactl audit`
//! prints and what the web view's timeline shows, computed the same way for
//! both.
//!
//! - [`state_view`]: the state at a point of the history (hosts, tenants,
//!   allocations, policies), from a replay of the archive up to a record;
//! - [`timeline`]: one summary line per record, for the timeline's slider;
//! - [`record_json`]: one record, whole, for `romanactl audit export`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use raft_store::audit::{self, ArchiveRecord};
use raft_store::state::ClusterState;
use serde::Serialize;
use serde_json::{json, Value};

/// Milliseconds since the Unix epoch: the proposer's timestamp.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One record, whole: the request, its outcome, where it is in the chain.
pub fn record_json(record: &ArchiveRecord) -> Value {
    json!({
        "sequence": record.sequence,
        "index": record.applied.index,
        "position": record.applied.position,
        "time": format_time(record.request.meta.timestamp_ms),
        "actor": record.request.meta.actor,
        "request_id": record.request.meta.request_id,
        "request": record.request.command.to_string(),
        "command": record.request.command,
        "outcome": record.applied.outcome.to_string(),
        "result": record.applied.outcome,
        "chain": record.chain,
    })
}

/// The state at a point, for `audit at`, `audit diff` and the timeline.
#[derive(Serialize)]
pub struct StateView {
    pub sequence: u64,
    pub index: u64,
    /// The proposer's timestamp of the record the state is after (0 before
    /// the first).
    pub time_ms: u64,
    pub time: String,
    pub state_hash: String,
    pub hosts: BTreeMap<String, Value>,
    pub tenants: BTreeMap<String, Value>,
    pub allocations: BTreeMap<String, Value>,
    pub policies: Vec<String>,
}

/// The view of `state`, the state after the record `sequence` (log index
/// `index`, stamped `time_ms`).
pub fn state_view(state: &ClusterState, sequence: u64, index: u64, time_ms: u64) -> StateView {
    StateView {
        sequence,
        index,
        time_ms,
        time: format_time(time_ms),
        state_hash: state.content_hash(),
        hosts: state
            .nodes
            .iter()
            .map(|(n, r)| (n.clone(), json!({"host_number": r.host_number, "underlay_ip": r.underlay_ip})))
            .collect(),
        tenants: state
            .tenants
            .iter()
            .map(|(n, t)| (n.clone(), json!({"number": t.number, "segments": t.segments.keys().collect::<Vec<_>>()})))
            .collect(),
        allocations: state
            .allocations
            .iter()
            .map(|(a, r)| {
                (
                    a.to_string(),
                    json!({"owner": r.owner.to_string(), "host": r.host, "tenant": r.tenant, "segment": r.segment,
                           "pod": r.pod_name, "namespace": r.pod_namespace}),
                )
            })
            .collect(),
        // Romana policies and Kubernetes NetworkPolicies, by name.
        policies: state
            .policies
            .keys()
            .chain(state.network_policies.keys())
            .cloned()
            .collect(),
    }
}

/// The state after record `sequence` (0: before the first), by replay.
pub fn replay_to(records: &[ArchiveRecord], sequence: u64) -> Result<ClusterState, String> {
    audit::replay(records, sequence).ok_or_else(|| {
        "this archive does not start at the cluster's first request (the node was brought up by a snapshot, or retention pruned it): replay from another node's archive".into()
    })
}

/// The view after record `sequence` (the last record if `None`); an error
/// if the archive cannot be replayed or has no such record.
pub fn view_at(records: &[ArchiveRecord], sequence: Option<u64>) -> Result<StateView, String> {
    let last = records.last().map_or(0, |r| r.sequence);
    let sequence = sequence.unwrap_or(last);
    let record = records.iter().find(|r| r.sequence == sequence);
    if sequence != 0 && record.is_none() {
        return Err(format!(
            "no record {sequence} in this node's archive (it holds {}..={last})",
            records.first().map_or(0, |r| r.sequence)
        ));
    }
    let state = replay_to(records, sequence)?;
    Ok(state_view(
        &state,
        sequence,
        record.map_or(0, |r| r.applied.index),
        record.map_or(0, |r| r.request.meta.timestamp_ms),
    ))
}

/// One record of the timeline.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub sequence: u64,
    pub index: u64,
    pub time_ms: u64,
    pub time: String,
    pub actor: String,
    /// The command's kind (`create_tenant`, `allocate_address`, ...).
    pub kind: &'static str,
    pub request: String,
    pub outcome: String,
}

/// The timeline: the last `limit` records, oldest first.
pub fn timeline(records: &[ArchiveRecord], limit: usize) -> Vec<TimelineEntry> {
    let skip = records.len().saturating_sub(limit);
    records[skip..]
        .iter()
        .map(|r| TimelineEntry {
            sequence: r.sequence,
            index: r.applied.index,
            time_ms: r.request.meta.timestamp_ms,
            time: format_time(r.request.meta.timestamp_ms),
            actor: r.request.meta.actor.clone(),
            kind: r.request.command.kind(),
            request: r.request.command.to_string(),
            outcome: r.applied.outcome.to_string(),
        })
        .collect()
}

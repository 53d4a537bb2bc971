//! Events: the significant changes a node sees, each one structured log
//! line (target `romana::event`, fields `event`, `index`, `actor` and the
//! event's own as JSON in `fields`) and one entry of an in-memory buffer
//! that `GET /v1/events` serves and follows (`romanactl events --follow`).
//!
//! Events come from two places:
//!
//! - the log ([`crate::node::observe::follow_log`]): every applied request that changes the
//!   network's shape (a host joined, a tenant created, a policy applied, an
//!   address refused, addresses released by garbage collection...). Every
//!   node derives the same ones from the same records, with their log index;
//! - the node itself: a leader elected (as this node saw it), drift repaired
//!   by its reconciler, a CNI ADD refused before it reached the log.
//!
//! The buffer keeps the last [`BUFFER`] events; a follower that falls
//! further behind gets one `events_lost` line with the count, then goes on.
//! Events are not persisted: the log's history is the audit archive's
//! (`romanactl audit log`).

use std::collections::VecDeque;
use std::sync::Mutex;

use raft_store::audit::ArchiveRecord;
use raft_store::state::{Effect, Outcome};
use raft_store::Command;
use romana_api::events::EventView;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::history::now_ms;

/// Events kept for `GET /v1/events` and followers that fell behind.
pub const BUFFER: usize = 1024;

/// The node's event stream.
pub struct EventBus {
    node: String,
    inner: Mutex<Buffer>,
    /// The last id emitted; `None` once the node stops (followers end).
    latest: watch::Sender<Option<u64>>,
}

struct Buffer {
    next_id: u64,
    events: VecDeque<EventView>,
}

/// An event before it gets its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: &'static str,
    pub index: Option<u64>,
    pub actor: Option<String>,
    pub message: String,
    pub fields: Map<String, Value>,
}

impl NewEvent {
    pub fn new(kind: &'static str, message: impl Into<String>, fields: Value) -> Self {
        Self {
            kind,
            index: None,
            actor: None,
            message: message.into(),
            fields: match fields {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }
}

impl EventBus {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            inner: Mutex::new(Buffer {
                next_id: 1,
                events: VecDeque::with_capacity(BUFFER),
            }),
            latest: watch::Sender::new(Some(0)),
        }
    }

    /// Logs `event`, buffers it and wakes the followers.
    pub fn emit(&self, event: NewEvent) {
        let fields = Value::Object(event.fields.clone());
        tracing::info!(
            target: "romana::event",
            event = event.kind,
            index = event.index,
            actor = event.actor.as_deref(),
            fields = %fields,
            "{}",
            event.message
        );
        let time_ms = now_ms();
        let id = {
            let mut buffer = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let id = buffer.next_id;
            buffer.next_id += 1;
            if buffer.events.len() == BUFFER {
                buffer.events.pop_front();
            }
            buffer.events.push_back(EventView {
                id,
                time_ms,
                time: crate::history::format_time(time_ms),
                node: self.node.clone(),
                kind: event.kind.to_string(),
                index: event.index,
                actor: event.actor,
                message: event.message,
                fields: event.fields,
            });
            id
        };
        self.latest.send_if_modified(|latest| match latest {
            Some(last) => {
                *last = id;
                true
            }
            None => false,
        });
    }

    /// The buffered events after `since`, and how many after it are no
    /// longer buffered.
    pub fn after(&self, since: u64) -> (Vec<EventView>, u64) {
        let buffer = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = buffer.events.front().map_or(buffer.next_id, |e| e.id);
        let lost = oldest.saturating_sub(since.saturating_add(1));
        let events = buffer
            .events
            .iter()
            .filter(|e| e.id > since)
            .cloned()
            .collect();
        (events, lost)
    }

    /// Wakes on every new event; `None` once the node stops.
    pub fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.latest.subscribe()
    }

    /// Ends every follower (the node is stopping).
    pub fn close(&self) {
        self.latest.send_replace(None);
    }

    /// The line a follower gets when `count` events passed it by.
    pub fn lost(&self, count: u64, after: u64) -> EventView {
        let time_ms = now_ms();
        EventView {
            id: after,
            time_ms,
            time: crate::history::format_time(time_ms),
            node: self.node.clone(),
            kind: "events_lost".into(),
            index: None,
            actor: None,
            message: format!("{count} events passed this follower by (the node buffers {BUFFER})"),
            fields: json!({ "count": count })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// The events one audit record gives (none for most: allocations, releases
/// and mirrored objects are the network's traffic, not its shape).
pub fn events_of(record: &ArchiveRecord) -> Vec<NewEvent> {
    let command = &record.request.command;
    let outcome = &record.applied.outcome;
    let event = match (command, outcome) {
        (Command::InitCluster { cluster_name, .. }, Outcome::Applied(_)) => Some(NewEvent::new(
            "cluster_initialised",
            format!("cluster {cluster_name} initialised"),
            json!({ "cluster": cluster_name }),
        )),
        (
            Command::RegisterNode { name, address, .. },
            Outcome::Applied(Effect::NodeRegistered { host_number, .. }),
        ) => Some(NewEvent::new(
            "host_joined",
            format!("host {name} joined as host {host_number} ({address})"),
            json!({ "host": name, "host_number": host_number, "address": address }),
        )),
        (
            Command::RemoveNode { name, .. },
            Outcome::Applied(Effect::NodeRemoved { released, .. }),
        ) => Some(NewEvent::new(
            "host_removed",
            format!(
                "host {name} removed ({} addresses released)",
                released.len()
            ),
            json!({ "host": name, "released": released }),
        )),
        (Command::CreateTenant { name }, Outcome::Applied(Effect::TenantCreated { number })) => {
            Some(NewEvent::new(
                "tenant_created",
                format!("tenant {name} created (number {number})"),
                json!({ "tenant": name, "number": number }),
            ))
        }
        (Command::DeleteTenant { name }, Outcome::Applied(Effect::TenantDeleted { number })) => {
            Some(NewEvent::new(
                "tenant_deleted",
                format!("tenant {name} deleted"),
                json!({ "tenant": name, "number": number }),
            ))
        }
        (
            Command::CreateSegment { tenant, name },
            Outcome::Applied(Effect::SegmentCreated { number }),
        ) => Some(NewEvent::new(
            "segment_created",
            format!("segment {tenant}/{name} created"),
            json!({ "tenant": tenant, "segment": name, "number": number }),
        )),
        (
            Command::DeleteSegment { tenant, name },
            Outcome::Applied(Effect::SegmentDeleted { number }),
        ) => Some(NewEvent::new(
            "segment_deleted",
            format!("segment {tenant}/{name} deleted"),
            json!({ "tenant": tenant, "segment": name, "number": number }),
        )),
        (
            Command::ApplyPolicies { .. },
            Outcome::Applied(Effect::PoliciesApplied { names, .. }),
        ) => Some(NewEvent::new(
            "policy_applied",
            format!("policies applied: {}", names.join(", ")),
            json!({ "kind": "romana", "names": names }),
        )),
        (Command::DeletePolicy { name }, Outcome::Applied(Effect::PolicyDeleted)) => {
            Some(NewEvent::new(
                "policy_deleted",
                format!("policy {name} deleted"),
                json!({ "kind": "romana", "names": [name] }),
            ))
        }
        (
            Command::ApplyNetworkPolicy(policy),
            Outcome::Applied(Effect::Mirrored { changed: true }),
        ) => {
            let name = format!("{}/{}", policy.namespace, policy.name);
            Some(NewEvent::new(
                "policy_applied",
                format!("NetworkPolicy {name} applied"),
                json!({ "kind": "network_policy", "names": [name] }),
            ))
        }
        (
            Command::DeleteNetworkPolicy { namespace, name },
            Outcome::Applied(Effect::Forgotten { existed: true }),
        ) => Some(NewEvent::new(
            "policy_deleted",
            format!("NetworkPolicy {namespace}/{name} deleted"),
            json!({ "kind": "network_policy", "names": [format!("{namespace}/{name}")] }),
        )),
        (
            Command::GarbageCollect { host, .. },
            Outcome::Applied(Effect::GarbageCollected { released }),
        ) if !released.is_empty() => Some(NewEvent::new(
            "addresses_released_by_gc",
            format!(
                "{} addresses on {host} released by garbage collection",
                released.len()
            ),
            json!({ "host": host, "released": released }),
        )),
        (Command::AllocateAddress(request), Outcome::Rejected(reason)) => Some(NewEvent::new(
            "address_refused",
            format!(
                "no address for {} on {} ({}/{}): {reason}",
                request.owner, request.host, request.tenant, request.segment
            ),
            json!({
                "host": request.host,
                "tenant": request.tenant,
                "segment": request.segment,
                "owner": request.owner.to_string(),
                "pod": romana_api::ipam::pod_label(request.pod_namespace.as_deref(), request.pod_name.as_deref()),
                "reason": reason.to_string(),
            }),
        )),
        (Command::Note { text }, Outcome::Applied(_)) => Some(NewEvent::new(
            "note",
            format!("note: {text}"),
            json!({ "text": text }),
        )),
        _ => None,
    };
    event
        .map(|mut event| {
            event.index = Some(record.applied.index);
            event.actor = Some(record.request.meta.actor.clone());
            event
        })
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_keeps_the_last_events_and_counts_what_a_follower_missed() {
        let bus = EventBus::new("n0");
        for i in 0..(BUFFER as u64 + 10) {
            bus.emit(NewEvent::new("note", format!("{i}"), json!({ "i": i })));
        }
        let (events, lost) = bus.after(0);
        assert_eq!(events.len(), BUFFER);
        assert_eq!(lost, 10, "ids 1..=10 fell out of the buffer");
        assert_eq!(events[0].id, 11);
        assert_eq!(events[0].fields["i"], json!(10));
        let (events, lost) = bus.after(BUFFER as u64 + 5);
        assert_eq!((events.len(), lost), (5, 0));
        assert_eq!(*bus.subscribe().borrow(), Some(BUFFER as u64 + 10));
        bus.close();
        assert_eq!(*bus.subscribe().borrow(), None);
        bus.emit(NewEvent::new("note", "after close", json!({})));
        assert_eq!(*bus.subscribe().borrow(), None, "closed stays closed");
    }
}

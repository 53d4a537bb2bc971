//! Tasks that watch the node and tell of what they see: events from the
//! applied log, leader changes (an event and a metric).

use tokio::sync::watch;

use raft_store::audit::ArchiveRecord;

use crate::events::{events_of, NewEvent};
use crate::node::Node;

/// Runs until `stop`: turns the records this node applies into events. It
/// starts at the archive's end (what came before is the audit archive's).
pub async fn follow_log(node: Node, mut stop: watch::Receiver<bool>) {
    use tokio::sync::broadcast::error::RecvError;
    // Subscribed before the archive's end is read: nothing falls between.
    let mut records = node.shared.subscribe_records();
    let Some(mut last) = read_archive(&node, None).await.map(|r| r.1) else {
        return;
    };
    let handle = |record: &ArchiveRecord, last: &mut u64| {
        if record.sequence <= *last {
            return;
        }
        *last = record.sequence;
        node.metrics.observe_record(record);
        for event in events_of(record) {
            node.events.emit(event);
        }
    };
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            next = records.recv() => next,
        };
        match next {
            Ok(record) if record.sequence <= last + 1 => handle(&record, &mut last),
            // A gap (after a lag, or a snapshot's jump): the archive has
            // what came between, if anything.
            Ok(record) => {
                if let Some((between, _)) = read_archive(&node, Some(last)).await {
                    for earlier in between.iter().filter(|r| r.sequence < record.sequence) {
                        handle(earlier, &mut last);
                    }
                }
                handle(&record, &mut last);
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "events fell behind the log; reading the archive");
                if let Some((between, _)) = read_archive(&node, Some(last)).await {
                    for record in &between {
                        handle(record, &mut last);
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The archive's records after `after` (none if `None`) and its last
/// sequence; `None` (logged) if it cannot be read.
async fn read_archive(node: &Node, after: Option<u64>) -> Option<(Vec<ArchiveRecord>, u64)> {
    let backend = node.backend.clone();
    let read = tokio::task::spawn_blocking(move || match after {
        Some(after) => raft_store::store::archive_records_after(&backend, after).map(|records| {
            let last = records.last().map_or(after, |r| r.sequence);
            (records, last)
        }),
        None => raft_store::store::last_archive_sequence(&backend).map(|last| (Vec::new(), last)),
    })
    .await;
    match read {
        Ok(Ok(found)) => Some(found),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "events: cannot read the audit archive");
            None
        }
        Err(_) => None,
    }
}

/// Runs until `stop`: counts leader changes (`raft_leader_changes_total`)
/// and emits `leader_elected` when this node sees a new leader.
pub async fn watch_leader(node: Node, mut stop: watch::Receiver<bool>) {
    let mut watched = node.raft.metrics();
    let mut leader = watched.borrow_and_update().current_leader;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            changed = watched.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let (now, term) = {
            let metrics = watched.borrow_and_update();
            (metrics.current_leader, metrics.current_term)
        };
        if now != leader {
            node.metrics.leader_changes.inc();
            leader = now;
            if let Some(id) = now {
                let name = node
                    .shared
                    .read()
                    .state
                    .nodes
                    .iter()
                    .find(|(_, record)| record.node_id == id)
                    .map(|(name, _)| name.clone())
                    .unwrap_or_else(|| format!("node {id}"));
                node.events.emit(NewEvent::new(
                    "leader_elected",
                    format!(
                        "{name} leads (term {term}), as seen by {}",
                        node.config.name
                    ),
                    serde_json::json!({ "leader": name, "leader_id": id, "term": term }),
                ));
            }
        }
    }
}

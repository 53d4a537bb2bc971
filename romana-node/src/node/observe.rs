//! Tasks that watch the node and tell of what they see: events from the
//! applied log, leader changes (an event and a metric).

use tokio::sync::watch;

use crate::events::{events_of, NewEvent};
use crate::node::Node;

/// Runs until `stop`: turns the records this node applies into events. It
/// starts at the archive's end (what came before is the audit archive's).
pub async fn follow_log(node: Node, mut stop: watch::Receiver<bool>) {
    let mut applied = node.shared.subscribe();
    let backend = node.backend.clone();
    let mut last = match tokio::task::spawn_blocking(move || {
        raft_store::store::last_archive_sequence(&backend)
    })
    .await
    {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "events: cannot read the audit archive; no log events");
            return;
        }
        Err(_) => return,
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
        let backend = node.backend.clone();
        let after = last;
        let records = match tokio::task::spawn_blocking(move || {
            raft_store::store::archive_records_after(&backend, after)
        })
        .await
        {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "events: cannot read the audit archive");
                continue;
            }
            Err(_) => return,
        };
        for record in &records {
            last = record.sequence;
            node.metrics.observe_record(record);
            for event in events_of(record) {
                node.events.emit(event);
            }
        }
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

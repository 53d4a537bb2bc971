//! Tasks that watch the node and tell of what they see: events from the
//! applied log, leader changes (an event and a metric).

use tokio::sync::watch;

use raft_store::audit::ArchiveRecord;
use raft_store::store::SledBackend;

use crate::events::{events_of, NewEvent};
use crate::node::Node;

/// Turns the records this node applies into events, until `stop`. It
/// starts at the archive's end as it is when called (what came before is
/// the audit archive's): call it before the node applies anything (start-up
/// included), and spawn what it returns.
pub fn follow_log(
    node: Node,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // Subscribed before the archive's end is read: nothing falls between.
    let records = node.shared.subscribe_records();
    let start = raft_store::store::last_archive_sequence(&node.backend);
    async move {
        match start {
            Ok(last) => follow_records(node, records, last, stop).await,
            Err(e) => {
                tracing::warn!(error = %e, "events: cannot read the audit archive; no log events")
            }
        }
    }
}

async fn follow_records(
    node: Node,
    mut records: tokio::sync::broadcast::Receiver<std::sync::Arc<ArchiveRecord>>,
    mut last: u64,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
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
        let received = match next {
            Ok(record) => Some(record),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "events fell behind the log; reading the archive");
                None
            }
            Err(RecvError::Closed) => return,
        };
        // After a lag, or a gap (a snapshot's jump): the archive has what
        // came between, if anything.
        if received.as_ref().is_none_or(|r| r.sequence > last + 1) {
            let after = last;
            let between = read_archive(&node, move |backend| {
                raft_store::store::archive_records_after(backend, after)
            })
            .await;
            for record in between.iter().flatten() {
                handle(record, &mut last);
            }
        }
        if let Some(record) = received {
            handle(&record, &mut last);
        }
    }
}

/// `read` on the node's archive, on a blocking thread; `None` (logged) if
/// the archive cannot be read.
async fn read_archive<T: Send + 'static>(
    node: &Node,
    read: impl FnOnce(&SledBackend) -> Result<T, raft_store::Error> + Send + 'static,
) -> Option<T> {
    let backend = node.backend.clone();
    match tokio::task::spawn_blocking(move || read(&backend)).await {
        Ok(Ok(found)) => Some(found),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "events: cannot read the audit archive");
            None
        }
        Err(_) => None,
    }
}

/// Counts leader changes (`raft_leader_changes_total`) and emits
/// `leader_elected` when this node sees a new leader, until `stop`, from
/// the leader as it is when called (call it before start-up; spawn what it
/// returns).
pub fn watch_leader(
    node: Node,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut watched = node.raft.metrics();
    let mut leader = watched.borrow_and_update().current_leader;
    async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                changed = watched.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let (now, term, name) = {
                let metrics = watched.borrow_and_update();
                let name = metrics.current_leader.map(|id| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map_or_else(|| format!("node {id}"), |info| info.name.clone())
                });
                (metrics.current_leader, metrics.current_term, name)
            };
            if now != leader {
                node.metrics.leader_changes.inc();
                leader = now;
                if let (Some(id), Some(name)) = (now, name) {
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
}

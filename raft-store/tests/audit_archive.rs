//! The audit archive as the state machine writes it: one record per new
//! request, chained; repeats not archived; retention prunes the oldest.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raft_store::audit::verify;
use raft_store::store::{open_stores, prune_archive, read_archive, MemoryBackend};
use raft_store::{ClusterRequest, Command, LogPayload, RequestMeta, TypeConfig};

fn entry(index: u64, requests: Vec<(&str, u64, Command)>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(LogPayload {
            requests: requests
                .into_iter()
                .map(|(id, time, command)| {
                    ClusterRequest::new(
                        RequestMeta {
                            actor: "test".into(),
                            request_id: id.into(),
                            timestamp_ms: time,
                        },
                        command,
                    )
                })
                .collect(),
        }),
    }
}

#[tokio::test]
async fn every_new_request_is_archived_chained_and_old_ones_can_be_pruned() {
    // Goal: records follow the requests one to one (a repeated request id
    // adds none), the chain verifies and ends at the state's head, and
    // pruning drops exactly the records older than the cut.
    let backend = MemoryBackend::new();
    let (_, mut state_machine) = open_stores(backend.clone()).expect("stores");
    let init = Command::InitCluster {
        cluster_name: "x".into(),
        voters_target: 1,
        layout: Default::default(),
    };
    let note = |text: &str| Command::Note { text: text.into() };
    state_machine
        .apply(vec![
            entry(1, vec![("init", 1_000, init)]),
            entry(2, vec![("a", 2_000, note("a")), ("b", 3_000, note("b"))]),
            entry(3, vec![("a", 4_000, note("a again"))]),
        ])
        .await
        .expect("apply");
    let records = read_archive(&backend).expect("archive");
    assert_eq!(
        records.len(),
        3,
        "init, a, b; the repeat of a is not a new record"
    );
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(verify(&records).is_ok());
    let head = state_machine.shared().read().state.audit_head.clone();
    assert_eq!(
        records[2].chain, head,
        "the archive ends at the replicated chain head"
    );

    assert_eq!(prune_archive(&backend, 2_500).expect("prune"), 2);
    let left = read_archive(&backend).expect("archive");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].request.meta.request_id, "b");
    assert!(
        verify(&left).is_ok(),
        "a pruned archive still verifies from where it starts"
    );
}

//! The log entry decoder (what `/raft/append` and `/v1/internal/propose`
//! read) followed by `apply`: any bytes either fail to decode or decode to
//! requests that apply without a panic and leave the projection's
//! invariants holding; `precheck` never refuses what `apply` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_store::layout::AddressLayout;
use raft_store::state::{precheck, ClusterState, Outcome};
use raft_store::{ClusterRequest, Command, LogPayload, RequestMeta};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = bincode::deserialize::<LogPayload>(data) else {
        let _ = bincode::deserialize::<ClusterRequest>(data);
        return;
    };
    let mut state = ClusterState::default();
    state.apply(
        1,
        0,
        &ClusterRequest::new(
            RequestMeta {
                actor: "fuzz".into(),
                request_id: "init".into(),
                timestamp_ms: 1,
            },
            Command::InitCluster {
                cluster_name: "fuzz".into(),
                voters_target: 3,
                layout: AddressLayout::default(),
            },
        ),
    );
    for (position, request) in payload.requests.iter().enumerate() {
        let prechecked = precheck(request);
        let applied = state.apply(2, position as u32, request);
        if prechecked.is_err() {
            assert!(
                matches!(applied.outcome, Outcome::Rejected(_)),
                "precheck refused what apply accepted: {request:?}"
            );
        }
        state
            .check_invariants()
            .expect("invariants hold after apply");
    }
});

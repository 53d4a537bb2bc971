//! A data dir written by a release build still reads back the same.
//!
//! `fixtures/release-data-dir.tar.gz` is the sled store of a one-node
//! cluster that a release build (named in `release-expected.json`) ran
//! through a representative history (`fixtures/make-fixture.sh`: tenants,
//! segments, allocations, a release and a reuse, a refusal, a Romana and a
//! Kubernetes policy, notes); `release-expected.json` is what that build
//! reported about it (`romanactl -o json status`, `ipam list`, `policy list`,
//! `tenant list`, `audit verify`).
//!
//! Entries, snapshots and audit records are bincode, which encodes enum
//! variants and struct fields by position: a reordered variant or field
//! decodes old bytes as something else. Replaying the fixture's log, loading
//! its snapshot and replaying its audit archive must therefore give the
//! recorded state hash, allocations, policies and audit chain.

use std::path::Path;
use std::process::Command as Process;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftLogReader};
use raft_store::audit;
use raft_store::store::{read_archive, LogStore, SledBackend, StateMachineStore};
use raft_store::ClusterState;
use serde_json::Value;

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The fixture's data dir, unpacked into a fresh temporary directory (sled
/// writes to what it opens, so the checked-in copy stays untouched).
fn unpack() -> (tempfile::TempDir, SledBackend) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = Path::new(FIXTURE_DIR).join("release-data-dir.tar.gz");
    let status = Process::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xzf {} failed", archive.display());
    let backend = SledBackend::open(&dir.path().join("raft")).expect("open the fixture's sled");
    (dir, backend)
}

fn expected() -> Value {
    let path = Path::new(FIXTURE_DIR).join("release-expected.json");
    let text = std::fs::read_to_string(&path).expect("read release-expected.json");
    serde_json::from_str(&text).expect("release-expected.json is JSON")
}

fn expected_u64(expected: &Value, key: &str) -> u64 {
    expected[key]
        .as_u64()
        .unwrap_or_else(|| panic!("release-expected.json: {key} is not a number"))
}

fn expected_str<'a>(expected: &'a Value, key: &str) -> &'a str {
    expected[key]
        .as_str()
        .unwrap_or_else(|| panic!("release-expected.json: {key} is not a string"))
}

/// The allocations as the fixture's `ipam list` printed them.
fn allocations_of(state: &ClusterState) -> Value {
    let list: Vec<Value> = state
        .allocations
        .iter()
        .map(|(address, a)| {
            serde_json::json!({
                "address": address.to_string(),
                "host": a.host,
                "tenant": a.tenant,
                "segment": a.segment,
                "container_id": a.owner.container_id,
                "ifname": a.owner.ifname,
                "allocated_index": a.allocated_index,
            })
        })
        .collect();
    Value::Array(list)
}

fn check_state(what: &str, state: &ClusterState, expected: &Value) {
    assert_eq!(
        state.content_hash(),
        expected_str(expected, "state_hash"),
        "{what}: the state hash differs from the release build's: an encoding changed"
    );
    assert_eq!(
        allocations_of(state),
        expected["allocations"],
        "{what}: allocations"
    );
    let policies: Vec<&str> = state.policies.keys().map(String::as_str).collect();
    let expected_policies: Vec<&str> = expected["policies"]
        .as_array()
        .expect("policies is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(policies, expected_policies, "{what}: policies");
    let tenants: Vec<&str> = state.tenants.keys().map(String::as_str).collect();
    let expected_tenants: Vec<&str> = expected["tenants"]
        .as_array()
        .expect("tenants is a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tenants, expected_tenants, "{what}: tenants");
}

#[tokio::test]
async fn the_log_written_by_the_release_build_replays_to_the_recorded_state() {
    // Goal: every log entry up to the recorded applied index decodes, and
    // applying them from an empty state gives the release build's state.
    let expected = expected();
    let applied_index = expected_u64(&expected, "applied_index");
    let (_dir, backend) = unpack();
    let mut log = LogStore::new(backend);
    let entries = log
        .try_get_log_entries(1..=applied_index)
        .await
        .expect("every entry decodes");
    assert_eq!(
        entries.len() as u64,
        applied_index,
        "the log holds every entry from 1"
    );
    let mut state = ClusterState::default();
    let mut requests = 0;
    for entry in &entries {
        if let EntryPayload::Normal(payload) = &entry.payload {
            for (position, request) in payload.requests.iter().enumerate() {
                state.apply(entry.log_id.index, position as u32, request);
                requests += 1;
            }
        }
    }
    assert!(requests >= 20, "the fixture has a real history");
    assert_eq!(state.check_invariants(), Ok(()));
    check_state("log replay", &state, &expected);
}

#[tokio::test]
async fn the_snapshot_and_the_log_after_it_give_the_recorded_state() {
    // Goal: the state machine opens the release build's snapshot, applies
    // the log after it as openraft would at start-up, and ends at the
    // recorded index and state.
    let expected = expected();
    let applied_index = expected_u64(&expected, "applied_index");
    let snapshot_index = expected["snapshot_index"]
        .as_u64()
        .expect("the fixture has a snapshot");
    let (_dir, backend) = unpack();
    let mut state_machine = StateMachineStore::open(backend.clone()).expect("open the snapshot");
    let (loaded, _) = state_machine.applied_state().await.expect("applied state");
    let loaded = loaded.map(|id| id.index).unwrap_or(0);
    assert!(
        loaded >= snapshot_index && loaded < applied_index,
        "snapshot at {loaded}, recorded snapshot {snapshot_index}, applied {applied_index}"
    );
    let mut log = LogStore::new(backend);
    let rest = log
        .try_get_log_entries(loaded + 1..=applied_index)
        .await
        .expect("entries after the snapshot decode");
    state_machine.apply(rest).await.expect("apply");
    let shared = state_machine.shared();
    let projection = shared.read();
    assert_eq!(projection.applied_index(), applied_index);
    check_state("snapshot + log", &projection.state, &expected);
}

#[test]
fn the_audit_archive_written_by_the_release_build_verifies_and_replays() {
    // Goal: the archive decodes, its chain verifies as the release build's
    // `audit verify` said, and replaying it rebuilds the recorded state.
    let expected = expected();
    let (_dir, backend) = unpack();
    let records = read_archive(&backend).expect("every audit record decodes");
    assert_eq!(audit::verify(&records), Ok(()));
    let last = records.last().expect("records");
    assert_eq!(
        format!("ok: {} records, chain head {}", records.len(), last.chain),
        expected_str(&expected, "audit_verify").trim(),
        "the same records and chain head as the release build's `audit verify`"
    );
    let replayed = audit::replay(&records, last.sequence).expect("the archive starts at 1");
    assert_eq!(replayed.audit_count, last.sequence);
    assert_eq!(
        replayed.audit_head, last.chain,
        "the chain ends at the head"
    );
    check_state("audit replay", &replayed, &expected);
}

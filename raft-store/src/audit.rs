//! The audit archive: every applied request, with its outcome, in order,
//! each chained by hash to the one before.
//!
//! The chain head is part of the replicated state ([`ClusterState`]'s
//! `audit_head`), so every replica vouches for the same history; the archive
//! itself is each node's own, kept in its data dir after the Raft log is
//! purged. [`verify`] recomputes the chain and names the first record that
//! does not fit: a changed, dropped or reordered record breaks it there.

use serde::{Deserialize, Serialize};

use crate::entry::ClusterRequest;
pub use crate::state::chain;
use crate::state::{AppliedRequest, ClusterState};

/// One archived request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    pub request: ClusterRequest,
    pub applied: AppliedRequest,
    /// Position in the chain (1 for the cluster's first request).
    pub sequence: u64,
    /// Chain head after this record.
    pub chain: String,
}

/// The archive key of a record: its chain sequence, big-endian.
pub fn record_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Sequence of the first record that does not fit (or is missing).
    pub sequence: u64,
    /// Log index of that record (or of the one after the gap).
    pub index: u64,
    pub reason: String,
}

/// Checks the records (in archive order) against their chain hashes and
/// sequence numbers. The first record's predecessor is taken on trust when
/// the archive does not start at the cluster's first request (a node brought
/// up by a snapshot).
pub fn verify(records: &[ArchiveRecord]) -> Result<(), ChainBreak> {
    let mut previous: Option<&ArchiveRecord> = None;
    for record in records {
        if let Some(before) = previous {
            if record.sequence != before.sequence + 1 {
                return Err(ChainBreak {
                    sequence: before.sequence + 1,
                    index: record.applied.index,
                    reason: format!(
                        "record {} follows record {}: {} missing or out of order",
                        record.sequence,
                        before.sequence,
                        before.sequence + 1
                    ),
                });
            }
            let expected = chain(&before.chain, &record.request, &record.applied);
            if expected != record.chain {
                return Err(ChainBreak {
                    sequence: record.sequence,
                    index: record.applied.index,
                    reason: "the record does not hash to its chain value (changed, or reordered)"
                        .into(),
                });
            }
        } else if record.sequence == 1 {
            let expected = chain("", &record.request, &record.applied);
            if expected != record.chain {
                return Err(ChainBreak {
                    sequence: 1,
                    index: record.applied.index,
                    reason: "the first record does not hash to its chain value".into(),
                });
            }
        }
        previous = Some(record);
    }
    Ok(())
}

/// Rebuilds the state by replaying records from the cluster's first request
/// up to and including `until_sequence`. `None` if the records do not start
/// at the beginning.
pub fn replay(records: &[ArchiveRecord], until_sequence: u64) -> Option<ClusterState> {
    if records.first().is_some_and(|r| r.sequence != 1) {
        return None;
    }
    let mut state = ClusterState::default();
    for record in records.iter().take_while(|r| r.sequence <= until_sequence) {
        state.apply(
            record.applied.index,
            record.applied.position,
            &record.request,
        );
    }
    Some(state)
}

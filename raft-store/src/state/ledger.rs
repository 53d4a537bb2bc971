//! The projection's memory of requests: the [`RequestLedger`] of recent
//! request ids and their outcomes (idempotency), the operator's notes, and
//! the audit hash [`chain`] every applied request extends.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::outcome::{AppliedRequest, Effect, Rejection};
use super::ClusterState;
use crate::entry::{ClusterRequest, RequestMeta, MAX_NOTE_BYTES};

/// How many request ids the projection remembers for idempotency. A client
/// retrying a request older than this many requests gets it applied again,
/// so the window is far longer than any retry loop (which lasts seconds).
pub const MAX_REMEMBERED_REQUESTS: usize = 65_536;

/// How many operator notes the projection keeps for display (the log and,
/// later, the audit archive keep all of them).
pub const MAX_RETAINED_NOTES: usize = 64;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NoteRecord {
    pub index: u64,
    pub timestamp_ms: u64,
    pub actor: String,
    pub text: String,
}

/// Recently applied request ids with their outcome, bounded by
/// [`MAX_REMEMBERED_REQUESTS`] (oldest forgotten first).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLedger {
    by_id: BTreeMap<String, AppliedRequest>,
    order: VecDeque<String>,
}

impl RequestLedger {
    pub fn get(&self, request_id: &str) -> Option<&AppliedRequest> {
        self.by_id.get(request_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Records `applied` under `request_id`; returns the id forgotten to
    /// make room, if any.
    pub(crate) fn record(&mut self, request_id: &str, applied: AppliedRequest) -> Option<String> {
        if self.by_id.insert(request_id.to_owned(), applied).is_none() {
            self.order.push_back(request_id.to_owned());
        }
        let mut forgotten = None;
        while self.order.len() > MAX_REMEMBERED_REQUESTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
                forgotten = Some(oldest);
            }
        }
        assert_eq!(
            self.order.len(),
            self.by_id.len(),
            "request ledger out of step"
        );
        forgotten
    }
}

/// The chain head after `request` with outcome `applied`, from `previous`.
pub fn chain(previous: &str, request: &ClusterRequest, applied: &AppliedRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(bincode::serialize(request).expect("requests are always serialisable"));
    hasher.update(bincode::serialize(applied).expect("outcomes are always serialisable"));
    hex::encode(hasher.finalize())
}

impl ClusterState {
    pub(crate) fn record_note(
        &mut self,
        index: u64,
        meta: &RequestMeta,
        text: &str,
    ) -> Result<Effect, Rejection> {
        check_note(text)?;
        self.notes_total += 1;
        self.recent_notes.push_back(NoteRecord {
            index,
            timestamp_ms: meta.timestamp_ms,
            actor: meta.actor.clone(),
            text: text.to_string(),
        });
        while self.recent_notes.len() > MAX_RETAINED_NOTES {
            self.recent_notes.pop_front();
        }
        Ok(Effect::NoteRecorded {
            number: self.notes_total,
        })
    }
}

/// The bounds of a note's text.
pub(crate) fn check_note(text: &str) -> Result<(), Rejection> {
    if text.is_empty() || text.len() > MAX_NOTE_BYTES {
        return Err(Rejection::InvalidArgument {
            reason: format!(
                "a note must be 1 to {MAX_NOTE_BYTES} bytes, got {}",
                text.len()
            ),
        });
    }
    Ok(())
}

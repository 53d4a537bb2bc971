//! The entry model: what a log entry says.
//!
//! A log entry is a *request*: what a client asked for, with who asked, a
//! request id for idempotency, and a timestamp taken once by the proposer.
//! Outcomes are never stored in the entry; they are derived by
//! [`crate::state::ClusterState::apply`], so that replaying the log on any
//! machine yields the same outcome for every entry, rejections included.
//!
//! Adding a request is one change: add a variant at the *end* of [`Command`]
//! (bincode encodes the variant by position, so existing variants must never
//! be reordered or removed) and handle it in `ClusterState::apply`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The entry format this build writes and understands. An entry with a newer
/// format is rejected by `apply` (deterministically, on every replica) rather
/// than misread.
pub const ENTRY_FORMAT_VERSION: u16 = 1;

/// Longest accepted request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Longest accepted actor description, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;

/// Longest accepted operator note, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

/// Most requests one log entry may carry.
pub const MAX_REQUESTS_PER_ENTRY: usize = 256;

/// What one Raft log entry carries: one or more requests, applied in order.
///
/// Requests that arrive at the leader together share an entry (and so one
/// append, one flush and one replication round); each keeps its own
/// metadata and gets its own outcome. A request is located by the log index
/// of its entry and its position in it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogPayload {
    pub requests: Vec<ClusterRequest>,
}

/// One request in the replicated log, with its metadata.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClusterRequest {
    /// Format of this entry; see [`ENTRY_FORMAT_VERSION`].
    pub format_version: u16,
    pub meta: RequestMeta,
    pub command: Command,
}

/// Who asked, when, and under which idempotency key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// Who made the request: `node:NAME` for a node acting on its own,
    /// `client:IDENTITY@NODE` for a client request received by NODE.
    pub actor: String,
    /// Idempotency key: the same request id applied twice has one effect, and
    /// the second application returns the first one's outcome.
    pub request_id: String,
    /// Milliseconds since the Unix epoch, taken once by the node that proposed
    /// the entry. `apply` never reads a clock; it uses this.
    pub timestamp_ms: u64,
}

/// What a request asks for. Append new variants at the end only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The first entry of a cluster's history: its name and the number of
    /// voters the cluster keeps.
    InitCluster {
        cluster_name: String,
        voters_target: u8,
    },
    /// A node joined (or re-announced itself with a new address).
    RegisterNode {
        node_id: NodeId,
        name: String,
        address: String,
    },
    /// A node was removed from the cluster by an operator.
    RemoveNode { name: String },
    /// An operator's note in the network's history ("draining host3 for
    /// maintenance"), kept for audit.
    Note { text: String },
}

impl ClusterRequest {
    pub fn new(meta: RequestMeta, command: Command) -> Self {
        Self {
            format_version: ENTRY_FORMAT_VERSION,
            meta,
            command,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::InitCluster {
                cluster_name,
                voters_target,
            } => write!(f, "init-cluster {cluster_name} voters={voters_target}"),
            Command::RegisterNode {
                node_id,
                name,
                address,
            } => write!(f, "register-node {name} id={node_id} address={address}"),
            Command::RemoveNode { name } => write!(f, "remove-node {name}"),
            Command::Note { text } => write!(f, "note {text:?}"),
        }
    }
}

/// A node as Raft's membership knows it: the name operators use and the
/// address peers dial.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `HOST:PORT` that peers use to reach this node's TCP listener.
    pub address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

/// Is `name` usable as a node name: a DNS-1123 subdomain (lowercase letters,
/// digits, '-' and '.', starting and ending alphanumeric, at most 253 bytes)?
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "node name must be 1 to 253 characters, got {}",
            name.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().is_some_and(alnum);
    let last = name.chars().last().is_some_and(alnum);
    if !name.chars().all(ok_char) || !first || !last {
        return Err(format!(
            "node name {name:?} is not a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_dns_1123() {
        assert!(validate_node_name("host-1.example").is_ok());
        assert!(validate_node_name("a").is_ok());
        for bad in ["", "Host", "-a", "a-", "a_b", "a b", &"x".repeat(254)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn payload_round_trips_through_bincode() {
        let request = ClusterRequest::new(
            RequestMeta {
                actor: "client:test@a".into(),
                request_id: "r1".into(),
                timestamp_ms: 42,
            },
            Command::Note { text: "hi".into() },
        );
        let payload = LogPayload {
            requests: vec![request.clone(), request],
        };
        let bytes = bincode::serialize(&payload).expect("serialize");
        let back: LogPayload = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, payload);
    }
}

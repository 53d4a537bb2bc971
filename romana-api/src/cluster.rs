//! Status, members, notes, joins and the answer to every write.

use serde::{Deserialize, Serialize};

/// A Raft node id (below 2^53, so JSON clients in any language read it
/// exactly).
pub type NodeId = u64;

/// What a write returns. `O` is the entry's outcome
/// (`raft_store::state::Outcome` on the server).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WriteResult<O = serde_json::Value> {
    pub index: u64,
    pub request_id: String,
    pub outcome: O,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub id: NodeId,
    pub address: String,
    /// voter or learner
    pub role: String,
}

/// `GET /v1/status`: this node's view of the cluster.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StatusView {
    pub name: String,
    pub id: NodeId,
    /// leader, follower, learner or candidate
    pub role: String,
    /// Name of the current leader, if one is known.
    pub leader: Option<String>,
    pub term: u64,
    pub applied_index: u64,
    /// Content hash of the projection at `applied_index`.
    pub state_hash: String,
    pub last_log_index: u64,
    /// Index of the last snapshot, if any.
    pub snapshot_index: Option<u64>,
    /// Highest index purged from the log, if any.
    pub purged_index: Option<u64>,
    pub cluster: Option<String>,
    pub voters_target: Option<u8>,
    pub members: Vec<MemberView>,
}

/// `GET /v1/ready`: what the CNI STATUS verb asks, answered from Raft's
/// metrics and one map lookup (no member list, no state hash).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ReadyView {
    /// This node's name.
    pub name: String,
    /// Name of the current leader, if one is known.
    pub leader: Option<String>,
    /// Whether this node has a host record (it can be given addresses).
    pub registered_host: bool,
    /// Whether this host's isolation rules are in place (ADDs are refused
    /// until they are). Absent from older nodes: taken as true.
    #[serde(default = "ready_by_default")]
    pub isolation_ready: bool,
}

fn ready_by_default() -> bool {
    true
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub id: NodeId,
    pub address: String,
    /// voter, learner, or removed (recorded but no longer a Raft member)
    pub role: String,
    pub registered_at_ms: u64,
}

/// Body of `POST /v1/notes`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NoteBody {
    pub text: String,
    /// Idempotency key; generated when absent.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Query of `DELETE /v1/nodes/{name}`.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct RemoveQuery {
    /// Release the host's addresses instead of refusing.
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /v1/join-tokens`.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinTokenBody {
    /// Lifetime in milliseconds.
    pub ttl_ms: u64,
}

/// Answer of `POST /v1/join-tokens`: what a joining node is given.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinTokenView {
    /// `ID.SECRET`; shown once, only its digest is recorded.
    pub token: String,
    pub expires_at_ms: u64,
    /// `sha256:HEX` of the CA's public key.
    pub ca_cert_hash: String,
}

/// Body of `POST /v1/join-tokens/redeem`.
#[derive(Serialize, Deserialize)]
pub struct RedeemBody {
    pub token: String,
    /// The name the joiner will join under.
    pub name: String,
}

impl std::fmt::Debug for RedeemBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RedeemBody {{ name: {:?}, token: <redacted> }}",
            self.name
        )
    }
}

/// Answer of a redeemed token: the cluster CA's key (and so the means to
/// issue the joiner's own certificate).
#[derive(Serialize, Deserialize)]
pub struct RedeemView {
    pub ca_key_pem: String,
}

/// Body of `POST /v1/cluster/join`.
#[derive(Serialize, Deserialize, Debug)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub name: String,
    pub address: String,
}

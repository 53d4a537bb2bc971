//! The Raft type configuration: which entry, response, node and runtime
//! types openraft runs with. Everything that names `TypeConfig` or `Raft`
//! imports it from here.

use std::io::Cursor;

use crate::entry::{LogPayload, NodeId, NodeInfo};
use crate::runtime::RomanaRuntime;
use crate::state::Response;

openraft::declare_raft_types!(
    /// The Raft type configuration of a Romana cluster.
    pub TypeConfig:
        D = LogPayload,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = RomanaRuntime,
);

/// A Romana Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

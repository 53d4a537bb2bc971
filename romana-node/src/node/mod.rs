//! A node: its Raft replica over the store in its data dir, the write
//! path, and the membership controller.
//!
//! - this file: [`Node`] (what the API handlers and background tasks
//!   share), start-up ([`open`], then [`start_up`]: resume a log, join
//!   through `--join`, or initialise a new cluster), the data dir, the node
//!   id, the node's TLS credentials (from the cluster secret, the CA in its
//!   data dir, or a join token), audit retention.
//! - [`write`]: [`Node::propose`] → leader (here via [`batcher`], or
//!   forwarded) → committed → applied here (read-your-writes).
//! - [`batcher`]: gathers requests that reach the leader together into one
//!   log entry.
//! - [`membership`]: admitting and removing members, and the controller
//!   that promotes caught-up learners.

pub mod batcher;
pub mod join;
pub mod membership;
pub mod observe;
pub mod write;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{ServerState, SnapshotPolicy};
use raft_store::store::{
    open_stores_group_commit, KvBackend, SharedState, SledBackend, Tree, WriteOp,
};
use raft_store::transport::{ClusterSecret, PeerNetwork};
use raft_store::{NodeId, NodeInfo, Raft};
use romana_api::cluster::JoinRequest;
use romana_api::paths::PATH_JOIN;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;

use crate::config::{generated_secret_path, NodeConfig};
use crate::error::{Context, Error};
use crate::http_client::{ApiClient, CallError, Endpoint};
use crate::tls::{self, ClusterCa, Credentials, Identity, Revocations, TlsConnector};

use batcher::Batcher;

/// Key of this node's identity (its Raft node id) in the store's meta tree.
const KEY_NODE_ID: &[u8] = b"node_id";

/// Join attempts (one per second) before giving up.
const MAX_JOIN_ATTEMPTS: u32 = 60;

/// Largest snapshot chunk sent in one RPC.
const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Everything the API handlers and background tasks share.
#[derive(Clone)]
pub struct Node {
    pub inner: Arc<NodeInner>,
}

pub struct NodeInner {
    pub config: NodeConfig,
    pub node_id: NodeId,
    pub raft: Raft,
    /// The projection, read by the API.
    pub shared: SharedState,
    /// This node's certificate and the TLS configurations built on it.
    pub tls: NodeTls,
    /// What `GET /metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What `GET /v1/events` serves (and the `romana::event` log lines).
    pub events: Arc<crate::events::EventBus>,
    /// Pooled client for calls to other members (forwarded writes).
    pub peers: ApiClient,
    /// Gathers requests into log entries while this node leads.
    pub batcher: Batcher,
    /// The node's database (for the audit archive).
    pub backend: SledBackend,
    /// Whether this host's isolation rules are in place (always, when the
    /// firewall is off). Addresses for this host are refused until then, so
    /// no pod ever starts unprotected.
    /// Shared with the dataplane, which sets it.
    pub firewall_ready: Arc<AtomicBool>,
    /// Deletes the pod veths this host's CNI DELs retired, in batches.
    pub link_reaper: crate::dataplane::reaper::LinkReaper,
    /// `(applied index, content hash)` of the projection last hashed for
    /// `status`: hashing walks the whole state, so it is done once per
    /// applied index, off the async workers.
    pub state_hash: std::sync::Mutex<Option<(u64, String)>>,
}

/// A node's TLS: the CA (every member holds it), its own certificate, the
/// configurations of its listener and of its clients.
pub struct NodeTls {
    pub ca: ClusterCa,
    pub credentials: Credentials,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.inner
    }
}

pub use crate::history::now_ms;

/// `bytes` random bytes from the OS, hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // getrandom only fails if the OS has no entropy source at all.
    getrandom::getrandom(&mut buffer).expect("the OS random source is available");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random 128-bit request id, hex.
pub fn new_request_id() -> String {
    random_hex(16)
}

/// A new cluster secret: 256 random bits, hex.
pub fn new_cluster_secret() -> String {
    random_hex(32)
}

/// Writes a cluster secret where this node reads it at start
/// (DATA_DIR/cluster-secret): mode 0600, atomically.
pub fn write_generated_secret(data_dir: &Path, text: &str) -> Result<(), Error> {
    let generated = generated_secret_path(data_dir);
    let temporary = generated.with_extension("tmp");
    std::fs::write(&temporary, format!("{text}\n"))
        .context(format!("cannot write {}", temporary.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .context(format!("cannot set mode of {}", temporary.display()))?;
    std::fs::rename(&temporary, &generated)
        .context(format!("cannot write {}", generated.display()))?;
    Ok(())
}

/// The file this node's cluster secret is read from.
pub fn cluster_secret_path(config: &NodeConfig) -> std::path::PathBuf {
    config
        .cluster_secret_file
        .clone()
        .unwrap_or_else(|| generated_secret_path(&config.data_dir))
}

fn new_node_id() -> NodeId {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random source is available");
    // Below 2^53 so that JSON clients in any language read it exactly; never 0.
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

impl Node {
    /// Whether the replicated state revoked `identity`'s certificate.
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        is_revoked(&self.shared, identity)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The address of a member, from Raft's membership.
    pub fn member_address(&self, node_id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&node_id)
            .map(|node| node.address.clone())
    }
}

/// How this start relates to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// The store holds a log: carry on from it; never initialise again.
    Resume,
    /// Empty store, `--join` given (or, in Kubernetes, another node holds
    /// the bootstrap lock).
    Join,
    /// Empty store, no `--join` (or, in Kubernetes, this node won the
    /// bootstrap lock): a new single-node cluster.
    Initialise,
}

/// What a node with an empty store does, when something other than
/// `--join` decides it (in Kubernetes, the bootstrap lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmptyStore {
    /// Create the cluster.
    Initialise,
    /// Join through these members (`IP:PORT`).
    Join(Vec<String>),
}

/// Decides [`EmptyStore`] from the node's configuration and its (already
/// persisted) node id.
pub type OnEmptyStore = Box<
    dyn FnOnce(
            NodeConfig,
            NodeId,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<EmptyStore, Error>> + Send>,
        > + Send,
>;

/// Opens the node's store in its data dir and starts its Raft replica (not
/// yet serving, not yet part of a cluster if new): how this start relates to
/// the cluster is decided from what the store holds.
pub async fn open(
    mut config: NodeConfig,
    on_empty_store: Option<OnEmptyStore>,
) -> Result<(Node, StartMode), Error> {
    let store_dir = config.data_dir.join("raft");
    remove_unfinished_snapshots(&store_dir)?;
    let backend = SledBackend::open(&store_dir).map_err(|e| {
        Error::Storage(format!(
            "cannot open the store in {}: {e}",
            store_dir.display()
        ))
    })?;
    let node_id = load_or_create_node_id(&backend)?;
    let archive_backend = backend.clone();
    let (mut log_store, mut state_machine) =
        open_stores_group_commit(backend).map_err(|e| Error::Storage(e.to_string()))?;
    let has_log = log_store
        .get_log_state()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .last_log_id
        .is_some();
    let has_snapshot = state_machine
        .applied_state()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .0
        .is_some();
    let mode = if has_log || has_snapshot {
        StartMode::Resume
    } else if let Some(decide) = on_empty_store {
        // The node id is persisted above: a bootstrap lock may name it.
        match decide(config.clone(), node_id).await? {
            EmptyStore::Initialise => StartMode::Initialise,
            EmptyStore::Join(members) => {
                config.join = members;
                StartMode::Join
            }
        }
    } else if !config.join.is_empty() {
        StartMode::Join
    } else {
        StartMode::Initialise
    };
    let shared = state_machine.shared();
    let tls = load_tls(&config, mode, &shared).await?;

    let raft_config = openraft::Config {
        cluster_name: "romana".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_ms_min,
        election_timeout_max: config.election_timeout_ms_max,
        install_snapshot_timeout: config.election_timeout_ms_max.max(5_000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.purge_keep_logs,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        max_payload_entries: raft_store::entry::MAX_ENTRIES_PER_APPEND,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::Config(format!("raft configuration: {e}")))?;
    let raft_config = Arc::new(raft_config);
    let metrics = Arc::new(crate::metrics::Metrics::new(config.metrics));
    let observer: Arc<dyn raft_store::transport::RpcObserver> = metrics.clone();
    let raft = if config.insecure_plaintext {
        Raft::new(
            node_id,
            raft_config,
            PeerNetwork::new(node_id).with_observer(observer),
            log_store,
            state_machine,
        )
        .await
    } else {
        Raft::new(
            node_id,
            raft_config,
            PeerNetwork::with_connector(node_id, TlsConnector::new(tls.client.clone()), "https")
                .with_observer(observer),
            log_store,
            state_machine,
        )
        .await
    }
    .map_err(|e| Error::Raft(e.to_string()))?;
    let peers = if config.insecure_plaintext {
        ApiClient::plaintext(Endpoint::Tcp(config.advertise.clone()))
    } else {
        ApiClient::new(
            Endpoint::Tcp(config.advertise.clone()),
            Some(tls.client.clone()),
        )
    };

    let batcher = Batcher::start(
        raft.clone(),
        shared.clone(),
        Duration::from_millis(config.write_timeout_ms),
        metrics.clone(),
    );
    let node = Node {
        inner: Arc::new(NodeInner {
            batcher,
            backend: archive_backend,
            firewall_ready: Arc::new(AtomicBool::new(!config.firewall)),
            link_reaper: crate::dataplane::reaper::LinkReaper::start(metrics.clone()),
            state_hash: std::sync::Mutex::new(None),
            peers,
            metrics,
            events: Arc::new(crate::events::EventBus::new(config.name.clone())),
            config,
            node_id,
            raft,
            shared,
            tls,
        }),
    };
    tracing::info!(
        name = %node.config.name,
        id = node_id,
        advertise = %node.config.advertise,
        data_dir = %node.config.data_dir.display(),
        mode = ?mode,
        "starting romana-node"
    );

    Ok((node, mode))
}

/// Joins or initialises the cluster as `mode` says (a resumed node has
/// nothing to do). Runs once the node serves Raft RPCs.
pub async fn start_up(
    node: &Node,
    mode: StartMode,
    stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    match mode {
        StartMode::Resume => Ok(()),
        StartMode::Initialise => initialise(node).await,
        StartMode::Join => join(node, stop).await,
    }
}

pub fn prepare_data_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Config(format!(
            "data dir {} exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).context(format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).context(format!(
        "cannot set permissions of data dir {}",
        dir.display()
    ))?;
    // sled reports an unwritable directory obscurely; probe first.
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"").context(format!("data dir {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Removes the database's unfinished snapshot files (`snap.*.generating`):
/// one left by a crash or a full disk is not a snapshot, and sled would
/// otherwise read it as corruption at every start.
///
/// Only while no process holds the database (sled's lock on its `db` file):
/// a running node's snapshot in progress is left alone.
pub fn remove_unfinished_snapshots(store_dir: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let lock = match std::fs::File::open(store_dir.join("db")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(format!("cannot open {}", store_dir.display())),
    };
    // SAFETY: flock on a descriptor this function owns; released on drop.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        // In use: opening it will report whose lock it is.
        return Ok(());
    }
    let entries = match std::fs::read_dir(store_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(format!("cannot read {}", store_dir.display())),
    };
    for entry in entries {
        let entry = entry.context(format!("cannot read {}", store_dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            std::fs::remove_file(&path).context(format!(
                "cannot remove unfinished snapshot {}",
                path.display()
            ))?;
            tracing::warn!(path = %path.display(), "removed an unfinished database snapshot");
        }
    }
    Ok(())
}

fn load_or_create_node_id(backend: &SledBackend) -> Result<NodeId, Error> {
    let storage = |e: raft_store::store::BackendError| Error::Storage(e.to_string());
    if let Some(bytes) = backend.get(Tree::Meta, KEY_NODE_ID).map_err(storage)? {
        let bytes: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Storage("stored node id is corrupt".into()))?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let node_id = new_node_id();
    backend
        .write(
            Tree::Meta,
            vec![WriteOp::Put(
                KEY_NODE_ID.to_vec(),
                node_id.to_be_bytes().to_vec(),
            )],
            raft_store::store::Durability::Flush,
        )
        .map_err(storage)?;
    Ok(node_id)
}

/// Whether the projection revokes `identity` (only node certificates are
/// revoked, by the node's removal).
fn is_revoked(shared: &SharedState, identity: &Identity) -> bool {
    identity.role == tls::Role::Node
        && shared
            .read()
            .state
            .is_certificate_revoked(&identity.name, identity.issued_at_ms)
}

/// The cluster secret, if this node has one: `--cluster-secret-file`, or
/// the one Kubernetes' bootstrap (or a release before TLS) wrote into the
/// data dir.
pub fn load_secret(config: &NodeConfig) -> Result<Option<ClusterSecret>, Error> {
    if let Some(path) = &config.cluster_secret_file {
        return ClusterSecret::from_file(path)
            .map(Some)
            .map_err(Error::Config);
    }
    let generated = generated_secret_path(&config.data_dir);
    if generated.exists() {
        return ClusterSecret::from_file(&generated)
            .map(Some)
            .map_err(Error::Config);
    }
    Ok(None)
}

/// The cluster's CA as this node holds it: derived from the cluster secret,
/// read from `DATA_DIR/tls`, received by redeeming a join token, or (a new
/// cluster without a secret) generated.
async fn load_ca(config: &NodeConfig, mode: StartMode) -> Result<ClusterCa, Error> {
    if let Some(secret) = load_secret(config)? {
        return ClusterCa::derive(&secret).map_err(Error::Config);
    }
    let dir = tls::tls_dir(&config.data_dir);
    if dir.join("ca.key").exists() {
        return ClusterCa::load(&dir).map_err(Error::Config);
    }
    match (mode, &config.join_token) {
        (StartMode::Initialise, _) => {
            let ca = ClusterCa::generate().map_err(Error::Config)?;
            std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
            ca.save(&dir).map_err(Error::Config)?;
            tracing::info!(
                ca_cert_hash = %ca.hash(),
                "generated the cluster CA; admit nodes with `romanactl token create`"
            );
            Ok(ca)
        }
        (StartMode::Join, Some(token)) => {
            let ca = join::redeem_token(config, token).await?;
            std::fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
            ca.save(&dir).map_err(Error::Config)?;
            Ok(ca)
        }
        _ => Err(Error::Config(
            "no cluster credentials: pass --cluster-secret-file, or --join-token with --ca-cert-hash (`romanactl token create` on a member prints both)".into(),
        )),
    }
}

async fn load_tls(
    config: &NodeConfig,
    mode: StartMode,
    shared: &SharedState,
) -> Result<NodeTls, Error> {
    let ca = load_ca(config, mode).await?;
    let dir = tls::tls_dir(&config.data_dir);
    let credentials = tls::node_credentials(&ca, &dir, &config.name).map_err(Error::Config)?;
    let revocations = {
        let shared = shared.clone();
        Revocations::new(move |identity| is_revoked(&shared, identity))
    };
    let server = credentials
        .server_config(revocations.clone())
        .map_err(Error::Config)?;
    let client = credentials
        .client_config(revocations)
        .map_err(Error::Config)?;
    tracing::info!(ca_cert_hash = %ca.hash(), "TLS credentials ready");
    Ok(NodeTls {
        ca,
        credentials,
        server,
        client,
    })
}

async fn initialise(node: &Node) -> Result<(), Error> {
    let members = BTreeMap::from([(
        node.node_id,
        NodeInfo {
            name: node.config.name.clone(),
            address: node.config.advertise.clone(),
        },
    )]);
    node.raft
        .initialize(members)
        .await
        .map_err(|e| Error::Raft(format!("cannot initialise the cluster: {e}")))?;
    tracing::info!("initialised a new single-node cluster");
    Ok(())
}

async fn join(node: &Node, mut stop: watch::Receiver<bool>) -> Result<(), Error> {
    let request = JoinRequest {
        node_id: node.node_id,
        name: node.config.name.clone(),
        address: node.config.advertise.clone(),
    };
    let mut last_error = String::new();
    for attempt in 1..=MAX_JOIN_ATTEMPTS {
        for member in &node.config.join {
            let client = node.peers.with_endpoint(Endpoint::Tcp(member.clone()));
            match client
                .post::<_, serde_json::Value>(PATH_JOIN, &request)
                .await
            {
                Ok(_) => {
                    tracing::info!(via = %member, "joined the cluster as a learner");
                    return Ok(());
                }
                Err(CallError::Status { status, message })
                    if status.is_client_error()
                        && status != hyper::StatusCode::MISDIRECTED_REQUEST =>
                {
                    return Err(Error::Join(format!("{member} refused: {message}")));
                }
                Err(e) => {
                    last_error = e.to_string();
                    tracing::warn!(via = %member, attempt, error = %last_error, "join attempt failed");
                }
            }
        }
        let pause = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            _ = pause => {}
            _ = stop.wait_for(|stop| *stop) => return Err(Error::Join("stopped while joining".into())),
        }
    }
    Err(Error::Join(format!(
        "no member accepted after {MAX_JOIN_ATTEMPTS} attempts; last error: {last_error}"
    )))
}

/// How often old audit records are pruned.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes audit records older than `--audit-retention-days`, at start and
/// then every [`AUDIT_PRUNE_INTERVAL`].
pub async fn audit_retention(node: Node, mut stop: watch::Receiver<bool>) {
    let keep_ms = node
        .config
        .audit_retention_days
        .saturating_mul(24 * 3600 * 1000);
    loop {
        let backend = node.backend.clone();
        let before = now_ms().saturating_sub(keep_ms);
        match tokio::task::spawn_blocking(move || {
            raft_store::store::prune_archive(&backend, before)
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(pruned)) => tracing::info!(pruned, "pruned old audit records"),
            Ok(Err(e)) => tracing::warn!(error = %e, "audit retention"),
            Err(e) => tracing::warn!(error = %e, "audit retention task"),
        }
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(AUDIT_PRUNE_INTERVAL) => {}
        }
    }
}

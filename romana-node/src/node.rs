//! A running node: its Raft replica, its listeners, the write path and the
//! membership controller.
//!
//! Start-up ([`run`]): bind the listeners (so a port in use fails fast),
//! open the store, decide between resuming (the store holds a log),
//! joining (`--join`) and initialising a new cluster, start Raft and the
//! servers, then run the controller until shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use raft_store::entry::validate_node_address;
use raft_store::entry::validate_node_name;
use raft_store::state::{AppliedRequest, Rejection};
use raft_store::store::{
    open_stores_group_commit, KvBackend, SharedState, SledBackend, Tree, WriteOp,
};
use raft_store::transport::{ClusterSecret, PeerNetwork};
use raft_store::{ClusterRequest, Command, NodeId, NodeInfo, Raft, RequestMeta};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::api::{self, ApiError};
use crate::batcher::Batcher;
use crate::config::{generated_secret_path, NodeConfig};
use crate::error::{Context, Error};
use crate::http_client::{ApiClient, CallError, Endpoint};

/// Key of this node's identity (its Raft node id) in the store's meta tree.
const KEY_NODE_ID: &[u8] = b"node_id";

/// How often the controller looks at the cluster even without a change.
const CONTROLLER_TICK: Duration = Duration::from_millis(300);

/// A learner within this many entries of the leader's log counts as caught
/// up and may be promoted to voter.
const CATCH_UP_SLACK_ENTRIES: u64 = 100;

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
    pub secret: ClusterSecret,
    /// Pooled client for calls to other members (forwarded writes).
    pub peers: ApiClient,
    /// Gathers requests into log entries while this node leads.
    pub batcher: Batcher,
    /// The node's database (for the audit archive).
    pub backend: SledBackend,
    /// Whether this host's isolation rules are in place (always, when the
    /// firewall is off). Addresses for this host are refused until then, so
    /// no pod ever starts unprotected.
    pub firewall_ready: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.inner
    }
}

/// Milliseconds since the Unix epoch: the proposer's timestamp.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random 128-bit request id, hex.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    // getrandom only fails if the OS has no entropy source at all.
    getrandom::getrandom(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_node_id() -> NodeId {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random source is available");
    // Below 2^53 so that JSON clients in any language read it exactly; never 0.
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

impl Node {
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

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    /// Propose a command as `actor`; returns once it is committed and applied
    /// on this node (read-your-writes), or an error by the write deadline.
    pub async fn propose(
        &self,
        command: Command,
        actor: String,
        request_id: Option<String>,
    ) -> Result<AppliedRequest, ApiError> {
        let request = ClusterRequest::new(
            RequestMeta {
                actor,
                request_id: request_id.unwrap_or_else(new_request_id),
                timestamp_ms: now_ms(),
            },
            command,
        );
        let deadline = Instant::now() + self.write_timeout();
        let response = self.submit(request, deadline).await?;
        // Read-your-writes: wait until this replica has applied it too. A
        // lagging learner may not make it by the deadline; the write is
        // committed all the same, so that is not an error.
        let mut applied = self.shared.subscribe();
        let wait = applied.wait_for(|index| *index >= response.index);
        let _ =
            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await;
        Ok(response)
    }

    /// Get `request` committed by whoever leads, until `deadline`.
    pub async fn submit(
        &self,
        request: ClusterRequest,
        deadline: Instant,
    ) -> Result<AppliedRequest, ApiError> {
        let mut metrics = self.raft.metrics();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(no_commit_error(self.write_timeout()));
            }
            let leader = metrics.borrow_and_update().current_leader;
            match leader {
                Some(leader) if leader == self.node_id => {
                    match self.batcher.write(request.clone()).await {
                        Ok(applied) => return Ok(applied),
                        // Leadership moved meanwhile: look again.
                        Err(ApiError::Misdirected(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(leader) => {
                    if let Some(address) = self.member_address(leader) {
                        match self.forward(&address, &request, remaining).await {
                            Ok(response) => return Ok(response),
                            Err(ForwardError::Retry(reason)) => {
                                tracing::debug!(%address, %reason, "forwarded write not taken; retrying");
                            }
                            Err(ForwardError::Fail(error)) => return Err(error),
                        }
                    }
                }
                None => {}
            }
            // Wait for a leadership change, a little, within the deadline.
            let pause = remaining.min(Duration::from_millis(100));
            let _ = tokio::time::timeout(pause, metrics.changed()).await;
        }
    }

    async fn forward(
        &self,
        address: &str,
        request: &ClusterRequest,
        remaining: Duration,
    ) -> Result<AppliedRequest, ForwardError> {
        let body = bincode::serialize(request)
            .map_err(|e| ForwardError::Fail(ApiError::Internal(format!("encode request: {e}"))))?;
        let client = self
            .peers
            .with_endpoint(Endpoint::Tcp(address.to_string()))
            .with_timeout(remaining);
        let (status, bytes) = match client
            .raw(
                hyper::Method::POST,
                api::PATH_INTERNAL_PROPOSE,
                raft_store::transport::BINCODE_CONTENT_TYPE,
                body,
            )
            .await
        {
            Ok(answer) => answer,
            Err(CallError::Timeout { .. }) => {
                return Err(ForwardError::Fail(no_commit_error(self.write_timeout())))
            }
            Err(e) => return Err(ForwardError::Retry(e.to_string())),
        };
        match status {
            hyper::StatusCode::OK => bincode::deserialize(&bytes).map_err(|e| {
                ForwardError::Fail(ApiError::Internal(format!("decode forwarded answer: {e}")))
            }),
            hyper::StatusCode::MISDIRECTED_REQUEST => {
                Err(ForwardError::Retry("not the leader any more".into()))
            }
            status => Err(ForwardError::Fail(ApiError::Unavailable(format!(
                "leader at {address} answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            )))),
        }
    }

    /// Write locally if leader; `Misdirected` otherwise. The end point of a
    /// forwarded write: it never forwards again, so writes cannot ping-pong.
    pub async fn write_as_leader(
        &self,
        request: ClusterRequest,
    ) -> Result<AppliedRequest, ApiError> {
        self.batcher.write(request).await
    }

    /// Add a new node as a learner and record it. Leader only.
    pub async fn admit(
        &self,
        node_id: NodeId,
        name: String,
        address: String,
    ) -> Result<AppliedRequest, ApiError> {
        {
            // Check what `apply` would refuse before Raft's membership is
            // touched: a learner whose registration is then rejected would
            // be a member without a host record.
            let projection = self.shared.read();
            let layout = projection.state.layout().ok_or_else(|| {
                ApiError::Unavailable("the cluster is not initialised yet".into())
            })?;
            validate_node_name(&name).map_err(ApiError::BadRequest)?;
            validate_node_address(layout, &address).map_err(ApiError::BadRequest)?;
            if let Some(record) = projection.state.nodes.get(&name) {
                if record.node_id != node_id {
                    return Err(ApiError::Conflict(format!(
                        "node name {name:?} is already held by node id {}; if that node's data was wiped, remove it first with `romanactl node remove {name}`",
                        record.node_id
                    )));
                }
            }
        }
        let node = NodeInfo {
            name: name.clone(),
            address: address.clone(),
        };
        self.raft
            .add_learner(node_id, node, false)
            .await
            .map_err(|e| match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                    ApiError::Misdirected("not the leader".into())
                }
                e => ApiError::Unavailable(format!("cannot add learner: {e}")),
            })?;
        self.propose(
            Command::RegisterNode {
                node_id,
                name,
                address,
            },
            format!("node:{}", self.config.name),
            Some(format!("register-{node_id}")),
        )
        .await
    }

    /// Remove a node from Raft's membership and from the state. Leader only.
    /// `request_id` is the removal's idempotency key: a fresh one per
    /// operator action, so a removal refused once (addresses still held)
    /// can be tried again (with --force) instead of replaying the refusal.
    pub async fn remove_member(
        &self,
        name: &str,
        force: bool,
        actor: String,
        request_id: String,
    ) -> Result<AppliedRequest, ApiError> {
        // Refuse before touching Raft's membership what `apply` would refuse.
        let held = {
            let projection = self.shared.read();
            projection
                .state
                .allocations
                .values()
                .filter(|a| a.host == name)
                .count()
        };
        if held > 0 && !force {
            return Err(ApiError::from_rejection(&Rejection::HostHasAddresses {
                name: name.to_string(),
                count: held,
            }));
        }
        let (node_id, is_voter, voter_count) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let found = membership
                .nodes()
                .find(|(_, node)| node.name == name)
                .map(|(id, _)| *id);
            let recorded = self.shared.read().state.nodes.get(name).map(|r| r.node_id);
            let Some(node_id) = found.or(recorded) else {
                return Err(ApiError::NotFound(format!("no node named {name:?}")));
            };
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            (node_id, voters.contains(&node_id), voters.len())
        };
        if is_voter && voter_count == 1 {
            return Err(ApiError::Conflict(format!(
                "{name} is the only voter; removing it would leave no cluster"
            )));
        }
        if self.member_address(node_id).is_some() {
            let change = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            self.raft
                .change_membership(change, false)
                .await
                .map_err(|e| match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                        ApiError::Misdirected("not the leader".into())
                    }
                    e => ApiError::Unavailable(format!("membership change failed: {e}")),
                })?;
        }
        self.propose(
            Command::RemoveNode {
                name: name.to_string(),
                force,
            },
            actor,
            Some(request_id),
        )
        .await
    }
}

enum ForwardError {
    /// The leader moved or could not be reached: look again.
    Retry(String),
    Fail(ApiError),
}

pub(crate) fn no_commit_error(timeout: Duration) -> ApiError {
    ApiError::Unavailable(format!(
        "no leader committed the write within {} ms (is a quorum of voters up?); it may still be applied later: retry with the same request id to find out",
        timeout.as_millis()
    ))
}

/// How this start relates to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartMode {
    /// The store holds a log: carry on from it; never initialise again.
    Resume,
    /// Empty store, `--join` given.
    Join,
    /// Empty store, no `--join`: a new single-node cluster.
    Initialise,
}

/// Runs a node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    prepare_data_dir(&config.data_dir)?;
    // Listeners first: a port in use or a socket held by another node fails
    // before anything else is touched.
    let tcp = TcpListener::bind(config.listen)
        .await
        .context(format!("cannot listen on {}", config.listen))?;
    let unix = bind_unix_socket(&config.api_socket).await?;

    let backend = SledBackend::open(&config.data_dir.join("raft"))
        .map_err(|e| Error::Storage(e.to_string()))?;
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
    } else if !config.join.is_empty() {
        StartMode::Join
    } else {
        StartMode::Initialise
    };
    let secret = load_secret(&config, mode)?;
    let shared = state_machine.shared();

    let raft_config = openraft::Config {
        cluster_name: "romana".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_ms_min,
        election_timeout_max: config.election_timeout_ms_max,
        install_snapshot_timeout: config.election_timeout_ms_max.max(5_000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.purge_keep_logs,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::Config(format!("raft configuration: {e}")))?;
    let raft = Raft::new(
        node_id,
        Arc::new(raft_config),
        PeerNetwork::new(node_id, secret.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| Error::Raft(e.to_string()))?;

    let batcher = Batcher::start(raft.clone(), Duration::from_millis(config.write_timeout_ms));
    let node = Node {
        inner: Arc::new(NodeInner {
            batcher,
            backend: archive_backend,
            firewall_ready: std::sync::atomic::AtomicBool::new(!config.firewall),
            peers: ApiClient::new(
                Endpoint::Tcp(config.advertise.clone()),
                Some(secret.clone()),
            ),
            config,
            node_id,
            raft,
            shared,
            secret,
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

    let (stop_tx, stop_rx) = watch::channel(false);
    let tcp_router = api::tcp_router(node.clone());
    let unix_router = api::unix_router(node.clone());
    let tcp_server = tokio::spawn(serve(tcp, tcp_router, stop_rx.clone()));
    let unix_server = tokio::spawn(serve(unix, unix_router, stop_rx.clone()));

    let started = match mode {
        StartMode::Resume => Ok(()),
        StartMode::Initialise => initialise(&node).await,
        StartMode::Join => join(&node, stop_rx.clone()).await,
    };
    let controller = tokio::spawn(controller(node.clone(), stop_rx.clone()));
    let retention = (node.config.audit_retention_days > 0)
        .then(|| tokio::spawn(audit_retention(node.clone(), stop_rx.clone())));
    let reconciler = (node.config.manage_routes || node.config.firewall).then(|| {
        let interval = Duration::from_millis(node.config.reconcile_interval_ms);
        tokio::spawn(crate::reconciler::run(
            node.clone(),
            interval,
            stop_rx.clone(),
        ))
    });

    let result = match started {
        Ok(()) => {
            tokio::spawn(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            });
            let mut stopped = stop_rx.clone();
            let _ = stopped.wait_for(|stop| *stop).await;
            Ok(())
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            Err(e)
        }
    };
    tracing::info!("shutting down");
    let _ = controller.await;
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    let _ = tcp_server.await;
    let _ = unix_server.await;
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    let _ = std::fs::remove_file(&node.config.api_socket);
    result
}

async fn serve<L>(listener: L, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let graceful = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(graceful)
        .await
    {
        tracing::error!(error = %e, "server stopped");
    }
}

fn prepare_data_dir(dir: &Path) -> Result<(), Error> {
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

async fn bind_unix_socket(path: &Path) -> Result<UnixListener, Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(format!("cannot create {}", parent.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(Error::Config(format!(
                "another process is serving the API socket {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .context(format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).context(format!("cannot bind API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .context(format!("cannot set mode of {}", path.display()))?;
    Ok(listener)
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

fn load_secret(config: &NodeConfig, mode: StartMode) -> Result<ClusterSecret, Error> {
    if let Some(path) = &config.cluster_secret_file {
        return ClusterSecret::from_file(path).map_err(Error::Config);
    }
    let generated = generated_secret_path(&config.data_dir);
    if generated.exists() {
        return ClusterSecret::from_file(&generated).map_err(Error::Config);
    }
    if mode != StartMode::Initialise {
        return Err(Error::Config(
            "no cluster secret: pass --cluster-secret-file (a copy of DATA_DIR/cluster-secret from the node that created the cluster)".into(),
        ));
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS random source is available");
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = generated.with_extension("tmp");
    std::fs::write(&temporary, format!("{text}\n"))
        .context(format!("cannot write {}", temporary.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .context(format!("cannot set mode of {}", temporary.display()))?;
    std::fs::rename(&temporary, &generated)
        .context(format!("cannot write {}", generated.display()))?;
    tracing::info!(path = %generated.display(), "generated a cluster secret; give a copy to joining nodes with --cluster-secret-file");
    ClusterSecret::new(&text).map_err(Error::Config)
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

/// Body of `POST /v1/cluster/join`.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub name: String,
    pub address: String,
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
                .post::<_, serde_json::Value>(api::PATH_JOIN, &request)
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
async fn audit_retention(node: Node, mut stop: watch::Receiver<bool>) {
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

/// Leader housekeeping, on every node (it acts only while leading):
/// - a cluster without its first entry gets one (after a crash between
///   Raft's initialisation and that entry);
/// - every Raft member has a node record (after a crash between adding a
///   learner and recording it);
/// - caught-up learners are promoted while voters are below the target,
///   keeping the voter count odd.
async fn controller(node: Node, mut stop: watch::Receiver<bool>) {
    let mut metrics_rx = node.raft.metrics();
    let mut layout_checked = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(CONTROLLER_TICK) => {}
            _ = metrics_rx.changed() => {}
        }
        if !layout_checked {
            layout_checked = check_layout_flags(&node);
        }
        if let Err(e) = control_once(&node).await {
            tracing::debug!(error = %e, "controller step");
        }
    }
}

/// Once the cluster's layout is known: warn if this node was given layout
/// flags that differ from it (they only apply when creating a cluster).
/// Returns whether the check could be made.
fn check_layout_flags(node: &Node) -> bool {
    let projection = node.shared.read();
    let Some(layout) = projection.state.layout() else {
        return false;
    };
    if node.config.layout_explicit && *layout != node.config.layout {
        tracing::warn!(
            cluster = %layout,
            flags = %node.config.layout,
            "ignoring this node's --cidr/--*-bits: the cluster's address layout was fixed when it was created and cannot change"
        );
    }
    true
}

fn state_request_unseen(node: &Node, request_id: &str) -> bool {
    node.shared.read().state.requests.get(request_id).is_none()
}

async fn control_once(node: &Node) -> Result<(), ApiError> {
    let metrics = node.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Ok(());
    }
    let applied = metrics.last_applied.map(|id| id.index).unwrap_or(0);
    if metrics.last_log_index.is_some_and(|last| applied < last) {
        // Not caught up with our own log yet: the state may be stale.
        return Ok(());
    }
    let membership = metrics.membership_config.membership().clone();
    let (initialised, voters_target, unrecorded) = {
        let projection = node.shared.read();
        let state = &projection.state;
        // Members without a host record, whose registration has not been
        // tried yet: a rejected one is not proposed again and again.
        let unrecorded: Vec<(NodeId, NodeInfo)> = membership
            .nodes()
            .filter(|(id, _)| state.node_by_id(**id).is_none())
            .filter(|(id, _)| state.requests.get(&format!("register-{id}")).is_none())
            .map(|(id, info)| (*id, info.clone()))
            .collect();
        (
            state.cluster.is_some(),
            state
                .cluster
                .as_ref()
                .map(|c| c.voters_target)
                .unwrap_or(node.config.voters),
            unrecorded,
        )
    };
    let actor = format!("node:{}", node.config.name);
    if !initialised && state_request_unseen(node, "init-cluster") {
        node.propose(
            Command::InitCluster {
                cluster_name: "romana".into(),
                voters_target: node.config.voters,
                layout: node.config.layout,
            },
            actor.clone(),
            Some("init-cluster".into()),
        )
        .await?;
    }
    for (node_id, info) in unrecorded {
        node.propose(
            Command::RegisterNode {
                node_id,
                name: info.name,
                address: info.address,
            },
            actor.clone(),
            Some(format!("register-{node_id}")),
        )
        .await?;
    }
    if membership.get_joint_config().len() > 1 {
        return Ok(());
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let target = usize::from(voters_target);
    if voters.len() >= target {
        return Ok(());
    }
    let last_index = metrics.last_log_index.unwrap_or(0);
    let replication = metrics.replication.clone().unwrap_or_default();
    let caught_up: Vec<NodeId> = membership
        .learner_ids()
        .filter(|id| {
            replication
                .get(id)
                .and_then(|matched| *matched)
                .is_some_and(|matched| matched.index + CATCH_UP_SLACK_ENTRIES >= last_index)
        })
        .collect();
    let mut new_count = (voters.len() + caught_up.len()).min(target);
    if new_count.is_multiple_of(2) && new_count < target {
        // An even voter count tolerates no more failures than one fewer.
        new_count -= 1;
    }
    if new_count <= voters.len() {
        return Ok(());
    }
    let promote: BTreeSet<NodeId> = caught_up
        .into_iter()
        .take(new_count - voters.len())
        .collect();
    tracing::info!(?promote, "promoting caught-up learners to voters");
    node.raft
        .change_membership(ChangeMembers::AddVoterIds(promote), true)
        .await
        .map_err(|e| ApiError::Unavailable(format!("promotion failed: {e}")))?;
    Ok(())
}

//! `romana-node bench`: how many writes a cluster commits per second and how
//! long each one takes, next to what the disk allows.
//!
//! One run makes three measurements, one after the other so that they do not
//! compete for the disk or the CPU:
//!
//! 1. **sled raw insert+flush**: sequential single-entry appends to the
//!    `log` tree, flushed, exactly as [`raft_store::store::LogStore`] appends
//!    one entry. Every commit costs at least one of these on the leader, so
//!    this is the fsync-bound baseline.
//! 2. **1 node** and 3. **3 nodes**: clusters of child processes of this very
//!    executable (`romana-node run`) on loopback, driven over the leader's
//!    TCP API by C concurrent clients, each doing sequential
//!    `POST /v1/notes`. A write counts once the API answers 200, i.e. once it
//!    is committed and applied on the leader.
//!
//! A cluster can beat the raw rate (ratio above 1): openraft appends all the
//! entries that arrived meanwhile in one flushed batch.
//!
//! Everything lives in one temporary work directory, removed at the end.
//! Child processes are killed on every way out (success, error, panic,
//! SIGINT/SIGTERM), because each is owned by a [`NodeProcess`] whose `Drop`
//! kills and reaps it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raft_store::store::{Durability, KvBackend, SledBackend, Tree, WriteOp};
use raft_store::transport::ClusterSecret;
use raft_store::{ClusterRequest, RequestMeta, TypeConfig};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::api::{NoteBody, StatusView, WriteResult, PATH_NOTES, PATH_STATUS};
use crate::ctl::{table, Output};
use crate::error::{Context, Error};
use crate::http_client::{ApiClient, Endpoint};
use crate::node::{new_request_id, now_ms};

/// The note every benchmark write records.
const NOTE_TEXT: &str = "bench";

/// Most clients one measurement may run: each holds a connection and a task.
const MAX_CLIENTS: u64 = 1024;

/// Longest measurement allowed, per setup and client count.
const MAX_DURATION_S: u64 = 3600;

/// How long node 1 may take to start and lead its new cluster.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the other nodes may take to join and be promoted to voters.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between two looks at a node's status while waiting for it.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Deadline of one status call while waiting for a cluster.
const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Deadline of one benchmark write. Longer than the node's own write deadline
/// (5 s by default), so a write the cluster cannot commit is reported by the
/// node rather than cut short here.
const WRITE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed write, so that a dead node does not turn a client
/// into a busy loop that starves the nodes still running on the same CPUs.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Distinct error messages kept per measurement, to show what went wrong.
const MAX_ERROR_SAMPLES: usize = 3;

/// How much of a node's log an error message quotes.
const LOG_TAIL_BYTES: u64 = 2048;

/// Longest unix socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// The target: this many clients on this many nodes must reach this rate
/// with a p99 latency below this.
const TARGET_CLIENTS: usize = 64;
const TARGET_NODES: usize = 3;
const TARGET_COMMITS_PER_S: f64 = 10_000.0;
const TARGET_P99_MS: f64 = 10.0;

/// Flags of `romana-node bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_S))]
    pub duration_s: u64,
    /// Concurrent clients to measure with, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,64",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_CLIENTS)
    )]
    pub clients: Vec<usize>,
    /// Directory to create the (temporary) work directory in; it must be on
    /// the disk to measure [default: the system temp dir].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs the benchmark and prints its report on stdout (progress on stderr).
pub async fn run(args: BenchArgs) -> Result<(), Error> {
    // Returning (rather than dying of the signal) drops the bench future, and
    // with it every child process guard and the work directory.
    let report = tokio::select! {
        report = bench(&args) => report?,
        signal = interrupted() => return Err(Error::Api(format!("interrupted by {signal}"))),
    };
    let text = match args.output {
        Output::Table => report.table(),
        Output::Json => serde_json::to_string_pretty(&report)
            .map(|text| text + "\n")
            .map_err(|e| Error::Api(format!("encode output: {e}")))?,
    };
    print!("{text}");
    Ok(())
}

async fn bench(args: &BenchArgs) -> Result<Report, Error> {
    if args.clients.is_empty() {
        return Err(Error::Config("--clients needs at least one value".into()));
    }
    let duration = Duration::from_secs(args.duration_s);
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    // Declared first, so it is dropped (removed) after every cluster that
    // lives in it has been killed.
    let work = tempfile::Builder::new()
        .prefix("romana-bench-")
        .tempdir_in(&base)
        .context(format!(
            "cannot create a work directory in {}",
            base.display()
        ))?;
    let exe = std::env::current_exe().context("cannot find this executable to run nodes")?;
    let secret_file = work.path().join("cluster-secret");
    let secret = write_secret(&secret_file)?;

    progress(format_args!(
        "sled raw insert+flush for {} s in {}",
        args.duration_s,
        work.path().display()
    ));
    let raw = sled_raw(work.path().join("sled-raw"), duration).await?;
    let raw_row = Row::new(Setup::SledRaw, 1, raw, None);
    let raw_rate = raw_row.per_s;

    let mut rows = vec![raw_row];
    for nodes in [1, TARGET_NODES] {
        let mut cluster = Cluster::start(&exe, work.path(), nodes, &secret_file, &secret).await?;
        for &clients in &args.clients {
            cluster.check_running()?;
            progress(format_args!(
                "{nodes} node(s), {clients} client(s) for {} s",
                args.duration_s
            ));
            let measured = drive(&cluster.writer, clients, duration).await?;
            rows.push(Row::new(
                Setup::Cluster { nodes },
                clients,
                measured,
                Some(raw_rate),
            ));
        }
        // Kill this cluster before the next one starts, so that they never
        // share the CPUs or the disk.
        drop(cluster);
    }

    work.close()
        .context("cannot remove the benchmark's work directory")?;
    Ok(Report::new(args.duration_s, rows))
}

/// Progress goes to stderr so that stdout holds only the report.
fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("romana-node bench: {message}");
}

/// Resolves on SIGINT or SIGTERM with the signal's name; never if the
/// handlers cannot be installed (the bench then just cannot be interrupted
/// cleanly).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// A fresh random cluster secret (64 hex characters), in a file only we can
/// read, as the nodes' `--cluster-secret-file`.
fn write_secret(path: &Path) -> Result<ClusterSecret, Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::Config(format!("cannot generate a cluster secret: {e}")))?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{text}\n").as_bytes()))
        .context(format!("cannot write {}", path.display()))?;
    ClusterSecret::new(&text).map_err(Error::Config)
}

/// What one measurement saw.
#[derive(Default)]
struct Tally {
    /// Latency of every successful operation.
    latencies: Vec<Duration>,
    errors: u64,
    error_samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for message in other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES
                && !self.error_samples.contains(&message)
            {
                self.error_samples.push(message);
            }
        }
    }
}

/// A tally and the wall-clock time it took.
struct Measured {
    tally: Tally,
    elapsed: Duration,
}

/// Sets the flag when dropped: tells a blocking thread we no longer wait for
/// it (error or interrupt), so it stops instead of running out its time.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sequential single-entry log appends into a fresh sled database at `dir`
/// for `duration`. sled's calls block, so this runs on a blocking thread.
async fn sled_raw(dir: PathBuf, duration: Duration) -> Result<Measured, Error> {
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = cancel.0.clone();
    let measured =
        tokio::task::spawn_blocking(move || sled_raw_blocking(&dir, duration, &cancelled))
            .await
            .map_err(|e| Error::Storage(format!("the sled measurement failed: {e}")))??;
    drop(cancel);
    Ok(measured)
}

fn sled_raw_blocking(
    dir: &Path,
    duration: Duration,
    cancelled: &AtomicBool,
) -> Result<Measured, Error> {
    let storage = |e: raft_store::store::BackendError| Error::Storage(e.to_string());
    let backend = SledBackend::open(dir).map_err(storage)?;
    let value = sample_log_entry()?;
    let mut tally = Tally::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut index: u64 = 0;
    while Instant::now() < deadline && !cancelled.load(Ordering::Relaxed) {
        index += 1;
        // The batch is built before the clock starts: only sled is timed.
        let ops = vec![WriteOp::Put(index.to_be_bytes().to_vec(), value.clone())];
        let sent = Instant::now();
        backend
            .write(Tree::Log, ops, Durability::Flush)
            .map_err(storage)?;
        tally.latencies.push(sent.elapsed());
    }
    Ok(Measured {
        tally,
        elapsed: started.elapsed(),
    })
}

/// The bytes a real log entry carrying one benchmark note occupies in the log
/// tree (keys are big-endian indexes, values bincode entries), so that the
/// raw measurement writes what an unbatched commit writes.
fn sample_log_entry() -> Result<Vec<u8>, Error> {
    let request = ClusterRequest::new(
        RequestMeta {
            actor: "client:bench@bench-1".into(),
            request_id: new_request_id(),
            timestamp_ms: now_ms(),
        },
        raft_store::Command::Note {
            text: NOTE_TEXT.into(),
        },
    );
    let entry = openraft::Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(raft_store::LogPayload {
            requests: vec![request],
        }),
    };
    bincode::serialize(&entry).map_err(|e| Error::Storage(format!("encode a log entry: {e}")))
}

/// `clients` tasks, each writing notes one after the other through `writer`
/// until `duration` has passed. The clock stops when the last write in
/// flight has been answered, so every counted write is inside the time.
async fn drive(writer: &ApiClient, clients: usize, duration: Duration) -> Result<Measured, Error> {
    let body = NoteBody {
        text: NOTE_TEXT.into(),
        request_id: None,
    };
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let writer = writer.clone();
        let body = body.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            // Bounded by the deadline; each write by WRITE_CALL_TIMEOUT.
            while Instant::now() < deadline {
                let sent = Instant::now();
                match writer.post::<_, WriteResult>(PATH_NOTES, &body).await {
                    Ok(_) => tally.latencies.push(sent.elapsed()),
                    Err(e) => {
                        tally.error(e.to_string());
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let client_tally =
            joined.map_err(|e| Error::Api(format!("a benchmark client failed: {e}")))?;
        tally.merge(client_tally);
    }
    Ok(Measured {
        tally,
        elapsed: started.elapsed(),
    })
}

/// One `romana-node run` child. Dropping it kills and reaps the process, so
/// no node outlives the benchmark, whichever way the benchmark ends.
struct NodeProcess {
    name: String,
    log: PathBuf,
    child: Child,
}

impl NodeProcess {
    fn spawn(
        exe: &Path,
        dir: &Path,
        name: &str,
        listen: &str,
        join: Option<&str>,
        voters: usize,
        secret_file: &Path,
    ) -> Result<Self, Error> {
        let data_dir = dir.join(name);
        let api_socket = data_dir.join("api.sock");
        if api_socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            return Err(Error::Config(format!(
                "the API socket path {} is longer than {MAX_SOCKET_PATH_BYTES} bytes; pass a shorter --work-dir",
                api_socket.display()
            )));
        }
        let log = dir.join(format!("{name}.log"));
        let stdout = File::create(&log).context(format!("cannot create {}", log.display()))?;
        let stderr = stdout
            .try_clone()
            .context(format!("cannot open {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .arg("run")
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--api-socket")
            .arg(&api_socket)
            .arg("--cluster-secret-file")
            .arg(secret_file)
            .arg("--voters")
            .arg(voters.to_string());
        if let Some(member) = join {
            command.arg("--join").arg(member);
        }
        let child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context(format!("cannot start {} run", exe.display()))?;
        Ok(Self {
            name: name.to_string(),
            log,
            child,
        })
    }

    /// An error if the process has ended, quoting the end of its log.
    fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Api(format!(
                "node {} exited ({status}); end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            ))),
            Err(e) => Err(Error::Api(format!(
                "cannot check on node {}: {e}",
                self.name
            ))),
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SIGKILL: its data is thrown away, so there is nothing to shut down
        // cleanly, and it cannot be ignored. Waiting reaps the zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last [`LOG_TAIL_BYTES`] of a node's log (which is deleted with the
/// work directory, so errors carry it).
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
    };
    match read() {
        Ok(text) if text.is_empty() => "(empty)".into(),
        Ok(text) => text,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A running loopback cluster and a client aimed at its leader.
struct Cluster {
    nodes: Vec<NodeProcess>,
    /// Pooled client for the leader's TCP API, shared by all bench clients.
    writer: ApiClient,
}

impl Cluster {
    /// Starts node 1, waits until it leads, starts the others joining
    /// through it, and waits until all are voters with a leader.
    async fn start(
        exe: &Path,
        work: &Path,
        size: usize,
        secret_file: &Path,
        secret: &ClusterSecret,
    ) -> Result<Self, Error> {
        let dir = work.join(format!("cluster-{size}"));
        std::fs::create_dir(&dir).context(format!("cannot create {}", dir.display()))?;
        let addresses = free_addresses(size)?;
        let first = addresses[0].clone();
        progress(format_args!(
            "starting a {size}-node cluster in {}",
            dir.display()
        ));
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(size),
            writer: ApiClient::new(Endpoint::Tcp(first.clone()), Some(secret.clone())),
        };
        cluster.nodes.push(NodeProcess::spawn(
            exe,
            &dir,
            "bench-1",
            &first,
            None,
            size,
            secret_file,
        )?);
        let watcher = ApiClient::new(Endpoint::Tcp(first.clone()), Some(secret.clone()))
            .with_timeout(STATUS_CALL_TIMEOUT);
        // Joins are only tried once a second; starting them after node 1
        // leads an initialised cluster saves a retry.
        cluster
            .wait_for(
                &watcher,
                FIRST_LEADER_TIMEOUT,
                "node bench-1 to lead",
                |s| s.role == "leader" && s.cluster.is_some(),
            )
            .await?;
        for (i, address) in addresses.iter().enumerate().skip(1) {
            let name = format!("bench-{}", i + 1);
            cluster.nodes.push(NodeProcess::spawn(
                exe,
                &dir,
                &name,
                address,
                Some(&first),
                size,
                secret_file,
            )?);
        }
        let status = cluster
            .wait_for(
                &watcher,
                FORMATION_TIMEOUT,
                &format!("{size} voters and a leader"),
                |s| {
                    s.members.len() == size
                        && s.members.iter().all(|m| m.role == "voter")
                        && s.leader.is_some()
                },
            )
            .await?;
        let leader = status
            .leader
            .as_deref()
            .and_then(|leader| status.members.iter().find(|m| m.name == leader))
            .map(|m| m.address.clone())
            .ok_or_else(|| Error::Api("the leader is not among the members".into()))?;
        cluster.writer = ApiClient::new(Endpoint::Tcp(leader), Some(secret.clone()))
            .with_timeout(WRITE_CALL_TIMEOUT)
            .with_actor("bench");
        // One write before measuring: a broken write path fails here with
        // its own message instead of as a column of errors.
        cluster
            .writer
            .post::<_, WriteResult>(
                PATH_NOTES,
                &NoteBody {
                    text: NOTE_TEXT.into(),
                    request_id: None,
                },
            )
            .await
            .map_err(|e| Error::Api(format!("the first write to the new cluster failed: {e}")))?;
        Ok(cluster)
    }

    fn check_running(&mut self) -> Result<(), Error> {
        self.nodes
            .iter_mut()
            .try_for_each(NodeProcess::check_running)
    }

    /// Polls `watcher`'s status until `done` holds, a node dies, or `timeout`
    /// passes.
    async fn wait_for(
        &mut self,
        watcher: &ApiClient,
        timeout: Duration,
        what: &str,
        done: impl Fn(&StatusView) -> bool,
    ) -> Result<StatusView, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last_seen = match watcher.get::<StatusView>(PATH_STATUS).await {
                Ok(status) if done(&status) => return Ok(status),
                Ok(status) => describe(&status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| format!("--- {} ---\n{}", node.name, log_tail(&node.log)))
                    .collect();
                return Err(Error::Api(format!(
                    "gave up waiting for {what} after {} s; last seen: {last_seen}\n{}",
                    timeout.as_secs(),
                    logs.join("\n")
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// A status in one line, for "last seen" in a timeout error.
fn describe(status: &StatusView) -> String {
    let members: Vec<String> = status
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.role))
        .collect();
    format!(
        "{} is {}, leader {}, members [{}]",
        status.name,
        status.role,
        status.leader.as_deref().unwrap_or("(none)"),
        members.join(", ")
    )
}

/// `count` distinct free loopback addresses. All are bound at once (so the
/// kernel hands out distinct ports) and released for the nodes to take; the
/// small window in which another process could take one is accepted.
fn free_addresses(count: usize) -> Result<Vec<String>, Error> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find a free port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot read a bound port")
}

/// What was measured.
#[derive(Serialize, Debug, Clone, Copy)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Setup {
    SledRaw,
    Cluster { nodes: usize },
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setup::SledRaw => f.write_str("sled raw insert+flush"),
            Setup::Cluster { nodes: 1 } => f.write_str("1 node"),
            Setup::Cluster { nodes } => write!(f, "{nodes} nodes"),
        }
    }
}

/// One line of the report.
#[derive(Serialize, Debug)]
struct Row {
    setup: Setup,
    clients: usize,
    /// Successful operations (commits, or raw appends).
    ops: u64,
    errors: u64,
    elapsed_s: f64,
    /// `ops / elapsed_s`: commits/s, or appends/s for the raw row.
    per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// `per_s` over the raw sled insert+flush rate.
    vs_sled_flush: Option<f64>,
    error_samples: Vec<String>,
}

impl Row {
    /// `raw_rate`: the sled baseline to compare with; `None` for the baseline
    /// itself.
    fn new(setup: Setup, clients: usize, measured: Measured, raw_rate: Option<f64>) -> Self {
        let Measured { mut tally, elapsed } = measured;
        tally.latencies.sort_unstable();
        let ops = tally.latencies.len() as u64;
        let elapsed_s = elapsed.as_secs_f64();
        let per_s = if elapsed_s > 0.0 {
            ops as f64 / elapsed_s
        } else {
            0.0
        };
        let vs_sled_flush = match raw_rate {
            Some(raw) if raw > 0.0 => Some(per_s / raw),
            Some(_) => None,
            None => Some(1.0),
        };
        Row {
            setup,
            clients,
            ops,
            errors: tally.errors,
            elapsed_s,
            per_s,
            p50_ms: percentile_ms(&tally.latencies, 0.50),
            p99_ms: percentile_ms(&tally.latencies, 0.99),
            vs_sled_flush,
            error_samples: tally.error_samples,
        }
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[index].as_secs_f64() * 1000.0)
}

/// The target and whether the run met it.
#[derive(Serialize, Debug)]
struct Target {
    clients: usize,
    nodes: usize,
    min_commits_per_s: f64,
    max_p99_ms: f64,
    /// `None` when the run did not measure that setup.
    met: Option<bool>,
}

#[derive(Serialize, Debug)]
struct Report {
    duration_s: u64,
    rows: Vec<Row>,
    target: Target,
}

impl Report {
    fn new(duration_s: u64, rows: Vec<Row>) -> Self {
        let met = rows.iter().find(|row| Self::is_target_row(row)).map(|row| {
            row.per_s >= TARGET_COMMITS_PER_S && row.p99_ms.is_some_and(|p99| p99 < TARGET_P99_MS)
        });
        Report {
            duration_s,
            rows,
            target: Target {
                clients: TARGET_CLIENTS,
                nodes: TARGET_NODES,
                min_commits_per_s: TARGET_COMMITS_PER_S,
                max_p99_ms: TARGET_P99_MS,
                met,
            },
        }
    }

    fn is_target_row(row: &Row) -> bool {
        matches!(row.setup, Setup::Cluster { nodes } if nodes == TARGET_NODES)
            && row.clients == TARGET_CLIENTS
    }

    fn table(&self) -> String {
        let ms = |value: Option<f64>| value.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                vec![
                    row.setup.to_string(),
                    row.clients.to_string(),
                    format!("{:.0}", row.per_s),
                    ms(row.p50_ms),
                    ms(row.p99_ms),
                    row.errors.to_string(),
                    row.vs_sled_flush
                        .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
                ]
            })
            .collect();
        let mut text = format!(
            "{} s per measurement; the sled row counts raw appends, the others commits\n\n",
            self.duration_s
        );
        text.push_str(&table(
            &[
                "SETUP",
                "CLIENTS",
                "COMMITS/S",
                "P50 MS",
                "P99 MS",
                "ERRORS",
                "VS SLED FLUSH",
            ],
            &rows,
        ));
        for row in self.rows.iter().filter(|row| !row.error_samples.is_empty()) {
            text.push_str(&format!(
                "\nerrors with {}, {} client(s):\n",
                row.setup, row.clients
            ));
            for sample in &row.error_samples {
                text.push_str(&format!("  {sample}\n"));
            }
        }
        let target = &self.target;
        let verdict = match (
            target.met,
            self.rows.iter().find(|row| Self::is_target_row(row)),
        ) {
            (Some(met), Some(row)) => format!(
                "{} ({:.0} commits/s, p99 {} ms{})",
                if met { "met" } else { "NOT met" },
                row.per_s,
                ms(row.p99_ms),
                if row.errors > 0 {
                    format!(", {} errors", row.errors)
                } else {
                    String::new()
                }
            ),
            _ => format!("not measured (--clients does not include {TARGET_CLIENTS})"),
        };
        text.push_str(&format!(
            "\ntarget: {} clients on {} nodes, >= {:.0} commits/s with p99 < {} ms: {verdict}\n",
            target.clients, target.nodes, target.min_commits_per_s, target.max_p99_ms
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), Some(50.0));
        assert_eq!(percentile_ms(&sorted, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&sorted[..1], 0.99), Some(1.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn the_target_is_judged_on_three_nodes_with_64_clients() {
        let row = |nodes, clients, per_s, p99| Row {
            setup: Setup::Cluster { nodes },
            clients,
            ops: 0,
            errors: 0,
            elapsed_s: 1.0,
            per_s,
            p50_ms: Some(1.0),
            p99_ms: Some(p99),
            vs_sled_flush: None,
            error_samples: Vec::new(),
        };
        let met = Report::new(1, vec![row(1, 64, 1.0, 99.0), row(3, 64, 12_000.0, 9.0)]);
        assert_eq!(met.target.met, Some(true));
        let slow = Report::new(1, vec![row(3, 64, 12_000.0, 11.0)]);
        assert_eq!(slow.target.met, Some(false));
        let absent = Report::new(1, vec![row(3, 16, 12_000.0, 1.0)]);
        assert_eq!(absent.target.met, None);
        assert!(absent.table().contains("not measured"));
    }
}

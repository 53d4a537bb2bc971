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
//! On the 3-node cluster each client count is also measured with IPAM
//! allocations (`POST /v1/ipam/allocations`, what the CNI plugin does) right
//! next to the note writes, alternating which goes first, so that the report
//! can give the IPAM overhead over a raw write for the same cluster and
//! client count. Every allocation is for a fresh container id, spread evenly
//! over the hosts and the bench tenants, so each one is a new committed
//! write; the clusters are created with an address layout whose blocks hold
//! tens of thousands of addresses, and each round stays within its share of
//! them (the report says when a round ran out of its share before its time).
//!
//! Everything lives in one temporary work directory, removed at the end.
//! Child processes are killed on every way out (success, error, panic,
//! SIGINT/SIGTERM), because each is owned by a [`NodeProcess`] whose `Drop`
//! kills and reaps it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::AtomicU64;

use clap::Args;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raft_store::store::{Durability, KvBackend, SledBackend, Tree, WriteOp};
use raft_store::transport::ClusterSecret;
use raft_store::{ClusterRequest, RequestMeta, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinSet;

use romana_api::cluster::{NoteBody, StatusView, WriteResult};
use romana_api::ipam::{AllocateBody, AllocationView, HostView, LayoutView, NameBody};
use romana_api::paths::{
    PATH_ALLOCATIONS, PATH_HOSTS, PATH_LAYOUT, PATH_NOTES, PATH_STATUS, PATH_TENANTS,
};
use romana_node::ctl::{table, Output};
use romana_node::error::{Context, Error};
use romana_node::http_client::{ApiClient, CallError, Endpoint};
use romana_node::node::{new_request_id, now_ms};

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

/// The IPAM target, on the same cluster size and client count: an
/// allocation costs at most this much over a note write (commits/s over
/// allocations/s, less 1), and the allocation rate reaches this.
const TARGET_IPAM_MAX_OVERHEAD: f64 = 0.10;
const TARGET_ALLOCATIONS_PER_S: f64 = 5_000.0;

/// Cluster size on which allocations are measured.
const IPAM_NODES: usize = TARGET_NODES;

/// Address layout of every bench cluster (`romana-node run --cidr ...`):
/// 16 hosts, 4 tenants of 4 segments, 65,533 pod addresses per block, so
/// that the allocation rounds do not fill a block. The widths sum to 32 less
/// the prefix length (checked by a test).
const BENCH_CIDR: &str = "10.0.0.0/8";
const BENCH_HOST_BITS: u8 = 4;
const BENCH_TENANT_BITS: u8 = 2;
const BENCH_SEGMENT_BITS: u8 = 2;
const BENCH_ENDPOINT_BITS: u8 = 16;

/// Tenants created before the allocations are measured; allocations spread
/// over them and the hosts (hosts x tenants blocks, segment `default`).
const BENCH_TENANTS: [&str; 3] = ["b1", "b2", "b3"];

/// Interface name of every benchmark allocation.
const BENCH_IFNAME: &str = "eth0";

/// Container id of the one allocation made before measuring.
const WARMUP_CONTAINER_ID: &str = "bench-warmup";

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
    /// Rounds of the TLS-versus-plaintext comparison (0: skip it).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=20))]
    pub tls_rounds: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Instead of the throughput measurements: the resident memory of one
    /// node holding `--memory-pods` allocations, `--memory-policies`
    /// policies and `--memory-log-entries` log entries.
    #[arg(long)]
    pub memory: bool,
    /// Allocations the memory measurement makes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub memory_pods: u64,
    /// Policies the memory measurement applies.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub memory_policies: u64,
    /// Log entries the memory measurement writes (notes fill up to it).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub memory_log_entries: u64,
}

/// Runs the benchmark and prints its report on stdout (progress on stderr).
pub async fn run(args: BenchArgs) -> Result<(), Error> {
    // Returning (rather than dying of the signal) drops the bench future, and
    // with it every child process guard and the work directory.
    if args.memory {
        let report = tokio::select! {
            report = memory(&args) => report?,
            signal = interrupted() => return Err(Error::Api(format!("interrupted by {signal}"))),
        };
        let text = match args.output {
            Output::Table => report.table(),
            Output::Json => serde_json::to_string_pretty(&report)
                .map(|text| text + "\n")
                .map_err(|e| Error::Api(format!("encode output: {e}")))?,
        };
        print!("{text}");
        return Ok(());
    }
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
        let mut cluster = Cluster::start(
            &exe,
            work.path(),
            nodes,
            &secret_file,
            &secret,
            Transport::Tls,
        )
        .await?;
        let ipam = if nodes == IPAM_NODES {
            Some(cluster.prepare_ipam(args.clients.len()).await?)
        } else {
            None
        };
        for (round, &clients) in args.clients.iter().enumerate() {
            let notes = Workload::Notes;
            let allocations = ipam.as_ref().map(|plan| plan.round(round));
            // Writes and allocations back to back, alternating which goes
            // first so that neither always runs on the fresher cluster.
            let mut order: Vec<&Workload> = [Some(&notes), allocations.as_ref()]
                .into_iter()
                .flatten()
                .collect();
            if round % 2 == 1 {
                order.reverse();
            }
            let mut measured_rows = Vec::with_capacity(order.len());
            for workload in order {
                cluster.check_running()?;
                progress(format_args!(
                    "{nodes} node(s), {clients} client(s), {} for {} s",
                    workload.name(),
                    args.duration_s
                ));
                let measured = drive(&cluster.writer, clients, duration, workload).await?;
                let mut row = Row::new(workload.setup(nodes), clients, measured, Some(raw_rate));
                row.address_share_used_up = workload.used_up();
                measured_rows.push(row);
            }
            // Writes first in the report whichever ran first.
            measured_rows.sort_by_key(|row| matches!(row.setup, Setup::Allocations { .. }));
            rows.extend(measured_rows);
        }
        // Kill this cluster before the next one starts, so that they never
        // share the CPUs or the disk.
        drop(cluster);
    }

    if args.tls_rounds > 0 {
        rows.extend(
            compare_transports(args, &exe, work.path(), &secret_file, &secret, raw_rate).await?,
        );
    }

    work.close()
        .context("cannot remove the benchmark's work directory")?;
    Ok(Report::new(args.duration_s, rows))
}

/// The memory target: a node's resident set with the default sizes.
const TARGET_RSS_MIB: f64 = 64.0;

/// What `--memory` reports: the node's resident set (and its peak) after
/// each stage.
#[derive(Debug, Serialize)]
struct MemoryReport {
    stages: Vec<MemoryStage>,
    pods: u64,
    policies: u64,
    log_entries: u64,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
}

#[derive(Debug, Serialize)]
struct MemoryStage {
    stage: String,
    rss_mib: f64,
    peak_rss_mib: f64,
    took_s: f64,
}

impl MemoryReport {
    fn table(&self) -> String {
        let mut text = format!(
            "romana-node resident memory (VmRSS and VmHWM of /proc/PID/status), one node:\n\n{:<44} {:>9} {:>9} {:>8}\n",
            "STAGE", "RSS MIB", "PEAK MIB", "TOOK S"
        );
        for stage in &self.stages {
            text.push_str(&format!(
                "{:<44} {:>9.1} {:>9.1} {:>8.1}\n",
                stage.stage, stage.rss_mib, stage.peak_rss_mib, stage.took_s
            ));
        }
        text.push_str(&format!(
            "\nlog: {} entries written, snapshot at {}, purged up to {}\n",
            self.log_entries,
            self.snapshot_index.map_or("-".into(), |i| i.to_string()),
            self.purged_index.map_or("-".into(), |i| i.to_string()),
        ));
        if let Some(last) = self.stages.last() {
            text.push_str(&format!(
                "target: RSS <= {TARGET_RSS_MIB} MiB with {} pods, {} policies and {} log entries: {:.1} MiB, {}\n",
                self.pods,
                self.policies,
                self.log_entries,
                last.rss_mib,
                if last.rss_mib <= TARGET_RSS_MIB { "met" } else { "NOT met" }
            ));
        }
        text
    }
}

/// `VmRSS` and `VmHWM` of process `pid`, MiB.
fn resident_mib(pid: u32) -> Result<(f64, f64), Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context(format!("cannot read the status of process {pid}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| Error::Api(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Fills one node with pods, policies and log entries, noting its resident
/// memory after each.
async fn memory(args: &BenchArgs) -> Result<MemoryReport, Error> {
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("romana-bench-memory-")
        .tempdir_in(&base)
        .context(format!(
            "cannot create a work directory in {}",
            base.display()
        ))?;
    let exe = std::env::current_exe().context("cannot find this executable to run nodes")?;
    let secret_file = work.path().join("cluster-secret");
    let secret = write_secret(&secret_file)?;
    let mut cluster =
        Cluster::start(&exe, work.path(), 1, &secret_file, &secret, Transport::Tls).await?;
    let pid = cluster
        .nodes
        .first()
        .and_then(|node| node.process.id())
        .ok_or_else(|| Error::Api("the node has no process id".into()))?;
    let mut stages = Vec::new();
    let mut stage_started = Instant::now();
    let mut note = |stage: String, started: &mut Instant| -> Result<(), Error> {
        let (rss, peak) = resident_mib(pid)?;
        progress(format_args!("{stage}: RSS {rss:.1} MiB (peak {peak:.1})"));
        stages.push(MemoryStage {
            stage,
            rss_mib: rss,
            peak_rss_mib: peak,
            took_s: started.elapsed().as_secs_f64(),
        });
        *started = Instant::now();
        Ok(())
    };
    note("started, one write".into(), &mut stage_started)?;

    let plan = cluster.prepare_ipam(1).await?;
    let pods = args.memory_pods;
    let round = Workload::Allocations(Arc::new(AllocationRound {
        round: 0,
        hosts: plan.hosts.clone(),
        issued: AtomicU64::new(0),
        // The preparation made one allocation already.
        budget: pods.saturating_sub(1),
    }));
    progress(format_args!("{pods} allocations"));
    let made = drive(
        &cluster.writer,
        16,
        Duration::from_secs(MAX_DURATION_S),
        &round,
    )
    .await?;
    if made.tally.errors > 0 {
        return Err(Error::Api(format!(
            "{} allocations failed: {:?}",
            made.tally.errors, made.tally.error_samples
        )));
    }
    note(format!("+ {pods} pods"), &mut stage_started)?;

    let policies = args.memory_policies;
    // At most 50 per apply (the node takes 64 at once); each opens one port
    // of tenant b1 to itself.
    let all: Vec<serde_json::Value> = (1..=policies)
        .map(|i| {
            serde_json::json!({
                "name": format!("mem-{i:05}"),
                "direction": "ingress",
                "applied_to": [{"tenant": BENCH_TENANTS[0]}],
                "peers": [{"tenant": BENCH_TENANTS[0]}],
                "rules": [{"protocol": "tcp", "ports": [20_000 + (i % 40_000)]}],
            })
        })
        .collect();
    for chunk in all.chunks(50) {
        cluster
            .writer
            .post::<_, WriteResult>(
                romana_api::paths::PATH_POLICIES,
                &serde_json::json!({ "securitypolicies": chunk }),
            )
            .await
            .map_err(|e| Error::Api(format!("cannot apply policies: {e}")))?;
    }
    note(format!("+ {policies} policies"), &mut stage_started)?;

    let target = args.memory_log_entries;
    let watcher = cluster.writer.clone().with_timeout(STATUS_CALL_TIMEOUT);
    let mut status: StatusView = watcher
        .get(PATH_STATUS)
        .await
        .map_err(|e| Error::Api(format!("status: {e}")))?;
    progress(format_args!(
        "note writes until the log holds {target} entries"
    ));
    while status.last_log_index < target {
        // Two clients: about one request per entry (the batcher has two
        // entries in flight), so entries, not just requests, add up.
        let measured = drive(&cluster.writer, 2, Duration::from_secs(5), &Workload::Notes).await?;
        if measured.tally.latencies.is_empty() {
            return Err(Error::Api(format!(
                "no note write succeeded: {:?}",
                measured.tally.error_samples
            )));
        }
        cluster.check_running()?;
        status = watcher
            .get(PATH_STATUS)
            .await
            .map_err(|e| Error::Api(format!("status: {e}")))?;
        progress(format_args!("log at {}", status.last_log_index));
    }
    note(
        format!("+ log to {} entries", status.last_log_index),
        &mut stage_started,
    )?;
    drop(cluster);
    work.close()
        .context("cannot remove the benchmark's work directory")?;
    Ok(MemoryReport {
        stages,
        pods,
        policies,
        log_entries: status.last_log_index,
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
    })
}

/// How the bench's nodes run: the default, or what it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Transport {
    /// Mutual TLS and metrics, as always outside these comparisons.
    Tls,
    /// `--insecure-plaintext`: what TLS is compared with.
    Plaintext,
    /// TLS with `--metrics=false`: what metrics are compared with.
    TlsWithoutMetrics,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::Plaintext => "plaintext",
            Transport::TlsWithoutMetrics => "tls-no-metrics",
        }
    }
}

/// What TLS and metrics cost: [`TARGET_CLIENTS`] note writers drive a
/// fresh TLS, plaintext and metrics-off TLS cluster of [`TARGET_NODES`] in
/// turn, for `--tls-rounds` rounds, each round starting with another. Each
/// drive gets a cluster of its own, started for it and stopped after it:
/// one long-lived cluster per configuration made the comparison one of
/// cluster age (rates fell by a quarter from round to round as each
/// cluster's log and ledger grew) and of idle clusters heartbeating beside
/// the measured one.
async fn compare_transports(
    args: &BenchArgs,
    exe: &Path,
    work: &Path,
    secret_file: &Path,
    secret: &ClusterSecret,
    raw_rate: f64,
) -> Result<Vec<Row>, Error> {
    let duration = Duration::from_secs(args.duration_s);
    let mut rows = Vec::new();
    for round in 0..args.tls_rounds {
        // Each round starts with another of the three.
        let mut order = [
            Transport::Tls,
            Transport::Plaintext,
            Transport::TlsWithoutMetrics,
        ];
        order.rotate_left(round % 3);
        for transport in order {
            let cluster =
                Cluster::start(exe, work, TARGET_NODES, secret_file, secret, transport).await?;
            progress(format_args!(
                "{TARGET_NODES} nodes over {}, round {} of {}, {TARGET_CLIENTS} clients for {} s",
                transport.name(),
                round + 1,
                args.tls_rounds,
                args.duration_s
            ));
            let measured =
                drive(&cluster.writer, TARGET_CLIENTS, duration, &Workload::Notes).await?;
            rows.push(Row::new(
                Setup::Transport {
                    nodes: TARGET_NODES,
                    transport,
                    round: round + 1,
                },
                TARGET_CLIENTS,
                measured,
                Some(raw_rate),
            ));
            drop(cluster);
        }
    }
    Ok(rows)
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

/// What the clients of one measurement do.
#[derive(Clone)]
enum Workload {
    /// `POST /v1/notes`, the raw write.
    Notes,
    /// `POST /v1/ipam/allocations` for fresh container ids.
    Allocations(Arc<AllocationRound>),
}

/// One request, built before its clock starts.
enum Op {
    Note(NoteBody),
    Allocate(AllocateBody),
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Notes => "note writes",
            Workload::Allocations(_) => "IPAM allocations",
        }
    }

    fn setup(&self, nodes: usize) -> Setup {
        match self {
            Workload::Notes => Setup::Cluster { nodes },
            Workload::Allocations(_) => Setup::Allocations { nodes },
        }
    }

    /// The `n`th request of client `client`; `None` once the round's share
    /// of addresses is handed out.
    fn next(&self, client: usize, n: u64) -> Option<Op> {
        match self {
            Workload::Notes => Some(Op::Note(NoteBody {
                text: NOTE_TEXT.into(),
                request_id: None,
            })),
            Workload::Allocations(round) => round.next(client, n).map(Op::Allocate),
        }
    }

    /// Whether the clients stopped because the address share ran out.
    fn used_up(&self) -> bool {
        match self {
            Workload::Notes => false,
            Workload::Allocations(round) => round.used_up(),
        }
    }
}

/// What allocations may use: the cluster's hosts and the bench tenants, and
/// how many addresses each client-count round may take.
struct IpamPlan {
    hosts: Arc<[String]>,
    /// Allocations one round may make: its equal share of every block, less
    /// the warm-up address, times the number of blocks.
    per_round: u64,
}

impl IpamPlan {
    fn round(&self, round: usize) -> Workload {
        Workload::Allocations(Arc::new(AllocationRound {
            round,
            hosts: self.hosts.clone(),
            issued: AtomicU64::new(0),
            budget: self.per_round,
        }))
    }
}

/// The allocations of one client count.
struct AllocationRound {
    /// Index of the client count, part of every container id, so that no id
    /// repeats across rounds.
    round: usize,
    hosts: Arc<[String]>,
    /// Allocations handed to clients so far (may pass `budget` by the
    /// attempts refused).
    issued: AtomicU64,
    budget: u64,
}

impl AllocationRound {
    /// The next allocation: the k-th of the round goes to block k modulo
    /// hosts x tenants, so every block gets the same share; the container id
    /// `c{round}-{client}-{n}` is new, so each is a new address and a write.
    fn next(&self, client: usize, n: u64) -> Option<AllocateBody> {
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        if k >= self.budget || self.hosts.is_empty() {
            return None;
        }
        let blocks = (self.hosts.len() * BENCH_TENANTS.len()) as u64;
        let block = (k % blocks) as usize;
        Some(AllocateBody {
            host: Some(self.hosts[block % self.hosts.len()].clone()),
            tenant: Some(BENCH_TENANTS[block / self.hosts.len()].to_string()),
            segment: None,
            container_id: format!("c{}-{client}-{n}", self.round),
            ifname: BENCH_IFNAME.into(),
            pod_namespace: None,
            pod_name: None,
            network: None,
            request_id: None,
        })
    }

    fn used_up(&self) -> bool {
        self.issued.load(Ordering::Relaxed) >= self.budget
    }
}

/// `clients` tasks, each doing `workload`'s requests one after the other
/// through `writer` until `duration` has passed (or an allocation round's
/// addresses run out). The clock stops when the last request in flight has
/// been answered, so every counted request is inside the time.
async fn drive(
    writer: &ApiClient,
    clients: usize,
    duration: Duration,
    workload: &Workload,
) -> Result<Measured, Error> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let writer = writer.clone();
        let workload = workload.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            // Bounded by the deadline and the address share; each request
            // by WRITE_CALL_TIMEOUT.
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                let Some(op) = workload.next(client, n) else {
                    break;
                };
                // Never reused, even after an error: a repeated container id
                // would get its address back without a write.
                n += 1;
                let sent = Instant::now();
                let result: Result<(), CallError> = match &op {
                    Op::Note(body) => writer
                        .post::<_, WriteResult>(PATH_NOTES, body)
                        .await
                        .map(drop),
                    Op::Allocate(body) => writer
                        .post::<_, AllocationView>(PATH_ALLOCATIONS, body)
                        .await
                        .map(drop),
                };
                match result {
                    Ok(()) => tally.latencies.push(sent.elapsed()),
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
/// What every node of one bench cluster is started with.
#[derive(Clone, Copy)]
struct NodeSettings<'a> {
    exe: &'a Path,
    dir: &'a Path,
    voters: usize,
    secret_file: &'a Path,
    transport: Transport,
}

struct NodeProcess {
    name: String,
    log: PathBuf,
    /// Killed (SIGKILL: its data is thrown away, so there is nothing to
    /// shut down cleanly) and reaped when dropped.
    process: romana_testkit::ChildGuard,
}

impl NodeProcess {
    fn spawn(
        settings: &NodeSettings<'_>,
        name: &str,
        listen: &str,
        join: Option<&str>,
    ) -> Result<Self, Error> {
        let NodeSettings {
            exe,
            dir,
            voters,
            secret_file,
            transport,
        } = *settings;
        let data_dir = dir.join(name);
        let api_socket = data_dir.join("api.sock");
        if api_socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            return Err(Error::Config(format!(
                "the API socket path {} is longer than {MAX_SOCKET_PATH_BYTES} bytes; pass a shorter --work-dir",
                api_socket.display()
            )));
        }
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(exe);
        command
            .arg("run")
            // On loopback there are no routes to make, and the machine's
            // own firewall is not the benchmark's to change.
            .args(["--manage-routes=false", "--firewall=false"])
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
            .arg(voters.to_string())
            .arg("--cidr")
            .arg(BENCH_CIDR)
            .arg("--host-bits")
            .arg(BENCH_HOST_BITS.to_string())
            .arg("--tenant-bits")
            .arg(BENCH_TENANT_BITS.to_string())
            .arg("--segment-bits")
            .arg(BENCH_SEGMENT_BITS.to_string())
            .arg("--endpoint-bits")
            .arg(BENCH_ENDPOINT_BITS.to_string());
        if let Some(member) = join {
            command.arg("--join").arg(member);
        }
        match transport {
            Transport::Plaintext => {
                command.arg("--insecure-plaintext");
            }
            Transport::TlsWithoutMetrics => {
                command.arg("--metrics=false");
            }
            Transport::Tls => {}
        }
        command.env("RUST_LOG", "warn");
        let process = romana_testkit::ChildGuard::spawn(command, &log)
            .context(format!("cannot start {} run", exe.display()))?;
        Ok(Self {
            name: name.to_string(),
            log,
            process,
        })
    }

    /// An error if the process has ended, quoting the end of its log.
    fn check_running(&mut self) -> Result<(), Error> {
        if self.process.has_exited() {
            return Err(Error::Api(format!(
                "node {} exited; end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            )));
        }
        Ok(())
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
    /// Names of the registered hosts, by host number.
    hosts: Vec<String>,
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
        transport: Transport,
    ) -> Result<Self, Error> {
        // Unique per cluster: the comparison's clusters live beside the
        // others' leftovers.
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let dir = work.join(format!(
            "cluster-{size}-{}-{}",
            transport.name(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).context(format!("cannot create {}", dir.display()))?;
        let tls =
            romana_node::tls::secret_client_config(secret, romana_node::tls::Role::Admin, "bench")
                .map_err(Error::Config)?;
        let client = |address: String| match transport {
            Transport::Tls | Transport::TlsWithoutMetrics => {
                ApiClient::new(Endpoint::Tcp(address), Some(tls.clone()))
            }
            Transport::Plaintext => ApiClient::plaintext(Endpoint::Tcp(address)),
        };
        let addresses = free_addresses(size)?;
        let first = addresses[0].clone();
        progress(format_args!(
            "starting a {size}-node cluster in {}",
            dir.display()
        ));
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(size),
            writer: client(first.clone()),
            hosts: Vec::new(),
        };
        let shared = NodeSettings {
            exe,
            dir: &dir,
            voters: size,
            secret_file,
            transport,
        };
        cluster
            .nodes
            .push(NodeProcess::spawn(&shared, "bench-1", &first, None)?);
        let watcher = client(first.clone()).with_timeout(STATUS_CALL_TIMEOUT);
        // Joins are only tried once a second; starting them after node 1
        // leads an initialised cluster saves a retry.
        cluster
            .wait_for(
                &watcher,
                PATH_STATUS,
                FIRST_LEADER_TIMEOUT,
                "node bench-1 to lead",
                |s: &StatusView| s.role == "leader" && s.cluster.is_some(),
                describe,
            )
            .await?;
        for (i, address) in addresses.iter().enumerate().skip(1) {
            let name = format!("bench-{}", i + 1);
            cluster
                .nodes
                .push(NodeProcess::spawn(&shared, &name, address, Some(&first))?);
        }
        let status = cluster
            .wait_for(
                &watcher,
                PATH_STATUS,
                FORMATION_TIMEOUT,
                &format!("{size} voters and a leader"),
                |s: &StatusView| {
                    s.members.len() == size
                        && s.members.iter().all(|m| m.role == "voter")
                        && s.leader.is_some()
                },
                describe,
            )
            .await?;
        // The leader registers each member as a host shortly after it joins;
        // allocations name hosts, so wait for all of them.
        let hosts = cluster
            .wait_for(
                &watcher,
                PATH_HOSTS,
                FORMATION_TIMEOUT,
                &format!("{size} registered hosts"),
                |hosts: &Vec<HostView>| hosts.len() == size,
                |hosts: &Vec<HostView>| {
                    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                    format!("hosts [{}]", names.join(", "))
                },
            )
            .await?;
        cluster.hosts = hosts.into_iter().map(|h| h.name).collect();
        let leader = status
            .leader
            .as_deref()
            .and_then(|leader| status.members.iter().find(|m| m.name == leader))
            .map(|m| m.address.clone())
            .ok_or_else(|| Error::Api("the leader is not among the members".into()))?;
        cluster.writer = client(leader).with_timeout(WRITE_CALL_TIMEOUT);
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

    /// Creates the bench tenants and makes one allocation (a broken IPAM
    /// path fails here with its own message), and checks that the cluster
    /// took the bench's address layout. `rounds`: how many client counts
    /// will share the addresses.
    async fn prepare_ipam(&mut self, rounds: usize) -> Result<IpamPlan, Error> {
        self.check_running()?;
        for tenant in BENCH_TENANTS {
            let body = NameBody {
                name: tenant.to_string(),
                request_id: None,
            };
            self.writer
                .post::<_, WriteResult>(PATH_TENANTS, &body)
                .await
                .map_err(|e| Error::Api(format!("cannot create tenant {tenant}: {e}")))?;
        }
        let layout: LayoutView = self
            .writer
            .get(PATH_LAYOUT)
            .await
            .map_err(|e| Error::Api(format!("cannot read the address layout: {e}")))?;
        if layout.endpoint_bits != BENCH_ENDPOINT_BITS {
            return Err(Error::Api(format!(
                "the cluster has {} endpoint bits, not the {BENCH_ENDPOINT_BITS} the bench asked for",
                layout.endpoint_bits
            )));
        }
        let first_host = self
            .hosts
            .first()
            .cloned()
            .ok_or_else(|| Error::Api("the cluster has no hosts".into()))?;
        let warmup = AllocateBody {
            host: Some(first_host),
            tenant: Some(BENCH_TENANTS[0].to_string()),
            segment: None,
            container_id: WARMUP_CONTAINER_ID.into(),
            ifname: BENCH_IFNAME.into(),
            pod_namespace: None,
            pod_name: None,
            network: None,
            request_id: None,
        };
        self.writer
            .post::<_, AllocationView>(PATH_ALLOCATIONS, &warmup)
            .await
            .map_err(|e| Error::Api(format!("the first allocation failed: {e}")))?;
        // Each round gets the same whole number of addresses in every block;
        // the warm-up took one address of one block.
        let rounds = u64::try_from(rounds.max(1)).unwrap_or(u64::MAX);
        let per_block = u64::from(layout.pods_per_block).saturating_sub(1) / rounds;
        let blocks = u64::try_from(self.hosts.len() * BENCH_TENANTS.len()).unwrap_or(0);
        if per_block == 0 {
            return Err(Error::Api(format!(
                "blocks of {} addresses leave none for {rounds} rounds of allocations",
                layout.pods_per_block
            )));
        }
        Ok(IpamPlan {
            hosts: self.hosts.clone().into(),
            per_round: per_block * blocks,
        })
    }

    fn check_running(&mut self) -> Result<(), Error> {
        self.nodes
            .iter_mut()
            .try_for_each(NodeProcess::check_running)
    }

    /// Polls `path` on `watcher` until `done` holds for its answer, a node
    /// dies, or `timeout` passes; `show` describes the last answer seen.
    async fn wait_for<T: DeserializeOwned>(
        &mut self,
        watcher: &ApiClient,
        path: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&T) -> bool,
        show: impl Fn(&T) -> String,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last_seen = match watcher.get::<T>(path).await {
                Ok(answer) if done(&answer) => return Ok(answer),
                Ok(answer) => show(&answer),
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
    romana_testkit::free_addresses(count).context("cannot find a free port on 127.0.0.1")
}

/// What was measured.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Setup {
    SledRaw,
    /// Note writes on a cluster of `nodes`.
    Cluster {
        nodes: usize,
    },
    /// IPAM allocations on a cluster of `nodes`.
    Allocations {
        nodes: usize,
    },
    /// Note writes in one round of the TLS-versus-plaintext comparison.
    Transport {
        nodes: usize,
        transport: Transport,
        round: usize,
    },
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setup::SledRaw => f.write_str("sled raw insert+flush"),
            Setup::Cluster { nodes: 1 } => f.write_str("1 node"),
            Setup::Cluster { nodes } => write!(f, "{nodes} nodes"),
            Setup::Allocations { nodes: 1 } => f.write_str("1 node, IPAM"),
            Setup::Allocations { nodes } => write!(f, "{nodes} nodes, IPAM"),
            Setup::Transport {
                nodes,
                transport,
                round,
            } => write!(f, "{nodes} nodes, {}, round {round}", transport.name()),
        }
    }
}

/// One line of the report.
#[derive(Serialize, Debug)]
struct Row {
    setup: Setup,
    clients: usize,
    /// Successful operations (commits, allocations, or raw appends).
    ops: u64,
    errors: u64,
    elapsed_s: f64,
    /// `ops / elapsed_s`: commits/s, allocations/s, or appends/s for the raw
    /// row.
    per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// `per_s` over the raw sled insert+flush rate.
    vs_sled_flush: Option<f64>,
    /// The clients stopped before the time was up because this round's
    /// share of addresses was handed out (allocations only).
    address_share_used_up: bool,
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
            address_share_used_up: false,
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

/// `numerator / denominator`, if both are known and the denominator is
/// positive.
fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// Allocations next to note writes on the same cluster and client count.
#[derive(Serialize, Debug)]
struct IpamComparison {
    nodes: usize,
    clients: usize,
    commits_per_s: f64,
    allocations_per_s: f64,
    /// `commits_per_s / allocations_per_s - 1`: what an allocation costs
    /// over a raw write (0.1 = 10 %); `None` if no allocation succeeded.
    overhead: Option<f64>,
    commit_p50_ms: Option<f64>,
    allocation_p50_ms: Option<f64>,
    commit_p99_ms: Option<f64>,
    allocation_p99_ms: Option<f64>,
    /// `allocation_p99_ms / commit_p99_ms`.
    p99_ratio: Option<f64>,
    /// Failed writes plus failed allocations.
    errors: u64,
}

impl IpamComparison {
    /// One per allocation row that has a note-write row for the same
    /// cluster size and client count.
    fn from_rows(rows: &[Row]) -> Vec<Self> {
        rows.iter()
            .filter_map(|allocations| {
                let Setup::Allocations { nodes } = allocations.setup else {
                    return None;
                };
                let writes = rows.iter().find(|row| {
                    row.setup == Setup::Cluster { nodes } && row.clients == allocations.clients
                })?;
                Some(IpamComparison {
                    nodes,
                    clients: allocations.clients,
                    commits_per_s: writes.per_s,
                    allocations_per_s: allocations.per_s,
                    overhead: ratio(Some(writes.per_s), Some(allocations.per_s)).map(|r| r - 1.0),
                    commit_p50_ms: writes.p50_ms,
                    allocation_p50_ms: allocations.p50_ms,
                    commit_p99_ms: writes.p99_ms,
                    allocation_p99_ms: allocations.p99_ms,
                    p99_ratio: ratio(allocations.p99_ms, writes.p99_ms),
                    errors: writes.errors + allocations.errors,
                })
            })
            .collect()
    }
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

/// The IPAM target and whether the run met it.
#[derive(Serialize, Debug)]
struct IpamTarget {
    clients: usize,
    nodes: usize,
    /// Most overhead allowed over a raw write (0.1 = 10 %).
    max_overhead: f64,
    min_allocations_per_s: f64,
    /// `None` when the run did not measure that setup.
    met: Option<bool>,
}

/// Most throughput TLS may cost against plaintext (0.1 = 10 %).
const TARGET_TLS_MAX_LOSS: f64 = 0.10;

/// Most throughput metrics may cost against none.
const TARGET_METRICS_MAX_LOSS: f64 = 0.02;

/// TLS against plaintext, over every round of the comparison.
#[derive(Serialize, Debug)]
struct TransportComparison {
    rounds: usize,
    tls_per_s: f64,
    plaintext_per_s: f64,
    /// `tls_per_s / plaintext_per_s`.
    ratio: f64,
    tls_p99_ms_worst: Option<f64>,
    plaintext_p99_ms_worst: Option<f64>,
    errors: u64,
    max_loss: f64,
    met: bool,
}

impl TransportComparison {
    /// The report's line for this comparison: `NAME target: ... WHAT >= N%
    /// of BASELINE ...: met (...)`.
    fn verdict(&self, name: &str, what: &str, baseline: &str) -> String {
        let ms = |value: Option<f64>| value.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let errors = if self.errors > 0 {
            format!(", {} errors", self.errors)
        } else {
            String::new()
        };
        format!(
            "{name} target: {TARGET_CLIENTS} clients on {TARGET_NODES} nodes, {what} >= {:.0}% of {baseline}, {} interleaved rounds: {} ({:.0} vs {:.0} commits/s = {:.2}x; worst p99 {} vs {} ms{errors})\n",
            (1.0 - self.max_loss) * 100.0,
            self.rounds,
            if self.met { "met" } else { "NOT met" },
            self.tls_per_s,
            self.plaintext_per_s,
            self.ratio,
            ms(self.tls_p99_ms_worst),
            ms(self.plaintext_p99_ms_worst),
        )
    }

    /// `measured` against `baseline` over all their rounds; met when it
    /// keeps at least `1 - max_loss` of the baseline's rate.
    fn from_rows(
        rows: &[Row],
        measured: Transport,
        baseline: Transport,
        max_loss: f64,
    ) -> Option<Self> {
        let of = |wanted: Transport| {
            let rows: Vec<&Row> = rows
                .iter()
                .filter(|row| matches!(row.setup, Setup::Transport { transport, .. } if transport == wanted))
                .collect();
            let ops: u64 = rows.iter().map(|row| row.ops).sum();
            let elapsed: f64 = rows.iter().map(|row| row.elapsed_s).sum();
            let worst_p99 = rows.iter().filter_map(|row| row.p99_ms).reduce(f64::max);
            let errors: u64 = rows.iter().map(|row| row.errors).sum();
            (
                rows.len(),
                (elapsed > 0.0).then(|| ops as f64 / elapsed),
                worst_p99,
                errors,
            )
        };
        let (rounds, tls, tls_p99, tls_errors) = of(measured);
        let (_, plain, plain_p99, plain_errors) = of(baseline);
        let (tls, plain) = (tls?, plain?);
        let ratio = if plain > 0.0 { tls / plain } else { 0.0 };
        Some(Self {
            rounds,
            tls_per_s: tls,
            plaintext_per_s: plain,
            ratio,
            tls_p99_ms_worst: tls_p99,
            plaintext_p99_ms_worst: plain_p99,
            errors: tls_errors + plain_errors,
            max_loss,
            met: ratio >= 1.0 - max_loss,
        })
    }
}

#[derive(Serialize, Debug)]
struct Report {
    duration_s: u64,
    rows: Vec<Row>,
    ipam: Vec<IpamComparison>,
    target: Target,
    ipam_target: IpamTarget,
    /// `None` with `--tls-rounds 0`.
    tls: Option<TransportComparison>,
    /// Metrics on (`tls_per_s`) against off (`plaintext_per_s`); `None`
    /// with `--tls-rounds 0`.
    metrics: Option<TransportComparison>,
}

impl Report {
    fn new(duration_s: u64, rows: Vec<Row>) -> Self {
        let met = rows.iter().find(|row| Self::is_target_row(row)).map(|row| {
            row.per_s >= TARGET_COMMITS_PER_S && row.p99_ms.is_some_and(|p99| p99 < TARGET_P99_MS)
        });
        let ipam = IpamComparison::from_rows(&rows);
        let ipam_met = ipam.iter().find(|c| Self::is_ipam_target(c)).map(|c| {
            c.allocations_per_s >= TARGET_ALLOCATIONS_PER_S
                && c.overhead
                    .is_some_and(|overhead| overhead <= TARGET_IPAM_MAX_OVERHEAD)
        });
        let tls = TransportComparison::from_rows(
            &rows,
            Transport::Tls,
            Transport::Plaintext,
            TARGET_TLS_MAX_LOSS,
        );
        let metrics = TransportComparison::from_rows(
            &rows,
            Transport::Tls,
            Transport::TlsWithoutMetrics,
            TARGET_METRICS_MAX_LOSS,
        );
        Report {
            tls,
            metrics,
            duration_s,
            rows,
            ipam,
            target: Target {
                clients: TARGET_CLIENTS,
                nodes: TARGET_NODES,
                min_commits_per_s: TARGET_COMMITS_PER_S,
                max_p99_ms: TARGET_P99_MS,
                met,
            },
            ipam_target: IpamTarget {
                clients: TARGET_CLIENTS,
                nodes: IPAM_NODES,
                max_overhead: TARGET_IPAM_MAX_OVERHEAD,
                min_allocations_per_s: TARGET_ALLOCATIONS_PER_S,
                met: ipam_met,
            },
        }
    }

    fn is_target_row(row: &Row) -> bool {
        matches!(row.setup, Setup::Cluster { nodes } if nodes == TARGET_NODES)
            && row.clients == TARGET_CLIENTS
    }

    fn is_ipam_target(comparison: &IpamComparison) -> bool {
        comparison.nodes == IPAM_NODES && comparison.clients == TARGET_CLIENTS
    }

    fn table(&self) -> String {
        let ms = |value: Option<f64>| value.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let times = |value: Option<f64>| value.map_or_else(|| "-".into(), |r| format!("{r:.2}x"));
        let percent = |value: Option<f64>| {
            value.map_or_else(|| "-".into(), |o| format!("{:+.1}%", o * 100.0))
        };
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                vec![
                    row.setup.to_string(),
                    row.clients.to_string(),
                    format!(
                        "{:.0}{}",
                        row.per_s,
                        if row.address_share_used_up { "*" } else { "" }
                    ),
                    ms(row.p50_ms),
                    ms(row.p99_ms),
                    row.errors.to_string(),
                    times(row.vs_sled_flush),
                ]
            })
            .collect();
        let mut text = format!(
            "{} s per measurement; OPS/S counts raw appends in the sled row, allocations in the IPAM rows, note commits in the others\n\n",
            self.duration_s
        );
        text.push_str(&table(
            &[
                "SETUP",
                "CLIENTS",
                "OPS/S",
                "P50 MS",
                "P99 MS",
                "ERRORS",
                "VS SLED FLUSH",
            ],
            &rows,
        ));
        if self.rows.iter().any(|row| row.address_share_used_up) {
            text.push_str(
                "* stopped before its time: the round's share of the blocks' addresses was used up\n",
            );
        }
        if !self.ipam.is_empty() {
            let comparisons: Vec<Vec<String>> = self
                .ipam
                .iter()
                .map(|c| {
                    vec![
                        c.nodes.to_string(),
                        c.clients.to_string(),
                        format!("{:.0}", c.commits_per_s),
                        format!("{:.0}", c.allocations_per_s),
                        percent(c.overhead),
                        ms(c.commit_p50_ms),
                        ms(c.allocation_p50_ms),
                        ms(c.commit_p99_ms),
                        ms(c.allocation_p99_ms),
                        times(c.p99_ratio),
                    ]
                })
                .collect();
            text.push_str(
                "\nIPAM over a raw write (OVERHEAD = commits/s / allocations/s - 1; P99 RATIO = alloc p99 / write p99):\n",
            );
            text.push_str(&table(
                &[
                    "NODES",
                    "CLIENTS",
                    "WRITES/S",
                    "ALLOCS/S",
                    "OVERHEAD",
                    "WRITE P50",
                    "ALLOC P50",
                    "WRITE P99",
                    "ALLOC P99",
                    "P99 RATIO",
                ],
                &comparisons,
            ));
        }
        for row in self.rows.iter().filter(|row| !row.error_samples.is_empty()) {
            text.push_str(&format!(
                "\nerrors with {}, {} client(s):\n",
                row.setup, row.clients
            ));
            for sample in &row.error_samples {
                text.push_str(&format!("  {sample}\n"));
            }
        }
        let errors = |count: u64| {
            if count > 0 {
                format!(", {count} errors")
            } else {
                String::new()
            }
        };
        let not_measured = || format!("not measured (--clients does not include {TARGET_CLIENTS})");
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
                errors(row.errors)
            ),
            _ => not_measured(),
        };
        text.push_str(&format!(
            "\ntarget: {} clients on {} nodes, >= {:.0} commits/s with p99 < {} ms: {verdict}\n",
            target.clients, target.nodes, target.min_commits_per_s, target.max_p99_ms
        ));
        let ipam_target = &self.ipam_target;
        let ipam_verdict = match (
            ipam_target.met,
            self.ipam.iter().find(|c| Self::is_ipam_target(c)),
        ) {
            (Some(met), Some(c)) => format!(
                "{} ({:.0} allocations/s vs {:.0} commits/s: overhead {}, p99 {} vs {} ms = {}{})",
                if met { "met" } else { "NOT met" },
                c.allocations_per_s,
                c.commits_per_s,
                percent(c.overhead),
                ms(c.allocation_p99_ms),
                ms(c.commit_p99_ms),
                times(c.p99_ratio),
                errors(c.errors)
            ),
            _ => not_measured(),
        };
        text.push_str(&format!(
            "ipam target: {} clients on {} nodes, IPAM costs at most {:.0}% over a raw write and reaches >= {:.0} allocations/s: {ipam_verdict}\n",
            ipam_target.clients,
            ipam_target.nodes,
            ipam_target.max_overhead * 100.0,
            ipam_target.min_allocations_per_s
        ));
        match &self.tls {
            Some(c) => text.push_str(&c.verdict("tls", "TLS commits", "plaintext's")),
            None => text.push_str("tls target: not measured (--tls-rounds 0)\n"),
        }
        if let Some(c) = &self.metrics {
            text.push_str(&c.verdict("metrics", "commits with metrics", "without"));
        }
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

    fn row(setup: Setup, clients: usize, per_s: f64, p99: f64) -> Row {
        Row {
            setup,
            clients,
            ops: 0,
            errors: 0,
            elapsed_s: 1.0,
            per_s,
            p50_ms: Some(1.0),
            p99_ms: Some(p99),
            vs_sled_flush: None,
            address_share_used_up: false,
            error_samples: Vec::new(),
        }
    }

    #[test]
    fn the_target_is_judged_on_three_nodes_with_64_clients() {
        let writes =
            |nodes, clients, per_s, p99| row(Setup::Cluster { nodes }, clients, per_s, p99);
        let met = Report::new(
            1,
            vec![writes(1, 64, 1.0, 99.0), writes(3, 64, 12_000.0, 9.0)],
        );
        assert_eq!(met.target.met, Some(true));
        let slow = Report::new(1, vec![writes(3, 64, 12_000.0, 11.0)]);
        assert_eq!(slow.target.met, Some(false));
        let absent = Report::new(1, vec![writes(3, 16, 12_000.0, 1.0)]);
        assert_eq!(absent.target.met, None);
        assert!(absent.table().contains("not measured"));
    }

    #[test]
    fn ipam_overhead_compares_the_same_cluster_and_client_count() {
        let writes = |clients, per_s, p99| row(Setup::Cluster { nodes: 3 }, clients, per_s, p99);
        let allocs =
            |clients, per_s, p99| row(Setup::Allocations { nodes: 3 }, clients, per_s, p99);
        let report = Report::new(
            1,
            vec![
                row(Setup::Cluster { nodes: 1 }, 64, 1.0, 1.0),
                writes(16, 4_000.0, 2.0),
                allocs(16, 2_000.0, 3.0),
                writes(64, 10_800.0, 4.0),
                allocs(64, 10_000.0, 6.0),
            ],
        );
        assert_eq!(report.ipam.len(), 2);
        let at_16 = &report.ipam[0];
        assert_eq!((at_16.nodes, at_16.clients), (3, 16));
        assert_eq!(at_16.overhead, Some(1.0));
        assert_eq!(at_16.p99_ratio, Some(1.5));
        let at_64 = &report.ipam[1];
        assert!((at_64.overhead.unwrap() - 0.08).abs() < 1e-9);
        assert_eq!(report.ipam_target.met, Some(true));
        let table = report.table();
        assert!(table.contains("+100.0%"), "{table}");
        assert!(
            table.contains("ipam target: 64 clients on 3 nodes"),
            "{table}"
        );

        let costly = Report::new(1, vec![writes(64, 12_000.0, 4.0), allocs(64, 9_000.0, 6.0)]);
        assert_eq!(costly.ipam_target.met, Some(false));
        let slow = Report::new(1, vec![writes(64, 4_000.0, 4.0), allocs(64, 4_000.0, 4.0)]);
        assert_eq!(slow.ipam_target.met, Some(false));
        let failed = Report::new(1, vec![writes(64, 4_000.0, 4.0), allocs(64, 0.0, 4.0)]);
        assert_eq!(failed.ipam[0].overhead, None);
        assert_eq!(failed.ipam_target.met, Some(false));
        let absent = Report::new(1, vec![writes(16, 4_000.0, 4.0), allocs(16, 4_000.0, 4.0)]);
        assert_eq!(absent.ipam_target.met, None);
    }

    #[test]
    fn tls_is_compared_with_plaintext_over_all_rounds() {
        let round = |transport, round, ops: u64, elapsed_s: f64, p99| {
            let mut row = row(
                Setup::Transport {
                    nodes: 3,
                    transport,
                    round,
                },
                64,
                0.0,
                p99,
            );
            row.ops = ops;
            row.elapsed_s = elapsed_s;
            row
        };
        let report = Report::new(
            1,
            vec![
                round(Transport::Tls, 1, 9_000, 1.0, 7.0),
                round(Transport::Plaintext, 1, 10_000, 1.0, 5.0),
                round(Transport::Plaintext, 2, 10_000, 1.0, 6.0),
                round(Transport::Tls, 2, 9_400, 1.0, 8.0),
            ],
        );
        let tls = report.tls.as_ref().expect("compared");
        assert_eq!(tls.rounds, 2);
        assert!((tls.ratio - 0.92).abs() < 1e-9, "{}", tls.ratio);
        assert!(tls.met);
        assert_eq!(tls.tls_p99_ms_worst, Some(8.0));
        assert!(report.table().contains("tls target: 64 clients on 3 nodes"));
        let costly = Report::new(
            1,
            vec![
                round(Transport::Tls, 1, 8_000, 1.0, 7.0),
                round(Transport::Plaintext, 1, 10_000, 1.0, 5.0),
            ],
        );
        assert!(!costly.tls.expect("compared").met);
        let none = Report::new(1, vec![round(Transport::Tls, 1, 8_000, 1.0, 7.0)]);
        assert!(none.tls.is_none());
        assert!(none.table().contains("not measured (--tls-rounds 0)"));
    }

    #[test]
    fn allocation_rounds_spread_fresh_ids_evenly_and_stop_at_their_share() {
        let hosts: Arc<[String]> = vec!["h1".to_string(), "h2".into(), "h3".into()].into();
        let blocks = hosts.len() * BENCH_TENANTS.len();
        let plan = IpamPlan {
            hosts,
            per_round: 2 * blocks as u64,
        };
        let Workload::Allocations(round) = plan.round(1) else {
            panic!("not an allocation round");
        };
        let mut per_block = std::collections::BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for n in 0..(2 * blocks as u64) {
            let body = round.next((n % 4) as usize, n).expect("within the share");
            *per_block
                .entry((body.host.unwrap(), body.tenant))
                .or_insert(0) += 1;
            assert!(
                ids.insert(body.container_id.clone()),
                "{}",
                body.container_id
            );
            assert!(body.container_id.starts_with("c1-"));
        }
        assert_eq!(per_block.len(), blocks);
        assert!(per_block.values().all(|&count| count == 2));
        assert!(round.used_up());
        assert!(round.next(0, 99).is_none());
    }

    #[test]
    fn the_bench_layout_is_valid_and_roomy() {
        let layout = raft_store::layout::AddressLayout::new(
            BENCH_CIDR,
            BENCH_HOST_BITS,
            BENCH_TENANT_BITS,
            BENCH_SEGMENT_BITS,
            BENCH_ENDPOINT_BITS,
        )
        .expect("valid bench layout");
        assert!(layout.usable_endpoints() >= 65_000);
        assert!(layout.max_hosts() as usize >= TARGET_NODES);
        assert!(layout.max_tenants() as usize >= BENCH_TENANTS.len());
    }
}

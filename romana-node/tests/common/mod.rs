//! Test harness: real `romana-node` processes on 127.0.0.1 ports in
//! temporary data dirs. Every process is killed and every directory removed
//! when the harness values drop, also when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use raft_store::transport::ClusterSecret;
use romana_api::cluster::{NoteBody, StatusView, WriteResult};
use romana_api::paths::{PATH_NOTES, PATH_STATUS};
use romana_node::http_client::{ApiClient, CallError, Endpoint};
use romana_node::tls::{secret_client_config, Role};
pub use romana_testkit::free_port;
use romana_testkit::ChildGuard;
use rustls_pki_types::pem::PemObject;

pub const NODE_BINARY: &str = env!("CARGO_BIN_EXE_romana-node");
pub const CTL_BINARY: &str = env!("CARGO_BIN_EXE_romanactl");

/// Upper bound of any wait for the cluster to reach a condition.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// One node: its directories, port and (when running) process.
pub struct TestNode {
    pub name: String,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    pub join: Option<String>,
    /// `--cluster-secret-file` (none: the node uses a CA in its data dir
    /// or a join token).
    pub secret_file: Option<PathBuf>,
    process: Option<ChildGuard>,
}

impl TestNode {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The arguments of `romana-node run` for this node.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            // Every node of these tests shares the machine's own namespace:
            // no routes or firewall changes there.
            "--manage-routes=false".into(),
            "--firewall=false".into(),
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen".into(),
            self.address(),
            "--api-socket".into(),
            self.socket.display().to_string(),
        ];
        if let Some(secret_file) = &self.secret_file {
            args.push("--cluster-secret-file".into());
            args.push(secret_file.display().to_string());
        }
        if let Some(join) = &self.join {
            args.push("--join".into());
            args.push(join.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn start(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let mut command = Command::new(NODE_BINARY);
        command.args(self.args()).env(
            "RUST_LOG",
            std::env::var("ROMANA_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        );
        let process = ChildGuard::spawn(command, &self.log).expect("spawn romana-node");
        self.process = Some(process);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            assert!(
                process.terminate(Duration::from_secs(10)),
                "{} did not stop within 10 s of SIGTERM",
                self.name
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Some(process) => !process.has_exited(),
            None => false,
        }
    }

    /// Wait for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = self.process.as_mut()?.wait_exit(timeout);
        if status.is_some() {
            self.process = None;
        }
        status
    }

    /// API client over the unix socket.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(Endpoint::Unix(self.socket.clone()), None)
            .with_timeout(Duration::from_secs(20))
    }

    /// API client over TLS with an admin certificate of the cluster's CA
    /// (derived from the cluster secret, as `romanactl` does).
    pub fn tcp_client(&self) -> ApiClient {
        self.tcp_client_as(Role::Admin, "test")
    }

    /// API client over TLS with a certificate for `role` and `name`.
    pub fn tcp_client_as(&self, role: Role, name: &str) -> ApiClient {
        let secret = ClusterSecret::new(SECRET).expect("valid secret");
        let tls = secret_client_config(&secret, role, name).expect("client certificate");
        ApiClient::new(Endpoint::Tcp(self.address()), Some(tls))
            .with_timeout(Duration::from_secs(20))
    }

    /// The cluster CA's hash, from the certificate the node wrote.
    pub fn ca_cert_hash(&self) -> String {
        let pem = std::fs::read(self.data_dir.join("tls/ca.crt")).expect("the node wrote ca.crt");
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("a certificate");
        romana_node::tls::ca_hash(&der).expect("hash")
    }

    pub async fn status(&self) -> Result<StatusView, CallError> {
        self.client().get(PATH_STATUS).await
    }

    pub fn wipe(&self) {
        std::fs::remove_dir_all(&self.data_dir).expect("wipe data dir");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of nodes under one temporary root.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub secret_file: PathBuf,
    // Declared last: dropped after the nodes, so processes die before their
    // directories go.
    pub root: tempfile::TempDir,
}

impl TestCluster {
    /// `count` node definitions (none started). The first initialises, the
    /// others join through it. `extra_args` go to every node.
    pub fn new(count: usize, extra_args: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("romana-test-")
            .tempdir()
            .expect("temp root");
        let secret_file = root.path().join("cluster-secret");
        std::fs::write(&secret_file, SECRET).expect("write secret");
        let mut cluster = Self {
            nodes: Vec::new(),
            secret_file,
            root,
        };
        for _ in 0..count {
            cluster.add_node(extra_args);
        }
        cluster
    }

    /// Defines one more node joining through the first.
    pub fn add_node(&mut self, extra_args: &[&str]) -> usize {
        let index = self.nodes.len();
        let name = format!("n{index}");
        let dir = self.root.path().join(&name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let join = self.nodes.first().map(|first| first.address());
        self.nodes.push(TestNode {
            data_dir: dir.join("data"),
            socket: dir.join("api.sock"),
            log: dir.join("node.log"),
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            join,
            secret_file: Some(self.secret_file.clone()),
            process: None,
            name,
        });
        index
    }

    /// Starts every node and waits until all are members and have a leader.
    pub async fn start_all(&mut self) {
        self.nodes[0].start();
        wait_for("first node to lead", || async {
            matches!(self.nodes[0].status().await, Ok(s) if s.role == "leader" && s.cluster.is_some())
        })
        .await;
        for node in self.nodes.iter_mut().skip(1) {
            node.start();
        }
        let expected = self.nodes.len();
        wait_for("all nodes to be members", || async {
            match self.nodes[0].status().await {
                Ok(status) => status.members.len() == expected,
                Err(_) => false,
            }
        })
        .await;
    }

    /// Status of every running node that answers.
    pub async fn statuses(&self) -> Vec<StatusView> {
        let mut statuses = Vec::new();
        for node in &self.nodes {
            if let Ok(status) = node.status().await {
                statuses.push(status);
            }
        }
        statuses
    }

    /// Waits until the listed nodes agree on applied index and state hash;
    /// returns that status.
    pub async fn wait_converged(&self, which: &[usize]) -> StatusView {
        let mut last = Vec::new();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while Instant::now() < deadline {
            let mut statuses = Vec::new();
            for &i in which {
                if let Ok(status) = self.nodes[i].status().await {
                    statuses.push(status);
                }
            }
            if statuses.len() == which.len()
                && statuses.iter().all(|s| {
                    s.applied_index == statuses[0].applied_index
                        && s.state_hash == statuses[0].state_hash
                        && s.leader.is_some()
                })
            {
                return statuses.swap_remove(0);
            }
            last = statuses
                .iter()
                .map(|s| {
                    format!(
                        "{}: index {} hash {} leader {:?}",
                        s.name,
                        s.applied_index,
                        &s.state_hash[..12],
                        s.leader
                    )
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nodes {which:?} did not converge within {CONVERGE_TIMEOUT:?}; last seen: {last:?}");
    }

    /// Index of the node that currently leads, as the given node sees it.
    pub async fn leader_index(&self) -> Option<usize> {
        for node in &self.nodes {
            if let Ok(status) = node.status().await {
                if let Some(leader) = status.leader {
                    return self.nodes.iter().position(|n| n.name == leader);
                }
            }
        }
        None
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // On failure, show what each node logged: the processes are gone
        // with the temporary root after this.
        if std::thread::panicking() {
            for node in &self.nodes {
                let text = node.log_text();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(150)..];
                eprintln!(
                    "----- log of {} (last {} lines) -----\n{}",
                    node.name,
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Polls `condition` until true; panics after [`CONVERGE_TIMEOUT`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {CONVERGE_TIMEOUT:?} waiting for {what}");
}

/// Writes one note with a given request id.
pub async fn write_note(client: &ApiClient, request_id: &str) -> Result<WriteResult, CallError> {
    client
        .post(
            PATH_NOTES,
            &NoteBody {
                text: format!("note {request_id}"),
                request_id: Some(request_id.to_string()),
            },
        )
        .await
}

/// Runs romanactl with arguments; (exit success, stdout, stderr).
pub fn romanactl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(CTL_BINARY)
        .args(args)
        .output()
        .expect("run romanactl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// romanactl against the node at `socket`; its stdout. Panics on failure.
pub fn ctl_ok(socket: &str, args: &[&str]) -> String {
    let mut full = vec!["--socket", socket];
    full.extend_from_slice(args);
    let (ok, stdout, stderr) = romanactl(&full);
    assert!(ok, "romanactl {args:?}: {stderr}");
    stdout
}

pub fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

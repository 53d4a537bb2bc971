//! # romana-testkit: what tests (and the benchmark) need to run the real thing
//!
//! Every test that starts processes or changes the kernel does it through
//! these guards, so whatever it made is gone when the guard drops, also when
//! the test fails.
//!
//! # Layout
//!
//! - [`free_port`], [`free_addresses`]: loopback ports nobody holds.
//! - [`unique`]: names unique to this process and call (namespaces, nodes).
//! - [`sh`]: run a command, panic with its output if it fails.
//! - [`Netns`]: a uniquely named network namespace, deleted on drop.
//! - [`ChildGuard`]: a child process (a `romana-node run`, a test server)
//!   killed and reaped on drop, with its log file if it has one.
//! - [`sibling_binary`]: a binary of the same build (built if missing).
//! - [`run_plugin`] and [`Invocation`]: a CNI plugin run the way a runtime
//!   runs it (only the given `CNI_*` variables, config on stdin).
//!
//! Used by the romana-node, romana-cni and simulation tests and by
//! `romana-node bench`; `simulation`'s lab (`romana-lab`) keeps its own
//! host namespaces.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// `count` distinct free `127.0.0.1:PORT` addresses (all held at once while
/// looking, so no two are the same).
pub fn free_addresses(count: usize) -> std::io::Result<Vec<String>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|a| a.to_string()))
        .collect()
}

static NAMES: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `PREFIX<pid>x<n>`, short enough
/// for an interface or namespace name with a short prefix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NAMES.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A network namespace named uniquely, deleted on drop (gone already is
/// fine).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `romana-t-<unique>`.
    pub fn new() -> Self {
        Self::named(unique("romana-t-"))
    }

    /// Creates the namespace `name` (which the caller made unique).
    pub fn named(name: String) -> Self {
        sh("ip", &["netns", "add", &name]);
        Self { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.name))
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A child process owned by a test (or the benchmark): dropping it kills
/// and reaps the process, whichever way the owner ends.
pub struct ChildGuard {
    /// `None` once stopped.
    child: Option<Child>,
    /// Where its stdout and stderr go, if [`ChildGuard::spawn`] started it.
    pub log: Option<PathBuf>,
}

impl ChildGuard {
    /// Starts `command` with stdin closed and stdout and stderr appended to
    /// the file `log` (created if missing: a restarted node keeps one log).
    pub fn spawn(mut command: Command, log: &Path) -> std::io::Result<Self> {
        let stdout = OpenOptions::new().create(true).append(true).open(log)?;
        let stderr = stdout.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()?;
        Ok(Self {
            child: Some(child),
            log: Some(log.to_path_buf()),
        })
    }

    /// Owns a child spawned elsewhere (its output is the spawner's).
    pub fn from_child(child: Child) -> Self {
        Self {
            child: Some(child),
            log: None,
        }
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit
    /// status (and it is reaped), or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; kills it if it
    /// does not. Returns whether it stopped on SIGTERM (true if not running).
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(pid) = self.id() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if self.wait_exit(timeout).is_some() {
            return true;
        }
        self.stop();
        false
    }

    /// Kills (SIGKILL) and reaps the process; idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log so far (empty if unreadable).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The binary `name` next to `anchor` (another binary of the same build,
/// e.g. `env!("CARGO_BIN_EXE_romana")`), built with cargo from `package` if
/// it is missing.
pub fn sibling_binary(anchor: &Path, package: &str, name: &str) -> PathBuf {
    let profile_dir = anchor
        .parent()
        .unwrap_or_else(|| panic!("{} is not in a target dir", anchor.display()))
        .to_path_buf();
    let binary = profile_dir.join(name);
    if !binary.exists() {
        let release = profile_dir.ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", package, "--bin", name]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("run cargo build: {e}"));
        assert!(status.success(), "building {name} failed");
    }
    binary
}

/// What a plugin printed and how it exited.
#[derive(Debug)]
pub struct Invocation {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Invocation {
    /// Stdout as JSON; panics (naming it) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The CNI error code of a failed invocation.
    pub fn code(&self) -> u64 {
        assert!(!self.success, "expected a failure, got {:?}", self.stdout);
        self.json()["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.stdout))
    }
}

/// Runs a CNI plugin binary as a runtime does: only the given `CNI_*`
/// variables, `stdin` as the config.
pub fn run_plugin(binary: &Path, env: &[(&str, &str)], stdin: &str) -> Invocation {
    let mut command = Command::new(binary);
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        command.env_remove(var);
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .unwrap_or_else(|e| panic!("write the plugin's stdin: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("plugin output: {e}"));
    Invocation {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

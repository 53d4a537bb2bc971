//! Test harness for the plugin: a single-node `romana-node` in a temporary
//! data dir, uniquely named network namespaces, and the plugin invoked the
//! way a runtime invokes it (stdin config, `CNI_*` environment). Everything
//! a test creates is removed when its guard drops, also on failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use romana_testkit::{free_port, run_plugin, sh, unique, Invocation, Netns};
use romana_testkit::{sibling_binary, ChildGuard};
use serde_json::{json, Value};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_romana");

/// The `romana-node` binary of the same build, built first if missing.
pub fn node_binary() -> PathBuf {
    sibling_binary(Path::new(PLUGIN), "romana-node", "romana-node")
}

/// A single-node cluster for the plugin to talk to.
pub struct Node {
    process: ChildGuard,
    pub socket: PathBuf,
    pub name: String,
    pub log: PathBuf,
    // Last: removed after the process is gone.
    pub dir: tempfile::TempDir,
}

/// Nodes started by this test binary; each gets its own pod CIDR.
static NODES: AtomicU32 = AtomicU32::new(0);

impl Node {
    /// Starts a node and waits until it leads and knows itself as a host;
    /// creates tenants `t1` and `t2`.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("romana-cni-test-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("api.sock");
        let log = dir.path().join("node.log");
        let name = unique("cni-node-");
        // Tests run in parallel in the same host namespace: each node gets a
        // /16 of its own, so host routes to pods of different tests never
        // collide. 1 host bit, 4 tenant, 3 segment, 8 endpoint bits.
        let second_octet = 100 + NODES.fetch_add(1, Ordering::SeqCst) % 150;
        let cidr = format!("10.{second_octet}.0.0/16");
        let mut command = Command::new(node_binary());
        command
            .args([
                "run",
                // The tests share the machine's own namespace: no routes or
                // firewall changes there.
                "--manage-routes=false",
                "--firewall=false",
                "--name",
                &name,
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args([
                "--cidr",
                &cidr,
                "--host-bits",
                "1",
                "--tenant-bits",
                "4",
                "--segment-bits",
                "3",
                "--endpoint-bits",
                "8",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--api-socket")
            .arg(&socket)
            .env("RUST_LOG", "warn");
        let process = ChildGuard::spawn(command, &log).expect("spawn romana-node");
        let node = Self {
            process,
            socket,
            name,
            log,
            dir,
        };
        node.wait_ready();
        for tenant in ["t1", "t2"] {
            node.ctl(&["tenant", "create", tenant]);
        }
        node
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(output) = self.try_ctl(&["-o", "json", "host", "list"]) {
                if output.contains(&self.name) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "node did not become ready: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let ctl = node_binary().with_file_name("romanactl");
        let output = Command::new(ctl)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).to_string())
        }
    }

    /// romanactl against this node; panics on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|e| panic!("romanactl {args:?}: {e}"))
    }

    /// The allocations the node holds, as JSON.
    pub fn allocations(&self) -> Vec<Value> {
        let text = self.ctl(&["-o", "json", "ipam", "list"]);
        serde_json::from_str(&text).expect("allocation list JSON")
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// `GET /metrics` on the node's socket (with curl), as text.
    pub fn metrics(&self) -> String {
        let output = Command::new("curl")
            .args(["-sS", "--fail", "--unix-socket"])
            .arg(&self.socket)
            .arg("http://localhost/metrics")
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "curl /metrics: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// A network config for `tenant`, in spec `version`, talking to this node.
    pub fn config(&self, tenant: &str, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": format!("romana-{tenant}"),
            "type": "romana",
            "tenant": tenant,
            "node_socket": self.socket,
            "log_file": self.dir.path().join("cni.log"),
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the plugin with `CNI_*` variables (only those given) and `stdin`.
pub fn invoke(env: &[(&str, &str)], stdin: &str) -> Invocation {
    run_plugin(Path::new(PLUGIN), env, stdin)
}

/// Where runtimes look for plugins: `CNI_PATH` if set, then the usual dirs.
pub fn plugin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("CNI_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.extend(["/opt/cni/bin", "/usr/lib/cni"].map(PathBuf::from));
    dirs
}

pub fn reference_plugin(name: &str) -> PathBuf {
    plugin_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("no reference plugin {name} in {:?}: install containernetworking-plugins (deploy/lib/prerequisites.sh)", plugin_dirs())
        })
}

/// ADD / CHECK / DEL with the usual variables.
pub fn verb(
    command: &str,
    config: &Value,
    container_id: &str,
    netns: Option<&Netns>,
    ifname: &str,
) -> Invocation {
    let path = netns.map(Netns::path);
    let mut env = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];
    if let Some(path) = &path {
        env.push(("CNI_NETNS", path));
    }
    invoke(&env, &config.to_string())
}

/// Host interfaces whose names start with `rom` (the plugin's host veths).
pub fn host_veths() -> Vec<String> {
    sh("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
        .filter(|name| name.starts_with("rom"))
        .collect()
}

/// The longest a pod's veth may outlive its DEL: the DEL retires it (down,
/// no route) and the node deletes retired veths in batches.
pub const RETIRED_VETH_LIFETIME: Duration = Duration::from_secs(1);

/// Waits until none of `names` is a link here, for at most
/// [`RETIRED_VETH_LIFETIME`]; the ones still there after it otherwise.
pub fn veths_gone_within_a_second(names: &[String]) -> Result<Duration, Vec<String>> {
    let started = Instant::now();
    loop {
        let links = host_veths();
        let left: Vec<String> = names
            .iter()
            .filter(|name| links.contains(name))
            .cloned()
            .collect();
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > RETIRED_VETH_LIFETIME {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Splits a line of `iptables -S` into arguments (double quotes group).
pub fn split_rule(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    args.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(current);
    }
    args
}

/// portmap's shared nat chains (`CNI-HOSTPORT-DNAT`, `-MASQ`, `-SETMARK`)
/// and the jumps to them from PREROUTING, OUTPUT and POSTROUTING outlive the
/// last DEL: every container shares them. If they did not exist before the
/// test, `remove` (and drop) takes them away again, unless another user's
/// rules are in them.
pub struct SharedHostportChains {
    /// Whether the chains existed before the test.
    pub existed: bool,
}

impl SharedHostportChains {
    pub fn snapshot() -> Self {
        Self {
            existed: Self::dnat_rules().is_some(),
        }
    }

    /// The rules in CNI-HOSTPORT-DNAT, or None if the chain does not exist.
    fn dnat_rules() -> Option<Vec<String>> {
        let output = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"])
            .output()
            .ok()?;
        output.status.success().then(|| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(str::to_string)
                .collect()
        })
    }

    pub fn remove(&self) {
        if self.existed || Self::dnat_rules().is_none_or(|rules| !rules.is_empty()) {
            return;
        }
        let rules = sh("iptables", &["-w", "-t", "nat", "-S"]);
        for line in rules.lines() {
            let builtin = ["-A PREROUTING ", "-A OUTPUT ", "-A POSTROUTING "]
                .iter()
                .any(|p| line.starts_with(p));
            if builtin && line.contains("-j CNI-HOSTPORT-") {
                let mut args = split_rule(line);
                args[0] = "-D".into();
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat"])
                    .args(&args)
                    .output();
            }
        }
        for line in rules.lines() {
            if let Some(chain) = line.strip_prefix("-N CNI-HOSTPORT-") {
                let chain = format!("CNI-HOSTPORT-{chain}");
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-F", &chain])
                    .output();
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-X", &chain])
                    .output();
            }
        }
    }
}

impl Drop for SharedHostportChains {
    fn drop(&mut self) {
        self.remove();
    }
}

//! The network-namespace lab: several Romana hosts on one machine.
//!
//! - A **host** is a network namespace `LAB-hN` with one interface, `eth0`,
//!   whose peer is plugged into the bridge `LAB-br` in the root namespace:
//!   the underlay, `192.168.SUBNET.(10+N)/24`. Each host runs its own
//!   `romana-node` (entered with `ip netns exec`), the first creating the
//!   cluster and the others joining it.
//! - A **pod** is a network namespace `LAB-p-NAME`, wired by the real CNI
//!   plugin run inside its host's namespace exactly as a runtime runs it.
//! - Everything the lab made is listed in `LAB_DIR/lab.json`; `down` removes
//!   it, and also finds what a crashed lab left behind by its names.
//! - [`kubernetes`]: the Kubernetes mode (`up --kubernetes`): each host also
//!   a mount namespace running containerd, a kubelet and kube-proxy, the
//!   control plane on host1.

pub mod kubernetes;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How long hosts may take to form the cluster.
pub const FORMATION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Message(String),
}

pub type Result<T> = std::result::Result<T, LabError>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(LabError::Message(message.into()))
}

/// Where the binaries are and how the lab is named.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabConfig {
    /// Short name, prefix of every namespace and interface (≤ 8 characters).
    pub name: String,
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Third octet of the underlay subnet 192.168.X.0/24.
    pub subnet: u8,
    /// Extra flags for every romana-node.
    pub node_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub netns: String,
    pub underlay_ip: String,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub name: String,
    pub host: String,
    pub tenant: String,
    pub netns: String,
    pub container_id: String,
    pub ip: String,
}

/// What `lab.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub config: LabConfig,
    pub hosts: Vec<Host>,
    pub pods: Vec<Pod>,
    /// Present in Kubernetes mode.
    #[serde(default)]
    pub kubernetes: Option<kubernetes::KubernetesLab>,
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Message(format!("{program}: {e}")))?;
    if !output.status.success() {
        return fail(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// Runs a command inside a namespace.
pub fn in_netns(netns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

impl LabConfig {
    fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    fn bridge(&self) -> String {
        format!("{}-br", self.name)
    }
    fn host_netns(&self, index: usize) -> String {
        format!("{}-h{index}", self.name)
    }
    fn underlay_ip(&self, index: usize) -> String {
        format!("192.168.{}.{}", self.subnet, 10 + index)
    }
    fn validate(&self) -> Result<()> {
        self.validate_name()?;
        for binary in ["romana-node", "romanactl", "romana"] {
            if !self.bin_dir.join(binary).exists() {
                return fail(format!(
                    "{} not found in {} (build first)",
                    binary,
                    self.bin_dir.display()
                ));
            }
        }
        Ok(())
    }
    fn validate_name(&self) -> Result<()> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 8
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return fail(format!(
                "lab name {:?} must be 1 to 8 lowercase letters, digits or '-'",
                self.name
            ));
        }
        Ok(())
    }
}

impl Lab {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("lab.json");
        let text = fs::read_to_string(&path).map_err(|e| {
            LabError::Message(format!(
                "no lab at {} ({e}); run `romana-lab up` first",
                dir.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::Message(format!("{}: {e}", path.display())))
    }

    fn save(&self) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| LabError::Message(e.to_string()))?;
        write_atomically(&self.config.state_file(), &text)?;
        // A second copy of the Kubernetes side beside the hosts' files, so
        // that `down` still finds the saved sysctls and the mount points it
        // created when lab.json is lost.
        if let Some(kubernetes) = &self.kubernetes {
            let text = serde_json::to_string_pretty(kubernetes)
                .map_err(|e| LabError::Message(e.to_string()))?;
            if kubernetes.options.state_dir.exists() {
                write_atomically(
                    &kubernetes::saved_state_file(&kubernetes.options.state_dir),
                    &text,
                )?;
            }
        }
        Ok(())
    }

    fn ctl_binary(&self) -> PathBuf {
        self.config.bin_dir.join("romanactl")
    }

    /// romanactl against a host's node.
    pub fn ctl(&self, host: &Host, args: &[&str]) -> Result<String> {
        let socket = host.socket.display().to_string();
        let ctl = self.ctl_binary().display().to_string();
        let mut full = vec![ctl.as_str(), "--socket", socket.as_str()];
        full.extend_from_slice(args);
        run(full[0], &full[1..])
    }

    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::Message(format!("no host named {name:?} in the lab")))
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// Creates the lab: bridge, hosts, nodes; waits until every host is
    /// registered in the cluster.
    pub fn up(config: LabConfig, hosts: usize) -> Result<Self> {
        config.validate()?;
        if !(1..=50).contains(&hosts) {
            return fail("--hosts must be 1 to 50");
        }
        if config.state_file().exists() {
            return fail(format!(
                "a lab is already up in {}; run `romana-lab down` first",
                config.dir.display()
            ));
        }
        fs::create_dir_all(&config.dir)
            .map_err(|e| LabError::Message(format!("create {}: {e}", config.dir.display())))?;
        let mut lab = Lab {
            config,
            hosts: Vec::new(),
            pods: Vec::new(),
            kubernetes: None,
        };
        lab.save()?;
        let secret = lab.config.dir.join("cluster-secret");
        fs::write(
            &secret,
            format!("lab-secret-{}-{}\n", lab.config.name, std::process::id()),
        )
        .map_err(|e| LabError::Message(format!("write secret: {e}")))?;
        let bridge = lab.config.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for index in 1..=hosts {
            let host = lab.add_host(index, &secret)?;
            lab.hosts.push(host);
            lab.save()?;
            if index == 1 {
                lab.wait_for("the first host to lead", |lab| {
                    lab.ctl(&lab.hosts[0], &["-o", "json", "host", "list"])
                        .is_ok_and(|out| out.contains("\"host1\""))
                })?;
            }
        }
        lab.wait_for("every host to be registered", |lab| {
            lab.ctl(&lab.hosts[0], &["-o", "json", "host", "list"])
                .is_ok_and(|out| (1..=hosts).all(|i| out.contains(&format!("\"host{i}\""))))
        })?;
        lab.write_conflists()?;
        Ok(lab)
    }

    fn add_host(&self, index: usize, secret: &Path) -> Result<Host> {
        let mut host = self.setup_host_network(index)?;
        host.pid = start_node(&self.config, &host, index, secret)?;
        Ok(host)
    }

    /// Host `index`'s network namespace on the underlay bridge, and its
    /// directory; no process runs in it yet.
    fn setup_host_network(&self, index: usize) -> Result<Host> {
        let config = &self.config;
        let netns = config.host_netns(index);
        let peer = format!("{}-h{index}", config.name);
        let ip = config.underlay_ip(index);
        run("ip", &["netns", "add", &netns])?;
        run(
            "ip",
            &[
                "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &peer, "master", &config.bridge(), "up"],
        )?;
        in_netns(&netns, &["ip", "link", "set", "lo", "up"])?;
        in_netns(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        in_netns(&netns, &["ip", "link", "set", "eth0", "up"])?;
        let name = format!("host{index}");
        let host_dir = config.dir.join(&name);
        fs::create_dir_all(&host_dir)
            .map_err(|e| LabError::Message(format!("create {}: {e}", host_dir.display())))?;
        let data_dir = host_dir.join("data");
        let socket = host_dir.join("romana.sock");
        let log = host_dir.join("node.log");
        fs::File::create(&log)
            .map_err(|e| LabError::Message(format!("create {}: {e}", log.display())))?;
        Ok(Host {
            name,
            netns,
            underlay_ip: ip,
            pid: 0,
            data_dir,
            socket,
            log,
        })
    }

    /// Restarts a host's node from its data dir (after `kill`).
    pub fn restart_node(&mut self, name: &str) -> Result<()> {
        let index = self
            .hosts
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| LabError::Message(format!("no host {name}")))?;
        let number: usize = name.trim_start_matches("host").parse().unwrap_or(index + 1);
        let secret = self.config.dir.join("cluster-secret");
        // The namespace and its eth0 exist already: start only the node.
        self.hosts[index].pid = start_node(&self.config, &self.hosts[index], number, &secret)?;
        self.save()
    }

    /// kill -9 of a host's node (the namespace and its pods stay).
    pub fn kill_node(&self, name: &str) -> Result<()> {
        let host = self.host(name)?;
        kill_tree(host.pid);
        Ok(())
    }

    fn wait_for(&self, what: &str, condition: impl Fn(&Lab) -> bool) -> Result<()> {
        let deadline = Instant::now() + FORMATION_TIMEOUT;
        while Instant::now() < deadline {
            if condition(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        fail(format!(
            "timed out after {FORMATION_TIMEOUT:?} waiting for {what}"
        ))
    }

    /// The network config for `tenant` on `host`.
    pub fn network_config(&self, host: &Host, tenant: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": format!("romana-{tenant}"),
            "type": "romana",
            "tenant": tenant,
            "node_socket": host.socket,
            "log_file": self.config.dir.join("cni.log"),
        })
    }

    /// Conflists for tenants t1 and t2, per host (each names its host's
    /// node socket), in `LAB_DIR/HOST/net.d`.
    fn write_conflists(&self) -> Result<()> {
        for host in &self.hosts {
            let dir = self.config.dir.join(&host.name).join("net.d");
            fs::create_dir_all(&dir).map_err(|e| LabError::Message(e.to_string()))?;
            for (order, tenant) in [(10, "t1"), (20, "t2")] {
                let plugin = self.network_config(host, tenant);
                let conflist = json!({
                    "cniVersion": "1.0.0",
                    "name": format!("romana-{tenant}"),
                    "plugins": [plugin],
                });
                let path = dir.join(format!("{order}-romana-{tenant}.conflist"));
                fs::write(
                    &path,
                    serde_json::to_string_pretty(&conflist).unwrap_or_default(),
                )
                .map_err(|e| LabError::Message(format!("write {}: {e}", path.display())))?;
            }
        }
        Ok(())
    }

    /// Runs the CNI plugin inside `host`'s namespace, as a runtime would.
    fn invoke_plugin(
        &self,
        host: &Host,
        command: &str,
        config: &Value,
        container_id: &str,
        pod_netns: Option<&str>,
    ) -> Result<Value> {
        let plugin = self.config.bin_dir.join("romana");
        let mut child = Command::new("ip");
        child
            .args(["netns", "exec", &host.netns])
            .arg(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.config.bin_dir);
        if let Some(netns) = pod_netns {
            child.env("CNI_NETNS", format!("/run/netns/{netns}"));
        }
        let mut process = child
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Message(format!("run the plugin: {e}")))?;
        if let Some(mut stdin) = process.stdin.take() {
            stdin
                .write_all(config.to_string().as_bytes())
                .map_err(|e| LabError::Message(e.to_string()))?;
        }
        let output = process
            .wait_with_output()
            .map_err(|e| LabError::Message(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return fail(format!("CNI {command} failed: {}", stdout.trim()));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(stdout.trim())
            .map_err(|e| LabError::Message(format!("CNI {command} printed {stdout:?}: {e}")))
    }

    /// Starts a pod on `host` in `tenant`.
    pub fn add_pod(&mut self, host: &str, tenant: &str, name: &str) -> Result<Pod> {
        self.add_pod_in_segment(host, tenant, None, name)
    }

    /// Starts a pod on `host` in `tenant`, in `segment` (default: `default`).
    pub fn add_pod_in_segment(
        &mut self,
        host: &str,
        tenant: &str,
        segment: Option<&str>,
        name: &str,
    ) -> Result<Pod> {
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return fail(format!(
                "pod name {name:?} must be lowercase letters, digits and '-'"
            ));
        }
        if self.pod(name).is_some() {
            return fail(format!("pod {name} exists already"));
        }
        let host = self.host(host)?.clone();
        let netns = format!("{}-p-{name}", self.config.name);
        let container_id = format!("lab-{}-{name}", self.config.name);
        run("ip", &["netns", "add", &netns])?;
        let _ = in_netns(&netns, &["ip", "link", "set", "lo", "up"]);
        let mut config = self.network_config(&host, tenant);
        if let Some(segment) = segment {
            config["segment"] = json!(segment);
        }
        let result = match self.invoke_plugin(&host, "ADD", &config, &container_id, Some(&netns)) {
            Ok(result) => result,
            Err(e) => {
                let _ = run("ip", &["netns", "del", &netns]);
                return Err(e);
            }
        };
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_string();
        let pod = Pod {
            name: name.to_string(),
            host: host.name.clone(),
            tenant: tenant.to_string(),
            netns,
            container_id,
            ip,
        };
        self.pods.push(pod.clone());
        self.save()?;
        Ok(pod)
    }

    /// Deletes a pod: CNI DEL, then its namespace.
    pub fn delete_pod(&mut self, name: &str) -> Result<()> {
        let pod = self
            .pod(name)
            .cloned()
            .ok_or_else(|| LabError::Message(format!("no pod named {name}")))?;
        let host = self.host(&pod.host)?.clone();
        let config = self.network_config(&host, &pod.tenant);
        self.invoke_plugin(&host, "DEL", &config, &pod.container_id, Some(&pod.netns))?;
        run("ip", &["netns", "del", &pod.netns])?;
        self.pods.retain(|p| p.name != name);
        self.save()
    }

    /// `NAME HOST TENANT IP`, like `kubectl get pods -o wide`.
    pub fn pod_table(&self) -> String {
        let mut text = format!("{:<16} {:<8} {:<8} {}\n", "NAME", "HOST", "TENANT", "IP");
        for pod in &self.pods {
            text.push_str(&format!(
                "{:<16} {:<8} {:<8} {}\n",
                pod.name, pod.host, pod.tenant, pod.ip
            ));
        }
        text
    }

    /// Runs a command in a host's or a pod's namespace.
    pub fn exec(&self, target: &str, command: &[&str]) -> Result<String> {
        if self.kubernetes.is_some() && self.hosts.iter().any(|h| h.name == target) {
            return self.exec_in_host(target, command);
        }
        let netns = match (
            self.hosts.iter().find(|h| h.name == target),
            self.pod(target),
        ) {
            (Some(host), _) => host.netns.clone(),
            (None, Some(pod)) => pod.netns.clone(),
            (None, None) => return fail(format!("no host or pod named {target}")),
        };
        in_netns(&netns, command)
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, text)
        .map_err(|e| LabError::Message(format!("write {}: {e}", temporary.display())))?;
    fs::rename(&temporary, path)
        .map_err(|e| LabError::Message(format!("write {}: {e}", path.display())))
}

/// Starts `host`'s node inside its namespace (host `number` 1 creates the
/// cluster, the others join it), appending to its log; returns the pid.
fn start_node(config: &LabConfig, host: &Host, number: usize, secret: &Path) -> Result<u32> {
    let log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&host.log)
        .map_err(|e| LabError::Message(format!("open {}: {e}", host.log.display())))?;
    let log_clone = log_file
        .try_clone()
        .map_err(|e| LabError::Message(e.to_string()))?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &host.netns])
        .arg(config.bin_dir.join("romana-node"))
        .args([
            "run",
            "--name",
            &host.name,
            "--listen",
            &format!("{}:9600", host.underlay_ip),
        ])
        .arg("--data-dir")
        .arg(&host.data_dir)
        .arg("--api-socket")
        .arg(&host.socket)
        .arg("--cluster-secret-file")
        .arg(secret)
        .args(&config.node_args);
    if number > 1 {
        command.args(["--join", &format!("{}:9600", config.underlay_ip(1))]);
    }
    let child = command
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_clone)
        .stderr(log_file)
        .spawn()
        .map_err(|e| LabError::Message(format!("start romana-node on {}: {e}", host.name)))?;
    Ok(child.id())
}

/// Kills a process and its children (the node runs under `ip netns exec`,
/// which execs it, so the pid is the node's own; children are killed too in
/// case a wrapper stays).
fn kill_tree(pid: u32) {
    // 0 is "no node started" (Kubernetes mode); `kill -9 0` would kill our
    // own process group.
    if pid == 0 {
        return;
    }
    let _ = Command::new("pkill")
        .args(["-9", "-P", &pid.to_string()])
        .status();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Removes everything a lab named `name` made, whether or not its state file
/// survived: pods (CNI DEL where possible), nodes, host namespaces, the
/// bridge, the lab dir. Keeps going past failures and reports them.
pub fn down(name: &str, dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let saved = Lab::load(dir).ok();
    // The Kubernetes side first: its processes live in the host namespaces
    // and would keep them busy.
    problems.extend(kubernetes::down_kubernetes(
        name,
        saved.as_ref().and_then(|lab| lab.kubernetes.as_ref()),
    ));
    if let Some(lab) = saved {
        for pod in lab.pods.clone() {
            if let Ok(host) = lab.host(&pod.host) {
                let config = lab.network_config(host, &pod.tenant);
                if let Err(e) =
                    lab.invoke_plugin(host, "DEL", &config, &pod.container_id, Some(&pod.netns))
                {
                    problems.push(format!("pod {}: {e}", pod.name));
                }
            }
        }
        for host in &lab.hosts {
            kill_tree(host.pid);
        }
    }
    // Whatever still runs with this lab's dir on its command line.
    let _ = Command::new("pkill")
        .args([
            "-9",
            "-f",
            "--",
            &format!("--api-socket {}/", dir.display()),
        ])
        .status();
    let prefix = format!("{name}-");
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for netns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if netns.starts_with(&prefix) {
                if let Err(e) = run("ip", &["netns", "del", netns]) {
                    problems.push(e.to_string());
                }
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for link in links
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with(&prefix))
        {
            let _ = run("ip", &["link", "del", &link]);
        }
    }
    if dir.exists() {
        if let Err(e) = fs::remove_dir_all(dir) {
            problems.push(format!("remove {}: {e}", dir.display()));
        }
    }
    problems
}

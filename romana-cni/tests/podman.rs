//! The plugin under a real runtime: Podman 4.3 with its CNI backend runs
//! containers on the networks of deploy/cni (romana, then portmap and
//! bandwidth), talking to a single-node romana-node.
//!
//! Everything Podman keeps is test-owned: a containers.conf of its own
//! (`CONTAINERS_CONF`), storage root, run root and tmp dir in a temp dir,
//! a plugin dir holding this build's `romana` and links to the reference
//! plugins, and a network config dir with the deploy conflists pointed at
//! the test's node. Podman 4.3 still creates a few things outside them on
//! first use (see [`HostState`]); whatever of those did not exist before is
//! removed afterwards.
//!
//! Needs root, podman, runc, conmon, busybox-static and the reference
//! plugins (deploy/lib/prerequisites.sh installs them). The flags are the
//! ones DESIGN.md gives for these sandboxed machines: `--runtime runc
//! --cgroup-manager cgroupfs --ulimit host` and `default_ulimits = []`.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{
    host_veths, sh, unique, veths_gone_within_a_second, Node, SharedHostportChains, PLUGIN,
};
use romana_cni::plugin::host_veth_name;
use serde_json::{json, Value};

const IMAGE: &str = "localhost/romana-test-busybox:latest";
const BUSYBOX: &str = "/bin/busybox";
/// The busybox applets the image links.
const APPLETS: [&str; 8] = ["sh", "ping", "sleep", "ip", "nc", "echo", "cat", "ls"];

/// The dir holding the reference plugins (the one that has portmap).
fn reference_plugin_dir() -> PathBuf {
    common::reference_plugin("portmap")
        .parent()
        .map(Path::to_path_buf)
        .expect("a plugin path has a parent dir")
}

/// Does the ELF file ask for a program interpreter (dynamic linking)?
fn is_dynamic_elf(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return true;
    }
    let offset = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = offset + i * size;
        at + 4 <= bytes.len()
            && u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) == 3
    })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Things Podman 4.3 creates outside its root, run root and tmp dir, none
/// of which it can be told to put elsewhere: libcni's result cache
/// (/var/lib/cni), the blob info cache of `podman import`
/// (/var/lib/containers/cache), runc's state root (/run/runc: the exit
/// command Podman hands conmon carries no `--runtime-flag`, so moving it
/// would strand the cleanup) and, with cgroupfs, the `libpod_parent` cgroup
/// (per-container cgroups below it are removed with the container; it and
/// its `conmon` child stay). Which of them existed is recorded before the
/// test; the ones the test created are removed, if empty, afterwards.
struct HostState {
    absent: Vec<PathBuf>,
}

impl HostState {
    fn candidates() -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = [
            "/var/lib/cni/results",
            "/var/lib/cni",
            "/var/lib/containers/cache",
            "/var/lib/containers",
            "/run/runc",
        ]
        .map(PathBuf::from)
        .to_vec();
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            paths.extend(
                hierarchies
                    .flatten()
                    .map(|h| h.path().join("libpod_parent")),
            );
        }
        paths
    }

    fn snapshot() -> Self {
        Self {
            absent: Self::candidates()
                .into_iter()
                .filter(|p| !p.exists())
                .collect(),
        }
    }

    fn restore(&self) {
        for path in &self.absent {
            if path.starts_with("/sys/fs/cgroup") {
                // Empty cgroups only (rmdir refuses the others), deepest first.
                remove_empty_dirs(path);
            } else if path.ends_with("containers/cache") {
                let _ = std::fs::remove_file(path.join("blob-info-cache-v1.boltdb"));
                let _ = std::fs::remove_dir(path);
            } else {
                let _ = std::fs::remove_dir(path);
            }
        }
    }
}

fn remove_empty_dirs(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// Processes whose command line mentions `needle` (our temp dir, a
/// container id): conmon, `podman container cleanup`, the container's own.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroup = std::fs::read(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            [cmdline, cgroup]
                .iter()
                .any(|b| String::from_utf8_lossy(b).contains(needle))
        })
        .collect()
}

/// A Podman whose whole state lives in a temp dir, set up for the romana
/// networks. Dropping it removes every container and image, waits for (and
/// if need be kills) the processes it started, unmounts what is left under
/// its dir and puts [`HostState`] back.
struct Podman {
    dir: tempfile::TempDir,
    host_state: HostState,
    /// Full ids of the containers run, for the last-resort cleanup.
    containers: Vec<String>,
}

impl Podman {
    fn new(node: &Node) -> Self {
        let version = Command::new("podman").arg("--version").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "podman is not installed (deploy/lib/prerequisites.sh installs it): {version:?}"
        );
        assert!(
            Path::new(BUSYBOX).is_file() && !is_dynamic_elf(Path::new(BUSYBOX)),
            "{BUSYBOX} is missing or not static: install busybox-static"
        );
        let podman = Self {
            host_state: HostState::snapshot(),
            dir: tempfile::Builder::new()
                .prefix("romana-podman-")
                .tempdir()
                .expect("temp dir"),
            containers: Vec::new(),
        };
        podman.write_plugins();
        podman.write_networks(node);
        podman.write_containers_conf();
        podman.import_image();
        podman
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// This build's `romana`, copied, and links to every reference plugin.
    fn write_plugins(&self) {
        let plugins = self.path("plugins");
        std::fs::create_dir(&plugins).expect("plugin dir");
        std::fs::copy(PLUGIN, plugins.join("romana")).expect("copy romana");
        for entry in std::fs::read_dir(reference_plugin_dir())
            .expect("reference plugins")
            .flatten()
        {
            if entry.file_name() != "romana" {
                std::os::unix::fs::symlink(entry.path(), plugins.join(entry.file_name()))
                    .expect("link a reference plugin");
            }
        }
    }

    /// The conflists of deploy/cni, pointed at the test's node and log.
    fn write_networks(&self, node: &Node) {
        let networks = self.path("net.d");
        std::fs::create_dir(&networks).expect("network config dir");
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cni");
        let mut written = 0;
        for entry in std::fs::read_dir(&deploy).expect("deploy/cni").flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "conflist") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a conflist");
            let mut conflist: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                conflist["cniVersion"],
                "1.0.0",
                "{}: Podman 4.3 speaks CNI 1.0.0 at most",
                path.display()
            );
            let romana = &mut conflist["plugins"][0];
            assert_eq!(romana["type"], "romana", "{}", path.display());
            romana["node_socket"] = json!(node.socket);
            romana["log_file"] = json!(self.path("cni.log"));
            std::fs::write(networks.join(entry.file_name()), conflist.to_string())
                .expect("write a conflist");
            written += 1;
        }
        assert!(written >= 2, "deploy/cni has no conflists");
    }

    fn write_containers_conf(&self) {
        std::fs::create_dir(self.path("tmp")).expect("tmp dir");
        let conf = format!(
            r#"# Written by romana-cni/tests/podman.rs for one test run.
[containers]
default_ulimits = []
# Unprivileged ICMP sockets: busybox ping without CAP_NET_RAW.
default_sysctls = ["net.ipv4.ping_group_range=0 0"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{networks}"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp}"
"#,
            plugins = self.path("plugins").display(),
            networks = self.path("net.d").display(),
            tmp = self.path("tmp").display(),
        );
        std::fs::write(self.path("containers.conf"), conf).expect("containers.conf");
    }

    /// A one-binary image: busybox-static and links to its applets.
    fn import_image(&self) {
        let bin = self.path("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
        let tarball = self.path("rootfs.tar");
        sh(
            "tar",
            &[
                "-C",
                &self.path("rootfs").display().to_string(),
                "-cf",
                &tarball.display().to_string(),
                ".",
            ],
        );
        self.ok(&["import", &tarball.display().to_string(), IMAGE]);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .args(args)
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("TMPDIR", self.path("tmp"));
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    /// Runs podman, panicking with its output if it fails; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "podman {args:?} failed:\n{}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `podman run -d` on `network`; returns the container's full id.
    fn run(&mut self, name: &str, network: &str, extra: &[&str], command: &[&str]) -> String {
        let mut args = vec![
            "run",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--ulimit",
            "host",
            "--network",
            network,
            "-d",
            "--name",
            name,
        ];
        args.extend(extra);
        args.push(IMAGE);
        args.extend(command);
        let id = self.ok(&args);
        self.containers.push(id.clone());
        id
    }

    fn inspect(&self, name: &str) -> Value {
        let text = self.ok(&["inspect", name]);
        let all: Value = serde_json::from_str(&text).expect("inspect JSON");
        all[0].clone()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.output(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.output(&["rmi", "--all", "--force"]);
        // conmon and `podman container cleanup` mention our dir; the
        // containers' own processes sit in cgroups named by their ids.
        let needles: Vec<String> = std::iter::once(self.dir.path().display().to_string())
            .chain(self.containers.iter().map(|id| format!("libpod-{id}")))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<i32> = needles
                .iter()
                .flat_map(|n| processes_mentioning(n))
                .collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for pid in left {
                    // SAFETY: kill(2) on a pid just found running one of our
                    // containers or naming our temp dir.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let root = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", mount]).output();
        }
        self.host_state.restore();
    }
}

/// Reads what a server at `address` says, retrying until `deadline`.
fn fetch_until(address: SocketAddrV4, deadline: Instant) -> String {
    loop {
        let attempt = TcpStream::connect_timeout(&address.into(), Duration::from_secs(2)).and_then(
            |mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut text = String::new();
                stream.read_to_string(&mut text)?;
                Ok(text.trim().to_string())
            },
        );
        match attempt {
            Ok(text) if !text.is_empty() => return text,
            other if Instant::now() > deadline => panic!("{address}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A container's address on `network`, from `podman inspect`.
fn address_on(inspect: &Value, network: &str) -> Ipv4Addr {
    inspect["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address on {network}: {}", inspect["NetworkSettings"]))
}

#[test]
fn podman_runs_containers_on_romana_networks() {
    let shared_chains = SharedHostportChains::snapshot();
    let node = Node::start();
    let started = Instant::now();
    let mut podman = Podman::new(&node);
    let setup = started.elapsed();

    let networks = podman.ok(&["network", "ls", "--format", "{{.Name}}"]);
    for network in ["romana-t1", "romana-t2"] {
        assert!(
            networks.lines().any(|n| n == network),
            "podman does not see {network}:\n{networks}"
        );
    }

    let names: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| unique(&format!("romana-{n}-")))
        .collect();
    let host_port = TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let token = format!("hello-from-{}", names[3]);
    let started = Instant::now();
    let mut ids = Vec::new();
    for (name, network) in names[..3]
        .iter()
        .zip(["romana-t1", "romana-t1", "romana-t2"])
    {
        ids.push((podman.run(name, network, &[], &["sleep", "600"]), network));
    }
    let run_three = started.elapsed();
    // d publishes a port: podman passes portMappings to portmap.
    let port_mapping = format!("{host_port}:8080");
    let id_d = podman.run(
        &names[3],
        "romana-t1",
        &["-p", &port_mapping],
        &["nc", "-ll", "-p", "8080", "-e", "/bin/echo", &token],
    );
    ids.push((id_d.clone(), "romana-t1"));

    let mut addresses = Vec::new();
    let mut sandboxes = Vec::new();
    for ((id, network), name) in ids.iter().zip(&names) {
        let inspect = podman.inspect(name);
        let address = address_on(&inspect, network);
        addresses.push(address);
        sandboxes.push(PathBuf::from(
            inspect["NetworkSettings"]["SandboxKey"]
                .as_str()
                .expect("SandboxKey"),
        ));
        // The node decodes the address: the network's tenant, held by this
        // container's eth0.
        let shown: Value =
            serde_json::from_str(&node.ctl(&["-o", "json", "ipam", "show", &address.to_string()]))
                .expect("ipam show JSON");
        let tenant = network.trim_start_matches("romana-");
        assert_eq!(
            shown["tenant"],
            json!(tenant),
            "{address} of {name}: {shown}"
        );
        assert_eq!(shown["allocation"]["container_id"], json!(id), "{shown}");
        assert_eq!(shown["allocation"]["ifname"], json!("eth0"), "{shown}");
        assert!(
            host_veths().contains(&host_veth_name(id, "eth0")),
            "no host veth for {name}"
        );
        let eth0 = podman.ok(&["exec", name, "ip", "-4", "addr", "show", "eth0"]);
        assert!(eth0.contains(&format!("{address}/32")), "{name}: {eth0}");
    }
    // The third octet holds tenant and segment bits: a and b share t1's
    // block, c is in t2's.
    let block = |a: Ipv4Addr| a.octets()[2];
    assert_eq!(block(addresses[0]), block(addresses[1]), "{addresses:?}");
    assert_ne!(block(addresses[0]), block(addresses[2]), "{addresses:?}");

    // a and b, both on romana-t1, reach each other.
    for (from, to) in [(0, 1), (1, 0)] {
        let ping = podman.output(&[
            "exec",
            &names[from],
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            &addresses[to].to_string(),
        ]);
        assert!(
            ping.status.success(),
            "{} -> {}: {}",
            names[from],
            addresses[to],
            text(&ping)
        );
    }
    // d's published port answers from the host (see tests/chaining.rs for
    // why 127.0.0.1 works through portmap).
    let answer = fetch_until(
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, host_port),
        Instant::now() + Duration::from_secs(10),
    );
    assert_eq!(answer, token);
    // Podman passed no bandwidth limits, so bandwidth passed the result
    // through and shaped nothing (no tbf, no ingress redirect to an ifb).
    for (id, _) in &ids {
        let qdiscs = sh("tc", &["qdisc", "show", "dev", &host_veth_name(id, "eth0")]);
        assert!(
            !qdiscs.contains("tbf") && !qdiscs.contains("ingress"),
            "{qdiscs}"
        );
    }

    let started = Instant::now();
    let mut rm = vec!["rm", "--force", "--time", "0"];
    rm.extend(names.iter().map(String::as_str));
    podman.ok(&rm);
    let removed = started.elapsed();

    assert!(
        podman.ok(&["ps", "--all", "--quiet"]).is_empty(),
        "containers left"
    );
    let all_veths: Vec<String> = ids
        .iter()
        .map(|(id, _)| host_veth_name(id, "eth0"))
        .collect();
    if let Err(left) = veths_gone_within_a_second(&all_veths) {
        panic!("host veths left a second after podman rm: {left:?}");
    }
    let everything = sh("iptables-save", &[]);
    let cache: Vec<String> = std::fs::read_dir("/var/lib/cni/results")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    for ((id, _), sandbox) in ids.iter().zip(&sandboxes) {
        assert!(!sandbox.exists(), "netns {} left", sandbox.display());
        assert!(
            !everything.contains(id.as_str()),
            "iptables still names {id}"
        );
        assert!(
            cache.iter().all(|f| !f.contains(id.as_str())),
            "libcni cache of {id} left: {cache:?}"
        );
    }
    assert!(
        !everything.contains(&format!("--dport {host_port}")),
        "iptables still has port {host_port}"
    );
    let held = node.allocations();
    assert!(held.is_empty(), "allocations left: {held:?}");
    drop(podman);
    shared_chains.remove();
    println!("podman: setup (conf, plugins, image import) {setup:?}; run x3 {run_three:?}; rm x4 {removed:?}");
}

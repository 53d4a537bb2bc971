//! The lab in Kubernetes mode: real kubelets, containerd and a control plane
//! built from Kubernetes' source, one "machine" per lab host.
//!
//! A lab host is more than its network namespace here. A kubelet, a
//! containerd and (next) a `romana-node` DaemonSet pod all write to fixed
//! paths (`/run/containerd`, `/var/lib/kubelet`, `/etc/cni/net.d`, …), so
//! each host also gets its own **mount namespace**, kept alive by a bind
//! mount of its `/proc/PID/ns/mnt` on `STATE/ns/HOST`, in which per-host
//! directories under `STATE/HOST/root/` are bind-mounted over:
//!
//! | path | why it must be the host's own |
//! |---|---|
//! | `/etc/cni/net.d`, `/opt/cni/bin` | the CNI config and plugins the host's containerd loads; an installer DaemonSet writes them |
//! | `/run` | containerd's socket and state, pod network namespaces (`/run/netns`), `/run/romana` |
//! | `/var/lib/kubelet`, `/var/lib/containerd`, `/var/lib/cni` | kubelet state, images and snapshots, host-local IPAM |
//! | `/var/lib/romana` | the node's data dir (a DaemonSet hostPath) |
//! | `/var/log/pods`, `/var/log/containers` | container logs (`kubectl logs`) |
//! | `/etc/kubernetes`, `/tmp` | files a node's software writes (`/tmp/romana-cni.log`) |
//!
//! Every process of a host runs as `nsenter --net=/run/netns/LAB-hN
//! --mount=STATE/ns/hostN -- …` (nsenter, not `ip netns exec`, which
//! remounts `/sys` and hides the cgroup mounts). `/sys` and `/proc` are the
//! machine's: the kernel is shared, as it is by containers.
//!
//! Each kubelet gets its own cgroup root `/LAB-hostN` in every cgroup v1
//! hierarchy (and the unified one of the hybrid layout), so `kubepods`
//! trees never mix and `down` can find every container process by cgroup.
//!
//! host1 runs etcd (on its loopback), kube-apiserver (on its underlay
//! address, port 6443), kube-controller-manager and kube-scheduler; every
//! host runs containerd, a kubelet (registered as Node `hostN`) and
//! kube-proxy in iptables mode. See [`kubelet_configuration`] and
//! [`containerd_configuration`] for every setting the sandbox needs and why.
//!
//! `--cni ptp` gives every host the reference `ptp` + `host-local` plugins on
//! `10.244.N.0/24` with static routes between hosts (the baseline Romana is
//! measured against); `--cni none` leaves the CNI directories empty, for an
//! installer to fill.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{fail, run, Lab, LabConfig, LabError, Result};

/// The Kubernetes version the lab runs (deploy/lab/build-kubernetes.sh says
/// why 1.34).
pub const KUBERNETES_VERSION: &str = "v1.34.4";
/// The Service CIDR: outside Romana's default 10.0.0.0/8 and the lab's
/// 10.244.0.0/16 ptp pod networks.
pub const SERVICE_CIDR: &str = "172.20.0.0/16";
/// The cluster DNS Service's address every kubelet gives its pods
/// (`clusterDNS`); a `kube-dns` Service in kube-system takes it.
pub const CLUSTER_DNS_IP: &str = "172.20.0.10";
/// The `kubernetes` Service's ClusterIP (the first of [`SERVICE_CIDR`]).
pub const KUBERNETES_SERVICE_IP: &str = "172.20.0.1";
/// Pod networks of `--cni ptp`: host N gets 10.244.N.0/24.
pub const PTP_POD_CIDR: &str = "10.244.0.0/16";
/// How long the control plane and the kubelets may take to come up.
pub const KUBERNETES_TIMEOUT: Duration = Duration::from_secs(180);

/// Paths inside a host's mount namespace that are bind-mounted from the
/// host's own directory (see the module documentation).
pub const HOST_PRIVATE_PATHS: [&str; 12] = [
    "/etc/cni/net.d",
    "/opt/cni/bin",
    "/run",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/lib/cni",
    "/var/lib/romana",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/kubernetes",
    "/tmp",
    "/opt/containerd",
];

/// Global (not per-namespace) sysctls a kubelet sets at start
/// (`protectKernelDefaults: false`); the lab restores them at `down`.
const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Which CNI the hosts start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabCni {
    /// The reference ptp + host-local plugins, routes between hosts.
    Ptp,
    /// Empty CNI directories: an installer (Romana's DaemonSet) fills them.
    None,
}

impl std::str::FromStr for LabCni {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "ptp" => Ok(LabCni::Ptp),
            "none" => Ok(LabCni::None),
            other => Err(format!("--cni {other:?}: expected ptp or none")),
        }
    }
}

/// Where the Kubernetes pieces come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubernetesOptions {
    pub cni: LabCni,
    /// kube-apiserver, kubelet, …, kubectl, etcd (build-kubernetes.sh).
    pub kubernetes_bin: PathBuf,
    /// pause.tar and romana-test.tar (build-images.sh).
    pub images_dir: PathBuf,
    /// Everything the hosts see: PKI, configs, per-host roots, logs. Not
    /// under /run or /tmp, which the hosts' mount namespaces cover.
    pub state_dir: PathBuf,
}

impl KubernetesOptions {
    /// The defaults: the caches the build scripts fill.
    pub fn defaults(lab_name: &str, cni: LabCni) -> Self {
        let cache = std::env::var_os("ROMANA_K8S_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/romana-k8s"));
        KubernetesOptions {
            cni,
            kubernetes_bin: cache.join(KUBERNETES_VERSION).join("bin"),
            images_dir: cache.join("images").join("current"),
            state_dir: PathBuf::from("/var/lib/romana-lab").join(lab_name),
        }
    }

    fn validate(&self) -> Result<()> {
        for binary in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubectl",
            "etcd",
        ] {
            if !self.kubernetes_bin.join(binary).exists() {
                return fail(format!(
                    "{binary} not found in {} (run deploy/lab/build-kubernetes.sh)",
                    self.kubernetes_bin.display()
                ));
            }
        }
        for image in ["pause.tar", "romana-test.tar"] {
            if !self.images_dir.join(image).exists() {
                return fail(format!(
                    "{image} not found in {} (run deploy/lab/build-images.sh)",
                    self.images_dir.display()
                ));
            }
        }
        for state_root in ["/run", "/tmp"] {
            if self.state_dir.starts_with(state_root) {
                return fail(format!(
                    "the Kubernetes state dir {} must not be under {state_root}, which every host covers",
                    self.state_dir.display()
                ));
            }
        }
        Ok(())
    }
}

/// One process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub log: PathBuf,
}

/// A host's Kubernetes side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubernetesHost {
    pub name: String,
    /// The bind mount that keeps the host's mount namespace.
    pub mount_namespace: PathBuf,
    /// `/LAB-hostN`, under every cgroup hierarchy.
    pub cgroup_root: String,
    /// The host's files, bind-mounted over [`HOST_PRIVATE_PATHS`].
    pub root: PathBuf,
}

/// What `lab.json` records of the Kubernetes mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubernetesLab {
    pub options: KubernetesOptions,
    pub hosts: Vec<KubernetesHost>,
    pub components: Vec<Component>,
    /// Mount points the lab had to create in the machine's file system
    /// (removed at `down` if still empty).
    pub created_mountpoints: Vec<PathBuf>,
    /// The values of [`KUBELET_SYSCTLS`] before the lab started.
    pub saved_sysctls: Vec<(String, String)>,
    /// The apiserver's address.
    pub apiserver: String,
}

impl KubernetesLab {
    fn admin_kubeconfig(&self) -> PathBuf {
        self.options.state_dir.join("pki").join("admin.kubeconfig")
    }
    fn host(&self, name: &str) -> Result<&KubernetesHost> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::Message(format!("no host named {name:?} in the lab")))
    }
}

/// The cgroup hierarchies of this machine: every directory under
/// /sys/fs/cgroup that is a mount point (v1 controllers, `systemd`, and the
/// hybrid layout's `unified`).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut hierarchies: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let kind = fields.next()?;
            ((kind == "cgroup" || kind == "cgroup2") && target.starts_with("/sys/fs/cgroup"))
                .then(|| PathBuf::from(target))
        })
        .collect();
    hierarchies.sort();
    hierarchies.dedup();
    hierarchies
}

/// Creates `root` in every hierarchy; cpuset needs its cpus and mems copied
/// from the parent before any task may join.
fn setup_cgroup_root(root: &str) -> Result<()> {
    for hierarchy in cgroup_hierarchies() {
        let path = hierarchy.join(root.trim_start_matches('/'));
        fs::create_dir_all(&path)
            .map_err(|e| LabError::Message(format!("create cgroup {}: {e}", path.display())))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = hierarchy.join(file);
            if let Ok(value) = fs::read_to_string(&parent) {
                fs::write(path.join(file), value.trim()).map_err(|e| {
                    LabError::Message(format!("write {}: {e}", path.join(file).display()))
                })?;
            }
        }
    }
    Ok(())
}

/// `top` and every directory below it, each before its children (so the
/// reverse order removes children first).
fn directories_under(top: PathBuf) -> Vec<PathBuf> {
    let mut order = Vec::new();
    let mut stack = vec![top];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        order.push(dir);
    }
    order
}

/// Every process in `root`'s subtree of any hierarchy.
fn cgroup_processes(root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for hierarchy in cgroup_hierarchies() {
        for dir in directories_under(hierarchy.join(root.trim_start_matches('/'))) {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes `root`'s subtree from every hierarchy, deepest first (cgroups are
/// removed with rmdir, and only once empty).
fn teardown_cgroup_root(root: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for hierarchy in cgroup_hierarchies() {
        let top = hierarchy.join(root.trim_start_matches('/'));
        if !top.exists() {
            continue;
        }
        for dir in directories_under(top).iter().rev() {
            let mut removed = false;
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    removed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !removed {
                problems.push(format!("cgroup {} could not be removed", dir.display()));
            }
        }
    }
    problems
}

/// The inode of a mount-namespace file (what /proc/PID/ns/mnt links to).
fn namespace_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Every process whose mount namespace is `namespace`.
fn processes_in_mount_namespace(namespace: &Path) -> Vec<u32> {
    let Some(inode) = namespace_inode(namespace) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| namespace_inode(&PathBuf::from(format!("/proc/{pid}/ns/mnt"))) == Some(inode))
        .collect()
}

fn kill(pids: &[u32]) {
    let mut args = vec!["-9".to_string()];
    args.extend(pids.iter().map(u32::to_string));
    let _ = Command::new("kill")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process's command line, or "" once it is gone.
pub fn process_command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

fn is_mountpoint(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let target = path.display().to_string();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(target.as_str()))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| LabError::Message(format!("create {}: {e}", parent.display())))?;
    }
    fs::write(path, text).map_err(|e| LabError::Message(format!("write {}: {e}", path.display())))
}

/// Where the lab keeps a copy of its Kubernetes state, beside the hosts'
/// files.
pub fn saved_state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("kubernetes.json")
}

/// The deploy/lab scripts, compiled in so that `romana-lab` works from any
/// directory.
const PKI_SCRIPT: &str = include_str!("../../../deploy/lab/kube-pki.sh");

impl Lab {
    /// The Kubernetes side of the lab, or an error naming the missing flag.
    pub fn kubernetes(&self) -> Result<&KubernetesLab> {
        self.kubernetes.as_ref().ok_or_else(|| {
            LabError::Message("this lab was started without --kubernetes".to_string())
        })
    }

    /// Creates a lab in Kubernetes mode: hosts as network and mount
    /// namespaces, the control plane on host1, containerd, a kubelet and
    /// kube-proxy on every host; waits until every Node is registered (and
    /// Ready, with `--cni ptp`).
    pub fn up_kubernetes(
        config: LabConfig,
        hosts: usize,
        options: KubernetesOptions,
    ) -> Result<Self> {
        config.validate_name()?;
        options.validate()?;
        if !(1..=10).contains(&hosts) {
            return fail("--hosts must be 1 to 10 in Kubernetes mode");
        }
        if config.state_file().exists() {
            return fail(format!(
                "a lab is already up in {}; run `romana-lab down` first",
                config.dir.display()
            ));
        }
        if options.state_dir.exists() {
            return fail(format!(
                "{} exists (a lab that was not taken down?); run `romana-lab --name {} down`",
                options.state_dir.display(),
                config.name
            ));
        }
        fs::create_dir_all(&config.dir)
            .map_err(|e| LabError::Message(format!("create {}: {e}", config.dir.display())))?;
        let apiserver = config.underlay_ip(1);
        let saved_sysctls = KUBELET_SYSCTLS
            .iter()
            .filter_map(|name| {
                let value = fs::read_to_string(format!("/proc/sys/{name}")).ok()?;
                Some((name.to_string(), value.trim().to_string()))
            })
            .collect();
        let mut lab = Lab {
            config,
            hosts: Vec::new(),
            pods: Vec::new(),
            kubernetes: Some(KubernetesLab {
                options,
                hosts: Vec::new(),
                components: Vec::new(),
                created_mountpoints: Vec::new(),
                saved_sysctls,
                apiserver,
            }),
        };
        lab.save()?;
        let bridge = lab.config.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for index in 1..=hosts {
            let host = lab.setup_host_network(index)?;
            lab.hosts.push(host);
            lab.save()?;
        }
        lab.setup_kubernetes_hosts()?;
        lab.save()?;
        lab.start_control_plane()?;
        for index in 0..lab.hosts.len() {
            lab.start_node_components(index)?;
            lab.save()?;
        }
        let cni = lab.kubernetes()?.options.cni;
        let want_ready = cni == LabCni::Ptp;
        lab.wait_kubernetes(
            if want_ready {
                "every Node to be Ready"
            } else {
                "every Node to register"
            },
            |lab| lab.nodes_registered(want_ready).is_ok_and(|n| n == hosts),
        )?;
        // The default ServiceAccount is what pods run as; the controller
        // creates it shortly after the namespace exists.
        lab.wait_kubernetes("the default ServiceAccount", |lab| {
            lab.kubectl(&["get", "serviceaccount", "default", "-o", "name"])
                .is_ok()
        })?;
        Ok(lab)
    }

    /// Per-host mount namespaces, private directories and cgroup roots,
    /// and the cluster's certificates.
    fn setup_kubernetes_hosts(&mut self) -> Result<()> {
        let name = self.config.name.clone();
        let host_names: Vec<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        let kubernetes = self
            .kubernetes
            .as_mut()
            .ok_or_else(|| LabError::Message("internal: Kubernetes state missing".to_string()))?;
        let state = kubernetes.options.state_dir.clone();
        let pki = state.join("pki");
        let script = state.join("kube-pki.sh");
        write_file(&script, PKI_SCRIPT)?;
        let mut pki_args = vec![
            script.display().to_string(),
            pki.display().to_string(),
            kubernetes.apiserver.clone(),
            KUBERNETES_SERVICE_IP.to_string(),
        ];
        pki_args.extend(host_names.iter().cloned());
        let pki_refs: Vec<&str> = pki_args.iter().map(String::as_str).collect();
        run("bash", &pki_refs)?;

        // The directory holding the namespace files must be a private mount,
        // or the kernel refuses to bind a mount namespace onto a file in it.
        let namespaces = state.join("ns");
        fs::create_dir_all(&namespaces).map_err(|e| LabError::Message(e.to_string()))?;
        let namespaces_text = namespaces.display().to_string();
        run("mount", &["--bind", &namespaces_text, &namespaces_text])?;
        run("mount", &["--make-private", &namespaces_text])?;

        for path in HOST_PRIVATE_PATHS {
            let path = PathBuf::from(path);
            if !path.exists() {
                // Remember the topmost directory we create, to remove it later.
                let mut topmost = path.clone();
                while let Some(parent) = topmost.parent() {
                    if parent.exists() {
                        break;
                    }
                    topmost = parent.to_path_buf();
                }
                fs::create_dir_all(&path)
                    .map_err(|e| LabError::Message(format!("create {}: {e}", path.display())))?;
                kubernetes.created_mountpoints.push(topmost);
            }
        }

        for host in host_names {
            let root = state.join(&host).join("root");
            for path in HOST_PRIVATE_PATHS {
                let private = root.join(path.trim_start_matches('/'));
                fs::create_dir_all(&private)
                    .map_err(|e| LabError::Message(format!("create {}: {e}", private.display())))?;
            }
            let tmp = root.join("tmp");
            run("chmod", &["1777", &tmp.display().to_string()])?;
            let mount_namespace = namespaces.join(&host);
            fs::File::create(&mount_namespace).map_err(|e| LabError::Message(e.to_string()))?;
            let namespace_text = mount_namespace.display().to_string();
            run(
                "unshare",
                &[
                    &format!("--mount={namespace_text}"),
                    "--propagation",
                    "private",
                    "true",
                ],
            )?;
            let mut binds = String::new();
            for path in HOST_PRIVATE_PATHS {
                let private = root.join(path.trim_start_matches('/'));
                binds.push_str(&format!(
                    "mount --bind '{}' '{path}' && ",
                    private.display()
                ));
            }
            binds.push_str("true");
            run(
                "nsenter",
                &[
                    &format!("--mount={namespace_text}"),
                    "--",
                    "sh",
                    "-c",
                    &binds,
                ],
            )?;
            let cgroup_root = format!("/{name}-{host}");
            setup_cgroup_root(&cgroup_root)?;
            kubernetes.hosts.push(KubernetesHost {
                name: host,
                mount_namespace,
                cgroup_root,
                root,
            });
        }
        Ok(())
    }

    /// A command line that runs `program` inside `host`'s network and mount
    /// namespaces.
    fn host_command(&self, host: &str, program: &Path) -> Result<Command> {
        let kubernetes = self.kubernetes()?;
        let network = &self.host(host)?.netns;
        let mount = &kubernetes.host(host)?.mount_namespace;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{network}"))
            .arg(format!("--mount={}", mount.display()))
            .arg("--")
            .arg(program);
        Ok(command)
    }

    /// Runs a command inside a host (its network and mount namespaces);
    /// its stdout, or an error with its stderr.
    pub fn exec_in_host(&self, host: &str, command: &[&str]) -> Result<String> {
        let Some((program, args)) = command.split_first() else {
            return fail("exec: no command given");
        };
        let output = self
            .host_command(host, Path::new(program))?
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LabError::Message(format!("nsenter: {e}")))?;
        if !output.status.success() {
            return fail(format!(
                "{} on {host} failed: {}{}",
                command.join(" "),
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// Starts a long-running component inside `host`, its output appended to
    /// `STATE/HOST/logs/NAME.log`.
    fn spawn_component(
        &mut self,
        host: &str,
        name: &str,
        program: &Path,
        args: &[String],
    ) -> Result<()> {
        let kubernetes = self.kubernetes()?;
        let log = kubernetes
            .options
            .state_dir
            .join(host)
            .join("logs")
            .join(format!("{name}.log"));
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(|e| LabError::Message(e.to_string()))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::Message(format!("open {}: {e}", log.display())))?;
        let file_clone = file
            .try_clone()
            .map_err(|e| LabError::Message(e.to_string()))?;
        let child = self
            .host_command(host, program)?
            .args(args)
            .stdin(Stdio::null())
            .stdout(file_clone)
            .stderr(file)
            .spawn()
            .map_err(|e| LabError::Message(format!("start {name} on {host}: {e}")))?;
        let component = Component {
            name: name.to_string(),
            host: host.to_string(),
            pid: child.id(),
            log,
        };
        if let Some(kubernetes) = self.kubernetes.as_mut() {
            kubernetes.components.push(component);
        }
        self.save()
    }

    fn kubernetes_binary(&self, name: &str) -> Result<PathBuf> {
        Ok(self.kubernetes()?.options.kubernetes_bin.join(name))
    }

    /// Fails with the component's last log lines if it is not running.
    fn check_running(&self, name: &str, host: &str) -> Result<()> {
        let kubernetes = self.kubernetes()?;
        for component in kubernetes
            .components
            .iter()
            .filter(|c| c.name == name && c.host == host)
        {
            if !Path::new(&format!("/proc/{}", component.pid)).exists() {
                let log = fs::read_to_string(&component.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return fail(format!(
                    "{name} on {host} exited; last lines of {}:\n{}",
                    component.log.display(),
                    tail.join("\n")
                ));
            }
        }
        Ok(())
    }

    fn wait_kubernetes(&self, what: &str, condition: impl Fn(&Lab) -> bool) -> Result<()> {
        let deadline = Instant::now() + KUBERNETES_TIMEOUT;
        while Instant::now() < deadline {
            if condition(self) {
                return Ok(());
            }
            if let Ok(kubernetes) = self.kubernetes() {
                for component in &kubernetes.components {
                    self.check_running(&component.name, &component.host)?;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        fail(format!(
            "timed out after {KUBERNETES_TIMEOUT:?} waiting for {what}"
        ))
    }

    /// etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
    /// host1.
    fn start_control_plane(&mut self) -> Result<()> {
        let kubernetes = self.kubernetes()?.clone();
        let state = &kubernetes.options.state_dir;
        let pki = state.join("pki");
        let host = self.hosts[0].name.clone();
        let etcd_dir = state.join(&host).join("etcd");
        let p = |file: &str| pki.join(file).display().to_string();
        self.spawn_component(
            &host,
            "etcd",
            &self.kubernetes_binary("etcd")?,
            &[
                "--name=lab".into(),
                format!("--data-dir={}", etcd_dir.display()),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=lab=http://127.0.0.1:2380".into(),
                "--listen-metrics-urls=http://127.0.0.1:2381".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let apiserver = &kubernetes.apiserver;
        self.spawn_component(
            &host,
            "kube-apiserver",
            &self.kubernetes_binary("kube-apiserver")?,
            &[
                format!("--advertise-address={apiserver}"),
                format!("--bind-address={apiserver}"),
                "--secure-port=6443".into(),
                "--etcd-servers=http://127.0.0.1:2379".into(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!(
                    "--kubelet-client-certificate={}",
                    p("apiserver-kubelet-client.crt")
                ),
                format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--authorization-mode=Node,RBAC".into(),
                // On top of the default set (NamespaceLifecycle, LimitRanger,
                // ServiceAccount, DefaultStorageClass, PodSecurity, …).
                "--enable-admission-plugins=NodeRestriction".into(),
                // Romana's DaemonSet is privileged (network administration).
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        self.wait_kubernetes("kube-apiserver to be ready", |lab| {
            lab.kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|out| out.trim() == "ok")
        })?;
        let common = |kubeconfig: &str| {
            vec![
                format!("--kubeconfig={}", p(kubeconfig)),
                format!("--authentication-kubeconfig={}", p(kubeconfig)),
                format!("--authorization-kubeconfig={}", p(kubeconfig)),
                "--bind-address=127.0.0.1".to_string(),
                // One instance of each: no lease to wait for.
                "--leader-elect=false".to_string(),
                "--v=1".to_string(),
            ]
        };
        let mut controller_manager = common("controller-manager.kubeconfig");
        controller_manager.extend([
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=true".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!("--cluster-signing-cert-file={}", p("ca.crt")),
            format!("--cluster-signing-key-file={}", p("ca.key")),
        ]);
        self.spawn_component(
            &host,
            "kube-controller-manager",
            &self.kubernetes_binary("kube-controller-manager")?,
            &controller_manager,
        )?;
        self.spawn_component(
            &host,
            "kube-scheduler",
            &self.kubernetes_binary("kube-scheduler")?,
            &common("scheduler.kubeconfig"),
        )?;
        Ok(())
    }

    /// containerd (with the lab's images), the CNI of `--cni`, a kubelet and
    /// kube-proxy on host `index`.
    fn start_node_components(&mut self, index: usize) -> Result<()> {
        let kubernetes = self.kubernetes()?.clone();
        let host = self.hosts[index].clone();
        let state = kubernetes.options.state_dir.clone();
        let host_state = state.join(&host.name);
        let pki = state.join("pki");
        let cgroup_root = kubernetes.host(&host.name)?.cgroup_root.clone();
        let root = kubernetes.host(&host.name)?.root.clone();

        // Per-namespace settings a node needs: forwarding for pods.
        crate::lab::in_netns(&host.netns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // Host-originated traffic to a ClusterIP needs a route before
        // kube-proxy's DNAT rewrites it (the underlay has no default route).
        crate::lab::in_netns(
            &host.netns,
            &["ip", "route", "replace", SERVICE_CIDR, "dev", "eth0"],
        )?;

        let containerd_config = host_state.join("containerd.toml");
        write_file(&containerd_config, &containerd_configuration())?;
        self.spawn_component(
            &host.name,
            "containerd",
            Path::new("/usr/bin/containerd"),
            &[format!("--config={}", containerd_config.display())],
        )?;
        self.wait_kubernetes(&format!("containerd on {}", host.name), |lab| {
            lab.exec_in_host(
                &host.name,
                &[
                    "ctr",
                    "--address",
                    "/run/containerd/containerd.sock",
                    "version",
                ],
            )
            .is_ok()
        })?;
        for image in ["pause.tar", "romana-test.tar"] {
            let archive = kubernetes.options.images_dir.join(image);
            self.exec_in_host(
                &host.name,
                &[
                    "ctr",
                    "--address",
                    "/run/containerd/containerd.sock",
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    &archive.display().to_string(),
                ],
            )?;
        }

        if kubernetes.options.cni == LabCni::Ptp {
            self.setup_ptp(index, &root)?;
        }

        let resolv = host_state.join("resolv.conf");
        write_file(&resolv, "nameserver 127.0.0.1\noptions ndots:1\n")?;
        let kubelet_config = host_state.join("kubelet.yaml");
        write_file(
            &kubelet_config,
            &kubelet_configuration(
                &host.underlay_ip,
                &pki.join("ca.crt"),
                &cgroup_root,
                &resolv,
            ),
        )?;
        self.spawn_component(
            &host.name,
            "kubelet",
            &self.kubernetes_binary("kubelet")?,
            &[
                format!("--config={}", kubelet_config.display()),
                format!(
                    "--kubeconfig={}",
                    pki.join(format!("{}.kubeconfig", host.name)).display()
                ),
                format!("--hostname-override={}", host.name),
                format!("--node-ip={}", host.underlay_ip),
                "--v=1".into(),
            ],
        )?;
        let proxy_config = host_state.join("kube-proxy.yaml");
        let cluster_cidr = match kubernetes.options.cni {
            LabCni::Ptp => PTP_POD_CIDR.to_string(),
            // Romana's default address space (issue 13's install).
            LabCni::None => "10.0.0.0/8".to_string(),
        };
        write_file(
            &proxy_config,
            &kube_proxy_configuration(
                &pki.join("kube-proxy.kubeconfig"),
                &host.name,
                &cluster_cidr,
            ),
        )?;
        self.spawn_component(
            &host.name,
            "kube-proxy",
            &self.kubernetes_binary("kube-proxy")?,
            &[
                format!("--config={}", proxy_config.display()),
                "--v=1".into(),
            ],
        )?;
        Ok(())
    }

    /// `--cni ptp`: the reference plugins in the host's /opt/cni/bin, a
    /// conflist for 10.244.N.0/24, and a route to every other host's subnet.
    fn setup_ptp(&self, index: usize, root: &Path) -> Result<()> {
        let host = &self.hosts[index];
        let plugin_dir = Path::new("/usr/lib/cni");
        for plugin in ["ptp", "host-local", "portmap", "loopback"] {
            let source = plugin_dir.join(plugin);
            let target = root.join("opt/cni/bin").join(plugin);
            fs::copy(&source, &target).map_err(|e| {
                LabError::Message(format!(
                    "copy {} (containernetworking-plugins): {e}",
                    source.display()
                ))
            })?;
        }
        let number = index + 1;
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "lab-ptp",
            "plugins": [
                {
                    "type": "ptp",
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.244.{number}.0/24")}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        write_file(
            &root.join("etc/cni/net.d/10-lab-ptp.conflist"),
            &serde_json::to_string_pretty(&conflist).unwrap_or_default(),
        )?;
        for (other_index, other) in self.hosts.iter().enumerate() {
            if other_index == index {
                continue;
            }
            let subnet = format!("10.244.{}.0/24", other_index + 1);
            crate::lab::in_netns(
                &host.netns,
                &["ip", "route", "replace", &subnet, "via", &other.underlay_ip],
            )?;
        }
        Ok(())
    }

    /// kubectl with the lab's admin kubeconfig, run in host1's network
    /// namespace (where the apiserver's underlay address is reachable).
    pub fn kubectl_command(&self, args: &[&str]) -> Result<Command> {
        let kubernetes = self.kubernetes()?;
        let first = self
            .hosts
            .first()
            .ok_or_else(|| LabError::Message("the lab has no hosts".to_string()))?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", first.netns))
            .arg("--")
            .arg(kubernetes.options.kubernetes_bin.join("kubectl"))
            .arg(format!(
                "--kubeconfig={}",
                kubernetes.admin_kubeconfig().display()
            ))
            .args(args);
        Ok(command)
    }

    /// kubectl's stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_stdin(args, "")
    }

    /// kubectl attached to this process's stdin, stdout and stderr (for
    /// `romana-lab kubectl`: `apply -f -`, `--watch`, `exec -it`); its exit
    /// code.
    pub fn kubectl_attached(&self, args: &[&str]) -> Result<i32> {
        let status = self
            .kubectl_command(args)?
            .status()
            .map_err(|e| LabError::Message(format!("kubectl: {e}")))?;
        Ok(status.code().unwrap_or(1))
    }

    /// kubectl with `input` on its stdin (`kubectl apply -f -`); its stdout,
    /// or an error with its stderr.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Message(format!("kubectl: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // Dropped at the end of this block: kubectl sees end of input.
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| LabError::Message(format!("kubectl stdin: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| LabError::Message(format!("kubectl: {e}")))?;
        if !output.status.success() {
            return fail(format!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// Every process the lab's hosts run now (by mount namespace and by
    /// cgroup), with its command line: what `down` must end.
    pub fn kubernetes_processes(&self) -> Vec<(u32, String)> {
        let Ok(kubernetes) = self.kubernetes() else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for host in &kubernetes.hosts {
            pids.extend(processes_in_mount_namespace(&host.mount_namespace));
            pids.extend(cgroup_processes(&host.cgroup_root));
        }
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .map(|pid| (pid, process_command_line(pid)))
            .collect()
    }

    /// How many Nodes are registered (and Ready, if `ready`).
    pub fn nodes_registered(&self, ready: bool) -> Result<usize> {
        let text = self.kubectl(&["get", "nodes", "-o", "json"])?;
        let nodes: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LabError::Message(format!("kubectl get nodes: {e}")))?;
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .filter(|node| {
                !ready
                    || node["status"]["conditions"]
                        .as_array()
                        .is_some_and(|conditions| {
                            conditions
                                .iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
            })
            .count())
    }
}

/// containerd's configuration for a lab host. Every setting that differs
/// from containerd's defaults is there for the sandbox:
///
/// - `root`/`state` are the defaults, and per host thanks to the mount
///   namespace; `opt` is moved under /var/lib/containerd so nothing lands
///   in the machine's /opt.
/// - `SystemdCgroup = false`: no systemd runs here (PID 1 is not systemd),
///   so cgroupfs, which the kubelet is set to as well.
/// - `restrict_oom_score_adj = true`: the machine's root lacks
///   CAP_SYS_RESOURCE, so runc may not lower a container's oom_score_adj
///   below containerd's own (Guaranteed pods ask for -997); containerd clamps.
/// - `disable_apparmor`, `enable_selinux = false`: neither is set up here.
/// - the snapshotters btrfs, zfs, devmapper and aufs are disabled (no such
///   file systems; they only log errors); overlayfs is used.
/// - `sandbox_image` is the lab's own pause image (no registry to pull
///   registry.k8s.io/pause from); images are never pulled.
pub fn containerd_configuration() -> String {
    r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
"#
    .to_string()
}

/// The kubelet's configuration for a lab host. Settings the sandbox needs:
///
/// - `cgroupDriver: cgroupfs` and `cgroupRoot: /LAB-hostN`: no systemd; each
///   kubelet's pods under its own root so hosts never share a `kubepods`.
/// - `failSwapOn: false`: the kubelet's default refuses to start when swap
///   might be on; harmless here (no swap), and lab machines may have some.
/// - `oomScoreAdj: 0`: the default -999 needs CAP_SYS_RESOURCE, which the
///   machine's root lacks.
/// - `protectKernelDefaults: false`: the kubelet then sets a few global
///   sysctls (vm.overcommit_memory, kernel.panic, …); the lab saves and
///   restores them. With `true` it would refuse to start on this machine.
/// - eviction thresholds and image GC at their floor: a shared disk that
///   other work fills must not make lab nodes evict test pods.
/// - `resolvConf`: a lab file (the machine's resolver is not the pods').
/// - `clusterDNS`: [`CLUSTER_DNS_IP`], served once a `kube-dns` Service
///   exists (deploy/kubernetes/examples/dns-server.yaml).
/// - `readOnlyPort: 0`, anonymous auth off, webhook authn/authz: as a
///   production kubelet; `kubectl exec/logs` go through the apiserver's
///   client certificate.
/// - `address`: the host's underlay IP (the apiserver reaches it there).
pub fn kubelet_configuration(
    address: &str,
    client_ca: &Path,
    cgroup_root: &str,
    resolv_conf: &Path,
) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {client_ca}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
oomScoreAdj: 0
protectKernelDefaults: false
resolvConf: {resolv_conf}
clusterDomain: cluster.local
clusterDNS: ["{CLUSTER_DNS_IP}"]
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
"#,
        client_ca = client_ca.display(),
        resolv_conf = resolv_conf.display(),
    )
}

/// kube-proxy's configuration: iptables mode (Services and the in-cluster
/// `kubernetes` Service); the conntrack settings at 0 leave the kernel's
/// values alone (nf_conntrack_max is global, not per namespace, and only
/// the init namespace may set it).
pub fn kube_proxy_configuration(kubeconfig: &Path, host: &str, cluster_cidr: &str) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
hostnameOverride: {host}
clusterCIDR: {cluster_cidr}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display(),
    )
}

/// Removes the Kubernetes side of a lab: every process of every host
/// (found by mount namespace and by cgroup, so also after a crash of the
/// lab), the cgroup roots, the mount namespaces, the saved sysctls restored,
/// the state dir and the mount points the lab created. Keeps going past
/// failures and reports them.
pub fn down_kubernetes(name: &str, kubernetes: Option<&KubernetesLab>) -> Vec<String> {
    let mut problems = Vec::new();
    let state_dir = kubernetes
        .map(|k| k.options.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from("/var/lib/romana-lab").join(name));
    // Without lab.json, the copy the lab keeps in its state dir.
    let recovered: Option<KubernetesLab> = match kubernetes {
        Some(_) => None,
        None => fs::read_to_string(saved_state_file(&state_dir))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok()),
    };
    let kubernetes = kubernetes.or(recovered.as_ref());
    let namespaces = state_dir.join("ns");
    let mut host_files: Vec<PathBuf> = fs::read_dir(&namespaces)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    host_files.sort();
    let cgroup_roots: Vec<String> = match kubernetes {
        Some(k) => k.hosts.iter().map(|h| h.cgroup_root.clone()).collect(),
        None => host_files
            .iter()
            .filter_map(|f| Some(format!("/{name}-{}", f.file_name()?.to_str()?)))
            .collect(),
    };
    // Processes go first, and again until none is left: a kubelet that is
    // still alive would start containers again.
    for _ in 0..20 {
        let mut pids = Vec::new();
        if let Some(k) = kubernetes {
            pids.extend(
                k.components
                    .iter()
                    .map(|c| c.pid)
                    .filter(|pid| Path::new(&format!("/proc/{pid}")).exists()),
            );
        }
        for file in &host_files {
            pids.extend(processes_in_mount_namespace(file));
        }
        for root in &cgroup_roots {
            pids.extend(cgroup_processes(root));
        }
        pids.retain(|pid| *pid != std::process::id());
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        kill(&pids);
        std::thread::sleep(Duration::from_millis(200));
    }
    for root in &cgroup_roots {
        problems.extend(teardown_cgroup_root(root));
    }
    for file in &host_files {
        if is_mountpoint(file) {
            if let Err(e) = run("umount", &[&file.display().to_string()]) {
                problems.push(e.to_string());
            }
        }
    }
    if is_mountpoint(&namespaces) {
        if let Err(e) = run("umount", &[&namespaces.display().to_string()]) {
            problems.push(e.to_string());
        }
    }
    if let Some(k) = kubernetes {
        for (sysctl, value) in &k.saved_sysctls {
            let path = format!("/proc/sys/{sysctl}");
            if fs::read_to_string(&path).map(|v| v.trim().to_string()).ok() != Some(value.clone()) {
                if let Err(e) = fs::write(&path, value) {
                    problems.push(format!("restore {path}: {e}"));
                }
            }
        }
        for mountpoint in &k.created_mountpoints {
            // Empty directories only: remove_dir refuses anything else.
            for dir in directories_under(mountpoint.clone()).iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            if mountpoint.exists() {
                problems.push(format!(
                    "{} is not empty; left in place",
                    mountpoint.display()
                ));
            }
        }
    }
    if state_dir.exists() {
        if let Err(e) = fs::remove_dir_all(&state_dir) {
            problems.push(format!("remove {}: {e}", state_dir.display()));
        }
    }
    // The labs' common parent (/var/lib/romana-lab), once no lab is left.
    if let Some(parent) = state_dir.parent() {
        let _ = fs::remove_dir(parent);
    }
    problems
}

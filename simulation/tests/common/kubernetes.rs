//! The Kubernetes lab for tests: one lab at a time per test binary,
//! uniquely named, taken down when the test ends whatever happens, and the
//! check that `down` left nothing behind.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use simulation::lab::kubernetes::{KubernetesOptions, LabCni};
use simulation::lab::{self, Lab, LabConfig};

/// One Kubernetes lab at a time: labs share the machine's mount points
/// (/var/lib/kubelet, …), which the first lab creates and removes.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());
static LABS: AtomicU32 = AtomicU32::new(0);

/// A Kubernetes lab taken down when the test ends, whatever happens.
pub struct KubernetesLabGuard {
    pub lab: Lab,
    pub name: String,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    // Dropped after the lab is down (fields drop after `drop`).
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl KubernetesLabGuard {
    pub fn up(hosts: usize, cni: LabCni) -> Self {
        let one_at_a_time = ONE_LAB_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let number = LABS.fetch_add(1, Ordering::SeqCst);
        let name = format!("kt{}{number}", std::process::id() % 10_000);
        let dir = PathBuf::from(format!("/run/romana-lab-test-{name}"));
        let config = LabConfig {
            dir: dir.clone(),
            name: name.clone(),
            // No romana binaries are needed with --cni ptp.
            bin_dir: PathBuf::from("/nonexistent"),
            subnet: 200 + ((std::process::id() + number) % 20) as u8,
            node_args: Vec::new(),
        };
        let options = KubernetesOptions::defaults(&name, cni);
        let state_dir = options.state_dir.clone();
        match Lab::up_kubernetes(config, hosts, options) {
            Ok(lab) => KubernetesLabGuard {
                lab,
                name,
                dir,
                state_dir,
                _one_at_a_time: one_at_a_time,
            },
            Err(e) => {
                let problems = lab::down(&name, &dir);
                panic!("kubernetes lab up: {e} (cleanup: {problems:?})");
            }
        }
    }

    /// `romanactl` (from `bin`) on a lab host.
    pub fn romanactl(
        &self,
        bin: &std::path::Path,
        host: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let binary = bin.join("romanactl").display().to_string();
        let mut command = vec![binary.as_str()];
        command.extend(args);
        self.lab
            .exec_in_host(host, &command)
            .map_err(|e| e.to_string())
    }

    /// The image `localhost/romana-node:latest` from `bin`'s binaries
    /// (`deploy/kubernetes/image.sh`), into every host's containerd.
    pub fn import_romana_image(&self, bin: &std::path::Path) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/image.sh");
        let image = std::process::Command::new(script)
            .args(["--lab", &self.name])
            .env("ROMANA_BIN_DIR", bin)
            .env("ROMANA_LAB_DIR", &self.dir)
            .env("ROMANA_LAB", env!("CARGO_BIN_EXE_romana-lab"))
            .stdout(std::process::Stdio::piped())
            .output()
            .expect("run image.sh");
        assert!(image.status.success(), "image.sh failed: {image:?}");
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.lab
            .kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&full)).expect("kubectl printed JSON")
    }

    pub fn apply(&self, manifest: &str) {
        self.lab
            .kubectl_stdin(&["apply", "-f", "-"], manifest)
            .unwrap_or_else(|e| panic!("kubectl apply: {e}"));
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let pods = self
            .lab
            .kubectl(&["get", "pods", "-A", "-o", "wide"])
            .unwrap_or_default();
        let events = self
            .lab
            .kubectl(&["get", "events", "-A"])
            .unwrap_or_default();
        panic!("timed out waiting for {what}\npods:\n{pods}\nevents:\n{events}");
    }

    /// Pods of `selector` as (name, node, phase, podIP).
    pub fn pods(&self, selector: &str) -> Vec<(String, String, String, String)> {
        let pods = self.kubectl_json(&["get", "pods", "-l", selector]);
        pods["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|pod| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&pod["metadata"]["name"]),
                    text(&pod["spec"]["nodeName"]),
                    text(&pod["status"]["phase"]),
                    text(&pod["status"]["podIP"]),
                )
            })
            .collect()
    }
}

impl Drop for KubernetesLabGuard {
    fn drop(&mut self) {
        let problems = lab::down(&self.name, &self.dir);
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("lab down: {problems:?}");
        }
    }
}

/// What `down` must not leave behind: anything by the lab's names, and any
/// of `processes` (pid and command line, taken while the lab ran) still
/// running.
pub fn leftovers(
    name: &str,
    state_dir: &std::path::Path,
    processes: &[(u32, String)],
) -> Vec<String> {
    let mut found: Vec<String> = processes
        .iter()
        .filter(|(pid, command)| {
            !command.is_empty() && lab::kubernetes::process_command_line(*pid) == *command
        })
        .map(|(pid, command)| format!("process {pid}: {command}"))
        .collect();
    let state = state_dir.display().to_string();
    let prefix = format!("{name}-");
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&state) {
                found.push(format!(
                    "process {}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    let netns = lab::run("ip", &["netns", "list"]).unwrap_or_default();
    found.extend(
        netns
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| format!("netns {l}")),
    );
    let links = lab::run("ip", &["-o", "link", "show"]).unwrap_or_default();
    found.extend(
        links
            .lines()
            .filter(|l| l.contains(&prefix))
            .map(|l| format!("link {l}")),
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&state))
            .map(|l| format!("mount {l}")),
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(children) = std::fs::read_dir(hierarchy.path()) {
            for child in children.flatten() {
                if child.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(format!("cgroup {}", child.path().display()));
                }
            }
        }
    }
    if state_dir.exists() {
        found.push(format!("state dir {state}"));
    }
    // `down` removes the labs' common parent once no lab is left in it; a
    // lab of another run (or one a killed run left) keeps it, and is not
    // this lab's leftover.
    if let Some(parent) = state_dir.parent() {
        let empty = std::fs::read_dir(parent).is_ok_and(|mut d| d.next().is_none());
        if empty {
            found.push(format!("the labs' state parent {}", parent.display()));
        }
    }
    found
}

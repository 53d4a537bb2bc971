//! Lab test harness: a lab per test, uniquely named, taken down when the
//! test ends whatever happens.

#![allow(dead_code)]

pub mod kubernetes;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use romana_testkit::ChildGuard;
use simulation::lab::{self, in_netns, Lab, LabConfig};

/// Drift-repair interval the lab nodes run with.
pub const RECONCILE_INTERVAL_MS: u64 = 500;
/// How long any wait for convergence may take.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

static LABS: AtomicU32 = AtomicU32::new(0);

/// The directory holding romana-node, romanactl and romana of this build,
/// building them first if this test binary was built alone.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .expect("test binary inside target/PROFILE/deps");
    let missing = ["romana-node", "romanactl", "romana"]
        .iter()
        .any(|b| !dir.join(b).exists());
    if missing {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "romana-node", "-p", "romana-cni"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(
            build.status().expect("cargo build").success(),
            "build the binaries"
        );
    }
    dir
}

/// A lab that is taken down when the test ends, whatever happens.
pub struct LabGuard {
    pub lab: Lab,
}

impl LabGuard {
    pub fn up(hosts: usize) -> Self {
        Self::up_with(hosts, &[])
    }

    /// A lab whose nodes also get `extra_args`.
    pub fn up_with(hosts: usize, extra_args: &[&str]) -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let name = format!("lt{}{n}", std::process::id() % 1000);
        let config = LabConfig {
            dir: PathBuf::from(format!("/run/romana-lab-test-{name}")),
            name: name.clone(),
            bin_dir: bin_dir(),
            subnet: 230 + (n % 20) as u8,
            node_args: std::iter::once(format!("--reconcile-interval-ms={RECONCILE_INTERVAL_MS}"))
                .chain(extra_args.iter().map(|a| a.to_string()))
                .collect(),
        };
        let dir = config.dir.clone();
        let lab = match Lab::up(config, hosts) {
            Ok(lab) => lab,
            Err(e) => {
                lab::down(&name, &dir);
                panic!("lab up: {e}");
            }
        };
        let guard = Self { lab };
        for tenant in ["t1", "t2"] {
            guard.ctl("host1", &["tenant", "create", tenant]);
        }
        guard
    }

    pub fn ctl(&self, host: &str, args: &[&str]) -> String {
        let host = self.lab.host(host).expect("host");
        self.lab
            .ctl(host, args)
            .unwrap_or_else(|e| panic!("romanactl {args:?}: {e}"))
    }

    pub fn pod(&mut self, host: &str, tenant: &str, name: &str) -> String {
        self.lab
            .add_pod(host, tenant, name)
            .unwrap_or_else(|e| panic!("pod {name}: {e}"))
            .ip
    }

    pub fn netns(&self, target: &str) -> String {
        match self.lab.pod(target) {
            Some(pod) => pod.netns.clone(),
            None => self.lab.host(target).expect("host or pod").netns.clone(),
        }
    }

    pub fn pings(&self, from: &str, to: &str) -> bool {
        in_netns(&self.netns(from), &["ping", "-c", "1", "-W", "2", to]).is_ok()
    }

    /// Romana's routes of a host: (destination, rest of the line).
    pub fn romana_routes(&self, host: &str) -> Vec<String> {
        in_netns(&self.netns(host), &["ip", "route", "show", "proto", "77"])
            .expect("ip route")
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        for problem in lab::down(&self.lab.config.name, &self.lab.config.dir) {
            eprintln!("lab down: {problem}");
        }
    }
}

/// A TCP server in a pod that answers one connection with "hello"; killed
/// when the guard drops.
pub fn tcp_server(netns: &str, port: u16) -> ChildGuard {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen()\nc,_=s.accept()\nc.sendall(b'hello')\nc.close()"
    );
    Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(ChildGuard::from_child)
        .expect("start the server")
}

/// Connects from a pod; what the server said.
pub fn tcp_client(netns: &str, address: &str, port: u16) -> String {
    let script = format!(
        "import socket,time\nfor _ in range(50):\n  try:\n    s=socket.create_connection(('{address}',{port}),timeout=2);print(s.recv(16).decode());break\n  except OSError:\n    time.sleep(0.1)"
    );
    in_netns(netns, &["python3", "-c", &script])
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Can `netns` open a TCP connection to `address:port` within a second?
/// (A refused connection counts as reached: the packet got through.)
pub fn tcp_reaches(netns: &str, address: &str, port: u16) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.socket()\ns.settimeout(1)\ntry:\n  s.connect(('{address}',{port}));sys.exit(0)\nexcept ConnectionRefusedError:\n  sys.exit(0)\nexcept OSError:\n  sys.exit(1)"
    );
    in_netns(netns, &["python3", "-c", &script]).is_ok()
}

/// Does a UDP datagram from `netns` reach a listener in `server_netns`?
pub fn udp_reaches(netns: &str, server_netns: &str, address: &str, port: u16) -> bool {
    let server = format!(
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',{port}))\ns.settimeout(2)\ntry:\n  s.recvfrom(64);print('got')\nexcept OSError:\n  print('none')"
    );
    let listener = Command::new("ip")
        .args(["netns", "exec", server_netns, "python3", "-c", &server])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("udp listener");
    std::thread::sleep(Duration::from_millis(300));
    let client = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(5):\n  s.sendto(b'x',('{address}',{port}));time.sleep(0.1)"
    );
    let _ = in_netns(netns, &["python3", "-c", &client]);
    let output = listener.wait_with_output().expect("listener output");
    String::from_utf8_lossy(&output.stdout).contains("got")
}

/// The project's rules on a host.
/// The project's rules on a host (every `ROMANA-*` chain), as
/// `iptables -S` prints them; `None` if iptables cannot be read.
pub fn romana_rules(netns: &str) -> Option<String> {
    let all = in_netns(netns, &["iptables", "-S"]).ok()?;
    Some(
        all.lines()
            .filter(|line| line.contains("ROMANA-"))
            .map(|line| format!("{line}\n"))
            .collect(),
    )
}

pub fn rules_of(lab: &LabGuard, host: &str) -> String {
    romana_rules(&lab.netns(host)).unwrap_or_default()
}

impl LabGuard {
    pub fn pod_in(&mut self, host: &str, tenant: &str, segment: &str, name: &str) -> String {
        self.lab
            .add_pod_in_segment(host, tenant, Some(segment), name)
            .unwrap_or_else(|e| panic!("pod {name}: {e}"))
            .ip
    }

    /// romanactl against host1.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let host = self.lab.host("host1").expect("host1");
        self.lab.ctl(host, args).map_err(|e| e.to_string())
    }

    /// Waits until every host's rules satisfy `condition`.
    pub fn wait_rules(&self, what: &str, condition: impl Fn(&str) -> bool) {
        self.wait_until(what, |lab| {
            (1..=lab.lab.hosts.len()).all(|h| {
                romana_rules(&lab.netns(&format!("host{h}")))
                    .is_some_and(|rules| rules.contains("-A ROMANA-FORWARD") && condition(&rules))
            })
        });
    }
}

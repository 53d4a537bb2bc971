//! The plugin chained with the reference `portmap` and `bandwidth` plugins
//! the way a runtime runs a conflist (libcni's `AddNetworkList`): each
//! plugin gets the list's `name` and `cniVersion`, the `runtimeConfig` of the
//! capabilities it declares, and the previous plugin's result as
//! `prevResult`; CHECK runs the list in order and DEL in reverse, both with
//! the cached final result as `prevResult`.
//!
//! Needs root, iptables, tc (iproute2), the reference plugins (Debian's
//! containernetworking-plugins: /usr/lib/cni, or /opt/cni/bin, or `CNI_PATH`)
//! and /bin/busybox (busybox-static) for the server in the pod.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    host_veths, plugin_dirs, reference_plugin, run_plugin, sh, unique, Invocation, Netns, Node,
    SharedHostportChains, PLUGIN,
};
use serde_json::{json, Value};

const CNI_VERSION: &str = "1.0.0";
const CONTAINER_PORT: u16 = 8080;
const BUSYBOX: &str = "/bin/busybox";

/// One attachment of a conflist: the plugins in order, what has been ADDed
/// so far and the cached result. Dropping it DELs whatever was ADDed (in
/// reverse, as a runtime does after a failed ADD) and removes any leftover
/// host veth and ifb device.
struct Attachment<'a> {
    network: String,
    container_id: String,
    netns: &'a Netns,
    /// (binary, plugin config without name, cniVersion and prevResult).
    plugins: Vec<(PathBuf, Value)>,
    added: usize,
    /// The result of the last ADDed plugin: what libcni caches.
    result: Option<Value>,
    host_veth: String,
    ifb: Option<String>,
}

impl<'a> Attachment<'a> {
    fn new(network: &str, netns: &'a Netns, plugins: Vec<(PathBuf, Value)>) -> Self {
        let container_id = unique("chain-");
        Self {
            network: network.to_string(),
            host_veth: romana_cni::plugin::host_veth_name(&container_id, "eth0"),
            container_id,
            netns,
            plugins,
            added: 0,
            result: None,
            ifb: None,
        }
    }

    fn stdin(&self, index: usize, previous: Option<&Value>) -> String {
        let mut config = self.plugins[index].1.clone();
        config["name"] = json!(self.network);
        config["cniVersion"] = json!(CNI_VERSION);
        if let Some(previous) = previous {
            config["prevResult"] = previous.clone();
        }
        config.to_string()
    }

    fn invoke(&self, command: &str, index: usize, previous: Option<&Value>) -> Invocation {
        let netns = self.netns.path();
        let cni_path = plugin_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.container_id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", cni_path.as_str()),
        ];
        run_plugin(&self.plugins[index].0, &env, &self.stdin(index, previous))
    }

    /// ADDs one more plugin (the next in the list) and returns its result.
    fn add_next(&mut self) -> Value {
        let index = self.added;
        let invocation = self.invoke("ADD", index, self.result.clone().as_ref());
        // Counted before checking: a failed ADD is DELed too.
        self.added += 1;
        assert!(
            invocation.success,
            "ADD of {:?} failed: {invocation:?}",
            self.plugins[index].0
        );
        let result = invocation.json();
        self.result = Some(result.clone());
        result
    }

    /// CHECK of every plugin, in order, against the cached result.
    ///
    /// portmap before 1.3 (Debian 12 ships 1.1.1) fails CHECK of an
    /// IPv4-only attachment because it also looks for an IPv6 chain it never
    /// created (containernetworking/plugins#819); that one known failure is
    /// accepted, and only from portmap.
    fn check(&self) {
        for index in 0..self.added {
            let invocation = self.invoke("CHECK", index, self.result.as_ref());
            let portmap_ipv6_bug = self.plugins[index].0.ends_with("portmap")
                && !invocation.success
                && invocation.stdout.contains("could not check ipv6 dnat");
            assert!(
                invocation.success || portmap_ipv6_bug,
                "CHECK of {:?} failed: {invocation:?}",
                self.plugins[index].0
            );
        }
    }

    /// DEL of the plugin at `index` with the cached result.
    fn del(&self, index: usize) -> Invocation {
        self.invoke("DEL", index, self.result.as_ref())
    }

    fn pod_address(&self) -> Ipv4Addr {
        let result = self.result.as_ref().expect("ADDed");
        result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("ips[0].address")
    }

    fn gateway(&self) -> Ipv4Addr {
        let result = self.result.as_ref().expect("ADDed");
        result["ips"][0]["gateway"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("ips[0].gateway")
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        for index in (0..self.added).rev() {
            let _ = self.del(index);
        }
        for link in [Some(self.host_veth.clone()), self.ifb.clone()]
            .into_iter()
            .flatten()
        {
            if link_exists(&link) {
                let _ = Command::new("ip").args(["link", "del", &link]).output();
            }
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A TCP server in the pod: busybox nc, persistent (`-ll`), answering every
/// connection with `token`. Killed on drop.
struct PodServer(Child);

impl PodServer {
    fn start(netns: &Netns, token: &str) -> Self {
        assert!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} is missing: install busybox-static"
        );
        let port = CONTAINER_PORT.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns.name,
                BUSYBOX,
                "nc",
                "-ll",
                "-p",
                &port,
                "-e",
                BUSYBOX,
                "echo",
                token,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server in the pod");
        let server = Self(child);
        // Listening when the pod's socket tables (nc listens on [::], dual
        // stack) have the port in state 0A.
        let local = format!(":{CONTAINER_PORT:04X}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let tables = netns.exec(&["cat", "/proc/net/tcp", "/proc/net/tcp6"]);
            let listening = String::from_utf8_lossy(&tables.stdout).lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "0A"
            });
            if listening {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server in the pod did not listen on {CONTAINER_PORT}");
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects from the host and reads what the server says.
fn fetch(address: SocketAddrV4) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address.into(), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text.trim().to_string())
}

/// A port nothing on the host listens on (any address).
fn free_host_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

#[test]
fn portmap_and_bandwidth_chain_after_romana() {
    let shared_chains = SharedHostportChains::snapshot();
    let node = Node::start();
    let netns = Netns::new();
    let host_port = free_host_port();
    let (ingress_rate, ingress_burst, egress_rate, egress_burst) =
        (8_000_000u64, 800_000u64, 16_000_000u64, 1_600_000u64);
    let plugins = vec![
        (PathBuf::from(PLUGIN), node.config("t1", CNI_VERSION)),
        (
            reference_plugin("portmap"),
            json!({
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "runtimeConfig": { "portMappings": [
                    { "hostPort": host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp" }
                ] },
            }),
        ),
        (
            reference_plugin("bandwidth"),
            json!({
                "type": "bandwidth",
                "capabilities": { "bandwidth": true },
                "runtimeConfig": { "bandwidth": {
                    "ingressRate": ingress_rate, "ingressBurst": ingress_burst,
                    "egressRate": egress_rate, "egressBurst": egress_burst,
                } },
            }),
        ),
    ];
    let mut attachment = Attachment::new("romana-t1", &netns, plugins);
    let token = format!("hello-from-{}", attachment.container_id);

    let started = Instant::now();
    let romana = attachment.add_next();
    // bandwidth looks for the host veth among the interfaces without a
    // sandbox (the peer of the pod's eth0); ours lists it first.
    assert_eq!(
        romana["interfaces"][0]["name"],
        json!(attachment.host_veth),
        "{romana}"
    );
    assert!(romana["interfaces"][0].get("sandbox").is_none(), "{romana}");
    let pod = attachment.pod_address();
    let gateway = attachment.gateway();
    let server = PodServer::start(&netns, &token);
    // The control: before portmap, nothing answers on the host port.
    assert!(
        fetch(SocketAddrV4::new(gateway, host_port)).is_err(),
        "something answers on {host_port} before portmap"
    );

    let portmap = attachment.add_next();
    assert_eq!(
        portmap["ips"], romana["ips"],
        "portmap passes the result through"
    );
    let bandwidth = attachment.add_next();
    let ifb = bandwidth["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .find(|name| name.starts_with("bwp"))
        .unwrap_or_else(|| panic!("bandwidth added no ifb device: {bandwidth}"))
        .to_string();
    attachment.ifb = Some(ifb.clone());
    let added = started.elapsed();
    attachment.check();

    // portmap: DNAT of the host port to the pod, in a chain of its own
    // (CNI-DN-<hash>) reached from CNI-HOSTPORT-DNAT with a rule whose
    // comment names the container.
    let nat = sh("iptables-save", &["-t", "nat"]);
    // (iptables-save escapes the comment's quotes: id: \"ID\".)
    let id_comment = format!("id: \\\"{}\\\"", attachment.container_id);
    let jump = nat
        .lines()
        .find(|l| l.starts_with("-A CNI-HOSTPORT-DNAT ") && l.contains(&id_comment))
        .unwrap_or_else(|| panic!("no portmap rule for the container:\n{nat}"));
    let chain = jump
        .split_whitespace()
        .skip_while(|w| *w != "-j")
        .nth(1)
        .expect("the container's chain")
        .to_string();
    assert!(chain.starts_with("CNI-DN-"), "{jump}");
    assert!(
        nat.lines().any(|l| l.starts_with(&format!("-A {chain} "))
            && l.contains(&format!("--dport {host_port}"))
            && l.contains(&format!("--to-destination {pod}:{CONTAINER_PORT}"))),
        "no DNAT of {host_port} to {pod}:{CONTAINER_PORT}:\n{nat}"
    );
    // Reached from the host two ways, both DNATed in nat OUTPUT (portmap
    // jumps to CNI-HOSTPORT-DNAT for every destination of type LOCAL):
    // - the gateway address on the host veth is a local address; the
    //   connection's source is that same address, which the pod reaches
    //   through its on-link gateway route, so no masquerade is needed;
    // - 127.0.0.1 works because portmap (snat, its default) marks packets
    //   from 127.0.0.1 for masquerade (to the host veth's address) and sets
    //   net.ipv4.conf.<host veth>.route_localnet=1, without which the kernel
    //   would refuse to route a 127.0.0.0/8 source out of the veth.
    for address in [gateway, Ipv4Addr::LOCALHOST] {
        let answer = fetch(SocketAddrV4::new(address, host_port))
            .unwrap_or_else(|e| panic!("{address}:{host_port}: {e}"));
        assert_eq!(answer, token, "via {address}:{host_port}");
    }

    // bandwidth: ingress (towards the pod) shaped by tbf on the host veth;
    // egress (from the pod) redirected from the host veth's ingress qdisc
    // to the ifb device and shaped there. Rates are bits/s, bursts bits
    // (tc shows bytes).
    let veth_qdiscs = sh("tc", &["qdisc", "show", "dev", &attachment.host_veth]);
    assert!(
        veth_qdiscs.contains("tbf 1: root")
            && veth_qdiscs.contains("rate 8Mbit")
            && veth_qdiscs.contains(&format!("burst {}b", ingress_burst / 8)),
        "{veth_qdiscs}"
    );
    assert!(veth_qdiscs.contains("qdisc ingress ffff:"), "{veth_qdiscs}");
    let redirect = sh(
        "tc",
        &[
            "filter",
            "show",
            "dev",
            &attachment.host_veth,
            "parent",
            "ffff:",
        ],
    );
    assert!(
        redirect.contains("mirred") && redirect.contains(&ifb),
        "{redirect}"
    );
    let ifb_qdiscs = sh("tc", &["qdisc", "show", "dev", &ifb]);
    assert!(
        ifb_qdiscs.contains("tbf 1: root")
            && ifb_qdiscs.contains("rate 16Mbit")
            && ifb_qdiscs.contains(&format!("burst {}b", egress_burst / 8)),
        "{ifb_qdiscs}"
    );

    // DEL in reverse, twice (DEL must be idempotent).
    let started_del = Instant::now();
    for round in 0..2 {
        for index in (0..attachment.added).rev() {
            let invocation = attachment.del(index);
            assert!(
                invocation.success && invocation.stdout.is_empty(),
                "DEL {index} (round {round}): {invocation:?}"
            );
            if round == 0 && index == 1 {
                // portmap gone, pod and server still there: refused again.
                assert!(
                    fetch(SocketAddrV4::new(gateway, host_port)).is_err(),
                    "the host port still answers after portmap's DEL"
                );
            }
        }
    }
    let deleted = started_del.elapsed();
    attachment.added = 0;
    drop(server);

    assert!(
        !host_veths().contains(&attachment.host_veth),
        "host veth left"
    );
    assert!(!link_exists(&ifb), "ifb device {ifb} left");
    let everything = sh("iptables-save", &[]);
    for trace in [
        attachment.container_id.clone(),
        chain.clone(),
        format!("--dport {host_port}"),
        format!("--dports {host_port}"),
    ] {
        assert!(
            !everything.contains(&trace),
            "iptables still has {trace:?}:\n{everything}"
        );
    }
    let held: Vec<Value> = node
        .allocations()
        .into_iter()
        .filter(|a| a["container_id"] == json!(attachment.container_id))
        .collect();
    assert!(held.is_empty(), "allocation left: {held:?}");
    assert!(
        sh("ip", &["route", "show", &format!("{pod}/32")])
            .trim()
            .is_empty(),
        "host route to {pod} left"
    );
    shared_chains.remove();
    if !shared_chains.existed {
        let nat = sh("iptables-save", &["-t", "nat"]);
        assert!(
            !nat.contains("CNI-HOSTPORT"),
            "portmap's shared chains left:\n{nat}"
        );
    }
    println!("chain ADD romana+portmap+bandwidth: {added:?}; DEL x2: {deleted:?}");
}

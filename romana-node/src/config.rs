//! `romana-node run` configuration: command-line flags, optionally on top of
//! a TOML file with the same keys (`data-dir = "/var/lib/romana"`). Flags win
//! over the file; the file wins over the defaults.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use clap::Args;
use raft_store::entry::validate_node_address;
use raft_store::entry::validate_node_name;
use raft_store::layout::AddressLayout;
use raft_store::state::MAX_VOTERS_TARGET;
use serde::Deserialize;

use crate::error::Error;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/romana";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9600";
pub use romana_api::paths::DEFAULT_API_SOCKET;
pub const DEFAULT_VOTERS: u8 = 3;
pub const DEFAULT_SNAPSHOT_LOGS: u64 = 10_000;
pub const DEFAULT_PURGE_KEEP_LOGS: u64 = 1_000;
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
pub const DEFAULT_ELECTION_TIMEOUT_MS_MIN: u64 = 400;
pub const DEFAULT_ELECTION_TIMEOUT_MS_MAX: u64 = 800;
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 10_000;

/// Flags of `romana-node run`. Every one may also be given in the file.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunArgs {
    /// TOML file with the same keys as these flags.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Node name (default: the hostname). A DNS-1123 name.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the log, snapshots and identity live [default: /var/lib/romana].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// TCP listener for peers and remote romanactl [default: 0.0.0.0:9600].
    #[arg(long)]
    pub listen: Option<String>,
    /// Address peers use to reach this node [default: derived from --listen].
    #[arg(long)]
    pub advertise: Option<String>,
    /// An existing member to join through (repeatable).
    #[arg(long)]
    #[serde(default)]
    pub join: Vec<String>,
    /// A join token from `romanactl token create` on a member (with
    /// --join and --ca-cert-hash): how a node without the cluster secret
    /// joins. Read once, on the first start.
    #[arg(long, env = "ROMANA_JOIN_TOKEN", hide_env_values = true)]
    #[serde(skip)]
    pub join_token: Option<String>,
    /// `sha256:HEX` of the cluster CA's public key, printed with the token:
    /// the joiner trusts only a member that proves it holds this CA.
    #[arg(long)]
    pub ca_cert_hash: Option<String>,
    /// Also serve `GET /metrics` (only that) in plain HTTP here, for a
    /// Prometheus without a client certificate (the DaemonSet: the host's
    /// IP, port 9601, named by the scrape annotations) [default: none].
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Record metrics (`GET /metrics`); off, requests and writes are not
    /// accounted and the route answers an empty exposition (the benchmark
    /// measures what they cost) [default: true].
    #[arg(long)]
    pub metrics: Option<bool>,
    /// Benchmarks only: plain HTTP between peers, no authentication on TCP.
    /// Accepted only with a loopback --listen and --advertise (`romana-node
    /// bench` measures what TLS costs with it).
    #[arg(long)]
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Unix socket for the CNI plugin and local tools, mode 0600
    /// [default: /run/romana/romana.sock].
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// File holding the cluster secret: every node given it derives the same
    /// cluster CA and certificates from it (it is never sent anywhere).
    /// Without it a new cluster generates a random CA in DATA_DIR/tls, and
    /// nodes join with --join-token.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Target number of voters (odd, 1 to 9; set when the cluster is created)
    /// [default: 3].
    #[arg(long)]
    pub voters: Option<u8>,
    /// Pod address range of a new cluster [default: 10.0.0.0/8]. This and
    /// the four widths below are used only when this node creates the
    /// cluster; they must sum to 32 minus the prefix length.
    #[arg(long)]
    pub cidr: Option<String>,
    /// Host bits of the address layout [default: 8].
    #[arg(long)]
    pub host_bits: Option<u8>,
    /// Tenant bits of the address layout [default: 4].
    #[arg(long)]
    pub tenant_bits: Option<u8>,
    /// Segment bits of the address layout [default: 4].
    #[arg(long)]
    pub segment_bits: Option<u8>,
    /// Endpoint bits of the address layout [default: 8].
    #[arg(long)]
    pub endpoint_bits: Option<u8>,
    /// Log format: text or json [default: text].
    #[arg(long)]
    pub log_format: Option<LogFormat>,
    /// Take a snapshot after this many entries since the last [default: 10000].
    #[arg(long)]
    pub snapshot_logs: Option<u64>,
    /// Entries kept in the log below a snapshot, for slow followers [default: 1000].
    #[arg(long)]
    pub purge_keep_logs: Option<u64>,
    /// Raft heartbeat interval [default: 100].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Raft election timeout, lower bound [default: 400].
    #[arg(long)]
    pub election_timeout_ms_min: Option<u64>,
    /// Raft election timeout, upper bound [default: 800].
    #[arg(long)]
    pub election_timeout_ms_max: Option<u64>,
    /// How long a write may wait for a leader to commit it before the caller
    /// gets an error [default: 5000].
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,
    /// Install routes to the other hosts' prefixes (off when something else,
    /// e.g. BGP, routes pod prefixes) [default: true].
    #[arg(long)]
    pub manage_routes: Option<bool>,
    /// Enforce tenant isolation with iptables (FORWARD policy DROP, the
    /// project's own chain; see the README) [default: true].
    #[arg(long)]
    pub firewall: Option<bool>,
    /// Let this host open connections to its pods (kubelet probes); with
    /// false, only replies to pods' own connections pass [default: true].
    #[arg(long)]
    pub allow_host_to_pods: Option<bool>,
    /// Keep audit records this many days (0: forever) [default: 0]. Pruned
    /// records can no longer be replayed from this node.
    #[arg(long)]
    pub audit_retention_days: Option<u64>,
    /// How often the routes are checked for drift even when nothing
    /// changed [default: 10000].
    #[arg(long)]
    pub reconcile_interval_ms: Option<u64>,
    /// Run in Kubernetes: bootstrap through the API (one cluster however
    /// many nodes start at once), resolve pods' tenants from their labels,
    /// mirror the cluster's objects while leading, write the CNI conflist
    /// once ready. Uses the in-cluster service account (or KUBECONFIG).
    #[arg(long)]
    #[serde(default)]
    pub kubernetes: bool,
    /// Tenants created when the cluster starts (repeatable; Kubernetes
    /// mode).
    #[arg(long = "tenant")]
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Tenant of pods whose pod and namespace carry no `romana.io/tenant`
    /// label; created with the others [default: default].
    #[arg(long)]
    pub default_tenant: Option<String>,
    /// Namespace of Romana's own objects (the bootstrap Secret)
    /// [default: $POD_NAMESPACE, else kube-system].
    #[arg(long)]
    pub kubernetes_namespace: Option<String>,
    /// Where the node writes its CNI conflist once it serves ADDs
    /// [default: /etc/cni/net.d].
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
}

/// Settings of Kubernetes mode.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The Secret holding the cluster secret: the bootstrap lock.
    pub secret_name: String,
    pub tenants: Vec<String>,
    pub default_tenant: String,
    pub cni_conf_dir: PathBuf,
}

pub const DEFAULT_TENANT: &str = "default";
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const CLUSTER_SECRET_NAME: &str = "romana-cluster";

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: String,
    pub join: Vec<String>,
    /// A join token and the CA hash it is redeemed against.
    pub join_token: Option<crate::tls::JoinToken>,
    /// Plain HTTP between peers (loopback benchmarks only).
    pub insecure_plaintext: bool,
    /// Whether metrics are recorded.
    pub metrics: bool,
    /// The plain metrics listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    pub api_socket: PathBuf,
    pub cluster_secret_file: Option<PathBuf>,
    pub voters: u8,
    /// The address layout this node would create a cluster with.
    pub layout: AddressLayout,
    /// Whether any layout flag was given (a joining or resuming node warns
    /// when they differ from the cluster's).
    pub layout_explicit: bool,
    pub log_format: LogFormat,
    pub snapshot_logs: u64,
    pub purge_keep_logs: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub write_timeout_ms: u64,
    pub manage_routes: bool,
    pub firewall: bool,
    pub allow_host_to_pods: bool,
    pub audit_retention_days: u64,
    pub reconcile_interval_ms: u64,
    /// Kubernetes mode, if on.
    pub kubernetes: Option<KubernetesConfig>,
}

impl RunArgs {
    /// Merge with the config file, apply defaults, validate.
    pub fn resolve(self) -> Result<NodeConfig, Error> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str::<RunArgs>(&text).map_err(|e| {
                    Error::Config(format!("config file {}: {}", path.display(), e.message()))
                })?
            }
            None => RunArgs::default(),
        };
        let join = if self.join.is_empty() {
            file.join
        } else {
            self.join
        };
        let name = match self.name.or(file.name) {
            Some(name) => name,
            None => hostname()?,
        };
        validate_node_name(&name).map_err(|e| Error::Config(format!("--name: {e}")))?;
        let listen_text = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            Error::Config(format!(
                "--listen {listen_text:?}: {e} (expected ADDR:PORT)"
            ))
        })?;
        let advertise = match self.advertise.or(file.advertise) {
            Some(advertise) => advertise,
            None => derive_advertise(listen)?,
        };
        let layout_explicit = [&self.cidr, &file.cidr].iter().any(|v| v.is_some())
            || [
                self.host_bits,
                file.host_bits,
                self.tenant_bits,
                file.tenant_bits,
                self.segment_bits,
                file.segment_bits,
                self.endpoint_bits,
                file.endpoint_bits,
            ]
            .iter()
            .any(|v| v.is_some());
        let defaults = AddressLayout::default();
        let cidr = self.cidr.or(file.cidr).unwrap_or_else(|| defaults.cidr());
        let layout = AddressLayout::new(
            &cidr,
            self.host_bits
                .or(file.host_bits)
                .unwrap_or(defaults.host_bits),
            self.tenant_bits
                .or(file.tenant_bits)
                .unwrap_or(defaults.tenant_bits),
            self.segment_bits
                .or(file.segment_bits)
                .unwrap_or(defaults.segment_bits),
            self.endpoint_bits
                .or(file.endpoint_bits)
                .unwrap_or(defaults.endpoint_bits),
        )
        .map_err(|e| Error::Config(format!("address layout (--cidr and --*-bits): {e}")))?;
        validate_node_address(&layout, &advertise)
            .map_err(|e| Error::Config(format!("--advertise: {e}")))?;
        for member in &join {
            validate_host_port("--join", member)?;
        }
        let ca_cert_hash = self.ca_cert_hash.or(file.ca_cert_hash);
        let join_token = match (self.join_token, ca_cert_hash) {
            (Some(token), Some(hash)) => {
                if join.is_empty() {
                    return Err(Error::Config(
                        "--join-token needs --join (a member to redeem it with)".into(),
                    ));
                }
                Some(
                    crate::tls::JoinToken::parse(&token, &hash)
                        .map_err(|e| Error::Config(format!("--join-token: {e}")))?,
                )
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "--join-token needs --ca-cert-hash (printed with the token)".into(),
                ))
            }
            (None, _) => None,
        };
        let insecure_plaintext = self.insecure_plaintext || file.insecure_plaintext;
        if insecure_plaintext {
            let advertise_ip = advertise
                .rsplit_once(':')
                .and_then(|(host, _)| host.parse::<IpAddr>().ok());
            if !listen.ip().is_loopback() || !advertise_ip.is_some_and(|ip| ip.is_loopback()) {
                return Err(Error::Config(
                    "--insecure-plaintext needs a loopback --listen and --advertise: it is for benchmarks on one machine".into(),
                ));
            }
        }
        let voters = self.voters.or(file.voters).unwrap_or(DEFAULT_VOTERS);
        if voters == 0 || voters > MAX_VOTERS_TARGET || voters.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "--voters must be odd, from 1 to {MAX_VOTERS_TARGET}; got {voters}"
            )));
        }
        let heartbeat_ms = self
            .heartbeat_ms
            .or(file.heartbeat_ms)
            .unwrap_or(DEFAULT_HEARTBEAT_MS);
        let election_timeout_ms_min = self
            .election_timeout_ms_min
            .or(file.election_timeout_ms_min)
            .unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS_MIN);
        let election_timeout_ms_max = self
            .election_timeout_ms_max
            .or(file.election_timeout_ms_max)
            .unwrap_or(DEFAULT_ELECTION_TIMEOUT_MS_MAX);
        if heartbeat_ms == 0
            || election_timeout_ms_min <= heartbeat_ms
            || election_timeout_ms_max <= election_timeout_ms_min
        {
            return Err(Error::Config(format!(
                "timeouts must satisfy 0 < heartbeat ({heartbeat_ms} ms) < election min ({election_timeout_ms_min} ms) < election max ({election_timeout_ms_max} ms)"
            )));
        }
        let snapshot_logs = self
            .snapshot_logs
            .or(file.snapshot_logs)
            .unwrap_or(DEFAULT_SNAPSHOT_LOGS);
        if snapshot_logs == 0 {
            return Err(Error::Config("--snapshot-logs must be at least 1".into()));
        }
        let write_timeout_ms = self
            .write_timeout_ms
            .or(file.write_timeout_ms)
            .unwrap_or(DEFAULT_WRITE_TIMEOUT_MS);
        if write_timeout_ms < 100 {
            return Err(Error::Config(
                "--write-timeout-ms must be at least 100".into(),
            ));
        }
        let kubernetes = if self.kubernetes || file.kubernetes {
            let mut tenants = if self.tenants.is_empty() {
                file.tenants
            } else {
                self.tenants
            };
            let default_tenant = self
                .default_tenant
                .or(file.default_tenant)
                .unwrap_or_else(|| DEFAULT_TENANT.to_string());
            if !tenants.contains(&default_tenant) {
                tenants.push(default_tenant.clone());
            }
            for tenant in &tenants {
                raft_store::entry::validate_label("tenant", tenant)
                    .map_err(|e| Error::Config(format!("tenants: {e}")))?;
            }
            let namespace = match self.kubernetes_namespace.or(file.kubernetes_namespace) {
                Some(namespace) => namespace,
                None => std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "kube-system".to_string()),
            };
            raft_store::entry::kubernetes::validate_namespace_name(&namespace)
                .map_err(|e| Error::Config(format!("--kubernetes-namespace: {e}")))?;
            Some(KubernetesConfig {
                namespace,
                secret_name: CLUSTER_SECRET_NAME.to_string(),
                tenants,
                default_tenant,
                cni_conf_dir: self
                    .cni_conf_dir
                    .or(file.cni_conf_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_CONF_DIR)),
            })
        } else {
            None
        };
        Ok(NodeConfig {
            kubernetes,
            name,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            advertise,
            join,
            join_token,
            insecure_plaintext,
            metrics: self.metrics.or(file.metrics).unwrap_or(true),
            metrics_listen: match self.metrics_listen.or(file.metrics_listen) {
                Some(text) => Some(text.parse().map_err(|e| {
                    Error::Config(format!(
                        "--metrics-listen {text:?}: {e} (expected ADDR:PORT)"
                    ))
                })?),
                None => None,
            },
            api_socket: self
                .api_socket
                .or(file.api_socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_API_SOCKET)),
            cluster_secret_file: self.cluster_secret_file.or(file.cluster_secret_file),
            voters,
            layout,
            layout_explicit,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            snapshot_logs,
            purge_keep_logs: self
                .purge_keep_logs
                .or(file.purge_keep_logs)
                .unwrap_or(DEFAULT_PURGE_KEEP_LOGS),
            heartbeat_ms,
            election_timeout_ms_min,
            election_timeout_ms_max,
            write_timeout_ms,
            manage_routes: self.manage_routes.or(file.manage_routes).unwrap_or(true),
            firewall: self.firewall.or(file.firewall).unwrap_or(true),
            allow_host_to_pods: self
                .allow_host_to_pods
                .or(file.allow_host_to_pods)
                .unwrap_or(true),
            audit_retention_days: self
                .audit_retention_days
                .or(file.audit_retention_days)
                .unwrap_or(0),
            reconcile_interval_ms: match self.reconcile_interval_ms.or(file.reconcile_interval_ms) {
                Some(0) => {
                    return Err(Error::Config(
                        "--reconcile-interval-ms must be at least 1".into(),
                    ))
                }
                Some(ms) => ms,
                None => DEFAULT_RECONCILE_INTERVAL_MS,
            },
        })
    }
}

fn validate_host_port(flag: &str, value: &str) -> Result<(), Error> {
    let bad = || Error::Config(format!("{flag} {value:?}: expected HOST:PORT"));
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// The machine's hostname, lowercased, as the default node name.
fn hostname() -> Result<String, Error> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| Error::Config(format!("cannot read the hostname ({e}); pass --name")))?;
    Ok(text.trim().to_ascii_lowercase())
}

/// With a specific listen address, advertise it; with an unspecified one
/// (0.0.0.0), advertise the address the kernel would use for outgoing
/// traffic. Connecting a UDP socket sends no packet; it only picks a route.
fn derive_advertise(listen: SocketAddr) -> Result<String, Error> {
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        // TEST-NET-1 (RFC 5737): documentation only, never routed to a host.
        socket.connect("192.0.2.1:9")?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => Ok(SocketAddr::new(ip, listen.port()).to_string()),
        _ => Err(Error::Config(format!(
            "cannot derive --advertise from --listen {listen} (no route to pick an address from); pass --advertise"
        ))),
    }
}

/// Where a new cluster keeps the secret it generated.
pub fn generated_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster-secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            name: Some("a".into()),
            listen: Some("127.0.0.1:9600".into()),
            ..RunArgs::default()
        }
    }

    #[test]
    fn defaults_and_derivations() {
        let config = args().resolve().expect("valid");
        assert_eq!(config.advertise, "127.0.0.1:9600");
        assert_eq!(config.voters, 3);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let cases: Vec<(RunArgs, &str)> = vec![
            (
                RunArgs {
                    voters: Some(2),
                    ..args()
                },
                "--voters",
            ),
            (
                RunArgs {
                    name: Some("Bad_Name".into()),
                    ..args()
                },
                "--name",
            ),
            (
                RunArgs {
                    listen: Some("nope".into()),
                    ..args()
                },
                "--listen",
            ),
            (
                RunArgs {
                    join: vec!["host".into()],
                    ..args()
                },
                "--join",
            ),
            (
                RunArgs {
                    advertise: Some("h:0".into()),
                    ..args()
                },
                "--advertise",
            ),
            (
                RunArgs {
                    election_timeout_ms_min: Some(10),
                    ..args()
                },
                "timeouts",
            ),
        ];
        for (case, flag) in cases {
            let error = case.resolve().expect_err("must be refused").to_string();
            assert!(error.contains(flag), "{error:?} should name {flag}");
        }
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("romana.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\nvoters = 5\ndata-dir = \"/tmp/x\"\njoin = [\"10.0.0.1:9600\"]\n",
        )
        .expect("write");
        let config = RunArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:1".into()),
            voters: Some(1),
            ..RunArgs::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(config.name, "from-file");
        assert_eq!(config.voters, 1, "the flag wins over the file");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.join, vec!["10.0.0.1:9600".to_string()]);
        std::fs::write(&path, "nmae = \"typo\"\n").expect("write");
        let error = RunArgs {
            config: Some(path),
            ..args()
        }
        .resolve()
        .expect_err("unknown key")
        .to_string();
        assert!(error.contains("nmae"), "{error}");
    }

    #[test]
    fn join_tokens_and_plaintext_are_checked() {
        let hash = format!("sha256:{}", "a".repeat(64));
        let with_token = |token: &str, hash: Option<&str>, join: Vec<String>| RunArgs {
            join_token: Some(token.into()),
            ca_cert_hash: hash.map(str::to_string),
            join,
            ..args()
        };
        let member = vec!["127.0.0.1:9600".to_string()];
        let config = with_token("abc123.0123456789abcdef", Some(&hash), member.clone())
            .resolve()
            .expect("valid");
        let token = config.join_token.expect("a token");
        assert_eq!(token.id, "abc123");
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
        for (case, expected) in [
            (
                with_token("abc123.0123456789abcdef", None, member.clone()),
                "--ca-cert-hash",
            ),
            (
                with_token("abc123.0123456789abcdef", Some(&hash), Vec::new()),
                "needs --join",
            ),
            (
                with_token("abc123", Some(&hash), member.clone()),
                "--join-token",
            ),
            (
                RunArgs {
                    insecure_plaintext: true,
                    listen: Some("0.0.0.0:9600".into()),
                    advertise: Some("192.0.2.1:9600".into()),
                    ..args()
                },
                "loopback",
            ),
        ] {
            let error = case.resolve().expect_err("must be refused").to_string();
            assert!(error.contains(expected), "{error:?} should say {expected}");
        }
        let plaintext = RunArgs {
            insecure_plaintext: true,
            listen: Some("127.0.0.1:9600".into()),
            ..args()
        }
        .resolve()
        .expect("loopback plaintext is accepted");
        assert!(plaintext.insecure_plaintext);
    }
}

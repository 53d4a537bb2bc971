//! `romanactl`: the operator CLI. Talks to one node's API, over the local
//! unix socket by default or over TLS with `--server` (with an operator
//! certificate, `--cert/--key/--ca-cert`, or the cluster secret, from which
//! it derives an admin certificate in memory). Tables for people, JSON
//! (`-o json`) for scripts.
//!
//! A client only: it speaks [`romana_api`]'s wire types through
//! [`crate::http_client`] and imports nothing of the server.
//!
//! - this file: the command line and the commands.
//! - [`audit`]: `romanactl audit`, online or from a data dir.
//! - [`events`]: `romanactl events [--follow]`.
//! - [`ui`]: `romanactl ui`, the web view's local relay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use raft_store::transport::ClusterSecret;
use serde::Serialize;

use raft_store::entry::policy::Policy;
use raft_store::state::Outcome;
use romana_api::cluster::{
    JoinTokenBody, JoinTokenView, MemberView, NodeView, NoteBody, ReadyView, StatusView,
};
use romana_api::ipam::{
    AddressView, AllocateBody, AllocationView, HostView, LayoutView, NameBody, ReleaseBody,
    SegmentView, TenantView,
};
use romana_api::paths::{
    DEFAULT_API_SOCKET, PATH_ADDRESSES, PATH_ALLOCATIONS, PATH_EXPLAIN, PATH_EXPLAIN_MATRIX,
    PATH_HOSTS, PATH_JOIN_TOKENS, PATH_LAYOUT, PATH_NODES, PATH_NOTES, PATH_POLICIES, PATH_READY,
    PATH_RELEASE, PATH_STATUS, PATH_TENANTS,
};
use romana_api::policy::{ExplainView, MatrixView};

use crate::error::Error;
use crate::http_client::{ApiClient, CallError, Endpoint};
use crate::tls::{self, ClusterCa, Credentials};
use audit::{records, AuditCommand, Source};

pub mod audit;
pub mod events;
pub mod ui;

/// A write's answer, its outcome in the event model's terms.
type WriteResult = romana_api::cluster::WriteResult<Outcome>;
/// A policy in force: a Romana policy or a Kubernetes NetworkPolicy.
type PolicyView = romana_api::policy::PolicyView;

/// Direction(s), format and number of rules of a listed policy.
fn policy_summary(policy: &serde_json::Value) -> (String, String, usize) {
    if let Ok(policy) = serde_json::from_value::<Policy>(policy.clone()) {
        return (
            format!("{:?}", policy.direction).to_lowercase(),
            format!("{:?}", policy.format).to_lowercase(),
            policy.rules.len(),
        );
    }
    if let Ok(policy) = serde_json::from_value::<raft_store::entry::NetworkPolicy>(policy.clone()) {
        let mut directions = Vec::new();
        let mut rules = 0;
        for (name, direction) in [("ingress", &policy.ingress), ("egress", &policy.egress)] {
            if let Some(direction) = direction {
                directions.push(name);
                rules += direction.len();
            }
        }
        return (directions.join(","), "networkpolicy".into(), rules);
    }
    ("?".into(), "?".into(), 0)
}

#[derive(Parser, Debug)]
#[command(name = "romanactl", version, about = "Operate a Romana cluster")]
pub struct Cli {
    /// A node's TCP API, HOST:PORT, over TLS (needs --cert, --key and
    /// --ca-cert, or --cluster-secret-file).
    #[arg(long, global = true, conflicts_with = "socket")]
    pub server: Option<String>,
    /// The local node's unix socket.
    #[arg(long, global = true, default_value = DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// File holding the cluster secret (for --server: an admin certificate
    /// is derived from it in memory; the secret is not sent).
    #[arg(long, global = true)]
    pub cluster_secret_file: Option<PathBuf>,
    /// An operator certificate (`romanactl cert create`), for --server.
    #[arg(long, global = true, requires_all = ["key", "ca_cert"])]
    pub cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The cluster CA's certificate (DATA_DIR/tls/ca.crt on a node).
    #[arg(long, global = true, requires = "cert")]
    pub ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// This node's view of the cluster: role, leader, term, applied index,
    /// state hash, members.
    Status,
    /// Exit 0 when this node serves ADDs (a leader is known, this host is
    /// registered, its isolation rules are in place), 1 otherwise: the
    /// DaemonSet's readiness probe.
    Ready,
    /// Nodes of the cluster.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The node's events (hosts joined, tenants created, policies applied,
    /// leaders elected, drift repaired, addresses refused...), one line
    /// each; `--follow` keeps streaming them.
    Events {
        /// Keep streaming new events until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this id (the node numbers them from its start).
        #[arg(long)]
        since: Option<u64>,
        /// Only events of this kind (repeatable): host_joined, tenant_created,
        /// policy_applied, leader_elected, drift_repaired, address_refused, ...
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
    /// The web view: opens a local port that relays read requests to the
    /// node with these credentials, and prints the URL to open.
    Ui {
        /// Where to listen (a loopback address; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Record an operator's note in the cluster's history.
    Note {
        text: String,
        /// Idempotency key (a retry with the same id has one effect).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Hosts: number, owned prefix, underlay address.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Segments of a tenant.
    Segment {
        #[command(subcommand)]
        command: SegmentCommand,
    },
    /// Addresses.
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Network policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Join tokens for nodes that do not hold the cluster secret.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Operator certificates (made here, from the cluster CA's key: run on
    /// a member, or where the cluster secret is).
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The network's history, from the audit archive.
    Audit {
        /// Read a data dir (a stopped node's, or a copy) instead of asking
        /// a node.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Apply a policy file: Romana JSON (`securitypolicies`), or a
    /// Kubernetes NetworkPolicy in YAML or JSON (detected).
    Apply {
        /// The file, or - for standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List the policies.
    List,
    /// Show one policy.
    Show { name: String },
    /// Delete a policy.
    Delete { name: String },
    /// Would a new connection from SRC to DST be allowed, and which rule or
    /// default decides? PROTO/PORT: tcp/80, udp/53, icmp, icmp/8 (type).
    Explain {
        src: String,
        dst: String,
        #[arg(value_name = "PROTO/PORT")]
        protocol_port: Option<String>,
    },
    /// Who reaches whom: `explain` for every pair of the pods given
    /// (NAMESPACE/NAME or addresses), as a table (`.` allowed, `X` denied).
    Matrix {
        #[arg(value_name = "PROTO/PORT")]
        protocol_port: String,
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List the nodes.
    List,
    /// Remove a node from the cluster (a voter is replaced by a learner).
    /// Refused while its host holds addresses, unless --force.
    Remove {
        name: String,
        /// Release the host's addresses.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// List the hosts.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant (with its `default` segment).
    Create { name: String },
    /// List tenants with their numbers and segments.
    List,
    /// Delete a tenant that holds no addresses.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SegmentCommand {
    /// Create a segment in a tenant.
    Create { tenant: String, name: String },
    /// List a tenant's segments.
    List { tenant: String },
    /// Delete a segment that holds no addresses.
    Delete { tenant: String, name: String },
}

#[derive(Subcommand, Debug)]
pub enum IpamCommand {
    /// List allocated addresses.
    List {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Decode an address into host, tenant, segment and endpoint, and say
    /// who holds it.
    Show { address: String },
    /// Draw the bit layout of the addresses.
    Layout,
    /// Allocate an address by hand (what the CNI plugin does).
    Allocate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        segment: Option<String>,
        /// Default: the node answering.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        container_id: String,
        #[arg(long, default_value = "eth0")]
        ifname: String,
    },
    /// Release the address of a container's interface.
    Release {
        #[arg(long)]
        container_id: String,
        #[arg(long, default_value = "eth0")]
        ifname: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a new single-use join token, the CA's hash, and the command a
    /// new node joins with.
    Create {
        /// Lifetime (`30m`, `1h`; at most a day).
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Issue an operator certificate: writes NAME.crt, NAME.key (0600) and
    /// ca.crt into --out-dir.
    Create {
        /// The operator's name (recorded as the actor of their writes).
        #[arg(long)]
        name: String,
        /// `admin` (read and write) or `reader` (read only).
        #[arg(long)]
        role: tls::Role,
        /// Lifetime.
        #[arg(long, default_value = "90d")]
        ttl: humantime::Duration,
        /// Where to write the files.
        #[arg(long)]
        out_dir: PathBuf,
        /// The node data dir whose CA signs (DATA_DIR/tls/ca.key), unless
        /// --cluster-secret-file is given.
        #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

/// The TLS client configuration for `--server`.
fn client_tls(cli: &Cli) -> Result<Option<Arc<rustls::ClientConfig>>, Error> {
    if cli.server.is_none() {
        return Ok(None);
    }
    let credentials = match (&cli.cert, &cli.key, &cli.ca_cert, &cli.cluster_secret_file) {
        (Some(cert), Some(key), Some(ca), _) => {
            Credentials::from_files(cert, key, ca).map_err(Error::Config)?
        }
        (None, _, _, Some(path)) => {
            let secret = ClusterSecret::from_file(path).map_err(Error::Config)?;
            let ca = ClusterCa::derive(&secret).map_err(Error::Config)?;
            Credentials::issue(&ca, tls::Role::Admin, &operator_name(), Duration::from_secs(3600))
                .map_err(Error::Config)?
        }
        _ => {
            return Err(Error::Config(
                "--server needs --cert, --key and --ca-cert (see `romanactl cert create`), or --cluster-secret-file".into(),
            ))
        }
    };
    credentials
        .client_config(tls::no_revocations())
        .map(Some)
        .map_err(Error::Config)
}

/// `$USER`, as a certificate name (or `operator`).
fn operator_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| tls::check_identity_name(user).is_ok())
        .unwrap_or_else(|| "operator".into())
}

/// `romanactl cert create`: offline, from the CA key.
fn create_cert(cli: &Cli, command: &CertCommand) -> Result<String, Error> {
    let CertCommand::Create {
        name,
        role,
        ttl,
        out_dir,
        data_dir,
    } = command;
    let ca = match &cli.cluster_secret_file {
        Some(path) => {
            let secret = ClusterSecret::from_file(path).map_err(Error::Config)?;
            ClusterCa::derive(&secret).map_err(Error::Config)?
        }
        None => ClusterCa::load(&tls::tls_dir(data_dir)).map_err(|e| {
            Error::Config(format!(
                "{e} (run on a member, pass its --data-dir, or --cluster-secret-file)"
            ))
        })?,
    };
    let issued = ca
        .issue(*role, name, (*ttl).into())
        .map_err(Error::Config)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", out_dir.display())))?;
    let key_path = out_dir.join(format!("{name}.key"));
    let cert_path = out_dir.join(format!("{name}.crt"));
    let ca_path = out_dir.join("ca.crt");
    tls::write_private(&key_path, &issued.key_pem).map_err(Error::Config)?;
    tls::write_public(&cert_path, &issued.cert_pem).map_err(Error::Config)?;
    tls::write_public(&ca_path, &ca.cert_pem()).map_err(Error::Config)?;
    Ok(format!(
        "issued a {} certificate for {name}, valid {}:\n  {}\n  {}\n  {}\nuse: romanactl --server HOST:9600 --cert {} --key {} --ca-cert {} status\n",
        role.as_str(),
        ttl,
        cert_path.display(),
        key_path.display(),
        ca_path.display(),
        cert_path.display(),
        key_path.display(),
        ca_path.display(),
    ))
}

/// Runs one command; returns what to print on stdout.
pub async fn execute(cli: Cli) -> Result<String, Error> {
    if let CtlCommand::Cert { command } = &cli.command {
        return create_cert(&cli, command);
    }
    let endpoint = match &cli.server {
        Some(server) => Endpoint::Tcp(server.clone()),
        None => Endpoint::Unix(cli.socket.clone()),
    };
    let client = ApiClient::new(endpoint, client_tls(&cli)?);
    match cli.command {
        CtlCommand::Token {
            command: TokenCommand::Create { ttl },
        } => {
            let ttl: Duration = ttl.into();
            let body = JoinTokenBody {
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            };
            let view: JoinTokenView = client.post(PATH_JOIN_TOKENS, &body).await.map_err(api)?;
            render(cli.output, &view, |view| {
                format!(
                    "token:         {}\nca-cert-hash:  {}\nexpires:       {}\njoin with:     romana-node run --join MEMBER:9600 --join-token {} --ca-cert-hash {} ...\n",
                    view.token,
                    view.ca_cert_hash,
                    audit::format_time(view.expires_at_ms),
                    view.token,
                    view.ca_cert_hash
                )
            })
        }
        CtlCommand::Cert { .. } => unreachable!("handled above"),
        CtlCommand::Status => {
            let status: StatusView = client.get(PATH_STATUS).await.map_err(api)?;
            render(cli.output, &status, status_table)
        }
        CtlCommand::Ready => {
            let ready: ReadyView = client.get(PATH_READY).await.map_err(api)?;
            let mut missing = Vec::new();
            if ready.leader.is_none() {
                missing.push("no leader is known");
            }
            if !ready.registered_host {
                missing.push("this host is not registered");
            }
            if !ready.isolation_ready {
                missing.push("the isolation rules are not in place");
            }
            if missing.is_empty() {
                render(cli.output, &ready, |r| format!("{} is ready\n", r.name))
            } else {
                Err(Error::Api(format!(
                    "{} is not ready: {}",
                    ready.name,
                    missing.join(", ")
                )))
            }
        }
        CtlCommand::Node {
            command: NodeCommand::List,
        } => {
            let nodes: Vec<NodeView> = client.get(PATH_NODES).await.map_err(api)?;
            render(cli.output, &nodes, |nodes| nodes_table(nodes))
        }
        CtlCommand::Node {
            command: NodeCommand::Remove { name, force },
        } => {
            let result: WriteResult = client
                .delete(&format!("{PATH_NODES}/{name}?force={force}"))
                .await
                .map_err(api)?;
            render(cli.output, &result, |r| {
                format!("removed {name}: {} (log index {})\n", r.outcome, r.index)
            })
        }
        CtlCommand::Host {
            command: HostCommand::List,
        } => {
            let hosts: Vec<HostView> = client.get(PATH_HOSTS).await.map_err(api)?;
            render(cli.output, &hosts, |hosts| hosts_table(hosts))
        }
        CtlCommand::Tenant { command } => tenant_command(&client, cli.output, command).await,
        CtlCommand::Segment { command } => segment_command(&client, cli.output, command).await,
        CtlCommand::Ipam { command } => ipam_command(&client, cli.output, command).await,
        CtlCommand::Policy { command } => policy_command(&client, cli.output, command).await,
        CtlCommand::Audit { data_dir, command } => {
            audit::validate(&command)?;
            let source = match data_dir {
                Some(dir) => Source::DataDir(dir),
                None => Source::Node(&client),
            };
            let records = records(source).await?;
            let (text, ok) = audit::execute(command, &records, cli.output)?;
            if ok {
                Ok(text)
            } else {
                Err(Error::Api(text.trim_end().to_string()))
            }
        }
        CtlCommand::Events {
            follow,
            since,
            kinds,
        } => events::events(&client, cli.output, since, follow, &kinds).await,
        CtlCommand::Ui { listen } => ui::run(client, listen).await,
        CtlCommand::Note { text, request_id } => {
            let result: WriteResult = client
                .post(PATH_NOTES, &NoteBody { text, request_id })
                .await
                .map_err(api)?;
            render(cli.output, &result, |r| {
                format!("recorded at log index {} ({})\n", r.index, r.outcome)
            })
        }
    }
}

fn api(e: CallError) -> Error {
    Error::Api(e.to_string())
}

fn written(r: &WriteResult) -> String {
    format!("{} (log index {})\n", r.outcome, r.index)
}

async fn tenant_command(
    client: &ApiClient,
    output: Output,
    command: TenantCommand,
) -> Result<String, Error> {
    match command {
        TenantCommand::Create { name } => {
            let body = NameBody {
                name,
                request_id: None,
            };
            let result: WriteResult = client.post(PATH_TENANTS, &body).await.map_err(api)?;
            render(output, &result, written)
        }
        TenantCommand::List => {
            let tenants: Vec<TenantView> = client.get(PATH_TENANTS).await.map_err(api)?;
            render(output, &tenants, |tenants| {
                let rows: Vec<Vec<String>> = tenants
                    .iter()
                    .map(|t| {
                        let segments: Vec<String> = t
                            .segments
                            .iter()
                            .map(|s| format!("{}={}", s.name, s.number))
                            .collect();
                        vec![
                            t.name.clone(),
                            t.number.to_string(),
                            t.match_mask.clone(),
                            segments.join(","),
                            t.allocations.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["TENANT", "NUMBER", "MATCH", "SEGMENTS", "ADDRESSES"],
                    &rows,
                )
            })
        }
        TenantCommand::Delete { name } => {
            let result: WriteResult = client
                .delete(&format!("{PATH_TENANTS}/{name}"))
                .await
                .map_err(api)?;
            render(output, &result, written)
        }
    }
}

async fn segment_command(
    client: &ApiClient,
    output: Output,
    command: SegmentCommand,
) -> Result<String, Error> {
    match command {
        SegmentCommand::Create { tenant, name } => {
            let body = NameBody {
                name,
                request_id: None,
            };
            let result: WriteResult = client
                .post(&format!("{PATH_TENANTS}/{tenant}/segments"), &body)
                .await
                .map_err(api)?;
            render(output, &result, written)
        }
        SegmentCommand::List { tenant } => {
            let segments: Vec<SegmentView> = client
                .get(&format!("{PATH_TENANTS}/{tenant}/segments"))
                .await
                .map_err(api)?;
            render(output, &segments, |segments| {
                let rows: Vec<Vec<String>> = segments
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.number.to_string(),
                            s.allocations.to_string(),
                        ]
                    })
                    .collect();
                table(&["SEGMENT", "NUMBER", "ADDRESSES"], &rows)
            })
        }
        SegmentCommand::Delete { tenant, name } => {
            let result: WriteResult = client
                .delete(&format!("{PATH_TENANTS}/{tenant}/segments/{name}"))
                .await
                .map_err(api)?;
            render(output, &result, written)
        }
    }
}

async fn ipam_command(
    client: &ApiClient,
    output: Output,
    command: IpamCommand,
) -> Result<String, Error> {
    match command {
        IpamCommand::List { host, tenant } => {
            let mut query = Vec::new();
            if let Some(host) = host {
                query.push(format!("host={host}"));
            }
            if let Some(tenant) = tenant {
                query.push(format!("tenant={tenant}"));
            }
            let path = if query.is_empty() {
                PATH_ALLOCATIONS.to_string()
            } else {
                format!("{PATH_ALLOCATIONS}?{}", query.join("&"))
            };
            let allocations: Vec<AllocationView> = client.get(&path).await.map_err(api)?;
            render(output, &allocations, |allocations| {
                allocations_table(allocations)
            })
        }
        IpamCommand::Show { address } => {
            let view: AddressView = client
                .get(&format!("{PATH_ADDRESSES}/{address}"))
                .await
                .map_err(api)?;
            render(output, &view, address_text)
        }
        IpamCommand::Layout => {
            let layout: LayoutView = client.get(PATH_LAYOUT).await.map_err(api)?;
            render(output, &layout, |l| l.drawing.clone())
        }
        IpamCommand::Allocate {
            tenant,
            segment,
            host,
            container_id,
            ifname,
        } => {
            let body = AllocateBody {
                host,
                tenant: Some(tenant),
                segment,
                container_id,
                ifname,
                pod_namespace: None,
                pod_name: None,
                network: None,
                request_id: None,
            };
            let view: AllocationView = client.post(PATH_ALLOCATIONS, &body).await.map_err(api)?;
            render(output, &view, |v| format!("{}\n", v.address))
        }
        IpamCommand::Release {
            container_id,
            ifname,
        } => {
            let body = ReleaseBody {
                container_id,
                ifname,
                request_id: None,
            };
            let result: WriteResult = client.post(PATH_RELEASE, &body).await.map_err(api)?;
            render(output, &result, written)
        }
    }
}

async fn policy_command(
    client: &ApiClient,
    output: Output,
    command: PolicyCommand,
) -> Result<String, Error> {
    match command {
        PolicyCommand::Apply { file } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Error::Config(format!("cannot read standard input: {e}")))?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", file.display())))?
            };
            let (status, body) = client
                .raw(
                    hyper::Method::POST,
                    PATH_POLICIES,
                    "application/octet-stream",
                    text.into_bytes(),
                )
                .await
                .map_err(api)?;
            let value: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if !status.is_success() {
                let message = value
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("refused")
                    .to_string();
                return Err(Error::Api(message));
            }
            let result: WriteResult = serde_json::from_value(value)
                .map_err(|e| Error::Api(format!("unexpected answer: {e}")))?;
            render(output, &result, written)
        }
        PolicyCommand::List => {
            let policies: Vec<PolicyView> = client.get(PATH_POLICIES).await.map_err(api)?;
            render(output, &policies, |policies| {
                let rows: Vec<Vec<String>> = policies
                    .iter()
                    .map(|p| {
                        let (direction, format, rules) = policy_summary(&p.policy);
                        vec![
                            p.name.clone(),
                            direction,
                            format,
                            rules.to_string(),
                            p.applied_index.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["NAME", "DIRECTION", "FORMAT", "RULES", "LOG INDEX"],
                    &rows,
                )
            })
        }
        PolicyCommand::Show { name } => {
            let view: PolicyView = client
                .get(&format!("{PATH_POLICIES}/{name}"))
                .await
                .map_err(api)?;
            // A policy is a structure: JSON is the readable form for both.
            serde_json::to_string_pretty(&view)
                .map(|t| t + "\n")
                .map_err(|e| Error::Api(e.to_string()))
        }
        PolicyCommand::Delete { name } => {
            let result: WriteResult = client
                .delete(&format!("{PATH_POLICIES}/{name}"))
                .await
                .map_err(api)?;
            render(output, &result, written)
        }
        PolicyCommand::Explain {
            src,
            dst,
            protocol_port,
        } => {
            let mut query = format!("src={src}&dst={dst}");
            if let Some(spec) = protocol_port {
                query.push_str(&protocol_port_query(&spec)?);
            }
            let view: ExplainView = client
                .get(&format!("{PATH_EXPLAIN}?{query}"))
                .await
                .map_err(api)?;
            render(output, &view, |v| {
                let mut text = format!("{}: {}\n", v.verdict, v.decided_by);
                for (what, pod) in [
                    ("source", &v.source_pod),
                    ("destination", &v.destination_pod),
                ] {
                    if let Some(pod) = pod {
                        text.push_str(&format!("  {what} pod: {pod}\n"));
                    }
                }
                if let Some(egress) = &v.egress {
                    text.push_str(&format!("  egress: {egress}\n"));
                }
                if !v.policies.is_empty() {
                    text.push_str(&format!("  NetworkPolicies: {}\n", v.policies.join(", ")));
                }
                text
            })
        }
        PolicyCommand::Matrix {
            protocol_port,
            pods,
        } => {
            let query = format!(
                "pods={}{}",
                pods.join(","),
                protocol_port_query(&protocol_port)?
            );
            let view: MatrixView = client
                .get(&format!("{PATH_EXPLAIN_MATRIX}?{query}"))
                .await
                .map_err(api)?;
            render(output, &view, matrix_table)
        }
    }
}

/// `&protocol=P[&port=N]` for `tcp/80`, `udp/53`, `icmp`, `icmp/8`.
fn protocol_port_query(spec: &str) -> Result<String, Error> {
    let (protocol, port) = match spec.split_once('/') {
        Some((protocol, port)) => (protocol, Some(port)),
        None => (spec, None),
    };
    let mut query = format!("&protocol={protocol}");
    if let Some(port) = port {
        let port: u16 = port.parse().map_err(|_| {
            Error::Config(format!(
                "{spec:?}: the port must be a number from 0 to 65535"
            ))
        })?;
        query.push_str(&format!("&port={port}"));
    }
    Ok(query)
}

/// Upstream's reachability layout: a row per source, a column per
/// destination.
fn matrix_table(view: &MatrixView) -> String {
    let mut text = String::from("FROM\\TO");
    for pod in &view.pods {
        text.push_str(&format!(" {pod}"));
    }
    text.push('\n');
    for (i, from) in view.pods.iter().enumerate() {
        text.push_str(from);
        for (j, to) in view.pods.iter().enumerate() {
            let cell = if view.allowed[i][j] { "." } else { "X" };
            text.push_str(&format!(" {cell:>width$}", width = to.len()));
        }
        text.push('\n');
    }
    text
}

fn hosts_table(hosts: &[HostView]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.host_number.to_string(),
                h.prefix.clone(),
                h.underlay_ip.to_string(),
                h.allocations.to_string(),
            ]
        })
        .collect();
    table(
        &["HOST", "NUMBER", "PREFIX", "UNDERLAY", "ADDRESSES"],
        &rows,
    )
}

fn allocations_table(allocations: &[AllocationView]) -> String {
    let rows: Vec<Vec<String>> = allocations
        .iter()
        .map(|a| {
            let pod =
                romana_api::ipam::pod_label(a.pod_namespace.as_deref(), a.pod_name.as_deref())
                    .unwrap_or_else(|| "-".into());
            vec![
                a.address.to_string(),
                a.host.clone(),
                a.tenant.clone(),
                a.segment.clone(),
                format!("{}/{}", short(&a.container_id), a.ifname),
                pod,
            ]
        })
        .collect();
    table(
        &[
            "ADDRESS",
            "HOST",
            "TENANT",
            "SEGMENT",
            "CONTAINER/IF",
            "POD",
        ],
        &rows,
    )
}

/// The first 12 characters of a container id, as runtimes show them.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn address_text(view: &AddressView) -> String {
    let name = |name: &Option<String>| name.clone().unwrap_or_else(|| "unused".into());
    let mut text = format!(
        "address   {}\nhost      {} ({})\ntenant    {} ({})\nsegment   {} ({})\nendpoint  {} ({})\n",
        view.address,
        view.host_number,
        name(&view.host),
        view.tenant_number,
        if view.tenant_number == 0 { "the host's own".to_string() } else { name(&view.tenant) },
        view.segment_number,
        name(&view.segment),
        view.endpoint,
        view.kind,
    );
    match &view.allocation {
        Some(a) => text.push_str(&format!(
            "held by   {}/{}{} since log index {} ({})\n",
            a.container_id,
            a.ifname,
            match (&a.pod_namespace, &a.pod_name) {
                (Some(ns), Some(pod)) => format!(", pod {ns}/{pod}"),
                _ => String::new(),
            },
            a.allocated_index,
            a.actor
        )),
        None => text.push_str("held by   nobody\n"),
    }
    text
}

fn render<T: Serialize>(
    output: Output,
    value: &T,
    table: impl Fn(&T) -> String,
) -> Result<String, Error> {
    match output {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|text| text + "\n")
            .map_err(|e| Error::Api(format!("encode output: {e}"))),
        Output::Table => Ok(table(value)),
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

fn status_table(status: &StatusView) -> String {
    let mut text = String::new();
    let pairs = [
        ("name", status.name.clone()),
        ("id", status.id.to_string()),
        ("role", status.role.clone()),
        (
            "leader",
            status.leader.clone().unwrap_or_else(|| "(none)".into()),
        ),
        ("term", status.term.to_string()),
        ("applied index", status.applied_index.to_string()),
        ("state hash", status.state_hash.clone()),
        (
            "cluster",
            status
                .cluster
                .clone()
                .unwrap_or_else(|| "(not initialised)".into()),
        ),
    ];
    for (key, value) in pairs {
        text.push_str(&format!("{key:<14} {value}\n"));
    }
    text.push('\n');
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m: &MemberView| {
            vec![
                m.name.clone(),
                m.id.to_string(),
                m.address.clone(),
                m.role.clone(),
            ]
        })
        .collect();
    text.push_str(&table(&["NAME", "ID", "ADDRESS", "ROLE"], &rows));
    text
}

fn nodes_table(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.id.to_string(),
                n.address.clone(),
                n.role.clone(),
            ]
        })
        .collect();
    table(&["NAME", "ID", "ADDRESS", "ROLE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(text, "A    LONG\nxyz  1\nq    22\n");
    }
}

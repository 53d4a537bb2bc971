//! What the runtime gives the plugin: the network configuration on stdin,
//! the `CNI_*` environment, and `CNI_ARGS`. Everything is checked here, with
//! errors that name the key or variable at fault (codes 4, 6 and 7).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::{code, CniError, Result};
use crate::version;

pub const DEFAULT_NODE_SOCKET: &str = "/run/romana/romana.sock";
pub const DEFAULT_LOG_FILE: &str = "/tmp/romana-cni.log";
pub const DEFAULT_SEGMENT: &str = "default";

/// Largest MTU accepted (jumbo frames).
pub const MAX_MTU: u32 = 65_535;
/// Smallest MTU IPv4 allows.
pub const MIN_MTU: u32 = 576;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Info,
    Debug,
}

/// Where the local node is: its unix socket. (The node's TCP listener
/// speaks mutual TLS only, for peers and operators, not for the plugin.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEndpoint {
    Unix(PathBuf),
}

/// The network configuration (`"type": "romana"`).
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub node: NodeEndpoint,
    pub tenant: Option<String>,
    pub segment: Option<String>,
    pub tenant_from_namespace: bool,
    pub auto_create_tenants: bool,
    /// Kubernetes mode (the conflist a `--kubernetes` node writes): a pod's
    /// tenant and segment are resolved by the node from its labels.
    pub kubernetes: bool,
    pub mtu: Option<u32>,
    pub log_file: PathBuf,
    pub log_level: LogLevel,
    /// The previous plugin's result (chained), or ours (CHECK, DEL).
    pub prev_result: Option<Value>,
    /// GC: the attachments still in use (`cni.dev/valid-attachments`, or the
    /// older `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

fn invalid(key: &str, what: &str) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!("invalid network config: {key} {what}"),
    )
}

fn string_key(config: &Value, key: &str) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "must be a non-empty string")),
    }
}

fn bool_key(config: &Value, key: &str) -> Result<bool> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(key, "must be true or false")),
    }
}

impl NetConf {
    /// Parses stdin. Undecodable JSON is code 6; a config that decodes but is
    /// wrong is code 7, naming the key.
    pub fn parse(stdin: &[u8]) -> Result<Self> {
        let config: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("cannot decode the network config: {e}"),
            )
        })?;
        if !config.is_object() {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "the network config must be a JSON object",
            ));
        }
        let cni_version = string_key(&config, "cniVersion")?
            .ok_or_else(|| invalid("cniVersion", "is missing"))?;
        if !version::is_supported(&cni_version) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {cni_version} is not supported"),
            )
            .with_details(format!("supported: {}", version::SUPPORTED.join(", "))));
        }
        let name = string_key(&config, "name")?.ok_or_else(|| invalid("name", "is missing"))?;
        match string_key(&config, "type")?.as_deref() {
            Some("romana") => {}
            Some(other) => {
                return Err(invalid(
                    "type",
                    &format!("is {other:?}, expected \"romana\""),
                ))
            }
            None => return Err(invalid("type", "is missing")),
        }
        let node = match (
            string_key(&config, "node_url")?,
            string_key(&config, "node_socket")?,
        ) {
            (Some(_), _) => {
                return Err(invalid(
                    "node_url",
                    "is not supported: the plugin reaches the node on its unix socket (node_socket); the node's TCP API takes TLS client certificates only",
                ))
            }
            (None, socket) => NodeEndpoint::Unix(PathBuf::from(
                socket.unwrap_or_else(|| DEFAULT_NODE_SOCKET.into()),
            )),
        };
        let mtu = match config.get("mtu") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(mtu) if (u64::from(MIN_MTU)..=u64::from(MAX_MTU)).contains(&mtu) => {
                    Some(mtu as u32)
                }
                _ => {
                    return Err(invalid(
                        "mtu",
                        &format!("must be a number from {MIN_MTU} to {MAX_MTU}"),
                    ))
                }
            },
        };
        let log_level = match string_key(&config, "log_level")?.as_deref() {
            None | Some("info") => LogLevel::Info,
            Some("error") => LogLevel::Error,
            Some("debug") => LogLevel::Debug,
            Some(_) => return Err(invalid("log_level", "must be error, info or debug")),
        };
        let tenant = string_key(&config, "tenant")?;
        let segment = string_key(&config, "segment")?;
        let valid_attachments = match config
            .get("cni.dev/valid-attachments")
            .or_else(|| config.get("cni.dev/attachments"))
        {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    let container = item.get("containerID").and_then(Value::as_str);
                    let ifname = item.get("ifname").and_then(Value::as_str);
                    match (container, ifname) {
                        (Some(c), Some(i)) => pairs.push((c.to_string(), i.to_string())),
                        _ => {
                            return Err(invalid(
                                "cni.dev/valid-attachments",
                                "entries must have containerID and ifname",
                            ))
                        }
                    }
                }
                Some(pairs)
            }
            Some(_) => return Err(invalid("cni.dev/valid-attachments", "must be a list")),
        };
        Ok(Self {
            cni_version,
            name,
            node,
            tenant,
            segment,
            tenant_from_namespace: bool_key(&config, "tenant_from_namespace")?,
            auto_create_tenants: bool_key(&config, "auto_create_tenants")?,
            kubernetes: bool_key(&config, "kubernetes")?,
            mtu,
            log_file: PathBuf::from(
                string_key(&config, "log_file")?.unwrap_or_else(|| DEFAULT_LOG_FILE.into()),
            ),
            log_level,
            prev_result: config.get("prevResult").filter(|v| !v.is_null()).cloned(),
            valid_attachments,
        })
    }
}

/// The verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// The `CNI_*` environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub command: Option<Command>,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    pub args: Option<String>,
}

impl Environment {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            command: None,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
        .with_command(var("CNI_COMMAND"))
    }

    fn with_command(mut self, command: Option<String>) -> Self {
        self.command = match command.as_deref() {
            Some("ADD") => Some(Command::Add),
            Some("DEL") => Some(Command::Del),
            Some("CHECK") => Some(Command::Check),
            Some("VERSION") => Some(Command::Version),
            Some("STATUS") => Some(Command::Status),
            Some("GC") => Some(Command::Gc),
            _ => None,
        };
        self
    }

    /// `CNI_COMMAND` from its text, for tests and callers other than main.
    pub fn set_command(self, command: &str) -> Self {
        self.with_command(Some(command.to_string()))
    }

    pub fn container_id(&self) -> Result<&str> {
        let id = self.container_id.as_deref().ok_or_else(|| {
            CniError::new(code::INVALID_ENVIRONMENT, "CNI_CONTAINERID is missing")
        })?;
        let ok_first = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok_first || !ok_rest || id.len() > 256 {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_CONTAINERID {id:?} is invalid: letters, digits, '_', '.' and '-', starting alphanumeric"),
            ));
        }
        Ok(id)
    }

    pub fn ifname(&self) -> Result<&str> {
        let name = self
            .ifname
            .as_deref()
            .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_IFNAME is missing"))?;
        if name.len() > 15
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_IFNAME {name:?} is not a valid interface name"),
            ));
        }
        Ok(name)
    }

    pub fn netns(&self) -> Result<&PathBuf> {
        self.netns
            .as_ref()
            .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is missing"))
    }

    /// `CNI_ARGS` as pairs. Unknown keys are refused unless `IgnoreUnknown`
    /// is true.
    pub fn args(&self) -> Result<CniArgs> {
        CniArgs::parse(self.args.as_deref().unwrap_or(""))
    }
}

/// Keys of `CNI_ARGS` the plugin understands.
pub const KNOWN_ARGS: [&str; 7] = [
    "IgnoreUnknown",
    "ROMANA_TENANT",
    "ROMANA_SEGMENT",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

#[derive(Debug, Clone, Default)]
pub struct CniArgs {
    pub values: BTreeMap<String, String>,
}

impl CniArgs {
    pub fn parse(text: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                )
            })?;
            values.insert(key.to_string(), value.to_string());
        }
        let ignore_unknown = values
            .get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if !ignore_unknown {
            if let Some(unknown) = values.keys().find(|k| !KNOWN_ARGS.contains(&k.as_str())) {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_ARGS: unknown key {unknown:?} (set IgnoreUnknown=1 to accept it)"),
                ));
            }
        }
        Ok(Self { values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Where a tenant or segment name came from (logged with the choice).
pub type Source = &'static str;

/// Whether the node resolves this pod's tenant and segment: Kubernetes
/// mode, with the pod named in `CNI_ARGS`.
fn node_resolves(config: &NetConf, args: &CniArgs) -> bool {
    config.kubernetes
        && args.get("K8S_POD_NAMESPACE").is_some()
        && args.get("K8S_POD_NAME").is_some()
}

/// The tenant of a pod, in this order:
/// 1. `CNI_ARGS` `ROMANA_TENANT` (an explicit per-pod choice wins);
/// 2. in Kubernetes mode (`"kubernetes": true`), `None`: the node resolves
///    the pod's `romana.io/tenant` label (else its namespace's, else the
///    cluster's default) from `K8S_POD_NAMESPACE`/`K8S_POD_NAME`; the
///    plugin holds no Kubernetes credentials;
/// 3. `K8S_POD_NAMESPACE`, if `tenant_from_namespace`;
/// 4. the network config's `tenant`.
///
/// None of them: error 7.
pub fn resolve_tenant(config: &NetConf, args: &CniArgs) -> Result<(Option<String>, Source)> {
    if let Some(tenant) = args.get("ROMANA_TENANT") {
        return Ok((Some(tenant.to_string()), "CNI_ARGS ROMANA_TENANT"));
    }
    if node_resolves(config, args) {
        return Ok((None, "the pod's labels, resolved by the node"));
    }
    if config.tenant_from_namespace {
        if let Some(namespace) = args.get("K8S_POD_NAMESPACE") {
            return Ok((Some(namespace.to_string()), "K8S_POD_NAMESPACE"));
        }
    }
    if let Some(tenant) = &config.tenant {
        return Ok((Some(tenant.clone()), "network config"));
    }
    Err(invalid(
        "tenant",
        "is missing: set it in the network config, pass ROMANA_TENANT in CNI_ARGS, or set tenant_from_namespace",
    ))
}

/// The segment: `CNI_ARGS` `ROMANA_SEGMENT`, else (Kubernetes mode) `None`
/// for the node to resolve from the pod's `romana.io/segment` label, else
/// the network config's `segment`, else `default`.
pub fn resolve_segment(config: &NetConf, args: &CniArgs) -> (Option<String>, Source) {
    if let Some(segment) = args.get("ROMANA_SEGMENT") {
        return (Some(segment.to_string()), "CNI_ARGS ROMANA_SEGMENT");
    }
    if node_resolves(config, args) {
        return (None, "the pod's labels, resolved by the node");
    }
    match &config.segment {
        Some(segment) => (Some(segment.clone()), "network config"),
        None => (Some(DEFAULT_SEGMENT.to_string()), "default"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> Result<NetConf> {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"romana-t1","type":"romana"{extra}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn bad_configs_name_the_key() {
        assert_eq!(
            NetConf::parse(b"{not json").map(|_| ()).unwrap_err().code,
            code::DECODE_FAILURE
        );
        for (extra, key) in [
            (r#","mtu":"big""#, "mtu"),
            (r#","mtu":100"#, "mtu"),
            (r#","tenant":5"#, "tenant"),
            (r#","tenant_from_namespace":"yes""#, "tenant_from_namespace"),
            (r#","node_url":"127.0.0.1:9600""#, "node_url"),
            (r#","node_url":"http://127.0.0.1:9600""#, "node_url"),
            (r#","log_level":"loud""#, "log_level"),
        ] {
            let error = conf(extra).map(|_| ()).unwrap_err();
            assert_eq!(error.code, code::INVALID_CONFIG, "{extra}");
            assert!(error.msg.contains(key), "{extra}: {}", error.msg);
        }
        let wrong_version = NetConf::parse(br#"{"cniVersion":"0.2.0","name":"n","type":"romana"}"#);
        assert_eq!(
            wrong_version.map(|_| ()).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
    }

    #[test]
    fn tenant_resolution_follows_the_documented_order() {
        let config = NetConf {
            tenant_from_namespace: true,
            ..conf(r#","tenant":"t1""#).expect("valid")
        };
        let args = |text: &str| CniArgs::parse(text).expect("valid args");
        let tenant =
            |config: &NetConf, text: &str| resolve_tenant(config, &args(text)).expect("a tenant").0;
        assert_eq!(
            tenant(&config, "ROMANA_TENANT=t9;K8S_POD_NAMESPACE=ns").as_deref(),
            Some("t9")
        );
        assert_eq!(
            tenant(&config, "K8S_POD_NAMESPACE=ns").as_deref(),
            Some("ns")
        );
        assert_eq!(tenant(&config, "").as_deref(), Some("t1"));
        // Kubernetes mode: the node resolves a named pod's tenant and
        // segment; an explicit ROMANA_TENANT still wins.
        let kubernetes = NetConf {
            kubernetes: true,
            ..config.clone()
        };
        let pod = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web";
        assert_eq!(tenant(&kubernetes, pod), None);
        assert_eq!(resolve_segment(&kubernetes, &args(pod)).0, None);
        assert_eq!(
            tenant(&kubernetes, &format!("{pod};ROMANA_TENANT=t9")).as_deref(),
            Some("t9")
        );
        assert_eq!(tenant(&kubernetes, "").as_deref(), Some("t1"));
        let bare = conf("").expect("valid");
        assert_eq!(
            resolve_tenant(&bare, &args(""))
                .map(|_| ())
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            resolve_segment(&bare, &args("")).0.as_deref(),
            Some("default")
        );
        assert_eq!(
            resolve_segment(&bare, &args("ROMANA_SEGMENT=web"))
                .0
                .as_deref(),
            Some("web")
        );
    }

    #[test]
    fn unknown_cni_args_need_ignore_unknown() {
        assert_eq!(
            CniArgs::parse("FOO=1").map(|_| ()).unwrap_err().code,
            code::INVALID_ENVIRONMENT
        );
        assert!(CniArgs::parse("IgnoreUnknown=1;FOO=1").is_ok());
        assert!(CniArgs::parse("garbage").is_err());
    }
}

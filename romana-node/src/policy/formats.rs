//! Policy input formats: Romana's JSON, Kubernetes `NetworkPolicy`, and the
//! old `romana.io/demo/v1` third-party resource, each translated to the one
//! internal model ([`raft_store::entry::policy::Policy`]).
//!
//! Everything here is pure (text in, policies out). Every function returns
//! either policies that pass [`raft_store::entry::policy::validate`] or an error that
//! names the field at fault, e.g.
//! `spec.ingress[0].ports[1].protocol: SCTP is not supported (TCP, UDP)`.
//! Nothing that cannot be expressed is dropped silently.
//!
//! ## Detecting the format ([`parse_policy_file`])
//!
//! The text is read as JSON, or else as a YAML stream (one or more
//! documents separated by `---`; empty documents are skipped). Each document
//! is one of:
//!
//! - a mapping with a `securitypolicies` list: Romana's own form;
//! - `apiVersion: networking.k8s.io/v1`, `kind: NetworkPolicy`: Kubernetes;
//! - `apiVersion: v1, kind: List` or `apiVersion: networking.k8s.io/v1,
//!   kind: NetworkPolicyList` whose `items` are Kubernetes NetworkPolicies;
//! - `apiVersion: romana.io/demo/v1, kind: NetworkPolicy`: the old
//!   third-party resource. It carries no namespace, so here it is an error
//!   pointing at [`parse_tpr`], which takes the namespace.
//!
//! Two policies of one file with the same name are an error (the second
//! would silently replace the first).
//!
//! ## Romana's JSON form
//!
//! Close to the original Romana's `securitypolicies` request:
//!
//! ```json
//! {"securitypolicies": [{
//!   "name": "web",
//!   "description": "optional, default empty",
//!   "direction": "ingress",
//!   "applied_to": [{"tenant": "t1", "segment": "backend"}, {"cidr": "10.0.0.0/8"}],
//!   "peers": [{"peer": "any"}, {"peer": "host"}, {"tenant": "t2"},
//!             {"tenant": "t2", "segment": "frontend"},
//!             {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}],
//!   "rules": [{"protocol": "tcp", "ports": [80, 443], "port_ranges": [[8000, 8080]]},
//!             {"protocol": "icmp", "icmp_type": 8, "icmp_code": 0},
//!             {"protocol": "any"}]
//! }]}
//! ```
//!
//! `direction` is `ingress` or `egress`; `protocol` is `tcp`, `udp`, `icmp` or
//! `any` (either case). A target is `{tenant, segment?}` or `{cidr}`; a peer is
//! `{peer: "any" | "host"}`, `{tenant, segment?}` or `{cidr, except?}`. Unknown
//! keys (in the file, a policy, target, peer or rule) are errors naming the
//! key. These policies only open traffic: `isolates: false`, `format: Romana`.
//! The same shape is accepted in YAML.
//!
//! ## Kubernetes `networking.k8s.io/v1` NetworkPolicy
//!
//! - `metadata.namespace` is the tenant and is required; `metadata.name` is
//!   required. Other metadata (labels, annotations, server-set fields) carries
//!   no policy meaning and is not read. A non-empty `status` is an error.
//! - `spec.podSelector`: `{}` selects the whole tenant; `matchLabels:
//!   {romana.io/segment: S}` selects segment `S`. Any other label, and any
//!   `matchExpressions`, is an error naming the field.
//! - `spec.policyTypes` defaults as Kubernetes does: `Ingress`, plus `Egress`
//!   when `spec.egress` has entries. Rules given for a direction that
//!   `policyTypes` leaves out are an error (Kubernetes would ignore them).
//! - **One internal policy per rule entry.** The internal model allows
//!   every (peer × rule) pair of a policy, which is exactly what one
//!   Kubernetes rule entry means; entries are unioned by Kubernetes, as
//!   separate policies are here. `spec.ingress[i]` becomes
//!   `NAMESPACE/NAME/ingress/i` and `spec.egress[i]` becomes
//!   `NAMESPACE/NAME/egress/i`, all with `isolates: true`, `format:
//!   Kubernetes`. Deleting the Kubernetes policy means deleting every
//!   internal policy named `NAMESPACE/NAME/...`.
//! - Peers (`from` / `to`): absent or empty = any peer. `podSelector` alone =
//!   the policy's own tenant (a segment by `romana.io/segment`, or the whole
//!   tenant for `{}`); `namespaceSelector` with `matchLabels:
//!   {kubernetes.io/metadata.name: NS}` = tenant `NS`, narrowed by a
//!   `podSelector` given with it; `ipBlock {cidr, except}` = a CIDR peer.
//!   An empty `namespaceSelector` (every namespace) is an error: not
//!   supported yet, as this module does not know the cluster's CIDR.
//! - Ports: absent or empty = every protocol and port. Each entry is
//!   `{protocol: TCP | UDP (default TCP), port?, endPort?}`; entries are merged
//!   into one rule per protocol (a protocol entry without `port` means all of
//!   that protocol's ports); `endPort` gives a port range. Named ports, SCTP,
//!   and `endPort` without `port` are errors.
//! - A direction in `policyTypes` with no rule entries means "deny all" in
//!   Kubernetes; the internal model needs at least one peer and rule, so this
//!   is an error (`spec.ingress: ... deny all ... not supported yet`) rather
//!   than a hack.
//!
//! ## The old third-party resource ([`parse_tpr`])
//!
//! `apiVersion: romana.io/demo/v1`, `kind: NetworkPolicy`, `metadata.name`,
//! `spec.podSelector.segment` (absent = the whole tenant),
//! `spec.allowIncoming.toPorts: [{port, protocol}]` (`TCP`/`UDP`, either case,
//! default TCP) and `spec.allowIncoming.from: [{pods: {segment, tenant?}}]`
//! (`tenant` defaults to the namespace; it is our extension so a policy can
//! open another tenant's segment). Several `from` and `toPorts` entries are
//! allowed. The result is one ingress policy named `NAMESPACE/NAME`,
//! `isolates: false`, `format: ThirdPartyResource`.

use std::collections::HashSet;

use raft_store::entry::network_policy::{
    LabelSelector, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule, PortRef, Requirement,
    SelectorOperator,
};
use raft_store::entry::policy::{
    validate, Cidr, Direction, Peer, Policy, PolicyFormat, Protocol, Rule, Target,
};
use raft_store::entry::{Labels, NetworkPolicy, PortProtocol};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

const K8S_API_VERSION: &str = "networking.k8s.io/v1";
const TPR_API_VERSION: &str = "romana.io/demo/v1";

/// What a policy file holds: Romana policies (applied together) and
/// Kubernetes NetworkPolicies (each applied as it is).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub policies: Vec<Policy>,
    pub network_policies: Vec<NetworkPolicy>,
}

impl PolicyFile {
    fn extend(&mut self, other: PolicyFile) {
        self.policies.extend(other.policies);
        self.network_policies.extend(other.network_policies);
    }

    fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.network_policies.is_empty()
    }

    /// Every name, Romana policies' and NetworkPolicies' (`NS/NAME`).
    pub fn names(&self) -> Vec<String> {
        self.policies
            .iter()
            .map(|p| p.name.clone())
            .chain(self.network_policies.iter().map(NetworkPolicy::key))
            .collect()
    }
}

/// Reads a policy file in any of the supported formats (see the module
/// documentation); every policy in it is checked
/// ([`raft_store::entry::policy::validate`],
/// [`NetworkPolicy::validate`]).
pub fn parse_policy_file(text: &str) -> Result<PolicyFile, String> {
    let documents = documents(text)?;
    if documents.is_empty() {
        return Err("no policy found: the file is empty".into());
    }
    let many = documents.len() > 1;
    let mut file = PolicyFile::default();
    for (i, document) in documents.iter().enumerate() {
        let found = parse_document(document, "").map_err(|e| {
            if many {
                format!("document {}: {e}", i + 1)
            } else {
                e
            }
        })?;
        file.extend(found);
    }
    check_unique(&file.names())?;
    Ok(file)
}

/// Reads the old `romana.io/demo/v1` NetworkPolicy third-party resource of
/// namespace (tenant) `namespace`.
pub fn parse_tpr(namespace: &str, text: &str) -> Result<Vec<Policy>, String> {
    if namespace.is_empty() {
        return Err("namespace: must not be empty".into());
    }
    let documents = documents(text)?;
    match documents.as_slice() {
        [document] => tpr(namespace, document).map(|policy| vec![policy]),
        [] => Err("no policy found: the text is empty".into()),
        _ => Err(format!(
            "expected one {TPR_API_VERSION} NetworkPolicy, found {} documents",
            documents.len()
        )),
    }
}

// ---------------------------------------------------------------------------
// Reading text and walking values

/// The documents of `text`: one JSON value, or the non-empty documents of a
/// YAML stream.
/// Deepest nesting of flow collections (`[`, `{`) a policy file may have.
/// The YAML parser's time grows with the square of that depth (100 KB of
/// `{a: ` took seconds); real policies nest a few levels.
pub const MAX_FLOW_NESTING: usize = 32;

/// Refuses text whose flow collections nest deeper than
/// [`MAX_FLOW_NESTING`], before any parser sees it. Brackets inside quoted
/// strings and comments do not count.
fn check_flow_nesting(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for (line, c) in text.chars().scan(1usize, |line, c| {
        let here = *line;
        if c == '\n' {
            *line += 1;
        }
        Some((here, c))
    }) {
        if comment {
            comment = c != '\n';
        } else if let Some(open) = quote {
            // '' inside single quotes and \" inside double quotes stay
            // inside; the next character decides, so both end here and
            // reopen harmlessly for ''.
            if c == open && !(open == '"' && previous == '\\') {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' => quote = Some(c),
                '#' if previous.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_NESTING {
                        return Err(format!(
                            "line {line}: collections nest deeper than {MAX_FLOW_NESTING} levels"
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = c;
    }
    Ok(())
}

fn documents(text: &str) -> Result<Vec<Value>, String> {
    check_flow_nesting(text)?;
    let json_error = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => {
            let value = serde_yaml::to_value(json).map_err(|e| format!("not valid JSON: {e}"))?;
            return Ok(vec![value]);
        }
        Err(e) => e,
    };
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = match Value::deserialize(document) {
            Ok(value) => value,
            Err(e) => {
                let trimmed = text.trim_start();
                return Err(if trimmed.starts_with('{') || trimmed.starts_with('[') {
                    format!("not valid JSON: {json_error}")
                } else {
                    format!("not valid YAML: {e}")
                });
            }
        };
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `path` for the start of a message ("top level" for the document itself).
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "top level"
    } else {
        path
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A mapping whose keys were checked against the ones the format knows.
/// `null` reads as an empty mapping (as Kubernetes decodes it).
struct Obj<'a> {
    path: String,
    map: Option<&'a Mapping>,
}

impl<'a> Obj<'a> {
    /// `known: None` reads only the keys asked for (metadata).
    fn new(value: &'a Value, path: &str, known: Option<&[&str]>) -> Result<Self, String> {
        let map = match value {
            Value::Null => None,
            Value::Mapping(map) => Some(map),
            other => {
                return Err(format!(
                    "{}: expected a mapping, got {}",
                    shown(path),
                    kind_of(other)
                ))
            }
        };
        for key in map.iter().flat_map(|m| m.keys()) {
            let key = key
                .as_str()
                .ok_or_else(|| format!("{}: keys must be strings", shown(path)))?;
            if let Some(known) = known {
                if !known.contains(&key) {
                    return Err(format!(
                        "{}: unknown field (known here: {})",
                        join(path, key),
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(Self {
            path: path.to_string(),
            map,
        })
    }

    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn is_empty(&self) -> bool {
        self.map.is_none_or(|m| m.is_empty())
    }

    /// The value of `key`; absent and `null` are both `None`.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "{}: expected a string, got {}",
                self.field(key),
                kind_of(other)
            )),
        }
    }

    fn required_string(&self, key: &str) -> Result<&'a str, String> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(format!("{}: missing", self.field(key))),
        }
    }

    /// A list; absent, `null` and `[]` are all empty.
    fn list(&self, key: &str) -> Result<&'a [Value], String> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Sequence(items)) => Ok(items),
            Some(other) => Err(format!(
                "{}: expected a list, got {}",
                self.field(key),
                kind_of(other)
            )),
        }
    }

    fn object(&self, key: &str, known: &[&str]) -> Result<Obj<'a>, String> {
        static NULL: Value = Value::Null;
        Obj::new(
            self.get(key).unwrap_or(&NULL),
            &self.field(key),
            Some(known),
        )
    }
}

/// A port number given as an integer (1 to 65535).
fn port_number(value: &Value, path: &str) -> Result<u16, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{path}: {n} is not a port (1 to 65535)")),
        Value::String(s) => Err(format!(
            "{path}: named port {s:?} is not supported (give the number)"
        )),
        other => Err(format!(
            "{path}: expected a port number, got {}",
            kind_of(other)
        )),
    }
}

fn cidr(text: &str, path: &str) -> Result<Cidr, String> {
    Cidr::parse(text).map_err(|e| format!("{path}: {e}"))
}

/// TCP or UDP, either case.
fn tcp_or_udp(text: &str, path: &str) -> Result<Protocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Err(format!("{path}: {text} is not supported (TCP, UDP)")),
        _ => Err(format!("{path}: {text:?} is not a protocol (TCP, UDP)")),
    }
}

/// Port entries of one protocol, unioned into one rule per protocol (in the
/// order the protocols first appear). A port-less entry opens every port of
/// its protocol.
#[derive(Default)]
struct PortRules {
    rules: Vec<(Rule, bool)>,
}

impl PortRules {
    fn add(&mut self, protocol: Protocol, ports: Option<(u16, Option<u16>)>) {
        let at = match self.rules.iter().position(|(r, _)| r.protocol == protocol) {
            Some(at) => at,
            None => {
                self.rules.push((
                    Rule {
                        protocol,
                        ..Rule::any()
                    },
                    false,
                ));
                self.rules.len() - 1
            }
        };
        let (rule, all_ports) = &mut self.rules[at];
        match ports {
            None => *all_ports = true,
            Some((port, None)) => {
                if !rule.ports.contains(&port) {
                    rule.ports.push(port);
                }
            }
            Some((start, Some(end))) => {
                if !rule.port_ranges.contains(&(start, end)) {
                    rule.port_ranges.push((start, end));
                }
            }
        }
    }

    fn into_rules(self) -> Vec<Rule> {
        self.rules
            .into_iter()
            .map(|(rule, all_ports)| {
                if all_ports {
                    Rule {
                        protocol: rule.protocol,
                        ..Rule::any()
                    }
                } else {
                    rule
                }
            })
            .collect()
    }
}

fn checked(policy: Policy) -> Result<Policy, String> {
    validate(&policy).map_err(|e| format!("policy {:?}: {e}", policy.name))?;
    Ok(policy)
}

fn check_unique(names: &[String]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(format!("policy {name:?} is given twice in the file"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Format detection

fn parse_document(document: &Value, path: &str) -> Result<PolicyFile, String> {
    let Value::Mapping(map) = document else {
        return Err(format!(
            "{}: expected a mapping (a policy document), got {}",
            shown(path),
            kind_of(document)
        ));
    };
    if map.contains_key("securitypolicies") {
        return Ok(PolicyFile {
            policies: romana(document)?,
            network_policies: Vec::new(),
        });
    }
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some(K8S_API_VERSION), Some("NetworkPolicy")) => Ok(PolicyFile {
            policies: Vec::new(),
            network_policies: vec![kubernetes(document, path)?],
        }),
        (Some(TPR_API_VERSION), Some("NetworkPolicy")) => Err(format!(
            "{}: a {TPR_API_VERSION} NetworkPolicy carries no namespace; \
             read it with the namespace given (parse_tpr)",
            shown(path)
        )),
        (Some(other), Some("NetworkPolicy")) => Err(format!(
            "{}: {other:?} is not supported for NetworkPolicy \
             ({K8S_API_VERSION} or {TPR_API_VERSION})",
            join(path, "apiVersion")
        )),
        (Some("v1"), Some("List")) | (Some(K8S_API_VERSION), Some("NetworkPolicyList")) => {
            let list = Obj::new(
                document,
                path,
                Some(&["apiVersion", "kind", "metadata", "items"]),
            )?;
            let items = list.list("items")?;
            let mut policies = PolicyFile::default();
            for (i, item) in items.iter().enumerate() {
                let item_path = index(&list.field("items"), i);
                let is_k8s = item.get("apiVersion").and_then(Value::as_str)
                    == Some(K8S_API_VERSION)
                    && item.get("kind").and_then(Value::as_str) == Some("NetworkPolicy");
                if !is_k8s {
                    return Err(format!(
                        "{item_path}: list items must be {K8S_API_VERSION} NetworkPolicies"
                    ));
                }
                policies
                    .network_policies
                    .push(kubernetes(item, &item_path)?);
            }
            if policies.is_empty() {
                return Err(format!("{}: no items", list.field("items")));
            }
            Ok(policies)
        }
        (None, None) => Err(format!(
            "{}: not a policy: expected a securitypolicies list (Romana) or \
             apiVersion and kind (Kubernetes NetworkPolicy or List)",
            shown(path)
        )),
        (api_version, kind) => Err(format!(
            "{}: apiVersion {:?}, kind {:?} is not a policy format (expected \
             {K8S_API_VERSION} NetworkPolicy, a List of them, or Romana's \
             securitypolicies)",
            shown(path),
            api_version.unwrap_or(""),
            kind.unwrap_or("")
        )),
    }
}

// ---------------------------------------------------------------------------
// Romana's JSON form

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RomanaFile {
    securitypolicies: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RomanaPolicy {
    name: String,
    #[serde(default)]
    description: String,
    direction: String,
    applied_to: Vec<Value>,
    peers: Vec<Value>,
    rules: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RomanaTarget {
    tenant: Option<String>,
    segment: Option<String>,
    cidr: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RomanaPeer {
    peer: Option<String>,
    tenant: Option<String>,
    segment: Option<String>,
    cidr: Option<String>,
    except: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RomanaRule {
    protocol: String,
    #[serde(default)]
    ports: Vec<Value>,
    #[serde(default)]
    port_ranges: Vec<Value>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

fn from_value<T: serde::de::DeserializeOwned>(value: &Value, path: &str) -> Result<T, String> {
    serde_yaml::from_value(value.clone()).map_err(|e| format!("{}: {e}", shown(path)))
}

fn romana(document: &Value) -> Result<Vec<Policy>, String> {
    let file: RomanaFile = from_value(document, "")?;
    if file.securitypolicies.is_empty() {
        return Err("securitypolicies: no policies".into());
    }
    file.securitypolicies
        .iter()
        .enumerate()
        .map(|(i, value)| romana_policy(value, &index("securitypolicies", i)))
        .collect()
}

fn romana_policy(value: &Value, path: &str) -> Result<Policy, String> {
    let p: RomanaPolicy = from_value(value, path)?;
    let direction = match p.direction.to_ascii_lowercase().as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => {
            return Err(format!(
                "{path}.direction: {:?} is not a direction (ingress, egress)",
                p.direction
            ))
        }
    };
    let mut applied_to = Vec::new();
    for (i, value) in p.applied_to.iter().enumerate() {
        let path = index(&join(path, "applied_to"), i);
        let t: RomanaTarget = from_value(value, &path)?;
        applied_to.push(match (t.tenant, t.segment, t.cidr) {
            (Some(tenant), segment, None) => Target::Pods { tenant, segment },
            (None, None, Some(text)) => Target::Cidr(cidr(&text, &join(&path, "cidr"))?),
            (None, Some(_), None) => return Err(format!("{path}.segment: needs tenant")),
            _ => return Err(format!("{path}: give either tenant (and segment) or cidr")),
        });
    }
    let mut peers = Vec::new();
    for (i, value) in p.peers.iter().enumerate() {
        let path = index(&join(path, "peers"), i);
        let r: RomanaPeer = from_value(value, &path)?;
        peers.push(match (r.peer, r.tenant, r.segment, r.cidr, r.except) {
            (Some(peer), None, None, None, None) => match peer.to_ascii_lowercase().as_str() {
                "any" => Peer::Any,
                "host" => Peer::Host,
                _ => return Err(format!("{path}.peer: {peer:?} is not a peer (any, host)")),
            },
            (None, Some(tenant), segment, None, None) => Peer::Pods { tenant, segment },
            (None, None, None, Some(text), except) => Peer::Cidr {
                cidr: cidr(&text, &join(&path, "cidr"))?,
                except: except
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(j, e)| cidr(e, &index(&join(&path, "except"), j)))
                    .collect::<Result<_, _>>()?,
            },
            (None, None, Some(_), None, None) => {
                return Err(format!("{path}.segment: needs tenant"))
            }
            (None, None, None, None, Some(_)) => return Err(format!("{path}.except: needs cidr")),
            _ => {
                return Err(format!(
                    "{path}: give exactly one of peer (any, host), tenant (and segment) \
                     or cidr (and except)"
                ))
            }
        });
    }
    let mut rules = Vec::new();
    for (i, value) in p.rules.iter().enumerate() {
        let path = index(&join(path, "rules"), i);
        let r: RomanaRule = from_value(value, &path)?;
        let protocol = match r.protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "any" => Protocol::Any,
            _ => {
                return Err(format!(
                    "{path}.protocol: {:?} is not supported (tcp, udp, icmp, any)",
                    r.protocol
                ))
            }
        };
        let ports = r
            .ports
            .iter()
            .enumerate()
            .map(|(j, v)| port_number(v, &index(&join(&path, "ports"), j)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut port_ranges = Vec::new();
        for (j, range) in r.port_ranges.iter().enumerate() {
            let range_path = index(&join(&path, "port_ranges"), j);
            let (start, end) = match range.as_sequence().map(Vec::as_slice) {
                Some([start, end]) => (
                    port_number(start, &index(&range_path, 0))?,
                    port_number(end, &index(&range_path, 1))?,
                ),
                _ => return Err(format!("{range_path}: expected [start, end]")),
            };
            if start > end {
                return Err(format!("{range_path}: {start} is past {end}"));
            }
            port_ranges.push((start, end));
        }
        rules.push(Rule {
            protocol,
            ports,
            port_ranges,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
        });
    }
    checked(Policy {
        name: p.name,
        description: p.description,
        direction,
        applied_to,
        peers,
        rules,
        isolates: false,
        format: PolicyFormat::Romana,
    })
}

// ---------------------------------------------------------------------------
// Kubernetes NetworkPolicy

/// The segment a label selector picks (`None`: the whole tenant).
/// A label selector (`matchLabels`, `matchExpressions`); `{}` selects all.
fn label_selector(value: &Value, path: &str) -> Result<LabelSelector, String> {
    let selector = Obj::new(value, path, Some(&["matchLabels", "matchExpressions"]))?;
    let mut match_labels = Labels::new();
    if let Some(labels) = selector.get("matchLabels") {
        let field = selector.field("matchLabels");
        let Value::Mapping(map) = labels else {
            return Err(format!(
                "{field}: expected a mapping, got {}",
                kind_of(labels)
            ));
        };
        for (key, value) in map {
            let key = key
                .as_str()
                .ok_or_else(|| format!("{field}: keys must be strings"))?;
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => {
                    return Err(format!(
                        "{field}.{key}: expected a string, got {}",
                        kind_of(other)
                    ))
                }
            };
            match_labels.insert(key.to_string(), value);
        }
    }
    let mut match_expressions = Vec::new();
    for (i, value) in selector.list("matchExpressions")?.iter().enumerate() {
        let field = index(&selector.field("matchExpressions"), i);
        let entry = Obj::new(value, &field, Some(&["key", "operator", "values"]))?;
        let key = entry.required_string("key")?.to_string();
        let operator = match entry.required_string("operator")? {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            other => {
                return Err(format!(
                    "{}: {other:?} is not an operator (In, NotIn, Exists, DoesNotExist)",
                    entry.field("operator")
                ))
            }
        };
        let values = entry
            .list("values")?
            .iter()
            .enumerate()
            .map(|(j, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "{}: expected a string, got {}",
                    index(&entry.field("values"), j),
                    kind_of(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        match_expressions.push(Requirement {
            key,
            operator,
            values,
        });
    }
    let selector = LabelSelector {
        match_labels,
        match_expressions,
    };
    selector.validate(path)?;
    Ok(selector)
}

fn ip_block(value: &Value, path: &str) -> Result<NetworkPolicyPeer, String> {
    let block = Obj::new(value, path, Some(&["cidr", "except"]))?;
    let base = cidr(block.required_string("cidr")?, &block.field("cidr"))?;
    let except = block
        .list("except")?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = index(&block.field("except"), i);
            match e {
                Value::String(text) => {
                    let e = cidr(text, &field)?;
                    if !(base.contains(e.address) && e.prefix_len >= base.prefix_len) {
                        return Err(format!("{field}: {e} is not inside {base}"));
                    }
                    Ok(e)
                }
                other => Err(format!("{field}: expected a CIDR, got {}", kind_of(other))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(NetworkPolicyPeer::IpBlock { cidr: base, except })
}

fn kubernetes_peer(value: &Value, path: &str) -> Result<NetworkPolicyPeer, String> {
    let peer = Obj::new(
        value,
        path,
        Some(&["podSelector", "namespaceSelector", "ipBlock"]),
    )?;
    let pods = peer.get("podSelector");
    let namespaces = peer.get("namespaceSelector");
    match (pods, namespaces, peer.get("ipBlock")) {
        (None, None, None) => Err(format!(
            "{path}: give podSelector, namespaceSelector or ipBlock"
        )),
        (None, None, Some(block)) => ip_block(block, &peer.field("ipBlock")),
        (_, _, Some(_)) => Err(format!(
            "{}: ipBlock cannot be combined with podSelector or namespaceSelector",
            peer.field("ipBlock")
        )),
        (pods, namespaces, None) => Ok(NetworkPolicyPeer::Pods {
            namespaces: namespaces
                .map(|s| label_selector(s, &peer.field("namespaceSelector")))
                .transpose()?,
            pods: pods
                .map(|s| label_selector(s, &peer.field("podSelector")))
                .transpose()?,
        }),
    }
}

fn kubernetes_protocol(text: &str, path: &str) -> Result<PortProtocol, String> {
    match text {
        "TCP" => Ok(PortProtocol::Tcp),
        "UDP" => Ok(PortProtocol::Udp),
        "SCTP" => Ok(PortProtocol::Sctp),
        _ => Err(format!(
            "{path}: {text:?} is not a protocol (TCP, UDP, SCTP)"
        )),
    }
}

fn kubernetes_ports(ports: &[Value], path: &str) -> Result<Vec<NetworkPolicyPort>, String> {
    let mut result = Vec::new();
    for (i, value) in ports.iter().enumerate() {
        let entry = Obj::new(
            value,
            &index(path, i),
            Some(&["protocol", "port", "endPort"]),
        )?;
        let protocol = match entry.string("protocol")? {
            Some(text) => kubernetes_protocol(text, &entry.field("protocol"))?,
            None => PortProtocol::Tcp,
        };
        let port = match entry.get("port") {
            None => None,
            Some(Value::String(name)) => Some(PortRef::Name(name.clone())),
            Some(value) => Some(PortRef::Number(port_number(value, &entry.field("port"))?)),
        };
        let end_port = entry
            .get("endPort")
            .map(|v| port_number(v, &entry.field("endPort")))
            .transpose()?;
        result.push(NetworkPolicyPort {
            protocol,
            port,
            end_port,
        });
    }
    Ok(result)
}

/// A Kubernetes NetworkPolicy object as the apiserver serves it (JSON).
pub fn parse_kubernetes_object(object: &serde_json::Value) -> Result<NetworkPolicy, String> {
    let mut document = serde_yaml::to_value(object).map_err(|e| e.to_string())?;
    if let Value::Mapping(map) = &mut document {
        map.insert("apiVersion".into(), K8S_API_VERSION.into());
        map.insert("kind".into(), "NetworkPolicy".into());
    }
    kubernetes(&document, "")
}

fn kubernetes(document: &Value, path: &str) -> Result<NetworkPolicy, String> {
    let top = Obj::new(
        document,
        path,
        Some(&["apiVersion", "kind", "metadata", "spec", "status"]),
    )?;
    if let Some(status) = top.get("status") {
        if !Obj::new(status, &top.field("status"), None)?.is_empty() {
            return Err(format!(
                "{}: not supported (give the policy without status)",
                top.field("status")
            ));
        }
    }
    let metadata = Obj::new(
        top.get("metadata")
            .ok_or_else(|| format!("{}: missing", top.field("metadata")))?,
        &top.field("metadata"),
        None,
    )?;
    let name = metadata.required_string("name")?;
    let namespace = metadata.required_string("namespace")?;
    let spec = Obj::new(
        top.get("spec")
            .ok_or_else(|| format!("{}: missing", top.field("spec")))?,
        &top.field("spec"),
        Some(&["podSelector", "policyTypes", "ingress", "egress"]),
    )?;
    let pod_selector = label_selector(
        spec.get("podSelector").ok_or_else(|| {
            format!(
                "{}: missing (give {{}} for every pod of the namespace)",
                spec.field("podSelector")
            )
        })?,
        &spec.field("podSelector"),
    )?;
    let ingress = spec.list("ingress")?;
    let egress = spec.list("egress")?;
    let mut types = Vec::new();
    match spec.get("policyTypes") {
        None => {
            types.push(Direction::Ingress);
            if !egress.is_empty() {
                types.push(Direction::Egress);
            }
        }
        Some(_) => {
            for (i, value) in spec.list("policyTypes")?.iter().enumerate() {
                let direction = match value.as_str() {
                    Some("Ingress") => Direction::Ingress,
                    Some("Egress") => Direction::Egress,
                    _ => {
                        return Err(format!(
                            "{}: {} is not a policy type (Ingress, Egress)",
                            index(&spec.field("policyTypes"), i),
                            serde_json::to_string(value).unwrap_or_else(|_| "?".into())
                        ))
                    }
                };
                if types.contains(&direction) {
                    return Err(format!(
                        "{}: {direction:?} is given twice",
                        index(&spec.field("policyTypes"), i)
                    ));
                }
                types.push(direction);
            }
            if types.is_empty() {
                return Err(format!("{}: empty", spec.field("policyTypes")));
            }
        }
    }
    let mut directions: [Option<Vec<NetworkPolicyRule>>; 2] = [None, None];
    for (slot, (direction, key, peer_key, type_name, entries)) in [
        (Direction::Ingress, "ingress", "from", "Ingress", ingress),
        (Direction::Egress, "egress", "to", "Egress", egress),
    ]
    .into_iter()
    .enumerate()
    {
        let field = spec.field(key);
        if !types.contains(&direction) {
            if !entries.is_empty() {
                return Err(format!(
                    "{field}: given, but {} does not include {type_name}",
                    spec.field("policyTypes")
                ));
            }
            continue;
        }
        let mut rules = Vec::new();
        for (i, value) in entries.iter().enumerate() {
            let entry_path = index(&field, i);
            let entry = Obj::new(value, &entry_path, Some(&[peer_key, "ports"]))?;
            let peers = entry
                .list(peer_key)?
                .iter()
                .enumerate()
                .map(|(j, v)| kubernetes_peer(v, &index(&entry.field(peer_key), j)))
                .collect::<Result<_, _>>()?;
            let ports = kubernetes_ports(entry.list("ports")?, &entry.field("ports"))?;
            rules.push(NetworkPolicyRule { peers, ports });
        }
        directions[slot] = Some(rules);
    }
    let [ingress, egress] = directions;
    let policy = NetworkPolicy {
        namespace: namespace.to_string(),
        name: name.to_string(),
        pod_selector,
        ingress,
        egress,
    };
    let prefixed = |e: String| {
        if path.is_empty() {
            e
        } else {
            format!("{path}.{e}")
        }
    };
    policy.validate().map_err(prefixed)?;
    Ok(policy)
}

// ---------------------------------------------------------------------------
// The old third-party resource

fn tpr(namespace: &str, document: &Value) -> Result<Policy, String> {
    let top = Obj::new(
        document,
        "",
        Some(&["apiVersion", "kind", "metadata", "spec"]),
    )?;
    let api_version = top.required_string("apiVersion")?;
    let kind = top.required_string("kind")?;
    if (api_version, kind) != (TPR_API_VERSION, "NetworkPolicy") {
        return Err(format!(
            "apiVersion {api_version:?}, kind {kind:?}: expected {TPR_API_VERSION} NetworkPolicy"
        ));
    }
    let metadata = Obj::new(
        top.get("metadata").ok_or("metadata: missing")?,
        "metadata",
        None,
    )?;
    let name = metadata.required_string("name")?;
    if let Some(given) = metadata.string("namespace")? {
        if given != namespace {
            return Err(format!(
                "metadata.namespace: {given:?} differs from the namespace given ({namespace:?})"
            ));
        }
    }
    let spec = top.object("spec", &["podSelector", "allowIncoming"])?;
    let segment = spec
        .object("podSelector", &["segment"])?
        .string("segment")?
        .map(str::to_string);
    let allow = spec.object("allowIncoming", &["toPorts", "from"])?;

    let to_ports = allow.list("toPorts")?;
    if to_ports.is_empty() {
        return Err(format!(
            "{}: at least one entry is needed",
            allow.field("toPorts")
        ));
    }
    let mut rules = PortRules::default();
    for (i, value) in to_ports.iter().enumerate() {
        let entry = Obj::new(
            value,
            &index(&allow.field("toPorts"), i),
            Some(&["port", "protocol"]),
        )?;
        let port = port_number(
            entry
                .get("port")
                .ok_or_else(|| format!("{}: missing", entry.field("port")))?,
            &entry.field("port"),
        )?;
        let protocol = match entry.string("protocol")? {
            Some(text) => tcp_or_udp(text, &entry.field("protocol"))?,
            None => Protocol::Tcp,
        };
        rules.add(protocol, Some((port, None)));
    }

    let from = allow.list("from")?;
    if from.is_empty() {
        return Err(format!(
            "{}: at least one entry is needed",
            allow.field("from")
        ));
    }
    let mut peers = Vec::new();
    for (i, value) in from.iter().enumerate() {
        let entry = Obj::new(value, &index(&allow.field("from"), i), Some(&["pods"]))?;
        if entry.get("pods").is_none() {
            return Err(format!("{}: missing", entry.field("pods")));
        }
        let pods = entry.object("pods", &["segment", "tenant"])?;
        let peer = Peer::Pods {
            tenant: pods.string("tenant")?.unwrap_or(namespace).to_string(),
            segment: pods.string("segment")?.map(str::to_string),
        };
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }

    checked(Policy {
        name: format!("{namespace}/{name}"),
        description: format!("{TPR_API_VERSION} NetworkPolicy {namespace}/{name}"),
        direction: Direction::Ingress,
        applied_to: vec![Target::Pods {
            tenant: namespace.to_string(),
            segment,
        }],
        peers,
        rules: rules.into_rules(),
        isolates: false,
        format: PolicyFormat::ThirdPartyResource,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        // Goal: 100 KB of nested flow mappings (seconds in the YAML parser)
        // is refused by the nesting check; brackets in strings and comments
        // do not count; real policies pass.
        let deep = "{a: ".repeat(25_000);
        let error = super::parse_policy_file(&deep).expect_err("refused");
        assert!(error.contains("nest deeper than 32"), "{error}");
        let deep_json = "[".repeat(50_000);
        assert!(super::parse_policy_file(&deep_json)
            .expect_err("refused")
            .contains("nest deeper"));
        let quoted = format!(
            "# {}\nname: \"{}\"\nnote: '{}'\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert!(super::check_flow_nesting(&quoted).is_ok());
        assert!(super::check_flow_nesting("a: [[[1]], {b: [2]}]\n").is_ok());
    }

    use super::*;

    fn tcp(ports: &[u16]) -> Rule {
        Rule {
            protocol: Protocol::Tcp,
            ports: ports.to_vec(),
            ..Rule::any()
        }
    }

    fn pods(tenant: &str, segment: Option<&str>) -> Peer {
        Peer::Pods {
            tenant: tenant.into(),
            segment: segment.map(String::from),
        }
    }

    fn target(tenant: &str, segment: Option<&str>) -> Target {
        Target::Pods {
            tenant: tenant.into(),
            segment: segment.map(String::from),
        }
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("test CIDR")
    }

    fn error_of<T: std::fmt::Debug>(result: Result<T, String>) -> String {
        match result {
            Ok(policies) => panic!("expected an error, got {policies:?}"),
            Err(e) => e,
        }
    }

    // A copy of shared/seed/romana-network-policy-request.json (the repository
    // must build without the shared folder beside it).
    const SEED: &str = r#"{
  "apiVersion": "romana.io/demo/v1",
  "kind": "NetworkPolicy",
  "metadata": {
    "name": "pol1"
  },
  "spec": {
    "podSelector": {
      "segment": "backend"
    },
    "allowIncoming": {
      "toPorts": [
        {
          "port": 80,
          "protocol": "TCP"
        }
      ],
      "from": [
        {
          "pods": {
            "segment": "frontend"
          }
        }
      ]
    }
  }
}"#;

    #[test]
    fn the_seed_tpr_parses() {
        let policies = parse_tpr("t1", SEED).expect("seed parses");
        assert_eq!(
            policies,
            vec![Policy {
                name: "t1/pol1".into(),
                description: "romana.io/demo/v1 NetworkPolicy t1/pol1".into(),
                direction: Direction::Ingress,
                applied_to: vec![target("t1", Some("backend"))],
                peers: vec![pods("t1", Some("frontend"))],
                rules: vec![tcp(&[80])],
                isolates: false,
                format: PolicyFormat::ThirdPartyResource,
            }]
        );
        // Without a namespace, the file reader refuses it and says why.
        let error = error_of(parse_policy_file(SEED));
        assert!(error.contains("namespace"), "{error}");
        assert!(error.contains("parse_tpr"), "{error}");
    }

    #[test]
    fn tpr_extensions_and_errors() {
        let text = r#"{"apiVersion": "romana.io/demo/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "pol2"},
            "spec": {"podSelector": {"segment": "db"},
              "allowIncoming": {
                "toPorts": [{"port": 5432, "protocol": "tcp"}, {"port": 53, "protocol": "UDP"},
                            {"port": 5433, "protocol": "TCP"}],
                "from": [{"pods": {"segment": "backend"}},
                         {"pods": {"segment": "reports", "tenant": "t2"}}]}}}"#;
        let policies = parse_tpr("t1", text).expect("parses");
        assert_eq!(policies.len(), 1);
        let policy = &policies[0];
        assert_eq!(policy.name, "t1/pol2");
        assert_eq!(
            policy.peers,
            vec![pods("t1", Some("backend")), pods("t2", Some("reports"))]
        );
        assert_eq!(
            policy.rules,
            vec![
                tcp(&[5432, 5433]),
                Rule {
                    protocol: Protocol::Udp,
                    ports: vec![53],
                    ..Rule::any()
                }
            ]
        );

        let bad = SEED.replace("\"TCP\"", "\"SCTP\"");
        let error = error_of(parse_tpr("t1", &bad));
        assert!(
            error.starts_with("spec.allowIncoming.toPorts[0].protocol: SCTP"),
            "{error}"
        );
        let bad = SEED.replace("\"segment\": \"frontend\"", "\"label\": \"frontend\"");
        let error = error_of(parse_tpr("t1", &bad));
        assert!(
            error.starts_with("spec.allowIncoming.from[0].pods.label"),
            "{error}"
        );
        let bad = SEED.replace("80", "70000");
        let error = error_of(parse_tpr("t1", &bad));
        assert!(
            error.starts_with("spec.allowIncoming.toPorts[0].port: 70000"),
            "{error}"
        );
        assert!(error_of(parse_tpr("", SEED)).starts_with("namespace"));
    }

    const FRONTEND_TO_BACKEND: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend-to-backend
  namespace: t1
  labels:
    team: web
spec:
  podSelector:
    matchLabels:
      romana.io/segment: backend
  policyTypes:
  - Ingress
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: t2
      podSelector:
        matchLabels:
          romana.io/segment: frontend
    ports:
    - protocol: TCP
      port: 80
"#;

    fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    fn one(text: &str) -> NetworkPolicy {
        let file = parse_policy_file(text).expect("parses");
        assert!(file.policies.is_empty());
        assert_eq!(file.network_policies.len(), 1);
        file.network_policies[0].clone()
    }

    fn tcp_port(port: u16) -> NetworkPolicyPort {
        NetworkPolicyPort {
            protocol: PortProtocol::Tcp,
            port: Some(PortRef::Number(port)),
            end_port: None,
        }
    }

    #[test]
    fn kubernetes_policies_are_kept_in_their_own_terms() {
        assert_eq!(
            one(FRONTEND_TO_BACKEND),
            NetworkPolicy {
                namespace: "t1".into(),
                name: "frontend-to-backend".into(),
                pod_selector: selector(&[("romana.io/segment", "backend")]),
                ingress: Some(vec![NetworkPolicyRule {
                    peers: vec![NetworkPolicyPeer::Pods {
                        namespaces: Some(selector(&[("kubernetes.io/metadata.name", "t2")])),
                        pods: Some(selector(&[("romana.io/segment", "frontend")])),
                    }],
                    ports: vec![tcp_port(80)],
                }]),
                egress: None,
            }
        );
    }

    #[test]
    fn kubernetes_json_defaults_expressions_named_ports_and_deny_all() {
        // JSON; no policyTypes (Ingress by default); matchExpressions; a
        // named port; an ingress rule with no peers (everyone).
        let text = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": "x"},
            "spec": {"podSelector": {"matchExpressions": [
                        {"key": "pod", "operator": "In", "values": ["a", "b"]},
                        {"key": "tier", "operator": "DoesNotExist"}]},
              "ingress": [
                {"from": [{"namespaceSelector": {}}, {"podSelector": {}}]},
                {"ports": [{"protocol": "UDP", "port": "serve-81-udp"}, {"protocol": "SCTP"}]}]}}"#;
        let policy = one(text);
        assert_eq!(policy.pod_selector.match_expressions.len(), 2);
        assert_eq!(
            policy.pod_selector.match_expressions[1].operator,
            SelectorOperator::DoesNotExist
        );
        let rules = policy.ingress.expect("ingress");
        assert_eq!(
            rules[0].peers,
            vec![
                NetworkPolicyPeer::Pods {
                    namespaces: Some(LabelSelector::default()),
                    pods: None
                },
                NetworkPolicyPeer::Pods {
                    namespaces: None,
                    pods: Some(LabelSelector::default())
                },
            ]
        );
        assert_eq!(
            rules[1].ports,
            vec![
                NetworkPolicyPort {
                    protocol: PortProtocol::Udp,
                    port: Some(PortRef::Name("serve-81-udp".into())),
                    end_port: None,
                },
                NetworkPolicyPort {
                    protocol: PortProtocol::Sctp,
                    port: None,
                    end_port: None,
                },
            ]
        );
        assert_eq!(policy.egress, None);

        // policyTypes without rules: deny all in that direction.
        let deny = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny, namespace: x}\n\
             spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n");
        assert_eq!(deny.ingress, Some(vec![]));
        assert_eq!(deny.egress, Some(vec![]));
        // No policyTypes and no rules: deny all ingress, as Kubernetes does.
        let deny = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n");
        assert_eq!(deny.ingress, Some(vec![]));
        assert_eq!(deny.egress, None);
    }

    #[test]
    fn kubernetes_egress_ip_block_and_port_ranges() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: t3}
spec:
  podSelector: {matchLabels: {app: batch}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 10.2.3.0/24]
    ports:
    - port: 443
    - protocol: TCP
      port: 8000
      endPort: 8080
"#;
        let policy = one(text);
        assert_eq!(policy.ingress, None);
        assert_eq!(
            policy.egress,
            Some(vec![NetworkPolicyRule {
                peers: vec![NetworkPolicyPeer::IpBlock {
                    cidr: cidr("10.0.0.0/8"),
                    except: vec![cidr("10.1.0.0/16"), cidr("10.2.3.0/24")],
                }],
                ports: vec![
                    tcp_port(443),
                    NetworkPolicyPort {
                        protocol: PortProtocol::Tcp,
                        port: Some(PortRef::Number(8000)),
                        end_port: Some(8080),
                    },
                ],
            }])
        );
    }

    #[test]
    fn kubernetes_bad_fields_are_named() {
        let cases: Vec<(String, &str)> = vec![
            (
                FRONTEND_TO_BACKEND.replace(
                    "    matchLabels:\n      romana.io/segment: backend",
                    "    matchExpressions:\n    - {key: app, operator: Near, values: [a]}",
                ),
                "spec.podSelector.matchExpressions[0].operator: \"Near\" is not an operator",
            ),
            (
                FRONTEND_TO_BACKEND.replace(
                    "    matchLabels:\n      romana.io/segment: backend",
                    "    matchExpressions:\n    - {key: app, operator: In}",
                ),
                "spec.podSelector.matchExpressions[0].values: operator In needs at least one value",
            ),
            (
                FRONTEND_TO_BACKEND.replace("port: 80", "port: Not_A_Name"),
                "spec.ingress[0].ports[0].port: \"Not_A_Name\" is not a port name",
            ),
            (
                FRONTEND_TO_BACKEND.replace("port: 80", "port: http\n      endPort: 90"),
                "spec.ingress[0].ports[0].endPort: cannot be given with a named port",
            ),
            (
                FRONTEND_TO_BACKEND.replace("protocol: TCP", "protocol: ICMP"),
                "spec.ingress[0].ports[0].protocol: \"ICMP\" is not a protocol",
            ),
            (
                FRONTEND_TO_BACKEND.replace("port: 80", "port: 0"),
                "spec.ingress[0].ports[0].port: 0 is not a port",
            ),
            (
                FRONTEND_TO_BACKEND.replace("port: 80", "port: 70000"),
                "spec.ingress[0].ports[0].port: 70000 is not a port",
            ),
            (
                FRONTEND_TO_BACKEND.replace("port: 80", "port: 80\n      endPort: 79"),
                "spec.ingress[0].ports[0].endPort: 79 is below port 80",
            ),
            (
                FRONTEND_TO_BACKEND.replace("    - protocol: TCP\n      port: 80", "    - endPort: 90"),
                "spec.ingress[0].ports[0].endPort: needs port",
            ),
            (
                FRONTEND_TO_BACKEND.replace("  namespace: t1\n", ""),
                "metadata.namespace: missing",
            ),
            (
                FRONTEND_TO_BACKEND.replace(
                    "  podSelector:\n    matchLabels:\n      romana.io/segment: backend\n",
                    "",
                ),
                "spec.podSelector: missing",
            ),
            (
                FRONTEND_TO_BACKEND.replace("kind: NetworkPolicy", "kind: Deployment"),
                "top level: apiVersion \"networking.k8s.io/v1\", kind \"Deployment\" is not a policy format",
            ),
            (
                FRONTEND_TO_BACKEND.replace(
                    "apiVersion: networking.k8s.io/v1",
                    "apiVersion: extensions/v1beta1",
                ),
                "apiVersion: \"extensions/v1beta1\" is not supported",
            ),
            (
                FRONTEND_TO_BACKEND.replace("  - Ingress", "  - Egress"),
                "spec.ingress: given, but spec.policyTypes does not include Ingress",
            ),
            (
                FRONTEND_TO_BACKEND.replace("  - Ingress", "  - Sideways"),
                "spec.policyTypes[0]: \"Sideways\" is not a policy type",
            ),
            (
                FRONTEND_TO_BACKEND.replace("  - Ingress", "  - Ingress\n  - Ingress"),
                "spec.policyTypes[1]: Ingress is given twice",
            ),
            (
                FRONTEND_TO_BACKEND.replace("    - protocol: TCP", "    - protocol: TCP\n      name: x"),
                "spec.ingress[0].ports[0].name: unknown field",
            ),
            (
                FRONTEND_TO_BACKEND.replace(
                    "  ingress:\n  - from:",
                    "  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}",
                ),
                "spec.ingress[0].from[0].ipBlock.except[0]: 192.168.0.0/16 is not inside 10.0.0.0/8",
            ),
            (
                FRONTEND_TO_BACKEND.replace(
                    "  ingress:\n  - from:",
                    "  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}",
                ),
                "spec.ingress[0].from[0].ipBlock: ipBlock cannot be combined",
            ),
            (
                FRONTEND_TO_BACKEND.replace("  ingress:\n  - from:", "  ingress:\n  - from:\n    - {}"),
                "spec.ingress[0].from[0]: give podSelector, namespaceSelector or ipBlock",
            ),
            ("just text".to_string(), "top level: expected a mapping"),
            ("kind: Pod\napiVersion: v1\n".to_string(), "top level: apiVersion \"v1\", kind \"Pod\""),
            ("hello: world\n".to_string(), "top level: not a policy"),
        ];
        for (text, expected) in cases {
            let error = error_of(parse_policy_file(&text));
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn multi_document_yaml_and_lists() {
        let second = FRONTEND_TO_BACKEND
            .replace("name: frontend-to-backend", "name: second")
            .replace("port: 80", "port: 443");
        let stream = format!("---\n{FRONTEND_TO_BACKEND}\n---\n{second}\n---\n");
        let file = parse_policy_file(&stream).expect("parses");
        assert_eq!(file.names(), ["t1/frontend-to-backend", "t1/second"]);
        assert_eq!(
            file.network_policies[1].ingress.as_ref().expect("rules")[0].ports,
            vec![tcp_port(443)]
        );

        // The same policy twice would silently replace itself.
        let twice = format!("{FRONTEND_TO_BACKEND}\n---\n{FRONTEND_TO_BACKEND}");
        let error = error_of(parse_policy_file(&twice));
        assert!(error.contains("given twice"), "{error}");

        // Errors say which document.
        let bad = format!(
            "{FRONTEND_TO_BACKEND}\n---\n{}",
            second.replace("port: 443", "port: 99999")
        );
        let error = error_of(parse_policy_file(&bad));
        assert!(
            error.starts_with("document 2: spec.ingress[0].ports[0].port: 99999"),
            "{error}"
        );

        // kind: List with items.
        let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
        for document in [FRONTEND_TO_BACKEND, second.as_str()] {
            let mut first = true;
            for line in document.trim().lines() {
                list.push_str(if first { "- " } else { "  " });
                list.push_str(line);
                list.push('\n');
                first = false;
            }
        }
        assert_eq!(parse_policy_file(&list).expect("list parses"), file);
        let bad_list = list.replace("port: 443", "port: 0");
        let error = error_of(parse_policy_file(&bad_list));
        assert!(
            error.starts_with("items[1].spec.ingress[0].ports[0].port: 0"),
            "{error}"
        );
        assert!(parse_policy_file("---\n---\n").is_err());
    }
    const ROMANA: &str = r#"{"securitypolicies": [{
        "name": "web",
        "description": "web from t2 and the hosts",
        "direction": "ingress",
        "applied_to": [{"tenant": "t1", "segment": "backend"}, {"cidr": "192.0.2.0/24"}],
        "peers": [{"peer": "host"}, {"tenant": "t2", "segment": "frontend"},
                  {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}],
        "rules": [{"protocol": "tcp", "ports": [80, 443], "port_ranges": [[8000, 8080]]},
                  {"protocol": "icmp", "icmp_type": 8, "icmp_code": 0}]
      }, {
        "name": "out",
        "direction": "egress",
        "applied_to": [{"tenant": "t1"}],
        "peers": [{"peer": "any"}],
        "rules": [{"protocol": "any"}]
      }]}"#;

    #[test]
    fn romana_json_parses() {
        let policies = parse_policy_file(ROMANA).expect("parses").policies;
        assert_eq!(
            policies,
            vec![
                Policy {
                    name: "web".into(),
                    description: "web from t2 and the hosts".into(),
                    direction: Direction::Ingress,
                    applied_to: vec![
                        target("t1", Some("backend")),
                        Target::Cidr(cidr("192.0.2.0/24"))
                    ],
                    peers: vec![
                        Peer::Host,
                        pods("t2", Some("frontend")),
                        Peer::Cidr {
                            cidr: cidr("10.0.0.0/8"),
                            except: vec![cidr("10.1.0.0/16")],
                        },
                    ],
                    rules: vec![
                        Rule {
                            protocol: Protocol::Tcp,
                            ports: vec![80, 443],
                            port_ranges: vec![(8000, 8080)],
                            icmp_type: None,
                            icmp_code: None,
                        },
                        Rule {
                            protocol: Protocol::Icmp,
                            ports: vec![],
                            port_ranges: vec![],
                            icmp_type: Some(8),
                            icmp_code: Some(0),
                        },
                    ],
                    isolates: false,
                    format: PolicyFormat::Romana,
                },
                Policy {
                    name: "out".into(),
                    description: String::new(),
                    direction: Direction::Egress,
                    applied_to: vec![target("t1", None)],
                    peers: vec![Peer::Any],
                    rules: vec![Rule::any()],
                    isolates: false,
                    format: PolicyFormat::Romana,
                },
            ]
        );
    }

    #[test]
    fn romana_json_errors_name_the_field() {
        let cases = [
            (
                ROMANA.replace(
                    "\"name\": \"out\",",
                    "\"name\": \"out\", \"stateful\": true,",
                ),
                "securitypolicies[1]: unknown field `stateful`",
            ),
            (
                ROMANA.replace(
                    "{\"peer\": \"host\"}",
                    "{\"peer\": \"host\", \"dest\": \"x\"}",
                ),
                "securitypolicies[0].peers[0]: unknown field `dest`",
            ),
            (
                ROMANA.replace(
                    "{\"cidr\": \"192.0.2.0/24\"}",
                    "{\"cidr\": \"192.0.2.0/24\", \"x\": 1}",
                ),
                "securitypolicies[0].applied_to[1]: unknown field `x`",
            ),
            (
                ROMANA.replace(
                    "\"protocol\": \"any\"",
                    "\"protocol\": \"any\", \"is_stateful\": true",
                ),
                "securitypolicies[1].rules[0]: unknown field `is_stateful`",
            ),
            (
                ROMANA.replace(
                    "{\"securitypolicies\"",
                    "{\"extra\": 1, \"securitypolicies\"",
                ),
                "top level: unknown field `extra`",
            ),
            (
                ROMANA.replace("\"protocol\": \"tcp\"", "\"protocol\": \"sctp\""),
                "securitypolicies[0].rules[0].protocol: \"sctp\" is not supported",
            ),
            (
                ROMANA.replace("[80, 443]", "[80, 0]"),
                "securitypolicies[0].rules[0].ports[1]: 0 is not a port",
            ),
            (
                ROMANA.replace("[80, 443]", "[80, 70000]"),
                "securitypolicies[0].rules[0].ports[1]: 70000 is not a port",
            ),
            (
                ROMANA.replace("[[8000, 8080]]", "[[8080, 8000]]"),
                "securitypolicies[0].rules[0].port_ranges[0]: 8080 is past 8000",
            ),
            (
                ROMANA.replace("[[8000, 8080]]", "[[8000]]"),
                "securitypolicies[0].rules[0].port_ranges[0]: expected [start, end]",
            ),
            (
                ROMANA.replace("\"peer\": \"any\"", "\"peer\": \"local\""),
                "securitypolicies[1].peers[0].peer: \"local\" is not a peer",
            ),
            (
                ROMANA.replace("\"direction\": \"egress\"", "\"direction\": \"both\""),
                "securitypolicies[1].direction: \"both\" is not a direction",
            ),
            (
                ROMANA.replace("\"cidr\": \"10.0.0.0/8\"", "\"cidr\": \"10.0.0.1/8\""),
                "securitypolicies[0].peers[2].cidr:",
            ),
            (
                ROMANA.replace("{\"tenant\": \"t1\"}", "{\"segment\": \"a\"}"),
                "securitypolicies[1].applied_to[0].segment: needs tenant",
            ),
            (
                ROMANA.replace("\"name\": \"web\"", "\"name\": \"Web\""),
                "policy \"Web\": name",
            ),
            (
                ROMANA.replace("\"icmp_code\": 0", "\"icmp_code\": 0, \"ports\": [1]"),
                "policy \"web\": rules[1]: ports need protocol tcp or udp",
            ),
            (
                ROMANA.replace("\"name\": \"out\"", "\"name\": \"web\""),
                "policy \"web\" is given twice",
            ),
            ("{\"securitypolicies\": [}".to_string(), "not valid JSON"),
        ];
        for (text, expected) in cases {
            let error = error_of(parse_policy_file(&text));
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        }
    }
}

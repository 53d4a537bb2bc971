//! The verbs. `run` dispatches on `CNI_COMMAND`; each `cmd_*` does one verb.
//!
//! ## How a pod is wired (ADD)
//!
//! The pod gets its address as a /32 on `CNI_IFNAME`, one end of a veth pair
//! created directly inside its namespace; the other end stays on the host,
//! named `rom` + 12 hex digits of a hash of (container id, interface).
//! The gateway is the block's gateway address (endpoint 1 of the pod's
//! host/tenant/segment block, e.g. 10.0.17.1 for 10.0.17.2), put as a /32 on
//! the host end of the veth — the way the reference `ptp` plugin does it,
//! and close to Romana's own per-host gateway:
//!
//! ```text
//! pod:   10.0.17.2/32 dev eth0
//!        10.0.17.1 dev eth0 scope link        (the gateway is on-link)
//!        default via 10.0.17.1 dev eth0
//! host:  10.0.17.1/32 on romXXXXXXXXXXXX      (answers ARP for the gateway)
//!        10.0.17.2 dev romXXXXXXXXXXXX scope link
//! ```
//!
//! Why not Calico's 169.254.1.1 with proxy ARP: with a real address in the
//! pod's own block, the pod can ping its gateway (the host answers), tools
//! that expect the gateway inside a routable range work, and isolation rules
//! that match tenant bits see the gateway as part of the tenant's space. The
//! same gateway address may sit on several host veths (one per pod of the
//! block); Linux allows it, and each copy is scoped by its /32 route.
//!
//! Everything after the allocation is undone by a guard if a later step
//! fails: the veth is deleted and the address released. The guard is armed
//! as soon as the node has answered the allocation, before its answer is
//! read, so a malformed answer cannot leak an address (the release names
//! the container id and interface, not the address). It is disarmed only
//! on success, or when the answer says the address was held from an
//! earlier ADD (not ours to undo).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use romana_api::cluster::ReadyView;
use romana_api::ipam::{
    AllocateBody, AllocationView, ContainerInterface, GcBody, NameBody, ReleaseBody,
};
use romana_api::paths::{self, PATH_ALLOCATIONS, PATH_GC, PATH_READY, PATH_RELEASE, PATH_TENANTS};
use romana_api::ErrorCode;
use romana_netlink::{format_mac, Netlink, NetlinkError, RETIRED_LINK_GROUP};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{resolve_segment, resolve_tenant, CniArgs, Command, Environment, NetConf};
use crate::error::{code, CniError, Result};
use crate::log::Log;
use crate::node_client::{Answer, NodeClient};
use crate::timing::Phases;
use crate::version;

/// Times an allocation whose outcome the node could not confirm is asked
/// again with the same request id (which answers the committed outcome).
const MAX_OUTCOME_RETRIES: u32 = 3;

/// A wire body as the client's JSON value.
fn to_json<T: Serialize>(body: &T) -> Value {
    // The API's bodies are plain structs of strings and options: always
    // representable as JSON.
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// The host end of a pod's veth: `rom` + 12 hex digits (15 bytes, the
/// longest name Linux allows).
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}\0{ifname}").as_bytes());
    format!("rom{}", &hex::encode(digest)[..12])
}

/// A request id unique to this invocation: a hash of the container, the
/// interface, the process id and the time (the plugin has no other state).
fn invocation_request_id(container_id: &str, ifname: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(
        format!("{container_id}\0{ifname}\0{}\0{nanos}", std::process::id()).as_bytes(),
    );
    hex::encode(&digest[..16])
}

fn dataplane(e: NetlinkError) -> CniError {
    CniError::new(code::DATAPLANE_FAILURE, e.to_string())
}

/// What `main` prints: the result JSON (or nothing), and the version the
/// error (if any) is reported in.
pub struct Outcome {
    pub cni_version: String,
    pub result: Result<Option<Value>>,
}

/// Runs one invocation.
/// `started`: when the process began (its phases are logged from there).
pub fn run(environment: &Environment, stdin: &[u8], started: std::time::Instant) -> Outcome {
    let Some(command) = environment.command else {
        return Outcome {
            cni_version: version::LATEST.into(),
            result: Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                "CNI_COMMAND is missing or not one of ADD, DEL, CHECK, VERSION, STATUS, GC",
            )),
        };
    };
    if command == Command::Version {
        let requested: Option<String> = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        return Outcome {
            cni_version: version::LATEST.into(),
            result: Ok(Some(version::version_answer(requested.as_deref()))),
        };
    }
    let config = match NetConf::parse(stdin) {
        Ok(config) => config,
        Err(e) => {
            return Outcome {
                cni_version: version::LATEST.into(),
                result: Err(e),
            }
        }
    };
    let log = Log::new(
        Some(&config.log_file),
        config.log_level,
        format!(
            "{command:?} container={} ifname={} network={}",
            environment.container_id.as_deref().unwrap_or("-"),
            environment.ifname.as_deref().unwrap_or("-"),
            config.name
        ),
    );
    let mut phases = Phases::since(started);
    phases.mark("config");
    let result = match command {
        Command::Add => cmd_add(environment, &config, &log, &mut phases).map(Some),
        Command::Del => cmd_del(environment, &config, &log, &mut phases).map(|()| None),
        Command::Check if version::has_check(&config.cni_version) => {
            cmd_check(environment, &config, &log).map(|()| None)
        }
        Command::Status | Command::Gc if version::has_status_and_gc(&config.cni_version) => {
            if command == Command::Status {
                cmd_status(&config, &log).map(|()| None)
            } else {
                cmd_gc(&config, &log).map(|()| None)
            }
        }
        other => Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("{other:?} is not part of CNI {}", config.cni_version),
        )),
    };
    match &result {
        Ok(_) => log.info(&format!("ok in {}", phases.summary())),
        Err(e) => log.error(&e.to_string()),
    }
    Outcome {
        cni_version: config.cni_version.clone(),
        result,
    }
}

/// Undoes a half-done ADD: deletes the host veth (the pod end goes with it)
/// and releases the address, unless disarmed.
struct AddRollback<'a> {
    client: &'a NodeClient,
    log: &'a Log,
    container_id: String,
    ifname: String,
    host_veth: String,
    armed: bool,
}

impl Drop for AddRollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.log.error("rolling back the ADD");
        if let Err(e) = Netlink::open_here().and_then(|mut host| host.delete_link(&self.host_veth))
        {
            self.log.error(&format!("rollback: {e}"));
        }
        let body = to_json(&ReleaseBody {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            request_id: None,
        });
        match self.client.post(PATH_RELEASE, &body) {
            Ok(answer) if answer.is_success() => {}
            Ok(answer) => self
                .log
                .error(&format!("rollback: release refused: {}", answer.message())),
            Err(e) => self.log.error(&format!("rollback: release failed: {e}")),
        }
    }
}

/// The allocation in the node's answer; a malformed one is refused (the
/// caller's guard then releases whatever the node allocated).
fn parse_allocation(body: Value) -> Result<AllocationView> {
    serde_json::from_value(body).map_err(|e| {
        CniError::new(
            code::NODE_REFUSED,
            format!("the node's answer is not an allocation: {e}"),
        )
    })
}

/// Posts the allocation, asking again with the same request id while the
/// node answers that the outcome is not known yet.
fn post_allocation(
    client: &NodeClient,
    body: &Value,
    log: &Log,
    phases: &mut Phases,
) -> Result<Answer> {
    let mut answer = client.post(PATH_ALLOCATIONS, body)?;
    phases.node(answer.node_ms);
    for attempt in 1..=MAX_OUTCOME_RETRIES {
        if answer.is_success() || answer.code() != ErrorCode::OutcomeUnknown {
            break;
        }
        log.info(&format!(
            "allocation outcome unknown ({}); asking again with the same request id, attempt {attempt}",
            answer.message()
        ));
        answer = client.post(PATH_ALLOCATIONS, body)?;
        phases.node(answer.node_ms);
    }
    Ok(answer)
}

/// Asks the node for an address; returns its (unparsed) answer body.
fn allocate(
    config: &NetConf,
    client: &NodeClient,
    body: &Value,
    tenant: Option<&str>,
    log: &Log,
    phases: &mut Phases,
) -> Result<Value> {
    let answer = post_allocation(client, body, log, phases)?;
    if answer.is_success() {
        return Ok(answer.body);
    }
    let unknown_tenant = answer.code() == ErrorCode::UnknownTenant;
    // A tenant the node resolves (from Kubernetes labels) is never created
    // here: tenants are configured.
    let Some(tenant) = tenant.filter(|_| unknown_tenant && config.auto_create_tenants) else {
        return Err(answer.into_error("allocate an address"));
    };
    log.info(&format!("creating tenant {tenant} (auto_create_tenants)"));
    let created = client.post(
        PATH_TENANTS,
        &to_json(&NameBody {
            name: tenant.to_string(),
            request_id: None,
        }),
    )?;
    // A concurrent ADD may have created it first: that is fine.
    if !created.is_success() && created.status != 409 {
        return Err(created.into_error(&format!("create tenant {tenant}")));
    }
    let answer = post_allocation(client, body, log, phases)?;
    if answer.is_success() {
        Ok(answer.body)
    } else {
        Err(answer.into_error("allocate an address"))
    }
}

fn enable_forwarding() -> Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    match std::fs::read_to_string(PATH) {
        Ok(value) if value.trim() == "1" => Ok(()),
        _ => std::fs::write(PATH, "1").map_err(|e| {
            CniError::new(
                code::DATAPLANE_FAILURE,
                format!("enable IPv4 forwarding: {e}"),
            )
        }),
    }
}

fn cmd_add(
    environment: &Environment,
    config: &NetConf,
    log: &Log,
    phases: &mut Phases,
) -> Result<Value> {
    let container_id = environment.container_id()?;
    let ifname = environment.ifname()?;
    let netns = environment.netns()?;
    let args: CniArgs = environment.args()?;
    let netns_file = File::open(netns).map_err(|e| {
        CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_NETNS {}: {e}", netns.display()),
        )
    })?;
    refuse_host_netns(&netns_file, netns)?;
    let (tenant, tenant_source) = resolve_tenant(config, &args)?;
    let (segment, segment_source) = resolve_segment(config, &args);
    log.debug(&format!(
        "tenant {} ({tenant_source}), segment {} ({segment_source})",
        tenant.as_deref().unwrap_or("(the node's choice)"),
        segment.as_deref().unwrap_or("(the node's choice)")
    ));
    let client = NodeClient::new(config.node.clone())?.for_command("ADD");
    let host_veth = host_veth_name(container_id, ifname);
    let mut host = Netlink::open_here().map_err(dataplane)?;
    match host.link(&host_veth).map_err(dataplane)? {
        // Retired by a DEL of this container moments ago and not deleted
        // by the node yet: an ADD again (a runtime retrying a sandbox)
        // deletes it now.
        Some(link) if link.group == RETIRED_LINK_GROUP => {
            log.info(&format!(
                "deleting {host_veth}, retired by an earlier DEL, before setting up again"
            ));
            host.delete_link(&host_veth).map_err(dataplane)?;
        }
        Some(_) => return Err(CniError::new(
            code::ALREADY_SET_UP,
            format!("{container_id}/{ifname} is already set up (host interface {host_veth} exists); DEL it first"),
        )),
        None => {}
    }

    let body = to_json(&AllocateBody {
        host: None,
        tenant: tenant.clone(),
        segment: segment.clone(),
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        pod_namespace: args.get("K8S_POD_NAMESPACE").map(str::to_string),
        pod_name: args.get("K8S_POD_NAME").map(str::to_string),
        network: Some(config.name.clone()),
        // One id per invocation: retries of this ADD's allocation (when the
        // node could not confirm the outcome) replay the committed answer.
        request_id: Some(invocation_request_id(container_id, ifname)),
    });
    phases.mark("prepare");
    let answer = allocate(config, &client, &body, tenant.as_deref(), log, phases)?;
    // From here on the node holds an address for this container/interface:
    // any failure, reading the answer included, releases it.
    let mut rollback = AddRollback {
        client: &client,
        log,
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        host_veth: host_veth.clone(),
        armed: true,
    };
    let allocation = parse_allocation(answer)?;
    let (address, gateway) = (allocation.address, allocation.gateway);
    if !allocation.newly_allocated {
        // Held from an earlier ADD: not ours to roll back.
        rollback.armed = false;
        return Err(CniError::new(
            code::ALREADY_SET_UP,
            format!(
                "{container_id}/{ifname} already holds {address} from an earlier ADD; DEL it first"
            ),
        ));
    }

    phases.mark("allocate");
    host.create_veth(&host_veth, ifname, netns_file.as_raw_fd(), config.mtu)
        .map_err(dataplane)?;
    phases.mark("veth");
    let mut pod = Netlink::open_in(netns).map_err(dataplane)?;
    let pod_link = pod.link(ifname).map_err(dataplane)?.ok_or_else(|| {
        CniError::new(
            code::DATAPLANE_FAILURE,
            format!("{ifname} missing in the pod after creation"),
        )
    })?;
    pod.set_up(pod_link.index, ifname).map_err(dataplane)?;
    pod.add_address(pod_link.index, address, 32, ifname)
        .map_err(dataplane)?;
    pod.add_route(
        gateway,
        32,
        None,
        pod_link.index,
        "add the gateway route in the pod",
    )
    .map_err(dataplane)?;
    pod.add_route(
        Ipv4Addr::UNSPECIFIED,
        0,
        Some(gateway),
        pod_link.index,
        "add the default route in the pod",
    )
    .map_err(dataplane)?;

    phases.mark("pod");
    let host_link = host.link(&host_veth).map_err(dataplane)?.ok_or_else(|| {
        CniError::new(
            code::DATAPLANE_FAILURE,
            format!("{host_veth} missing after creation"),
        )
    })?;
    host.add_address(host_link.index, gateway, 32, &host_veth)
        .map_err(dataplane)?;
    host.set_up(host_link.index, &host_veth)
        .map_err(dataplane)?;
    host.add_route(
        address,
        32,
        None,
        host_link.index,
        "add the host route to the pod",
    )
    .map_err(dataplane)?;
    enable_forwarding()?;
    rollback.armed = false;
    phases.mark("host");

    log.info(&format!(
        "{address} via {gateway}, host side {host_veth}, tenant {}, segment {}",
        allocation.tenant, allocation.segment
    ));
    let mut host_interface = json!({ "name": host_veth });
    if let Some(mac) = &host_link.mac {
        host_interface["mac"] = json!(format_mac(mac));
    }
    let mut pod_interface = json!({ "name": ifname, "sandbox": netns.display().to_string() });
    if let Some(mac) = &pod_link.mac {
        pod_interface["mac"] = json!(format_mac(mac));
    }
    if let Some(mtu) = pod_link.mtu {
        pod_interface["mtu"] = json!(mtu);
    }
    let result = json!({
        "cniVersion": config.cni_version,
        "interfaces": [host_interface, pod_interface],
        "ips": [{ "address": format!("{address}/32"), "gateway": gateway.to_string(), "interface": 1 }],
        "routes": [{ "dst": "0.0.0.0/0", "gw": gateway.to_string() }],
        "dns": {},
    });
    let result = version::convert_result(result, &config.cni_version);
    phases.mark("result");
    Ok(result)
}

fn cmd_del(
    environment: &Environment,
    config: &NetConf,
    log: &Log,
    phases: &mut Phases,
) -> Result<()> {
    let container_id = environment.container_id()?;
    let ifname = environment.ifname()?;
    let host_veth = host_veth_name(container_id, ifname);
    // The veth first: an address must never be handed out again while the
    // old pod's interface can still carry traffic. Retiring the host end
    // (down, into the retired group, one request) takes the pod's route
    // with it and cuts the pod off at once; the node deletes retired veths
    // in batches, one RCU grace period for many of them, within a second
    // (deleting it here would make every DEL wait about 20 ms for the
    // kernel). Gone already is fine.
    let mut host = Netlink::open_here().map_err(dataplane)?;
    host.retire_link(&host_veth, RETIRED_LINK_GROUP)
        .map_err(dataplane)?;
    phases.mark("veth");
    let node_ms = post_and_log_outcome(
        config,
        PATH_RELEASE,
        &to_json(&ReleaseBody {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            request_id: None,
        }),
        "release the address",
        "released",
        log,
    )?;
    phases.node(node_ms);
    phases.mark("release");
    Ok(())
}

/// Posts a request the node answers with an `outcome`, turns a refusal
/// into the CNI error for `what`, and logs the outcome under `label`.
/// Returns the node's own time for the request, if it said.
fn post_and_log_outcome(
    config: &NetConf,
    path: &str,
    body: &Value,
    what: &str,
    label: &str,
    log: &Log,
) -> Result<Option<f64>> {
    let command = if path == PATH_GC { "GC" } else { "DEL" };
    let client = NodeClient::new(config.node.clone())?.for_command(command);
    let answer = client.post(path, body)?;
    if !answer.is_success() {
        return Err(answer.into_error(what));
    }
    log.info(&format!(
        "{label}: {}",
        answer
            .body
            .get("outcome")
            .map(Value::to_string)
            .unwrap_or_default()
    ));
    Ok(answer.node_ms)
}

/// Refuses a `CNI_NETNS` that is the host's own network namespace (the
/// plugin's, or PID 1's where readable): an ADD there would put a pod
/// address and a default route on the host itself.
fn refuse_host_netns(netns: &File, path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let target = netns.metadata().map_err(|e| {
        CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_NETNS {}: {e}", path.display()),
        )
    })?;
    for host in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        if let Ok(host) = std::fs::metadata(host) {
            if host.dev() == target.dev() && host.ino() == target.ino() {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!(
                        "CNI_NETNS {} is the host's own network namespace, not a pod's",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_failed(what: String) -> CniError {
    CniError::new(code::CHECK_FAILED, what)
}

fn cmd_check(environment: &Environment, config: &NetConf, _log: &Log) -> Result<()> {
    let container_id = environment.container_id()?;
    let ifname = environment.ifname()?;
    let netns = environment.netns()?;
    let previous = config.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "invalid network config: prevResult is required for CHECK",
        )
    })?;
    let ip = previous
        .get("ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "invalid network config: prevResult has no ips",
            )
        })?;
    let address: Ipv4Addr = ip
        .get("address")
        .and_then(Value::as_str)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "invalid network config: prevResult ips[0].address",
            )
        })?;
    let gateway: Option<Ipv4Addr> = ip
        .get("gateway")
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok());

    let mut pod = Netlink::open_in(netns).map_err(dataplane)?;
    let pod_link = pod.link(ifname).map_err(dataplane)?.ok_or_else(|| {
        check_failed(format!(
            "interface {ifname} is missing in {}",
            netns.display()
        ))
    })?;
    if !pod_link.up {
        return Err(check_failed(format!("interface {ifname} is down")));
    }
    if !pod
        .addresses(pod_link.index)
        .map_err(dataplane)?
        .contains(&(address, 32))
    {
        return Err(check_failed(format!(
            "address {address}/32 is missing on {ifname}"
        )));
    }
    let pod_routes = pod.routes().map_err(dataplane)?;
    let has_default = pod_routes.iter().any(|r| {
        r.prefix_len == 0
            && r.oif == Some(pod_link.index)
            && (gateway.is_none() || r.gateway == gateway)
    });
    if !has_default {
        return Err(check_failed(format!(
            "the default route{} on {ifname} is missing",
            gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        )));
    }
    let host_veth = host_veth_name(container_id, ifname);
    let mut host = Netlink::open_here().map_err(dataplane)?;
    let host_link = host
        .link(&host_veth)
        .map_err(dataplane)?
        .ok_or_else(|| check_failed(format!("host interface {host_veth} is missing")))?;
    let host_route =
        host.routes().map_err(dataplane)?.into_iter().any(|r| {
            r.destination == address && r.prefix_len == 32 && r.oif == Some(host_link.index)
        });
    if !host_route {
        return Err(check_failed(format!(
            "the host route to {address} via {host_veth} is missing"
        )));
    }
    let client = NodeClient::new(config.node.clone())?.for_command("CHECK");
    let answer = client.get(&paths::address(address))?;
    if !answer.is_success() {
        return Err(answer.into_error("look up the allocation"));
    }
    let holder = &answer.body["allocation"];
    if holder.get("container_id").and_then(Value::as_str) != Some(container_id)
        || holder.get("ifname").and_then(Value::as_str) != Some(ifname)
    {
        return Err(check_failed(format!(
            "{address} is not allocated to {container_id}/{ifname} in the cluster (holder: {holder})"
        )));
    }
    Ok(())
}

fn cmd_status(config: &NetConf, _log: &Log) -> Result<()> {
    let unavailable = |reason: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, reason);
    let client = NodeClient::new(config.node.clone())?.for_command("STATUS");
    let answer = client.get(PATH_READY).map_err(|e| unavailable(e.msg))?;
    if !answer.is_success() {
        return Err(unavailable(format!(
            "the node answered: {}",
            answer.message()
        )));
    }
    let ready: ReadyView = serde_json::from_value(answer.body)
        .map_err(|e| unavailable(format!("unreadable readiness answer: {e}")))?;
    if ready.leader.is_none() {
        return Err(unavailable("the cluster has no leader (no quorum?)".into()));
    }
    if !ready.registered_host {
        return Err(unavailable(format!(
            "this node ({}) is not registered as a host yet",
            ready.name
        )));
    }
    Ok(())
}

fn cmd_gc(config: &NetConf, log: &Log) -> Result<()> {
    let valid = config.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "invalid network config: cni.dev/valid-attachments is required for GC",
        )
    })?;
    let valid: Vec<ContainerInterface> = valid
        .iter()
        .map(|(container_id, ifname)| ContainerInterface {
            container_id: container_id.clone(),
            ifname: ifname.clone(),
        })
        .collect();
    post_and_log_outcome(
        config,
        PATH_GC,
        &to_json(&GcBody {
            host: None,
            network: Some(config.name.clone()),
            valid,
            request_id: None,
        }),
        "garbage-collect addresses",
        "garbage collection",
        log,
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_differ() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("rom"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_eq!(a, host_veth_name("abc", "eth0"));
    }
}

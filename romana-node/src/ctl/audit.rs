//! `romanactl audit`: the network's history from the audit archive, from a
//! running node (`GET /v1/audit/records`) or offline from a data dir (also a
//! copy taken from a dead node). All the answers are computed here from the
//! records, the same way for both.
//!
//! - `log`: requests with time, actor, request and outcome, filtered;
//! - `at TIME|INDEX`: the whole state at that point, rebuilt by replay;
//! - `ip IP`: every holder of an address, with from and to;
//! - `diff A B`: what changed between two points;
//! - `verify`: the hash chain end to end;
//! - `export --format jsonl`: one JSON object per record, for a SIEM.
//!
//! Times are RFC 3339 (`2026-11-27T14:03:00Z`) or relative to now (`-2h`,
//! `-30m`).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use raft_store::audit::{self, ArchiveRecord};
use raft_store::state::{ClusterState, Effect, Outcome};
use raft_store::store::{read_archive, SledBackend};
use raft_store::Command;
use serde_json::{json, Value};

use super::{table, Output};
use crate::error::Error;
pub use crate::history::format_time;
use crate::history::{record_json, state_view};
use crate::http_client::ApiClient;
use romana_api::paths::PATH_AUDIT_RECORDS;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Requests with time, actor, request and outcome.
    Log {
        /// From this time (RFC 3339, or relative: -2h).
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
        /// Until this time.
        #[arg(long, allow_hyphen_values = true)]
        until: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        actor: Option<String>,
    },
    /// The whole state at a point: a time, or a log index.
    At {
        #[arg(allow_hyphen_values = true)]
        point: String,
    },
    /// Every holder of an address, with from and to.
    Ip { address: String },
    /// What changed between two points (times or log indexes).
    Diff {
        #[arg(allow_hyphen_values = true)]
        from: String,
        #[arg(allow_hyphen_values = true)]
        to: String,
    },
    /// Check the hash chain end to end (exit 0, or 1 naming where it breaks).
    Verify,
    /// One JSON object per record.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

/// Where the records come from.
pub enum Source<'a> {
    Node(&'a ApiClient),
    DataDir(PathBuf),
}

pub async fn records(source: Source<'_>) -> Result<Vec<ArchiveRecord>, Error> {
    match source {
        Source::Node(client) => client
            .get(PATH_AUDIT_RECORDS)
            .await
            .map_err(|e| Error::Api(e.to_string())),
        Source::DataDir(dir) => {
            let database = dir.join("raft");
            if !database.join("db").exists() && !database.join("conf").exists() {
                return Err(Error::Config(format!(
                    "{} is not a romana data dir (no raft database in it)",
                    dir.display()
                )));
            }
            crate::node::remove_unfinished_snapshots(&database)?;
            let backend = SledBackend::open(&database).map_err(|e| {
                Error::Config(format!(
                    "cannot open {} (is its node still running?): {e}",
                    database.display()
                ))
            })?;
            read_archive(&backend).map_err(Error::Storage)
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A time: RFC 3339, or `-DURATION` before now.
pub fn parse_time(text: &str) -> Result<u64, Error> {
    if let Some(ago) = text.strip_prefix('-') {
        let duration = humantime::parse_duration(ago).map_err(|e| {
            Error::Config(format!("time {text:?}: {e} (use RFC 3339 or -2h, -30m)"))
        })?;
        return Ok(now_ms().saturating_sub(duration.as_millis() as u64));
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| Error::Config(format!("time {text:?}: {e} (use RFC 3339 or -2h, -30m)")))?;
    Ok(time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

/// A point in history: the last record at or before a log index or a time.
fn point(records: &[ArchiveRecord], text: &str) -> Result<u64, Error> {
    let sequence = match text.parse::<u64>() {
        Ok(index) => records.iter().rev().find(|r| r.applied.index <= index),
        Err(_) => {
            let time = parse_time(text)?;
            records
                .iter()
                .rev()
                .find(|r| r.request.meta.timestamp_ms <= time)
        }
    };
    Ok(sequence.map(|r| r.sequence).unwrap_or(0))
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, Error> {
    text.parse()
        .map_err(|_| Error::Config(format!("{text:?} is not an IPv4 address")))
}

/// Addresses a record's outcome allocated or released.
fn addresses_of(record: &ArchiveRecord) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
    match &record.applied.outcome {
        Outcome::Applied(Effect::AddressAllocated {
            address,
            existing: false,
        }) => (vec![*address], vec![]),
        Outcome::Applied(Effect::AddressReleased { address }) => (vec![], vec![*address]),
        Outcome::Applied(Effect::GarbageCollected { released })
        | Outcome::Applied(Effect::NodeRemoved { released, .. }) => (vec![], released.clone()),
        _ => (vec![], vec![]),
    }
}

fn tenants_of(command: &Command) -> Vec<String> {
    match command {
        Command::CreateTenant { name } | Command::DeleteTenant { name } => vec![name.clone()],
        Command::CreateSegment { tenant, .. } | Command::DeleteSegment { tenant, .. } => {
            vec![tenant.clone()]
        }
        Command::AllocateAddress(request) => vec![request.tenant.clone()],
        Command::ApplyPolicies { policies } => policies
            .iter()
            .flat_map(|p| {
                p.applied_to
                    .iter()
                    .filter_map(|t| match t {
                        raft_store::entry::policy::Target::Pods { tenant, .. } => {
                            Some(tenant.clone())
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => vec![],
    }
}

fn host_of(command: &Command) -> Option<&str> {
    match command {
        Command::AllocateAddress(request) => Some(&request.host),
        Command::RegisterNode { name, .. } | Command::RemoveNode { name, .. } => Some(name),
        Command::GarbageCollect { host, .. } => Some(host),
        _ => None,
    }
}

fn replay_to(records: &[ArchiveRecord], sequence: u64) -> Result<ClusterState, Error> {
    crate::history::replay_to(records, sequence).map_err(Error::Api)
}

/// Checks the command's arguments before any record is read, so a bad time
/// or address is refused with its own message, not a connection error.
pub fn validate(command: &AuditCommand) -> Result<(), Error> {
    let point = |text: &str| match text.parse::<u64>() {
        Ok(_) => Ok(()),
        Err(_) => parse_time(text).map(|_| ()),
    };
    match command {
        AuditCommand::Log {
            since, until, ip, ..
        } => {
            if let Some(t) = since {
                parse_time(t)?;
            }
            if let Some(t) = until {
                parse_time(t)?;
            }
            if let Some(ip) = ip {
                parse_ip(ip)?;
            }
        }
        AuditCommand::At { point: at } => point(at)?,
        AuditCommand::Ip { address } => {
            parse_ip(address)?;
        }
        AuditCommand::Diff { from, to } => {
            point(from)?;
            point(to)?;
        }
        AuditCommand::Verify => {}
        AuditCommand::Export { format } => {
            if format != "jsonl" {
                return Err(Error::Config(format!(
                    "--format {format:?}: only jsonl is supported"
                )));
            }
        }
    }
    Ok(())
}

/// Runs one audit command over `records`; (stdout, success).
pub fn execute(
    command: AuditCommand,
    records: &[ArchiveRecord],
    output: Output,
) -> Result<(String, bool), Error> {
    let json_out = |value: &Value| {
        serde_json::to_string_pretty(value)
            .map(|t| t + "\n")
            .unwrap_or_default()
    };
    match command {
        AuditCommand::Log {
            since,
            until,
            tenant,
            host,
            ip,
            actor,
        } => {
            let since = since.as_deref().map(parse_time).transpose()?;
            let until = until.as_deref().map(parse_time).transpose()?;
            let ip = ip.as_deref().map(parse_ip).transpose()?;
            let selected: Vec<&ArchiveRecord> = records
                .iter()
                .filter(|r| since.is_none_or(|t| r.request.meta.timestamp_ms >= t))
                .filter(|r| until.is_none_or(|t| r.request.meta.timestamp_ms <= t))
                .filter(|r| {
                    tenant
                        .as_ref()
                        .is_none_or(|t| tenants_of(&r.request.command).contains(t))
                })
                .filter(|r| {
                    host.as_deref()
                        .is_none_or(|h| host_of(&r.request.command) == Some(h))
                })
                .filter(|r| {
                    ip.is_none_or(|ip| {
                        let (allocated, released) = addresses_of(r);
                        allocated.contains(&ip) || released.contains(&ip)
                    })
                })
                .filter(|r| {
                    actor
                        .as_deref()
                        .is_none_or(|a| r.request.meta.actor.contains(a))
                })
                .collect();
            let text = match output {
                Output::Json => json_out(&Value::Array(
                    selected.iter().map(|r| record_json(r)).collect(),
                )),
                Output::Table => {
                    let rows: Vec<Vec<String>> = selected
                        .iter()
                        .map(|r| {
                            vec![
                                r.applied.index.to_string(),
                                format_time(r.request.meta.timestamp_ms),
                                r.request.meta.actor.clone(),
                                r.request.command.to_string(),
                                r.applied.outcome.to_string(),
                            ]
                        })
                        .collect();
                    table(&["INDEX", "TIME", "ACTOR", "REQUEST", "OUTCOME"], &rows)
                }
            };
            Ok((text, true))
        }
        AuditCommand::At { point: at } => {
            let sequence = point(records, &at)?;
            let view = crate::history::view_at(records, Some(sequence)).map_err(Error::Api)?;
            let index = view.index;
            let value = serde_json::to_value(&view).unwrap_or(Value::Null);
            let text = match output {
                Output::Json => json_out(&value),
                Output::Table => {
                    let mut text = format!(
                        "at log index {index} (record {sequence}): state hash {}\n\n",
                        view.state_hash
                    );
                    text.push_str(&format!(
                        "hosts:       {}\n",
                        view.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                    text.push_str(&format!(
                        "tenants:     {}\n",
                        view.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                    text.push_str(&format!("policies:    {}\n", view.policies.join(", ")));
                    text.push_str(&format!("allocations: {}\n", view.allocations.len()));
                    for (address, allocation) in &view.allocations {
                        text.push_str(&format!(
                            "  {address}  {}\n",
                            allocation["owner"].as_str().unwrap_or("")
                        ));
                    }
                    text
                }
            };
            Ok((text, true))
        }
        AuditCommand::Ip { address } => {
            let ip = parse_ip(&address)?;
            let mut holders: Vec<Value> = Vec::new();
            for record in records {
                let (allocated, released) = addresses_of(record);
                if allocated.contains(&ip) {
                    let (owner, pod, host) = match &record.request.command {
                        Command::AllocateAddress(request) => (
                            request.owner.to_string(),
                            request.pod_name.clone(),
                            request.host.clone(),
                        ),
                        _ => (String::new(), None, String::new()),
                    };
                    holders.push(json!({"owner": owner, "pod": pod, "host": host,
                        "from": format_time(record.request.meta.timestamp_ms), "from_index": record.applied.index,
                        "to": null, "to_index": null}));
                }
                if released.contains(&ip) {
                    if let Some(open) = holders.iter_mut().rev().find(|h| h["to_index"].is_null()) {
                        open["to"] = json!(format_time(record.request.meta.timestamp_ms));
                        open["to_index"] = json!(record.applied.index);
                    }
                }
            }
            let text = match output {
                Output::Json => json_out(&Value::Array(holders)),
                Output::Table => {
                    let rows: Vec<Vec<String>> = holders
                        .iter()
                        .map(|h| {
                            vec![
                                h["owner"].as_str().unwrap_or("").to_string(),
                                h["pod"].as_str().unwrap_or("-").to_string(),
                                h["host"].as_str().unwrap_or("").to_string(),
                                format!(
                                    "{} (index {})",
                                    h["from"].as_str().unwrap_or(""),
                                    h["from_index"]
                                ),
                                if h["to_index"].is_null() {
                                    "(still held)".into()
                                } else {
                                    format!(
                                        "{} (index {})",
                                        h["to"].as_str().unwrap_or(""),
                                        h["to_index"]
                                    )
                                },
                            ]
                        })
                        .collect();
                    table(&["HOLDER", "POD", "HOST", "FROM", "TO"], &rows)
                }
            };
            Ok((text, true))
        }
        AuditCommand::Diff { from, to } => {
            let (a, b) = (point(records, &from)?, point(records, &to)?);
            let (before, after) = (
                serde_json::to_value(state_view(&replay_to(records, a)?, a, 0, 0))
                    .unwrap_or(Value::Null),
                serde_json::to_value(state_view(&replay_to(records, b)?, b, 0, 0))
                    .unwrap_or(Value::Null),
            );
            let mut changes = Vec::new();
            for section in ["hosts", "tenants", "allocations"] {
                let empty = serde_json::Map::new();
                let old = before[section].as_object().unwrap_or(&empty);
                let new = after[section].as_object().unwrap_or(&empty);
                for (key, value) in new {
                    match old.get(key) {
                        None => changes.push(format!("+ {section} {key} {value}")),
                        Some(previous) if previous != value => {
                            changes.push(format!("~ {section} {key} {previous} -> {value}"))
                        }
                        Some(_) => {}
                    }
                }
                for key in old.keys().filter(|k| !new.contains_key(*k)) {
                    changes.push(format!("- {section} {key}"));
                }
            }
            let old_policies: Vec<String> =
                serde_json::from_value(before["policies"].clone()).unwrap_or_default();
            let new_policies: Vec<String> =
                serde_json::from_value(after["policies"].clone()).unwrap_or_default();
            for p in new_policies.iter().filter(|p| !old_policies.contains(p)) {
                changes.push(format!("+ policies {p}"));
            }
            for p in old_policies.iter().filter(|p| !new_policies.contains(p)) {
                changes.push(format!("- policies {p}"));
            }
            let text = match output {
                Output::Json => {
                    json_out(&json!({"from_record": a, "to_record": b, "changes": changes}))
                }
                Output::Table => {
                    let mut text =
                        format!("from record {a} to record {b}: {} changes\n", changes.len());
                    for change in &changes {
                        text.push_str(change);
                        text.push('\n');
                    }
                    text
                }
            };
            Ok((text, true))
        }
        AuditCommand::Verify => match audit::verify(records) {
            Ok(()) => {
                let head = records.last().map(|r| r.chain.clone()).unwrap_or_default();
                Ok((
                    format!("ok: {} records, chain head {head}\n", records.len()),
                    true,
                ))
            }
            Err(broken) => Ok((
                format!(
                    "broken at record {} (log index {}): {}\n",
                    broken.sequence, broken.index, broken.reason
                ),
                false,
            )),
        },
        AuditCommand::Export { format } => {
            if format != "jsonl" {
                return Err(Error::Config(format!(
                    "--format {format:?}: only jsonl is supported"
                )));
            }
            let mut text = String::new();
            for record in records {
                text.push_str(&record_json(record).to_string());
                text.push('\n');
            }
            Ok((text, true))
        }
    }
}

//! `romanactl`: the operator CLI. Talks to one node's API, over the local
//! unix socket by default or over TCP with `--server` (which needs the
//! cluster secret). Tables for people, JSON (`-o json`) for scripts.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use raft_store::transport::ClusterSecret;
use serde::Serialize;

use crate::api::{
    MemberView, NodeView, NoteBody, StatusView, WriteResult, PATH_NODES, PATH_NOTES, PATH_STATUS,
};
use crate::config::DEFAULT_API_SOCKET;
use crate::error::Error;
use crate::http_client::{ApiClient, Endpoint};

#[derive(Parser, Debug)]
#[command(name = "romanactl", version, about = "Operate a Romana cluster")]
pub struct Cli {
    /// A node's TCP API, HOST:PORT (needs --cluster-secret-file).
    #[arg(long, global = true, conflicts_with = "socket")]
    pub server: Option<String>,
    /// The local node's unix socket.
    #[arg(long, global = true, default_value = DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// File holding the cluster secret (for --server).
    #[arg(long, global = true)]
    pub cluster_secret_file: Option<PathBuf>,
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
    /// Nodes of the cluster.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Record an operator's note in the cluster's history.
    Note {
        text: String,
        /// Idempotency key (a retry with the same id has one effect).
        #[arg(long)]
        request_id: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List the nodes.
    List,
    /// Remove a node from the cluster (a voter is replaced by a learner).
    Remove { name: String },
}

/// Runs one command; returns what to print on stdout.
pub async fn execute(cli: Cli) -> Result<String, Error> {
    let secret = match &cli.cluster_secret_file {
        Some(path) => Some(ClusterSecret::from_file(path).map_err(Error::Config)?),
        None => None,
    };
    let endpoint = match &cli.server {
        Some(server) => {
            if secret.is_none() {
                return Err(Error::Config("--server needs --cluster-secret-file".into()));
            }
            Endpoint::Tcp(server.clone())
        }
        None => Endpoint::Unix(cli.socket.clone()),
    };
    let mut client = ApiClient::new(endpoint, secret);
    if let Ok(user) = std::env::var("USER") {
        client = client.with_actor(&format!("romanactl:{user}"));
    }
    let api = |e: crate::http_client::CallError| Error::Api(e.to_string());
    match cli.command {
        CtlCommand::Status => {
            let status: StatusView = client.get(PATH_STATUS).await.map_err(api)?;
            render(cli.output, &status, status_table)
        }
        CtlCommand::Node {
            command: NodeCommand::List,
        } => {
            let nodes: Vec<NodeView> = client.get(PATH_NODES).await.map_err(api)?;
            render(cli.output, &nodes, |nodes| nodes_table(nodes))
        }
        CtlCommand::Node {
            command: NodeCommand::Remove { name },
        } => {
            let result: WriteResult = client
                .delete(&format!("{PATH_NODES}/{name}"))
                .await
                .map_err(api)?;
            render(cli.output, &result, |r| {
                format!("removed {name} (log index {})\n", r.index)
            })
        }
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

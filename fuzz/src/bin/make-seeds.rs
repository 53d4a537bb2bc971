//! Writes the binary seed corpus of `entry_decode`: bincode log entries of
//! every kind of request a node writes. Run from `fuzz/`:
//! `cargo run --bin make-seeds` (the text seeds are committed as files).

use std::path::Path;

use raft_store::entry::{AllocationRequest, ContainerInterface};
use raft_store::{ClusterRequest, Command, LogPayload, RequestMeta};
use romana_node::policy::formats::parse_policy_file;

fn request(id: &str, command: Command) -> ClusterRequest {
    ClusterRequest::new(
        RequestMeta {
            actor: "client:seed@a".into(),
            request_id: id.into(),
            timestamp_ms: 1_700_000_000_000,
        },
        command,
    )
}

fn register() -> ClusterRequest {
    request(
        "r1",
        Command::RegisterNode {
            node_id: 7,
            name: "a".into(),
            address: "192.168.0.1:9600".into(),
        },
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policies = parse_policy_file(include_str!("../../corpus/policy_formats/romana.json"))?;
    let network = parse_policy_file(include_str!("../../corpus/policy_formats/netpol.yaml"))?;
    let owner = ContainerInterface {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    let entries = vec![
        (
            "topology",
            vec![
                register(),
                request("t1", Command::CreateTenant { name: "t1".into() }),
                request(
                    "s1",
                    Command::CreateSegment {
                        tenant: "t1".into(),
                        name: "web".into(),
                    },
                ),
            ],
        ),
        (
            "ipam",
            vec![
                register(),
                request("t1", Command::CreateTenant { name: "t1".into() }),
                request(
                    "a1",
                    Command::AllocateAddress(AllocationRequest {
                        host: "a".into(),
                        tenant: "t1".into(),
                        segment: "default".into(),
                        owner: owner.clone(),
                        pod_namespace: Some("t1".into()),
                        pod_name: Some("p1".into()),
                        network: Some("romana".into()),
                    }),
                ),
                request("rel", Command::ReleaseAddress(owner.clone())),
                request(
                    "gc",
                    Command::GarbageCollect {
                        host: "a".into(),
                        network: None,
                        valid: vec![owner],
                    },
                ),
            ],
        ),
        (
            "policies",
            vec![
                request("t1", Command::CreateTenant { name: "t1".into() }),
                request(
                    "p1",
                    Command::ApplyPolicies {
                        policies: policies.policies,
                    },
                ),
                request(
                    "n1",
                    Command::Note {
                        text: "seed".into(),
                    },
                ),
            ],
        ),
        (
            "network-policies",
            network
                .network_policies
                .into_iter()
                .enumerate()
                .map(|(i, policy)| request(&format!("np{i}"), Command::ApplyNetworkPolicy(policy)))
                .collect(),
        ),
    ];
    let dir = Path::new("corpus/entry_decode");
    std::fs::create_dir_all(dir)?;
    for (name, requests) in entries {
        let bytes = bincode::serialize(&LogPayload { requests })?;
        std::fs::write(dir.join(format!("{name}.bin")), bytes)?;
    }
    Ok(())
}

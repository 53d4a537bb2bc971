//! Storage faults with real processes: a node whose disk fills stops instead
//! of serving stale state, and comes back once there is space; a full disk
//! at start is a clear error; an unfinished database snapshot left behind
//! is not read as corruption.
//!
//! Each node under test keeps its data dir on a small tmpfs of its own
//! (unmounted when the guard drops, also on failure).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use romana_api::ipam::{AllocateBody, AllocationView, NameBody};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_TENANTS};
use romana_node::http_client::ApiClient;

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the filesystem with a file until it has no space left.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler");
        let output = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output()
            .expect("run dd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("No space left"),
            "dd should stop at a full disk: {stderr}"
        );
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

async fn allocate(
    client: &ApiClient,
    host: &str,
    container: &str,
) -> Result<AllocationView, String> {
    let body = AllocateBody {
        host: Some(host.to_string()),
        tenant: Some("t1".into()),
        segment: None,
        container_id: container.to_string(),
        ifname: "eth0".into(),
        pod_namespace: None,
        pod_name: None,
        network: None,
        request_id: Some(format!("alloc-{container}")),
    };
    client
        .post(PATH_ALLOCATIONS, &body)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fills_stops_serving_and_resumes_with_space() {
    // Goal: a follower whose disk fills exits non-zero with one line naming
    // the storage failure (no stale answers); the other two go on
    // allocating; with space again it restarts, catches up, and every
    // acknowledged allocation is there exactly once, none leaked.
    let mut cluster = TestCluster::new(3, &[]);
    let mount = cluster.root.path().join("n2-disk");
    let disk = Tmpfs::mount(&mount, "48m");
    cluster.nodes[2].data_dir = mount.join("data");
    cluster.start_all().await;
    let client = cluster.nodes[0].client();
    let _: serde_json::Value = client
        .post(
            PATH_TENANTS,
            &NameBody {
                name: "t1".into(),
                request_id: None,
            },
        )
        .await
        .expect("tenant");
    cluster.wait_converged(&[0, 1, 2]).await;

    let filler = disk.fill();
    let host = cluster.nodes[0].name.clone();
    let mut acknowledged = Vec::new();
    let mut exit = None;
    for i in 0..2000 {
        if let Ok(allocation) = allocate(&client, &host, &format!("c{i}")).await {
            acknowledged.push((format!("c{i}"), allocation.address));
        }
        if let Some(status) = cluster.nodes[2].wait_exit(Duration::from_millis(1)) {
            exit = Some(status);
            break;
        }
    }
    let exit = match exit {
        Some(status) => status,
        None => cluster.nodes[2]
            .wait_exit(Duration::from_secs(30))
            .expect("the node with a full disk exits"),
    };
    assert!(!exit.success(), "it exits non-zero: {exit:?}");
    let log = cluster.nodes[2].log_text();
    assert!(
        log.contains("the Raft core stopped"),
        "its last word names the failure: {}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(
        cluster.nodes[2].status().await.is_err(),
        "nothing answers on its socket"
    );
    // The others keep the cluster going meanwhile.
    for i in 0..20 {
        let container = format!("after{i}");
        let allocation = allocate(&client, &host, &container)
            .await
            .expect("two of three voters allocate");
        acknowledged.push((container, allocation.address));
    }

    std::fs::remove_file(filler).expect("free the space");
    cluster.nodes[2].start();
    cluster.wait_converged(&[0, 1, 2]).await;
    let listed: Vec<AllocationView> = cluster.nodes[2]
        .client()
        .get(PATH_ALLOCATIONS)
        .await
        .expect("list");
    let mut listed: Vec<(String, std::net::Ipv4Addr)> = listed
        .into_iter()
        .map(|a| (a.container_id, a.address))
        .collect();
    listed.sort();
    acknowledged.sort();
    assert_eq!(
        listed, acknowledged,
        "every acknowledged allocation exactly once, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_start_is_a_clear_error_and_a_later_start_works() {
    // Goal: starting on a full disk exits non-zero naming the disk; an
    // unfinished snapshot file it may leave (or that a crash left) does
    // not stop the next start; with space the node resumes its history and
    // the offline audit reads it.
    let mut cluster = TestCluster::new(1, &[]);
    let mount = cluster.root.path().join("n0-disk");
    let disk = Tmpfs::mount(&mount, "48m");
    cluster.nodes[0].data_dir = mount.join("data");
    cluster.start_all().await;
    for i in 0..20 {
        write_note(&cluster.nodes[0].client(), &format!("before-{i}"))
            .await
            .expect("note");
    }
    let before = cluster.nodes[0].status().await.expect("status");
    cluster.nodes[0].stop();

    let filler = disk.fill();
    cluster.nodes[0].start();
    let exit = cluster.nodes[0]
        .wait_exit(Duration::from_secs(30))
        .expect("a start on a full disk ends");
    assert!(!exit.success(), "{exit:?}");
    let log = cluster.nodes[0].log_text();
    let last = log.lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("No space left on device"),
        "the last line names the full disk: {last:?}"
    );
    std::fs::remove_file(filler).expect("free the space");

    // What a crash during sled's own snapshot leaves behind.
    let store = cluster.nodes[0].data_dir.join("raft");
    std::fs::write(store.join("snap.00000000DEADBEEF.generating"), b"").expect("leftover");
    cluster.nodes[0].start();
    wait_for("the node to lead again", || async {
        matches!(cluster.nodes[0].status().await, Ok(s) if s.role == "leader")
    })
    .await;
    let after = cluster.nodes[0].status().await.expect("status");
    assert!(after.applied_index >= before.applied_index);
    assert_eq!(after.state_hash.len(), 64);
    let leftovers: Vec<String> = std::fs::read_dir(&store)
        .expect("store dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".generating"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "unfinished snapshots removed: {leftovers:?}"
    );
    cluster.nodes[0].stop();
    let data = path_arg(&cluster.nodes[0].data_dir);
    let (ok, stdout, stderr) = romanactl(&["audit", "--data-dir", &data, "verify"]);
    assert!(ok, "offline audit verify: {stdout} {stderr}");
}

//! The ADD rollback guard is armed as soon as the node has answered the
//! allocation, before the answer is read: a malformed answer still releases
//! the address (by container id and interface), and nothing is wired.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use romana_cni::plugin::host_veth_name;
use serde_json::json;

/// How long the fake node waits for a next request.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Requests the fake node served, most recent last.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A fake node on a unix socket that answers every allocation with a body
/// that is not an allocation, and every other request with a plain write
/// result. Serves up to `count` requests, or stops waiting for the next
/// after [`IDLE_LIMIT`], so a plugin that asks less cannot hang the test.
fn fake_node(
    listener: UnixListener,
    count: usize,
    requests: Requests,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let mut served = 0;
        let mut idle_since = Instant::now();
        while served < count && idle_since.elapsed() < IDLE_LIMIT {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            served += 1;
            idle_since = Instant::now();
            stream.set_nonblocking(false).expect("blocking stream");
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("header");
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().expect("content length");
                    }
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("body");
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let answer = if path == "/v1/ipam/allocations" {
                json!({ "address": "not an address", "newly_allocated": true })
            } else {
                json!({ "index": 7, "request_id": "r", "outcome": "applied" })
            };
            let answer = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            requests
                .lock()
                .expect("requests lock")
                .push((path, String::from_utf8_lossy(&body).to_string()));
        }
    })
}

#[test]
fn a_malformed_allocation_answer_releases_the_address() {
    // Goal: ADD fails on an answer it cannot read, releases what the node
    // may have allocated for this container/interface, and leaves no veth.
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&socket).expect("bind the fake node");
    let requests: Requests = Arc::default();
    let server = fake_node(listener, 2, requests.clone());

    let netns = Netns::new();
    let container = unique("rb");
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "romana-t1",
        "type": "romana",
        "tenant": "t1",
        "node_socket": socket,
        "log_file": dir.path().join("cni.log"),
    });
    let add = verb("ADD", &config, &container, Some(&netns), "eth0");
    assert!(
        !add.success,
        "a malformed answer must fail the ADD: {add:?}"
    );
    server.join().expect("fake node");

    let requests = requests.lock().expect("requests lock").clone();
    let paths: Vec<&str> = requests.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        ["/v1/ipam/allocations", "/v1/ipam/release"],
        "the allocation, then its release"
    );
    let release: serde_json::Value =
        serde_json::from_str(&requests[1].1).expect("release body is JSON");
    assert_eq!(release["container_id"], container.as_str());
    assert_eq!(release["ifname"], "eth0");
    assert!(
        !host_veths().contains(&host_veth_name(&container, "eth0")),
        "no host veth is left"
    );
}

//! The web view in a real browser: headless Chromium (Debian's), driven by
//! Playwright (`tests/ui/ui-test.cjs`), against a running two-node lab seen
//! through `romanactl ui`. The page must load without console errors, show
//! the lab's hosts, tenants and pods, answer the explain form as `romanactl
//! policy explain` does, and show a since-deleted tenant at an earlier point
//! of the timeline. Screenshots go to `$CARGO_TARGET_TMPDIR/ui-screenshots`.
//!
//! Needs `node`, `/usr/bin/chromium` and playwright-core
//! (`$ROMANA_UI_NODE_MODULES`, default `/var/cache/romana/ui-test/node_modules`):
//! `deploy/test.sh` installs them.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use romana_api::ipam::{AllocateBody, AllocationView};
use romana_api::paths::{PATH_ALLOCATIONS, PATH_HISTORY_TIMELINE};
use romana_testkit::ChildGuard;
use serde_json::{json, Value};

fn node_modules() -> PathBuf {
    let modules = PathBuf::from(
        std::env::var("ROMANA_UI_NODE_MODULES")
            .unwrap_or_else(|_| "/var/cache/romana/ui-test/node_modules".into()),
    );
    assert!(
        modules.join("playwright-core").is_dir() && PathBuf::from("/usr/bin/chromium").exists(),
        "the browser test needs playwright-core in {} and /usr/bin/chromium: \
         run `source deploy/lib/prerequisites.sh; install_prerequisites; install_ui_test_tools`",
        modules.display()
    );
    modules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_the_lab_and_its_history_in_a_browser() {
    let modules = node_modules();
    let mut cluster = TestCluster::new(2, &[]);
    cluster.start_all().await;
    let socket = path_arg(&cluster.nodes[0].socket);
    let s = socket.as_str();

    for tenant in ["web", "db", "gone"] {
        ctl_ok(s, &["tenant", "create", tenant]);
    }
    let mut pods = Vec::new();
    let mut addresses = std::collections::BTreeMap::new();
    for (i, (host, tenant, name)) in [
        ("n0", "web", "frontend"),
        ("n1", "web", "frontend-2"),
        ("n1", "db", "postgres"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = AllocateBody {
            host: Some(host.into()),
            tenant: Some(tenant.into()),
            segment: None,
            container_id: format!("container-{i}"),
            ifname: "eth0".into(),
            pod_namespace: Some("shop".into()),
            pod_name: Some(name.into()),
            network: None,
            request_id: None,
        };
        let view: AllocationView = cluster.nodes[i % 2]
            .client()
            .post(PATH_ALLOCATIONS, &body)
            .await
            .expect("allocate");
        addresses.insert(name, view.address.to_string());
        pods.push(json!({ "address": view.address.to_string(), "pod": format!("shop/{name}") }));
    }
    // db admits web on tcp/5432 only.
    let policy = r#"{"securitypolicies":[{"name":"db-from-web","direction":"ingress","applied_to":[{"tenant":"db"}],"peers":[{"tenant":"web"}],"rules":[{"protocol":"tcp","ports":[5432]}]}]}"#;
    let policy_file = cluster.root.path().join("policy.json");
    std::fs::write(&policy_file, policy).expect("write policy");
    ctl_ok(s, &["policy", "apply", "-f", &path_arg(&policy_file)]);

    // The timeline record at which "gone" existed, then its deletion.
    let timeline: Vec<Value> = cluster.nodes[0]
        .client()
        .get(PATH_HISTORY_TIMELINE)
        .await
        .expect("timeline");
    let created = timeline
        .iter()
        .find(|e| {
            e["kind"] == "create_tenant"
                && e["request"].as_str().is_some_and(|r| r.contains("gone"))
        })
        .unwrap_or_else(|| panic!("no creation of tenant gone in {timeline:?}"));
    let gone_sequence = created["sequence"].as_u64().expect("sequence");
    ctl_ok(s, &["tenant", "delete", "gone"]);
    cluster.wait_converged(&[0, 1]).await;

    // What romanactl says, which the form must repeat.
    let mut explain = Vec::new();
    for (src, dst, port) in [
        ("frontend", "postgres", 5432),
        ("frontend", "postgres", 80),
        ("postgres", "frontend", 80),
        ("frontend", "frontend-2", 8080),
    ] {
        let proto_port = format!("tcp/{port}");
        let answer: Value = serde_json::from_str(&ctl_ok(
            s,
            &[
                "-o",
                "json",
                "policy",
                "explain",
                &addresses[src],
                &addresses[dst],
                &proto_port,
            ],
        ))
        .expect("explain JSON");
        explain.push(json!({
            "src": addresses[src],
            "dst": addresses[dst],
            "protocol": "tcp",
            "port": port,
            "verdict": answer["verdict"],
            "decided_by": answer["decided_by"],
        }));
    }
    let verdicts: Vec<&str> = explain
        .iter()
        .filter_map(|e| e["verdict"].as_str())
        .collect();
    assert_eq!(
        verdicts,
        ["allowed", "denied", "denied", "allowed"],
        "the lab's policy as romanactl explains it: {explain:?}"
    );

    // The web view, relayed on a loopback port.
    let ui_out = cluster.root.path().join("ui.out");
    let mut command = Command::new(CTL_BINARY);
    command.args(["--socket", s, "ui", "--listen", "127.0.0.1:0"]);
    let mut relay = ChildGuard::spawn(command, &ui_out).expect("romanactl ui");
    let mut url = String::new();
    wait_for("romanactl ui to print its address", || {
        let found = std::fs::read_to_string(&ui_out)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("romana web view: ").map(str::to_string));
        if let Some(found) = &found {
            url = found.clone();
        }
        async move { found.is_some() }
    })
    .await;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("?token="),
        "{url}"
    );

    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let expectations = json!({
        "url": url,
        "screenshots": screenshots,
        "hosts": ["n0", "n1"],
        "tenants": ["web", "db"],
        "pods": pods,
        "explain": explain,
        "deleted_tenant": "gone",
        "deleted_tenant_sequence": gone_sequence,
    });
    let file = cluster.root.path().join("expectations.json");
    std::fs::write(&file, expectations.to_string()).expect("write expectations");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui/ui-test.cjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(file)
            .env("NODE_PATH", modules)
            .output()
            .expect("run node")
    })
    .await
    .expect("the browser run");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "the browser checks failed:\n{report}"
    );
    assert!(!report.contains("FAIL:"), "{report}");
    for shot in [
        "overview.png",
        "explain.png",
        "timeline-earlier.png",
        "timeline-latest.png",
    ] {
        let size = std::fs::metadata(screenshots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 1000, "screenshot {shot}: {size} bytes");
    }
    println!("screenshots in {}", screenshots.display());

    // The relay's own guards, request by request.
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_string();
    let token = url.split("token=").nth(1).expect("token").to_string();
    let ask = |request: String| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&authority).expect("connect to the relay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let get = |path: &str, host: &str, cookie: Option<&str>| {
        let cookie = cookie
            .map(|t| format!("Cookie: romana_ui={t}\r\n"))
            .unwrap_or_default();
        ask(format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n"
        ))
    };
    let status = |answer: &str| answer.split(' ').nth(1).unwrap_or_default().to_string();
    assert_eq!(status(&get("/v1/status", &authority, Some(&token))), "200");
    let exchanged = get(&format!("/ui/?token={token}"), &authority, None);
    assert_eq!(status(&exchanged), "303", "{exchanged}");
    assert!(
        exchanged.contains("HttpOnly") && exchanged.contains("SameSite=Strict"),
        "{exchanged}"
    );
    assert!(
        exchanged.to_lowercase().contains("location: /ui/\r\n"),
        "{exchanged}"
    );
    assert_eq!(
        status(&get("/v1/status", &authority, None)),
        "401",
        "no cookie"
    );
    assert_eq!(
        status(&get("/v1/status", &authority, Some("0123"))),
        "401",
        "wrong cookie"
    );
    assert_eq!(
        status(&get(&format!("/ui/?token={}x", token), &authority, None)),
        "401"
    );
    assert_eq!(
        status(&get("/v1/status", "evil.example:80", Some(&token))),
        "403",
        "a foreign Host (DNS rebinding) is refused"
    );
    let post = ask(format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: {authority}\r\nCookie: romana_ui={token}\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{{\"name\":\"evil\"}}"
    ));
    assert_eq!(status(&post), "405", "read-only: {post}");
    let internal = get("/v1/internal/propose", &authority, Some(&token));
    assert!(
        !internal.starts_with("HTTP/1.1 2"),
        "internal routes are not relayed: {internal}"
    );
    let tenants = ctl_ok(s, &["-o", "json", "tenant", "list"]);
    assert!(!tenants.contains("evil"), "{tenants}");
    assert!(!relay.has_exited(), "the relay served the whole run");
    let _ = relay.wait_exit(Duration::ZERO);
}

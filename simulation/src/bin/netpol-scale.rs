//! `netpol-scale [--pods N] [--policies M] [--baseline B]`: what a host's
//! NetworkPolicy enforcement costs at scale, measured on the real compiler
//! and a real kernel (a scratch network namespace; root), in one run:
//! N pods (default 1,000) under M NetworkPolicies of every shape (default
//! 1,000) and, as the baseline, the same pods under B policies (default
//! 100). For each: rules and set entries per host, the time to compile and
//! render (median of 5), the time to install into an empty namespace (sets
//! with one `ipset restore`, then one `iptables-restore`), the time to
//! re-check a converged host, and the growth of this process's resident
//! memory while holding the state and its compiled form. Prints one JSON
//! object per configuration and the ratios.

use std::process::Command;
use std::time::{Duration, Instant};

use romana_node::dataplane::{firewall, ipsets};
use simulation::netpol::{in_netns as run, Model, HOSTS};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1000.0
}

fn measure(pods: usize, policies: usize) -> Result<serde_json::Value, String> {
    let before = rss_kib();
    let model = Model::scaled(pods, policies);
    let host = model.host_number(HOSTS[0]);
    let mut compile_times = Vec::new();
    let mut desired = None;
    for _ in 0..5 {
        let started = Instant::now();
        desired = firewall::desired(&model.state, host, true);
        compile_times.push(started.elapsed());
    }
    let desired = desired.ok_or("the model is initialised")?;
    let held = rss_kib().saturating_sub(before);
    let mut per_host = Vec::new();
    for name in HOSTS {
        let d =
            firewall::desired(&model.state, model.host_number(name), true).ok_or("initialised")?;
        per_host.push(serde_json::json!({
            "host": name,
            "rules": d.chains.values().map(Vec::len).sum::<usize>(),
            "sets": d.sets.len(),
            "set_entries": d.sets.values().map(|s| s.members.len()).sum::<usize>(),
        }));
    }
    let netns = Namespace(format!("netpol-scale-{}", std::process::id()));
    Command::new("ip")
        .args(["netns", "add", &netns.0])
        .status()
        .map_err(|e| e.to_string())?;
    let sets_input =
        ipsets::restore_input(&desired.sets, &ipsets::Observed::new()).unwrap_or_default();
    let rules_input = firewall::restore_input(&desired.chains, &firewall::Observed::default())
        .ok_or("rules to install")?;
    let started = Instant::now();
    run(&netns.0, "ipset", &["restore"], &sets_input)?;
    run(
        &netns.0,
        "iptables-restore",
        &["-w", "--noflush"],
        &rules_input,
    )?;
    let install = started.elapsed();
    // A converged host's check: read both back, nothing to change.
    let started = Instant::now();
    let observed = firewall::parse_observed(&run(&netns.0, "iptables", &["-w", "-S"], "")?);
    let observed_sets = ipsets::parse_save(&run(&netns.0, "ipset", &["save"], "")?);
    let check = started.elapsed();
    if firewall::restore_input(&desired.chains, &observed).is_some()
        || ipsets::restore_input(&desired.sets, &observed_sets).is_some()
    {
        return Err("the kernel does not hold what was rendered".into());
    }
    Ok(serde_json::json!({
        "pods": pods,
        "policies": policies,
        "hosts": per_host,
        "compile_and_render_ms": median(compile_times),
        "install_ms": install.as_secs_f64() * 1000.0,
        "converged_check_ms": check.as_secs_f64() * 1000.0,
        "rss_growth_kib": held,
    }))
}

fn main() {
    let mut pods = 1000;
    let mut policies = 1000;
    let mut baseline = 100;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (args[i].as_str(), value) {
            ("--pods", Some(v)) => pods = v,
            ("--policies", Some(v)) => policies = v,
            ("--baseline", Some(v)) => baseline = v,
            _ => {
                eprintln!("usage: netpol-scale [--pods N] [--policies M] [--baseline B]");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let result = measure(pods, baseline).and_then(|b| Ok((b, measure(pods, policies)?)));
    match result {
        Ok((base, full)) => {
            println!("{base}");
            println!("{full}");
            let ratio = |key: &str| {
                full[key].as_f64().unwrap_or(0.0) / base[key].as_f64().unwrap_or(1.0).max(1e-9)
            };
            println!(
                "{}",
                serde_json::json!({
                    "ratio_of": format!("{policies} policies / {baseline} policies, {pods} pods"),
                    "compile_and_render": ratio("compile_and_render_ms"),
                    "install": ratio("install_ms"),
                    "rules_host1": full["hosts"][0]["rules"].as_f64().unwrap_or(0.0)
                        / base["hosts"][0]["rules"].as_f64().unwrap_or(1.0),
                })
            );
        }
        Err(e) => {
            eprintln!("netpol-scale: {e}");
            std::process::exit(1);
        }
    }
}

//! `simulation`: runs seeded simulations and prints what they did.
//!
//! ```text
//! cargo run -p simulation --release -- --seeds 100        # seeds 0..100
//! cargo run -p simulation --release -- --seed 42          # one run, exactly again
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use simulation::sim::{run, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "simulation",
    about = "Deterministic simulation of a Romana cluster"
)]
struct Cli {
    /// Run seeds 0..N (or FIRST..FIRST+N with --first-seed).
    #[arg(long, default_value_t = 20, conflicts_with = "seed")]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run exactly this seed (and print its trace digest).
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes: voters plus learners (3 to 9 in seeded runs).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Requests per run.
    #[arg(long, default_value_t = 150)]
    operations: usize,
    /// No faults (a baseline).
    #[arg(long)]
    no_faults: bool,
    /// Print each run's event trace.
    #[arg(long)]
    trace: bool,
    /// The scale run instead: --nodes nodes (up to 200), --voters of them
    /// voters, a burst of --allocations allocations; time to convergence.
    #[arg(long)]
    scale: bool,
    /// Voters (the other nodes are learners).
    #[arg(long, default_value_t = 3)]
    voters: usize,
    /// Allocations in the scale run's burst.
    #[arg(long, default_value_t = 10_000)]
    allocations: usize,
}

fn main() {
    let cli = Cli::parse();
    if cli.scale {
        if !(cli.voters >= 1 && cli.voters <= cli.nodes && cli.nodes <= 200) {
            eprintln!("simulation: the scale run needs 1 <= --voters <= --nodes <= 200");
            std::process::exit(2);
        }
        let report = simulation::sim::scale::run(
            cli.seed.unwrap_or(0),
            cli.nodes,
            cli.voters,
            cli.allocations,
        );
        match report.converged_after {
            Some(converged) => println!(
                "scale: {} nodes ({} voters), {} allocations: converged {:.2} s (simulated) after the burst began; {:.1} s simulated in {:.1} s real ({:.2} s real per simulated second)",
                report.nodes,
                report.voters,
                report.allocations,
                converged.as_secs_f64(),
                report.simulated.as_secs_f64(),
                report.real.as_secs_f64(),
                report.real.as_secs_f64() / report.simulated.as_secs_f64().max(f64::MIN_POSITIVE)
            ),
            None => {
                println!(
                    "scale: {} nodes, {} allocations: NOT converged within {:.0} s simulated ({:.1} s real)",
                    report.nodes,
                    report.allocations,
                    report.simulated.as_secs_f64(),
                    report.real.as_secs_f64()
                );
                std::process::exit(1);
            }
        }
        return;
    }
    if !(3..=9).contains(&cli.nodes) || !(3..=7).contains(&cli.voters) || cli.voters > cli.nodes {
        eprintln!(
            "simulation: seeded runs need 3 to 7 --voters and 3 to 9 --nodes, voters <= nodes"
        );
        std::process::exit(2);
    }
    let seeds: Vec<u64> = match cli.seed {
        Some(seed) => vec![seed],
        None => (cli.first_seed..cli.first_seed + cli.seeds).collect(),
    };
    let started = Instant::now();
    let (mut operations, mut acknowledged, mut faults, mut failed) = (0, 0, 0, Vec::new());
    let mut simulated = Duration::ZERO;
    for seed in &seeds {
        let report = run(&SimConfig {
            seed: *seed,
            nodes: cli.nodes,
            voters: cli.voters,
            operations: cli.operations,
            faults: !cli.no_faults,
        });
        println!(
            "seed {:>6}: {} ops, {} acknowledged, {} faults, {:.1} s simulated, {:.2} s real, {} violations, trace {}",
            report.seed,
            report.operations,
            report.acknowledged,
            report.faults,
            report.simulated.as_secs_f64(),
            report.real.as_secs_f64(),
            report.violations.len(),
            &report.trace_digest[..16]
        );
        if cli.trace {
            for line in &report.trace {
                println!("    {line}");
            }
        }
        for violation in &report.violations {
            println!("    violation: {violation:?}");
        }
        if !report.violations.is_empty() {
            println!(
                "    reproduce: cargo run -p simulation --release -- --seed {} --nodes {} --voters {} --operations {}{}",
                report.seed,
                cli.nodes,
                cli.voters,
                cli.operations,
                if cli.no_faults { " --no-faults" } else { "" }
            );
            failed.push(report.seed);
        }
        operations += report.operations;
        acknowledged += report.acknowledged;
        faults += report.faults;
        simulated += report.simulated;
    }
    println!(
        "total: {} runs, {operations} ops, {acknowledged} acknowledged, {faults} faults, {:.0} s simulated, {:.1} s real, {} failing seeds{}",
        seeds.len(),
        simulated.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        failed.len(),
        if failed.is_empty() { String::new() } else { format!(": {failed:?}") }
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

//! `romana-node`: parse the command line and hand over to the library
//! (`run`, `cleanup`) or to the benchmark ([`bench`], part of this binary
//! only, not of the daemon's library).
//! Errors end the process with one line on stderr and exit code 1.

mod bench;

use bench::BenchArgs;
use clap::{Parser, Subcommand};
use romana_node::config::RunArgs;

#[derive(Parser, Debug)]
#[command(
    name = "romana-node",
    version,
    about = "Romana's per-host daemon: a replica of the cluster's event log"
)]
struct Cli {
    #[command(subcommand)]
    command: DaemonCommand,
}

#[derive(Subcommand, Debug)]
enum DaemonCommand {
    /// Run the node.
    Run(Box<RunArgs>),
    /// Measure commit rate and latency on a loopback cluster.
    Bench(BenchArgs),
    /// Remove everything romana-node installed on this host: the isolation
    /// rules (and FORWARD's DROP policy) and its routes to other hosts.
    /// Pods' own interfaces and routes go with their CNI DEL.
    Cleanup,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            DaemonCommand::Run(args) => {
                let config = args.resolve()?;
                romana_node::init_logging(config.log_format);
                romana_node::daemon::run(config, shutdown_signal()).await
            }
            DaemonCommand::Bench(args) => bench::run(args).await,
            DaemonCommand::Cleanup => romana_node::dataplane::kernel::cleanup_host(),
        }
    });
    if let Err(e) = result {
        fail(&e.to_string());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("romana-node: {message}");
    std::process::exit(1);
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

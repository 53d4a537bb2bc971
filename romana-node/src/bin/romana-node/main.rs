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
    Cleanup(CleanupArgs),
    /// Install CNI plugins atomically (copy, then rename): what the
    /// Kubernetes DaemonSet's init container runs.
    InstallCni {
        /// Directory of the plugins to install.
        #[arg(long, default_value = "/opt/romana/cni")]
        from: std::path::PathBuf,
        /// The runtime's CNI plugin directory.
        #[arg(long, default_value = romana_node::kubernetes::cni::DEFAULT_CNI_BIN_DIR)]
        to: std::path::PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct CleanupArgs {
    /// Also remove what the Kubernetes install put on the host: the
    /// conflist, the plugins `install-cni` created, and the data dir.
    #[arg(long)]
    uninstall: bool,
    #[arg(long, default_value = romana_node::config::DEFAULT_CNI_CONF_DIR)]
    cni_conf_dir: std::path::PathBuf,
    #[arg(long, default_value = romana_node::kubernetes::cni::DEFAULT_CNI_BIN_DIR)]
    cni_bin_dir: std::path::PathBuf,
    #[arg(long, default_value = romana_node::config::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
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
            DaemonCommand::Cleanup(args) => {
                romana_node::dataplane::kernel::cleanup_host()?;
                if args.uninstall {
                    for path in romana_node::kubernetes::cni::uninstall(
                        &args.cni_conf_dir,
                        &args.cni_bin_dir,
                    )? {
                        println!("removed {}", path.display());
                    }
                    if args.data_dir.exists() {
                        remove_data_dir(&args.data_dir)?;
                        println!("removed {}", args.data_dir.display());
                    }
                }
                Ok(())
            }
            DaemonCommand::InstallCni { from, to } => {
                let done = romana_node::kubernetes::cni::install_cni(&from, &to)?;
                for path in done.installed {
                    println!("installed {}", path.display());
                }
                for path in done.kept {
                    println!("kept the host's {}", path.display());
                }
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        fail(&e.to_string());
    }
}

/// Removes the data dir's contents, then the dir itself unless it is a
/// mount point (a hostPath or a bind mount stays, empty).
fn remove_data_dir(dir: &std::path::Path) -> Result<(), romana_node::error::Error> {
    let failed = |path: &std::path::Path, e: std::io::Error| {
        romana_node::error::Error::Config(format!("cannot remove {}: {e}", path.display()))
    };
    for entry in std::fs::read_dir(dir).map_err(|e| failed(dir, e))? {
        let path = entry.map_err(|e| failed(dir, e))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| failed(&path, e))?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(16) => Ok(()),
        Err(e) => Err(failed(dir, e)),
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

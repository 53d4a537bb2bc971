//! `romana-lab`: several Romana hosts on one machine (root).
//!
//! ```text
//! romana-lab up --hosts 3
//! romana-lab pod add host1 t1 web
//! romana-lab pod list
//! romana-lab exec web -- ping -c1 10.1.16.2
//! romana-lab status
//! romana-lab down
//!
//! romana-lab --name k8s up --hosts 3 --kubernetes [--cni ptp|none]
//! romana-lab --name k8s kubectl get nodes -o wide
//! romana-lab --name k8s exec host2 -- crictl ps
//! romana-lab --name k8s down
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use simulation::lab::kubernetes::{KubernetesOptions, LabCni};
use simulation::lab::{self, Lab, LabConfig};

#[derive(Parser, Debug)]
#[command(
    name = "romana-lab",
    about = "Romana hosts as network namespaces on one machine"
)]
struct Cli {
    /// The lab's name: prefix of its namespaces and interfaces.
    #[arg(long, global = true, default_value = "rlab")]
    name: String,
    /// Where the lab keeps its state and node data.
    #[arg(long, global = true, default_value = "/run/romana-lab")]
    dir: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Create the hosts and start a romana-node in each.
    Up {
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Directory with romana-node, romanactl and romana [default: next to this binary].
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Third octet of the underlay 192.168.X.0/24.
        #[arg(long, default_value_t = 213)]
        subnet: u8,
        /// Extra flags for every romana-node (repeatable), e.g. --node-arg=--reconcile-interval-ms=500.
        #[arg(long = "node-arg", allow_hyphen_values = true)]
        node_args: Vec<String>,
        /// Kubernetes mode: containerd, a kubelet and kube-proxy on every
        /// host, the control plane on host1 (no romana-node is started).
        #[arg(long)]
        kubernetes: bool,
        /// Kubernetes mode: `ptp` (reference plugins, the baseline) or
        /// `none` (empty CNI directories, for an installer).
        #[arg(long, default_value = "ptp", requires = "kubernetes")]
        cni: LabCni,
        /// Kubernetes binaries [default: the cache build-kubernetes.sh fills].
        #[arg(long, requires = "kubernetes")]
        kubernetes_bin: Option<PathBuf>,
        /// pause.tar and romana-test.tar [default: the cache build-images.sh fills].
        #[arg(long, requires = "kubernetes")]
        images: Option<PathBuf>,
        /// Where the hosts' files live [default: /var/lib/romana-lab/NAME].
        #[arg(long, requires = "kubernetes")]
        state_dir: Option<PathBuf>,
    },
    /// kubectl with the lab's admin credentials (Kubernetes mode).
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Pods.
    Pod {
        #[command(subcommand)]
        command: PodCommand,
    },
    /// Run a command in a host's or a pod's namespace.
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Hosts, their nodes, and the cluster as host1 sees it.
    Status,
    /// Remove everything the lab made (also after a crash of the lab).
    Down,
}

#[derive(Subcommand, Debug)]
enum PodCommand {
    /// Start a pod (a namespace wired by the CNI plugin) on a host.
    Add {
        host: String,
        tenant: String,
        name: String,
        /// Segment of the tenant [default: default].
        #[arg(long)]
        segment: Option<String>,
    },
    /// Delete a pod.
    Del { name: String },
    /// NAME HOST TENANT IP.
    List,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = execute(cli) {
        eprintln!("romana-lab: {e}");
        std::process::exit(1);
    }
}

fn execute(cli: Cli) -> Result<(), lab::LabError> {
    match cli.command {
        LabCommand::Up {
            hosts,
            bin_dir,
            subnet,
            node_args,
            kubernetes,
            cni,
            kubernetes_bin,
            images,
            state_dir,
        } => {
            let bin_dir = match bin_dir {
                Some(dir) => dir,
                None => std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                    .unwrap_or_else(|| PathBuf::from(".")),
            };
            let config = LabConfig {
                name: cli.name.clone(),
                dir: cli.dir.clone(),
                bin_dir,
                subnet,
                node_args,
            };
            let started = if kubernetes {
                let mut options = KubernetesOptions::defaults(&cli.name, cni);
                if let Some(dir) = kubernetes_bin {
                    options.kubernetes_bin = dir;
                }
                if let Some(dir) = images {
                    options.images_dir = dir;
                }
                if let Some(dir) = state_dir {
                    options.state_dir = dir;
                }
                Lab::up_kubernetes(config, hosts, options)
            } else {
                Lab::up(config, hosts)
            };
            match started {
                Ok(lab) if lab.kubernetes.is_some() => {
                    for host in &lab.hosts {
                        println!("{}  underlay {}", host.name, host.underlay_ip);
                    }
                    Ok(())
                }
                Ok(lab) => {
                    for host in &lab.hosts {
                        println!(
                            "{}  underlay {}  node pid {}",
                            host.name, host.underlay_ip, host.pid
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    for problem in lab::down(&cli.name, &cli.dir) {
                        eprintln!("romana-lab: cleanup: {problem}");
                    }
                    Err(e)
                }
            }
        }
        LabCommand::Pod { command } => {
            let mut lab = Lab::load(&cli.dir)?;
            match command {
                PodCommand::Add {
                    host,
                    tenant,
                    name,
                    segment,
                } => {
                    let pod = lab.add_pod_in_segment(&host, &tenant, segment.as_deref(), &name)?;
                    println!("{} {} {} {}", pod.name, pod.host, pod.tenant, pod.ip);
                }
                PodCommand::Del { name } => lab.delete_pod(&name)?,
                PodCommand::List => print!("{}", lab.pod_table()),
            }
            Ok(())
        }
        LabCommand::Exec { target, command } => {
            let lab = Lab::load(&cli.dir)?;
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            print!("{}", lab.exec(&target, &args)?);
            Ok(())
        }
        LabCommand::Kubectl { args } => {
            let lab = Lab::load(&cli.dir)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let code = lab.kubectl_attached(&args)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        LabCommand::Status => {
            let lab = Lab::load(&cli.dir)?;
            if let Some(kubernetes) = &lab.kubernetes {
                for component in &kubernetes.components {
                    let alive = std::path::Path::new(&format!("/proc/{}", component.pid)).exists();
                    println!(
                        "{:<8} {:<24} pid {:<8} {}",
                        component.host,
                        component.name,
                        component.pid,
                        if alive { "running" } else { "not running" }
                    );
                }
                println!();
                print!("{}", lab.kubectl(&["get", "nodes", "-o", "wide"])?);
                return Ok(());
            }
            for host in &lab.hosts {
                let alive = std::path::Path::new(&format!("/proc/{}", host.pid)).exists();
                println!(
                    "{:<8} {:<16} node pid {} {}",
                    host.name,
                    host.underlay_ip,
                    host.pid,
                    if alive { "running" } else { "not running" }
                );
            }
            if let Some(first) = lab.hosts.first() {
                println!();
                print!("{}", lab.ctl(first, &["status"])?);
            }
            Ok(())
        }
        LabCommand::Down => {
            let problems = lab::down(&cli.name, &cli.dir);
            for problem in &problems {
                eprintln!("romana-lab: {problem}");
            }
            Ok(())
        }
    }
}

//! `romana-node run`: the composition of a node. Binds the listeners (so a
//! port in use fails fast), opens the node ([`node::open`]), serves the API
//! on both listeners, joins or initialises ([`node::start_up`]), runs the
//! membership controller, audit retention and the dataplane's reconciler,
//! and shuts all of them down when `shutdown` completes.
//!
//! With `--kubernetes`: the bootstrap lock decides how an empty node
//! starts, and the Kubernetes controller (leader only) and the conflist
//! writer run beside the membership controller.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::dataplane::kernel::{enable_forwarding, Kernel};
use crate::dataplane::reconciler::{self, Settings};
use crate::error::{Context, Error};
use crate::{api, kubernetes, node, server};

/// Runs a node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    node::prepare_data_dir(&config.data_dir)?;
    // Listeners first: a port in use or a socket held by another node fails
    // before anything else is touched.
    let tcp = TcpListener::bind(config.listen)
        .await
        .context(format!("cannot listen on {}", config.listen))?;
    let unix = bind_unix_socket(&config.api_socket).await?;
    let metrics_tcp = match config.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .context(format!("cannot listen on {address} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let kubernetes = match &config.kubernetes {
        Some(settings) => Some(kubernetes::Context::connect(settings.clone()).await?),
        None => None,
    };
    let on_empty_store = kubernetes.clone().map(|context| -> node::OnEmptyStore {
        Box::new(move |config, node_id| {
            Box::pin(async move { kubernetes::bootstrap::decide(&context, &config, node_id).await })
        })
    });
    let (node, mode) = node::open(config, on_empty_store).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let tcp_router = api::tcp_router(node.clone(), kubernetes.clone());
    let unix_router = api::unix_router(node.clone(), kubernetes.clone());
    let tcp_server = if node.config.insecure_plaintext {
        tracing::warn!("--insecure-plaintext: peers speak plain HTTP, unauthenticated");
        tokio::spawn(server::serve(
            tcp,
            tcp_router,
            server::TCP_LIMITS,
            server::PlainHandshake,
            stop_rx.clone(),
        ))
    } else {
        let tls = server::TlsHandshake {
            acceptor: tokio_rustls::TlsAcceptor::from(node.tls.server.clone()),
        };
        tokio::spawn(server::serve(
            tcp,
            tcp_router,
            server::TCP_LIMITS,
            tls,
            stop_rx.clone(),
        ))
    };
    let metrics_server = metrics_tcp.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            api::metrics_router(node.clone()),
            server::TCP_LIMITS,
            server::PlainHandshake,
            stop_rx.clone(),
        ))
    });
    let unix_server = tokio::spawn(server::serve(
        unix,
        unix_router,
        server::UNIX_LIMITS,
        server::LocalHandshake,
        stop_rx.clone(),
    ));

    // Before start-up, so that what it applies (a join, this host's
    // registration) and the first election are events here too.
    let leader_watch = tokio::spawn(node::observe::watch_leader(node.clone(), stop_rx.clone()));
    let log_events = tokio::spawn(node::observe::follow_log(node.clone(), stop_rx.clone()));
    let started = node::start_up(&node, mode, stop_rx.clone()).await;
    let controller = tokio::spawn(node::membership::controller(node.clone(), stop_rx.clone()));
    let retention = (node.config.audit_retention_days > 0)
        .then(|| tokio::spawn(node::audit_retention(node.clone(), stop_rx.clone())));
    let reconciler = (node.config.manage_routes || node.config.firewall).then(|| {
        enable_forwarding();
        let settings = Settings {
            host: node.config.name.clone(),
            manage_routes: node.config.manage_routes,
            firewall: node.config.firewall,
            allow_host_to_pods: node.config.allow_host_to_pods,
            interval: Duration::from_millis(node.config.reconcile_interval_ms),
        };
        tokio::spawn(reconciler::run(
            node.shared.clone(),
            settings,
            node.firewall_ready.clone(),
            Kernel::default(),
            node.metrics.clone(),
            node.events.clone(),
            stop_rx.clone(),
        ))
    });

    let kubernetes_tasks = kubernetes.map(|context| {
        let conflist = tokio::spawn(kubernetes::cni::write_when_ready(
            node.clone(),
            context.settings.cni_conf_dir.clone(),
            stop_rx.clone(),
        ));
        let controller = tokio::spawn(kubernetes::controller::run(
            node.clone(),
            context,
            stop_rx.clone(),
        ));
        (conflist, controller)
    });

    let result = match started {
        Ok(()) => {
            tokio::pin!(shutdown);
            // Fail-stop: a node whose Raft core stopped on a storage error
            // must not go on answering from a projection that no longer
            // moves. It stops serving and exits non-zero, so systemd or the
            // kubelet restarts it (and a restart with a working disk
            // resumes from the log).
            let outcome = tokio::select! {
                _ = &mut shutdown => Ok(()),
                reason = raft_failure(&node) => {
                    tracing::error!(%reason, "the Raft core stopped; stopping the node");
                    Err(Error::Storage(format!("the Raft core stopped: {reason}")))
                }
            };
            let _ = stop_tx.send(true);
            outcome
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            Err(e)
        }
    };
    tracing::info!("shutting down");
    // Followers of `GET /v1/events` end, so the servers drain at once.
    node.events.close();
    let _ = controller.await;
    let _ = leader_watch.await;
    let _ = log_events.await;
    if let Some((conflist, controller)) = kubernetes_tasks {
        let _ = conflist.await;
        let _ = controller.await;
    }
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    let _ = tcp_server.await;
    let _ = unix_server.await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    let _ = std::fs::remove_file(&node.config.api_socket);
    result
}

/// Completes when the Raft core has stopped on its own (a storage error, a
/// panic in it): the reason.
async fn raft_failure(node: &node::Node) -> String {
    let mut metrics = node.raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the Raft core ended".into();
        }
    }
}

/// The API socket's directory must be this user's and writable by no one
/// else: whoever can write there could replace the socket with their own
/// and answer the CNI plugin. A directory the node creates is made so.
pub fn check_socket_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .context(format!("cannot set mode of {}", dir.display()))?;
    }
    let metadata = std::fs::metadata(dir).context(format!("cannot read {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mode = metadata.mode() & 0o7777;
    if metadata.uid() != me || mode & 0o022 != 0 {
        return Err(Error::Config(format!(
            "the API socket's directory {} must be owned by uid {me} and writable by no one else (it is owned by uid {}, mode {mode:04o}): fix it or choose another --api-socket",
            dir.display(),
            metadata.uid()
        )));
    }
    Ok(())
}

async fn bind_unix_socket(path: &Path) -> Result<UnixListener, Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_socket_dir(parent)?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(Error::Config(format!(
                "another process is serving the API socket {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .context(format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).context(format!("cannot bind API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .context(format!("cannot set mode of {}", path.display()))?;
    Ok(listener)
}

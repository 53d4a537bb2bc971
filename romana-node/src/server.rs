//! Serving a router on a listener with the bounds an exposed server needs:
//! a cap on open connections (beyond it a connection is closed at once,
//! so a flood of idle or half-sent requests cannot exhaust the node), a
//! deadline for each request's headers that is also the idle timeout of a
//! kept-alive connection (hyper starts it whenever it waits for a request
//! head), and a graceful stop that lets requests in progress finish.
//!
//! Each connection first goes through its listener's [`Handshake`]: TLS
//! with client certificates on TCP ([`TlsHandshake`]), the peer's
//! credentials (`SO_PEERCRED`) on the unix socket ([`LocalHandshake`]).
//! What it learns about the other end, a [`Peer`], is attached to every
//! request of the connection for the API to authorise and to name the
//! actor by.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::tls::{Identity, HANDSHAKE_TIMEOUT};

/// Who is at the other end of a connection, as the listener established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A process on this machine (the unix socket): its user and process,
    /// from the kernel.
    Local { uid: u32, pid: Option<i32> },
    /// A TLS client with a certificate of this cluster, verified and not
    /// revoked at the handshake.
    Certified(Identity),
    /// A TLS client without a certificate.
    Anonymous,
    /// A plain-TCP client of a node run with `--insecure-plaintext`
    /// (loopback benchmarks): trusted as a member.
    Plaintext,
}

/// What a listener does with a new connection before HTTP: the stream to
/// speak HTTP on, and who is at the other end.
pub trait Handshake<Io>: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn establish(
        &self,
        io: Io,
    ) -> impl std::future::Future<Output = Result<(Self::Stream, Peer), String>> + Send;
}

/// TLS, with the client certificate (if any) as the peer's identity.
#[derive(Clone)]
pub struct TlsHandshake {
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Handshake<tokio::net::TcpStream> for TlsHandshake {
    type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    async fn establish(&self, io: tokio::net::TcpStream) -> Result<(Self::Stream, Peer), String> {
        let _ = io.set_nodelay(true);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(io))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let peer = match stream.get_ref().1.peer_certificates() {
            Some([certificate, ..]) => Peer::Certified(Identity::from_certificate(certificate)?),
            _ => Peer::Anonymous,
        };
        Ok((stream, peer))
    }
}

/// Plain TCP, for `--insecure-plaintext` (loopback benchmarks only).
#[derive(Clone)]
pub struct PlainHandshake;

impl Handshake<tokio::net::TcpStream> for PlainHandshake {
    type Stream = tokio::net::TcpStream;

    async fn establish(&self, io: tokio::net::TcpStream) -> Result<(Self::Stream, Peer), String> {
        let _ = io.set_nodelay(true);
        Ok((io, Peer::Plaintext))
    }
}

/// The unix socket: the kernel's word on the connecting process.
#[derive(Clone)]
pub struct LocalHandshake;

impl Handshake<tokio::net::UnixStream> for LocalHandshake {
    type Stream = tokio::net::UnixStream;

    async fn establish(&self, io: tokio::net::UnixStream) -> Result<(Self::Stream, Peer), String> {
        let credentials = io
            .peer_cred()
            .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        let peer = Peer::Local {
            uid: credentials.uid(),
            pid: credentials.pid(),
        };
        Ok((io, peer))
    }
}

/// How one listener is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections open at once from one IP address (TCP only), so one
    /// client cannot take every slot from the peers.
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's headers, and the longest a
    /// kept-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Time requests in progress get to finish once the node stops.
    pub drain_timeout: Duration,
}

/// The TCP listener (peers and remote clients): 1024 connections, 128 from
/// one address, 10 s for a
/// request's headers. Peers keep pooled connections idle for less than
/// that (see the clients' pool settings), so a pooled connection is never
/// closed under a request.
pub const TCP_LIMITS: Limits = Limits {
    max_connections: 1024,
    max_connections_per_ip: 128,
    header_read_timeout: Duration::from_secs(10),
    drain_timeout: Duration::from_secs(10),
};

/// The unix socket (the CNI plugin, local tools): each ADD or DEL is one
/// short connection.
pub const UNIX_LIMITS: Limits = Limits {
    max_connections: 256,
    max_connections_per_ip: usize::MAX,
    header_read_timeout: Duration::from_secs(10),
    drain_timeout: Duration::from_secs(10),
};

/// Serves `router` on `listener` until `stop` turns true, then drains.
/// Every connection goes through `handshake` first (within the header read
/// timeout's budget, so a stalled handshake holds its slot no longer).
pub async fn serve<L, H>(
    mut listener: L,
    router: Router,
    limits: Limits,
    handshake: H,
    mut stop: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Addr: PeerAddress,
    H: Handshake<L::Io>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip: ConnectionCounts = Arc::default();
    let mut connections = JoinSet::new();
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let ip_slot = match address.ip() {
            Some(ip) => IpSlot::take(&per_ip, ip, limits.max_connections_per_ip),
            None => Some(IpSlot::none()),
        };
        let (Some(ip_slot), Ok(slot)) = (ip_slot, slots.clone().try_acquire_owned()) else {
            drop(io);
            if last_refusal_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(
                    limit = limits.max_connections,
                    "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let router = router.clone();
        let handshake = handshake.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let _slots = (slot, ip_slot);
            let (io, peer) = match handshake.establish(io).await {
                Ok(established) => established,
                Err(reason) => {
                    tracing::debug!(%reason, "connection refused at its handshake");
                    return;
                }
            };
            let service = tower::ServiceBuilder::new()
                .map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(peer.clone());
                        request
                    },
                )
                .service(router);
            let service = TowerToHyperService::new(service);
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
}

/// Completes once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Open connections per client address.
type ConnectionCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The IP address of a listener's peer, where it has one.
pub trait PeerAddress {
    fn ip(&self) -> Option<IpAddr>;
}

impl PeerAddress for SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        Some(SocketAddr::ip(self))
    }
}

impl PeerAddress for tokio::net::unix::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        None
    }
}

/// One connection counted against its address; uncounted on drop.
struct IpSlot {
    counted: Option<(ConnectionCounts, IpAddr)>,
}

impl IpSlot {
    fn none() -> Self {
        Self { counted: None }
    }

    /// A slot for `ip`, unless it already holds `max`.
    fn take(table: &ConnectionCounts, ip: IpAddr, max: usize) -> Option<Self> {
        let mut counts = table.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            counted: Some((table.clone(), ip)),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((table, ip)) = self.counted.take() {
            let mut counts = table.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

//! The reaper of retired pod veths.
//!
//! A CNI DEL does not delete its pod's veth: deleting a network device
//! makes the kernel wait for an RCU grace period (about 20 ms here), and a
//! DEL would spend nearly all of its time there. It *retires* the veth
//! instead (sets it down, which takes the pod's route with it, and moves it
//! into [`RETIRED_LINK_GROUP`]), asks the node to release the address, and
//! returns. The node's release handler wakes this reaper, which waits a
//! moment for more DELs to arrive and deletes the whole group in one
//! request: one grace period for every veth retired meanwhile.
//!
//! A retired veth is gone within [`LINGER`] plus one group deletion of its
//! DEL (well under a second); one left by a DEL whose node was not running
//! is deleted by the sweep at start and every [`SWEEP_INTERVAL`]. An ADD of
//! the same container and interface before that deletes the old one
//! itself.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use romana_netlink::{Netlink, RETIRED_LINK_GROUP};

use crate::metrics::{Metrics, WhatLabels};

/// How long the reaper waits after a wake for more DELs to join the batch.
pub const LINGER: Duration = Duration::from_millis(20);

/// How often the group is deleted with no wake (a retired veth whose DEL
/// found no node to wake; deleting an empty group costs one netlink
/// request).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The handle the API wakes the reaper through. Cheap to clone; the
/// thread ends with the last handle.
#[derive(Clone)]
pub struct LinkReaper {
    wake: Option<SyncSender<()>>,
}

impl LinkReaper {
    /// Starts the reaper thread in this process's network namespace (the
    /// host's, where the plugin leaves the veths' host ends).
    pub fn start(metrics: Arc<Metrics>) -> Self {
        // One pending wake is enough: the thread deletes everything retired
        // up to its deletion.
        let (wake, woken) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("veth-reaper".into())
            .spawn(move || run(woken, &metrics));
        match spawned {
            Ok(_) => Self { wake: Some(wake) },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the veth reaper; retired veths stay until `romana-node cleanup`");
                Self { wake: None }
            }
        }
    }

    /// Asks for the retired veths to be deleted soon.
    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            // Full: a wake is already pending, which covers this one.
            let _ = wake.try_send(());
        }
    }
}

fn run(woken: mpsc::Receiver<()>, metrics: &Metrics) {
    let mut netlink = None;
    loop {
        reap(&mut netlink, metrics);
        match woken.recv_timeout(SWEEP_INTERVAL) {
            Ok(()) => {
                std::thread::sleep(LINGER);
                // The wakes that came during the linger are this batch's.
                while woken.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Deletes the retired group once; a failure is logged, counted and tried
/// again at the next wake or sweep.
fn reap(netlink: &mut Option<Netlink>, metrics: &Metrics) {
    let started = Instant::now();
    let result = match netlink {
        Some(socket) => socket.delete_group(RETIRED_LINK_GROUP),
        None => Netlink::open_here().and_then(|mut socket| {
            let result = socket.delete_group(RETIRED_LINK_GROUP);
            *netlink = Some(socket);
            result
        }),
    };
    let what = WhatLabels {
        what: "retired_veths".into(),
    };
    if metrics.enabled() {
        metrics
            .dataplane_duration
            .get_or_create(&what)
            .observe(started.elapsed().as_secs_f64());
    }
    if let Err(e) = result {
        // A socket that failed once is opened again next time.
        *netlink = None;
        tracing::warn!(error = %e, "deleting retired pod veths failed; retrying at the next DEL or sweep");
        if metrics.enabled() {
            metrics.dataplane_failures.get_or_create(&what).inc();
        }
    }
}

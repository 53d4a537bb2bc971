//! # simulation
//!
//! - [`lab`]: the network-namespace lab: several Romana hosts on one machine
//!   (namespaces on a bridged underlay, a real `romana-node` in each, pods
//!   wired by the real CNI plugin). Driven by the `romana-lab` binary and
//!   the lab tests.
//!
//! - [`netpol`]: the upstream Kubernetes NetworkPolicy e2e suite's model
//!   (namespaces x, y, z; pods a, b, c; 81-cell truth tables) and its
//!   cases, run against the policy compiler and against real kubelets.
//!
//! - [`sim`]: the deterministic simulation: many nodes in one process on
//!   turmoil's simulated network and clock, the real raft-store, faults on
//!   purpose, invariants checked at every step. Driven by the `simulation`
//!   binary and `tests/simulation.rs`.

pub mod lab;
pub mod netpol;
pub mod sim;

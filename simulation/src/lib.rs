//! # simulation
//!
//! - [`lab`]: the network-namespace lab: several Romana hosts on one machine
//!   (namespaces on a bridged underlay, a real `romana-node` in each, pods
//!   wired by the real CNI plugin). Driven by the `romana-lab` binary and
//!   the lab tests.
//!
//! The deterministic multi-node simulation will live here too (see
//! DESIGN.md). The raft-store pieces it builds on are ready for it: the
//! in-memory `KvBackend` keeps "durable" state across a simulated crash, and
//! `PeerNetwork::with_connector` dials over any connector.

pub mod lab;

//! # simulation
//!
//! The deterministic multi-node simulation and the network-namespace lab
//! will live here (see DESIGN.md). The raft-store pieces they build on are
//! ready for it: the in-memory `KvBackend` keeps "durable" state across a
//! simulated crash, and `PeerNetwork::with_connector` dials over any
//! connector.

//! Headers the node API reads.

/// The actor a request is recorded under. The node sets it itself from
/// the connection's authenticated peer (a certificate, or the unix
/// socket's peer credentials) and discards what a client sends, except
/// from a member relaying a request it received.
pub const ACTOR_HEADER: &str = "x-romana-actor";

//! [`Error`]: the errors of this crate's own checks and of the audit
//! archive. Rejections of requests are not errors: they are outcomes, part of
//! the replicated state ([`crate::state::Rejection`]).
//!
//! The display texts are what operators read (a node refusing its flags, the
//! API refusing a request), so each names the field or value at fault.

use std::net::Ipv4Addr;

/// What went wrong, by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An address layout CIDR that is not `ADDRESS/PREFIX`.
    #[error("CIDR {cidr:?} must be ADDRESS/PREFIX, e.g. 10.0.0.0/8")]
    LayoutCidrSyntax { cidr: String },
    /// An address layout CIDR whose address part is not IPv4.
    #[error("CIDR {cidr:?}: {address:?} is not an IPv4 address ({reason})")]
    LayoutCidrAddress {
        cidr: String,
        address: String,
        reason: String,
    },
    /// An address layout CIDR whose prefix length is not 0 to 32.
    #[error("CIDR {cidr:?}: prefix length must be 0 to 32")]
    LayoutCidrPrefix { cidr: String },
    /// A layout prefix longer than an IPv4 address.
    #[error("prefix length /{prefix_len} is longer than 32")]
    LayoutPrefixTooLong { prefix_len: u8 },
    /// Field widths that do not add up to the bits the prefix leaves.
    #[error("host ({host_bits}) + tenant ({tenant_bits}) + segment ({segment_bits}) + endpoint ({endpoint_bits}) bits = {sum}, but /{prefix_len} leaves {available} bits: they must be equal")]
    LayoutWidthsMismatch {
        host_bits: u8,
        tenant_bits: u8,
        segment_bits: u8,
        endpoint_bits: u8,
        sum: u32,
        prefix_len: u8,
        available: u32,
    },
    /// A host, tenant or segment field of width 0.
    #[error("{field} bits must be at least 1")]
    LayoutFieldEmpty { field: &'static str },
    /// Too few endpoint bits for the reserved endpoints and one pod.
    #[error("endpoint bits must be at least 2 (network, gateway and broadcast are reserved in every block), got {endpoint_bits}")]
    LayoutEndpointBitsTooFew { endpoint_bits: u8 },
    /// A layout CIDR with bits set past its prefix.
    #[error("CIDR {network}/{prefix_len} has bits set past the prefix; did you mean {fixed}/{prefix_len}?")]
    LayoutCidrHostBits {
        network: Ipv4Addr,
        prefix_len: u8,
        fixed: Ipv4Addr,
    },
    /// A policy CIDR that is not an IPv4 address with an optional prefix.
    #[error("{text:?} is not an IPv4 CIDR")]
    CidrSyntax { text: String },
    /// A policy CIDR whose prefix length is not 0 to 32.
    #[error("{text:?}: prefix length must be 0 to 32")]
    CidrPrefix { text: String },
    /// A policy CIDR with bits set past its prefix.
    #[error("{text:?} has bits set past its prefix length")]
    CidrHostBits { text: String },
    /// A policy that fails a stateless check; `field` names where.
    #[error("{field}: {reason}")]
    InvalidPolicy { field: String, reason: String },
    /// A tenant or segment name that is not a DNS-1123 label.
    #[error("{kind} name {name:?} is not a DNS-1123 label (1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit)")]
    InvalidLabel { kind: String, name: String },
    /// The projection broke one of its structural invariants (a bug).
    #[error("{reason}")]
    InvariantBroken { reason: String },
    /// The audit archive could not be read from the backend.
    #[error("cannot read the audit archive: {reason}")]
    ArchiveUnreadable { reason: String },
    /// An audit record that does not decode (the archive was damaged).
    #[error("audit record {sequence} does not decode: {reason}")]
    ArchiveRecordCorrupt { sequence: u64, reason: String },
    /// Old audit records could not be deleted.
    #[error("cannot prune the audit archive: {reason}")]
    ArchivePrune { reason: String },
}

impl Error {
    pub(crate) fn invalid_policy(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidPolicy {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invariant(reason: impl Into<String>) -> Self {
        Error::InvariantBroken {
            reason: reason.into(),
        }
    }
}

//! Romana's hierarchical address layout.
//!
//! One IPv4 CIDR is split into bit fields, most significant first: host,
//! tenant, segment, endpoint. With the default `10.0.0.0/8` and 8/4/4/8 bits
//! an address reads `10.<host>.<tenant:4|segment:4>.<endpoint>`:
//! `10.0.17.3` is host 0, tenant 1, segment 1, endpoint 3.
//!
//! - Host `h` owns `cidr + (h << (32 - prefix - host_bits))`, one prefix per
//!   host (`10.h.0.0/16` by default): a host needs one route per other host.
//! - Tenant and segment bits sit at fixed positions, so "every address of
//!   tenant t" is one (non-contiguous) mask match: `10.0.16.0/255.0.240.0`.
//! - Within a host, tenant 0 is reserved for the host itself (its gateway
//!   lives there); tenants are numbered from 1. Within a tenant, segment 0 is
//!   the tenant's `default` segment.
//! - Within every host/tenant/segment block, endpoint 0 (the block's network
//!   address), endpoint 1 (the gateway address pods are told to use) and the
//!   all-ones endpoint (broadcast) are never allocated.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Endpoint numbers never handed to a pod: network, gateway; the all-ones
/// broadcast number is reserved too (see [`AddressLayout::last_endpoint`]).
pub const RESERVED_LOW_ENDPOINTS: u32 = 2;

/// Tenant number reserved for the host's own addresses.
pub const HOST_TENANT: u32 = 0;

/// Segment number of every tenant's `default` segment.
pub const DEFAULT_SEGMENT: u32 = 0;

/// The layout, fixed when the cluster is initialised.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLayout {
    /// Network address of the cluster CIDR (host bits zero).
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub host_bits: u8,
    pub tenant_bits: u8,
    pub segment_bits: u8,
    pub endpoint_bits: u8,
}

impl Default for AddressLayout {
    /// Romana's: `10.0.0.0/8`, 8 host bits, 4 tenant, 4 segment, 8 endpoint.
    fn default() -> Self {
        Self {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 8,
            host_bits: 8,
            tenant_bits: 4,
            segment_bits: 4,
            endpoint_bits: 8,
        }
    }
}

/// An address taken apart into its fields.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressParts {
    pub host: u32,
    pub tenant: u32,
    pub segment: u32,
    pub endpoint: u32,
}

fn mask(bits: u8) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

impl AddressLayout {
    /// A layout from a CIDR text and widths, validated.
    pub fn new(
        cidr: &str,
        host_bits: u8,
        tenant_bits: u8,
        segment_bits: u8,
        endpoint_bits: u8,
    ) -> Result<Self, Error> {
        let (address, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| Error::LayoutCidrSyntax {
                cidr: cidr.to_string(),
            })?;
        let network: Ipv4Addr =
            address
                .parse()
                .map_err(|e: std::net::AddrParseError| Error::LayoutCidrAddress {
                    cidr: cidr.to_string(),
                    address: address.to_string(),
                    reason: e.to_string(),
                })?;
        let prefix_len: u8 =
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| Error::LayoutCidrPrefix {
                    cidr: cidr.to_string(),
                })?;
        let layout = Self {
            network,
            prefix_len,
            host_bits,
            tenant_bits,
            segment_bits,
            endpoint_bits,
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks the widths against the prefix and each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.prefix_len > 32 {
            return Err(Error::LayoutPrefixTooLong {
                prefix_len: self.prefix_len,
            });
        }
        let available = 32 - u32::from(self.prefix_len);
        let sum = u32::from(self.host_bits)
            + u32::from(self.tenant_bits)
            + u32::from(self.segment_bits)
            + u32::from(self.endpoint_bits);
        if sum != available {
            return Err(Error::LayoutWidthsMismatch {
                host_bits: self.host_bits,
                tenant_bits: self.tenant_bits,
                segment_bits: self.segment_bits,
                endpoint_bits: self.endpoint_bits,
                sum,
                prefix_len: self.prefix_len,
                available,
            });
        }
        for (field, bits) in [
            ("host", self.host_bits),
            ("tenant", self.tenant_bits),
            ("segment", self.segment_bits),
        ] {
            if bits == 0 {
                return Err(Error::LayoutFieldEmpty { field });
            }
        }
        if self.endpoint_bits < 2 {
            return Err(Error::LayoutEndpointBitsTooFew {
                endpoint_bits: self.endpoint_bits,
            });
        }
        let network = u32::from(self.network);
        if network & mask(available as u8) != 0 {
            let fixed = Ipv4Addr::from(network & !mask(available as u8));
            return Err(Error::LayoutCidrHostBits {
                network: self.network,
                prefix_len: self.prefix_len,
                fixed,
            });
        }
        Ok(())
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix_len)
    }

    fn endpoint_shift(&self) -> u32 {
        0
    }
    fn segment_shift(&self) -> u32 {
        u32::from(self.endpoint_bits)
    }
    fn tenant_shift(&self) -> u32 {
        self.segment_shift() + u32::from(self.segment_bits)
    }
    fn host_shift(&self) -> u32 {
        self.tenant_shift() + u32::from(self.tenant_bits)
    }

    pub fn max_hosts(&self) -> u32 {
        mask(self.host_bits).saturating_add(1)
    }
    /// Tenant numbers usable by tenants (0 is the host's own).
    pub fn max_tenants(&self) -> u32 {
        mask(self.tenant_bits)
    }
    pub fn max_segments_per_tenant(&self) -> u32 {
        mask(self.segment_bits).saturating_add(1)
    }
    /// The all-ones endpoint number (broadcast, reserved).
    pub fn last_endpoint(&self) -> u32 {
        mask(self.endpoint_bits)
    }
    /// Endpoint numbers a pod can get in one block.
    pub fn usable_endpoints(&self) -> u32 {
        self.last_endpoint() + 1 - RESERVED_LOW_ENDPOINTS - 1
    }
    pub fn is_usable_endpoint(&self, endpoint: u32) -> bool {
        (RESERVED_LOW_ENDPOINTS..self.last_endpoint()).contains(&endpoint)
    }

    /// The address with these fields. Fields must fit their widths.
    pub fn address(&self, parts: AddressParts) -> Ipv4Addr {
        assert!(
            parts.host <= mask(self.host_bits),
            "host number {} too wide",
            parts.host
        );
        assert!(
            parts.tenant <= mask(self.tenant_bits),
            "tenant number {} too wide",
            parts.tenant
        );
        assert!(
            parts.segment <= mask(self.segment_bits),
            "segment number {} too wide",
            parts.segment
        );
        assert!(
            parts.endpoint <= mask(self.endpoint_bits),
            "endpoint number {} too wide",
            parts.endpoint
        );
        Ipv4Addr::from(
            u32::from(self.network)
                | parts.host << self.host_shift()
                | parts.tenant << self.tenant_shift()
                | parts.segment << self.segment_shift()
                | parts.endpoint << self.endpoint_shift(),
        )
    }

    /// Is `address` inside the cluster CIDR?
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let prefix_mask = !mask(32 - self.prefix_len);
        u32::from(address) & prefix_mask == u32::from(self.network)
    }

    /// Takes an address apart; `None` outside the CIDR.
    pub fn decode(&self, address: Ipv4Addr) -> Option<AddressParts> {
        if !self.contains(address) {
            return None;
        }
        let value = u32::from(address);
        Some(AddressParts {
            host: (value >> self.host_shift()) & mask(self.host_bits),
            tenant: (value >> self.tenant_shift()) & mask(self.tenant_bits),
            segment: (value >> self.segment_shift()) & mask(self.segment_bits),
            endpoint: value & mask(self.endpoint_bits),
        })
    }

    /// Prefix length of one host's block (`/16` by default).
    pub fn host_prefix_len(&self) -> u8 {
        self.prefix_len + self.host_bits
    }

    /// The block a host owns, as `ADDRESS/LEN`.
    pub fn host_cidr(&self, host: u32) -> String {
        let base = self.address(AddressParts {
            host,
            tenant: 0,
            segment: 0,
            endpoint: 0,
        });
        format!("{base}/{}", self.host_prefix_len())
    }

    /// Prefix length of one host/tenant/segment block (`/24` by default).
    pub fn block_prefix_len(&self) -> u8 {
        32 - self.endpoint_bits
    }

    /// The mask selecting the tenant bits and the CIDR prefix (the segment
    /// bits too when `with_segment`): with the tenant's address, one
    /// iptables match for every pod of the tenant on every host.
    pub fn tenant_mask(&self, with_segment: bool) -> Ipv4Addr {
        let prefix_mask = !mask(32 - self.prefix_len);
        let mut value = prefix_mask | mask(self.tenant_bits) << self.tenant_shift();
        if with_segment {
            value |= mask(self.segment_bits) << self.segment_shift();
        }
        Ipv4Addr::from(value)
    }

    /// A drawing of the 32 bits: which are prefix, host, tenant, segment,
    /// endpoint, octet by octet, and what the layout allows.
    pub fn draw(&self) -> String {
        let mut fields = Vec::with_capacity(32);
        let spans = [
            ('N', self.prefix_len),
            ('H', self.host_bits),
            ('T', self.tenant_bits),
            ('S', self.segment_bits),
            ('E', self.endpoint_bits),
        ];
        for (letter, bits) in spans {
            fields.extend(std::iter::repeat_n(letter, usize::from(bits)));
        }
        let octets: Vec<String> = fields.chunks(8).map(|c| c.iter().collect()).collect();
        let example = self.address(AddressParts {
            host: 0,
            tenant: 1.min(self.max_tenants()),
            segment: 1.min(mask(self.segment_bits)),
            endpoint: RESERVED_LOW_ENDPOINTS + 1,
        });
        format!(
            "cidr      {cidr}\nbits      {bits}\n          N network prefix ({p}), H host ({h}), T tenant ({t}), S segment ({s}), E endpoint ({e})\n\
             hosts     {hosts} (host n owns {host0} for n = 0, one route per host)\n\
             tenants   {tenants} per cluster (numbers 1..={tenants}; 0 is the host's own)\n\
             segments  {segments} per tenant (0 is `default`)\n\
             pods      {pods} per host/tenant/segment block of /{block} (endpoints 0, 1 and {last} reserved: network, gateway, broadcast)\n\
             tenant 1  every address matches {tenant1}/{tmask}\n\
             example   {example} = host 0, tenant 1, segment 1, endpoint {ex_endpoint}\n",
            cidr = self.cidr(),
            bits = octets.join("."),
            p = self.prefix_len,
            h = self.host_bits,
            t = self.tenant_bits,
            s = self.segment_bits,
            e = self.endpoint_bits,
            hosts = self.max_hosts(),
            host0 = self.host_cidr(0),
            tenants = self.max_tenants(),
            segments = self.max_segments_per_tenant(),
            pods = self.usable_endpoints(),
            block = self.block_prefix_len(),
            last = self.last_endpoint(),
            tenant1 = self.address(AddressParts { host: 0, tenant: 1.min(self.max_tenants()), segment: 0, endpoint: 0 }),
            tmask = self.tenant_mask(false),
            ex_endpoint = RESERVED_LOW_ENDPOINTS + 1,
        )
    }
}

impl fmt::Display for AddressLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} host/tenant/segment/endpoint bits {}/{}/{}/{}",
            self.cidr(),
            self.host_bits,
            self.tenant_bits,
            self.segment_bits,
            self.endpoint_bits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn romanas_example_decodes() {
        let layout = AddressLayout::default();
        assert!(layout.validate().is_ok());
        let parts = AddressParts {
            host: 0,
            tenant: 1,
            segment: 1,
            endpoint: 3,
        };
        assert_eq!(layout.address(parts), Ipv4Addr::new(10, 0, 17, 3));
        assert_eq!(layout.decode(Ipv4Addr::new(10, 0, 17, 3)), Some(parts));
        assert_eq!(layout.decode(Ipv4Addr::new(11, 0, 17, 3)), None);
        assert_eq!(layout.host_cidr(3), "10.3.0.0/16");
        assert_eq!(layout.tenant_mask(false), Ipv4Addr::new(255, 0, 240, 0));
        assert_eq!(layout.tenant_mask(true), Ipv4Addr::new(255, 0, 255, 0));
        assert_eq!(layout.usable_endpoints(), 253);
        assert_eq!(layout.max_tenants(), 15);
        assert_eq!(layout.max_hosts(), 256);
    }

    #[test]
    fn every_field_round_trips_in_an_odd_layout() {
        let layout = AddressLayout::new("172.16.0.0/12", 5, 3, 2, 10).expect("valid");
        for host in [0, 1, 31] {
            for tenant in [0, 7] {
                for segment in [0, 3] {
                    for endpoint in [0, 2, 1023] {
                        let parts = AddressParts {
                            host,
                            tenant,
                            segment,
                            endpoint,
                        };
                        let address = layout.address(parts);
                        assert!(layout.contains(address));
                        assert_eq!(layout.decode(address), Some(parts));
                    }
                }
            }
        }
    }

    #[test]
    fn bad_layouts_say_what_is_wrong() {
        let cases = [
            (("10.0.0.0/8", 8, 4, 4, 4), "= 20, but /8 leaves 24"),
            (("10.0.0.1/8", 8, 4, 4, 8), "did you mean 10.0.0.0/8"),
            (("10.0.0.0/8", 0, 8, 8, 8), "host bits must be at least 1"),
            (("10.0.0.0/8", 8, 0, 8, 8), "tenant bits must be at least 1"),
            (
                ("10.0.0.0/8", 8, 4, 11, 1),
                "endpoint bits must be at least 2",
            ),
            (("10.0.0.0", 8, 4, 4, 8), "ADDRESS/PREFIX"),
            (("10.0.0.0/33", 8, 4, 4, 8), "prefix length"),
            (("ten/8", 8, 4, 4, 8), "not an IPv4 address"),
        ];
        for ((cidr, h, t, s, e), expected) in cases {
            let error = AddressLayout::new(cidr, h, t, s, e)
                .expect_err("must be refused")
                .to_string();
            assert!(
                error.contains(expected),
                "{cidr} {h}/{t}/{s}/{e}: {error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn the_drawing_names_every_field() {
        let drawing = AddressLayout::default().draw();
        assert!(
            drawing.contains("NNNNNNNN.HHHHHHHH.TTTTSSSS.EEEEEEEE"),
            "{drawing}"
        );
        assert!(
            drawing.contains("10.0.17.3 = host 0, tenant 1, segment 1, endpoint 3"),
            "{drawing}"
        );
        assert!(drawing.contains("10.0.16.0/255.0.240.0"), "{drawing}");
    }
}

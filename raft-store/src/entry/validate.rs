//! Checks of request fields that need no state (names, addresses), shared
//! by `ClusterState::apply` and by a node checking a request before it
//! proposes it.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::Error;
use crate::layout::AddressLayout;

/// Is `name` a DNS-1123 label (tenant and segment names): lowercase letters,
/// digits and '-', starting and ending alphanumeric, at most 63 bytes?
pub fn validate_label(kind: &str, name: &str) -> Result<(), Error> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.chars().next().is_some_and(alnum)
        && name.chars().last().is_some_and(alnum);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidLabel {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

/// Is `name` usable as a node name: a DNS-1123 subdomain (lowercase letters,
/// digits, '-' and '.', starting and ending alphanumeric, at most 253 bytes)?
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "node name must be 1 to 253 characters, got {}",
            name.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().is_some_and(alnum);
    let last = name.chars().last().is_some_and(alnum);
    if !name.chars().all(ok_char) || !first || !last {
        return Err(format!(
            "node name {name:?} is not a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// Checks a node's `IPV4:PORT` address against the layout; returns the
/// underlay IP. Used by `apply` and, before anything is changed, by the node
/// admitting a joiner.
pub fn validate_node_address(layout: &AddressLayout, address: &str) -> Result<Ipv4Addr, String> {
    let socket: SocketAddrV4 = address
        .parse()
        .map_err(|_| format!("node address {address:?} must be IPV4:PORT (the host's underlay IPv4 address and port)"))?;
    if socket.port() == 0 {
        return Err(format!("node address {address:?} has no valid port"));
    }
    let ip = *socket.ip();
    if layout.contains(ip) {
        return Err(format!(
            "node address {ip} lies inside the pod CIDR {}: the underlay must be outside it",
            layout.cidr()
        ));
    }
    Ok(ip)
}

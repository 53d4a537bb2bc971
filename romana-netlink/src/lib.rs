//! # romana-netlink: a small blocking rtnetlink client
//!
//! The few link, address and route operations Romana needs, over one
//! netlink socket: the CNI plugin wires pods with it (veth, addresses,
//! routes), the node's dataplane converges its routes to the other hosts
//! with it (routes tagged [`ROMANA_ROUTE_PROTOCOL`]).
//!
//! ## Layout
//!
//! One module: [`Netlink`] (a socket and its operations), [`NetlinkError`],
//! the observed [`Link`] and [`Route`], and [`format_mac`].
//!
//! A socket belongs to the network namespace it was opened in, for its whole
//! life. [`Netlink::open_in`] opens one inside a pod's namespace from a
//! short-lived thread that enters the namespace, opens the socket and exits:
//! the caller's own thread never changes namespace, and everything after is
//! done through the socket from outside. (The same rule keeps `setns` off
//! async runtimes' worker threads in the node.)

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The routing protocol number marking routes Romana owns (`ip route`
/// shows `proto 77`): pod routes made by the plugin and host routes made by
/// the node's reconciler. Nothing else on a host uses it, so the reconciler
/// can tell its routes from everyone else's.
pub const ROMANA_ROUTE_PROTOCOL: u8 = 77;

/// The interface group of pod veths a DEL has retired (down, no routes)
/// and the node deletes in batches (`ip link show group 1380928833`;
/// the number spells "ROMA"). Deleting one veth costs the kernel an RCU
/// grace period (about 20 ms here), deleting a whole group costs one for
/// all of them, and nobody has to wait for it: a DEL retires its veth and
/// returns, and the node's reaper deletes the group within a second.
pub const RETIRED_LINK_GROUP: u32 = 0x524f_4d41;

/// Largest netlink answer read at once (a dump may span several).
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Most reads one request may take (a dump on a busy host has many parts).
const MAX_RECEIVES_PER_REQUEST: usize = 10_000;

/// A netlink failure: the kernel's errno, or a transport problem.
#[derive(Debug)]
pub struct NetlinkError {
    /// The operation, e.g. "create veth romana1a2b3c".
    pub context: String,
    /// errno from the kernel, if it answered with one.
    pub errno: Option<i32>,
    pub message: String,
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.message)
    }
}

impl NetlinkError {
    fn io(context: &str, e: io::Error) -> Self {
        Self {
            context: context.to_string(),
            errno: e.raw_os_error(),
            message: e.to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno,
            Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::ENOENT)
        )
    }

    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// A link as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// The interface group (`ip link ... group N`; 0 is the default).
    pub group: u32,
}

/// An IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    /// The routing protocol number (`proto` in `ip route`).
    pub protocol: u8,
}

pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A socket in this process's network namespace.
    pub fn open_here() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| NetlinkError::io("open netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| NetlinkError::io("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NetlinkError::io("connect netlink socket", e))?;
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// A socket inside the network namespace at `netns` (a bind-mounted
    /// namespace file or `/proc/PID/ns/net`).
    pub fn open_in(netns: &Path) -> Result<Self> {
        let context = format!("open netns {}", netns.display());
        let file = File::open(netns).map_err(|e| NetlinkError::io(&context, e))?;
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a valid namespace fd; it changes only
                    // this thread's namespace, and the thread ends right after
                    // opening the socket.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(NetlinkError::io(&context, io::Error::last_os_error()));
                    }
                    Self::open_here()
                })
                .join()
        });
        opened.unwrap_or_else(|_| {
            Err(NetlinkError {
                context: "open netns".into(),
                errno: None,
                message: "the namespace thread panicked".into(),
            })
        })
    }

    /// Sends one request and collects the answers until the ACK (or the end
    /// of a dump).
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        context: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| NetlinkError::io(context, e))?;

        let mut answers = Vec::new();
        let mut buffer = vec![0u8; RECEIVE_BUFFER_BYTES];
        for _ in 0..MAX_RECEIVES_PER_REQUEST {
            let size = self
                .socket
                .recv(&mut &mut buffer[..], 0)
                .map_err(|e| NetlinkError::io(context, e))?;
            let mut offset = 0;
            while offset < size {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..size])
                        .map_err(|e| NetlinkError {
                            context: context.to_string(),
                            errno: None,
                            message: format!("undecodable netlink answer: {e}"),
                        })?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number != self.sequence {
                    offset += length.max(1);
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(code) => {
                                let errno = -code.get();
                                Err(NetlinkError {
                                    context: context.to_string(),
                                    errno: Some(errno),
                                    message: io::Error::from_raw_os_error(errno).to_string(),
                                })
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
        Err(NetlinkError {
            context: context.to_string(),
            errno: None,
            message: format!("no end of answer after {MAX_RECEIVES_PER_REQUEST} reads"),
        })
    }

    /// Creates a veth pair: `name` here, `peer_name` directly inside the
    /// namespace `peer_netns` (no move of a device between namespaces).
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: RawFd,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("create veth {name} with peer {peer_name}"),
        )?;
        Ok(())
    }

    /// The link called `name`; `Ok(None)` if there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::GetLink(message),
            NLM_F_ACK,
            &format!("look up link {name}"),
        ) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(link)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set_up(&mut self, index: u32, name: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
            &format!("set {name} up"),
        )?;
        Ok(())
    }

    /// Deletes a link (and with a veth, its peer). Gone already is success.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
            &format!("delete link {name}"),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retires a link: sets it down and moves it into interface group
    /// `group`, in one request, so that it carries no traffic and no route
    /// any more (the kernel drops the routes through a link that goes down)
    /// while its deletion waits for [`Netlink::delete_group`]. Returns
    /// whether the link existed.
    pub fn retire_link(&mut self, name: &str, group: u32) -> Result<bool> {
        let mut message = LinkMessage::default();
        message.header.change_mask = LinkFlags::Up;
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message.attributes.push(LinkAttribute::Group(group));
        match self.request(
            RouteNetlinkMessage::SetLink(message),
            NLM_F_ACK,
            &format!("retire link {name}"),
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every link of interface group `group` in one request: the
    /// kernel unregisters them together, with one RCU grace period for all
    /// of them instead of one each (a veth takes its peer with it). No link
    /// in the group is success.
    pub fn delete_group(&mut self, group: u32) -> Result<()> {
        if group == 0 {
            return Err(NetlinkError {
                context: "delete link group 0".into(),
                errno: None,
                message: "group 0 is every link's default group".into(),
            });
        }
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::Group(group));
        match self.request(
            RouteNetlinkMessage::DelLink(message),
            NLM_F_ACK,
            &format!("delete link group {group}"),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every link of this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let answers = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list links",
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(link_of(message)),
                _ => None,
            })
            .collect())
    }

    /// The links of interface group `group`.
    pub fn links_in_group(&mut self, group: u32) -> Result<Vec<Link>> {
        Ok(self
            .links()?
            .into_iter()
            .filter(|link| link.group == group)
            .collect())
    }

    pub fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
        name: &str,
    ) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        message.header.scope = AddressScope::Universe;
        message
            .attributes
            .push(AddressAttribute::Local(address.into()));
        message
            .attributes
            .push(AddressAttribute::Address(address.into()));
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &format!("add {address}/{prefix_len} to {name}"),
        )?;
        Ok(())
    }

    /// IPv4 addresses (with prefix lengths) of the link `index`.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        let answers = self.request(
            RouteNetlinkMessage::GetAddress(message),
            NLM_F_DUMP,
            "list addresses",
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attribute| match attribute {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => {
                            Some((*ip, a.header.prefix_len))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route in the main table: to `destination/prefix_len`, out of
    /// link `oif`, via `gateway` if given (else on-link, scope link).
    pub fn add_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: u32,
        context: &str,
    ) -> Result<()> {
        let scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        let mut message = romana_route_message(destination, prefix_len, scope);
        if let Some(gateway) = gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            context,
        )?;
        Ok(())
    }

    /// Adds or replaces a Romana route to `destination/prefix_len` via
    /// `gateway` (the kernel picks the interface that reaches it).
    pub fn replace_gateway_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    ) -> Result<()> {
        let mut message = romana_route_message(destination, prefix_len, RouteScope::Universe);
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &format!("route {destination}/{prefix_len} via {gateway}"),
        )?;
        Ok(())
    }

    /// Deletes the main-table route to `destination/prefix_len` with
    /// Romana's protocol. Gone already is success.
    pub fn delete_romana_route(&mut self, destination: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut message = route_message(destination, prefix_len, RouteScope::NoWhere);
        message.header.protocol = RouteProtocol::Other(ROMANA_ROUTE_PROTOCOL);
        let context = format!("delete route {destination}/{prefix_len}");
        match self.request(RouteNetlinkMessage::DelRoute(message), NLM_F_ACK, &context) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a main-table route to `destination/prefix_len` out of `oif`.
    /// Gone already is success.
    pub fn delete_route(
        &mut self,
        destination: Ipv4Addr,
        prefix_len: u8,
        oif: u32,
        context: &str,
    ) -> Result<()> {
        let mut message = route_message(destination, prefix_len, RouteScope::NoWhere);
        message.attributes.push(RouteAttribute::Oif(oif));
        match self.request(RouteNetlinkMessage::DelRoute(message), NLM_F_ACK, context) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// IPv4 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let answers = self.request(
            RouteNetlinkMessage::GetRoute(message),
            NLM_F_DUMP,
            "list routes",
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(route)
                    if route.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    let mut result = Route {
                        destination: Ipv4Addr::UNSPECIFIED,
                        prefix_len: route.header.destination_prefix_length,
                        gateway: None,
                        oif: None,
                        protocol: u8::from(route.header.protocol),
                    };
                    for attribute in &route.attributes {
                        match attribute {
                            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                                result.destination = *ip
                            }
                            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                                result.gateway = Some(*ip)
                            }
                            RouteAttribute::Oif(index) => result.oif = Some(*index),
                            _ => {}
                        }
                    }
                    Some(result)
                }
                _ => None,
            })
            .collect())
    }
}

/// A main-table IPv4 route message to `destination/prefix_len` (no
/// destination attribute for the default route).
fn route_message(destination: Ipv4Addr, prefix_len: u8, scope: RouteScope) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = prefix_len;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.scope = scope;
    if prefix_len > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    }
    message
}

/// The same, for a route Romana adds (its protocol, unicast).
fn romana_route_message(destination: Ipv4Addr, prefix_len: u8, scope: RouteScope) -> RouteMessage {
    let mut message = route_message(destination, prefix_len, scope);
    message.header.protocol = RouteProtocol::Other(ROMANA_ROUTE_PROTOCOL);
    message.header.kind = RouteType::Unicast;
    message
}

fn link_of(message: LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: message.header.flags.contains(LinkFlags::Up),
        group: 0,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&bytes);
                link.mac = Some(mac);
            }
            LinkAttribute::Mtu(mtu) => link.mtu = Some(mtu),
            LinkAttribute::Group(group) => link.group = group,
            _ => {}
        }
    }
    link
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

//! Wire decoding: one captured frame in, one [`Packet`] (the TCP facts the rest of
//! the engine needs) or one [`Skip`] reason out.
//!
//! Parsing of Ethernet, VLAN (802.1Q, QinQ), IPv4 (with options), IPv6 (with extension
//! headers) and TCP is done by etherparse's lax parser, which keeps whatever it could
//! read from a frame cut by the snap length. This module adds the link types
//! etherparse does not frame itself (Linux cooked capture v1 and v2, BSD loopback,
//! raw IP) and turns etherparse's results into a small `Copy` value.
//!
//! Speed: etherparse's lax slicer costs about 72 ns per data frame on the bench
//! machine (BENCHMARKS.md, `decode/etherparse_lax_slice_data_1448`), most of the
//! 100 ns a packet may cost at 10 Mpps. So the common case (Ethernet, Linux cooked
//! capture or raw IP; up to two VLAN tags; IPv4 without fragmentation or IPv6 with
//! TCP as the first next header; whole TCP header captured) is read by a hand-written
//! fast path, [`decode_fast`], and everything else by etherparse. A differential test
//! checks that both give the same [`Packet`] for every frame of every shipped capture.
//!
//! Guarantees: never panics, never allocates. Lengths on the wire (what TCP sequence
//! numbers count) come from the IP headers, not from the captured bytes, so a frame
//! cut by the snap length still advances sequence tracking correctly.

use etherparse::{err::Layer, EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::flow::Endpoint;

/// The link-layer header type of a capture (the pcap LINKTYPE_ values we decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host order.
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, the family in network order.
    Loop,
    /// LINKTYPE_RAW (101), and the legacy DLT_RAW values 12 and 14: bare IPv4 or IPv6.
    Raw,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1, 16-byte header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2, 20-byte header.
    LinuxSll2,
    /// Anything else; every frame is skipped as [`Skip::LinkTypeUnsupported`].
    Unsupported(u32),
}

impl LinkType {
    pub fn from_linktype(v: u32) -> LinkType {
        match v {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unsupported(other),
        }
    }
}

/// TCP flags as on the wire (low byte of the flags field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// TCP options that matter for following a session (RFC 9293, 7323, 2018).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only), 0 if absent.
    pub mss: u16,
    /// Window scale shift (SYN only), `None` if absent.
    pub wscale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// Number of SACK blocks carried.
    pub sack_blocks: u8,
    /// Timestamps option: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// The option list could not be read to its end.
    pub malformed: bool,
    /// The snap length cut the frame inside the option list: the options read are
    /// those captured.
    pub truncated: bool,
}

/// The TCP facts of one frame: everything later layers read, nothing they do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Packet {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6.
    pub ip_id: Option<u16>,
    /// Outermost VLAN id, if the frame was tagged.
    pub vlan: Option<u16>,
    /// TCP payload length on the wire (from the IP header lengths).
    pub payload_len: u32,
    /// Offset of the TCP payload within the frame.
    pub payload_offset: u32,
    /// TCP payload bytes present in the capture (`<= payload_len`).
    pub payload_captured: u32,
    /// Frame length on the wire (the capture's original length).
    pub wire_len: u32,
    /// The frame was cut by the snap length.
    pub snaplen_cut: bool,
    pub options: TcpOptions,
}

/// Why a frame was not turned into a [`Packet`]. Counted per kind, never logged per
/// frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// The capture's link type is not one we decode.
    LinkTypeUnsupported,
    /// ARP.
    Arp,
    /// An EtherType other than IPv4, IPv6, ARP or VLAN tags (LLDP, STP, MPLS, ...).
    OtherEtherType,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    /// Another IP protocol (GRE, ESP, SCTP, ...).
    OtherIpProtocol,
    /// An IPv4 or IPv6 fragment: not reassembled, counted and skipped.
    IpFragment,
    /// The frame ended (snap length or bogus length) inside the link headers.
    TruncatedLink,
    /// The frame ended inside the IP headers.
    TruncatedIp,
    /// The frame ended inside the TCP header.
    TruncatedTcp,
    /// A link header that cannot be valid.
    MalformedLink,
    /// An IP header that cannot be valid (version, header length, extension chain).
    MalformedIp,
    /// A TCP header that cannot be valid (data offset below 5).
    MalformedTcp,
}

impl Skip {
    pub const ALL: [Skip; 13] = [
        Skip::LinkTypeUnsupported,
        Skip::Arp,
        Skip::OtherEtherType,
        Skip::Udp,
        Skip::Icmp,
        Skip::OtherIpProtocol,
        Skip::IpFragment,
        Skip::TruncatedLink,
        Skip::TruncatedIp,
        Skip::TruncatedTcp,
        Skip::MalformedLink,
        Skip::MalformedIp,
        Skip::MalformedTcp,
    ];
    pub const COUNT: usize = Skip::ALL.len();

    /// The stable name used in the summary and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::LinkTypeUnsupported => "link_type_unsupported",
            Skip::Arp => "arp",
            Skip::OtherEtherType => "other_ethertype",
            Skip::Udp => "udp",
            Skip::Icmp => "icmp",
            Skip::OtherIpProtocol => "other_ip_protocol",
            Skip::IpFragment => "ip_fragment",
            Skip::TruncatedLink => "truncated_link",
            Skip::TruncatedIp => "truncated_ip",
            Skip::TruncatedTcp => "truncated_tcp",
            Skip::MalformedLink => "malformed_link",
            Skip::MalformedIp => "malformed_ip",
            Skip::MalformedTcp => "malformed_tcp",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

const SLL_HDR: usize = 16;
const SLL2_HDR: usize = 20;
const NULL_HDR: usize = 4;

/// Decodes one frame. `wire_len` is the frame's original length from the capture
/// record (it may exceed `frame.len()` when the snap length cut the frame).
#[inline]
pub fn decode(link: LinkType, frame: &[u8], wire_len: u32) -> Result<Packet, Skip> {
    match decode_fast(link, frame, wire_len) {
        Some(p) => Ok(p),
        None => decode_slow(link, frame, wire_len),
    }
}

/// The etherparse path: every case, and the classification of every skip.
pub fn decode_slow(link: LinkType, frame: &[u8], wire_len: u32) -> Result<Packet, Skip> {
    let sliced = match link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::TruncatedLink)?
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => from_ip(frame)?,
        LinkType::LinuxSll => {
            // Protocol type at bytes 14..16 (an EtherType for ARPHRD_ETHER & co).
            let hdr = frame.get(..SLL_HDR).ok_or(Skip::TruncatedLink)?;
            let proto = u16::from_be_bytes([hdr[14], hdr[15]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &frame[SLL_HDR..])
        }
        LinkType::LinuxSll2 => {
            // Protocol type at bytes 0..2.
            let hdr = frame.get(..SLL2_HDR).ok_or(Skip::TruncatedLink)?;
            let proto = u16::from_be_bytes([hdr[0], hdr[1]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &frame[SLL2_HDR..])
        }
        LinkType::Null | LinkType::Loop => {
            let hdr = frame.get(..NULL_HDR).ok_or(Skip::TruncatedLink)?;
            let fam = [hdr[0], hdr[1], hdr[2], hdr[3]];
            // The family is in the writer's byte order: accept both.
            let family = u32::from_le_bytes(fam).min(u32::from_be_bytes(fam));
            match family {
                // AF_INET everywhere; AF_INET6 is 10, 24, 28 or 30 depending on the OS.
                2 | 10 | 24 | 28 | 30 => from_ip(&frame[NULL_HDR..])?,
                _ => return Err(Skip::OtherEtherType),
            }
        }
        LinkType::Unsupported(_) => return Err(Skip::LinkTypeUnsupported),
    };
    let base = frame.as_ptr() as usize;
    to_packet(&sliced, base, wire_len, frame.len())
}

fn from_ip(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    LaxSlicedPacket::from_ip(frame).map_err(|e| {
        use etherparse::err::ip::LaxHeaderSliceError as E;
        match e {
            E::Len(_) => Skip::TruncatedIp,
            E::Content(_) => Skip::MalformedIp,
        }
    })
}

fn skip_for_layer(layer: Layer, truncated: bool) -> Skip {
    match layer {
        Layer::Arp => Skip::Arp,
        Layer::UdpHeader | Layer::UdpPayload => Skip::Udp,
        Layer::Icmpv4 | Layer::Icmpv4Timestamp | Layer::Icmpv4TimestampReply | Layer::Icmpv6 => {
            Skip::Icmp
        }
        Layer::Igmp => Skip::OtherIpProtocol,
        Layer::LinuxSllHeader
        | Layer::Ethernet2Header
        | Layer::EtherPayload
        | Layer::VlanHeader
        | Layer::MacsecHeader
        | Layer::MacsecPacket => {
            if truncated {
                Skip::TruncatedLink
            } else {
                Skip::MalformedLink
            }
        }
        Layer::TcpHeader => {
            if truncated {
                Skip::TruncatedTcp
            } else {
                Skip::MalformedTcp
            }
        }
        _ => {
            if truncated {
                Skip::TruncatedIp
            } else {
                Skip::MalformedIp
            }
        }
    }
}

fn to_packet(
    s: &LaxSlicedPacket<'_>,
    frame_base: usize,
    wire_len: u32,
    cap_len: usize,
) -> Result<Packet, Skip> {
    let vlan = s.link_exts.iter().find_map(|e| match e {
        etherparse::LaxLinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        etherparse::LaxLinkExtSlice::Macsec(_) => None,
    });
    let Some(net) = &s.net else {
        if let Some((err, layer)) = &s.stop_err {
            return Err(skip_for_layer(
                *layer,
                matches!(err, etherparse::err::packet::SliceError::Len(_)),
            ));
        }
        return Err(match s.ether_payload().map(|p| p.ether_type) {
            Some(EtherType::ARP) => Skip::Arp,
            _ => Skip::OtherEtherType,
        });
    };
    let (src, dst, ttl, ip_id, ip_payload_wire) = match net {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            let payload = ip.payload();
            let l3 = (h.slice().as_ptr() as usize).saturating_sub(frame_base);
            let wire = if h.total_len() == 0 {
                // TSO: see decode_fast.
                (wire_len as usize).saturating_sub(l3 + h.slice().len())
            } else if payload.incomplete {
                usize::from(h.total_len()).saturating_sub(h.slice().len())
            } else {
                payload.payload.len()
            };
            if payload.fragmented {
                return Err(Skip::IpFragment);
            }
            (
                Endpoint::v4(h.source(), 0),
                Endpoint::v4(h.destination(), 0),
                h.ttl(),
                Some(h.identification()),
                wire,
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            let payload = ip.payload();
            if payload.fragmented {
                return Err(Skip::IpFragment);
            }
            let l3 = (h.slice().as_ptr() as usize).saturating_sub(frame_base);
            let wire = if h.payload_length() == 0 {
                // TSO: see decode_fast.
                (wire_len as usize).saturating_sub(l3 + 40 + ip.extensions().slice().len())
            } else if payload.incomplete {
                usize::from(h.payload_length()).saturating_sub(ip.extensions().slice().len())
            } else {
                payload.payload.len()
            };
            (
                Endpoint::v6(h.source(), 0),
                Endpoint::v6(h.destination(), 0),
                h.hop_limit(),
                None,
                wire,
            )
        }
        LaxNetSlice::Arp(_) => return Err(Skip::Arp),
    };
    let ip_number = net.ip_payload_ref().map(|p| p.ip_number);
    let tcp = match &s.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(TransportSlice::Udp(_)) => return Err(Skip::Udp),
        Some(TransportSlice::Icmpv4(_) | TransportSlice::Icmpv6(_)) => return Err(Skip::Icmp),
        Some(_) => return Err(Skip::OtherIpProtocol),
        None => {
            if let Some((err, layer)) = &s.stop_err {
                return Err(skip_for_layer(
                    *layer,
                    matches!(err, etherparse::err::packet::SliceError::Len(_)),
                ));
            }
            return Err(match ip_number {
                Some(IpNumber::UDP) => Skip::Udp,
                Some(IpNumber::ICMP | IpNumber::IPV6_ICMP) => Skip::Icmp,
                _ => Skip::OtherIpProtocol,
            });
        }
    };
    let header_len = usize::from(tcp.data_offset()) * 4;
    let payload = tcp.payload();
    let payload_offset = (payload.as_ptr() as usize).saturating_sub(frame_base);
    let payload_len = ip_payload_wire
        .saturating_sub(header_len)
        .max(payload.len());
    Ok(Packet {
        src: Endpoint {
            port: tcp.source_port(),
            ..src
        },
        dst: Endpoint {
            port: tcp.destination_port(),
            ..dst
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(tcp.header_slice()[13]),
        window: tcp.window_size(),
        ttl,
        ip_id,
        vlan,
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        payload_offset: u32::try_from(payload_offset).unwrap_or(u32::MAX),
        payload_captured: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        wire_len: wire_len.max(u32::try_from(cap_len).unwrap_or(u32::MAX)),
        snaplen_cut: (wire_len as usize) > cap_len,
        options: read_options(tcp.options()),
    })
}

/// Reads TCP options (RFC 9293 3.1, 7323, 2018). Unknown kinds are skipped by their
/// length; a length that cannot be right stops the walk and sets `malformed`.
#[inline]
fn read_options(opts: &[u8]) -> TcpOptions {
    let mut out = TcpOptions::default();
    // What Linux, BSD and Windows put on every segment after the SYN: NOP, NOP,
    // timestamps. One comparison instead of the walk (half the decoder's
    // instructions on data packets, callgrind).
    if let [1, 1, 8, 10, a0, a1, a2, a3, b0, b1, b2, b3] = *opts {
        out.timestamps = Some((
            u32::from_be_bytes([a0, a1, a2, a3]),
            u32::from_be_bytes([b0, b1, b2, b3]),
        ));
        return out;
    }
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(i + 1) else {
            out.malformed = true;
            break;
        };
        let len = usize::from(len);
        let Some(body) = opts.get(i + 2..i + len.max(2)).filter(|_| len >= 2) else {
            out.malformed = true;
            break;
        };
        match (kind, body.len()) {
            (2, 2) => out.mss = u16::from_be_bytes([body[0], body[1]]),
            (3, 1) => out.wscale = Some(body[0]),
            (4, 0) => out.sack_permitted = true,
            (5, n) if n % 8 == 0 && n > 0 => out.sack_blocks = (n / 8) as u8,
            (8, 8) => {
                let tsval = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let tsecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                out.timestamps = Some((tsval, tsecr));
            }
            (2..=5 | 8, _) => {
                out.malformed = true;
                break;
            }
            _ => {}
        }
        i += len;
    }
    out
}

const ETH_HDR: usize = 14;
/// `::ffff:0.0.0.0`, the prefix of an IPv4-mapped address.
const V4_MAPPED: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The fast path: `Some` only for the common, well-formed case; `None` sends the
/// frame to [`decode_slow`], which reads (or classifies) everything. Every index is
/// checked against the frame length before use.
#[inline]
pub fn decode_fast(link: LinkType, frame: &[u8], wire_len: u32) -> Option<Packet> {
    let (mut ethertype, mut at) = match link {
        LinkType::Ethernet => {
            if frame.len() < ETH_HDR {
                return None;
            }
            (be16(frame, 12), ETH_HDR)
        }
        LinkType::LinuxSll if frame.len() >= SLL_HDR => (be16(frame, 14), SLL_HDR),
        LinkType::LinuxSll2 if frame.len() >= SLL2_HDR => (be16(frame, 0), SLL2_HDR),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => match frame.first()? >> 4 {
            4 => (ETHERTYPE_IPV4, 0),
            6 => (ETHERTYPE_IPV6, 0),
            _ => return None,
        },
        _ => return None,
    };
    let mut vlan = None;
    for _ in 0..2 {
        if matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            if frame.len() < at + 4 {
                return None;
            }
            vlan.get_or_insert(be16(frame, at) & 0x0fff);
            ethertype = be16(frame, at + 2);
            at += 4;
        }
    }
    let ip = frame.get(at..)?;
    // Addresses are taken whole in each branch (IPv4 mapped as `Endpoint::v4` does):
    // built from single bytes, the compiler kept a pointer per byte across the
    // branches and copied 32 bytes one at a time (callgrind, 200k synth replay).
    let (src, dst, v4, ttl, ip_id, ip_payload_wire, l4) = match ethertype {
        ETHERTYPE_IPV4 => {
            let h = ip.first_chunk::<20>()?;
            if h[0] >> 4 != 4 || h[9] != 6 {
                return None;
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let mut total = usize::from(be16(h, 2));
            // A total length of 0: the capturing host's NIC segments (TSO) and the
            // kernel leaves it unset; the frame's own length tells.
            if total == 0 {
                total = (wire_len as usize).saturating_sub(at);
            }
            // Fragments (MF set or an offset) and odd lengths go the slow way.
            if ihl < 20 || ip.len() < ihl || total < ihl || be16(h, 6) & 0x3fff != 0 {
                return None;
            }
            let mut s = V4_MAPPED;
            let mut d = V4_MAPPED;
            s[12..].copy_from_slice(&h[12..16]);
            d[12..].copy_from_slice(&h[16..20]);
            (s, d, true, h[8], Some(be16(h, 4)), total - ihl, at + ihl)
        }
        ETHERTYPE_IPV6 => {
            let h = ip.first_chunk::<40>()?;
            if h[0] >> 4 != 6 || h[6] != 6 {
                return None;
            }
            let mut payload = usize::from(be16(h, 4));
            if payload == 0 {
                // TSO as above (or a jumbogram, whose real length is in a hop-by-hop
                // option: then the next header is not TCP and we are not here).
                payload = (wire_len as usize).saturating_sub(at + 40);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            d.copy_from_slice(&h[24..40]);
            (s, d, false, h[7], None, payload, at + 40)
        }
        _ => return None,
    };
    // The IP payload as captured: up to the IP length (Ethernet pads short frames),
    // or less when the snap length cut the frame.
    let l4_end = frame.len().min(l4 + ip_payload_wire);
    let tcp = frame.get(l4..l4_end)?;
    let th = tcp.first_chunk::<20>()?;
    let doff = usize::from(th[12] >> 4) * 4;
    let cap_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    if doff < 20 || ip_payload_wire < doff {
        return None;
    }
    // The snap length cut the options: follow the segment with what was captured
    // (sequence numbers and flags are in the first 20 bytes). The slow path cannot.
    let options_cut = tcp.len() < doff;
    if options_cut && wire_len <= cap_len {
        return None;
    }
    let doff_captured = doff.min(tcp.len());
    let payload_len = ip_payload_wire - doff;
    let payload_captured = tcp.len() - doff_captured;
    Some(Packet {
        src: Endpoint {
            addr: src,
            port: be16(th, 0),
            v4,
        },
        dst: Endpoint {
            addr: dst,
            port: be16(th, 2),
            v4,
        },
        seq: be32(th, 4),
        ack: be32(th, 8),
        flags: TcpFlags(th[13]),
        window: be16(th, 14),
        ttl,
        ip_id,
        vlan,
        payload_len: payload_len as u32,
        payload_offset: (l4 + doff_captured) as u32,
        payload_captured: payload_captured as u32,
        wire_len: wire_len.max(cap_len),
        snaplen_cut: wire_len > cap_len,
        options: if doff > 20 {
            TcpOptions {
                truncated: options_cut,
                ..read_options(&tcp[20..doff_captured])
            }
        } else {
            TcpOptions::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet / IPv4 / TCP SYN from 198.18.0.2:51234 to 198.18.1.2:443 with MSS,
    /// SACK permitted, timestamps, NOP and window scale 7, as Linux sends it.
    pub(crate) const ETH_IPV4_SYN: &[u8] = &[
        // ethernet: dst, src, type
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,
        // ipv4: ver/ihl, tos, total len 60, id 0x1234, DF, ttl 64, proto 6, csum
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 198, 18, 0, 2, 198,
        18, 1, 2,
        // tcp: ports, seq, ack, offset 10 words, flags SYN, window 64240, csum, urg
        0xc8, 0x22, 0x01, 0xbb, 0x00, 0x00, 0x03, 0xe8, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0,
        0, // options: MSS 1460, SACK-permitted, TS 1/0, NOP, WS 7
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 0, 0x01, 0x03, 0x03,
        0x07,
    ];

    #[test]
    fn test_decode_ethernet_ipv4_syn() {
        let p = decode(LinkType::Ethernet, ETH_IPV4_SYN, ETH_IPV4_SYN.len() as u32).unwrap();
        assert_eq!(p.src, Endpoint::v4([198, 18, 0, 2], 51234));
        assert_eq!(p.dst, Endpoint::v4([198, 18, 1, 2], 443));
        assert_eq!(p.seq, 1000);
        assert!(p.flags.syn() && !p.flags.ack());
        assert_eq!(p.ttl, 64);
        assert_eq!(p.ip_id, Some(0x1234));
        assert_eq!(p.payload_len, 0);
        assert_eq!(p.options.mss, 1460);
        assert_eq!(p.options.wscale, Some(7));
        assert!(p.options.sack_permitted);
        assert_eq!(p.options.timestamps, Some((1, 0)));
        assert!(!p.snaplen_cut);
    }

    #[test]
    fn test_decode_ipv4_options() {
        // IHL 6: one 4-byte option word (NOP NOP NOP EOL) before the TCP header.
        let mut f = ETH_IPV4_SYN[..34].to_vec();
        f[14] = 0x46;
        f[16..18].copy_from_slice(&64u16.to_be_bytes());
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&ETH_IPV4_SYN[34..]);
        let p = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!((p.dst.port, p.seq, p.payload_len), (443, 1000, 0));
        assert_eq!(p.options.mss, 1460);
        assert_eq!(decode_slow(LinkType::Ethernet, &f, f.len() as u32), Ok(p));
    }

    #[test]
    fn test_decode_ethernet_padding_and_tso_length() {
        // A 54-byte ACK padded to the 60-byte Ethernet minimum: padding is not payload.
        let mut f = ETH_IPV4_SYN[..34].to_vec();
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f.extend_from_slice(&ETH_IPV4_SYN[34..46]);
        f.extend_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&[0; 6]);
        let p = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!((p.payload_len, p.payload_captured), (0, 0));
        assert_eq!(decode_slow(LinkType::Ethernet, &f, f.len() as u32), Ok(p));
    }

    #[test]
    fn test_decode_tso_zero_length_with_snaplen_cut() {
        // A 10,000-byte TSO segment captured on the sender: IPv4 total length 0,
        // frame cut after the TCP header.
        let mut f = ETH_IPV4_SYN.to_vec();
        f[16..18].copy_from_slice(&[0, 0]);
        f[47] = 0x10; // ACK, not SYN
        let wire = (f.len() + 10_000) as u32;
        let p = decode(LinkType::Ethernet, &f, wire).unwrap();
        assert_eq!(p.payload_len, 10_000);
        assert!(p.snaplen_cut);
        assert_eq!(
            decode_slow(LinkType::Ethernet, &f, wire).map(|p| p.payload_len),
            Ok(10_000)
        );
    }

    #[test]
    fn test_decode_cut_inside_tcp_options() {
        // Cut after 6 of the SYN's 20 option bytes: still a SYN with its numbers.
        let f = &ETH_IPV4_SYN[..60];
        let p = decode(LinkType::Ethernet, f, 74).unwrap();
        assert!(p.flags.syn());
        assert_eq!(p.seq, 1000);
        assert_eq!(p.options.mss, 1460, "the MSS option was captured");
        assert!(p.options.truncated);
        assert_eq!((p.payload_len, p.payload_captured), (0, 0));
        // Not cut by the snap length but shorter than its header: skipped.
        assert_eq!(decode(LinkType::Ethernet, f, 60), Err(Skip::TruncatedTcp));
    }

    #[test]
    fn test_decode_vlan_qinq() {
        let mut f = ETH_IPV4_SYN[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a]);
        f.extend_from_slice(&ETH_IPV4_SYN[12..]);
        let p = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!(p.vlan, Some(100));
        assert_eq!(p.dst.port, 443);
    }

    #[test]
    fn test_decode_sll_and_sll2() {
        let ip = &ETH_IPV4_SYN[14..];
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll, &sll, sll.len() as u32)
                .unwrap()
                .seq,
            1000
        );
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2, sll2.len() as u32)
                .unwrap()
                .seq,
            1000
        );
        assert_eq!(
            decode(LinkType::Raw, ip, ip.len() as u32).unwrap().seq,
            1000
        );
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(ip);
        assert_eq!(
            decode(LinkType::Null, &null, null.len() as u32)
                .unwrap()
                .seq,
            1000
        );
    }

    #[test]
    fn test_decode_ipv6_with_hop_by_hop() {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
        // ipv6: payload 8 (hbh) + 20 (tcp), next header 0 (hop-by-hop), hop limit 57
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 28, 0, 57]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // hop-by-hop: next header 6, len 0, PadN 4
        f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&[
            0x01, 0xbb, 0xc8, 0x22, 0, 0, 0, 5, 0, 0, 0x03, 0xe9, 0x50, 0x12, 0xff, 0xff, 0, 0, 0,
            0,
        ]);
        let p = decode(LinkType::Ethernet, &f, f.len() as u32).unwrap();
        assert_eq!(p.ttl, 57);
        assert_eq!(p.ip_id, None);
        assert_eq!(p.src.ip().to_string(), "2001:db8::1");
        assert!(p.flags.syn() && p.flags.ack());
        assert_eq!(p.ack, 1001);
    }

    #[test]
    fn test_decode_snaplen_cut_keeps_wire_length() {
        // Same SYN header, but claim 1000 bytes of payload on the wire and cut the
        // frame right after the TCP header.
        let mut f = ETH_IPV4_SYN.to_vec();
        let total = (60u16 + 1000).to_be_bytes();
        f[16] = total[0];
        f[17] = total[1];
        let p = decode(LinkType::Ethernet, &f, (f.len() + 1000) as u32).unwrap();
        assert!(p.snaplen_cut);
        assert_eq!(p.payload_len, 1000);
        assert_eq!(p.payload_captured, 0);
    }

    #[test]
    fn test_decode_truncated_and_skipped() {
        assert_eq!(
            decode(LinkType::Ethernet, &ETH_IPV4_SYN[..10], 74),
            Err(Skip::TruncatedLink)
        );
        assert_eq!(
            decode(LinkType::Ethernet, &ETH_IPV4_SYN[..20], 74),
            Err(Skip::TruncatedIp)
        );
        assert_eq!(
            decode(LinkType::Ethernet, &ETH_IPV4_SYN[..40], 74),
            Err(Skip::TruncatedTcp)
        );
        let mut arp = ETH_IPV4_SYN.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(decode(LinkType::Ethernet, &arp, 74), Err(Skip::Arp));
        let mut udp = ETH_IPV4_SYN.to_vec();
        udp[23] = 17;
        assert_eq!(decode(LinkType::Ethernet, &udp, 74), Err(Skip::Udp));
        let mut frag = ETH_IPV4_SYN.to_vec();
        frag[20] = 0x20; // more fragments
        assert_eq!(decode(LinkType::Ethernet, &frag, 74), Err(Skip::IpFragment));
        let mut bad = ETH_IPV4_SYN.to_vec();
        bad[14] = 0x43; // IHL 3
        assert_eq!(decode(LinkType::Ethernet, &bad, 74), Err(Skip::MalformedIp));
        assert_eq!(
            decode(LinkType::Unsupported(147), ETH_IPV4_SYN, 74),
            Err(Skip::LinkTypeUnsupported)
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes, any link type: a Packet or a Skip, never a panic; and a packet's
        /// payload always lies inside the frame.
        #[test]
        fn decode_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200), link in 0u32..300, extra in 0u32..3000) {
            let wire_len = frame.len() as u32 + extra;
            if let Ok(p) = decode(LinkType::from_linktype(link), &frame, wire_len) {
                prop_assert!((p.payload_offset + p.payload_captured) as usize <= frame.len());
                prop_assert!(p.payload_captured <= p.payload_len);
            }
        }

        /// Mutations of a valid SYN: never a panic.
        #[test]
        fn decode_mutated_syn(pos in 0usize..74, byte in any::<u8>(), cut in 0usize..75) {
            let mut f = tests::ETH_IPV4_SYN.to_vec();
            f[pos] = byte;
            f.truncate(cut);
            let _ = decode(LinkType::Ethernet, &f, 74);
        }
    }
}

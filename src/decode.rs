//! A captured frame to a TCP segment; stateless.
//!
//! Contract: [`decode`] reads the link header (Ethernet with any 802.1Q/QinQ tags, Linux cooked
//! SLL and SLL2, BSD loopback/NULL, raw IPv4/IPv6), IPv4 or IPv6 (extension headers included)
//! and the TCP header, and returns a [`Segment`] borrowing the payload. Frames cut by the snaplen
//! still yield the captured payload with `wire_len` telling how long it really was. Anything else
//! is a [`Skip`] reason, for counting. Nothing after decode looks at raw headers.

use crate::flow::seq::SeqNumber;
use crate::link::{Framing, LinkType};
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::{IpAddr, SocketAddr};

/// What later stages need of a TCP segment.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: SeqNumber,
    /// The acknowledgment number, when the ACK flag is set.
    pub ack: Option<SeqNumber>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// Captured payload.
    pub payload: &'a [u8],
    /// Payload length on the wire; more than `payload.len()` when the capture cut the frame.
    pub wire_len: u32,
}

impl Segment<'_> {
    /// True when the snaplen cut part of the payload.
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u32) < self.wire_len
    }
}

/// Why a frame yields no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Skip {
    #[error("unsupported link type {0}")]
    UnsupportedLink(u32),
    #[error("not IPv4 or IPv6")]
    NotIp,
    #[error("not TCP")]
    NotTcp,
    #[error("IP fragment")]
    Fragment,
    #[error("cut before the end of the TCP header")]
    Truncated,
}

impl Skip {
    /// The reason's name in reports (`capture.skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLink(_) => "unsupported_link",
            Skip::NotIp => "not_ip",
            Skip::NotTcp => "not_tcp",
            Skip::Fragment => "ip_fragment",
            Skip::Truncated => "truncated_headers",
        }
    }
}

/// Decodes one frame.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let sliced = match link.framing().ok_or(Skip::UnsupportedLink(link.0))? {
        Framing::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Truncated)?,
        Framing::Loopback => {
            LaxSlicedPacket::from_ip(frame.get(4..).ok_or(Skip::Truncated)?).map_err(|_| Skip::NotIp)?
        }
        Framing::RawIp => LaxSlicedPacket::from_ip(frame).map_err(|_| Skip::NotIp)?,
        Framing::LinuxSll => from_ether_type(frame, 14, 16)?,
        Framing::LinuxSll2 => from_ether_type(frame, 0, 20)?,
    };
    let (src_ip, dst_ip, ip_start, declared_ip_len, incomplete, fragmented): (
        IpAddr,
        IpAddr,
        *const u8,
        usize,
        bool,
        bool,
    ) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let p = ip.payload();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.slice().as_ptr(),
                usize::from(h.total_len()),
                p.incomplete,
                p.fragmented,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let p = ip.payload();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                h.slice().as_ptr(),
                40 + usize::from(h.payload_length()),
                p.incomplete,
                p.fragmented,
            )
        }
        _ => return Err(Skip::NotIp),
    };
    if fragmented {
        return Err(Skip::Fragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(_) => return Err(Skip::NotTcp),
        None if incomplete || sliced.stop_err.is_some() => return Err(Skip::Truncated),
        None => return Err(Skip::NotTcp),
    };
    let payload = tcp.payload();
    let wire_len = if incomplete {
        // Offset of the TCP payload from the start of the IP header, both in the same frame.
        let payload_offset = payload.as_ptr() as usize - ip_start as usize;
        declared_ip_len.saturating_sub(payload_offset).max(payload.len())
    } else {
        payload.len()
    };
    Ok(Segment {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: SeqNumber(tcp.sequence_number()),
        ack: tcp.ack().then(|| SeqNumber(tcp.acknowledgment_number())),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload,
        wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    })
}

fn from_ether_type(frame: &[u8], proto_at: usize, header_len: usize) -> Result<LaxSlicedPacket<'_>, Skip> {
    let proto = frame.get(proto_at..proto_at + 2).ok_or(Skip::Truncated)?;
    let rest = frame.get(header_len..).ok_or(Skip::Truncated)?;
    Ok(LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(50000, 1883, 1000, 64240).ack(77).psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn raw_ipv4_tcp() {
        let frame = tcp_v4(b"\xc0\x00");
        let s = decode(LinkType::RAW, &frame).unwrap();
        assert_eq!(s.src, "10.0.0.1:50000".parse().unwrap());
        assert_eq!(s.dst, "10.0.0.2:1883".parse().unwrap());
        assert_eq!((s.seq, s.ack), (SeqNumber(1000), Some(SeqNumber(77))));
        assert_eq!((s.payload, s.wire_len, s.truncated()), (&b"\xc0\x00"[..], 2, false));
    }

    #[test]
    fn ethernet_with_two_vlan_tags() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(10.try_into().unwrap(), 20.try_into().unwrap())
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1883, 40000, 5, 100)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        let s = decode(LinkType::ETHERNET, &v).unwrap();
        assert!(s.syn && s.src.port() == 1883 && s.src.is_ipv6());
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let ip = tcp_v4(b"xy");
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::LINUX_SLL, &sll).unwrap().payload, b"xy");
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.extend_from_slice(&ip);
        assert_eq!(decode(LinkType::LINUX_SLL2, &sll2).unwrap().payload, b"xy");
    }

    #[test]
    fn bsd_loopback() {
        let mut frame = 2u32.to_le_bytes().to_vec(); // AF_INET, host order
        frame.extend_from_slice(&tcp_v4(b"z"));
        assert_eq!(decode(LinkType::NULL, &frame).unwrap().payload, b"z");
    }

    #[test]
    fn snaplen_cut_payload_keeps_its_wire_length() {
        let frame = tcp_v4(&[0x30; 100]);
        let cut = &frame[..frame.len() - 60];
        let s = decode(LinkType::RAW, cut).unwrap();
        assert_eq!((s.payload.len(), s.wire_len), (40, 100));
        assert!(s.truncated());
        assert_eq!(decode(LinkType::RAW, &frame[..30]).unwrap_err(), Skip::Truncated);
    }

    #[test]
    fn other_traffic_is_skipped_with_a_reason() {
        let udp = {
            let mut v = Vec::new();
            PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9).udp(1, 2).write(&mut v, b"u").unwrap();
            v
        };
        assert_eq!(decode(LinkType::RAW, &udp).unwrap_err(), Skip::NotTcp);
        assert_eq!(decode(LinkType(189), &udp).unwrap_err(), Skip::UnsupportedLink(189));
        assert_eq!(decode(LinkType::RAW, b"\x00\x01").unwrap_err(), Skip::NotIp);
    }
}

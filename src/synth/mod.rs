//! Synthetic captures: MQTT over TCP built packet by packet, written as pcap or pcapng.
//!
//! For what a real broker will not do on demand (reordering, loss, wraparound, VLAN tags,
//! garbage, huge lengths), in tests, benchmarks and fuzzing. Frames are built with etherparse's
//! `PacketBuilder`. The file writers are a few lines each (fixed headers of the pcap and pcapng
//! formats) rather than a dependency, since the library must not pull test-only crates.

pub mod workload;

use crate::flow::Side;
use crate::link::LinkType;
use crate::time::Timestamp;
use etherparse::PacketBuilder;
use std::net::{IpAddr, SocketAddr};

/// How frames are wrapped below IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan(u16),
    /// Ethernet with two tags (QinQ).
    QinQ(u16, u16),
    RawIp,
    LinuxSll,
    LinuxSll2,
    Null,
}

impl Encap {
    /// The pcap link type of this encapsulation.
    pub fn link_type(self) -> LinkType {
        match self {
            Encap::Ethernet | Encap::Vlan(_) | Encap::QinQ(..) => LinkType::ETHERNET,
            Encap::RawIp => LinkType::RAW,
            Encap::LinuxSll => LinkType::LINUX_SLL,
            Encap::LinuxSll2 => LinkType::LINUX_SLL2,
            Encap::Null => LinkType::NULL,
        }
    }
}

/// TCP flags of a synthetic segment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// A list of timestamped frames.
#[derive(Clone, Debug)]
pub struct Capture {
    pub encap: Encap,
    pub frames: Vec<(Timestamp, Vec<u8>)>,
    /// Cut every frame to this many bytes (0: no cut).
    pub snaplen: usize,
}

impl Capture {
    pub fn new(encap: Encap) -> Self {
        Capture { encap, frames: Vec::new(), snaplen: 0 }
    }

    /// Appends one TCP segment.
    #[allow(clippy::too_many_arguments)] // one argument per header field
    pub fn segment(
        &mut self,
        ts: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: Flags,
        payload: &[u8],
    ) {
        let frame = build_frame(self.encap, src, dst, seq, ack, flags, payload);
        self.frames.push((ts, frame));
    }

    /// Appends an arbitrary frame.
    pub fn raw(&mut self, ts: Timestamp, frame: Vec<u8>) {
        self.frames.push((ts, frame));
    }

    /// Sorts frames by time (stable: equal times keep insertion order).
    pub fn sort(&mut self) {
        self.frames.sort_by_key(|(ts, _)| *ts);
    }

    /// The capture as a classic pcap file (microsecond timestamps).
    pub fn to_pcap(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.frames.iter().map(|(_, f)| f.len() + 16).sum::<usize>());
        write_pcap_header(&mut out, self.encap.link_type(), self.snap());
        for (ts, frame) in &self.frames {
            write_pcap_record(&mut out, *ts, frame, self.snap());
        }
        out
    }

    /// The capture as a pcapng file: one section, one interface with nanosecond timestamps.
    pub fn to_pcapng(&self) -> Vec<u8> {
        let mut out = Vec::new();
        pcapng_section_header(&mut out);
        pcapng_interface(&mut out, self.encap.link_type(), 9);
        for (ts, frame) in &self.frames {
            pcapng_packet(&mut out, 0, *ts, frame, self.snap(), 9);
        }
        out
    }

    fn snap(&self) -> usize {
        if self.snaplen == 0 { usize::MAX } else { self.snaplen }
    }
}

/// Builds one frame carrying a TCP segment.
pub fn build_frame(
    encap: Encap,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 80);
    let (mac_a, mac_b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ether_type: u16 = if src.is_ipv4() { 0x0800 } else { 0x86dd };
    // Link headers etherparse does not build are written here.
    match encap {
        Encap::LinuxSll => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        Encap::LinuxSll2 => {
            out.extend_from_slice(&ether_type.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        Encap::Null => out.extend_from_slice(&(if src.is_ipv4() { 2u32 } else { 30 }).to_le_bytes()),
        Encap::Ethernet | Encap::Vlan(_) | Encap::QinQ(..) | Encap::RawIp => {}
    }
    let vlan = |id: u16| id.try_into().expect("VLAN id below 4096");
    let step = match encap {
        Encap::Ethernet => ip_layer(PacketBuilder::ethernet2(mac_a, mac_b), src, dst),
        Encap::Vlan(id) => ip_layer(PacketBuilder::ethernet2(mac_a, mac_b).single_vlan(vlan(id)), src, dst),
        Encap::QinQ(outer, inner) => {
            ip_layer(PacketBuilder::ethernet2(mac_a, mac_b).double_vlan(vlan(outer), vlan(inner)), src, dst)
        }
        Encap::RawIp | Encap::LinuxSll | Encap::LinuxSll2 | Encap::Null => match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed address families"),
        },
    };
    let mut tcp = step.tcp(src.port(), dst.port(), seq, 65535);
    if flags.syn {
        tcp = tcp.syn();
    }
    if flags.ack {
        tcp = tcp.ack(ack);
    }
    if flags.fin {
        tcp = tcp.fin();
    }
    if flags.rst {
        tcp = tcp.rst();
    }
    if !payload.is_empty() {
        tcp = tcp.psh();
    }
    tcp.write(&mut out, payload).expect("writing to a Vec cannot fail");
    out
}

fn ip_layer<T>(
    b: etherparse::PacketBuilderStep<T>,
    src: SocketAddr,
    dst: SocketAddr,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders>
where
    etherparse::PacketBuilderStep<T>: IpStep,
{
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.v4(s.octets(), d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.v6(s.octets(), d.octets()),
        _ => panic!("mixed address families"),
    }
}

/// The IP step of etherparse's builder, for both Ethernet and VLAN builders.
pub trait IpStep {
    fn v4(self, s: [u8; 4], d: [u8; 4]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders>;
    fn v6(self, s: [u8; 16], d: [u8; 16]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders>;
}

impl IpStep for etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    fn v4(self, s: [u8; 4], d: [u8; 4]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        self.ipv4(s, d, 64)
    }
    fn v6(self, s: [u8; 16], d: [u8; 16]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        self.ipv6(s, d, 64)
    }
}

impl IpStep for etherparse::PacketBuilderStep<etherparse::VlanHeader> {
    fn v4(self, s: [u8; 4], d: [u8; 4]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        self.ipv4(s, d, 64)
    }
    fn v6(self, s: [u8; 16], d: [u8; 16]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        self.ipv6(s, d, 64)
    }
}

/// Writes a classic pcap file header (microsecond, little-endian).
pub fn write_pcap_header(out: &mut Vec<u8>, link: LinkType, snaplen: usize) {
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(snaplen.min(262_144) as u32).to_le_bytes());
    out.extend_from_slice(&link.0.to_le_bytes());
}

/// Writes one classic pcap record, cut to `snaplen`.
pub fn write_pcap_record(out: &mut Vec<u8>, ts: Timestamp, frame: &[u8], snaplen: usize) {
    let nanos = ts.as_nanos().max(0);
    let caplen = frame.len().min(snaplen);
    out.extend_from_slice(&((nanos / 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(((nanos % 1_000_000_000) / 1000) as u32).to_le_bytes());
    out.extend_from_slice(&(caplen as u32).to_le_bytes());
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(&frame[..caplen]);
}

fn pcapng_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend_from_slice(&total.to_le_bytes());
}

/// Writes a pcapng section header block.
pub fn pcapng_section_header(out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    pcapng_block(out, 0x0a0d_0d0a, &body);
}

/// Writes a pcapng interface description block with `if_tsresol` = 10^-`tsresol`.
pub fn pcapng_interface(out: &mut Vec<u8>, link: LinkType, tsresol: u8) {
    let mut body = Vec::new();
    body.extend_from_slice(&(link.0 as u16).to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // Option if_tsresol (9), length 1, padded; then opt_endofopt.
    body.extend_from_slice(&9u16.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&[tsresol, 0, 0, 0]);
    body.extend_from_slice(&[0, 0, 0, 0]);
    pcapng_block(out, 1, &body);
}

/// Writes a pcapng enhanced packet block on interface `if_id` (timestamps in 10^-`tsresol` s).
pub fn pcapng_packet(out: &mut Vec<u8>, if_id: u32, ts: Timestamp, frame: &[u8], snaplen: usize, tsresol: u8) {
    let units = 10u128.pow(u32::from(tsresol));
    let raw = (ts.as_nanos().max(0) as u128 * units / 1_000_000_000) as u64;
    let caplen = frame.len().min(snaplen);
    let mut body = Vec::with_capacity(20 + caplen);
    body.extend_from_slice(&if_id.to_le_bytes());
    body.extend_from_slice(&((raw >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(raw as u32).to_le_bytes());
    body.extend_from_slice(&(caplen as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(&frame[..caplen]);
    pcapng_block(out, 6, &body);
}

/// Writes a pcapng block of a type nobody knows (readers must skip it).
pub fn pcapng_unknown_block(out: &mut Vec<u8>) {
    pcapng_block(out, 0x0bad_0bad, b"unknown block body");
}

/// One scripted TCP connection between a client and a broker, keeping both sequence numbers.
#[derive(Clone, Debug)]
pub struct Conn {
    pub client: SocketAddr,
    pub broker: SocketAddr,
    /// Next sequence number each side sends.
    pub client_seq: u32,
    pub broker_seq: u32,
}

impl Conn {
    pub fn new(client: SocketAddr, broker: SocketAddr, client_isn: u32, broker_isn: u32) -> Self {
        Conn { client, broker, client_seq: client_isn, broker_seq: broker_isn }
    }

    fn ends(&self, from: Side) -> (SocketAddr, SocketAddr, u32, u32) {
        match from {
            Side::Client => (self.client, self.broker, self.client_seq, self.broker_seq),
            Side::Broker => (self.broker, self.client, self.broker_seq, self.client_seq),
        }
    }

    fn advance(&mut self, from: Side, n: u32) {
        match from {
            Side::Client => self.client_seq = self.client_seq.wrapping_add(n),
            Side::Broker => self.broker_seq = self.broker_seq.wrapping_add(n),
        }
    }

    /// SYN, SYN-ACK, ACK at `ts`.
    pub fn handshake(&mut self, cap: &mut Capture, ts: Timestamp) {
        let (c, b) = (self.client, self.broker);
        cap.segment(ts, c, b, self.client_seq, 0, Flags { syn: true, ..Default::default() }, &[]);
        self.advance(Side::Client, 1);
        cap.segment(
            ts,
            b,
            c,
            self.broker_seq,
            self.client_seq,
            Flags { syn: true, ack: true, ..Default::default() },
            &[],
        );
        self.advance(Side::Broker, 1);
        cap.segment(ts, c, b, self.client_seq, self.broker_seq, Flags { ack: true, ..Default::default() }, &[]);
    }

    /// `from` sends `payload` in one segment (with ACK); returns its sequence number.
    pub fn send(&mut self, cap: &mut Capture, ts: Timestamp, from: Side, payload: &[u8]) -> u32 {
        let (src, dst, seq, ack) = self.ends(from);
        cap.segment(ts, src, dst, seq, ack, Flags { ack: true, ..Default::default() }, payload);
        self.advance(from, payload.len() as u32);
        seq
    }

    /// The frame `send` would produce, without recording it or advancing (for reordering tests).
    pub fn frame_at(&self, encap: Encap, from: Side, seq: u32, payload: &[u8]) -> Vec<u8> {
        let (src, dst, _, ack) = self.ends(from);
        build_frame(encap, src, dst, seq, ack, Flags { ack: true, ..Default::default() }, payload)
    }

    /// `from` sends FIN (with ACK).
    pub fn fin(&mut self, cap: &mut Capture, ts: Timestamp, from: Side) {
        let (src, dst, seq, ack) = self.ends(from);
        cap.segment(ts, src, dst, seq, ack, Flags { fin: true, ack: true, ..Default::default() }, &[]);
        self.advance(from, 1);
    }

    /// `from` sends RST.
    pub fn rst(&mut self, cap: &mut Capture, ts: Timestamp, from: Side) {
        let (src, dst, seq, _) = self.ends(from);
        cap.segment(ts, src, dst, seq, 0, Flags { rst: true, ..Default::default() }, &[]);
    }

    /// A pure ACK from `from`.
    pub fn ack(&mut self, cap: &mut Capture, ts: Timestamp, from: Side) {
        let (src, dst, seq, ack) = self.ends(from);
        cap.segment(ts, src, dst, seq, ack, Flags { ack: true, ..Default::default() }, &[]);
    }
}

/// MQTT packet bytes.
pub mod mqtt {
    use crate::mqtt::header::encode_remaining_length as varint;

    fn string(s: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// A packet from its first byte and body.
    pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        varint(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    /// CONNECT for protocol level 3 (3.1), 4 (3.1.1) or 5.
    pub fn connect(
        level: u8,
        keepalive: u16,
        client_id: &str,
        will: bool,
        credentials: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        string(if level == 3 { b"MQIsdp" } else { b"MQTT" }, &mut body);
        let mut flags = 0x02;
        if will {
            flags |= 0x04;
        }
        if credentials.is_some() {
            flags |= 0xc0;
        }
        body.push(level);
        body.push(flags);
        body.extend_from_slice(&keepalive.to_be_bytes());
        if level == 5 {
            body.push(0);
        }
        string(client_id.as_bytes(), &mut body);
        if will {
            if level == 5 {
                body.push(0);
            }
            string(b"will/topic", &mut body);
            string(b"offline", &mut body);
        }
        if let Some((user, pass)) = credentials {
            string(user.as_bytes(), &mut body);
            string(pass.as_bytes(), &mut body);
        }
        packet(0x10, &body)
    }

    /// CONNACK; with `server_keepalive`, in MQTT 5 form.
    pub fn connack(code: u8, server_keepalive: Option<u16>) -> Vec<u8> {
        match server_keepalive {
            None => packet(0x20, &[0, code]),
            Some(k) => {
                let [hi, lo] = k.to_be_bytes();
                packet(0x20, &[0, code, 3, 0x13, hi, lo])
            }
        }
    }

    pub fn pingreq() -> Vec<u8> {
        vec![0xc0, 0x00]
    }

    pub fn pingresp() -> Vec<u8> {
        vec![0xd0, 0x00]
    }

    /// PUBLISH QoS 0.
    pub fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        string(topic.as_bytes(), &mut body);
        body.extend_from_slice(payload);
        packet(0x30, &body)
    }

    /// DISCONNECT; with a reason code in MQTT 5 form.
    pub fn disconnect(reason: Option<u8>) -> Vec<u8> {
        match reason {
            None => vec![0xe0, 0x00],
            Some(r) => vec![0xe0, 0x01, r],
        }
    }
}

//! Idle connections at rest, in a compact form: what lets a million open sessions fit in a few
//! hundred megabytes.
//!
//! Contract: [`Conn::park`] gives the [`Parked`] form of a connection at rest (open, not
//! closing, holding no bytes, no transport layers (MQTT over TCP, or not decided yet), both
//! decoders at a packet boundary) or `None`;
//! [`Parked::unpark_into`] gives back the same connection. Nothing but memory changes: the
//! reassemblers and decoders shrink to their sequence numbers and framing state, the client
//! address to 4 bytes (IPv4) or a slot in a side table (IPv6), the broker address to a number.

use super::conn::Conn;
use crate::flow::FlowKey;
use crate::flow::reassembly::ReasmRest;
use crate::flow::seq::SeqNumber;
use crate::layer::{Stack, Transport};
use crate::mqtt::stream::DecoderRest;
use crate::session::record::RecordState;
use crate::session::{Session, SessionId};
use crate::time::Timestamp;
use foldhash::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Addresses of parked connections kept out of line: broker addresses, numbered (few, shared
/// by many connections), and IPv6 client addresses (one slot per parked IPv6 connection, so an
/// IPv4 client costs 4 bytes, not 16).
#[derive(Default)]
pub(super) struct Addresses {
    brokers: Vec<SocketAddr>,
    numbers: HashMap<SocketAddr, u32>,
    v6: Vec<Ipv6Addr>,
    v6_free: Vec<u32>,
}

impl Addresses {
    pub(super) fn number(&mut self, addr: SocketAddr) -> Option<u32> {
        if let Some(n) = self.numbers.get(&addr) {
            return Some(*n);
        }
        let n = u32::try_from(self.brokers.len()).ok()?;
        self.brokers.push(addr);
        self.numbers.insert(addr, n);
        Some(n)
    }

    fn store_v6(&mut self, ip: Ipv6Addr) -> Option<u32> {
        if let Some(n) = self.v6_free.pop() {
            self.v6[n as usize] = ip;
            return Some(n);
        }
        let n = u32::try_from(self.v6.len()).ok()?;
        self.v6.push(ip);
        Some(n)
    }

    fn free_v6(&mut self, n: u32) {
        self.v6_free.push(n);
    }
}

/// Bits of [`Parked::bits`].
pub(super) mod bit {
    pub const CLIENT_V4: u16 = 1;
    pub const HAS_ISN: u16 = 1 << 1;
    pub const MID_STREAM: u16 = 1 << 2;
    pub const SAW_PAYLOAD: u16 = 1 << 3;
    pub const SAW_MQTT: u16 = 1 << 4;
    pub const SCHEDULED: u16 = 1 << 5;
    /// Per direction (client, then broker at `<< 2`): the next and the acknowledged sequence
    /// numbers are known.
    pub const HAS_NEXT: u16 = 1 << 6;
    pub const HAS_ACKED: u16 = 1 << 7;
    // (1 << 8 and 1 << 9: the broker's HAS_NEXT and HAS_ACKED.)
    /// The first data decided the transport: MQTT over TCP (else not decided yet).
    pub const TCP: u16 = 1 << 10;
}

/// An idle connection at rest: open, not closing, holding no bytes, both decoders at a packet
/// boundary. Everything a [`Conn`] would hold is here, so waking it gives the same connection;
/// the reassemblers and decoders shrink to their sequence numbers and framing state, the client
/// address to 4 bytes (IPv4) or a slot in [`Addresses`] (IPv6), the broker address to a number
/// (broker numbers are never given back: there are as many as brokers seen).
pub(super) struct Parked {
    pub(super) session: Session,
    pub(super) record: RecordState,
    pub(super) last_seen: Timestamp,
    pub(super) scheduled: Timestamp,
    /// Session ids past `u32::MAX` are not parked.
    pub(super) id: u32,
    /// The IPv4 address, or the IPv6 address's number in [`Addresses`].
    pub(super) client_ip: u32,
    pub(super) broker: u32,
    pub(super) client_isn: u32,
    /// Next and acknowledged sequence numbers of the client's stream, then the broker's.
    pub(super) seqs: [u32; 4],
    pub(super) client_port: u16,
    pub(super) bits: u16,
    pub(super) decoders: [DecoderRest; 2],
}

impl Parked {
    pub(super) fn has(&self, b: u16) -> bool {
        self.bits & b != 0
    }

    pub(super) fn key(&self, addrs: &Addresses) -> FlowKey {
        let ip = if self.has(bit::CLIENT_V4) {
            IpAddr::V4(Ipv4Addr::from(self.client_ip))
        } else {
            IpAddr::V6(addrs.v6[self.client_ip as usize])
        };
        FlowKey { client: SocketAddr::new(ip, self.client_port), broker: addrs.brokers[self.broker as usize] }
    }

    pub(super) fn client_isn(&self) -> Option<SeqNumber> {
        self.has(bit::HAS_ISN).then_some(SeqNumber(self.client_isn))
    }

    fn reasm(&self, side: usize) -> ReasmRest {
        let seq = |i: usize, b: u16| self.has(b << (2 * side)).then_some(SeqNumber(self.seqs[2 * side + i]));
        ReasmRest { next: seq(0, bit::HAS_NEXT), peer_acked: seq(1, bit::HAS_ACKED) }
    }

    /// Fills `conn` (any previous contents are replaced; its buffers are kept for reuse).
    pub(super) fn unpark_into(&mut self, conn: &mut Conn, addrs: &mut Addresses) {
        conn.key = self.key(addrs);
        if !self.has(bit::CLIENT_V4) {
            addrs.free_v6(self.client_ip);
        }
        conn.id = SessionId::from(self.id);
        conn.session = self.session.clone();
        conn.record = std::mem::replace(&mut self.record, RecordState::new(self.last_seen, false));
        conn.reasm.client.restore(self.reasm(0));
        conn.reasm.broker.restore(self.reasm(1));
        // Only connections without layers are parked (see `Conn::park`): MQTT over TCP, or
        // not decided yet.
        (conn.transport, conn.stack) = match (self.has(bit::TCP), self.has(bit::MID_STREAM)) {
            (true, _) => (Transport::Tcp, Stack::Plain),
            (false, false) => (Transport::Unknown, Stack::Detect),
            (false, true) => (Transport::Unknown, Stack::DetectMidStream),
        };
        conn.decoders.client.restore(self.decoders[0]);
        conn.decoders.broker.restore(self.decoders[1]);
        conn.client_isn = self.client_isn();
        conn.last_seen = self.last_seen;
        conn.mid_stream = self.has(bit::MID_STREAM);
        conn.saw_payload = self.has(bit::SAW_PAYLOAD);
        conn.saw_mqtt = self.has(bit::SAW_MQTT);
        (conn.fin_client, conn.fin_broker, conn.done) = (false, false, false);
        conn.scheduled = self.has(bit::SCHEDULED).then_some(self.scheduled);
        conn.accounted = 0;
    }
}

impl Conn {
    /// The parked form of this connection if it is at rest (its record moves there).
    pub(super) fn park(&mut self, addrs: &mut Addresses) -> Option<Parked> {
        if self.done
            || self.session.is_closed()
            || self.fin_client
            || self.fin_broker
            || self.accounted != 0
            || !self.stack.has_no_layers()
            // Undecided after losing its first bytes: not what the parked bits can say.
            || (matches!(self.stack, Stack::DetectMidStream) && !self.mid_stream)
        {
            return None;
        }
        let (client, broker) = (self.reasm.client.rest()?, self.reasm.broker.rest()?);
        let decoders = [self.decoders.client.rest()?, self.decoders.broker.rest()?];
        let id = u32::try_from(self.id).ok()?;
        if let SocketAddr::V6(a) = self.key.client
            && (a.flowinfo() != 0 || a.scope_id() != 0)
        {
            return None; // not representable; stays in full form
        }
        let broker_number = addrs.number(self.key.broker)?;
        let (client_ip, v4) = match self.key.client.ip() {
            IpAddr::V4(ip) => (u32::from(ip), true),
            IpAddr::V6(ip) => (addrs.store_v6(ip)?, false),
        };
        let mut bits = 0;
        let mut flag = |on: bool, b: u16| {
            if on {
                bits |= b;
            }
        };
        flag(v4, bit::CLIENT_V4);
        flag(self.client_isn.is_some(), bit::HAS_ISN);
        flag(self.mid_stream, bit::MID_STREAM);
        flag(self.saw_payload, bit::SAW_PAYLOAD);
        flag(self.saw_mqtt, bit::SAW_MQTT);
        flag(self.scheduled.is_some(), bit::SCHEDULED);
        flag(self.transport == Transport::Tcp, bit::TCP);
        let mut seqs = [0; 4];
        for (side, rest) in [client, broker].into_iter().enumerate() {
            for (i, (seq, b)) in [(rest.next, bit::HAS_NEXT), (rest.peer_acked, bit::HAS_ACKED)].into_iter().enumerate()
            {
                flag(seq.is_some(), b << (2 * side));
                seqs[2 * side + i] = seq.map_or(0, |s| s.0);
            }
        }
        let started = self.last_seen;
        Some(Parked {
            session: self.session.clone(),
            record: std::mem::replace(&mut self.record, RecordState::new(started, false)),
            id,
            last_seen: self.last_seen,
            scheduled: self.scheduled.unwrap_or(self.last_seen),
            client_ip,
            broker: broker_number,
            client_isn: self.client_isn.map_or(0, |s| s.0),
            seqs,
            client_port: self.key.client.port(),
            bits,
            decoders,
        })
    }
}

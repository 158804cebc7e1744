//! The connection table: per TCP connection to a broker port, two reassemblers, two MQTT stream
//! decoders, a [`Session`](crate::session::Session) and its report record
//! ([`RecordState`](crate::session::record::RecordState)); one deadline heap over all.
//!
//! Contract: feed segments in time order with [`Tracker::on_segment`] (or, from a source that
//! sees streams rather than packets, in-order bytes with [`Tracker::on_stream`] and TCP state
//! changes with [`Tracker::on_tcp`]); call [`Tracker::poll`]
//! with the current time to fire deadlines when no packet comes (live), and [`Tracker::finish`]
//! (or [`Tracker::start_finish`] and [`Tracker::finish_some`]) at the end of a capture.
//! [`Tracker::next_deadline`] says when polling next has work. Events accumulate in
//! [`Tracker::events`] in time order, and the records of MQTT sessions that ended in
//! [`Tracker::finished`]; the caller drains both.
//!
//! Scale: beyond `active_limit` connections in full form, a connection at rest (nothing held,
//! decoders at a packet boundary, not closing) is parked in a 200-byte form and woken, unchanged,
//! by its next packet or deadline; the index holds slot numbers and the heap 12-byte entries,
//! compacted rather than grown. A million open sessions fit in about 233 MiB. Memory is
//! bounded: at most `max_flows` connections (new ones beyond are refused and counted), at most
//! `max_buffered_per_flow` out-of-order bytes per direction and `max_buffered_total` bytes held
//! across all connections (past it, the connection that grew gives up its holes, counted); idle
//! and closed connections are evicted on the heap's schedule, not by scanning.
//!
//! Parts: `conn` (a connection in full form and what segments do to it), `parked` (the compact
//! form), `table` (slots and the index by flow key); this module is the policy: when
//! connections start, wake, park and end, and the deadline heap.

mod conn;
mod parked;
mod table;

use conn::Ctx;
use parked::bit;
use table::{Slot, Table};

use crate::decode::Segment;
use crate::flow::seq::SeqNumber;
use crate::flow::{FlowKey, PortSet, Side};
use crate::layer::{LayerConfig, Transport};
use crate::session::record::SessionRecord;
use crate::session::{Event, EventKind, SessionConfig, SessionId};
use crate::time::Timestamp;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Tracker settings.
#[derive(Clone)]
pub struct TrackerConfig {
    pub ports: PortSet,
    pub session: SessionConfig,
    /// What the transport layers need (the TLS key log).
    pub layers: LayerConfig,
    /// Most connections tracked at once.
    pub max_flows: usize,
    /// Most out-of-order bytes held per direction of a connection.
    pub max_buffered_per_flow: usize,
    /// Most bytes held across all connections (out-of-order segments, split headers, kept
    /// CONNECT prefixes, hunted bytes). Past it, the connection that grew gives up its holes
    /// and the bytes it holds while hunting for framing.
    pub max_buffered_total: usize,
    /// An open connection with traffic is evicted after this long without a packet (or three
    /// effective keepalives, whichever is longer).
    pub flow_timeout: Duration,
    /// A connection that never carried payload (handshake only, SYN flood) is evicted after this.
    pub handshake_timeout: Duration,
    /// A closed connection is kept this long to absorb retransmissions before it is dropped.
    pub linger: Duration,
    /// Connections kept in full form before idle ones are parked in a compact form (parking
    /// changes nothing but memory; 0 parks every connection at rest, as tests do).
    pub active_limit: usize,
    /// Fold each session's events into its record and hand finished records out through
    /// [`Tracker::finished`] (off where only events are wanted, as `analyze -f jsonl`).
    pub records: bool,
    /// The transport of every connection a stream source hands over (the eBPF source reads
    /// the plaintext inside TLS: `tls`); `None`: not reported.
    pub stream_transport: Option<Transport>,
    /// Session ids are `first`, `first + step`, `first + 2 step`, ...: several trackers in
    /// one agent (capture threads, the eBPF source) number their sessions apart.
    pub session_ids: SessionIds,
}

/// How a tracker numbers its sessions (see [`TrackerConfig::session_ids`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionIds {
    pub first: SessionId,
    pub step: SessionId,
}

impl Default for SessionIds {
    fn default() -> Self {
        SessionIds { first: 0, step: 1 }
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            ports: PortSet::new(&DEFAULT_PORTS),
            session: SessionConfig::default(),
            layers: LayerConfig::default(),
            max_flows: 1 << 21,
            max_buffered_per_flow: 256 * 1024,
            max_buffered_total: 256 << 20,
            flow_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(10),
            active_limit: ACTIVE_LIMIT,
            records: true,
            stream_transport: None,
            session_ids: SessionIds::default(),
        }
    }
}

/// Counts kept by the tracker (capture-level figures of the report).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TrackerCounters {
    /// TCP segments on broker ports.
    pub segments: u64,
    /// Segments whose bytes had all been seen already.
    pub retransmissions: u64,
    /// Segments with data into a connection whose session had closed (the other side of a
    /// half-closed connection writing late): part of that session, not activity.
    pub segments_after_close: u64,
    pub out_of_order: u64,
    pub out_of_window: u64,
    /// Segments that belong to no tracked connection (an ACK or FIN of a connection never seen
    /// opening, data after a connection ended).
    pub stray_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// MQTT packets by type, indexed by the type nibble.
    #[serde(skip)]
    pub mqtt_packets: [u64; 16],
    pub malformed: u64,
    pub resync_skipped_bytes: u64,
    /// Connections seen, and what they turned out to be.
    pub flows: u64,
    pub mqtt_sessions: u64,
    pub non_mqtt_flows: u64,
    pub flows_without_payload: u64,
    pub flows_evicted: u64,
    /// Segments refused because the table was full (`max_flows`): every segment of a refused
    /// connection counts.
    pub flows_rejected: u64,
    /// Connections refused because the table was full, each counted once (by its addresses;
    /// the last [`REJECTED_REMEMBERED`] refused ones are remembered).
    pub connections_rejected: u64,
    /// Times the total buffer cap made a connection give up its holes.
    pub buffer_overflows: u64,
    /// Bytes buffered across all connections now.
    pub buffered_bytes: u64,
}

/// What a stream source hands over for one direction of a connection: the in-order bytes of
/// the layer above the transport (MQTT), or a count of bytes it could not copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamInput<'a> {
    Data(&'a [u8]),
    /// Bytes of the stream the source lost (a gap).
    Lost(u64),
    /// Bytes that passed on the connection that the source cannot read (TLS whose plaintext it
    /// does not see): the connection carried payload; nothing is missing from the MQTT stream.
    Hidden(u64),
}

impl StreamInput<'_> {
    /// Whether this says anything (some bytes, seen, lost or hidden).
    pub fn carries(&self) -> bool {
        !matches!(self, StreamInput::Data([]) | StreamInput::Lost(0) | StreamInput::Hidden(0))
    }
}

/// A TCP state change seen by a stream source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpChange {
    /// The connection was set up while the source watched (seen from its first byte).
    Established,
    /// The connection was already established when the source started watching (joined
    /// mid-stream: what it carries from now on, and how it closes, are still knowable).
    Joined,
    /// A FIN from this side.
    Fin(Side),
    /// An RST from this side.
    Rst(Side),
    /// A TLS close_notify from this side (a source above TLS learns it from the TLS library).
    CloseNotify(Side),
    /// The source carried this connection's bytes but could not read its plaintext (the eBPF
    /// source: TLS library calls it could not tie to the connection). Its close is reported,
    /// but not as a close without DISCONNECT: a DISCONNECT may have passed unseen.
    NotVisible,
}

/// The sessions still to be ended at the end of a capture (see [`Tracker::start_finish`]).
pub struct Ending {
    end: Timestamp,
    /// Slots packed with their ids (see [`Tracker::start_finish`]), highest id first.
    open: Vec<u64>,
}

/// Ports watched unless told otherwise: MQTT (1883) and MQTT over TLS (8883).
pub const DEFAULT_PORTS: [u16; 2] = [1883, 8883];

/// Default [`TrackerConfig::active_limit`]: below this many connections nothing is parked, so a
/// capture of a few thousand sessions pays nothing for it.
pub const ACTIVE_LIMIT: usize = 4096;

/// A deadline on the heap: when, and whose slot (12 bytes). An entry whose slot has since been
/// given to another connection only makes that one be polled early, which does nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C, packed(4))]
struct Due {
    at: i64,
    slot: u32,
}

impl Due {
    fn new(at: Timestamp, slot: usize) -> Self {
        Due { at: at.as_nanos(), slot: slot as u32 }
    }

    fn at(self) -> Timestamp {
        Timestamp::from_nanos(self.at)
    }
}

/// The connection table.
pub struct Tracker {
    cfg: TrackerConfig,
    conns: Table,
    heap: BinaryHeap<Reverse<Due>>,
    next_id: SessionId,
    counters: TrackerCounters,
    events: Vec<Event>,
    finished: Vec<SessionRecord>,
    /// Hashes of the addresses of connections refused while the table was full (so each is
    /// counted once in `connections_rejected`); at most [`REJECTED_REMEMBERED`].
    rejected: foldhash::HashSet<u64>,
    /// The latest time the tracker was given (what an open session's silence is counted to).
    now: Timestamp,
}

/// Refused connections remembered to count each once (about 0.6 MiB when all are held); past
/// it the memory starts afresh, and a refused connection still sending then is counted again.
pub const REJECTED_REMEMBERED: usize = 1 << 16;

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            next_id: cfg.session_ids.first,
            cfg,
            conns: Table::default(),
            heap: BinaryHeap::new(),
            counters: TrackerCounters::default(),
            events: Vec::new(),
            finished: Vec::new(),
            rejected: foldhash::HashSet::default(),
            now: Timestamp::from_nanos(0),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &TrackerCounters {
        &self.counters
    }

    /// Connections currently tracked.
    pub fn live_connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections tracked in full form (the rest are parked).
    pub fn active_connections(&self) -> usize {
        self.conns.active()
    }

    /// Events emitted so far and not yet drained.
    pub fn events(&mut self) -> &mut Vec<Event> {
        &mut self.events
    }

    /// Records of the MQTT sessions that ended (in the order they ended) and were not yet
    /// drained; empty unless [`TrackerConfig::records`].
    pub fn finished(&mut self) -> &mut Vec<SessionRecord> {
        &mut self.finished
    }

    /// The records so far of the open sessions that have shown MQTT, made one at a time, in no
    /// particular order, with each one's last activity, silence and deadline at the latest time
    /// given (a live agent's `/sessions`; none unless [`TrackerConfig::records`]).
    pub fn open_records(&self) -> impl Iterator<Item = SessionRecord> + '_ {
        self.conns.iter().filter_map(|(_, slot)| self.conns.snapshot(slot, self.now))
    }

    /// The earliest time at which [`Tracker::poll`] may have work.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(due)| due.at())
    }

    /// A TCP segment at `now`. Segments not to or from a broker port are ignored (false).
    pub fn on_segment(&mut self, now: Timestamp, seg: &Segment<'_>) -> bool {
        let Some((mut key, mut from)) = FlowKey::orient(seg.src, seg.dst, &self.cfg.ports) else { return false };
        if self.cfg.ports.contains(seg.src.port()) && self.cfg.ports.contains(seg.dst.port()) {
            // Both ends on broker ports: keep the orientation the connection already has, and
            // take a SYN-ACK's sender as the broker.
            let reversed = FlowKey { client: key.broker, broker: key.client };
            let known = self.conns.find(&key).is_some();
            if (!known && self.conns.find(&reversed).is_some()) || (!known && seg.syn && seg.ack.is_some()) {
                (key, from) = (reversed, from.peer());
            }
        }
        self.poll(now);
        self.counters.segments += 1;
        let Some(slot) = self.slot_for(now, key, from, seg) else { return true };
        self.with_conn(now, slot, |conn, ctx| conn.on_segment(from, seg, ctx));
        true
    }

    /// In-order bytes (or a count of lost ones) of `from`'s stream of the connection `key`,
    /// from a stream source: the bytes above the transport (MQTT), with no reassembly or layers.
    /// A connection first seen this way was joined mid-stream.
    pub fn on_stream(&mut self, now: Timestamp, key: FlowKey, from: Side, input: StreamInput<'_>) {
        self.poll(now);
        let slot = match self.conns.find(&key) {
            Some(slot) => slot,
            // Hidden bytes of a connection never seen: nothing to tie them to.
            None if !input.carries() || matches!(input, StreamInput::Hidden(_)) => return,
            None => match self.open_stream(now, key, true) {
                Some(slot) => slot,
                None => return,
            },
        };
        let transport = self.cfg.stream_transport.filter(|_| input.carries());
        self.with_conn(now, slot, |conn, ctx| {
            if let Some(t) = transport {
                conn.adopt_transport(t, ctx);
            }
            conn.on_stream(from, input, ctx)
        });
    }

    /// A TCP state change of the connection `key`, from a stream source. `Established` starts
    /// a connection seen from its first byte (a new one replaces an old one on the same
    /// addresses), `Joined` one joined mid-stream (nothing if it is known); a close of a
    /// connection never seen is stray.
    pub fn on_tcp(&mut self, now: Timestamp, key: FlowKey, change: TcpChange) {
        self.poll(now);
        let existing = self.conns.find(&key);
        let slot = match (existing, change) {
            (Some(slot), TcpChange::Established) => {
                self.evict(slot, now); // the addresses were reused: the old connection is over
                None
            }
            (Some(_), TcpChange::Joined) => return,
            (Some(slot), _) => Some(slot),
            (None, TcpChange::Established | TcpChange::Joined) => None,
            (None, _) => {
                self.counters.stray_segments += 1;
                return;
            }
        };
        let slot = match slot {
            Some(slot) => slot,
            None => match self.open_stream(now, key, change == TcpChange::Joined) {
                Some(slot) => slot,
                None => return,
            },
        };
        self.with_conn(now, slot, |conn, ctx| conn.on_tcp(change, ctx));
    }

    /// Opens a connection handed over by a stream source. One joined mid-stream has the
    /// source's transport at once (it carried bytes before); one seen from its start when its
    /// first bytes pass (one that carries none, a port check, is a connection without payload,
    /// as in a capture).
    fn open_stream(&mut self, now: Timestamp, key: FlowKey, mid_stream: bool) -> Option<usize> {
        let conn = self.open(now, key, mid_stream)?;
        let slot = self.conns.insert(conn);
        if let Some(transport) = self.cfg.stream_transport.filter(|_| mid_stream) {
            self.with_conn(now, slot, |conn, ctx| conn.adopt_transport(transport, ctx));
        }
        Some(slot)
    }

    /// Runs `f` on the connection in `slot` at `now`, then settles what it did: ends a fully
    /// closed connection, accounts its bytes (shedding under the total cap), folds its events
    /// into its record, reschedules it and parks it if it is at rest.
    fn with_conn(&mut self, now: Timestamp, slot: usize, f: impl FnOnce(&mut conn::Conn, &mut Ctx<'_>)) {
        let start = self.events.len();
        let conn = self.conns.activate(slot, &self.cfg);
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg.session,
            layers: &self.cfg.layers,
            events: &mut self.events,
            counters: &mut self.counters,
        };
        f(conn, &mut ctx);
        if conn.fully_closed() && !conn.done {
            conn.end(now, false, &mut ctx);
        }
        conn.account(ctx.counters);
        if ctx.counters.buffered_bytes > self.cfg.max_buffered_total as u64 {
            // Over the total cap: this connection, which just grew, gives up its holes.
            ctx.counters.buffer_overflows += 1;
            conn.shed(&mut ctx);
            conn.account(ctx.counters);
        }
        conn.fold(self.cfg.records, &mut self.events[start..], &mut self.finished);
        self.reschedule(slot);
        self.maybe_park(slot);
    }

    /// Fires every deadline before `now`: keepalive expiries, ping timeouts, enforcement
    /// decisions, evictions.
    pub fn poll(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        while let Some(&Reverse(due)) = self.heap.peek() {
            let (at, slot) = (due.at(), due.slot as usize);
            if at >= now {
                break;
            }
            self.heap.pop();
            if self.conns.get(slot).is_none() {
                continue; // the connection is gone
            }
            let conn = self.conns.activate(slot, &self.cfg);
            if conn.scheduled == Some(at) {
                conn.scheduled = None;
            }
            // Fire what is due at `at` (inclusive), so events across sessions stay in time order.
            let fire_at = at.saturating_add(Duration::from_nanos(1));
            let (key, id) = (conn.key, conn.id);
            let start = self.events.len();
            let events = &mut self.events;
            conn.session.poll(fire_at, &self.cfg.session, &mut |ts, kind| {
                events.push(Event { ts, session: id, flow: key.into(), kind, client_id: None })
            });
            conn.fold(self.cfg.records, &mut self.events[start..], &mut self.finished);
            if conn.eviction_deadline(&self.cfg) <= at {
                self.evict(slot, at);
            } else {
                self.reschedule(slot);
                self.maybe_park(slot);
            }
        }
    }

    /// The capture ended at `end`: fires what is due and ends every session still tracked,
    /// in the order the sessions began, releasing the connections. The tracker takes no more
    /// segments after this.
    pub fn finish(&mut self, end: Timestamp) {
        let mut ending = self.start_finish(end);
        while self.finish_some(&mut ending, usize::MAX) {}
    }

    /// [`Tracker::finish`] in steps, so the caller can drain events and records between them
    /// (a million sessions open at the end need not all be held as records at once): fires
    /// what is due and returns the sessions to end, for [`Tracker::finish_some`].
    pub fn start_finish(&mut self, end: Timestamp) -> Ending {
        self.poll(end);
        // Nothing is scheduled after the end: the heap's memory goes before the list is made.
        self.heap = BinaryHeap::new();
        // Sorted by id as `(id - first) << 32 | slot` (8 bytes a session; ids of open sessions
        // span less than 2^32 in any real capture, and a wider span only sorts by slot within).
        let first = self.conns.iter().filter(|(_, c)| !c.done()).map(|(_, c)| c.id()).min().unwrap_or(0);
        let mut open: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.done())
            .map(|(slot, c)| ((c.id() - first).min(u64::from(u32::MAX)) << 32) | slot as u64)
            .collect();
        open.sort_unstable_by(|a, b| b.cmp(a)); // popped from the back: lowest id first
        Ending { end, open }
    }

    /// Ends up to `n` more of the sessions in `ending`; false once none are left.
    pub fn finish_some(&mut self, ending: &mut Ending, n: usize) -> bool {
        for _ in 0..n {
            let Some(packed) = ending.open.pop() else { return false };
            let slot = (packed & u64::from(u32::MAX)) as usize;
            let conn = self.conns.activate(slot, &self.cfg);
            let start = self.events.len();
            let mut ctx = Ctx {
                now: ending.end,
                cfg: &self.cfg.session,
                layers: &self.cfg.layers,
                events: &mut self.events,
                counters: &mut self.counters,
            };
            conn.end(ending.end, false, &mut ctx);
            conn.fold(self.cfg.records, &mut self.events[start..], &mut self.finished);
            // Ended connections are not parked; give the memory back as we go.
            self.release(slot);
        }
        !ending.open.is_empty()
    }

    /// The slot of the segment's connection, creating one when the segment can start it.
    fn slot_for(&mut self, now: Timestamp, key: FlowKey, from: Side, seg: &Segment<'_>) -> Option<usize> {
        let opening_syn = seg.syn && from == Side::Client && seg.ack.is_none();
        if let Some(slot) = self.conns.find(&key) {
            let client_isn = match self.conns.get(slot).expect("indexed slots are live") {
                Slot::Active(c) => c.client_isn,
                Slot::Parked(p) => p.client_isn(),
            };
            let reused = opening_syn && client_isn != Some(seg.seq);
            if !reused {
                return Some(slot);
            }
            // A new connection on the same addresses: the old one is over.
            self.evict(slot, now);
        }
        let syn_ack = seg.syn && from == Side::Broker && seg.ack.is_some();
        if !(opening_syn || syn_ack || seg.wire_len > 0) {
            self.counters.stray_segments += 1;
            return None;
        }
        let mut conn = self.open(now, key, !(opening_syn || syn_ack))?;
        if syn_ack {
            // Joined after the SYN: the SYN-ACK acknowledges the client's ISN + 1.
            let client_isn = SeqNumber(seg.ack.expect("syn_ack has an ack").0.wrapping_sub(1));
            conn.reasm.client.on_syn(client_isn);
            conn.client_isn = Some(client_isn);
        }
        Some(self.conns.insert(conn))
    }

    /// A new connection `key` first seen at `now` (not yet in the table), or `None` when the
    /// table is full (counted).
    fn open(&mut self, now: Timestamp, key: FlowKey, mid_stream: bool) -> Option<Box<conn::Conn>> {
        if self.conns.len() >= self.cfg.max_flows.min(u32::MAX as usize) {
            self.counters.flows_rejected += 1;
            use std::hash::BuildHasher;
            if self.rejected.len() >= REJECTED_REMEMBERED {
                self.rejected.clear();
            }
            if self.rejected.insert(foldhash::fast::FixedState::with_seed(0).hash_one(key)) {
                self.counters.connections_rejected += 1;
            }
            return None;
        }
        let mut conn = self.conns.blank(&self.cfg);
        conn.reset(key, self.next_id, now, mid_stream);
        self.next_id += self.cfg.session_ids.step.max(1);
        self.counters.flows += 1;
        self.events.push(Event {
            ts: now,
            session: conn.id,
            flow: key.into(),
            kind: EventKind::SessionStart { mid_stream },
            client_id: None,
        });
        Some(conn)
    }

    /// Ends the connection's session if it has not ended, and drops it.
    fn evict(&mut self, slot: usize, at: Timestamp) {
        if self.conns.get(slot).is_none() {
            return;
        }
        let conn = self.conns.activate(slot, &self.cfg);
        if !conn.done {
            let start = self.events.len();
            let mut ctx = Ctx {
                now: at,
                cfg: &self.cfg.session,
                layers: &self.cfg.layers,
                events: &mut self.events,
                counters: &mut self.counters,
            };
            let evicted = !conn.session.is_closed();
            if evicted {
                ctx.counters.flows_evicted += 1;
            }
            conn.end(at, evicted, &mut ctx);
            conn.fold(self.cfg.records, &mut self.events[start..], &mut self.finished);
        }
        self.release(slot);
    }

    /// Drops an ended connection from the table.
    fn release(&mut self, slot: usize) {
        self.counters.buffered_bytes -= self.conns.release(slot) as u64;
    }

    /// Parks the connection if there are many and it is at rest.
    fn maybe_park(&mut self, slot: usize) {
        self.conns.park(slot, self.cfg.active_limit);
    }

    /// Makes sure the heap holds an entry no later than the connection's next deadline.
    fn reschedule(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_active(slot) else { return };
        let session_deadline = if conn.done { None } else { conn.session.next_deadline(&self.cfg.session) };
        let eviction = conn.eviction_deadline(&self.cfg);
        let next = session_deadline.map_or(eviction, |d| d.min(eviction));
        if conn.scheduled.is_none_or(|s| next < s) {
            conn.scheduled = Some(next);
            let entry = Reverse(Due::new(next, slot));
            if self.heap.len() == self.heap.capacity() && self.heap.len() >= 1024 {
                self.compact_heap();
            }
            self.heap.push(entry);
        }
    }

    /// Drops heap entries that no longer matter (only a connection's earliest entry,
    /// `scheduled`, does; later ones are left behind when a deadline moves earlier), so the heap
    /// grows with the connections rather than with the deadlines ever set. Runs when the heap is
    /// full, before it would grow; in place. When it frees less than 1/32 of the room, the heap
    /// grows as usual, so the cost stays a constant per push.
    fn compact_heap(&mut self) {
        let (conns, mut entries) = (&self.conns, std::mem::take(&mut self.heap).into_vec());
        entries.retain(|Reverse(due)| {
            let scheduled = match conns.get(due.slot as usize) {
                Some(Slot::Active(c)) => c.scheduled,
                Some(Slot::Parked(p)) => p.has(bit::SCHEDULED).then_some(p.scheduled),
                None => None,
            };
            scheduled == Some(due.at())
        });
        if entries.len() > entries.capacity() - entries.capacity() / 32 {
            // Mostly live: grow, so compaction runs at most once per capacity/32 pushes.
            entries.reserve(entries.capacity());
        }
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::PortSet;
    use crate::synth::{self, Capture, Encap, mqtt};

    /// An IPv4 and an IPv6 client each connect, ping and go quiet; then the first pings again.
    fn two_sessions() -> Capture {
        let mut cap = Capture::new(Encap::Ethernet);
        let t = Timestamp::from_secs_f64;
        let mut v4 = synth::Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 100, 900);
        let mut v6 =
            synth::Conn::new("[2001:db8::1]:40001".parse().unwrap(), "[2001:db8::9]:1883".parse().unwrap(), 7, 8);
        for (i, c) in [&mut v4, &mut v6].into_iter().enumerate() {
            let at = i as f64;
            c.handshake(&mut cap, t(at));
            c.send(&mut cap, t(at + 0.1), Side::Client, &mqtt::connect(4, 10, &format!("dev-{i}"), true, None));
            c.send(&mut cap, t(at + 0.2), Side::Broker, &mqtt::connack(0, None));
            c.send(&mut cap, t(at + 5.0), Side::Client, &mqtt::pingreq());
            c.send(&mut cap, t(at + 5.1), Side::Broker, &mqtt::pingresp());
        }
        v4.send(&mut cap, t(12.0), Side::Client, &mqtt::pingreq());
        v4.send(&mut cap, t(12.1), Side::Broker, &mqtt::pingresp());
        cap.sort();
        cap
    }

    /// The tracker after `cap` and `finish`, the full-form count after each frame, and the open
    /// sessions' records just before the finish.
    fn run(cap: &Capture, active_limit: usize) -> (Tracker, Vec<usize>, serde_json::Value) {
        let mut tracker = Tracker::new(TrackerConfig { active_limit, ..TrackerConfig::default() });
        let mut active = Vec::new();
        for (ts, frame) in &cap.frames {
            let seg = crate::decode::decode(cap.encap.link_type(), frame).unwrap();
            tracker.on_segment(*ts, &seg);
            active.push(tracker.active_connections());
        }
        let mut open: Vec<SessionRecord> = tracker.open_records().collect();
        open.sort_by_key(|r| r.id);
        let open = serde_json::to_value(open).unwrap();
        tracker.finish(cap.frames.last().unwrap().0.saturating_add(Duration::from_secs(30)));
        (tracker, active, open)
    }

    #[test]
    fn idle_connections_park_and_wake_unchanged() {
        let cap = two_sessions();
        let (mut full, _, full_open) = run(&cap, ACTIVE_LIMIT);
        let (mut parked, active, parked_open) = run(&cap, 0);
        assert_eq!(parked_open, full_open, "open sessions read the same from parked connections");
        assert_eq!(full_open.as_array().map(Vec::len), Some(2));
        assert_eq!(full_open[1]["client"], "[2001:db8::1]:40001");
        // Issue 11: each open session's last activity (its last PINGREQ), silence so far (to the
        // last packet, 12.1 s) and deadline (keepalive 10: 15 s after the last activity).
        for (s, last) in full_open.as_array().unwrap().iter().zip([12.0, 6.0]) {
            assert_eq!(s["last_activity"].as_f64(), Some(last), "{s}");
            assert_eq!(s["deadline"].as_f64(), Some(last + 15.0), "{s}");
            assert_eq!(s["silence_s"].as_f64(), Some(((12.1 - last) * 1e6_f64).round() / 1e6), "{s}");
        }
        assert!(active.iter().all(|n| *n == 0), "every connection at rest is parked: {active:?}");
        assert_eq!((full.live_connections(), parked.live_connections()), (0, 0), "finish releases every connection");
        assert!(*parked.events() == *full.events(), "same events");
        let json = |t: &mut Tracker| serde_json::to_value(&*t.finished()).unwrap();
        assert_eq!(json(&mut parked), json(&mut full), "same records");
        let records = parked.finished();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(records[1].client, "[2001:db8::1]:40001".parse().unwrap(), "IPv6 address survives parking");
        assert_eq!((records[0].pingreq, records[0].expired), (2, true), "woken for its expiry and its ping");
    }

    #[test]
    fn trackers_number_their_sessions_apart() {
        let mut t = Tracker::new(TrackerConfig { session_ids: SessionIds { first: 1, step: 3 }, ..Default::default() });
        for port in [40000, 40001, 40002] {
            let key = FlowKey {
                client: format!("10.0.0.1:{port}").parse().unwrap(),
                broker: "10.0.0.9:1883".parse().unwrap(),
            };
            t.on_tcp(Timestamp::from_secs_f64(1.0), key, TcpChange::Established);
        }
        let mut ids: Vec<SessionId> = t.events().iter().map(|e| e.session).collect();
        ids.dedup();
        assert_eq!(ids, [1, 4, 7]);
    }

    /// The same conversation as TCP segments and as a stream source would hand it over.
    #[test]
    fn a_stream_source_gives_the_same_events_as_the_segments() {
        let t = Timestamp::from_secs_f64;
        let mut cap = Capture::new(Encap::Ethernet);
        let mut c = synth::Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 100, 900);
        c.handshake(&mut cap, t(0.0));
        c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 2, "dev", true, None));
        c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
        c.send(&mut cap, t(1.5), Side::Client, &mqtt::pingreq());
        c.send(&mut cap, t(1.6), Side::Broker, &mqtt::pingresp());
        c.fin(&mut cap, t(9.0), Side::Broker);
        c.rst(&mut cap, t(9.5), Side::Client);
        let end = t(20.0);
        let mut by_segments = Tracker::new(TrackerConfig::default());
        let mut by_stream = Tracker::new(TrackerConfig::default());
        let ports = PortSet::new(&[1883]);
        for (ts, frame) in &cap.frames {
            let seg = crate::decode::decode(cap.encap.link_type(), frame).unwrap();
            by_segments.on_segment(*ts, &seg);
            let (key, from) = FlowKey::orient(seg.src, seg.dst, &ports).unwrap();
            if seg.syn && seg.ack.is_none() {
                by_stream.on_tcp(*ts, key, TcpChange::Established);
            }
            by_stream.on_stream(*ts, key, from, StreamInput::Data(seg.payload));
            if seg.fin {
                by_stream.on_tcp(*ts, key, TcpChange::Fin(from));
            }
            if seg.rst {
                by_stream.on_tcp(*ts, key, TcpChange::Rst(from));
            }
        }
        by_segments.finish(end);
        by_stream.finish(end);
        let names: Vec<&str> = by_stream.events().iter().map(|e| e.kind.as_str()).collect();
        assert!(names.contains(&"keepalive_expired") && names.contains(&"enforcement"), "{names:?}");
        // A stream source hands over the bytes above the transport: the transport decision is
        // the only event the segments have that it does not.
        let mut from_segments = by_segments.events().clone();
        from_segments.retain(|e| !matches!(e.kind, EventKind::Transport { .. }));
        assert_eq!(by_segments.events().len(), from_segments.len() + 1);
        assert!(*by_stream.events() == from_segments, "same events");
        assert_eq!(by_stream.finished().len(), 1);

        // Bytes the source could not copy are a gap, and client activity.
        let mut lossy = Tracker::new(TrackerConfig::default());
        let key = FlowKey { client: "10.0.0.1:40000".parse().unwrap(), broker: "10.0.0.9:1883".parse().unwrap() };
        lossy.on_tcp(t(0.0), key, TcpChange::Established);
        lossy.on_stream(t(0.1), key, Side::Client, StreamInput::Data(&mqtt::connect(4, 2, "dev", true, None)));
        lossy.on_stream(t(2.0), key, Side::Client, StreamInput::Lost(40));
        lossy.finish(t(3.5));
        let names: Vec<&str> = lossy.events().iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(names, ["session_start", "connect", "gap", "session_end"], "the gap kept the client alive");
        assert_eq!(lossy.counters().gap_bytes, 40);
        // A close of a connection never seen is stray; data of one is joined mid-stream.
        let other = FlowKey { client: "10.0.0.2:1".parse().unwrap(), ..key };
        lossy.on_tcp(t(4.0), other, TcpChange::Fin(Side::Broker));
        assert_eq!((lossy.counters().stray_segments, lossy.live_connections()), (1, 0));
        lossy.on_stream(t(4.0), other, Side::Broker, StreamInput::Data(&mqtt::pingresp()));
        let joined: Vec<&EventKind> =
            lossy.events().iter().filter(|e| e.flow.client == other.client).map(|e| &e.kind).collect();
        assert_eq!(joined.first(), Some(&&EventKind::SessionStart { mid_stream: true }));
        assert_eq!(joined.last(), Some(&&EventKind::Pingresp { rtt_ms: None }), "{joined:?}");
    }

    #[test]
    fn parked_connections_are_small() {
        // The scale target (a million open sessions under 256 MB) rests on this.
        assert!(std::mem::size_of::<Slot>() <= 200, "{}", std::mem::size_of::<Slot>());
    }
}

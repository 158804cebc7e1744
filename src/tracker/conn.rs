//! One tracked connection in full form: both directions' reassembly and MQTT decoding, the
//! session and its record, and how segments and stream chunks drive them.
//!
//! Contract: the [`super::Tracker`] owns every [`Conn`] and calls it with segments in time
//! order; a `Conn` emits its session's events through [`Ctx`] and keeps the buffered-bytes
//! count of the tracker up to date ([`Conn::account`]). It never reads a clock.

use super::{TrackerConfig, TrackerCounters};
use crate::decode::Segment;
use crate::flow::reassembly::{Chunk, Outcome, ReasmRest, Reassembler};
use crate::flow::seq::SeqNumber;
use crate::flow::{FlowKey, Side};
use crate::mqtt::stream::DecoderRest;
use crate::mqtt::{PacketType, StreamDecoder, StreamEvent};
use crate::session::record::{RecordState, SessionRecord};
use crate::session::{CloseKind, Event, EventKind, Session, SessionConfig, SessionId};
use crate::time::{Timestamp, expiry_span};
use std::net::SocketAddr;

/// One direction's reassembly and decoding.
pub(super) struct Half {
    pub(super) reasm: Reassembler,
    pub(super) decoder: StreamDecoder,
}

pub(super) struct Conn {
    pub(super) key: FlowKey,
    pub(super) id: SessionId,
    pub(super) session: Session,
    /// The report's record of the session, folded from its events.
    pub(super) record: RecordState,
    /// Bytes from the client, and from the broker.
    pub(super) client: Half,
    pub(super) broker: Half,
    pub(super) client_isn: Option<SeqNumber>,
    pub(super) last_seen: Timestamp,
    pub(super) mid_stream: bool,
    pub(super) saw_payload: bool,
    /// An MQTT packet was decoded (for connections joined mid-stream).
    pub(super) saw_mqtt: bool,
    pub(super) fin_client: bool,
    pub(super) fin_broker: bool,
    /// `session_end` emitted; kept only to absorb stray packets until the linger ends.
    pub(super) done: bool,
    /// Earliest heap entry for this connection.
    pub(super) scheduled: Option<Timestamp>,
    /// Bytes of this connection counted in [`TrackerCounters::buffered_bytes`].
    pub(super) accounted: usize,
}

/// What connection-level code needs besides the connection: settings, output, counters.
pub(super) struct Ctx<'a> {
    pub(super) now: Timestamp,
    pub(super) cfg: &'a SessionConfig,
    pub(super) events: &'a mut Vec<Event>,
    pub(super) counters: &'a mut TrackerCounters,
}

impl Ctx<'_> {
    pub(super) fn emit(&mut self, key: FlowKey, id: SessionId, ts: Timestamp, kind: EventKind) {
        self.events.push(Event { ts, session: id, flow: key.into(), kind });
    }
}

impl Conn {
    /// An unused connection (filled by [`Conn::reset`] or [`Parked::unpark_into`]).
    pub(super) fn new(cfg: &TrackerConfig) -> Self {
        let half = || Half { reasm: Reassembler::new(cfg.max_buffered_per_flow), decoder: StreamDecoder::new(true) };
        let zero = Timestamp::from_nanos(0);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Conn {
            key: FlowKey { client: unspecified, broker: unspecified },
            id: 0,
            session: Session::new(zero),
            record: RecordState::new(zero, false),
            client: half(),
            broker: half(),
            client_isn: None,
            last_seen: zero,
            mid_stream: false,
            saw_payload: false,
            saw_mqtt: false,
            fin_client: false,
            fin_broker: false,
            done: false,
            scheduled: None,
            accounted: 0,
        }
    }

    /// Makes this the new connection `key`, first seen at `now` (buffers are kept for reuse).
    pub(super) fn reset(&mut self, key: FlowKey, id: SessionId, now: Timestamp, mid_stream: bool) {
        self.key = key;
        self.id = id;
        self.session = Session::new(now);
        self.record = RecordState::new(now, mid_stream);
        for (half, first) in [(&mut self.client, PacketType::Connect), (&mut self.broker, PacketType::ConnAck)] {
            half.reasm.restore(ReasmRest { next: None, peer_acked: None });
            // Seen from its first byte, a stream must start with CONNECT (CONNACK from a broker).
            let rest = if mid_stream {
                DecoderRest { hunting: true, first: None }
            } else {
                DecoderRest { hunting: false, first: Some(first) }
            };
            half.decoder.restore(rest);
        }
        self.client_isn = None;
        self.last_seen = now;
        self.mid_stream = mid_stream;
        (self.saw_payload, self.saw_mqtt, self.fin_client, self.fin_broker, self.done) =
            (false, false, false, false, false);
        self.scheduled = None;
        self.accounted = 0;
    }

    /// Folds `events` (this connection's, just emitted) into its record; a finished MQTT
    /// session's record goes to `finished`.
    pub(super) fn fold(&mut self, enabled: bool, events: &[Event], finished: &mut Vec<SessionRecord>) {
        if !enabled {
            return;
        }
        for e in events {
            match e.kind {
                EventKind::SessionEnd { .. } => finished.extend(self.record.finish(e)),
                _ => self.record.apply(e),
            }
        }
    }

    pub(super) fn on_segment(&mut self, from: Side, seg: &Segment<'_>, ctx: &mut Ctx<'_>) {
        self.last_seen = ctx.now;
        if self.done {
            // The last ACK of a close is expected; data after the end is not.
            if seg.wire_len > 0 {
                ctx.counters.stray_segments += 1;
            }
            return;
        }
        let Conn { key, id, session, client, broker, saw_mqtt, .. } = self;
        let (key, id) = (*key, *id);
        let (this, other) = match from {
            Side::Client => (client, broker),
            Side::Broker => (broker, client),
        };
        if seg.syn {
            this.reasm.on_syn(seg.seq);
            if from == Side::Client {
                self.client_isn = Some(seg.seq);
            }
        }
        if seg.wire_len > 0 {
            self.saw_payload = true;
            let seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
            let Half { reasm, decoder } = this;
            let outcome = reasm.on_segment(seq, seg.payload, seg.wire_len, &mut |chunk| {
                deliver(from, chunk, decoder, session, saw_mqtt, key, id, ctx)
            });
            match outcome {
                Outcome::Retransmission => ctx.counters.retransmissions += 1,
                Outcome::OutOfOrder => ctx.counters.out_of_order += 1,
                Outcome::OutOfWindow => ctx.counters.out_of_window += 1,
                Outcome::InOrder | Outcome::Empty => {}
            }
        }
        if let Some(ack) = seg.ack {
            let Half { reasm, decoder } = other;
            reasm.on_peer_ack(ack, &mut |chunk| deliver(from.peer(), chunk, decoder, session, saw_mqtt, key, id, ctx));
        }
        if seg.fin || seg.rst {
            let Half { reasm, decoder } = this;
            reasm.flush(&mut |chunk| deliver(from, chunk, decoder, session, saw_mqtt, key, id, ctx));
            if seg.fin {
                let data_start = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
                reasm.on_fin(data_start.wrapping_add(seg.wire_len));
            }
            let kind = if seg.rst { CloseKind::Rst } else { CloseKind::Fin };
            session.on_tcp_close(ctx.now, kind, from, ctx.cfg, &mut |ts, kind| ctx.emit(key, id, ts, kind));
            match (seg.rst, from) {
                (true, _) => (self.fin_client, self.fin_broker) = (true, true),
                (false, Side::Client) => self.fin_client = true,
                (false, Side::Broker) => self.fin_broker = true,
            }
        }
    }

    /// Bytes this connection holds.
    fn buffered(&self) -> usize {
        self.client.reasm.buffered()
            + self.broker.reasm.buffered()
            + self.client.decoder.buffered()
            + self.broker.decoder.buffered()
    }

    /// Brings the total buffered count up to date with this connection.
    pub(super) fn account(&mut self, counters: &mut TrackerCounters) {
        let now = self.buffered();
        counters.buffered_bytes = counters.buffered_bytes + now as u64 - self.accounted as u64;
        self.accounted = now;
    }

    /// Gives up every hole in both directions (their stored bytes are delivered after gaps).
    fn give_up_holes(&mut self, ctx: &mut Ctx<'_>) {
        let Conn { key, id, session, client, broker, saw_mqtt, .. } = self;
        let (key, id) = (*key, *id);
        for (side, half) in [(Side::Client, client), (Side::Broker, broker)] {
            let Half { reasm, decoder } = half;
            reasm.flush(&mut |chunk| deliver(side, chunk, decoder, session, saw_mqtt, key, id, ctx));
        }
    }

    /// Under memory pressure: gives up holes and drops bytes held while hunting for framing.
    pub(super) fn shed(&mut self, ctx: &mut Ctx<'_>) {
        self.give_up_holes(ctx);
        self.client.decoder.shed();
        self.broker.decoder.shed();
    }

    /// Both sides sent FIN, or one sent RST.
    pub(super) fn fully_closed(&self) -> bool {
        self.fin_client && self.fin_broker
    }

    pub(super) fn eviction_deadline(&self, cfg: &TrackerConfig) -> Timestamp {
        let idle = if self.done || self.session.is_closed() {
            cfg.linger
        } else if !self.saw_payload {
            cfg.handshake_timeout
        } else {
            let keepalive = self.session.effective_keepalive().unwrap_or(0);
            cfg.flow_timeout.max(2 * expiry_span(keepalive))
        };
        self.last_seen.saturating_add(idle)
    }

    /// Ends the session at `at`: gives up holes, settles the session, emits `session_end`.
    pub(super) fn end(&mut self, at: Timestamp, evicted: bool, ctx: &mut Ctx<'_>) {
        self.give_up_holes(ctx);
        let (key, id, session) = (self.key, self.id, &mut self.session);
        let max_silence = session.finish(at, ctx.cfg, &mut |ts, kind| ctx.emit(key, id, ts, kind));
        let mqtt = session.connected() || (self.mid_stream && self.saw_mqtt);
        match (self.saw_payload, mqtt) {
            (false, _) => ctx.counters.flows_without_payload += 1,
            (true, false) => ctx.counters.non_mqtt_flows += 1,
            (true, true) => ctx.counters.mqtt_sessions += 1,
        }
        let open = !session.is_closed();
        ctx.emit(
            key,
            id,
            at,
            EventKind::SessionEnd { last_packet: self.last_seen, max_silence_s: max_silence, open, evicted, mqtt },
        );
        self.done = true;
    }
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Broker,
            Side::Broker => Side::Client,
        }
    }
}

/// Hands one chunk of `side`'s stream to its decoder and the session.
#[allow(clippy::too_many_arguments)]
fn deliver(
    side: Side,
    chunk: Chunk<'_>,
    decoder: &mut StreamDecoder,
    session: &mut Session,
    saw_mqtt: &mut bool,
    key: FlowKey,
    id: SessionId,
    ctx: &mut Ctx<'_>,
) {
    let now = ctx.now;
    let mut on_stream_event = |ev: StreamEvent, ctx: &mut Ctx<'_>| match ev {
        StreamEvent::Packet(p) => {
            ctx.counters.mqtt_packets[p.header.packet_type as usize] += 1;
            *saw_mqtt = true;
            let cfg = ctx.cfg;
            let mut emit = |ts, kind| ctx.emit(key, id, ts, kind);
            match side {
                Side::Client => session.on_client_packet(now, &p, cfg, &mut emit),
                Side::Broker => session.on_broker_packet(now, &p, cfg, &mut emit),
            }
        }
        StreamEvent::Malformed(m) => {
            ctx.counters.malformed += 1;
            let packet_type = match m {
                crate::mqtt::Malformed::Body(t, _) | crate::mqtt::Malformed::UnexpectedFirst { got: t, .. } => Some(t),
                crate::mqtt::Malformed::Header(_) => None,
            };
            ctx.emit(key, id, now, EventKind::Malformed { side, packet_type, reason: m.to_string() });
        }
        StreamEvent::Resync { skipped } => {
            ctx.counters.resync_skipped_bytes += skipped;
            ctx.emit(key, id, now, EventKind::Resync { side, skipped_bytes: skipped });
        }
    };
    match chunk {
        Chunk::Data(data) => decoder.feed(data, &mut |ev| on_stream_event(ev, ctx)),
        Chunk::Gap(bytes) => {
            ctx.counters.gaps += 1;
            ctx.counters.gap_bytes += bytes;
            ctx.emit(key, id, now, EventKind::Gap { side, bytes });
            decoder.gap(bytes, &mut |ev| on_stream_event(ev, ctx));
            if side == Side::Client {
                let cfg = ctx.cfg;
                session.on_client_bytes_lost(now, cfg, &mut |ts, kind| ctx.emit(key, id, ts, kind));
            }
        }
    }
}

//! One tracked connection in full form: both directions' reassembly, the layer stack, MQTT
//! decoding, the session and its record, and how segments and stream chunks drive them.
//!
//! Contract: the [`super::Tracker`] owns every [`Conn`] and calls it in time order, with TCP
//! segments ([`Conn::on_segment`]) or, from stream sources, in-order stream bytes and TCP state
//! changes ([`Conn::on_stream`], [`Conn::on_tcp`]). Each side's bytes go
//! reassembly -> [`Stack`] (the transport layers; none for MQTT over TCP) -> MQTT decoder ->
//! session; stream sources' bytes skip the first two. A `Conn` emits its session's events
//! through [`Ctx`] and keeps the buffered-bytes count of the tracker up to date
//! ([`Conn::account`]). It never reads a clock.

use super::{StreamInput, TcpChange, TrackerConfig, TrackerCounters};
use crate::decode::Segment;
use crate::flow::reassembly::{Chunk, Outcome, ReasmRest, Reassembler};
use crate::flow::seq::SeqNumber;
use crate::flow::{FlowKey, Side, Sides};
use crate::layer::tls::{self, TlsEvent};
use crate::layer::websocket::WsEvent;
use crate::layer::{LayerConfig, LayerEvent, Stack, Transport, Up};
use crate::mqtt::stream::DecoderRest;
use crate::mqtt::{Body, FixedHeader, Packet, PacketType, StreamDecoder, StreamEvent};
use crate::session::record::{RecordState, SessionRecord};
use crate::session::{CloseKind, Event, EventKind, Session, SessionConfig, SessionId};
use crate::time::{Timestamp, expiry_span};
use std::net::SocketAddr;

pub(super) struct Conn {
    pub(super) key: FlowKey,
    pub(super) id: SessionId,
    pub(super) session: Session,
    /// The report's record of the session, folded from its events.
    pub(super) record: RecordState,
    /// Reassembly of each side's TCP stream.
    pub(super) reasm: Sides<Reassembler>,
    /// The transport layers between reassembly and MQTT (none for MQTT over TCP).
    pub(super) stack: Stack,
    /// Each side's MQTT stream decoder.
    pub(super) decoders: Sides<StreamDecoder>,
    /// What carries the MQTT, once the first bytes decided it.
    pub(super) transport: Transport,
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
    /// Its MQTT cannot be seen ([`TcpChange::NotVisible`]): no close without DISCONNECT.
    pub(super) not_visible: bool,
    /// Earliest heap entry for this connection.
    pub(super) scheduled: Option<Timestamp>,
    /// Bytes of this connection counted in [`TrackerCounters::buffered_bytes`].
    pub(super) accounted: usize,
}

/// How long a half-closed connection (one side's FIN, or a DISCONNECT, without the other's)
/// is kept: Linux's `tcp_fin_timeout`.
pub(super) const HALF_CLOSED_LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// What connection-level code needs besides the connection: settings, output, counters.
pub(super) struct Ctx<'a> {
    pub(super) now: Timestamp,
    pub(super) cfg: &'a SessionConfig,
    pub(super) layers: &'a LayerConfig,
    pub(super) events: &'a mut Vec<Event>,
    pub(super) counters: &'a mut TrackerCounters,
}

impl Ctx<'_> {
    pub(super) fn emit(&mut self, key: FlowKey, id: SessionId, ts: Timestamp, kind: EventKind) {
        self.events.push(Event { ts, session: id, flow: key.into(), kind, client_id: None });
    }
}

impl Conn {
    /// An unused connection (filled by [`Conn::reset`] or [`Parked::unpark_into`]).
    pub(super) fn new(cfg: &TrackerConfig) -> Self {
        let reasm = || Reassembler::new(cfg.max_buffered_per_flow);
        let zero = Timestamp::from_nanos(0);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Conn {
            key: FlowKey { client: unspecified, broker: unspecified },
            id: 0,
            session: Session::new(zero),
            record: RecordState::new(zero, false),
            reasm: Sides { client: reasm(), broker: reasm() },
            stack: Stack::Detect,
            decoders: Sides { client: StreamDecoder::new(true), broker: StreamDecoder::new(true) },
            transport: Transport::Unknown,
            client_isn: None,
            last_seen: zero,
            mid_stream: false,
            saw_payload: false,
            saw_mqtt: false,
            fin_client: false,
            fin_broker: false,
            done: false,
            not_visible: false,
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
        self.stack = if mid_stream { Stack::DetectMidStream } else { Stack::Detect };
        self.transport = Transport::Unknown;
        for (side, first) in [(Side::Client, PacketType::Connect), (Side::Broker, PacketType::ConnAck)] {
            self.reasm.get_mut(side).restore(ReasmRest { next: None, peer_acked: None });
            // Seen from its first byte, a stream must start with CONNECT (CONNACK from a broker).
            let rest = if mid_stream {
                DecoderRest { hunting: true, first: None }
            } else {
                DecoderRest { hunting: false, first: Some(first) }
            };
            self.decoders.get_mut(side).restore(rest);
        }
        self.client_isn = None;
        self.last_seen = now;
        self.mid_stream = mid_stream;
        (self.saw_payload, self.saw_mqtt, self.fin_client, self.fin_broker, self.done, self.not_visible) =
            (false, false, false, false, false, false);
        self.scheduled = None;
        self.accounted = 0;
    }

    /// Gives `events` (this connection's, just emitted) the session's client id, and folds them
    /// into its record when `enabled`; a finished MQTT session's record goes to `finished`.
    pub(super) fn fold(&mut self, enabled: bool, events: &mut [Event], finished: &mut Vec<SessionRecord>) {
        for e in events.iter_mut() {
            self.record.carry_client_id(e);
        }
        if !enabled {
            return;
        }
        for e in events.iter() {
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
        if seg.syn {
            self.reasm.get_mut(from).on_syn(seg.seq);
            if from == Side::Client {
                self.client_isn = Some(seg.seq);
            }
        }
        self.saw_payload |= seg.wire_len > 0;
        if seg.wire_len > 0 && self.session.is_closed() {
            // Written into a connection its session already closed (a half-closed socket).
            ctx.counters.segments_after_close += 1;
        }
        let Conn { key, id, session, reasm, stack, decoders, saw_mqtt, transport, .. } = self;
        let mut up = ToMqtt { decoders, session, saw_mqtt, transport, key: *key, id: *id, ctx };
        if seg.wire_len > 0 {
            let seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
            let outcome = reasm
                .get_mut(from)
                .on_segment(seq, seg.payload, seg.wire_len, &mut |chunk| tcp_chunk(from, chunk, stack, &mut up));
            let counters = &mut up.ctx.counters;
            match outcome {
                Outcome::Retransmission => counters.retransmissions += 1,
                Outcome::OutOfOrder => counters.out_of_order += 1,
                Outcome::OutOfWindow => counters.out_of_window += 1,
                Outcome::InOrder | Outcome::Empty => {}
            }
        }
        if let Some(ack) = seg.ack {
            let side = from.peer();
            reasm.get_mut(side).on_peer_ack(ack, &mut |chunk| tcp_chunk(side, chunk, stack, &mut up));
        }
        if seg.fin || seg.rst {
            let this = reasm.get_mut(from);
            this.flush(&mut |chunk| tcp_chunk(from, chunk, stack, &mut up));
            if seg.fin {
                let data_start = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
                this.on_fin(data_start.wrapping_add(seg.wire_len));
            }
            self.tcp_close(from, seg.rst, ctx);
        }
    }

    /// In-order bytes of `from`'s stream from a stream source (the layer above the transport:
    /// they skip reassembly and the stack).
    pub(super) fn on_stream(&mut self, from: Side, input: StreamInput<'_>, ctx: &mut Ctx<'_>) {
        self.last_seen = ctx.now;
        let carries = input.carries();
        let chunk = match input {
            StreamInput::Data(bytes) => Chunk::Data(bytes),
            StreamInput::Lost(n) => Chunk::Gap(n),
            StreamInput::Hidden(_) => {
                self.saw_payload |= carries;
                return;
            }
        };
        if self.done {
            if carries {
                ctx.counters.stray_segments += 1;
            }
            return;
        }
        if !carries {
            return;
        }
        if !self.saw_payload && self.transport.is_tls() && matches!(chunk, Chunk::Data(_)) {
            // A source above TLS (the eBPF probes) reads the plaintext: as decrypted.
            ctx.emit(self.key, self.id, ctx.now, EventKind::TlsKeys { decrypted: true, reason: None });
        }
        self.saw_payload = true;
        let Conn { key, id, session, decoders, saw_mqtt, transport, .. } = self;
        let mut up = ToMqtt { decoders, session, saw_mqtt, transport, key: *key, id: *id, ctx };
        tcp_chunk(from, chunk, &mut Stack::Plain, &mut up);
    }

    /// The transport a stream source reports for this connection, once.
    pub(super) fn adopt_transport(&mut self, transport: Transport, ctx: &mut Ctx<'_>) {
        if self.transport == Transport::Unknown && !self.done {
            self.transport = transport;
            ctx.emit(self.key, self.id, ctx.now, EventKind::Transport { transport });
        }
    }

    /// A TCP state change from a stream source.
    pub(super) fn on_tcp(&mut self, change: TcpChange, ctx: &mut Ctx<'_>) {
        self.last_seen = ctx.now;
        match change {
            TcpChange::Established | TcpChange::Joined => {}
            TcpChange::Fin(by) if !self.done => self.tcp_close(by, false, ctx),
            TcpChange::Rst(by) if !self.done => self.tcp_close(by, true, ctx),
            TcpChange::CloseNotify(by) if !self.done => {
                let (key, id, now, cfg, hidden) = (self.key, self.id, ctx.now, ctx.cfg, self.not_visible);
                let mut emit = |ts, kind| {
                    if !(hidden && matches!(kind, EventKind::CloseWithoutDisconnect { .. })) {
                        ctx.emit(key, id, ts, kind)
                    }
                };
                self.session.on_transport_close(now, CloseKind::CloseNotify, by, None, cfg, &mut emit);
            }
            TcpChange::NotVisible if !self.done && !self.session.connected() && !self.not_visible => {
                // What it carried could not be read: a DISCONNECT may have passed unseen.
                self.not_visible = true;
                ctx.emit(
                    self.key,
                    self.id,
                    ctx.now,
                    EventKind::TlsKeys { decrypted: false, reason: Some("not_visible") },
                );
            }
            TcpChange::Fin(_) | TcpChange::Rst(_) | TcpChange::CloseNotify(_) | TcpChange::NotVisible => {}
        }
    }

    /// A FIN (or, with `rst`, an RST) from `from`.
    fn tcp_close(&mut self, from: Side, rst: bool, ctx: &mut Ctx<'_>) {
        let (key, id) = (self.key, self.id);
        let kind = if rst { CloseKind::Rst } else { CloseKind::Fin };
        let hidden = self.not_visible;
        self.session.on_tcp_close(ctx.now, kind, from, ctx.cfg, &mut |ts, kind| {
            if !(hidden && matches!(kind, EventKind::CloseWithoutDisconnect { .. })) {
                ctx.emit(key, id, ts, kind)
            }
        });
        match (rst, from) {
            (true, _) => (self.fin_client, self.fin_broker) = (true, true),
            (false, Side::Client) => self.fin_client = true,
            (false, Side::Broker) => self.fin_broker = true,
        }
    }

    /// Bytes this connection holds.
    fn buffered(&self) -> usize {
        self.reasm.client.buffered()
            + self.reasm.broker.buffered()
            + self.stack.buffered()
            + self.decoders.client.buffered()
            + self.decoders.broker.buffered()
    }

    /// Brings the total buffered count up to date with this connection.
    pub(super) fn account(&mut self, counters: &mut TrackerCounters) {
        let now = self.buffered();
        counters.buffered_bytes = counters.buffered_bytes + now as u64 - self.accounted as u64;
        self.accounted = now;
    }

    /// Gives up every hole in both directions (their stored bytes are delivered after gaps).
    fn give_up_holes(&mut self, ctx: &mut Ctx<'_>) {
        let Conn { key, id, session, reasm, stack, decoders, saw_mqtt, transport, .. } = self;
        let mut up = ToMqtt { decoders, session, saw_mqtt, transport, key: *key, id: *id, ctx };
        for side in [Side::Client, Side::Broker] {
            reasm.get_mut(side).flush(&mut |chunk| tcp_chunk(side, chunk, stack, &mut up));
        }
    }

    /// Under memory pressure: gives up holes and drops bytes held while hunting for framing.
    pub(super) fn shed(&mut self, ctx: &mut Ctx<'_>) {
        self.give_up_holes(ctx);
        self.decoders.client.shed();
        self.decoders.broker.shed();
    }

    /// Both sides sent FIN, or one sent RST.
    pub(super) fn fully_closed(&self) -> bool {
        self.fin_client && self.fin_broker
    }

    pub(super) fn eviction_deadline(&self, cfg: &TrackerConfig) -> Timestamp {
        let idle = if !self.done && self.session.is_closed() && !self.fully_closed() {
            // Half-closed: the other side may still write (a frozen client after the broker's
            // FIN); the connection keeps its identity as long as Linux keeps such a socket.
            cfg.linger.max(HALF_CLOSED_LINGER)
        } else if self.done || self.session.is_closed() {
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
        // An MQTT session: a CONNECT was seen, or other MQTT packets (joined mid-stream, or
        // the CONNECT lost: a broker's CONNACK is MQTT too), or TLS on the MQTT port (its
        // records are the session, keys or not).
        let mqtt = session.connected() || self.saw_mqtt || self.transport.is_tls();
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

/// Hands one chunk of `side`'s TCP stream to the stack, and what comes out of it to the MQTT
/// decoders. A gap in the TCP stream is counted and reported here, in TCP bytes, whatever it
/// means to the layers; a gap in the client's stream is client activity.
fn tcp_chunk(side: Side, chunk: Chunk<'_>, stack: &mut Stack, up: &mut ToMqtt<'_, '_>) {
    let layers = up.ctx.layers;
    let Chunk::Gap(bytes) = chunk else { return stack.feed(side, chunk, up, layers) };
    up.ctx.counters.gaps += 1;
    up.ctx.counters.gap_bytes = up.ctx.counters.gap_bytes.saturating_add(bytes);
    up.emit(up.ctx.now, EventKind::Gap { side, bytes });
    stack.feed(side, chunk, up, layers);
    if side == Side::Client {
        let (key, id, ctx) = (up.key, up.id, &mut *up.ctx);
        up.session.on_client_activity(ctx.now, ctx.cfg, &mut |ts, kind| ctx.emit(key, id, ts, kind));
    }
}

/// The top of a connection's byte path: each side's MQTT decoder and the session, and what the
/// transport layers report.
struct ToMqtt<'a, 'c> {
    decoders: &'a mut Sides<StreamDecoder>,
    session: &'a mut Session,
    saw_mqtt: &'a mut bool,
    transport: &'a mut Transport,
    key: FlowKey,
    id: SessionId,
    ctx: &'a mut Ctx<'c>,
}

impl ToMqtt<'_, '_> {
    fn emit(&mut self, ts: Timestamp, kind: EventKind) {
        self.ctx.emit(self.key, self.id, ts, kind);
    }
}

impl Up for ToMqtt<'_, '_> {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        let ToMqtt { decoders, session, saw_mqtt, key, id, ctx, .. } = self;
        decoders.get_mut(side).feed(bytes, &mut |ev| on_stream_event(side, ev, session, saw_mqtt, *key, *id, ctx));
    }

    fn gap(&mut self, side: Side, len: u64) {
        let ToMqtt { decoders, session, saw_mqtt, key, id, ctx, .. } = self;
        decoders.get_mut(side).gap(len, &mut |ev| on_stream_event(side, ev, session, saw_mqtt, *key, *id, ctx));
    }

    fn event(&mut self, side: Side, event: LayerEvent) {
        match event {
            LayerEvent::Transport(t) => {
                *self.transport = t;
                self.emit(self.ctx.now, EventKind::Transport { transport: t });
            }
            LayerEvent::Tls(e) => self.tls(side, e),
            LayerEvent::WebSocket(e) => self.websocket(side, e),
        }
    }
}

impl ToMqtt<'_, '_> {
    /// What the TLS layer saw: handshake facts and keys become events; an undecrypted client
    /// record is client activity, and one the size of a 2-byte MQTT packet is an inferred
    /// PINGREQ (PINGRESP from the broker); close_notify closes the session.
    fn tls(&mut self, side: Side, e: TlsEvent) {
        let now = self.ctx.now;
        match e {
            TlsEvent::ClientHello { sni, alpn, .. } => self.emit(now, EventKind::TlsClientHello { sni, alpn }),
            TlsEvent::ServerHello { version, suite, .. } => {
                let suite = tls::suite_name(suite).map_or_else(|| format!("0x{suite:04x}"), str::to_string);
                self.emit(now, EventKind::TlsServerHello { version: tls::version_name(version), suite });
            }
            TlsEvent::Decrypting { .. } => self.emit(now, EventKind::TlsKeys { decrypted: true, reason: None }),
            TlsEvent::Encrypted { reason } => {
                self.emit(now, EventKind::TlsKeys { decrypted: false, reason: Some(reason.as_str()) })
            }
            TlsEvent::Opaque { content_type, plaintext_len, .. } => {
                let (key, id, ctx) = (self.key, self.id, &mut *self.ctx);
                let (cfg, mut emit) = (ctx.cfg, |ts, kind| ctx.emit(key, id, ts, kind));
                // A 2-byte record is a PINGREQ from the client; from the broker, a PINGRESP only
                // when one is awaited (else more likely an alert: TLS 1.3 alerts are that size).
                let ping_sized = content_type == 23 && plaintext_len == Some(2);
                if ping_sized && (side == Side::Client || self.session.ping_outstanding()) {
                    let ping = if side == Side::Client { PacketType::PingReq } else { PacketType::PingResp };
                    let packet = Packet {
                        header: FixedHeader { packet_type: ping, flags: 0, remaining: 0, header_len: 2 },
                        body: Body::None,
                        damaged: false,
                    };
                    match side {
                        Side::Client => self.session.on_client_packet(now, &packet, cfg, &mut emit),
                        Side::Broker => self.session.on_broker_packet(now, &packet, cfg, &mut emit),
                    }
                } else if side == Side::Client {
                    self.session.on_client_activity(now, cfg, &mut emit);
                }
            }
            TlsEvent::Alert { alert, .. } => {
                self.emit(
                    now,
                    EventKind::TlsAlert {
                        side,
                        alert: alert.name(),
                        level: alert.level,
                        description: alert.description,
                    },
                );
                if alert.is_close_notify() {
                    self.transport_close(CloseKind::CloseNotify, side, None);
                }
            }
            TlsEvent::DecryptFailed { .. } => {
                self.transport_error(side, "tls", "a record did not decrypt (bad tag)".into())
            }
            TlsEvent::Error(e) => self.transport_error(side, "tls", e.to_string()),
            TlsEvent::KeyUpdate { .. } | TlsEvent::RecordLost { .. } | TlsEvent::Resync { .. } => {}
        }
    }

    /// What the WebSocket layer saw: the upgrade and control frames become events; a close
    /// frame closes the session.
    fn websocket(&mut self, side: Side, e: WsEvent) {
        let now = self.ctx.now;
        match e {
            WsEvent::Request(r) => self.emit(now, EventKind::WsUpgrade { path: r.path, protocol: r.protocol }),
            WsEvent::Accepted { protocol, .. } => self.emit(now, EventKind::WsResponse { status: 101, protocol }),
            WsEvent::Refused { status, .. } => self.emit(now, EventKind::WsResponse { status, protocol: None }),
            WsEvent::Ping { .. } => self.emit(now, EventKind::WsControl { side, frame: "ping", close_code: None }),
            WsEvent::Pong { .. } => self.emit(now, EventKind::WsControl { side, frame: "pong", close_code: None }),
            WsEvent::Close { code, .. } => {
                self.emit(now, EventKind::WsControl { side, frame: "close", close_code: code });
                self.transport_close(CloseKind::WsClose, side, code);
            }
            WsEvent::Text { len } => self.transport_error(
                side,
                "websocket",
                format!("text frame of {len} bytes (MQTT over WebSocket is binary)"),
            ),
            WsEvent::Error(e) => self.transport_error(side, "websocket", e.to_string()),
            WsEvent::Resync { .. } => {}
        }
    }

    fn transport_close(&mut self, kind: CloseKind, by: Side, code: Option<u16>) {
        let (key, id, ctx) = (self.key, self.id, &mut *self.ctx);
        let now = ctx.now;
        let (cfg, mut emit) = (ctx.cfg, |ts, kind| ctx.emit(key, id, ts, kind));
        self.session.on_transport_close(now, kind, by, code, cfg, &mut emit);
    }

    fn transport_error(&mut self, side: Side, layer: &'static str, reason: String) {
        self.ctx.counters.malformed += 1;
        self.emit(self.ctx.now, EventKind::TransportError { side, layer, reason });
    }
}

/// What the MQTT decoder of `side` found: packets drive the session; malformed bytes and
/// resynchronisations are counted and reported.
fn on_stream_event(
    side: Side,
    ev: StreamEvent,
    session: &mut Session,
    saw_mqtt: &mut bool,
    key: FlowKey,
    id: SessionId,
    ctx: &mut Ctx<'_>,
) {
    let now = ctx.now;
    match ev {
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
    }
}

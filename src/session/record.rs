//! What the report says about one session, folded from the session's events.
//!
//! Contract: a [`RecordState`] is fed every event of one session in order
//! ([`RecordState::apply`]) and turned into the output [`SessionRecord`] at the session's end
//! ([`RecordState::finish`]) or at any time before it ([`RecordState::snapshot`]). It is the only
//! place records are made, for `analyze` and for the live agent's `/sessions` alike.
//!
//! The state is kept small because a tracker holds one per open connection (a million open
//! sessions must fit in a few hundred megabytes): the CONNECT and CONNACK events every session
//! has are not stored but rebuilt from the fields they set (their place in the event list is
//! remembered), and everything most sessions never need (further events, round trips after the
//! first, the close and the enforcement audit) lives in one box allocated on first use.

use super::event::{dur_secs, round_us, secs};
use super::{CloseKind, Event, EventKind, SessionId, Verdict};
use crate::flow::Side;
use crate::layer::Transport;
pub(crate) use crate::model::times::opt_secs;
use crate::model::times::{Rfc3339, opt_rfc3339};
use crate::mqtt::Protocol;
use crate::session::event::FlowKeyJson;
use crate::time::{Timestamp, expiry_span};
use compact_str::CompactString;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Most events listed per session; the rest are counted in `events_dropped`.
pub const MAX_EVENTS_PER_SESSION: usize = 1000;

/// A session's event, as listed under the session (its addresses are the session's).
#[derive(Clone, Debug, Serialize)]
pub struct SessionEvent {
    #[serde(serialize_with = "secs")]
    pub ts: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// `{min, median, max}` of a session's ping round trips, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct RttSummary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// How the session ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CloseRecord {
    /// A [`CloseKind`] name, or "open" when the capture ended first.
    pub kind: &'static str,
    pub by: Option<Side>,
    pub after_silence_s: Option<f64>,
    /// The MQTT 5 DISCONNECT reason code, or the WebSocket close frame's status code.
    pub reason_code: Option<u16>,
}

impl CloseRecord {
    /// The `kind` of a session still open (the other kinds are [`CloseKind`] names).
    pub const OPEN_KIND: &str = "open";
    const OPEN: CloseRecord = CloseRecord { kind: Self::OPEN_KIND, by: None, after_silence_s: None, reason_code: None };

    /// True for a close without an MQTT DISCONNECT (FIN, RST, TLS close_notify, WebSocket close:
    /// the broker publishes the Will); a refused connection never began and is not one.
    pub fn without_disconnect(&self) -> bool {
        ![Self::OPEN_KIND, CloseKind::Disconnect.as_str(), CloseKind::Refused.as_str()].contains(&self.kind)
    }
}

/// The enforcement audit of an expired session.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct EnforcementRecord {
    pub verdict: Verdict,
    pub lag_s: Option<f64>,
}

/// Everything the report says about one session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub client: SocketAddr,
    pub broker: SocketAddr,
    /// What carries the MQTT: `tcp`, `tls`, `websocket`, `websocket+tls` (`unknown`: no data).
    pub transport: Transport,
    pub client_id: Option<String>,
    pub protocol: Option<Protocol>,
    /// Declared in CONNECT.
    pub keepalive_s: Option<u16>,
    /// MQTT 5 Server Keep Alive from CONNACK.
    pub server_keepalive_s: Option<u16>,
    pub effective_keepalive_s: Option<u16>,
    /// For sessions joined mid-stream: the median PINGREQ interval, rounded. Never used for verdicts.
    pub inferred_keepalive_s: Option<u32>,
    /// 1.5 x effective keepalive: the silence after which the session expires.
    pub expiry_s: Option<f64>,
    pub will: Option<bool>,
    /// The first CONNACK's return/reason code (0: accepted).
    pub connack_code: Option<u8>,
    /// The broker refused the connection (a non-zero CONNACK code, or a close right after a
    /// CONNECT it never answered): the session never began.
    pub refused: bool,
    pub mid_stream: bool,
    #[serde(serialize_with = "secs")]
    pub started: Timestamp,
    /// `started` as RFC 3339 (UTC).
    pub started_utc: Rfc3339,
    #[serde(serialize_with = "opt_secs")]
    pub ended: Option<Timestamp>,
    /// `ended` as RFC 3339 (UTC).
    #[serde(serialize_with = "opt_rfc3339")]
    pub ended_utc: Option<Rfc3339>,
    /// When the session closed (its first DISCONNECT, FIN, RST, TLS close_notify or WebSocket
    /// close): `ended` is the connection's last packet, which may come later (a frozen client's
    /// late FIN). Absent while open.
    #[serde(serialize_with = "opt_secs")]
    pub closed: Option<Timestamp>,
    /// `closed` as RFC 3339 (UTC).
    #[serde(serialize_with = "opt_rfc3339")]
    pub closed_utc: Option<Rfc3339>,
    pub pingreq: u64,
    pub pingresp: u64,
    pub pings_unanswered: u64,
    pub ping_rtt_ms: Option<RttSummary>,
    #[serde(serialize_with = "dur_secs")]
    pub max_silence_s: Duration,
    /// Longest silence / effective keepalive: above 1.5 the session expired.
    pub headroom: Option<f64>,
    pub expired: bool,
    pub close: CloseRecord,
    pub enforcement: Option<EnforcementRecord>,
    pub gaps: u64,
    pub malformed: u64,
    /// Open sessions (the live agent's `/sessions`): the client's last activity, its silence
    /// since, and its deadline (passed already when `expired`: a broker that has not closed it).
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_s: Option<f64>,
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// TLS sessions: the handshake's facts and whether the records were decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRecord>,
    /// WebSocket sessions: the upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketRecord>,
    pub events: Vec<SessionEvent>,
    pub events_dropped: u64,
    /// Every ping round trip (for the capture's percentiles).
    #[serde(skip)]
    pub rtts: Vec<Duration>,
}

/// What a TLS session showed of itself.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TlsRecord {
    pub version: Option<String>,
    pub suite: Option<String>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The records were decrypted with the key log, or the eBPF probes read the plaintext: the
    /// session's fields come from its MQTT.
    /// When false, the pings were inferred from record sizes (a 2-byte MQTT packet) and any
    /// client record counted as activity.
    pub decrypted: bool,
    /// Why the records stay encrypted.
    pub encrypted_reason: Option<&'static str>,
}

/// What a WebSocket session showed of its upgrade.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WebSocketRecord {
    pub path: Option<String>,
    /// `Sec-WebSocket-Protocol` (as accepted, else as asked for).
    pub protocol: Option<String>,
    /// The broker's answer (101: accepted).
    pub status: Option<u16>,
}

impl SessionRecord {
    /// The record of an open session at `now`, with its last activity, silence and deadline.
    /// The silence going on now counts towards `max_silence_s` and `headroom`, so an open,
    /// expired session's longest silence is at least the one that expired it.
    pub fn at(mut self, now: Timestamp, last_activity: Timestamp, deadline: Option<Timestamp>) -> Self {
        let silence = now.since(last_activity);
        self.last_activity = Some(last_activity);
        self.silence_s = Some(round_us(silence.as_secs_f64()));
        self.deadline = deadline;
        if silence > self.max_silence_s {
            self.max_silence_s = silence;
            if let Some(k) = self.effective_keepalive_s.filter(|k| *k > 0) {
                self.headroom = Some(round_us(silence.as_secs_f64() / f64::from(k)));
            }
        }
        self
    }

    /// Severity for ordering the text table, highest first.
    pub(crate) fn severity(&self) -> u8 {
        match (self.expired, self.enforcement.map(|e| e.verdict)) {
            (true, Some(Verdict::NotEnforced)) => 6,
            (true, Some(Verdict::Late)) => 5,
            (true, _) => 4,
            _ if self.pings_unanswered > 0 => 3,
            (false, Some(Verdict::Early)) => 2,
            _ if self.close.without_disconnect() => 1,
            _ => 0,
        }
    }
}

/// The parts of a record most sessions never need.
#[derive(Clone, Debug, Default)]
struct Extras {
    /// Listed events other than the first CONNECT and CONNACK.
    events: Vec<SessionEvent>,
    events_dropped: u64,
    /// Round trips after the first.
    rtts: Vec<Duration>,
    /// PINGREQ times of a session without CONNECT (to infer its keepalive).
    pingreq_times: Vec<Timestamp>,
    close: Option<CloseRecord>,
    /// When the close happened.
    closed: Option<Timestamp>,
    enforcement: Option<EnforcementRecord>,
    gaps: u64,
    malformed: u64,
    pings_unanswered: u64,
}

const NO_RTT: u32 = u32::MAX;

/// Bits of [`RecordState::flags`].
mod flag {
    pub const MID_STREAM: u16 = 1;
    pub const EXPIRED: u16 = 1 << 1;
    pub const WILL: u16 = 1 << 2;
    pub const CLEAN_START: u16 = 1 << 3;
    pub const HAS_KEEPALIVE: u16 = 1 << 4;
    pub const HAS_SERVER_KEEPALIVE: u16 = 1 << 5;
    pub const HAS_EFFECTIVE: u16 = 1 << 6;
    pub const HAS_CONNACK: u16 = 1 << 7;
    /// A CONNECT was seen (its client id is `client_id`, which may be none).
    pub const CONNECTED: u16 = 1 << 8;
}

/// The events a [`RecordState`] lists without storing them: rebuilt from its fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rebuilt {
    /// The first CONNECT.
    Connect,
    /// The first CONNACK.
    Connack,
    /// The first keepalive expiry.
    Expiry,
}

const REBUILT: [Rebuilt; 3] = [Rebuilt::Connect, Rebuilt::Connack, Rebuilt::Expiry];
/// `RecordState::at` value of an event that is not listed by rebuilding.
const NOT_LISTED: u16 = u16::MAX;

/// A session's record while it is being folded. See the module doc for its layout.
#[derive(Clone, Debug)]
pub struct RecordState {
    client_id: Option<CompactString>,
    extras: Option<Box<Extras>>,
    started: Timestamp,
    /// The first ping round trip in nanoseconds ([`NO_RTT`]: none yet; one of 4.3 s or more
    /// goes with the rest).
    first_rtt_ns: u32,
    /// The client's last activity before the first expiry (whose deadline is this plus 1.5 x
    /// `expiry_keepalive`).
    expiry_last_activity: Timestamp,
    /// Times of the first CONNECT and CONNACK, in nanoseconds after `started`.
    connect_after_ns: u32,
    connack_after_ns: u32,
    pingreq: u32,
    pingresp: u32,
    keepalive: u16,
    server_keepalive: u16,
    effective: u16,
    /// The keepalive the first expiry was counted with.
    expiry_keepalive: u16,
    /// Places in the listed events of the rebuilt ones, by [`Rebuilt`] ([`NOT_LISTED`]: none).
    at: [u16; 3],
    protocol: Option<Protocol>,
    connack_code: u8,
    transport: Transport,
    flags: u16,
}

impl RecordState {
    /// The record of a session that started at `started`.
    pub fn new(started: Timestamp, mid_stream: bool) -> Self {
        RecordState {
            client_id: None,
            extras: None,
            started,
            first_rtt_ns: NO_RTT,
            expiry_last_activity: started,
            connect_after_ns: 0,
            connack_after_ns: 0,
            pingreq: 0,
            pingresp: 0,
            keepalive: 0,
            server_keepalive: 0,
            effective: 0,
            expiry_keepalive: 0,
            at: [NOT_LISTED; 3],
            protocol: None,
            connack_code: 0,
            transport: Transport::Unknown,
            flags: if mid_stream { flag::MID_STREAM } else { 0 },
        }
    }

    fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    fn set(&mut self, f: u16, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    fn opt(&self, f: u16, v: u16) -> Option<u16> {
        self.has(f).then_some(v)
    }

    fn set_opt(&mut self, f: u16, field: fn(&mut Self) -> &mut u16, v: Option<u16>) {
        self.set(f, v.is_some());
        *field(self) = v.unwrap_or(0);
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    fn stored_events(&self) -> usize {
        self.extras.as_ref().map_or(0, |x| x.events.len())
    }

    fn listed_as(&self, r: Rebuilt) -> Option<usize> {
        let at = self.at[r as usize];
        (at != NOT_LISTED).then_some(usize::from(at))
    }

    /// Events listed so far (stored and rebuilt).
    fn listed(&self) -> usize {
        self.stored_events() + self.at.iter().filter(|a| **a != NOT_LISTED).count()
    }

    /// True once the session has shown MQTT (a CONNECT, or pings joined mid-stream).
    pub fn shows_mqtt(&self) -> bool {
        self.protocol.is_some() || self.pingreq + self.pingresp > 0
    }

    /// Folds one event of this session (`session_end` is for [`RecordState::finish`]).
    pub fn apply(&mut self, e: &Event) {
        let started = self.started;
        let after_start = |ts: Timestamp| u32::try_from(ts.as_nanos().wrapping_sub(started.as_nanos())).ok();
        let mut rebuild = None;
        match &e.kind {
            EventKind::SessionStart { .. } | EventKind::SessionEnd { .. } => return,
            EventKind::Transport { transport } => {
                self.transport = *transport; // a field of the record, not a listed event
                return;
            }
            EventKind::Connect { protocol, keepalive_s, client_id, clean_start, will } => {
                self.protocol = Some(*protocol);
                self.set_opt(flag::HAS_KEEPALIVE, |s| &mut s.keepalive, Some(*keepalive_s));
                self.set_opt(flag::HAS_EFFECTIVE, |s| &mut s.effective, Some(*keepalive_s));
                self.client_id = client_id.as_deref().map(CompactString::from);
                self.set(flag::WILL, *will);
                if self.listed_as(Rebuilt::Connect).is_none()
                    && let Some(after) = after_start(e.ts)
                {
                    self.set(flag::CLEAN_START, *clean_start);
                    self.connect_after_ns = after;
                    rebuild = Some(Rebuilt::Connect);
                }
            }
            EventKind::Connack { code, server_keepalive_s, effective_keepalive_s } => {
                if !self.has(flag::HAS_CONNACK) {
                    self.flags |= flag::HAS_CONNACK;
                    self.connack_code = *code; // the first CONNACK's code: the one that counts
                }
                let changes = self.opt(flag::HAS_SERVER_KEEPALIVE, self.server_keepalive) != *server_keepalive_s
                    || self.opt(flag::HAS_EFFECTIVE, self.effective) != *effective_keepalive_s;
                if changes && self.listed_as(Rebuilt::Connack).is_some() {
                    // The listed first CONNACK is rebuilt from these fields: store it as it was.
                    self.materialize(Rebuilt::Connack);
                }
                self.set_opt(flag::HAS_SERVER_KEEPALIVE, |s| &mut s.server_keepalive, *server_keepalive_s);
                self.set_opt(flag::HAS_EFFECTIVE, |s| &mut s.effective, *effective_keepalive_s);
                if self.listed_as(Rebuilt::Connack).is_none()
                    && !self.has_stored_connack()
                    && let Some(after) = after_start(e.ts)
                {
                    self.connack_after_ns = after;
                    rebuild = Some(Rebuilt::Connack);
                }
            }
            EventKind::Pingreq => {
                self.pingreq = self.pingreq.saturating_add(1);
                if self.protocol.is_none() {
                    self.extras().pingreq_times.push(e.ts);
                }
                return;
            }
            EventKind::Pingresp { rtt_ms } => {
                self.pingresp = self.pingresp.saturating_add(1);
                match rtt_ms {
                    Some(rtt) if self.first_rtt_ns == NO_RTT && rtt.as_nanos() < u128::from(NO_RTT) => {
                        self.first_rtt_ns = rtt.as_nanos() as u32;
                    }
                    Some(rtt) => self.extras().rtts.push(*rtt),
                    None => {}
                }
                return;
            }
            EventKind::KeepaliveExpired { keepalive_s, last_activity } => {
                // A session's expiry is due 1.5 x keepalive after the last activity; only such a
                // one is rebuilt (any other is stored).
                if !self.has(flag::EXPIRED) && e.ts == last_activity.saturating_add(expiry_span(*keepalive_s)) {
                    self.expiry_last_activity = *last_activity;
                    self.expiry_keepalive = *keepalive_s;
                    rebuild = Some(Rebuilt::Expiry);
                }
                self.flags |= flag::EXPIRED;
            }
            EventKind::PingUnanswered { .. } => self.extras().pings_unanswered += 1,
            EventKind::Close { close, by, after_silence_s, reason_code } => {
                self.extras().closed = Some(e.ts);
                self.extras().close = Some(CloseRecord {
                    kind: close.as_str(),
                    by: Some(*by),
                    after_silence_s: Some(round_us(after_silence_s.as_secs_f64())),
                    reason_code: *reason_code,
                });
            }
            EventKind::CloseWithoutDisconnect { .. }
            | EventKind::Resync { .. }
            | EventKind::TlsClientHello { .. }
            | EventKind::TlsServerHello { .. }
            | EventKind::TlsKeys { .. }
            | EventKind::TlsAlert { .. }
            | EventKind::WsUpgrade { .. }
            | EventKind::WsResponse { .. }
            | EventKind::WsControl { .. } => {}
            EventKind::TransportError { .. } => self.extras().malformed += 1,
            EventKind::Enforcement { verdict, lag_s } => {
                let x = self.extras();
                if x.enforcement.is_none() {
                    x.enforcement = Some(EnforcementRecord { verdict: *verdict, lag_s: *lag_s });
                }
            }
            EventKind::Gap { .. } => self.extras().gaps += 1,
            EventKind::Malformed { .. } => self.extras().malformed += 1,
            // Only the live agent asks for these; its `/sessions` keeps the longest silence.
            EventKind::ClientActivity { .. } => return,
        }
        let listed = self.listed();
        if listed >= MAX_EVENTS_PER_SESSION {
            self.extras().events_dropped += 1;
        } else if let Some(r) = rebuild {
            self.at[r as usize] = listed as u16; // rebuilt at output; only its place is kept
        } else {
            self.extras().events.push(SessionEvent { ts: e.ts, kind: e.kind.clone() });
        }
    }

    /// True when a CONNACK was stored rather than rebuilt (it came too late to rebuild, or the
    /// rebuilt one was stored when a later CONNACK changed the fields): later ones are stored too.
    fn has_stored_connack(&self) -> bool {
        self.extras.as_ref().is_some_and(|x| x.events.iter().any(|e| matches!(e.kind, EventKind::Connack { .. })))
    }

    /// Stores a rebuilt event as it is now, in its place, and stops rebuilding it.
    fn materialize(&mut self, r: Rebuilt) {
        let Some(at) = self.listed_as(r) else { return };
        let event = self.rebuild(r);
        let rebuilt_before = REBUILT.iter().filter(|o| self.listed_as(**o).is_some_and(|a| a < at)).count();
        // The other rebuilt events keep their places: the stored event takes this one's.
        self.at[r as usize] = NOT_LISTED;
        self.extras().events.insert(at - rebuilt_before, event);
    }

    /// A rebuilt event from the fields.
    fn rebuild(&self, r: Rebuilt) -> SessionEvent {
        let after = |ns: u32| self.started.saturating_add(Duration::from_nanos(u64::from(ns)));
        match r {
            Rebuilt::Connect => SessionEvent {
                ts: after(self.connect_after_ns),
                kind: EventKind::Connect {
                    protocol: self.protocol.expect("a listed CONNECT set the protocol"),
                    keepalive_s: self.keepalive,
                    client_id: self.client_id.as_ref().map(|c| c.to_string()),
                    clean_start: self.has(flag::CLEAN_START),
                    will: self.has(flag::WILL),
                },
            },
            Rebuilt::Connack => SessionEvent {
                ts: after(self.connack_after_ns),
                kind: EventKind::Connack {
                    code: self.connack_code,
                    server_keepalive_s: self.opt(flag::HAS_SERVER_KEEPALIVE, self.server_keepalive),
                    effective_keepalive_s: self.opt(flag::HAS_EFFECTIVE, self.effective),
                },
            },
            Rebuilt::Expiry => SessionEvent {
                ts: self.expiry_last_activity.saturating_add(expiry_span(self.expiry_keepalive)),
                kind: EventKind::KeepaliveExpired {
                    keepalive_s: self.expiry_keepalive,
                    last_activity: self.expiry_last_activity,
                },
            },
        }
    }

    /// The record of a session still open (derived fields from what has been seen so far),
    /// with the longest client silence so far.
    pub fn snapshot(&self, id: SessionId, flow: FlowKeyJson, max_silence: Duration) -> SessionRecord {
        self.record(id, flow, None, max_silence)
    }

    /// Keeps the client id of the session's CONNECT (records or not: the state is the one
    /// place a session's client id is kept), and gives it to the event.
    #[inline]
    pub fn carry_client_id(&mut self, e: &mut Event) {
        if let EventKind::Connect { client_id, .. } = &e.kind {
            self.client_id = client_id.as_deref().map(CompactString::from);
            self.flags |= flag::CONNECTED;
        }
        if self.has(flag::CONNECTED) {
            e.client_id = Some(self.client_id.clone());
        }
    }

    /// The record of the session, ended by its `session_end` event `end` (another event gives a
    /// snapshot). Returns `None` for a connection that never carried MQTT. The state's optional
    /// parts are freed.
    pub fn finish(&mut self, end: &Event) -> Option<SessionRecord> {
        let record = match end.kind {
            EventKind::SessionEnd { mqtt: false, .. } => None,
            EventKind::SessionEnd { last_packet, max_silence_s, .. } => {
                Some(self.record(end.session, end.flow, Some(last_packet), max_silence_s))
            }
            _ => Some(self.snapshot(end.session, end.flow, Duration::ZERO)),
        };
        self.extras = None;
        record
    }

    fn record(
        &self,
        id: SessionId,
        flow: FlowKeyJson,
        ended: Option<Timestamp>,
        max_silence: Duration,
    ) -> SessionRecord {
        let empty = Extras::default();
        let x = self.extras.as_deref().unwrap_or(&empty);
        let first = (self.first_rtt_ns != NO_RTT).then(|| Duration::from_nanos(self.first_rtt_ns.into()));
        let mut rtts: Vec<Duration> = first.into_iter().chain(x.rtts.iter().copied()).collect();
        rtts.sort_unstable();
        let ms = |d: Duration| round_us(d.as_secs_f64() * 1e3);
        let ping_rtt_ms = (!rtts.is_empty()).then(|| RttSummary {
            min: ms(rtts[0]),
            median: ms(rtts[(rtts.len() - 1) / 2]),
            max: ms(rtts[rtts.len() - 1]),
        });
        let effective = self.opt(flag::HAS_EFFECTIVE, self.effective);
        let keepalive = effective.filter(|k| *k > 0);
        let inferred_keepalive_s = (x.pingreq_times.len() >= 2).then(|| {
            let mut intervals: Vec<Duration> = x.pingreq_times.windows(2).map(|w| w[1].since(w[0])).collect();
            intervals.sort_unstable();
            intervals[intervals.len() / 2].as_secs_f64().round() as u32
        });
        let events = self.events(x);
        SessionRecord {
            id,
            client: flow.client,
            broker: flow.broker,
            transport: self.transport,
            client_id: self.client_id.as_ref().map(|c| c.to_string()),
            protocol: self.protocol,
            keepalive_s: self.opt(flag::HAS_KEEPALIVE, self.keepalive),
            server_keepalive_s: self.opt(flag::HAS_SERVER_KEEPALIVE, self.server_keepalive),
            effective_keepalive_s: effective,
            inferred_keepalive_s,
            expiry_s: keepalive.map(|k| expiry_span(k).as_secs_f64()),
            will: self.protocol.map(|_| self.has(flag::WILL)),
            connack_code: self.has(flag::HAS_CONNACK).then_some(self.connack_code),
            refused: x.close.as_ref().is_some_and(|c| c.kind == CloseKind::Refused.as_str()),
            mid_stream: self.has(flag::MID_STREAM),
            started: self.started,
            started_utc: Rfc3339(self.started),
            ended,
            ended_utc: ended.map(Rfc3339),
            closed: x.closed,
            closed_utc: x.closed.map(Rfc3339),
            pingreq: self.pingreq.into(),
            pingresp: self.pingresp.into(),
            pings_unanswered: x.pings_unanswered,
            ping_rtt_ms,
            max_silence_s: max_silence,
            headroom: keepalive.map(|k| round_us(max_silence.as_secs_f64() / f64::from(k))),
            expired: self.has(flag::EXPIRED),
            close: x.close.clone().unwrap_or(CloseRecord::OPEN),
            enforcement: x.enforcement,
            gaps: x.gaps,
            malformed: x.malformed,
            last_activity: None,
            silence_s: None,
            deadline: None,
            tls: tls_record(self.transport, &events),
            websocket: websocket_record(self.transport, &events),
            events,
            events_dropped: x.events_dropped,
            rtts,
        }
    }

    /// The listed events: the stored ones with the rebuilt ones in their places.
    fn events(&self, x: &Extras) -> Vec<SessionEvent> {
        let total = self.listed();
        let mut stored = x.events.iter();
        (0..total)
            .filter_map(|i| match REBUILT.into_iter().find(|r| self.listed_as(*r) == Some(i)) {
                Some(r) => Some(self.rebuild(r)),
                None => stored.next().cloned(),
            })
            .collect()
    }
}

/// The TLS facts of a TLS session, from its listed events.
fn tls_record(transport: Transport, events: &[SessionEvent]) -> Option<TlsRecord> {
    if !transport.is_tls() {
        return None;
    }
    let mut t = TlsRecord::default();
    for e in events {
        match &e.kind {
            EventKind::TlsClientHello { sni, alpn } => (t.sni, t.alpn) = (sni.clone(), alpn.clone()),
            EventKind::TlsServerHello { version, suite } => {
                (t.version, t.suite) = (Some(version.clone()), Some(suite.clone()))
            }
            EventKind::TlsKeys { decrypted, reason } => (t.decrypted, t.encrypted_reason) = (*decrypted, *reason),
            _ => {}
        }
    }
    Some(t)
}

/// The upgrade of a WebSocket session, from its listed events.
fn websocket_record(transport: Transport, events: &[SessionEvent]) -> Option<WebSocketRecord> {
    if !matches!(transport, Transport::WebSocket | Transport::WebSocketTls) {
        return None;
    }
    let mut w = WebSocketRecord::default();
    for e in events {
        match &e.kind {
            EventKind::WsUpgrade { path, protocol } => (w.path, w.protocol) = (Some(path.clone()), protocol.clone()),
            EventKind::WsResponse { status, protocol } => {
                w.status = Some(*status);
                if protocol.is_some() {
                    w.protocol = protocol.clone();
                }
            }
            _ => {}
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: f64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session: 7, flow, kind, client_id: None }
    }

    fn connect(client_id: &str) -> EventKind {
        EventKind::Connect {
            protocol: Protocol::V5,
            keepalive_s: 60,
            client_id: Some(client_id.into()),
            clean_start: true,
            will: true,
        }
    }

    fn connack(code: u8) -> EventKind {
        EventKind::Connack { code, server_keepalive_s: Some(20), effective_keepalive_s: Some(20) }
    }

    fn malformed() -> EventKind {
        EventKind::Malformed { side: Side::Broker, packet_type: None, reason: "bad".into() }
    }

    fn end(ts: f64) -> Event {
        ev(
            ts,
            EventKind::SessionEnd {
                last_packet: Timestamp::from_secs_f64(ts),
                max_silence_s: Duration::from_secs(3),
                open: true,
                evicted: false,
                mqtt: true,
            },
        )
    }

    /// The listed events in order, as `(ts, kind name)`.
    fn listed(r: &SessionRecord) -> Vec<(f64, &'static str)> {
        r.events.iter().map(|e| (e.ts.as_secs_f64(), e.kind.as_str())).collect()
    }

    #[test]
    fn rebuilt_connect_and_connack_keep_their_place_among_stored_events() {
        let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
        for e in [
            ev(0.5, malformed()),
            ev(1.0, connect("dev-1")),
            ev(1.0, malformed()),
            ev(1.1, connack(0)),
            ev(1.2, connack(5)),
        ] {
            s.apply(&e);
        }
        let r = s.finish(&end(9.0)).unwrap();
        assert_eq!(
            listed(&r),
            [(0.5, "malformed"), (1.0, "connect"), (1.0, "malformed"), (1.1, "connack"), (1.2, "connack")]
        );
        let json = serde_json::to_value(&r.events).unwrap();
        assert_eq!(json[1]["client_id"], "dev-1");
        assert_eq!(json[1]["clean_start"], true);
        assert_eq!((json[3]["code"].as_u64(), json[4]["code"].as_u64()), (Some(0), Some(5)));
        assert_eq!(r.ended, Some(Timestamp::from_secs_f64(9.0)));
    }

    /// The listed events the plain way: every listed event stored as it came.
    fn naive(events: &[Event]) -> Vec<(f64, String)> {
        events
            .iter()
            .filter(|e| {
                !matches!(e.kind, EventKind::Pingreq | EventKind::Pingresp { .. } | EventKind::ClientActivity { .. })
            })
            .take(MAX_EVENTS_PER_SESSION)
            .map(|e| (e.ts.as_secs_f64(), serde_json::to_string(&e.kind).unwrap()))
            .collect()
    }

    fn expired(ts: f64, keepalive_s: u16, last: f64) -> Event {
        ev(ts, EventKind::KeepaliveExpired { keepalive_s, last_activity: Timestamp::from_secs_f64(last) })
    }

    #[test]
    fn rebuilt_events_equal_the_stored_ones_in_every_order() {
        let with_keepalive = |ts, server, effective| {
            ev(ts, EventKind::Connack { code: 0, server_keepalive_s: server, effective_keepalive_s: effective })
        };
        let scripts: Vec<Vec<Event>> = vec![
            // Typical: connect, connack, expiry.
            vec![ev(0.1, connect("a")), ev(0.2, connack(0)), expired(90.2, 60, 0.2)],
            // Expiry before the CONNACK, then a second expiry after the client resumed.
            vec![ev(0.1, connect("a")), expired(90.1, 60, 0.1), ev(91.0, connack(0)), expired(200.0, 20, 170.0)],
            // A second CONNACK that changes the keepalive: the first is kept as it was.
            vec![
                ev(0.1, connect("a")),
                with_keepalive(0.2, None, Some(60)),
                ev(0.3, malformed()),
                expired(90.2, 60, 0.2),
                with_keepalive(95.0, Some(10), Some(10)),
                with_keepalive(96.0, Some(10), Some(10)),
            ],
            // CONNECT too long after the start to rebuild (stored instead), CONNACK too.
            vec![ev(5.0, malformed()), ev(10.0, connect("late")), ev(10.5, connack(0)), ev(11.0, connack(2))],
            // An expiry not due 1.5 x keepalive after the last activity is stored, not rebuilt.
            vec![ev(0.1, connect("a")), ev(0.2, connack(0)), expired(50.0, 60, 0.2)],
            // Events before the first CONNECT.
            vec![ev(0.0, malformed()), ev(0.0, malformed()), ev(0.0, connect("b")), ev(0.0, connack(0))],
        ];
        for script in scripts {
            let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
            for e in &script {
                s.apply(e);
            }
            let r = s.finish(&end(300.0)).unwrap();
            let got: Vec<(f64, String)> =
                r.events.iter().map(|e| (e.ts.as_secs_f64(), serde_json::to_string(&e.kind).unwrap())).collect();
            assert_eq!(got, naive(&script), "{script:#?}");
        }
    }

    #[test]
    fn a_plain_session_needs_no_extras() {
        let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
        for e in [
            ev(0.1, connect("a")),
            ev(0.2, connack(0)),
            ev(5.0, EventKind::Pingreq),
            ev(5.002, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(2)) }),
        ] {
            s.apply(&e);
        }
        s.apply(&expired(95.0, 60, 5.0));
        assert!(s.extras.is_none(), "connect, connack, one ping and an expiry fit in the fixed part");
        let r = s.finish(&end(9.0)).unwrap();
        assert_eq!(listed(&r), [(0.1, "connect"), (0.2, "connack"), (95.0, "keepalive_expired")]);
        assert_eq!(r.ping_rtt_ms, Some(RttSummary { min: 2.0, median: 2.0, max: 2.0 }));
        assert_eq!(r.close.kind, "open");
        assert_eq!(r.headroom, Some(0.15));
    }

    #[test]
    fn the_event_list_is_capped() {
        let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
        s.apply(&ev(0.1, connect("a")));
        for i in 0..MAX_EVENTS_PER_SESSION + 5 {
            s.apply(&ev(1.0 + i as f64, malformed()));
        }
        let r = s.snapshot(7, ev(0.0, EventKind::Pingreq).flow, Duration::ZERO);
        assert_eq!(r.events.len(), MAX_EVENTS_PER_SESSION);
        assert_eq!(r.events_dropped, 6);
        assert_eq!(r.malformed, MAX_EVENTS_PER_SESSION as u64 + 5);
    }

    #[test]
    fn client_activity_is_not_listed() {
        let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
        s.apply(&ev(0.1, connect("a")));
        s.apply(&ev(3.0, EventKind::ClientActivity { silence_s: Duration::from_secs(3), keepalive_s: 60 }));
        let r = s.snapshot(7, ev(0.0, EventKind::Pingreq).flow, Duration::from_secs(3));
        assert_eq!(listed(&r), [(0.1, "connect")], "live-only events stay out of /sessions");
        assert_eq!(r.max_silence_s, Duration::from_secs(3));
    }

    #[test]
    fn non_mqtt_connections_give_no_record() {
        let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), true);
        let mut e = end(1.0);
        if let EventKind::SessionEnd { mqtt, .. } = &mut e.kind {
            *mqtt = false;
        }
        assert!(s.finish(&e).is_none());
    }
}

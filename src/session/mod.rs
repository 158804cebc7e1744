//! One MQTT session: its keepalive clock, pings, close and the enforcement audit.
//!
//! Contract: a [`Session`] changes only through its `on_*`, [`Session::poll`] and
//! [`Session::finish`] methods, each given the current packet time (`now`); it never reads a
//! clock. Every method first fires the timers due before `now`, so their events come out in time
//! order and carry their deadline as timestamp. Rules (README "Keepalive rules"):
//! - effective keepalive = CONNACK Server Keep Alive if present, else CONNECT keepalive; 0 = off;
//! - client activity = any MQTT packet from the client (or client bytes lost to a capture gap);
//! - deadline = last client activity + 1.5 x effective keepalive; passing it while open is
//!   `keepalive_expired`;
//! - a PINGREQ unanswered within the ping timeout, or outstanding at close, is `ping_unanswered`;
//! - the first DISCONNECT, FIN or RST closes the session; FIN/RST without DISCONNECT is
//!   `close_without_disconnect`; after a CONNACK with a non-zero code, or a broker close within
//!   [`REFUSAL_WITHOUT_CONNACK`] of a CONNECT never answered, the close is `refused` (no Will);
//! - after an expiry the broker's close is `on_time` (within the tolerance) or `late`; a client
//!   that goes on past deadline + tolerance, closes itself, or outlives the capture makes it
//!   `not_enforced`. A broker close after at least one keepalive of silence but before the
//!   deadline is `early`.

pub mod cause;
pub mod event;
pub mod record;
mod timers;

pub use event::{CloseKind, Event, EventKind, SessionId, Verdict};
pub use timers::KeepaliveClock;
use timers::{ClockKind, Enforcement, EnforcementKind, OutstandingPing, PingKind};

use crate::flow::Side;
use crate::mqtt::{Body, Packet, PacketType};
use crate::time::{Timestamp, expiry_span};
use std::time::Duration;

/// A broker close this soon after a CONNECT it never answered with a CONNACK is a refusal.
pub const REFUSAL_WITHOUT_CONNACK: Duration = Duration::from_secs(5);

/// Ping timeout when the keepalive is unknown or off.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for the rules.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Ping timeout; `None` means the effective keepalive (30 s when unknown or 0).
    pub ping_timeout: Option<Duration>,
    /// How long after the deadline a broker close still counts as on time.
    pub enforcement_tolerance: Duration,
    /// Emit a `client_activity` event at each client packet (for the silence-ratio metric).
    pub activity_events: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { ping_timeout: None, enforcement_tolerance: Duration::from_secs(1), activity_events: false }
    }
}

#[derive(Clone, Copy)]
enum Timer {
    Keepalive,
    Ping,
    Enforcement,
}

/// The state of one session. Kept small (a tracker holds one per open connection): the timers'
/// states are packed beside their times rather than held as enums with payloads.
#[derive(Clone, Debug)]
pub struct Session {
    /// The keepalive clock's time: the deadline when armed, the expiry when expired.
    clock_at: Timestamp,
    /// The expired deadline, while the enforcement is pending.
    enforcement_at: Timestamp,
    /// When the outstanding PINGREQ was sent.
    ping_sent: Timestamp,
    last_client: Timestamp,
    max_silence_ns: u64,
    declared: Option<u16>,
    effective: Option<u16>,
    clock_kind: ClockKind,
    enforcement_kind: EnforcementKind,
    ping_kind: PingKind,
    connected: bool,
    /// The first CONNACK's return/reason code.
    connack: Option<u8>,
    will: bool,
    /// After the first DISCONNECT, FIN or RST.
    closed: bool,
}

/// Where session events go: `(timestamp, what)`.
pub trait Emit: FnMut(Timestamp, EventKind) {}
impl<F: FnMut(Timestamp, EventKind)> Emit for F {}

impl Session {
    /// A session first seen at `now`.
    pub fn new(now: Timestamp) -> Self {
        Session {
            clock_at: now,
            enforcement_at: now,
            ping_sent: now,
            last_client: now,
            max_silence_ns: 0,
            declared: None,
            effective: None,
            clock_kind: ClockKind::Unknown,
            enforcement_kind: EnforcementKind::None,
            ping_kind: PingKind::None,
            connected: false,
            connack: None,
            will: false,
            closed: false,
        }
    }

    /// The longest client silence so far (the stretch still running is not counted).
    pub fn max_silence(&self) -> Duration {
        Duration::from_nanos(self.max_silence_ns)
    }

    /// A silence of `d`: the longest so far is kept.
    fn note_silence(&mut self, d: Duration) {
        self.max_silence_ns = self.max_silence_ns.max(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The effective keepalive, once known.
    pub fn effective_keepalive(&self) -> Option<u16> {
        self.effective
    }

    /// The client's last activity.
    pub fn last_activity(&self) -> Timestamp {
        self.last_client
    }

    /// The keepalive deadline: ahead while armed, passed while expired; none when unknown, off
    /// or closed.
    pub fn deadline(&self) -> Option<Timestamp> {
        match self.clock() {
            KeepaliveClock::Armed { deadline } => Some(deadline),
            KeepaliveClock::Expired { since } => Some(since),
            _ => None,
        }
    }

    /// True while a PINGREQ waits for its PINGRESP.
    pub fn ping_outstanding(&self) -> bool {
        self.ping().is_some_and(|p| !p.reported)
    }

    /// True once a CONNECT was seen.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// True after the first DISCONNECT, FIN or RST.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// An MQTT packet from the client.
    pub fn on_client_packet(&mut self, now: Timestamp, pkt: &Packet, cfg: &SessionConfig, out: &mut impl Emit) {
        self.poll(now, cfg, out);
        if self.closed {
            return;
        }
        self.client_activity(now, cfg, out);
        match (&pkt.body, pkt.header.packet_type) {
            (Body::Connect(c), _) if !self.connected => {
                self.connected = true;
                self.declared = Some(c.keepalive);
                self.effective = Some(c.keepalive);
                self.will = c.will;
                self.set_clock(self.armed_from(now));
                out(
                    now,
                    EventKind::Connect {
                        protocol: c.protocol,
                        keepalive_s: c.keepalive,
                        client_id: c.client_id.clone(),
                        clean_start: c.clean_start,
                        will: c.will,
                    },
                );
            }
            (_, PacketType::Connect) => self.connected = true,
            (_, PacketType::PingReq) => {
                if self.ping().is_none_or(|p| p.reported) {
                    self.set_ping(Some(OutstandingPing { sent: now, reported: false }));
                }
                out(now, EventKind::Pingreq);
            }
            (body, PacketType::Disconnect) => {
                self.close(now, CloseKind::Disconnect, Side::Client, reason_code(body), cfg, out);
            }
            _ => {}
        }
    }

    /// An MQTT packet from the broker.
    pub fn on_broker_packet(&mut self, now: Timestamp, pkt: &Packet, cfg: &SessionConfig, out: &mut impl Emit) {
        self.poll(now, cfg, out);
        if self.closed {
            return;
        }
        match (&pkt.body, pkt.header.packet_type) {
            (Body::ConnAck(ack), _) => {
                self.connack.get_or_insert(ack.code);
                if ack.server_keepalive.is_some() {
                    self.effective = ack.server_keepalive;
                }
                if self.connack != Some(0) {
                    // Refused: the session never begins, so its keepalive never runs.
                    self.set_clock(KeepaliveClock::Stopped);
                } else if matches!(
                    self.clock(),
                    KeepaliveClock::Armed { .. } | KeepaliveClock::Unknown | KeepaliveClock::Disabled
                ) {
                    self.set_clock(self.armed_from(self.last_client));
                }
                out(
                    now,
                    EventKind::Connack {
                        code: ack.code,
                        server_keepalive_s: ack.server_keepalive,
                        effective_keepalive_s: self.effective,
                    },
                );
            }
            (_, PacketType::PingResp) => {
                let rtt = self.ping().map(|p| now.since(p.sent));
                self.set_ping(None);
                out(now, EventKind::Pingresp { rtt_ms: rtt });
            }
            (body, PacketType::Disconnect) => {
                self.close(now, CloseKind::Disconnect, Side::Broker, reason_code(body), cfg, out);
            }
            _ => {}
        }
    }

    /// The client was active without a packet the analysis can read (bytes lost to a capture
    /// gap, a TLS record that is not decrypted): activity, whatever it sent.
    pub fn on_client_activity(&mut self, now: Timestamp, cfg: &SessionConfig, out: &mut impl Emit) {
        self.poll(now, cfg, out);
        if !self.closed {
            self.client_activity(now, cfg, out);
        }
    }

    /// A close seen by a transport layer (TLS close_notify, WebSocket close frame with its
    /// `code`) from `by`. Only the first close counts.
    pub fn on_transport_close(
        &mut self,
        now: Timestamp,
        kind: CloseKind,
        by: Side,
        code: Option<u16>,
        cfg: &SessionConfig,
        out: &mut impl Emit,
    ) {
        self.close(now, kind, by, code, cfg, out);
    }

    /// A FIN or RST from `by`. Only the first close counts.
    pub fn on_tcp_close(
        &mut self,
        now: Timestamp,
        kind: CloseKind,
        by: Side,
        cfg: &SessionConfig,
        out: &mut impl Emit,
    ) {
        self.close(now, kind, by, None, cfg, out);
    }

    /// Fires every timer due before `now`, in time order.
    pub fn poll(&mut self, now: Timestamp, cfg: &SessionConfig, out: &mut impl Emit) {
        while let Some((at, timer)) = self.next_timer(cfg).filter(|(at, _)| *at < now) {
            match timer {
                Timer::Keepalive => {
                    let last_activity = self.last_client;
                    self.set_clock(KeepaliveClock::Expired { since: at });
                    if self.enforcement() == Enforcement::None {
                        self.set_enforcement(Enforcement::Pending { deadline: at, resumed: false });
                    }
                    let keepalive_s = self.effective.unwrap_or(0);
                    out(at, EventKind::KeepaliveExpired { keepalive_s, last_activity });
                }
                Timer::Ping => {
                    let mut ping = self.ping().expect("ping timer implies an outstanding ping");
                    ping.reported = true;
                    self.set_ping(Some(ping));
                    out(at, EventKind::PingUnanswered { sent: ping.sent });
                }
                Timer::Enforcement => {
                    self.set_enforcement(Enforcement::Decided);
                    out(at, EventKind::Enforcement { verdict: Verdict::NotEnforced, lag_s: None });
                }
            }
        }
    }

    /// The earliest time at which [`Session::poll`] has something to do.
    pub fn next_deadline(&self, cfg: &SessionConfig) -> Option<Timestamp> {
        self.next_timer(cfg).map(|(at, _)| at)
    }

    /// The session is done with at `end` (the capture ended, or the connection was evicted or
    /// fully closed): settles what can be settled. Returns the longest client silence, counting
    /// the stretch up to `end` for a session still open.
    pub fn finish(&mut self, end: Timestamp, cfg: &SessionConfig, out: &mut impl Emit) -> Duration {
        self.poll(end, cfg, out);
        if !self.closed {
            self.note_silence(end.since(self.last_client));
            if let Enforcement::Pending { deadline, .. } = self.enforcement()
                && end > deadline.saturating_add(cfg.enforcement_tolerance)
            {
                self.set_enforcement(Enforcement::Decided);
                out(end, EventKind::Enforcement { verdict: Verdict::NotEnforced, lag_s: None });
            }
        }
        self.max_silence()
    }

    /// The clock for an effective keepalive counted from `from`.
    fn armed_from(&self, from: Timestamp) -> KeepaliveClock {
        match self.effective {
            None => KeepaliveClock::Unknown,
            Some(0) => KeepaliveClock::Disabled,
            Some(k) => KeepaliveClock::Armed { deadline: from.saturating_add(expiry_span(k)) },
        }
    }

    fn ping_timeout(&self, cfg: &SessionConfig) -> Duration {
        cfg.ping_timeout.unwrap_or(match self.effective {
            Some(k) if k > 0 => Duration::from_secs(u64::from(k)),
            _ => DEFAULT_PING_TIMEOUT,
        })
    }

    fn next_timer(&self, cfg: &SessionConfig) -> Option<(Timestamp, Timer)> {
        let keepalive = match self.clock() {
            KeepaliveClock::Armed { deadline } => Some((deadline, Timer::Keepalive)),
            _ => None,
        };
        let ping = match self.ping() {
            Some(p) if !p.reported && !self.closed => {
                Some((p.sent.saturating_add(self.ping_timeout(cfg)), Timer::Ping))
            }
            _ => None,
        };
        let enforcement = match self.enforcement() {
            Enforcement::Pending { deadline, resumed: true } => {
                Some((deadline.saturating_add(cfg.enforcement_tolerance), Timer::Enforcement))
            }
            _ => None,
        };
        [keepalive, ping, enforcement].into_iter().flatten().min_by_key(|(at, _)| *at)
    }

    fn client_activity(&mut self, now: Timestamp, cfg: &SessionConfig, out: &mut impl Emit) {
        let silence = now.since(self.last_client);
        self.note_silence(silence);
        if let (true, Some(k)) = (cfg.activity_events, self.effective.filter(|k| *k > 0)) {
            out(now, EventKind::ClientActivity { silence_s: silence, keepalive_s: k });
        }
        self.last_client = now;
        if let KeepaliveClock::Armed { .. } | KeepaliveClock::Expired { .. } = self.clock() {
            self.set_clock(self.armed_from(now));
        }
        if let Enforcement::Pending { deadline, resumed: false } = self.enforcement() {
            if now > deadline.saturating_add(cfg.enforcement_tolerance) {
                self.set_enforcement(Enforcement::Decided);
                out(now, EventKind::Enforcement { verdict: Verdict::NotEnforced, lag_s: None });
            } else {
                self.set_enforcement(Enforcement::Pending { deadline, resumed: true });
            }
        }
    }

    fn close(
        &mut self,
        now: Timestamp,
        kind: CloseKind,
        by: Side,
        reason_code: Option<u16>,
        cfg: &SessionConfig,
        out: &mut impl Emit,
    ) {
        self.poll(now, cfg, out);
        if self.closed {
            return;
        }
        if let Some(mut p) = self.ping().filter(|p| !p.reported) {
            p.reported = true;
            self.set_ping(Some(p));
            out(now, EventKind::PingUnanswered { sent: p.sent });
        }
        let after_silence = now.since(self.last_client);
        self.note_silence(after_silence);
        // A refused connection: a CONNACK that said no, or the broker hanging up right after a
        // CONNECT it never answered. Its close says so (with the CONNACK's code), and no Will.
        let refused_code = match self.connack {
            Some(code) if code != 0 => Some(Some(u16::from(code))),
            None if by == Side::Broker && self.connected && after_silence < REFUSAL_WITHOUT_CONNACK => Some(None),
            _ => None,
        };
        let (kind, reason_code) = match refused_code {
            Some(code) => (CloseKind::Refused, code),
            None => (kind, reason_code),
        };
        out(now, EventKind::Close { close: kind, by, after_silence_s: after_silence, reason_code });
        if kind != CloseKind::Disconnect && kind != CloseKind::Refused {
            out(now, EventKind::CloseWithoutDisconnect { close: kind, by, will_expected: self.will });
        }
        let verdict = if kind == CloseKind::Refused {
            None // the session never began: nothing to enforce
        } else {
            match (self.enforcement(), by, self.clock()) {
                (Enforcement::Pending { deadline, .. }, Side::Broker, _) => {
                    let lag = now.since(deadline);
                    let verdict = if lag <= cfg.enforcement_tolerance { Verdict::OnTime } else { Verdict::Late };
                    Some((verdict, Some(lag.as_secs_f64())))
                }
                (Enforcement::Pending { .. }, Side::Client, _) => Some((Verdict::NotEnforced, None)),
                (Enforcement::None, Side::Broker, KeepaliveClock::Armed { deadline }) => {
                    let keepalive = Duration::from_secs(u64::from(self.effective.unwrap_or(0)));
                    (after_silence >= keepalive).then(|| (Verdict::Early, Some(-deadline.since(now).as_secs_f64())))
                }
                _ => None,
            }
        };
        if let Some((verdict, lag_s)) = verdict {
            self.set_enforcement(Enforcement::Decided);
            out(now, EventKind::Enforcement { verdict, lag_s: lag_s.map(event::round_us) });
        }
        self.closed = true;
        self.set_clock(KeepaliveClock::Stopped);
    }
}

/// The MQTT 5 reason code of a DISCONNECT body, if any.
fn reason_code(body: &Body) -> Option<u16> {
    match body {
        Body::Disconnect(d) => d.reason_code.map(u16::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{ConnAck, Connect, Disconnect, FixedHeader, Protocol};

    fn t(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
    }

    fn packet(packet_type: PacketType, body: Body) -> Packet {
        Packet { header: FixedHeader { packet_type, flags: 0, remaining: 0, header_len: 2 }, body, damaged: false }
    }

    fn connect(keepalive: u16, will: bool) -> Packet {
        packet(
            PacketType::Connect,
            Body::Connect(Connect {
                protocol: Protocol::V3_1_1,
                keepalive,
                clean_start: true,
                will,
                username: false,
                password: false,
                client_id: Some("c".into()),
            }),
        )
    }

    fn connack(server_keepalive: Option<u16>) -> Packet {
        packet(PacketType::ConnAck, Body::ConnAck(ConnAck { session_present: false, code: 0, server_keepalive }))
    }

    /// Drives a session through a script and returns its events as "time kind" lines.
    struct Run {
        s: Session,
        cfg: SessionConfig,
        log: Vec<(f64, EventKind)>,
    }

    impl Run {
        fn new() -> Self {
            Run { s: Session::new(t(0.0)), cfg: SessionConfig::default(), log: Vec::new() }
        }
        fn client(&mut self, at: f64, p: Packet) -> &mut Self {
            let log = &mut self.log;
            self.s.on_client_packet(t(at), &p, &self.cfg, &mut |ts: Timestamp, k| log.push((ts.as_secs_f64(), k)));
            self
        }
        fn broker(&mut self, at: f64, p: Packet) -> &mut Self {
            let log = &mut self.log;
            self.s.on_broker_packet(t(at), &p, &self.cfg, &mut |ts: Timestamp, k| log.push((ts.as_secs_f64(), k)));
            self
        }
        fn tcp_close(&mut self, at: f64, kind: CloseKind, by: Side) -> &mut Self {
            let log = &mut self.log;
            self.s.on_tcp_close(t(at), kind, by, &self.cfg, &mut |ts: Timestamp, k| log.push((ts.as_secs_f64(), k)));
            self
        }
        fn finish(&mut self, at: f64) -> Duration {
            let log = &mut self.log;
            self.s.finish(t(at), &self.cfg, &mut |ts: Timestamp, k| log.push((ts.as_secs_f64(), k)))
        }
        fn kinds(&self) -> Vec<String> {
            self.log.iter().map(|(ts, k)| format!("{ts} {}", k.as_str())).collect()
        }
        fn find(&self, name: &str) -> Option<&EventKind> {
            self.log.iter().map(|(_, k)| k).find(|k| k.as_str() == name)
        }
    }

    fn ping() -> Packet {
        packet(PacketType::PingReq, Body::None)
    }
    fn pong() -> Packet {
        packet(PacketType::PingResp, Body::None)
    }
    fn publish() -> Packet {
        packet(PacketType::Publish, Body::None)
    }

    #[test]
    fn expiry_fires_at_the_deadline_not_at_the_next_packet() {
        let mut r = Run::new();
        r.client(1.0, connect(5, false)).broker(1.0, connack(None));
        assert_eq!(r.s.next_deadline(&r.cfg), Some(t(8.5)));
        r.tcp_close(20.0, CloseKind::Fin, Side::Broker);
        assert_eq!(
            r.kinds()[2..],
            ["8.5 keepalive_expired", "20 close", "20 close_without_disconnect", "20 enforcement"]
        );
        assert_eq!(r.find("enforcement"), Some(&EventKind::Enforcement { verdict: Verdict::Late, lag_s: Some(11.5) }));
    }

    #[test]
    fn broker_close_within_tolerance_is_on_time() {
        let mut r = Run::new();
        r.client(0.0, connect(10, true)).broker(0.0, connack(None));
        r.tcp_close(15.5, CloseKind::Fin, Side::Broker);
        assert_eq!(r.find("enforcement"), Some(&EventKind::Enforcement { verdict: Verdict::OnTime, lag_s: Some(0.5) }));
        assert_eq!(
            r.find("close_without_disconnect"),
            Some(&EventKind::CloseWithoutDisconnect { close: CloseKind::Fin, by: Side::Broker, will_expected: true })
        );
    }

    #[test]
    fn any_client_packet_is_activity_and_pushes_the_deadline() {
        let mut r = Run::new();
        r.client(0.0, connect(10, false)).broker(0.0, connack(None));
        r.client(14.0, publish()).client(28.0, publish());
        assert_eq!(r.s.next_deadline(&r.cfg), Some(t(43.0)));
        assert_eq!(r.finish(40.0), Duration::from_secs(14));
        assert!(r.find("keepalive_expired").is_none());
    }

    #[test]
    fn keepalive_zero_never_expires() {
        let mut r = Run::new();
        r.client(0.0, connect(0, false)).broker(0.0, connack(None));
        assert_eq!(r.s.clock(), KeepaliveClock::Disabled);
        r.finish(100_000.0);
        assert!(r.find("keepalive_expired").is_none());
    }

    #[test]
    fn server_keep_alive_overrides_the_declared_one() {
        let mut r = Run::new();
        r.client(0.0, connect(60, false)).broker(0.1, connack(Some(10)));
        assert_eq!(r.s.effective_keepalive(), Some(10));
        assert_eq!(r.s.next_deadline(&r.cfg), Some(t(15.0)));
        let Some(EventKind::Connack { effective_keepalive_s, .. }) = r.find("connack") else { panic!() };
        assert_eq!(*effective_keepalive_s, Some(10));
    }

    #[test]
    fn unknown_keepalive_gives_no_verdict() {
        let mut r = Run::new();
        r.client(0.0, publish());
        r.finish(1000.0);
        assert_eq!(r.s.clock(), KeepaliveClock::Unknown);
        assert!(r.find("keepalive_expired").is_none());
    }

    #[test]
    fn ping_round_trip_and_timeout() {
        let mut r = Run::new();
        r.cfg.ping_timeout = Some(Duration::from_secs(2));
        r.client(0.0, connect(10, false)).broker(0.0, connack(None));
        r.client(5.0, ping()).broker(5.25, pong());
        assert_eq!(r.find("pingresp"), Some(&EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(250)) }));
        r.client(10.0, ping()).client(13.0, publish());
        assert!(r.kinds().contains(&"12 ping_unanswered".to_string()));
    }

    #[test]
    fn close_with_a_ping_outstanding_reports_it_unanswered() {
        let mut r = Run::new();
        r.client(0.0, connect(10, false)).broker(0.0, connack(None)).client(9.0, ping());
        r.tcp_close(9.5, CloseKind::Rst, Side::Client);
        assert_eq!(r.kinds()[3..], ["9.5 ping_unanswered", "9.5 close", "9.5 close_without_disconnect"]);
    }

    #[test]
    fn disconnect_closes_cleanly_and_later_fin_is_ignored() {
        let mut r = Run::new();
        r.client(0.0, connect(10, true)).broker(0.0, connack(None));
        r.client(3.0, packet(PacketType::Disconnect, Body::Disconnect(Disconnect { reason_code: None })));
        r.tcp_close(3.1, CloseKind::Fin, Side::Client);
        let closes: Vec<_> = r.log.iter().filter(|(_, k)| k.as_str().starts_with("close")).collect();
        assert_eq!(closes.len(), 1);
        assert_eq!(
            closes[0].1,
            EventKind::Close {
                close: CloseKind::Disconnect,
                by: Side::Client,
                after_silence_s: Duration::ZERO,
                reason_code: None
            }
        );
    }

    #[test]
    fn client_going_on_after_the_deadline_is_not_enforced() {
        let mut r = Run::new();
        r.client(0.0, connect(4, false)).broker(0.0, connack(None));
        r.client(6.5, publish()); // 0.5 s after the 6 s deadline: within tolerance, pending
        assert!(r.find("enforcement").is_none());
        r.client(7.5, publish()); // the tolerance ran out at 7 s with the client still going
        assert_eq!(r.kinds()[2..], ["6 keepalive_expired", "7 enforcement"]);
        assert_eq!(r.find("enforcement"), Some(&EventKind::Enforcement { verdict: Verdict::NotEnforced, lag_s: None }));
    }

    #[test]
    fn capture_ending_long_after_an_expiry_is_not_enforced() {
        let mut r = Run::new();
        r.client(0.0, connect(2, false)).broker(0.0, connack(None));
        r.finish(3.5);
        assert!(r.find("enforcement").is_none(), "within tolerance: undecided");
        let mut r = Run::new();
        r.client(0.0, connect(2, false)).broker(0.0, connack(None));
        r.finish(30.0);
        assert_eq!(r.kinds()[2..], ["3 keepalive_expired", "30 enforcement"]);
    }

    #[test]
    fn broker_closing_before_the_deadline_after_a_keepalive_of_silence_is_early() {
        let mut r = Run::new();
        r.client(0.0, connect(5, false)).broker(0.0, connack(None));
        r.tcp_close(7.0, CloseKind::Fin, Side::Broker);
        assert_eq!(r.find("enforcement"), Some(&EventKind::Enforcement { verdict: Verdict::Early, lag_s: Some(-0.5) }));
        assert!(r.find("keepalive_expired").is_none());
    }

    #[test]
    fn broker_closing_an_active_client_is_no_enforcement() {
        let mut r = Run::new();
        r.client(0.0, connect(5, false)).broker(0.0, connack(None));
        r.tcp_close(2.0, CloseKind::Fin, Side::Broker);
        assert!(r.find("enforcement").is_none());
    }
}

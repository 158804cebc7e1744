//! The probe's scenarios, one connection each, and the Will watcher.
//!
//! Contract: [`plan`] lists the scenarios for a set of keepalives (always the same list for the
//! same input). [`run_scenario`] runs one on its own connection and never fails: whatever
//! happens (refused, an I/O error, the run stopped) is in its [`ScenarioResult`]. Every byte the
//! connection sends or receives goes, with the time its socket call returned, through the
//! analyser's [`StreamDecoder`] and [`Session`]: the verdicts are `analyze`'s rules applied to
//! the probe's own view of the connection. The [`WillWatcher`] is a subscriber on the run's Will
//! topic; it records when each scenario's Will arrived.

use super::client::{self, CloseHow, Conn, Recv, Version};
use super::{Clock, Secret, Target};
use crate::flow::Side;
use crate::mqtt::{Body, Packet, PacketType, StreamDecoder, StreamEvent};
use crate::session::{CloseKind, EventKind, Session, SessionConfig, Verdict};
use crate::time::{Timestamp, expiry_span};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// What a scenario does after CONNACK.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Silent right after CONNECT.
    Silent,
    /// One PINGREQ one keepalive after CONNECT (answered), then silent: does the broker restart
    /// its clock on activity?
    PingThenSilent,
    /// A PINGREQ every keepalive for [`PINGS_ON_TIME`] periods, then DISCONNECT: the broker must
    /// not close it; gives the round trip.
    Pinging,
    /// Keepalive 65535, above any sensible maximum: MQTT 5 brokers may answer with Server Keep
    /// Alive (and must then enforce that); 3.1.1 brokers may refuse it.
    AboveMax,
    /// Keepalive 0 (off): the broker must not close it within the run (unless an MQTT 5 Server
    /// Keep Alive turns keepalive on).
    KeepaliveZero,
}

/// PINGREQs sent by [`Kind::Pinging`].
pub const PINGS_ON_TIME: u32 = 3;

/// One scenario.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    /// Keepalive declared in CONNECT.
    pub keepalive: u16,
}

impl Scenario {
    fn new(kind: Kind, keepalive: u16) -> Scenario {
        let name = match kind {
            Kind::Silent => format!("silent-{keepalive}"),
            Kind::PingThenSilent => format!("ping-then-silent-{keepalive}"),
            Kind::Pinging => format!("pinging-{keepalive}"),
            Kind::AboveMax => "above-max".to_string(),
            Kind::KeepaliveZero => "keepalive-0".to_string(),
        };
        Scenario { name, kind, keepalive }
    }

    /// A short tag for the client id, so that `mkp-<run id>-<tag>` stays within the 23
    /// characters every MQTT 3.1.1 broker must accept.
    pub fn tag(&self) -> String {
        match self.kind {
            Kind::Silent => format!("s{}", self.keepalive),
            Kind::PingThenSilent => format!("ps{}", self.keepalive),
            Kind::Pinging => format!("p{}", self.keepalive),
            Kind::AboveMax => "max".to_string(),
            Kind::KeepaliveZero => "k0".to_string(),
        }
    }

    fn k(&self) -> Duration {
        Duration::from_secs(u64::from(self.keepalive))
    }

    /// When, after CONNECT, its deadline (or its own end) comes if the broker honours the
    /// declared keepalive; `None` for scenarios whose deadline depends on the broker.
    pub fn expected_end(&self) -> Option<Duration> {
        match self.kind {
            Kind::Silent => Some(expiry_span(self.keepalive)),
            Kind::PingThenSilent => Some(self.k() + expiry_span(self.keepalive)),
            Kind::Pinging => self.disconnect_after(),
            Kind::AboveMax | Kind::KeepaliveZero => None,
        }
    }

    /// PINGREQ times, after CONNECT.
    fn pings(&self) -> Vec<Duration> {
        match self.kind {
            Kind::PingThenSilent => vec![self.k()],
            Kind::Pinging => (1..=PINGS_ON_TIME).map(|i| self.k() * i).collect(),
            _ => Vec::new(),
        }
    }

    /// When the scenario ends itself with a DISCONNECT, after CONNECT.
    fn disconnect_after(&self) -> Option<Duration> {
        (self.kind == Kind::Pinging).then(|| self.k() * PINGS_ON_TIME + Duration::from_millis(500))
    }

    /// A broker refusing this scenario's CONNECT is applying a policy, not failing.
    fn refusal_is_policy(&self) -> bool {
        matches!(self.kind, Kind::AboveMax | Kind::KeepaliveZero)
    }
}

/// The scenarios for these keepalives: silent after CONNECT for each; ping-then-silent and
/// pinging at the median keepalive; above the maximum; keepalive 0.
pub fn plan(keepalives: &[u16]) -> Vec<Scenario> {
    let mut ks: Vec<u16> = keepalives.iter().copied().filter(|k| *k > 0).collect();
    ks.sort_unstable();
    ks.dedup();
    let mut out: Vec<Scenario> = ks.iter().map(|k| Scenario::new(Kind::Silent, *k)).collect();
    if let Some(&median) = ks.get(ks.len() / 2) {
        out.push(Scenario::new(Kind::PingThenSilent, median));
        out.push(Scenario::new(Kind::Pinging, median));
    }
    out.push(Scenario::new(Kind::AboveMax, u16::MAX));
    out.push(Scenario::new(Kind::KeepaliveZero, 0));
    out
}

/// Everything the connections of one run share.
pub struct Context {
    pub target: Target,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub version: Version,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub clock: Clock,
    /// The run ends here: open connections DISCONNECT.
    pub until: Timestamp,
    pub stop: Arc<AtomicBool>,
    pub session: SessionConfig,
    pub run_id: String,
    /// Will topics are `<topic>/<scenario>`.
    pub topic: String,
    /// Set by [`Context::watcher_done`]: when the Will watcher stops (nanoseconds; i64::MAX: not yet).
    pub watch_until: AtomicI64,
}

/// How long the watcher waits for Wills after the last scenario ended.
pub const WILL_GRACE: Duration = Duration::from_millis(1500);

/// Longest wait in one receive call, so a stop is noticed quickly.
const POLL: Duration = Duration::from_millis(100);

impl Context {
    /// Every scenario has ended: the watcher waits [`WILL_GRACE`] more (none after a stop).
    pub fn watcher_done(&self, clock: &Clock) {
        let grace = if self.stopped() { Duration::ZERO } else { WILL_GRACE };
        self.watch_until.store(clock.now().saturating_add(grace).as_nanos(), Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn connect_packet(&self, client_id: &str, keepalive: u16, will: Option<(&str, &[u8])>) -> Vec<u8> {
        client::connect_packet(&client::ConnectSpec {
            version: self.version,
            client_id,
            keepalive,
            will,
            username: self.username.as_deref(),
            password: self.password.as_ref().map(|p| p.0.as_slice()),
        })
    }
}

/// How a connection ended, as the probe reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ending {
    /// The broker closed it.
    Broker(CloseHow),
    /// The broker sent an MQTT 5 DISCONNECT with this reason code.
    BrokerDisconnect(Option<u8>),
    /// Still open when the scenario or the run ended: the probe sent DISCONNECT.
    KeptOpen,
    /// The CONNACK refused the connection.
    Refused(u8),
    /// Could not connect or talk to the broker.
    Error,
}

/// What one scenario measured.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub client_id: String,
    pub connack_code: Option<u8>,
    pub server_keepalive: Option<u16>,
    pub effective_keepalive: Option<u16>,
    /// The last client packet before the silence, and when it was sent.
    pub silent_after: Option<(PacketType, Timestamp)>,
    pub ending: Ending,
    /// When the broker closed (FIN, RST, WebSocket close or DISCONNECT).
    pub closed_at: Option<Timestamp>,
    /// Client silence when the broker closed (from the session's close event).
    pub closed_after: Option<Duration>,
    /// Deadline passed while open (the session's `keepalive_expired`).
    pub expired_at: Option<Timestamp>,
    pub verdict: Option<(Verdict, Option<f64>)>,
    pub ping_rtts: Vec<Duration>,
    pub pings_unanswered: u32,
    pub will_at: Option<Timestamp>,
    /// The broker closed the connection, the watcher was listening, and no Will came.
    pub will_missing: bool,
    /// Why the scenario could not run as planned.
    pub error: Option<String>,
    /// The analyser's events for this connection, in time order.
    pub events: Vec<(Timestamp, EventKind)>,
}

impl ScenarioResult {
    fn new(scenario: &Scenario, client_id: String) -> Self {
        ScenarioResult {
            scenario: scenario.clone(),
            client_id,
            connack_code: None,
            server_keepalive: None,
            effective_keepalive: None,
            silent_after: None,
            ending: Ending::Error,
            closed_at: None,
            closed_after: None,
            expired_at: None,
            verdict: None,
            ping_rtts: Vec::new(),
            pings_unanswered: 0,
            will_at: None,
            will_missing: false,
            error: None,
            events: Vec::new(),
        }
    }

    /// A scenario that could not run, with the reason.
    pub fn failed(scenario: &Scenario, why: &str) -> Self {
        let mut r = ScenarioResult::new(scenario, String::new());
        r.error = Some(why.to_string());
        r
    }

    /// The broker closed the connection itself (any way), so its Will is due.
    pub fn closed_by_broker(&self) -> bool {
        matches!(self.ending, Ending::Broker(_) | Ending::BrokerDisconnect(_))
    }

    /// The Will's arrival, after the last client packet.
    pub fn will_after(&self) -> Option<Duration> {
        Some(self.will_at?.since(self.silent_after?.1))
    }

    /// What is wrong beyond the verdict (`None`: nothing), for the report and the exit status.
    pub fn problem(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        if let Ending::Refused(code) = self.ending
            && !self.scenario.refusal_is_policy()
        {
            return Some(format!("refused: CONNACK code {code:#04x}"));
        }
        if self.pings_unanswered > 0 {
            return Some(format!("{} PINGREQ unanswered", self.pings_unanswered));
        }
        if self.will_missing {
            return Some("the broker closed the connection but published no Will".into());
        }
        if self.closed_by_broker() && self.verdict.is_none() {
            let after = self.closed_after.map_or_else(|| "-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
            return Some(format!("closed by the broker after {after} of silence, before any deadline"));
        }
        None
    }
}

/// A connection's bytes through the analyser's decoder and session.
struct Observer {
    session: Session,
    cfg: SessionConfig,
    up: StreamDecoder,
    down: StreamDecoder,
    events: Vec<(Timestamp, EventKind)>,
}

impl Observer {
    fn new(now: Timestamp, cfg: SessionConfig) -> Self {
        Observer {
            session: Session::new(now),
            cfg,
            up: StreamDecoder::starting_with(PacketType::Connect),
            down: StreamDecoder::starting_with(PacketType::ConnAck),
            events: Vec::new(),
        }
    }

    fn packets(decoder: &mut StreamDecoder, bytes: &[u8]) -> Vec<Packet> {
        let mut out = Vec::new();
        decoder.feed(bytes, &mut |ev| {
            if let StreamEvent::Packet(p) = ev {
                out.push(p);
            }
        });
        out
    }

    fn client_bytes(&mut self, now: Timestamp, bytes: &[u8]) {
        let events = &mut self.events;
        for p in Self::packets(&mut self.up, bytes) {
            self.session.on_client_packet(now, &p, &self.cfg, &mut |t, k| events.push((t, k)));
        }
    }

    fn broker_bytes(&mut self, now: Timestamp, bytes: &[u8]) -> Vec<Packet> {
        let events = &mut self.events;
        let packets = Self::packets(&mut self.down, bytes);
        for p in &packets {
            self.session.on_broker_packet(now, p, &self.cfg, &mut |t, k| events.push((t, k)));
        }
        packets
    }

    fn broker_closed(&mut self, now: Timestamp, kind: CloseKind) {
        let events = &mut self.events;
        self.session.on_tcp_close(now, kind, Side::Broker, &self.cfg, &mut |t, k| events.push((t, k)));
    }

    fn finish(mut self, now: Timestamp) -> Vec<(Timestamp, EventKind)> {
        let events = &mut self.events;
        self.session.finish(now, &self.cfg, &mut |t, k| events.push((t, k)));
        self.events
    }
}

/// Runs one scenario on its own connection; see the module doc.
pub fn run_scenario(s: &Scenario, ctx: &Context) -> ScenarioResult {
    let client_id = format!("mkp-{}-{}", ctx.run_id, s.tag());
    let mut r = ScenarioResult::new(s, client_id);
    let clock = ctx.clock;
    let mut conn = match client::open(&ctx.target, ctx.tls.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let will_topic = format!("{}/{}", ctx.topic, s.name);
    let connect = ctx.connect_packet(&r.client_id, s.keepalive, Some((&will_topic, r.client_id.as_bytes())));
    let mut obs = Observer::new(clock.now(), ctx.session);
    if let Err(e) = conn.send(&connect) {
        r.error = Some(format!("sending CONNECT: {e}"));
        return r;
    }
    let start = clock.now();
    obs.client_bytes(start, &connect);
    r.silent_after = Some((PacketType::Connect, start));
    let mut pings: std::collections::VecDeque<Timestamp> =
        s.pings().into_iter().map(|d| start.saturating_add(d)).collect();
    let own_end = s.disconnect_after().map(|d| start.saturating_add(d));
    let connack_by = start.saturating_add(client::CONNECT_TIMEOUT);
    let mut ending = None;
    while ending.is_none() {
        let now = clock.now();
        let accepted = r.connack_code == Some(0);
        if ctx.stopped() || now >= ctx.until || own_end.is_some_and(|e| now >= e) {
            if r.connack_code.is_none() {
                r.error = Some("stopped before CONNACK".into());
                ending = Some(Ending::Error);
                break;
            }
            let bye = client::disconnect_packet(ctx.version);
            if conn.send(&bye).is_ok() {
                obs.client_bytes(clock.now(), &bye);
            }
            ending = Some(Ending::KeptOpen);
            break;
        }
        if r.connack_code.is_none() && now >= connack_by {
            r.error = Some(format!("no CONNACK within {} s", client::CONNECT_TIMEOUT.as_secs()));
            ending = Some(Ending::Error);
            break;
        }
        if accepted && pings.front().is_some_and(|p| *p <= now) {
            pings.pop_front();
            let ping = client::pingreq_packet();
            if let Err(e) = conn.send(&ping) {
                r.error = Some(format!("sending PINGREQ: {e}"));
                ending = Some(Ending::Error);
                break;
            }
            let t = clock.now();
            obs.client_bytes(t, &ping);
            r.silent_after = Some((PacketType::PingReq, t));
            continue;
        }
        let next = [pings.front().copied(), own_end, Some(ctx.until)].into_iter().flatten().min().unwrap_or(now);
        let wait = next.since(now).min(POLL);
        match conn.recv(wait) {
            Ok(Recv::Timeout) => {}
            Ok(Recv::Data(bytes)) => {
                let t = clock.now();
                for p in obs.broker_bytes(t, &bytes) {
                    match (p.header.packet_type, &p.body) {
                        (PacketType::ConnAck, Body::ConnAck(a)) => {
                            r.connack_code = Some(a.code);
                            if a.code != 0 {
                                ending = Some(Ending::Refused(a.code));
                            }
                        }
                        (PacketType::Disconnect, body) => {
                            let code = match body {
                                Body::Disconnect(d) => d.reason_code,
                                _ => None,
                            };
                            r.closed_at = Some(t);
                            ending = Some(Ending::BrokerDisconnect(code));
                        }
                        _ => {}
                    }
                }
            }
            Ok(Recv::Closed(how)) => {
                let t = clock.now();
                if r.connack_code.is_none() {
                    r.error = Some("the broker closed the connection before CONNACK".into());
                    obs.broker_closed(t, close_kind(how));
                    ending = Some(Ending::Error);
                    break;
                }
                obs.broker_closed(t, close_kind(how));
                r.closed_at = Some(t);
                ending = Some(Ending::Broker(how));
            }
            Err(e) => {
                r.error = Some(format!("reading: {e}"));
                ending = Some(Ending::Error);
            }
        }
    }
    conn.shutdown();
    r.ending = ending.unwrap_or(Ending::Error);
    let events = obs.finish(clock.now());
    summarise(&mut r, events);
    r
}

fn close_kind(how: CloseHow) -> CloseKind {
    match how {
        CloseHow::Rst => CloseKind::Rst,
        // A WebSocket close frame is followed by the TCP FIN; a capture of the TCP stream sees
        // MQTT end without DISCONNECT, as with a FIN.
        CloseHow::Fin | CloseHow::WsClose(_) => CloseKind::Fin,
    }
}

/// Reads the analyser's events into the result.
fn summarise(r: &mut ScenarioResult, events: Vec<(Timestamp, EventKind)>) {
    for (t, e) in &events {
        match e {
            EventKind::Connack { server_keepalive_s, effective_keepalive_s, .. } => {
                r.server_keepalive = *server_keepalive_s;
                r.effective_keepalive = *effective_keepalive_s;
            }
            EventKind::KeepaliveExpired { .. } => r.expired_at = Some(*t),
            EventKind::Close { by: Side::Broker, after_silence_s, .. } => r.closed_after = Some(*after_silence_s),
            EventKind::Enforcement { verdict, lag_s } => r.verdict = Some((*verdict, *lag_s)),
            EventKind::Pingresp { rtt_ms: Some(rtt) } => r.ping_rtts.push(*rtt),
            EventKind::PingUnanswered { .. } => r.pings_unanswered += 1,
            _ => {}
        }
    }
    r.events = events;
}

/// When each scenario's Will arrived, and how the watcher fared.
#[derive(Clone, Debug, Default)]
pub struct WillLog {
    /// `(scenario name, arrival)`, in arrival order.
    pub arrivals: Vec<(String, Timestamp)>,
    /// Set when the watcher lost its connection before the end (Wills after it are unknown).
    pub lost_at: Option<(Timestamp, String)>,
}

/// Attaches each scenario's first Will arrival.
pub fn attach_wills(results: &mut [ScenarioResult], wills: &WillLog) {
    for r in results {
        r.will_at = wills.arrivals.iter().find(|(name, _)| *name == r.scenario.name).map(|(_, t)| *t);
        let listening = match (wills.lost_at.as_ref(), r.closed_at) {
            (None, _) => true,
            (Some((lost, _)), Some(closed)) => *lost > closed.saturating_add(WILL_GRACE),
            (Some(_), None) => false,
        };
        r.will_missing = r.closed_by_broker() && r.will_at.is_none() && listening;
    }
}

/// Keepalive the Will watcher declares (accepted by brokers whose `max_keepalive` is at least 10,
/// the lowest mosquitto allows); it pings at half of its effective keepalive.
pub const WATCHER_KEEPALIVE: u16 = 10;

/// A subscriber on the run's Will topic.
pub struct WillWatcher {
    ctx: Arc<Context>,
    conn: Conn,
    buf: Vec<u8>,
    ping_every: Duration,
}

impl WillWatcher {
    /// Connects and subscribes; a failure here means the broker cannot be probed.
    pub fn connect(ctx: Arc<Context>) -> Result<WillWatcher, super::ProbeError> {
        let mut conn = client::open(&ctx.target, ctx.tls.as_ref())?;
        let client_id = format!("mkp-{}-w", ctx.run_id);
        let target = ctx.target.display();
        let protocol = |reason: String| super::ProbeError::Protocol { target: target.clone(), reason };
        let io = |what: &str, e: std::io::Error| protocol(format!("{what}: {e}"));
        conn.send(&ctx.connect_packet(&client_id, WATCHER_KEEPALIVE, None)).map_err(|e| io("sending CONNECT", e))?;
        let mut buf = Vec::new();
        let first = Self::await_packet(&ctx, &mut conn, &mut buf, "CONNACK").map_err(protocol)?;
        if first.0 >> 4 != 2 {
            return Err(protocol(format!("answered CONNECT with packet type {}, not CONNACK", first.0 >> 4)));
        }
        let ack = crate::mqtt::packet::decode_connack(&first.1).map_err(|e| protocol(e.to_string()))?;
        if ack.code != 0 {
            return Err(super::ProbeError::Refused { code: ack.code, v5: ctx.version == Version::V5 });
        }
        let effective = ack.server_keepalive.unwrap_or(WATCHER_KEEPALIVE).max(1);
        conn.send(&client::subscribe_packet(ctx.version, &format!("{}/+", ctx.topic)))
            .map_err(|e| io("sending SUBSCRIBE", e))?;
        let suback = Self::await_packet(&ctx, &mut conn, &mut buf, "SUBACK").map_err(protocol)?;
        // The return codes follow the packet id (and MQTT 5 properties); 0x80 and above refuse.
        if suback.0 >> 4 != 9 || suback.1.last().is_none_or(|c| *c >= 0x80) {
            return Err(protocol(format!("refused the subscription to the Will topic {}/+", ctx.topic)));
        }
        Ok(WillWatcher { ctx, conn, buf, ping_every: Duration::from_secs(u64::from(effective)) / 2 })
    }

    fn await_packet(ctx: &Context, conn: &mut Conn, buf: &mut Vec<u8>, what: &str) -> Result<(u8, Vec<u8>), String> {
        let by = ctx.clock.now().saturating_add(client::CONNECT_TIMEOUT);
        loop {
            if let Some(p) = client::take_packets(buf).map_err(str::to_string)?.into_iter().next() {
                return Ok(p);
            }
            let now = ctx.clock.now();
            if ctx.stopped() {
                return Err(format!("stopped while waiting for {what}"));
            }
            if now >= by {
                return Err(format!("no {what} within {} s", client::CONNECT_TIMEOUT.as_secs()));
            }
            match conn.recv(by.since(now).min(POLL)).map_err(|e| e.to_string())? {
                Recv::Data(b) => buf.extend_from_slice(&b),
                Recv::Timeout => {}
                Recv::Closed(how) => return Err(format!("closed the connection ({how:?}) before {what}")),
            }
        }
    }

    /// Records Wills until [`Context::watcher_done`] (or a stop), then disconnects.
    pub fn run(mut self) -> WillLog {
        let ctx = self.ctx.clone();
        let prefix = format!("{}/", ctx.topic);
        let mut log = WillLog::default();
        let mut next_ping = ctx.clock.now().saturating_add(self.ping_every);
        loop {
            let now = ctx.clock.now();
            let until = ctx.watch_until.load(Ordering::Relaxed);
            if now.as_nanos() >= until || ctx.stopped() {
                break;
            }
            if now >= next_ping {
                if let Err(e) = self.conn.send(&client::pingreq_packet()) {
                    log.lost_at = Some((now, format!("sending PINGREQ: {e}")));
                    return log;
                }
                next_ping = now.saturating_add(self.ping_every);
            }
            match self.conn.recv(next_ping.since(now).min(POLL)) {
                Ok(Recv::Data(b)) => {
                    let t = ctx.clock.now();
                    self.buf.extend_from_slice(&b);
                    let packets = match client::take_packets(&mut self.buf) {
                        Ok(p) => p,
                        Err(e) => {
                            log.lost_at = Some((t, e.to_string()));
                            return log;
                        }
                    };
                    for (first, body) in packets {
                        if first >> 4 == 3
                            && let Some((topic, _)) = client::publish_topic_payload(first, &body, ctx.version)
                            && let Some(name) = topic.strip_prefix(&prefix)
                        {
                            log.arrivals.push((name.to_string(), t));
                        }
                    }
                }
                Ok(Recv::Timeout) => {}
                Ok(Recv::Closed(how)) => {
                    log.lost_at = Some((ctx.clock.now(), format!("the broker closed the watcher ({how:?})")));
                    return log;
                }
                Err(e) => {
                    log.lost_at = Some((ctx.clock.now(), e.to_string()));
                    return log;
                }
            }
        }
        let _ = self.conn.send(&client::disconnect_packet(ctx.version));
        self.conn.shutdown();
        log
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A result with nothing measured yet.
    pub fn empty(s: &Scenario) -> ScenarioResult {
        ScenarioResult::new(s, format!("mkp-test-{}", s.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_a_silent_scenario_per_keepalive_and_the_fixed_ones() {
        let names: Vec<_> = plan(&[5, 1, 3, 3]).into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["silent-1", "silent-3", "silent-5", "ping-then-silent-3", "pinging-3", "above-max", "keepalive-0"]
        );
    }

    #[test]
    fn client_ids_fit_in_23_characters() {
        for s in plan(&[1, 65535]) {
            let id = format!("mkp-{}-{}", "abcdef", s.tag());
            assert!(id.len() <= 23, "{id}");
        }
        let tags: std::collections::HashSet<_> = plan(&[1, 2, 3]).iter().map(Scenario::tag).collect();
        assert_eq!(tags.len(), 7, "unique");
    }

    #[test]
    fn scenario_times() {
        let p = Scenario::new(Kind::PingThenSilent, 4);
        assert_eq!(p.pings(), [Duration::from_secs(4)]);
        assert_eq!(p.expected_end(), Some(Duration::from_secs(10)));
        let on_time = Scenario::new(Kind::Pinging, 2);
        assert_eq!(on_time.pings(), [2, 4, 6].map(Duration::from_secs));
        assert_eq!(on_time.expected_end(), Some(Duration::from_millis(6500)));
        assert_eq!(Scenario::new(Kind::Silent, 5).expected_end(), Some(Duration::from_millis(7500)));
        assert_eq!(Scenario::new(Kind::AboveMax, u16::MAX).expected_end(), None);
    }

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(s)
    }

    /// Feeds a silent-5 connection through the observer: the broker's FIN at `close` seconds.
    fn silent_5_closed_at(close: f64) -> ScenarioResult {
        let s = Scenario::new(Kind::Silent, 5);
        let mut r = ScenarioResult::new(&s, "c".into());
        let mut obs = Observer::new(t(0.0), SessionConfig::default());
        let connect = client::connect_packet(&client::ConnectSpec {
            version: Version::V311,
            client_id: "c",
            keepalive: 5,
            will: Some(("w", b"x")),
            username: None,
            password: None,
        });
        obs.client_bytes(t(0.0), &connect);
        r.silent_after = Some((PacketType::Connect, t(0.0)));
        let packets = obs.broker_bytes(t(0.01), &[0x20, 0x02, 0x00, 0x00]);
        assert_eq!(packets.len(), 1);
        r.connack_code = Some(0);
        obs.broker_closed(t(close), CloseKind::Fin);
        r.ending = Ending::Broker(CloseHow::Fin);
        summarise(&mut r, obs.finish(t(close + 1.0)));
        r
    }

    #[test]
    fn verdicts_come_from_the_analysers_rules() {
        let on_time = silent_5_closed_at(8.0);
        assert_eq!(on_time.verdict, Some((Verdict::OnTime, Some(0.5))));
        assert_eq!(on_time.effective_keepalive, Some(5));
        assert_eq!(on_time.expired_at, Some(t(7.5)));
        assert_eq!(on_time.closed_after, Some(Duration::from_secs(8)));
        assert_eq!(on_time.problem(), None);
        assert_eq!(silent_5_closed_at(9.5).verdict.map(|v| v.0), Some(Verdict::Late));
        assert_eq!(silent_5_closed_at(6.0).verdict.map(|v| v.0), Some(Verdict::Early));
        let too_soon = silent_5_closed_at(2.0);
        assert_eq!(too_soon.verdict, None);
        assert!(too_soon.problem().unwrap().contains("before any deadline"));
    }

    #[test]
    fn refusals_are_problems_only_where_they_are_not_policy() {
        let mut r = ScenarioResult::new(&Scenario::new(Kind::Silent, 5), "c".into());
        r.ending = Ending::Refused(2);
        assert!(r.problem().unwrap().contains("0x02"));
        let mut zero = ScenarioResult::new(&Scenario::new(Kind::KeepaliveZero, 0), "c".into());
        zero.ending = Ending::Refused(2);
        assert_eq!(zero.problem(), None);
    }

    #[test]
    fn wills_are_matched_by_scenario_name() {
        let mut rs = vec![
            ScenarioResult::new(&Scenario::new(Kind::Silent, 1), "a".into()),
            ScenarioResult::new(&Scenario::new(Kind::Silent, 2), "b".into()),
        ];
        rs[0].silent_after = Some((PacketType::Connect, t(1.0)));
        let log = WillLog { arrivals: vec![("silent-1".into(), t(3.5))], lost_at: None };
        attach_wills(&mut rs, &log);
        assert_eq!(rs[0].will_after(), Some(Duration::from_millis(2500)));
        assert_eq!(rs[1].will_at, None);
    }
}

//! The analysis report: one record per MQTT session plus capture totals, as text or JSON.
//!
//! Contract: [`Report`] folds the event stream into [`SessionRecord`]s (connections that never
//! carried MQTT are counted, not listed). [`Report::build`] adds the capture figures and
//! returns an [`AnalysisReport`], whose JSON form is the documented `analyze --format json`
//! document (README, "JSON output"), and whose [`AnalysisReport::render_text`] is the table
//! people read, worst session first. Output order is deterministic.

use super::Sink;
use crate::flow::Side;
use crate::mqtt::{PacketType, Protocol};
use crate::session::event::{dur_secs, round_us, secs};
use crate::session::{CloseKind, Event, EventKind, SessionId, Verdict};
use crate::time::{Timestamp, expiry_span};
use crate::tracker::TrackerCounters;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// Version of the JSON document; bumped when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;
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
    /// "disconnect", "fin", "rst", or "open" when the capture ended first.
    pub kind: &'static str,
    pub by: Option<Side>,
    pub after_silence_s: Option<f64>,
    pub reason_code: Option<u8>,
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
    pub mid_stream: bool,
    #[serde(serialize_with = "secs")]
    pub started: Timestamp,
    #[serde(serialize_with = "opt_secs")]
    pub ended: Option<Timestamp>,
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
    pub events: Vec<SessionEvent>,
    pub events_dropped: u64,
    #[serde(skip)]
    rtts: Vec<Duration>,
    #[serde(skip)]
    pingreq_times: Vec<Timestamp>,
    #[serde(skip)]
    mqtt: bool,
}

impl SessionRecord {
    fn new(e: &Event, mid_stream: bool) -> Self {
        SessionRecord {
            id: e.session,
            client: e.flow.client,
            broker: e.flow.broker,
            client_id: None,
            protocol: None,
            keepalive_s: None,
            server_keepalive_s: None,
            effective_keepalive_s: None,
            inferred_keepalive_s: None,
            expiry_s: None,
            will: None,
            mid_stream,
            started: e.ts,
            ended: None,
            pingreq: 0,
            pingresp: 0,
            pings_unanswered: 0,
            ping_rtt_ms: None,
            max_silence_s: Duration::ZERO,
            headroom: None,
            expired: false,
            close: CloseRecord { kind: "open", by: None, after_silence_s: None, reason_code: None },
            enforcement: None,
            gaps: 0,
            malformed: 0,
            events: Vec::new(),
            events_dropped: 0,
            rtts: Vec::new(),
            pingreq_times: Vec::new(),
            mqtt: false,
        }
    }

    /// Applies one event of this session.
    pub fn apply(&mut self, e: &Event) {
        match &e.kind {
            EventKind::SessionStart { .. } => {}
            EventKind::Connect { protocol, keepalive_s, client_id, will, .. } => {
                self.protocol = Some(*protocol);
                self.keepalive_s = Some(*keepalive_s);
                self.effective_keepalive_s = Some(*keepalive_s);
                self.client_id = client_id.clone();
                self.will = Some(*will);
            }
            EventKind::Connack { server_keepalive_s, effective_keepalive_s, .. } => {
                self.server_keepalive_s = *server_keepalive_s;
                self.effective_keepalive_s = *effective_keepalive_s;
            }
            EventKind::Pingreq => {
                self.pingreq += 1;
                if self.protocol.is_none() {
                    self.pingreq_times.push(e.ts);
                }
            }
            EventKind::Pingresp { rtt_ms } => {
                self.pingresp += 1;
                self.rtts.extend(rtt_ms);
            }
            EventKind::KeepaliveExpired { .. } => self.expired = true,
            EventKind::PingUnanswered { .. } => self.pings_unanswered += 1,
            EventKind::Close { close, by, after_silence_s, reason_code } => {
                self.close = CloseRecord {
                    kind: match close {
                        CloseKind::Disconnect => "disconnect",
                        CloseKind::Fin => "fin",
                        CloseKind::Rst => "rst",
                    },
                    by: Some(*by),
                    after_silence_s: Some(round_us(after_silence_s.as_secs_f64())),
                    reason_code: *reason_code,
                };
            }
            EventKind::CloseWithoutDisconnect { .. } => {}
            EventKind::Enforcement { verdict, lag_s } => {
                if self.enforcement.is_none() {
                    self.enforcement = Some(EnforcementRecord { verdict: *verdict, lag_s: *lag_s });
                }
            }
            EventKind::Gap { .. } => self.gaps += 1,
            EventKind::Malformed { .. } => self.malformed += 1,
            EventKind::Resync { .. } => {}
            EventKind::ClientActivity { silence_s, .. } => self.max_silence_s = self.max_silence_s.max(*silence_s),
            EventKind::SessionEnd { last_packet, max_silence_s, mqtt, .. } => {
                self.ended = Some(*last_packet);
                self.max_silence_s = *max_silence_s;
                self.mqtt = *mqtt;
                self.summarise();
                self.rtts.shrink_to_fit();
                self.pingreq_times = Vec::new();
            }
        }
        let listed = !matches!(
            e.kind,
            EventKind::SessionStart { .. }
                | EventKind::SessionEnd { .. }
                | EventKind::Pingreq
                | EventKind::Pingresp { .. }
        );
        if listed {
            if self.events.len() < MAX_EVENTS_PER_SESSION {
                self.events.push(SessionEvent { ts: e.ts, kind: e.kind.clone() });
            } else {
                self.events_dropped += 1;
            }
        }
    }

    /// Fills the derived fields from what has been seen so far.
    fn summarise(&mut self) {
        if !self.rtts.is_empty() {
            self.rtts.sort_unstable();
            let ms = |d: Duration| round_us(d.as_secs_f64() * 1e3);
            self.ping_rtt_ms = Some(RttSummary {
                min: ms(self.rtts[0]),
                median: ms(self.rtts[(self.rtts.len() - 1) / 2]),
                max: ms(self.rtts[self.rtts.len() - 1]),
            });
        }
        if let Some(k) = self.effective_keepalive_s.filter(|k| *k > 0) {
            self.expiry_s = Some(expiry_span(k).as_secs_f64());
            self.headroom = Some(round_us(self.max_silence_s.as_secs_f64() / f64::from(k)));
        }
        if self.pingreq_times.len() >= 2 {
            let mut intervals: Vec<Duration> = self.pingreq_times.windows(2).map(|w| w[1].since(w[0])).collect();
            intervals.sort_unstable();
            self.inferred_keepalive_s = Some(intervals[intervals.len() / 2].as_secs_f64().round() as u32);
        }
    }

    /// A copy with the derived fields filled, for a session still open.
    pub fn snapshot(&self) -> SessionRecord {
        let mut copy = self.clone();
        copy.summarise();
        copy
    }

    /// Severity for ordering the text table, highest first.
    fn severity(&self) -> u8 {
        match (self.expired, self.enforcement.map(|e| e.verdict)) {
            (true, Some(Verdict::NotEnforced)) => 6,
            (true, Some(Verdict::Late)) => 5,
            (true, _) => 4,
            _ if self.pings_unanswered > 0 => 3,
            (false, Some(Verdict::Early)) => 2,
            _ if matches!(self.close.kind, "fin" | "rst") => 1,
            _ => 0,
        }
    }
}

fn opt_secs<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => secs(t, s),
        None => s.serialize_none(),
    }
}

/// Folds events into session records.
#[derive(Default)]
pub struct Report {
    /// Indexed by session id (ids are dense, from 0).
    sessions: Vec<Option<SessionRecord>>,
}

impl Report {
    pub fn new() -> Self {
        Report::default()
    }

    /// Folds one event.
    pub fn apply(&mut self, e: &Event) {
        let idx = e.session as usize;
        if let EventKind::SessionStart { mid_stream } = e.kind {
            if self.sessions.len() <= idx {
                self.sessions.resize_with(idx + 1, || None);
            }
            self.sessions[idx] = Some(SessionRecord::new(e, mid_stream));
        }
        let Some(Some(record)) = self.sessions.get_mut(idx) else { return };
        record.apply(e);
        if let EventKind::SessionEnd { mqtt: false, .. } = e.kind {
            self.sessions[idx] = None; // not MQTT: counted by the tracker, not listed
        }
    }

    /// The finished report. Sessions still open at the end must have had their `session_end`.
    pub fn build(self, capture: CaptureStats, tcp: TrackerCounters, settings: Settings) -> AnalysisReport {
        // filter_map over Option<T> -> T collects in place (same layout): no second copy of
        // every record at the end of a large capture.
        let sessions: Vec<SessionRecord> = self.sessions.into_iter().filter_map(|s| s.filter(|s| s.mqtt)).collect();
        let summary = Summary::of(&sessions);
        let mqtt_packets =
            PacketType::ALL.iter().zip(tcp.mqtt_packets).filter(|(_, n)| *n > 0).map(|(t, n)| (t.name(), n)).collect();
        AnalysisReport {
            format: "mqtt-keepalive/analyze",
            version: JSON_VERSION,
            tool: concat!("mqtt-keepalive ", env!("CARGO_PKG_VERSION")),
            settings,
            capture,
            tcp,
            mqtt_packets,
            summary,
            sessions,
        }
    }
}

impl Sink for Report {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.apply(event);
        Ok(())
    }
}

/// Open and recently closed sessions, for a live agent's `/sessions`.
pub struct LiveSessions {
    open: HashMap<SessionId, SessionRecord>,
    closed: VecDeque<SessionRecord>,
    keep_closed: usize,
}

/// The `/sessions` document: the same session objects as `analyze --format json`.
#[derive(Serialize)]
pub struct SessionsDocument {
    pub format: &'static str,
    pub version: u32,
    /// Open sessions (in the order they began), then the most recently closed, newest last.
    pub sessions: Vec<SessionRecord>,
}

impl LiveSessions {
    /// Keeps at most `keep_closed` closed sessions.
    pub fn new(keep_closed: usize) -> Self {
        LiveSessions { open: HashMap::new(), closed: VecDeque::new(), keep_closed }
    }

    /// Folds one event.
    pub fn apply(&mut self, e: &Event) {
        if let EventKind::SessionStart { mid_stream } = e.kind {
            self.open.insert(e.session, SessionRecord::new(e, mid_stream));
        }
        let Some(record) = self.open.get_mut(&e.session) else { return };
        record.apply(e);
        if let EventKind::SessionEnd { mqtt, .. } = e.kind {
            let record = self.open.remove(&e.session).expect("present above");
            if mqtt && self.keep_closed > 0 {
                if self.closed.len() == self.keep_closed {
                    self.closed.pop_front();
                }
                self.closed.push_back(record);
            }
        }
    }

    /// The current document. Open connections that have not shown MQTT yet are left out.
    pub fn snapshot(&self) -> SessionsDocument {
        let mut open: Vec<&SessionRecord> =
            self.open.values().filter(|r| r.protocol.is_some() || r.pingreq + r.pingresp > 0).collect();
        open.sort_by_key(|r| r.id);
        let sessions = open.into_iter().map(SessionRecord::snapshot).chain(self.closed.iter().cloned()).collect();
        SessionsDocument { format: "mqtt-keepalive/sessions", version: JSON_VERSION, sessions }
    }
}

/// The rule settings a report was made with.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub ports: Vec<u16>,
    /// `null` means "the effective keepalive (30 s when unknown)".
    pub ping_timeout_s: Option<f64>,
    pub enforcement_tolerance_s: f64,
}

/// Figures about the capture itself, gathered by the app loop.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureStats {
    pub files: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    #[serde(serialize_with = "opt_secs")]
    pub first_ts: Option<Timestamp>,
    #[serde(serialize_with = "opt_secs")]
    pub last_ts: Option<Timestamp>,
    /// Frames cut short by the capture's snaplen.
    pub truncated_packets: u64,
    /// Files that ended in the middle of a record.
    pub truncated_files: u64,
    /// Frames that yielded no TCP segment, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// TCP segments on other ports.
    pub other_tcp_segments: u64,
    /// Records whose timestamp was earlier than the one before (clock kept monotonic).
    pub timestamps_out_of_order: u64,
    /// Problems met while reading: damaged files, unsupported interfaces.
    pub warnings: Vec<String>,
}

/// Counts over all sessions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub sessions: u64,
    pub mid_stream: u64,
    pub expired: u64,
    pub pings: u64,
    pub pings_unanswered: u64,
    pub closes: BTreeMap<&'static str, u64>,
    pub closes_without_disconnect: u64,
    /// Closes without DISCONNECT of sessions that had a Will: the broker publishes it.
    pub wills_expected: u64,
    pub enforcement: BTreeMap<&'static str, u64>,
    /// Percentiles of every ping round trip, in milliseconds.
    pub ping_rtt_ms: Option<Percentiles>,
}

/// Nearest-rank percentiles.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values` (sorted in place); `None` when empty.
    pub fn of(values: &mut [f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        let rank = |p: f64| values[((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Percentiles {
            count: values.len() as u64,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: values[values.len() - 1],
        })
    }
}

impl Summary {
    fn of(sessions: &[SessionRecord]) -> Self {
        let mut s = Summary { sessions: sessions.len() as u64, ..Default::default() };
        let mut rtts = Vec::new();
        for r in sessions {
            s.mid_stream += u64::from(r.mid_stream);
            s.expired += u64::from(r.expired);
            s.pings += r.pingreq;
            s.pings_unanswered += r.pings_unanswered;
            *s.closes.entry(r.close.kind).or_default() += 1;
            if matches!(r.close.kind, "fin" | "rst") {
                s.closes_without_disconnect += 1;
                s.wills_expected += u64::from(r.will == Some(true));
            }
            if let Some(e) = r.enforcement {
                *s.enforcement.entry(verdict_name(e.verdict)).or_default() += 1;
            }
            rtts.extend(r.rtts.iter().map(|d| round_us(d.as_secs_f64() * 1e3)));
        }
        s.ping_rtt_ms = Percentiles::of(&mut rtts);
        s
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::OnTime => "on_time",
        Verdict::Late => "late",
        Verdict::NotEnforced => "not_enforced",
        Verdict::Early => "early",
    }
}

/// The whole `analyze` result.
#[derive(Debug, Serialize)]
pub struct AnalysisReport {
    pub format: &'static str,
    pub version: u32,
    pub tool: &'static str,
    pub settings: Settings,
    pub capture: CaptureStats,
    pub tcp: TrackerCounters,
    pub mqtt_packets: BTreeMap<&'static str, u64>,
    pub summary: Summary,
    pub sessions: Vec<SessionRecord>,
}

impl AnalysisReport {
    /// The table people read: worst session first, then the summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let c = &self.capture;
        let span = match (c.first_ts, c.last_ts) {
            (Some(a), Some(b)) => format!(", {:.1} s", b.since(a).as_secs_f64()),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} in {} ({} packets{})\n",
            plural(self.sessions.len() as u64, "MQTT session"),
            c.files.join(", "),
            c.packets,
            span
        );
        let mut order: Vec<&SessionRecord> = self.sessions.iter().collect();
        order.sort_by(|a, b| {
            b.severity()
                .cmp(&a.severity())
                .then(b.headroom.unwrap_or(0.0).total_cmp(&a.headroom.unwrap_or(0.0)))
                .then(a.id.cmp(&b.id))
        });
        let header = [
            "CLIENT",
            "CLIENT ID",
            "VER",
            "KEEPALIVE",
            "PINGS",
            "RTT ms",
            "MAX SILENCE",
            "EXPIRED",
            "CLOSE",
            "ENFORCEMENT",
        ];
        let rows: Vec<[String; 10]> = order.iter().map(|r| text_row(r)).collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let _ = write!(l, "{cell:<w$}  ");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header));
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\nSummary: {} ({} joined mid-stream), {} expired, {} of {} pings unanswered, {} closed without DISCONNECT ({} with a Will)",
            plural(s.sessions, "session"),
            s.mid_stream,
            s.expired,
            s.pings_unanswered,
            s.pings,
            s.closes_without_disconnect,
            s.wills_expected
        );
        if !s.enforcement.is_empty() {
            let verdicts: Vec<String> =
                s.enforcement.iter().map(|(k, v)| format!("{v} {}", k.replace('_', " "))).collect();
            let _ = writeln!(out, "Broker enforcement: {}", verdicts.join(", "));
        }
        if let Some(p) = s.ping_rtt_ms {
            let _ = writeln!(
                out,
                "Ping RTT ms: p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3} ({} pings)",
                p.p50, p.p90, p.p99, p.max, p.count
            );
        }
        let t = &self.tcp;
        let _ = writeln!(
            out,
            "Capture: {} packets, {} bytes; {} gaps ({} bytes), {} malformed, {} truncated frames, {} retransmissions, {} non-MQTT flows",
            c.packets,
            c.bytes,
            t.gaps,
            t.gap_bytes,
            t.malformed,
            c.truncated_packets,
            t.retransmissions,
            t.non_mqtt_flows
        );
        for w in &c.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

fn text_row(r: &SessionRecord) -> [String; 10] {
    let dash = || "-".to_string();
    let keepalive = match (r.keepalive_s, r.effective_keepalive_s, r.inferred_keepalive_s) {
        (Some(d), Some(e), _) if d != e => format!("{d}->{e}"),
        (_, Some(e), _) => e.to_string(),
        (None, None, Some(i)) => format!("~{i}?"),
        _ => "?".into(),
    };
    let silence = match r.headroom {
        Some(h) => format!("{:.1} s ({h:.2}x)", r.max_silence_s.as_secs_f64()),
        None => format!("{:.1} s", r.max_silence_s.as_secs_f64()),
    };
    let close = match r.close.by {
        Some(by) => format!("{} by {}", r.close.kind, if by == Side::Client { "client" } else { "broker" }),
        None => r.close.kind.to_string(),
    };
    let enforcement = match r.enforcement {
        Some(EnforcementRecord { verdict, lag_s: Some(lag) }) => {
            format!("{} ({lag:+.1} s)", verdict_name(verdict).replace('_', " "))
        }
        Some(EnforcementRecord { verdict, lag_s: None }) => verdict_name(verdict).replace('_', " "),
        None => dash(),
    };
    let pings = if r.pings_unanswered > 0 {
        format!("{}/{} ({} unanswered)", r.pingresp, r.pingreq, r.pings_unanswered)
    } else {
        format!("{}/{}", r.pingresp, r.pingreq)
    };
    [
        r.client.to_string(),
        r.client_id.clone().unwrap_or_else(dash),
        r.protocol.map_or_else(dash, |p| p.as_str().to_string()),
        keepalive,
        pings,
        r.ping_rtt_ms.map_or_else(dash, |p| format!("{:.2}", p.median)),
        silence,
        if r.expired { "yes".into() } else { "no".into() },
        close,
        enforcement,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::FlowKeyJson;

    fn ev(ts: f64, session: u64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session, flow, kind }
    }

    fn end(ts: f64, silence: f64, mqtt: bool) -> EventKind {
        EventKind::SessionEnd {
            last_packet: Timestamp::from_secs_f64(ts),
            max_silence_s: Duration::from_secs_f64(silence),
            open: false,
            evicted: false,
            mqtt,
        }
    }

    #[test]
    fn folds_a_session_and_skips_non_mqtt_connections() {
        let mut r = Report::new();
        let mut live = LiveSessions::new(10);
        for e in [
            ev(0.0, 0, EventKind::SessionStart { mid_stream: false }),
            ev(0.0, 1, EventKind::SessionStart { mid_stream: false }),
            ev(
                0.1,
                0,
                EventKind::Connect {
                    protocol: Protocol::V5,
                    keepalive_s: 60,
                    client_id: Some("a".into()),
                    clean_start: true,
                    will: true,
                },
            ),
            ev(0.1, 0, EventKind::Connack { code: 0, server_keepalive_s: Some(20), effective_keepalive_s: Some(20) }),
            ev(5.0, 0, EventKind::Pingreq),
            ev(5.002, 0, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(2)) }),
            ev(9.0, 0, EventKind::Pingreq),
            ev(9.004, 0, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(4)) }),
            ev(
                30.0,
                0,
                EventKind::Close {
                    close: CloseKind::Rst,
                    by: Side::Client,
                    after_silence_s: Duration::from_secs(21),
                    reason_code: None,
                },
            ),
            ev(30.0, 1, end(3.0, 0.0, false)),
            ev(30.0, 0, end(30.0, 21.0, true)),
        ] {
            r.apply(&e);
            live.apply(&e);
            if e.kind.name() == "pingresp" && e.ts.as_secs_f64() > 9.0 {
                let open = live.snapshot();
                assert_eq!(open.sessions.len(), 1);
                assert_eq!(open.sessions[0].ping_rtt_ms.map(|p| p.max), Some(4.0), "derived fields while open");
                assert_eq!(open.sessions[0].close.kind, "open");
            }
        }
        let closed = live.snapshot();
        assert_eq!(closed.sessions.len(), 1, "the non-MQTT connection is not kept");
        assert_eq!(closed.sessions[0].close.kind, "rst");
        let settings = Settings { ports: vec![1883], ping_timeout_s: None, enforcement_tolerance_s: 1.0 };
        let report = r.build(CaptureStats::default(), TrackerCounters::default(), settings);
        assert_eq!(report.sessions.len(), 1);
        let s = &report.sessions[0];
        assert_eq!((s.keepalive_s, s.server_keepalive_s, s.effective_keepalive_s), (Some(60), Some(20), Some(20)));
        assert_eq!(s.ping_rtt_ms, Some(RttSummary { min: 2.0, median: 2.0, max: 4.0 }));
        assert_eq!(s.headroom, Some(1.05));
        assert_eq!(s.close.kind, "rst");
        assert_eq!(report.summary.closes_without_disconnect, 1);
        assert_eq!(report.summary.wills_expected, 1);
        let text = report.render_text();
        assert!(text.contains("60->20"), "{text}");
        assert!(text.contains("rst by client"), "{text}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []), None);
    }
}

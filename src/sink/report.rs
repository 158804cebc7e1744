//! The analysis report: one record per MQTT session plus capture totals, as text or JSON.
//!
//! Contract: session records are made by [`RecordState`] in the tracker and arrive here as
//! sessions end. [`Report`] counts them into the summary and [`Report::totals`] adds the capture
//! figures. [`SessionsDocument`] is the live agent's `/sessions` (open sessions read from the
//! tracker, the [`RecentSessions`] closed ones).
//! [`JsonWriter`] streams the documented `analyze --format json` document (README, "JSON
//! output") one session at a time; [`AnalysisReport`] is the same document held in memory, and
//! its [`AnalysisReport::render_text`] is the table people read, worst session first. Output
//! order is deterministic.

use crate::flow::Side;
use crate::mqtt::PacketType;
use crate::session::Verdict;
use crate::session::event::round_us;
use crate::session::record::opt_secs;
pub use crate::session::record::{
    CloseRecord, EnforcementRecord, MAX_EVENTS_PER_SESSION, RecordState, RttSummary, SessionEvent, SessionRecord,
};
use crate::time::Timestamp;
use crate::tracker::TrackerCounters;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;

/// Version of the JSON document; bumped when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;

/// Capture-wide figures folded from finished session records.
#[derive(Default)]
pub struct Report {
    summary: Summary,
    /// Every ping round trip of every session, in milliseconds.
    rtts: Vec<f64>,
}

impl Report {
    pub fn new() -> Self {
        Report::default()
    }

    /// Counts one finished session.
    pub fn add(&mut self, r: &SessionRecord) {
        self.summary.add(r);
        self.rtts.extend(r.rtts.iter().map(|d| round_us(d.as_secs_f64() * 1e3)));
    }

    /// The document's figures, once every session has been added.
    pub fn totals(mut self, capture: CaptureStats, tcp: TrackerCounters, settings: Settings) -> Totals {
        self.summary.ping_rtt_ms = Percentiles::of(&mut self.rtts);
        let mqtt_packets =
            PacketType::ALL.iter().zip(tcp.mqtt_packets).filter(|(_, n)| *n > 0).map(|(t, n)| (t.name(), n)).collect();
        Totals { settings, capture, tcp, mqtt_packets, summary: self.summary }
    }
}

/// Everything in the `analyze` document besides the sessions.
#[derive(Clone, Debug)]
pub struct Totals {
    pub settings: Settings,
    pub capture: CaptureStats,
    pub tcp: TrackerCounters,
    pub mqtt_packets: BTreeMap<&'static str, u64>,
    pub summary: Summary,
}

/// Writes the `analyze --format json` document as the sessions end: the head, then one line per
/// session, then the capture figures. Memory does not grow with the number of sessions. Nothing
/// is written before the first session (or [`JsonWriter::end`]), so an input that fails at once
/// leaves no partial document.
pub struct JsonWriter<'a, W: Write> {
    out: W,
    settings: &'a Settings,
    sessions: u64,
    begun: bool,
}

impl<'a, W: Write> JsonWriter<'a, W> {
    pub fn new(out: W, settings: &'a Settings) -> Self {
        JsonWriter { out, settings, sessions: 0, begun: false }
    }

    fn begin(&mut self) -> std::io::Result<()> {
        if !self.begun {
            self.begun = true;
            write!(self.out, r#"{{"format":"{FORMAT}","version":{JSON_VERSION},"tool":"{TOOL}","settings":"#)?;
            serde_json::to_writer(&mut self.out, self.settings)?;
            self.out.write_all(br#","sessions":["#)?;
        }
        Ok(())
    }

    /// Writes one session.
    pub fn session(&mut self, r: &SessionRecord) -> std::io::Result<()> {
        self.begin()?;
        self.out.write_all(if self.sessions == 0 { b"\n" } else { b",\n" })?;
        self.sessions += 1;
        serde_json::to_writer(&mut self.out, r)?;
        Ok(())
    }

    /// Writes the capture figures and closes the document.
    pub fn end(mut self, t: &Totals) -> std::io::Result<W> {
        self.begin()?;
        self.out.write_all(b"\n],\n\"capture\":")?;
        serde_json::to_writer(&mut self.out, &t.capture)?;
        self.out.write_all(b",\n\"tcp\":")?;
        serde_json::to_writer(&mut self.out, &t.tcp)?;
        self.out.write_all(b",\n\"mqtt_packets\":")?;
        serde_json::to_writer(&mut self.out, &t.mqtt_packets)?;
        self.out.write_all(b",\n\"summary\":")?;
        serde_json::to_writer(&mut self.out, &t.summary)?;
        self.out.write_all(b"}\n")?;
        Ok(self.out)
    }
}

const FORMAT: &str = "mqtt-keepalive/analyze";
const TOOL: &str = concat!("mqtt-keepalive ", env!("CARGO_PKG_VERSION"));

/// The `/sessions` document: the same session objects as `analyze --format json`.
#[derive(Serialize)]
pub struct SessionsDocument {
    pub format: &'static str,
    pub version: u32,
    /// Open MQTT sessions, listed or not.
    pub open: u64,
    /// The listed open sessions (the most severe, in the order they began), then the most
    /// recently closed, newest last.
    pub sessions: Vec<SessionRecord>,
}

impl SessionsDocument {
    /// The document listing at most `limit` of the `open` sessions given (the most severe).
    pub fn new(open: impl IntoIterator<Item = SessionRecord>, limit: usize, closed: &RecentSessions) -> Self {
        let mut worst = WorstSessions::new(limit);
        let mut count = 0;
        for r in open {
            count += 1;
            worst.push(r);
        }
        let mut listed = worst.into_sorted();
        listed.sort_unstable_by_key(|r| r.id);
        let sessions = listed.into_iter().chain(closed.closed.iter().cloned()).collect();
        SessionsDocument { format: "mqtt-keepalive/sessions", version: JSON_VERSION, open: count, sessions }
    }
}

/// The most recently closed sessions, for a live agent's `/sessions`: at most `keep`.
pub struct RecentSessions {
    closed: VecDeque<SessionRecord>,
    keep: usize,
}

impl RecentSessions {
    pub fn new(keep: usize) -> Self {
        RecentSessions { closed: VecDeque::new(), keep }
    }

    pub fn push(&mut self, r: SessionRecord) {
        if self.keep == 0 {
            return;
        }
        if self.closed.len() == self.keep {
            self.closed.pop_front();
        }
        self.closed.push_back(r);
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
    /// Counts one session (the round-trip percentiles are filled by [`Report::totals`]).
    fn add(&mut self, r: &SessionRecord) {
        self.sessions += 1;
        self.mid_stream += u64::from(r.mid_stream);
        self.expired += u64::from(r.expired);
        self.pings += r.pingreq;
        self.pings_unanswered += r.pings_unanswered;
        *self.closes.entry(r.close.kind).or_default() += 1;
        if r.close.without_disconnect() {
            self.closes_without_disconnect += 1;
            self.wills_expected += u64::from(r.will == Some(true));
        }
        if let Some(e) = r.enforcement {
            *self.enforcement.entry(e.verdict.as_str()).or_default() += 1;
        }
    }
}

/// The whole `analyze` result, held in memory (the library's and the text table's form; the
/// JSON output streams through [`JsonWriter`] instead). Fields in the JSON document's order.
#[derive(Debug, Serialize)]
pub struct AnalysisReport {
    pub format: &'static str,
    pub version: u32,
    pub tool: &'static str,
    pub settings: Settings,
    /// In the order the sessions ended.
    pub sessions: Vec<SessionRecord>,
    pub capture: CaptureStats,
    pub tcp: TrackerCounters,
    pub mqtt_packets: BTreeMap<&'static str, u64>,
    pub summary: Summary,
}

impl AnalysisReport {
    pub fn new(totals: Totals, sessions: Vec<SessionRecord>) -> Self {
        let Totals { settings, capture, tcp, mqtt_packets, summary } = totals;
        AnalysisReport {
            format: FORMAT,
            version: JSON_VERSION,
            tool: TOOL,
            settings,
            sessions,
            capture,
            tcp,
            mqtt_packets,
            summary,
        }
    }

    /// The JSON document, byte for byte as `analyze --format json` streams it.
    pub fn write_json<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut w = JsonWriter::new(out, &self.settings);
        for r in &self.sessions {
            w.session(r)?;
        }
        let totals = Totals {
            settings: self.settings.clone(),
            capture: self.capture.clone(),
            tcp: self.tcp.clone(),
            mqtt_packets: self.mqtt_packets.clone(),
            summary: self.summary.clone(),
        };
        w.end(&totals)
    }

    /// The table people read: worst session first, then the summary.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let c = &self.capture;
        let span = match (c.first_ts, c.last_ts) {
            (Some(a), Some(b)) => format!(", {:.1} s", b.since(a).as_secs_f64()),
            _ => String::new(),
        };
        let total = self.summary.sessions.max(self.sessions.len() as u64);
        let listed = if (self.sessions.len() as u64) < total {
            format!("; the {} most severe listed, --top 0 lists all", self.sessions.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} in {} ({} packets{}{})\n",
            plural(total, "MQTT session"),
            c.files.join(", "),
            c.packets,
            span,
            listed
        );
        let mut order: Vec<&SessionRecord> = self.sessions.iter().collect();
        order.sort_by(|a, b| worse_first(a, b));
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

/// The text table's order: most severe first, then the most silence for the keepalive (highest
/// headroom), then the session that began first.
fn worse_first(a: &SessionRecord, b: &SessionRecord) -> Ordering {
    b.severity()
        .cmp(&a.severity())
        .then(b.headroom.unwrap_or(0.0).total_cmp(&a.headroom.unwrap_or(0.0)))
        .then(a.id.cmp(&b.id))
}

/// The `keep` most severe sessions (in the text table's order), from any number, in memory for
/// `keep` only.
pub struct WorstSessions {
    keep: usize,
    /// The least severe kept session on top.
    heap: BinaryHeap<Ranked>,
}

/// A record ordered by how early the text table lists it (greater = listed later).
struct Ranked(SessionRecord);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        worse_first(&self.0, &other.0)
    }
}

impl WorstSessions {
    pub fn new(keep: usize) -> Self {
        WorstSessions { keep, heap: BinaryHeap::new() }
    }

    pub fn push(&mut self, r: SessionRecord) {
        if self.keep == 0 {
            return;
        }
        if self.heap.len() == self.keep {
            match self.heap.peek_mut() {
                Some(mut least) if worse_first(&r, &least.0) == Ordering::Less => *least = Ranked(r),
                _ => {}
            }
        } else {
            self.heap.push(Ranked(r));
        }
    }

    /// The kept sessions, most severe first.
    pub fn into_sorted(self) -> Vec<SessionRecord> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
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
        Some(by) => format!("{} by {by}", r.close.kind),
        None => r.close.kind.to_string(),
    };
    let enforcement = match r.enforcement {
        Some(EnforcementRecord { verdict, lag_s: Some(lag) }) => {
            format!("{} ({lag:+.1} s)", verdict.as_str().replace('_', " "))
        }
        Some(EnforcementRecord { verdict, lag_s: None }) => verdict.as_str().replace('_', " "),
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
    use crate::flow::Side;
    use crate::mqtt::Protocol;
    use crate::session::event::FlowKeyJson;
    use crate::session::{CloseKind, Event, EventKind, SessionId};
    use std::collections::HashMap;
    use std::time::Duration;

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
        let mut folding: HashMap<SessionId, RecordState> = HashMap::new();
        let mut records = Vec::new();
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
            match e.kind {
                EventKind::SessionStart { mid_stream } => {
                    folding.insert(e.session, RecordState::new(e.ts, mid_stream));
                }
                EventKind::SessionEnd { .. } => records.extend(folding.remove(&e.session).unwrap().finish(&e)),
                _ => folding.get_mut(&e.session).unwrap().apply(&e),
            }
            if e.kind.as_str() == "pingresp" && e.ts.as_secs_f64() > 9.0 {
                let open = folding[&0].snapshot(0, e.flow, Duration::ZERO);
                assert_eq!(open.ping_rtt_ms.map(|p| p.max), Some(4.0), "derived fields while open");
                assert_eq!(open.close.kind, "open");
            }
        }
        assert_eq!(records.len(), 1, "the non-MQTT connection gives no record");
        let mut recent = RecentSessions::new(1);
        recent.push(records[0].clone());
        recent.push(records[0].clone());
        let doc = SessionsDocument::new(vec![records[0].clone()], 10, &recent);
        assert_eq!(doc.sessions.len(), 2, "open ones, then at most `keep` closed ones");
        assert_eq!(doc.sessions[1].close.kind, "rst");
        let doc = SessionsDocument::new(vec![records[0].clone(); 3], 1, &RecentSessions::new(0));
        assert_eq!((doc.open, doc.sessions.len()), (3, 1), "open sessions beyond the limit are counted");
        let settings = Settings { ports: vec![1883], ping_timeout_s: None, enforcement_tolerance_s: 1.0 };
        let mut r = Report::new();
        records.iter().for_each(|s| r.add(s));
        let report =
            AnalysisReport::new(r.totals(CaptureStats::default(), TrackerCounters::default(), settings), records);
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
        assert_eq!(report.summary.ping_rtt_ms.map(|p| (p.count, p.max)), Some((2, 4.0)));
        let streamed: serde_json::Value = serde_json::from_slice(&report.write_json(Vec::new()).unwrap()).unwrap();
        assert_eq!(streamed, serde_json::to_value(&report).unwrap(), "the streamed document is the report");
    }

    #[test]
    fn worst_sessions_keeps_the_head_of_the_table_order() {
        let record = |id: u64, expired: bool, headroom: f64| {
            let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
            let flow = FlowKeyJson { client: "10.0.0.1:1".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
            let mut r = s
                .finish(&Event { ts: Timestamp::from_secs_f64(1.0), session: id, flow, kind: end(1.0, 1.0, true) })
                .unwrap();
            (r.id, r.expired, r.headroom) = (id, expired, Some(headroom));
            r
        };
        let all: Vec<SessionRecord> =
            (0..200u64).map(|i| record(i, i % 7 == 0, ((i * 37) % 11) as f64 / 4.0)).collect();
        let mut full: Vec<&SessionRecord> = all.iter().collect();
        full.sort_by(|a, b| worse_first(a, b));
        let mut worst = WorstSessions::new(10);
        all.iter().rev().cloned().for_each(|r| worst.push(r));
        let kept: Vec<u64> = worst.into_sorted().iter().map(|r| r.id).collect();
        assert_eq!(kept, full[..10].iter().map(|r| r.id).collect::<Vec<_>>());
        assert!(all[kept[0] as usize].expired, "an expired session heads the table");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []), None);
    }
}

//! Capture-wide totals: the summary folded from finished sessions' records, and the capture and
//! settings figures beside it.
//!
//! Contract: [`Report::add`] counts each finished session once; [`Report::totals`] adds the
//! capture's figures and the tracker's counters and gives the [`Totals`] every output prints.

pub use crate::model::stats::{CaptureStats, OTHER_PORTS_LISTED, PortSegments};
use crate::mqtt::PacketType;
use crate::session::event::round_us;
use crate::session::record::SessionRecord;
use crate::tracker::TrackerCounters;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// The rule settings a report was made with.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub ports: Vec<u16>,
    /// `null` means "the effective keepalive (30 s when unknown)".
    pub ping_timeout_s: Option<f64>,
    pub enforcement_tolerance_s: f64,
}

/// Warnings about the whole capture that a person must not miss, for the text report and
/// standard error: MQTT on a port not given with `--port`, and connections the table was too
/// full to track.
pub fn capture_warnings(settings: &Settings, capture: &CaptureStats, tcp: &TrackerCounters) -> Vec<String> {
    let mut out = Vec::new();
    if tcp.mqtt_sessions == 0 && capture.other_tcp_segments > 0 {
        let ports: Vec<String> = settings.ports.iter().map(u16::to_string).collect();
        let busiest: Vec<String> =
            capture.other_tcp_ports.iter().take(5).map(|p| format!("{} ({} segments)", p.port, p.segments)).collect();
        let hint = capture.other_tcp_ports.first().map_or(String::new(), |p| format!(" (e.g. --port {})", p.port));
        out.push(format!(
            "no MQTT session on port{} {}, but {} TCP segments on other ports, busiest {}: if the broker listens on another port, give it with --port{}",
            if ports.len() == 1 { "" } else { "s" },
            ports.join(", "),
            capture.other_tcp_segments,
            busiest.join(", "),
            hint
        ));
    }
    if tcp.connections_rejected > 0 {
        out.push(format!(
            "{} connections were not tracked because the connection table was full (--max-flows): their sessions are missing from this report",
            tcp.connections_rejected
        ));
    }
    out
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
    /// TLS sessions, those decrypted, and those a key log was given for but had no line
    /// (`no_key_log_line`: the wrong file, or one written by other clients).
    pub tls_sessions: u64,
    pub tls_decrypted: u64,
    pub tls_no_key_log_line: u64,
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
        if let Some(t) = &r.tls {
            self.tls_sessions += 1;
            self.tls_decrypted += u64::from(t.decrypted);
            self.tls_no_key_log_line += u64::from(!t.decrypted && t.encrypted_reason == Some("no_key_log_line"));
        }
    }

    /// A warning when a key log was given and matched none, or only some, of the TLS sessions.
    pub fn key_log_warning(&self) -> Option<String> {
        match (self.tls_no_key_log_line, self.tls_decrypted) {
            (0, _) => None,
            (n, 0) => Some(format!(
                "the TLS key log matched {}: it has no line with {} client random, so {} encrypted (was it written by these clients, as SSLKEYLOGFILE, while this capture ran?)",
                if n == 1 { "no TLS session".to_string() } else { format!("none of the {n} TLS sessions") },
                if n == 1 { "its" } else { "their" },
                if n == 1 { "it stays" } else { "they stay" },
            )),
            (n, _) => Some(format!(
                "the TLS key log has no line for {n} of the {} TLS sessions: those stay encrypted",
                self.tls_sessions
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&mut []), None);
    }
}

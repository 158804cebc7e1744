//! The text table people read: worst session first, a legend, then the summary.
//!
//! Contract: every captured string (client ids, file names, warnings) is escaped with
//! [`terminal::escape`] before it is printed, so no row can be broken or a terminal driven by
//! what a client sent. Cells are measured by display width (wide CJK and emoji take two
//! columns); client ids are cut with an ellipsis to at most [`MAX_CLIENT_ID_WIDTH`] columns (the
//! JSON outputs have them whole). Every other cell has a format of bounded width (addresses,
//! times, counts), so what a client sends cannot widen the table. Times are in UTC or the local zone ([`TextOptions::zone`]): time of day in the
//! table when every time falls on the date the title names, the full date otherwise.

use super::json::AnalysisReport;
use super::rank::worse_first;
use super::terminal::{self, escape};
use super::times::Zone;
use super::totals::capture_warnings;
use crate::session::EventKind;
use crate::session::record::{EnforcementRecord, SessionRecord};
use crate::time::Timestamp;
use std::fmt::Write as _;

/// Widest client id cell.
pub const MAX_CLIENT_ID_WIDTH: usize = 24;

/// How the text report is shown.
#[derive(Clone, Debug, Default)]
pub struct TextOptions {
    pub zone: Zone,
    /// The filter's conditions as given (`--client-id dev-*`), or empty.
    pub filter: String,
}

const HEADER: [&str; 14] = [
    "ID",
    "CLIENT",
    "CLIENT ID",
    "START",
    "CLOSED",
    "VER",
    "KEEPALIVE",
    "PINGS",
    "RTT ms",
    "MAX SILENCE",
    "EXPIRED",
    "WILL",
    "CLOSE",
    "ENFORCEMENT",
];
/// The CLIENT ID column (after ID and CLIENT).
const ID_COLUMN: usize = 2;
const GAP: usize = 2;

/// What the table's abbreviations mean.
const LEGEND: &str = "\
Legend: ID = the session's id (--session ID shows its timeline). PINGS 4/5 = answered/sent
  (PINGRESP/PINGREQ); ~4/5 = inferred from TLS record sizes (no keys: --tls-keylog decrypts);
  CLIENT ID (TLS not decrypted) = unknown, the records stay encrypted. KEEPALIVE 60->10 =
  declared -> effective (MQTT 5 Server Keep Alive); ~5? = inferred from the ping interval (no
  CONNECT seen; no verdict); ? = unknown; 0 = off. MAX SILENCE (2.81x) = longest client silence /
  keepalive. ENFORCEMENT early = the broker closed after one keepalive of silence, before the
  1.5 x keepalive deadline; (+3.9 s) = how long after the deadline the broker closed. WILL yes =
  CONNECT carried a Will.
";

impl AnalysisReport {
    /// The table people read, in UTC.
    pub fn render_text(&self) -> String {
        self.render_text_with(&TextOptions::default())
    }

    /// The table people read: worst session first, a legend, then the summary.
    pub fn render_text_with(&self, opts: &TextOptions) -> String {
        let zone = opts.zone;
        let mut out = String::new();
        let c = &self.capture;
        let span = match (c.first_ts, c.last_ts) {
            (Some(a), Some(b)) => {
                format!(", {:.1} s from {} {}", b.since(a).as_secs_f64(), zone.format(a), zone.label(a))
            }
            _ => String::new(),
        };
        let total = self.summary.sessions.max(self.sessions.len() as u64);
        let listed = if (self.sessions.len() as u64) < total {
            format!("; the {} most severe listed, --top 0 lists all", self.sessions.len())
        } else {
            String::new()
        };
        let files: Vec<String> = c.files.iter().map(|f| escape(f).into_owned()).collect();
        let matching = if opts.filter.is_empty() { String::new() } else { format!(" matching {}", opts.filter) };
        let _ = writeln!(
            out,
            "{}{matching} in {} ({} packets{}{})\n",
            plural(total, "MQTT session"),
            files.join(", "),
            c.packets,
            span,
            listed
        );
        let mut order: Vec<&SessionRecord> = self.sessions.iter().collect();
        order.sort_by(|a, b| worse_first(a, b));
        // Time of day when every time is on the title's date.
        let day = c.first_ts.map(|t| zone.date(t));
        let same_day = order
            .iter()
            .all(|r| [Some(r.started), close_time(r)].into_iter().flatten().all(|t| Some(zone.date(t)) == day));
        let when = |t: Option<Timestamp>| match t {
            None => "-".to_string(),
            Some(t) if same_day => zone.time_of_day(t),
            Some(t) => zone.format(t),
        };
        let mut header: Vec<&str> = HEADER.to_vec();
        let mut rows: Vec<Vec<String>> = order.iter().map(|r| text_row(r, &when).to_vec()).collect();
        // A TRANSPORT column when the sessions do not all share one.
        let mut id_column = ID_COLUMN;
        if order.iter().any(|r| r.transport != order[0].transport) {
            header.insert(ID_COLUMN, "TRANSPORT");
            for (row, r) in rows.iter_mut().zip(&order) {
                row.insert(ID_COLUMN, r.transport.as_str().to_string());
            }
            id_column += 1;
        }
        let mut widths: Vec<usize> = header.iter().map(|h| terminal::width(h)).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(terminal::width(cell));
            }
        }
        widths[id_column] = widths[id_column].min(MAX_CLIENT_ID_WIDTH);
        let line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
                let cell = if i == id_column { terminal::truncate(cell, w) } else { (*cell).into() };
                if i + 1 == cells.len() {
                    l.push_str(&cell);
                } else {
                    terminal::pad(&mut l, &cell, w + GAP);
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header));
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        if !rows.is_empty() {
            let _ = write!(out, "\n{LEGEND}");
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
        if c.other_tcp_segments > 0 {
            let busiest: Vec<String> =
                c.other_tcp_ports.iter().take(5).map(|p| format!("{} ({})", p.port, p.segments)).collect();
            let _ = writeln!(
                out,
                "Other ports: {} TCP segments not on a broker port (--port); busiest: {}",
                c.other_tcp_segments,
                busiest.join(", ")
            );
        }
        if t.connections_rejected > 0 {
            let _ = writeln!(
                out,
                "Refused: {} connections ({} segments) not tracked, the table was full (--max-flows)",
                t.connections_rejected, t.flows_rejected
            );
        }
        let key_log = self.summary.key_log_warning();
        for w in c
            .warnings
            .iter()
            .map(|w| escape(w).into_owned())
            .chain(capture_warnings(&self.settings, c, t))
            .chain(key_log)
        {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// When the session closed: its close event, else (the list was cut) the last packet of a
/// closed session; `None` while open.
fn close_time(r: &SessionRecord) -> Option<Timestamp> {
    if r.close.kind == crate::session::record::CloseRecord::OPEN_KIND {
        return None;
    }
    r.closed.or_else(|| r.events.iter().find(|e| matches!(e.kind, EventKind::Close { .. })).map(|e| e.ts)).or(r.ended)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

fn text_row(r: &SessionRecord, when: &dyn Fn(Option<Timestamp>) -> String) -> [String; 14] {
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
    let close = match (r.refused, r.close.by) {
        (true, _) => match r.connack_code.filter(|c| *c != 0) {
            Some(c) => format!("refused (code {c}: {})", crate::mqtt::packet::connack_code_name(c)),
            None => "refused (no CONNACK)".into(),
        },
        (false, Some(by)) => format!("{} by {by}", r.close.kind),
        (false, None) => r.close.kind.to_string(),
    };
    let enforcement = match r.enforcement {
        Some(EnforcementRecord { verdict, lag_s: Some(lag) }) => {
            format!("{} ({lag:+.1} s)", verdict.as_str().replace('_', " "))
        }
        Some(EnforcementRecord { verdict, lag_s: None }) => verdict.as_str().replace('_', " "),
        None => dash(),
    };
    // Pings of a TLS session without keys are inferred from record sizes: marked `~`.
    let inferred = if r.tls.as_ref().is_some_and(|t| !t.decrypted) && r.pingreq + r.pingresp > 0 { "~" } else { "" };
    let pings = if r.pings_unanswered > 0 {
        format!("{inferred}{}/{} ({} unanswered)", r.pingresp, r.pingreq, r.pings_unanswered)
    } else {
        format!("{inferred}{}/{}", r.pingresp, r.pingreq)
    };
    [
        r.id.to_string(),
        r.client.to_string(),
        match (&r.client_id, &r.tls) {
            (Some(id), _) => escape(id).into_owned(),
            (None, Some(t)) if !t.decrypted => "(TLS not decrypted)".into(),
            (None, _) => dash(),
        },
        when(Some(r.started)),
        when(close_time(r)),
        r.protocol.map_or_else(dash, |p| p.as_str().to_string()),
        keepalive,
        pings,
        r.ping_rtt_ms.map_or_else(dash, |p| format!("{:.2}", p.median)),
        silence,
        if r.expired { "yes".into() } else { "no".into() },
        match r.will {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => dash(),
        },
        close,
        enforcement,
    ]
}

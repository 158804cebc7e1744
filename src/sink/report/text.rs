//! The text table people read: worst session first, then the summary.

use super::json::AnalysisReport;
use super::rank::worse_first;
use crate::session::record::{EnforcementRecord, SessionRecord};
use std::fmt::Write as _;

impl AnalysisReport {
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

//! The probe's report: the enforcement table (text) and its JSON form, and the exit status.
//!
//! Contract: [`ProbeReport::new`] is pure (times are given). Field and verdict names are those of
//! the `analyze` report where they mean the same (`keepalive_s`, `server_keepalive_s`,
//! `effective_keepalive_s`, `expiry_s`, `close`, `enforcement`, `ping_rtt_ms`, ...). Scenarios
//! are listed in plan order. Neither form ever contains the password (it is not in the report).

use super::ProbeOptions;
use super::client::{CloseHow, Version};
use super::scenario::{Ending, ScenarioResult, WillLog};
use crate::session::Verdict;
use crate::session::event::round_us;
use crate::time::{Timestamp, expiry_span};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// The JSON document.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub format: &'static str,
    pub version: u32,
    pub tool: String,
    pub target: String,
    pub protocol: &'static str,
    pub settings: Settings,
    pub run: RunInfo,
    pub scenarios: Vec<ScenarioJson>,
    pub summary: Summary,
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub keepalives: Vec<u16>,
    pub enforcement_tolerance_s: f64,
    pub max_wait_s: f64,
    pub will_topic: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub started: f64,
    pub ended: f64,
    pub interrupted: bool,
    /// Why the Will watcher lost its connection before the end, if it did.
    pub will_watcher_lost: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CloseJson {
    /// `fin`, `rst`, `disconnect` (MQTT 5, by the broker), `websocket` (close frame), `open`
    /// (still open at the end: the probe sent DISCONNECT), `refused` (CONNACK), `error`.
    pub kind: &'static str,
    pub by: Option<&'static str>,
    /// Client silence when the broker closed.
    pub after_silence_s: Option<f64>,
    pub reason_code: Option<u8>,
    pub websocket_code: Option<u16>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnforcementJson {
    pub verdict: Verdict,
    pub lag_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RttJson {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioJson {
    pub scenario: String,
    pub client_id: String,
    pub connack_code: Option<u8>,
    pub keepalive_s: u16,
    pub server_keepalive_s: Option<u16>,
    pub effective_keepalive_s: Option<u16>,
    pub expiry_s: Option<f64>,
    /// The last client packet before the silence (`connect`, `pingreq`).
    pub silent_after: Option<&'static str>,
    pub last_activity: Option<f64>,
    pub expired: bool,
    pub close: CloseJson,
    pub enforcement: Option<EnforcementJson>,
    pub will_after_s: Option<f64>,
    pub pingreq: usize,
    pub pingresp: usize,
    pub pings_unanswered: u32,
    pub ping_rtt_ms: Option<RttJson>,
    /// What went wrong beyond the verdict (a refusal, an early close, no Will, an error).
    pub problem: Option<String>,
    /// Why there is no verdict where one could be expected.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EnforcementCounts {
    pub on_time: usize,
    pub late: usize,
    pub not_enforced: usize,
    pub early: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenarios: usize,
    pub enforcement: EnforcementCounts,
    pub problems: usize,
    /// 0: every deadline reached was enforced on time and nothing went wrong; 3 otherwise.
    pub exit_status: u8,
}

fn secs(d: Duration) -> f64 {
    round_us(d.as_secs_f64())
}

fn ts(t: Timestamp) -> f64 {
    round_us(t.as_secs_f64())
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::V311 => "3.1.1",
        Version::V5 => "5.0",
    }
}

/// What a non-zero CONNACK code means.
pub fn connack_meaning(code: u8, v5: bool) -> &'static str {
    match (v5, code) {
        (false, 1) => "unacceptable protocol version",
        (false, 2) => "identifier rejected",
        (false, 3) => "server unavailable",
        (false, 4) => "bad user name or password",
        (false, 5) => "not authorized",
        // A broker without MQTT 5 answers a version 5 CONNECT in 3.1.1 terms.
        (true, 1) => "unacceptable protocol version: the broker does not speak MQTT 5",
        (true, 0x80) => "unspecified error",
        (true, 0x81) => "malformed packet",
        (true, 0x82) => "protocol error",
        (true, 0x84) => "unsupported protocol version",
        (true, 0x85) => "client identifier not valid",
        (true, 0x86) => "bad user name or password",
        (true, 0x87) => "not authorized",
        (true, 0x88) => "server unavailable",
        (true, 0x89) => "server busy",
        (true, 0x8a) => "banned",
        (true, 0x8c) => "bad authentication method",
        (true, 0x95) => "packet too large",
        (true, 0x97) => "quota exceeded",
        (true, 0x9f) => "connection rate exceeded",
        _ => "unknown code",
    }
}

fn scenario_json(r: &ScenarioResult, run_end: Timestamp, until: Timestamp) -> ScenarioJson {
    let (kind, by, websocket_code, reason_code) = match r.ending {
        Ending::Broker(CloseHow::Fin) => ("fin", Some("broker"), None, None),
        Ending::Broker(CloseHow::Rst) => ("rst", Some("broker"), None, None),
        Ending::Broker(CloseHow::WsClose(c)) => ("websocket", Some("broker"), Some(c), None),
        Ending::BrokerDisconnect(code) => ("disconnect", Some("broker"), None, code),
        Ending::KeptOpen => ("open", None, None, None),
        Ending::Refused(code) => ("refused", None, None, Some(code)),
        Ending::Error => ("error", None, None, None),
    };
    let mut rtts = r.ping_rtts.clone();
    rtts.sort();
    let ping_rtt_ms = (!rtts.is_empty()).then(|| RttJson {
        min: round_us(rtts[0].as_secs_f64() * 1e3),
        median: round_us(rtts[(rtts.len() - 1) / 2].as_secs_f64() * 1e3),
        max: round_us(rtts[rtts.len() - 1].as_secs_f64() * 1e3),
    });
    let effective = r.effective_keepalive.filter(|k| *k > 0);
    let deadline = effective.zip(r.silent_after).map(|(k, (_, t))| t.saturating_add(expiry_span(k)));
    let note = match (r.verdict, r.ending, deadline) {
        (None, Ending::KeptOpen, Some(d)) if d >= until.min(run_end) => {
            Some("deadline after the end of the run (--max-wait)".to_string())
        }
        (None, Ending::Refused(code), _) => Some(format!("refused: CONNACK code {code:#04x}")),
        _ => None,
    };
    let pingreq = r.scenario_pingreqs();
    ScenarioJson {
        scenario: r.scenario.name.clone(),
        client_id: r.client_id.clone(),
        connack_code: r.connack_code,
        keepalive_s: r.scenario.keepalive,
        server_keepalive_s: r.server_keepalive,
        effective_keepalive_s: r.effective_keepalive,
        expiry_s: effective.map(|k| secs(expiry_span(k))),
        silent_after: r.silent_after.map(|(p, _)| p.name()),
        last_activity: r.silent_after.map(|(_, t)| ts(t)),
        expired: r.expired_at.is_some(),
        close: CloseJson { kind, by, after_silence_s: r.closed_after.map(secs), reason_code, websocket_code },
        enforcement: r.verdict.map(|(verdict, lag_s)| EnforcementJson { verdict, lag_s }),
        will_after_s: r.will_after().map(secs),
        pingreq,
        pingresp: r.ping_rtts.len(),
        pings_unanswered: r.pings_unanswered,
        ping_rtt_ms,
        problem: r.problem(),
        note,
    }
}

impl ScenarioResult {
    fn scenario_pingreqs(&self) -> usize {
        self.events.iter().filter(|(_, e)| matches!(e, crate::session::EventKind::Pingreq)).count()
    }
}

impl ProbeReport {
    /// The report of a run.
    pub fn new(
        opts: &ProbeOptions,
        run_id: &str,
        started: Timestamp,
        ended: Timestamp,
        interrupted: bool,
        results: Vec<ScenarioResult>,
        wills: &WillLog,
    ) -> ProbeReport {
        let length = opts.run_length();
        let until = started.saturating_add(length);
        let scenarios: Vec<_> = results.iter().map(|r| scenario_json(r, ended, until)).collect();
        let mut enforcement = EnforcementCounts::default();
        for s in &scenarios {
            match s.enforcement.as_ref().map(|e| e.verdict) {
                Some(Verdict::OnTime) => enforcement.on_time += 1,
                Some(Verdict::Late) => enforcement.late += 1,
                Some(Verdict::NotEnforced) => enforcement.not_enforced += 1,
                Some(Verdict::Early) => enforcement.early += 1,
                None => {}
            }
        }
        let problems = scenarios.iter().filter(|s| s.problem.is_some()).count();
        let bad = enforcement.late + enforcement.not_enforced + enforcement.early + problems;
        ProbeReport {
            format: "mqtt-keepalive/probe",
            version: 1,
            tool: format!("mqtt-keepalive {}", env!("CARGO_PKG_VERSION")),
            target: opts.target.display(),
            protocol: protocol_name(opts.version),
            settings: Settings {
                keepalives: opts.keepalives.clone(),
                enforcement_tolerance_s: secs(opts.enforcement_tolerance),
                max_wait_s: secs(length),
                will_topic: format!("{}/{}/+", opts.topic_prefix, run_id),
            },
            run: RunInfo {
                id: run_id.to_string(),
                started: ts(started),
                ended: ts(ended),
                interrupted,
                will_watcher_lost: wills.lost_at.as_ref().map(|(_, why)| why.clone()),
            },
            summary: Summary {
                scenarios: scenarios.len(),
                enforcement,
                problems,
                exit_status: if bad == 0 { 0 } else { 3 },
            },
            scenarios,
        }
    }

    /// The exit status for scripts: 0 all enforced on time, 3 otherwise.
    pub fn exit_status(&self) -> u8 {
        self.summary.exit_status
    }

    /// The enforcement table.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Probe of {} over MQTT {} (run {}, {:.1} s{})\n",
            self.target,
            self.protocol,
            self.run.id,
            self.run.ended - self.run.started,
            if self.run.interrupted { ", interrupted: partial results" } else { "" }
        );
        let header = [
            "SCENARIO",
            "KEEPALIVE",
            "SILENT AFTER",
            "DEADLINE",
            "BROKER CLOSED AFTER",
            "HOW",
            "VERDICT",
            "WILL AFTER",
            "PING RTT ms",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        let dash = || "-".to_string();
        for s in &self.scenarios {
            let keepalive = match (s.server_keepalive_s, s.keepalive_s) {
                (Some(server), k) if server != k => format!("{k} -> {server}"),
                (_, 0) => "0 (off)".to_string(),
                (_, k) => k.to_string(),
            };
            let how = match (s.close.kind, s.close.reason_code, s.close.websocket_code) {
                ("disconnect", Some(code), _) => format!("DISCONNECT {code:#04x}"),
                ("disconnect", None, _) => "DISCONNECT".to_string(),
                ("websocket", _, Some(code)) => format!("ws close {code}"),
                ("fin", ..) => "FIN".to_string(),
                ("rst", ..) => "RST".to_string(),
                ("open", ..) => "kept open".to_string(),
                ("refused", Some(code), _) => format!("refused {code:#04x}"),
                (other, ..) => other.to_string(),
            };
            let verdict = match &s.enforcement {
                Some(EnforcementJson { verdict, lag_s: Some(lag) }) => {
                    format!("{} ({:+.1} s)", verdict_name(*verdict), lag)
                }
                Some(EnforcementJson { verdict, lag_s: None }) => verdict_name(*verdict).to_string(),
                None => dash(),
            };
            let rtt = s.ping_rtt_ms.as_ref().map_or_else(dash, |r| format!("{:.2}", r.median));
            rows.push(vec![
                s.scenario.clone(),
                keepalive,
                s.silent_after.map_or_else(dash, |p| p.to_ascii_uppercase()),
                s.expiry_s.map_or_else(dash, |e| deadline_cell(e, self.settings.max_wait_s)),
                s.close.after_silence_s.map_or_else(dash, |a| format!("{a:.1} s")),
                how,
                verdict,
                s.will_after_s.map_or_else(dash, |w| format!("{w:.1} s")),
                rtt,
            ]);
        }
        let widths: Vec<usize> =
            (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let problems: Vec<_> =
            self.scenarios.iter().filter_map(|s| s.problem.as_ref().map(|p| (&s.scenario, p))).collect();
        if !problems.is_empty() {
            let _ = writeln!(out, "\nProblems:");
            for (name, p) in problems {
                let _ = writeln!(out, "  {name}: {p}");
            }
        }
        let notes: Vec<_> = self.scenarios.iter().filter_map(|s| s.note.as_ref().map(|n| (&s.scenario, n))).collect();
        if !notes.is_empty() || self.run.will_watcher_lost.is_some() {
            let _ = writeln!(out, "\nNotes:");
            for (name, n) in notes {
                let _ = writeln!(out, "  {name}: {n}");
            }
            if let Some(why) = &self.run.will_watcher_lost {
                let _ = writeln!(out, "  Will watcher lost its connection: {why}");
            }
        }
        let e = &self.summary.enforcement;
        let counts: Vec<String> =
            [("on_time", e.on_time), ("late", e.late), ("not_enforced", e.not_enforced), ("early", e.early)]
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
        let _ = writeln!(
            out,
            "\nSummary: {} scenarios; broker enforcement: {}; {} problem{}",
            self.summary.scenarios,
            if counts.is_empty() { "no deadline reached".to_string() } else { counts.join(", ") },
            self.summary.problems,
            if self.summary.problems == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "Deadline: 1.5 x the effective keepalive after the last client packet; on_time: closed within {} s after it.",
            self.settings.enforcement_tolerance_s
        );
        let _ = writeln!(out, "{}", self.exit_reason());
        out
    }

    /// Why the exit status is what it is, in a sentence.
    pub fn exit_reason(&self) -> String {
        if self.summary.exit_status == 0 {
            return "Exit status 0: every deadline reached was enforced on time.".into();
        }
        let e = &self.summary.enforcement;
        let mut why: Vec<String> = [
            (e.late, "closed late"),
            (e.not_enforced, "not closed (not enforced)"),
            (e.early, "closed before the deadline (early)"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if self.summary.problems > 0 {
            let p = self.summary.problems;
            why.push(format!("{p} scenario{} with a problem (above)", if p == 1 { "" } else { "s" }));
        }
        format!("Exit status {}: {}.", self.summary.exit_status, why.join(", "))
    }
}

/// The DEADLINE cell: seconds, or hours when long; a deadline past the run's end says so (the
/// run stops before it: nothing to enforce).
fn deadline_cell(expiry_s: f64, max_wait_s: f64) -> String {
    let span = if expiry_s >= 3600.0 {
        format!("{:.1} h", expiry_s / 3600.0)
    } else if expiry_s >= 600.0 {
        format!("{:.0} min", expiry_s / 60.0)
    } else {
        format!("{expiry_s:.1} s")
    };
    if expiry_s > max_wait_s { format!("{span} (after the run)") } else { span }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::OnTime => "on_time",
        Verdict::Late => "late",
        Verdict::NotEnforced => "not_enforced",
        Verdict::Early => "early",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::PacketType;
    use crate::probe::client::TlsOptions;
    use crate::probe::scenario::{Kind, Scenario, plan};
    use crate::probe::{Secret, Target};

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(s)
    }

    fn opts() -> ProbeOptions {
        ProbeOptions {
            target: Target::parse("mqtt://127.0.0.1:1883").unwrap(),
            version: Version::V311,
            keepalives: vec![5],
            max_wait: Some(Duration::from_secs(20)),
            enforcement_tolerance: Duration::from_secs(1),
            username: Some("user".into()),
            password: Some(Secret(b"hunter2".to_vec())),
            tls: TlsOptions::default(),
            topic_prefix: "p".into(),
        }
    }

    fn result(kind: Kind, keepalive: u16) -> ScenarioResult {
        let s = plan(&[keepalive]).into_iter().find(|s| s.kind == kind).unwrap_or(Scenario {
            name: "x".into(),
            kind,
            keepalive,
        });
        let mut r = crate::probe::scenario::tests_support::empty(&s);
        r.connack_code = Some(0);
        r.effective_keepalive = Some(keepalive);
        r.silent_after = Some((PacketType::Connect, t(100.0)));
        r
    }

    #[test]
    fn a_deadline_past_the_run_says_so_in_hours() {
        assert_eq!(deadline_cell(98302.5, 40.0), "27.3 h (after the run)");
        assert_eq!(deadline_cell(4.5, 40.0), "4.5 s");
        assert_eq!(deadline_cell(900.0, 2000.0), "15 min");
    }

    #[test]
    fn late_close_makes_exit_status_3_and_the_table_says_so() {
        let mut late = result(Kind::Silent, 5);
        late.ending = Ending::Broker(CloseHow::Fin);
        late.closed_after = Some(Duration::from_millis(9500));
        late.closed_at = Some(t(109.5));
        late.expired_at = Some(t(107.5));
        late.verdict = Some((Verdict::Late, Some(2.0)));
        late.will_at = Some(t(109.6));
        let mut open = result(Kind::KeepaliveZero, 0);
        open.effective_keepalive = Some(0);
        open.ending = Ending::KeptOpen;
        let rep = ProbeReport::new(&opts(), "abc", t(99.0), t(120.0), false, vec![late, open], &WillLog::default());
        assert_eq!(rep.exit_status(), 3);
        assert_eq!(rep.summary.enforcement.late, 1);
        let text = rep.render_text();
        assert!(text.contains("late (+2.0 s)"), "{text}");
        assert!(text.contains("FIN") && text.contains("9.5 s") && text.contains("9.6 s"), "{text}");
        assert!(text.contains("0 (off)") && text.contains("kept open"), "{text}");
        // "0 problems" with exit status 3 says why.
        assert!(text.contains("; 0 problems\n"), "{text}");
        assert!(text.contains("Exit status 3: 1 closed late."), "{text}");
        let json = serde_json::to_value(&rep).unwrap();
        let s0 = &json["scenarios"][0];
        assert_eq!(s0["enforcement"]["verdict"], "late");
        assert_eq!(s0["close"]["kind"], "fin");
        assert_eq!(s0["close"]["by"], "broker");
        assert_eq!(s0["expiry_s"], 7.5);
        assert_eq!(s0["silent_after"], "connect");
        assert_eq!(json["format"], "mqtt-keepalive/probe");
        let all = serde_json::to_string(&rep).unwrap() + &text;
        assert!(!all.contains("hunter2"), "the password is never in a report");
    }

    #[test]
    fn on_time_everywhere_is_exit_status_0() {
        let mut ok = result(Kind::Silent, 5);
        ok.ending = Ending::BrokerDisconnect(Some(0x8d));
        ok.closed_after = Some(Duration::from_millis(7600));
        ok.closed_at = Some(t(107.6));
        ok.verdict = Some((Verdict::OnTime, Some(0.1)));
        ok.will_at = Some(t(107.7));
        let rep = ProbeReport::new(&opts(), "abc", t(99.0), t(120.0), false, vec![ok], &WillLog::default());
        assert_eq!(rep.exit_status(), 0);
        assert!(rep.render_text().contains("Exit status 0: every deadline reached was enforced on time."));
        assert!(rep.render_text().contains("DISCONNECT 0x8d"));
    }

    #[test]
    fn connack_codes_are_named() {
        assert_eq!(connack_meaning(5, false), "not authorized");
        assert_eq!(connack_meaning(0x87, true), "not authorized");
        assert_eq!(connack_meaning(0x42, true), "unknown code");
        assert!(connack_meaning(1, true).contains("does not speak MQTT 5"));
    }
}

//! The HTML timeline report (`analyze --html FILE`, `-f html`): one self-contained page that
//! draws every session on one shared time axis.
//!
//! Contract: [`HtmlReport`] is a [`Sink`] of the event stream (it keeps what the JSON session
//! records leave out: each PINGREQ and PINGRESP with its round trip, and each client packet's
//! silence from `client_activity` events, so run it with
//! [`SessionConfig::activity_events`](crate::session::SessionConfig)) and is handed every
//! finished [`SessionRecord`] through [`HtmlReport::record`]. [`HtmlReport::write`] then writes
//! the page: summary figures and the enforcement table, a capture strip (expiries, broker closes,
//! gaps and malformed data over the whole capture), one lane per session for the `top` most
//! severe sessions (the text table's order), and aggregate lanes (one per severity class, with
//! counts) for the rest. Memory holds the open sessions' pings and activity, the `top` lanes, and
//! a few numbers per other session.
//!
//! What tests may rely on: every lane is an element with `data-session` (the session's `id` in
//! the JSON report), `data-client-id` and `data-verdict` (the enforcement verdict, or `none`);
//! inside its `svg.track`, every event of the session (the JSON report's `events` and every ping
//! of the JSON-lines stream) is one element with `data-kind` (the JSON-lines kind name) and
//! `data-ts` (its time, Unix seconds as in JSON), drawn at `(ts - t0) / (t1 - t0)` of the track's
//! width, where `t0`, `t1` are the capture's first and last packet times (also on `body` as
//! `data-t0`, `data-t1`). Client packets are ticks of one `path.activity` (`data-count`), silences
//! of at least [`MIN_SHADED`] of the limit `class="silence"` with `data-from`/`data-to`/`data-ratio`
//! (silence / 1.5 x keepalive), the
//! deadline `data-kind="deadline"`, the enforcement lag `class="lag"` from the deadline to the close,
//! the session's life `line.life` to its close and the connection's packets after it (to the last,
//! e.g. a late FIN) `line.after-close` with `data-from`/`data-to`.
//! The page fetches nothing; every captured string is escaped; pictures render without
//! JavaScript (hover texts are SVG `<title>`s); the inline script only filters by client id and
//! zooms.

use super::Sink;
use crate::flow::Side;
use crate::session::CloseKind;
use crate::session::event::round_us;
use crate::session::{Event, EventKind, SessionId, Verdict};
use crate::sink::report::{SessionRecord, Totals};
use crate::time::{Timestamp, expiry_span};
use foldhash::{HashMap, HashMapExt};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

const TOOL: &str = concat!("mqtt-keepalive ", env!("CARGO_PKG_VERSION"));

/// Most pings and client packets kept per session (the rest are counted, not drawn).
pub const MAX_MARKS_PER_SESSION: usize = 2000;
/// Silences shorter than this share of 1.5 x keepalive are not shaded.
pub const MIN_SHADED: f64 = 0.5;
/// Columns of the capture strip and the aggregate lanes.
const BINS: usize = 200;

/// One drawn thing of the event stream that the record does not list.
#[derive(Clone, Copy, Debug)]
enum Mark {
    Pingreq(Timestamp),
    Pingresp(Timestamp, Option<Duration>),
    /// A client packet after `silence`, with the effective keepalive then.
    Activity(Timestamp, Duration, u16),
}

/// The stream-only marks of one session.
#[derive(Clone, Debug, Default)]
struct Marks {
    marks: Vec<Mark>,
    dropped: u64,
}

/// A session drawn as a lane.
struct Lane {
    record: SessionRecord,
    marks: Marks,
}

impl PartialEq for Lane {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Lane {}
impl PartialOrd for Lane {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Lane {
    /// Greater = listed later (the text table's order: severity, headroom, id).
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.record, &other.record);
        b.severity()
            .cmp(&a.severity())
            .then(b.headroom.unwrap_or(0.0).total_cmp(&a.headroom.unwrap_or(0.0)))
            .then(a.id.cmp(&b.id))
    }
}

/// A session beyond the `top`: what its aggregate lane needs.
#[derive(Clone, Copy, Debug)]
struct Brief {
    started: Timestamp,
    ended: Timestamp,
    severity: u8,
}

/// Capture-wide things shown in the strip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StripKind {
    Expiry,
    BrokerClose,
    Gap,
    Malformed,
}

/// The strip's rows: kind, its `data-kind`, and what one and several are called.
const STRIP: [(StripKind, &str, (&str, &str)); 4] = [
    (StripKind::Expiry, "keepalive_expired", ("expiry", "expiries")),
    (StripKind::BrokerClose, "close", ("broker close", "broker closes")),
    (StripKind::Gap, "gap", ("capture gap", "capture gaps")),
    (StripKind::Malformed, "malformed", ("malformed data", "malformed data")),
];

/// `1 expiry`, `2 expiries`.
fn counted(n: u64, (one, many): (&str, &str)) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// Severity classes, most severe first (see `SessionRecord::severity`).
const CLASSES: [(u8, &str); 7] = [
    (6, "expired, not enforced"),
    (5, "expired, closed late"),
    (4, "expired"),
    (3, "unanswered pings"),
    (2, "closed early by the broker"),
    (1, "closed without DISCONNECT"),
    (0, "healthy"),
];

/// The HTML report sink. See the module doc.
pub struct HtmlReport {
    keep: usize,
    open: HashMap<SessionId, Marks>,
    /// The least severe kept lane on top.
    top: BinaryHeap<Lane>,
    rest: Vec<Brief>,
    strip: Vec<(Timestamp, StripKind)>,
}

impl HtmlReport {
    /// A report drawing the `top` most severe sessions as lanes (0: all).
    pub fn new(top: usize) -> Self {
        HtmlReport {
            keep: if top == 0 { usize::MAX } else { top },
            open: HashMap::new(),
            top: BinaryHeap::new(),
            rest: Vec::new(),
            strip: Vec::new(),
        }
    }

    /// A finished session (its sink, [`crate::output::html::HtmlPage`], hands it on).
    pub fn record(&mut self, record: SessionRecord) {
        let marks = self.open.remove(&record.id).unwrap_or_default();
        for e in &record.events {
            let kind = match &e.kind {
                EventKind::KeepaliveExpired { .. } => StripKind::Expiry,
                EventKind::Close { by: Side::Broker, .. } => StripKind::BrokerClose,
                EventKind::Gap { .. } => StripKind::Gap,
                EventKind::Malformed { .. } => StripKind::Malformed,
                _ => continue,
            };
            self.strip.push((e.ts, kind));
        }
        let lane = Lane { record, marks };
        if self.top.len() < self.keep {
            self.top.push(lane);
            return;
        }
        let out = match self.top.peek_mut() {
            Some(mut least) if lane < *least => std::mem::replace(&mut *least, lane),
            _ => lane,
        };
        let r = &out.record;
        self.rest.push(Brief { started: r.started, ended: r.ended.unwrap_or(r.started), severity: r.severity() });
    }

    /// Writes the page.
    pub fn write<W: Write>(self, totals: &Totals, mut out: W) -> io::Result<W> {
        let page = self.render(totals);
        out.write_all(page.as_bytes())?;
        Ok(out)
    }

    /// The page as a string.
    pub fn render(self, totals: &Totals) -> String {
        let mut lanes = self.top.into_sorted_vec();
        let t0 = totals.capture.first_ts.unwrap_or(Timestamp::from_nanos(0));
        let mut t1 = totals.capture.last_ts.unwrap_or(t0);
        for l in &lanes {
            for e in &l.record.events {
                t1 = t1.max(e.ts);
            }
        }
        let axis = Axis { t0: secs(t0), t1: secs(t1) };
        let mut h = String::with_capacity(64 * 1024 + lanes.len() * 4096);
        head(&mut h, totals, &axis);
        summary(&mut h, totals, lanes.len(), self.rest.len());
        h.push_str("<section id=\"timeline\"><h2>Sessions</h2>\n");
        h.push_str(
            "<div class=\"tools\"><label>Client id <input id=\"q\" type=\"search\" placeholder=\"filter\"></label> \
             <label>Zoom <input id=\"zoom\" type=\"range\" min=\"1\" max=\"50\" step=\"1\" value=\"1\"></label> \
             <label>Pan <input id=\"pan\" type=\"range\" min=\"0\" max=\"1000\" value=\"0\"></label> \
             <span class=\"legend\">",
        );
        legend(&mut h);
        h.push_str("</span></div>\n");
        axis_row(&mut h, &axis);
        strip_row(&mut h, &axis, &self.strip);
        for lane in lanes.iter_mut() {
            lane.marks.marks.sort_by_key(|m| match m {
                Mark::Pingreq(t) | Mark::Pingresp(t, _) | Mark::Activity(t, _, _) => *t,
            });
            lane_html(&mut h, &axis, lane);
        }
        aggregates(&mut h, &axis, &self.rest);
        h.push_str("</section>\n");
        h.push_str(SCRIPT);
        h.push_str("</body>\n</html>\n");
        h
    }
}

impl Sink for HtmlReport {
    fn on_event(&mut self, e: &Event) -> io::Result<()> {
        let mark = match &e.kind {
            EventKind::Pingreq => Mark::Pingreq(e.ts),
            EventKind::Pingresp { rtt_ms } => Mark::Pingresp(e.ts, *rtt_ms),
            EventKind::ClientActivity { silence_s, keepalive_s } => Mark::Activity(e.ts, *silence_s, *keepalive_s),
            EventKind::SessionEnd { mqtt: false, .. } => {
                self.open.remove(&e.session); // no record comes for it
                return Ok(());
            }
            _ => return Ok(()),
        };
        let m = self.open.entry(e.session).or_default();
        if m.marks.len() < MAX_MARKS_PER_SESSION {
            m.marks.push(mark);
        } else {
            m.dropped += 1;
        }
        Ok(())
    }
}

/// The shared time axis: Unix seconds to a percentage of a track's width.
struct Axis {
    t0: f64,
    t1: f64,
}

impl Axis {
    fn pct(&self, t: f64) -> f64 {
        let span = self.t1 - self.t0;
        if span <= 0.0 { 0.0 } else { ((t - self.t0) / span * 100.0).clamp(0.0, 100.0) }
    }
    fn bin(&self, t: f64) -> usize {
        ((self.pct(t) / 100.0 * BINS as f64) as usize).min(BINS - 1)
    }
}

/// Seconds as in the JSON documents (microseconds).
fn secs(t: Timestamp) -> f64 {
    round_us(t.as_secs_f64())
}

/// A percentage attribute value.
fn pc(p: f64) -> String {
    format!("{p:.4}%")
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A UTC date and time from Unix seconds (days-from-civil inverse, no time zone database).
fn utc(t: f64) -> String {
    let s = t.floor() as i64;
    let (days, sod) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let ms = ((t - t.floor()) * 1000.0).floor() as i64;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03} UTC", sod / 3600, sod / 60 % 60, sod % 60)
}

/// The time of day (UTC) of Unix seconds, for hover texts (the date is in the page's header).
fn hms(t: f64) -> String {
    let sod = (t.floor() as i64).rem_euclid(86_400);
    let ms = ((t - t.floor()) * 1000.0).floor() as i64;
    format!("{:02}:{:02}:{:02}.{ms:03}", sod / 3600, sod / 60 % 60, sod % 60)
}

const STYLE: &str = r#"<style>
:root{--label:15rem;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;color:#1d2330;background:#fff}
body{margin:1rem 1.5rem}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
.sub{color:#555}
.figures{display:flex;flex-wrap:wrap;gap:.5rem;margin:.6rem 0}
.fig{border:1px solid #d7dbe3;border-radius:6px;padding:.35rem .7rem;min-width:7rem}
.tables{display:flex;flex-wrap:wrap;gap:2rem}
.fig b{display:block;font-size:1.3rem}.fig.bad b{color:#c0262d}
table{border-collapse:collapse}td,th{border:1px solid #d7dbe3;padding:.15rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.num{text-align:right}
.tools{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;margin:.3rem 0 .6rem}
.legend svg{vertical-align:middle}.legend span{margin-right:.7rem;white-space:nowrap}
.row{display:grid;grid-template-columns:var(--label) 1fr;align-items:center;min-height:30px}
.row>.who{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding-right:.4rem}
details.lane{border-top:1px solid #eef0f4}
details.lane>summary{list-style:none;cursor:pointer}details.lane>summary::-webkit-details-marker{display:none}
details.lane[open]>summary{background:#f7f8fb}
.who small{color:#666}
.sev6 .who,.sev5 .who,.sev4 .who{border-left:4px solid #c0262d;padding-left:.3rem}
.sev3 .who,.sev2 .who{border-left:4px solid #e08a00;padding-left:.3rem}
.sev1 .who{border-left:4px solid #7a7f8a;padding-left:.3rem}.sev0 .who{border-left:4px solid #2e9b4f;padding-left:.3rem}
svg.track{width:100%;height:30px;display:block;overflow:hidden}
svg.axis{width:100%;height:26px;display:block;overflow:visible}
.axis text{font-size:10px;fill:#555}.axis line{stroke:#aab}
.life{stroke:#c9ced8;stroke-width:2}.after-close{stroke:#c9ced8;stroke-width:2;stroke-dasharray:2 3}
.silence{stroke:none}
.activity{stroke:#5a6070;stroke-width:1;fill:none}
.k-connect{stroke:#1b8a3a;stroke-width:3}.k-connack{stroke:#2563c9;stroke-width:2}
.k-pingreq{fill:#2563c9}.k-pingresp{fill:#10a3a3}
.k-ping_unanswered{fill:none;stroke:#c0262d;stroke-width:2}
.k-keepalive_expired{fill:#c0262d;stroke:#fff;stroke-width:1}
.k-deadline{stroke:#c0262d;stroke-width:1.5;stroke-dasharray:3 2}
.k-close{stroke:#1d2330;stroke-width:3}.k-close.by-broker{stroke:#8b1a1f}
.k-close_without_disconnect{fill:#e08a00}
.k-enforcement{fill:#8b1a1f}
.lag{fill:#6b0f14;fill-opacity:.8}
.strip .who{white-space:normal;line-height:1.1}
.k-gap{stroke:#e08a00;stroke-width:2;stroke-dasharray:2 2}
.k-malformed{stroke:#b0269e;stroke-width:2}.k-resync{stroke:#6a3fb5;stroke-width:1}
.k-session_start,.k-session_end{stroke:#9aa0ab;stroke-width:1}
.bar-k-keepalive_expired{fill:#c0262d}.bar-k-close{fill:#8b1a1f}.bar-k-gap{fill:#e08a00}.bar-k-malformed{fill:#b0269e}
.bar-open{fill:#7a8aa8}
table.fields{margin:.3rem 0 .8rem var(--label);font-size:12px}
.hidden{display:none}
</style>
"#;

const SCRIPT: &str = r#"<script>
(function(){
  var q=document.getElementById('q'),zoom=document.getElementById('zoom'),pan=document.getElementById('pan');
  q.addEventListener('input',function(){
    var s=q.value.toLowerCase();
    document.querySelectorAll('[data-client-id]').forEach(function(l){
      l.classList.toggle('hidden',s!==''&&l.getAttribute('data-client-id').toLowerCase().indexOf(s)<0);
    });
  });
  function view(){
    var z=+zoom.value,p=+pan.value/1000,w=100*z,x=-(w-100)*p;
    document.querySelectorAll('svg.plot').forEach(function(s){s.setAttribute('x',x+'%');s.setAttribute('width',w+'%');});
  }
  zoom.addEventListener('input',view);pan.addEventListener('input',view);
})();
</script>
"#;

fn head(h: &mut String, totals: &Totals, axis: &Axis) {
    let files = totals.capture.files.join(", ");
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>MQTT keepalive: {}</title>\n{STYLE}</head>\n<body data-t0=\"{}\" data-t1=\"{}\">\n\
         <h1>MQTT keepalive timeline</h1>\n<div class=\"sub\">{} &middot; {} to {} ({:.1} s) &middot; {}</div>\n",
        escape(&files),
        axis.t0,
        axis.t1,
        escape(&files),
        utc(axis.t0),
        utc(axis.t1),
        axis.t1 - axis.t0,
        escape(TOOL),
    );
}

fn summary(h: &mut String, totals: &Totals, drawn: usize, rest: usize) {
    let s = &totals.summary;
    let fig = |h: &mut String, value: u64, what: &str| {
        let bad =
            if value > 0 && matches!(what, "expired" | "pings unanswered" | "not enforced") { " bad" } else { "" };
        let _ = write!(h, "<div class=\"fig{bad}\"><b>{value}</b>{what}</div>");
    };
    h.push_str("<section id=\"summary\"><div class=\"figures\">");
    fig(h, s.sessions, "sessions");
    fig(h, s.expired, "expired");
    fig(h, s.pings, "pings");
    fig(h, s.pings_unanswered, "pings unanswered");
    fig(h, s.closes_without_disconnect, "closed without DISCONNECT");
    fig(h, s.wills_expected, "Wills expected");
    fig(h, s.enforcement.get("not_enforced").copied().unwrap_or(0), "not enforced");
    fig(h, totals.tcp.gaps, "capture gaps");
    fig(h, totals.tcp.malformed, "malformed");
    h.push_str("</div>\n<div class=\"tables\"><div><h2>Broker enforcement</h2>\n<table id=\"enforcement\"><tr><th>verdict</th><th>sessions</th><th>meaning</th></tr>");
    for (v, meaning) in [
        ("on_time", "closed by the broker within the tolerance after the deadline"),
        ("late", "closed by the broker after the tolerance"),
        ("not_enforced", "left open: the client went on, closed itself, or the capture ended"),
        ("early", "closed by the broker before 1.5 x keepalive"),
    ] {
        let n = s.enforcement.get(v).copied().unwrap_or(0);
        let _ = write!(h, "<tr data-verdict=\"{v}\"><td>{v}</td><td class=\"num\">{n}</td><td>{meaning}</td></tr>");
    }
    h.push_str("</table></div>\n<div><h2>Closes</h2>\n<table id=\"closes\"><tr><th>kind</th><th>sessions</th></tr>");
    for (k, n) in &s.closes {
        let _ = write!(h, "<tr><td>{}</td><td class=\"num\">{n}</td></tr>", escape(k));
    }
    h.push_str("</table></div></div>\n");
    if let Some(p) = s.ping_rtt_ms {
        let _ = writeln!(
            h,
            "<p>Ping round trip (ms): p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3} ({} pings)</p>",
            p.p50, p.p90, p.p99, p.max, p.count
        );
    }
    let c = &totals.capture;
    let _ = writeln!(
        h,
        "<p>Capture: {} packets, {} bytes; {} gaps ({} bytes), {} malformed, {} truncated frames, {} retransmissions. \
         {} drawn{}.</p>",
        c.packets,
        c.bytes,
        totals.tcp.gaps,
        totals.tcp.gap_bytes,
        totals.tcp.malformed,
        c.truncated_packets,
        totals.tcp.retransmissions,
        if drawn == 1 { "1 session".to_string() } else { format!("{drawn} sessions") },
        if rest > 0 {
            format!(", {rest} more aggregated by severity below (--top 0 draws all)")
        } else {
            String::new()
        }
    );
    for w in &c.warnings {
        let _ = writeln!(h, "<p class=\"warning\">warning: {}</p>", escape(w));
    }
    h.push_str("</section>\n");
}

fn legend(h: &mut String) {
    let item = |h: &mut String, shape: &str, what: &str| {
        let _ = write!(h, "<span><svg width=\"14\" height=\"14\">{shape}</svg> {what}</span>");
    };
    item(h, "<line class=\"k-connect\" x1=\"7\" x2=\"7\" y1=\"1\" y2=\"13\"/>", "CONNECT");
    item(h, "<line class=\"k-connack\" x1=\"7\" x2=\"7\" y1=\"3\" y2=\"11\"/>", "CONNACK");
    item(h, "<circle class=\"k-pingreq\" cx=\"7\" cy=\"7\" r=\"3\"/>", "PINGREQ");
    item(h, "<circle class=\"k-pingresp\" cx=\"7\" cy=\"7\" r=\"3\"/>", "PINGRESP");
    item(h, "<line class=\"activity\" x1=\"7\" x2=\"7\" y1=\"7\" y2=\"13\"/>", "client packet");
    item(
        h,
        "<rect class=\"silence\" x=\"0\" y=\"2\" width=\"14\" height=\"10\" fill=\"hsl(0,80%,55%)\" fill-opacity=\".5\"/>",
        "silence over half of 1.5 x keepalive (green: within the keepalive; amber to red: past it, up to 1.5 x)",
    );
    item(h, "<line class=\"k-deadline\" x1=\"7\" x2=\"7\" y1=\"0\" y2=\"14\"/>", "deadline");
    item(h, "<circle class=\"k-keepalive_expired\" cx=\"7\" cy=\"7\" r=\"5\"/>", "expired");
    item(h, "<rect class=\"lag\" x=\"0\" y=\"5\" width=\"14\" height=\"4\"/>", "enforcement lag");
    item(h, "<line class=\"k-close by-broker\" x1=\"7\" x2=\"7\" y1=\"0\" y2=\"14\"/>", "close by broker");
    item(h, "<line class=\"k-close\" x1=\"7\" x2=\"7\" y1=\"0\" y2=\"14\"/>", "close by client");
    item(
        h,
        "<circle class=\"k-close_without_disconnect\" cx=\"7\" cy=\"4\" r=\"3\"/>",
        "close without DISCONNECT (the broker publishes the Will)",
    );
    item(
        h,
        "<line class=\"after-close\" x1=\"0\" x2=\"14\" y1=\"7\" y2=\"7\"/>",
        "the connection after the session's close, to its last packet (e.g. a frozen client's late FIN)",
    );
    item(h, "<line class=\"k-gap\" x1=\"7\" x2=\"7\" y1=\"0\" y2=\"14\"/>", "capture gap");
    item(h, "<line class=\"k-malformed\" x1=\"7\" x2=\"7\" y1=\"0\" y2=\"14\"/>", "malformed");
}

fn axis_row(h: &mut String, axis: &Axis) {
    h.push_str("<div class=\"row\"><div class=\"who\"><small>time since the first packet</small></div><svg class=\"axis\"><svg class=\"plot\" x=\"0%\" width=\"100%\" overflow=\"visible\">");
    let span = axis.t1 - axis.t0;
    let step = nice_step(span / 8.0);
    let mut k = 0.0;
    while step > 0.0 && k <= span + 1e-9 {
        let p = axis.pct(axis.t0 + k);
        let anchor = if p > 97.0 {
            "end"
        } else if p < 3.0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(
            h,
            "<line x1=\"{x}\" x2=\"{x}\" y1=\"16\" y2=\"26\"/><text x=\"{x}\" y=\"12\" text-anchor=\"{anchor}\">+{}<title>{}</title></text>",
            fmt_secs(k),
            utc(axis.t0 + k),
            x = pc(p)
        );
        k += step;
    }
    h.push_str("</svg></svg></div>\n");
}

/// A round tick interval near `raw` seconds.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.0;
    }
    let steps = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
        600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0,
    ];
    steps.into_iter().find(|s| *s >= raw).unwrap_or(86400.0 * (raw / 86400.0).ceil())
}

fn fmt_secs(s: f64) -> String {
    if s >= 3600.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, (s % 3600.0 / 60.0) as u64)
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s == s.trunc() {
        format!("{s:.0} s")
    } else {
        format!("{} s", format!("{s:.3}").trim_end_matches('0'))
    }
}

fn strip_row(h: &mut String, axis: &Axis, strip: &[(Timestamp, StripKind)]) {
    h.push_str("<div class=\"row strip\" id=\"strip\"><div class=\"who\"><b>whole capture</b><br><small>");
    let mut counts = [[0u32; BINS]; 4];
    for (t, k) in strip {
        let i = STRIP.iter().position(|(s, _, _)| s == k).unwrap_or(0);
        counts[i][axis.bin(secs(*t))] += 1;
    }
    let parts: Vec<String> = STRIP
        .iter()
        .enumerate()
        .map(|(i, (_, _, what))| counted(counts[i].iter().map(|n| u64::from(*n)).sum::<u64>(), *what))
        .collect();
    h.push_str(&parts.join(", "));
    h.push_str("</small></div><svg class=\"track\"><svg class=\"plot\" x=\"0%\" width=\"100%\">");
    let max = counts.iter().flat_map(|c| c.iter()).copied().max().unwrap_or(0).max(1);
    let w = 100.0 / BINS as f64;
    for (i, (_, kind, what)) in STRIP.iter().enumerate() {
        for (b, n) in counts[i].iter().enumerate().filter(|(_, n)| **n > 0) {
            let what = counted(u64::from(*n), *what);
            let height = 4.0 + 3.0 * (f64::from(*n) / f64::from(max)).sqrt();
            let y = 2.0 + 7.0 * i as f64;
            let _ = write!(
                h,
                "<rect class=\"bar-k-{kind}\" data-kind=\"{kind}\" data-count=\"{n}\" x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{height:.1}\"><title>{what}</title></rect>",
                pc(b as f64 * w),
                pc(w.max(0.3))
            );
        }
    }
    h.push_str("</svg></svg></div>\n");
}

/// Colour of a silence by how close it came to 1.5 x keepalive (`ratio` = silence / limit):
/// green up to one keepalive (a client pinging exactly at its keepalive keeps its contract),
/// then through amber to red at the limit.
fn silence_fill(ratio: f64) -> String {
    let r = ratio.clamp(0.0, 1.0);
    let within = 1.0 / 1.5; // one keepalive
    let past = ((r - within) / (1.0 - within)).clamp(0.0, 1.0);
    let hue = 120.0 * (1.0 - past);
    let opacity = 0.12 + 0.4 * r;
    format!("fill=\"hsl({hue:.0},80%,50%)\" fill-opacity=\"{opacity:.2}\"")
}

/// One marker: an element with `data-kind`, `data-ts` and a hover text.
struct Marker<'a> {
    kind: &'a str,
    ts: f64,
    title: String,
    extra_class: &'a str,
}

fn marker(h: &mut String, axis: &Axis, m: Marker<'_>) {
    let x = pc(axis.pct(m.ts));
    let attrs = format!("class=\"m k-{}{}\" data-kind=\"{}\" data-ts=\"{}\"", m.kind, m.extra_class, m.kind, m.ts);
    let title = escape(&m.title);
    let _ = match m.kind {
        "pingreq" => write!(h, "<circle {attrs} cx=\"{x}\" cy=\"9\" r=\"3\"><title>{title}</title></circle>"),
        "pingresp" => write!(h, "<circle {attrs} cx=\"{x}\" cy=\"21\" r=\"3\"><title>{title}</title></circle>"),
        "ping_unanswered" => write!(h, "<circle {attrs} cx=\"{x}\" cy=\"9\" r=\"4.5\"><title>{title}</title></circle>"),
        "keepalive_expired" => {
            write!(h, "<circle {attrs} cx=\"{x}\" cy=\"15\" r=\"5.5\"><title>{title}</title></circle>")
        }
        "enforcement" => write!(h, "<circle {attrs} cx=\"{x}\" cy=\"15\" r=\"2.5\"><title>{title}</title></circle>"),
        "close_without_disconnect" => {
            write!(h, "<circle {attrs} cx=\"{x}\" cy=\"4\" r=\"3\"><title>{title}</title></circle>")
        }
        "connect" | "close" | "gap" | "malformed" | "deadline" => {
            write!(h, "<line {attrs} x1=\"{x}\" x2=\"{x}\" y1=\"1\" y2=\"29\"><title>{title}</title></line>")
        }
        "connack" => write!(h, "<line {attrs} x1=\"{x}\" x2=\"{x}\" y1=\"6\" y2=\"24\"><title>{title}</title></line>"),
        _ => write!(h, "<line {attrs} x1=\"{x}\" x2=\"{x}\" y1=\"11\" y2=\"19\"><title>{title}</title></line>"),
    };
}

/// The hover text of a listed event.
fn describe(kind: &EventKind, ts: f64) -> String {
    let at = hms(ts);
    match kind {
        EventKind::SessionStart { mid_stream } => {
            format!("connection first seen{} at {at}", if *mid_stream { " (joined mid-stream)" } else { "" })
        }
        EventKind::Connect { protocol, keepalive_s, client_id, clean_start, will } => format!(
            "CONNECT {} keepalive {keepalive_s} s, client id {}, clean start {clean_start}, Will {will} at {at}",
            serde_json::to_value(protocol).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            client_id.as_deref().map(|c| format!("{c:?}")).unwrap_or_else(|| "none".into())
        ),
        EventKind::Connack { code, server_keepalive_s, effective_keepalive_s } => format!(
            "CONNACK code {code}{}, effective keepalive {} at {at}",
            server_keepalive_s.map(|k| format!(", Server Keep Alive {k} s")).unwrap_or_default(),
            effective_keepalive_s.map(|k| format!("{k} s")).unwrap_or_else(|| "unknown".into())
        ),
        EventKind::KeepaliveExpired { keepalive_s, last_activity } => format!(
            "keepalive expired: silent since {} (keepalive {keepalive_s} s, deadline {at})",
            hms(secs(*last_activity))
        ),
        EventKind::PingUnanswered { sent } => format!("PINGREQ of {} unanswered (noted {at})", hms(secs(*sent))),
        EventKind::Close { close, by, after_silence_s, reason_code } => format!(
            "close: {} by {} after {:.3} s of client silence{} at {at}",
            close.as_str(),
            by.as_str(),
            after_silence_s.as_secs_f64(),
            match (close, reason_code) {
                (CloseKind::WsClose, Some(c)) => format!(", WebSocket status {c}"),
                (_, Some(c)) => format!(", DISCONNECT reason 0x{c:02x}"),
                (_, None) => String::new(),
            }
        ),
        EventKind::CloseWithoutDisconnect { by, will_expected, .. } => format!(
            "closed by {} without DISCONNECT{} at {at}",
            by.as_str(),
            if *will_expected { ": the broker publishes the Will" } else { "" }
        ),
        EventKind::Enforcement { verdict, lag_s } => format!(
            "enforcement: {}{} at {at}",
            verdict.as_str(),
            lag_s.map(|l| format!(" ({l:+.3} s after the deadline)")).unwrap_or_default()
        ),
        EventKind::Gap { side, bytes } => format!("capture gap: {bytes} {} bytes never seen at {at}", side.as_str()),
        EventKind::Malformed { side, reason, .. } => format!("malformed {} data: {reason} at {at}", side.as_str()),
        EventKind::Resync { side, skipped_bytes } => {
            format!("{} framing found again after {skipped_bytes} bytes at {at}", side.as_str())
        }
        EventKind::SessionEnd { open, evicted, .. } => format!(
            "session end{} at {at}",
            if *evicted {
                " (evicted)"
            } else if *open {
                " (still open at the end of the capture)"
            } else {
                ""
            }
        ),
        EventKind::Transport { transport } => format!("transport {transport} at {at}"),
        EventKind::TlsClientHello { sni, alpn } => format!(
            "TLS ClientHello{}{} at {at}",
            sni.as_deref().map(|s| format!(", server name {s:?}")).unwrap_or_default(),
            if alpn.is_empty() { String::new() } else { format!(", ALPN {alpn:?}") }
        ),
        EventKind::TlsServerHello { version, suite } => format!("TLS {version} ServerHello, {suite} at {at}"),
        EventKind::TlsKeys { decrypted: true, .. } => format!("TLS keys found: records decrypted from {at}"),
        EventKind::TlsKeys { reason, .. } => {
            format!("TLS records stay encrypted ({}) at {at}", reason.unwrap_or("no keys"))
        }
        EventKind::TlsAlert { side, alert, level, description } => {
            format!("TLS alert {alert} ({level}/{description}) from the {} at {at}", side.as_str())
        }
        EventKind::WsUpgrade { path, protocol } => {
            format!(
                "WebSocket upgrade {path:?}{} at {at}",
                protocol.as_deref().map(|p| format!(", protocol {p}")).unwrap_or_default()
            )
        }
        EventKind::WsResponse { status, .. } => format!("WebSocket upgrade answered {status} at {at}"),
        EventKind::WsControl { side, frame, close_code } => format!(
            "WebSocket {frame} from the {}{} at {at}",
            side.as_str(),
            close_code.map(|c| format!(", status {c}")).unwrap_or_default()
        ),
        EventKind::TransportError { side, layer, reason } => {
            format!("{layer} from the {}: {reason} at {at}", side.as_str())
        }
        EventKind::Pingreq | EventKind::Pingresp { .. } | EventKind::ClientActivity { .. } => at,
    }
}

fn lane_html(h: &mut String, axis: &Axis, lane: &Lane) {
    let r = &lane.record;
    let verdict = r.enforcement.map(|e| e.verdict.as_str()).unwrap_or("none");
    let client_id = r.client_id.as_deref().unwrap_or("");
    let _ = write!(
        h,
        "<details class=\"lane sev{}\" data-session=\"{}\" data-client-id=\"{}\" data-verdict=\"{verdict}\" data-severity=\"{}\"><summary class=\"row\"><div class=\"who\" title=\"{}\">{}<br><small>{} {}{}</small></div>",
        r.severity(),
        r.id,
        escape(client_id),
        r.severity(),
        escape(client_id),
        match (&r.client_id, r.mid_stream) {
            (Some(_), _) => escape(client_id),
            (None, true) => "<i>joined mid-stream</i>".into(),
            (None, false) => "<i>no client id</i>".into(),
        },
        r.client,
        r.close.kind,
        if verdict == "none" { String::new() } else { format!(" &middot; {}", verdict.replace('_', " ")) }
    );
    h.push_str("<svg class=\"track\"><svg class=\"plot\" x=\"0%\" width=\"100%\">");
    let start = secs(r.started);
    let end = r.ended.map(secs).unwrap_or(axis.t1);
    // The session's life up to its close; the connection's packets after it (the other side
    // closing later, e.g. a frozen client's late FIN) on a dashed line that says so.
    let close_ts = r.closed.map(secs).filter(|c| *c < end);
    let _ = write!(
        h,
        "<line class=\"life\" x1=\"{}\" x2=\"{}\" y1=\"15\" y2=\"15\"/>",
        pc(axis.pct(start)),
        pc(axis.pct(close_ts.unwrap_or(end)))
    );
    if let Some(c) = close_ts {
        let _ = write!(
            h,
            "<line class=\"after-close\" data-from=\"{c}\" data-to=\"{end}\" x1=\"{}\" x2=\"{}\" y1=\"15\" y2=\"15\"><title>session closed at {}; the connection's last packet {:.3} s later at {} (the TCP close that followed, e.g. a frozen client's late FIN)</title></line>",
            pc(axis.pct(c)),
            pc(axis.pct(end)),
            hms(c),
            end - c,
            hms(end)
        );
    }

    // Silences, first: shaded under everything else.
    let mut last_activity: Option<f64> = None;
    for m in &lane.marks.marks {
        if let Mark::Activity(t, silence, k) = *m {
            let to = secs(t);
            let from = round_us(to - silence.as_secs_f64());
            silence_rect(h, axis, from, to, silence.as_secs_f64() / expiry_span(k).as_secs_f64());
            last_activity = Some(to);
        }
    }
    // The last silence: to the close or the end of the capture.
    let closed_at = r.events.iter().find(|e| e.kind.as_str() == "close").map(|e| secs(e.ts));
    let expiry = r.effective_keepalive_s.filter(|k| *k > 0).map(expiry_span);
    if let Some(limit) = expiry {
        let connect = r.events.iter().find(|e| e.kind.as_str() == "connect").map(|e| secs(e.ts));
        if let Some(from) = last_activity.or(connect) {
            let to = closed_at.unwrap_or(end);
            if to > from {
                silence_rect(h, axis, from, to, (to - from) / limit.as_secs_f64());
            }
            if r.close.kind == "open" && !r.expired {
                let deadline = round_us(from + limit.as_secs_f64());
                if deadline <= axis.t1 {
                    marker(
                        h,
                        axis,
                        Marker {
                            kind: "deadline",
                            ts: deadline,
                            title: format!("deadline {}", hms(deadline)),
                            extra_class: "",
                        },
                    );
                }
            }
        }
    }
    // The enforcement lag: from the deadline to the broker's close.
    let deadline = r.events.iter().find(|e| e.kind.as_str() == "keepalive_expired").map(|e| secs(e.ts));
    if let (Some(d), Some(c), Some(e)) = (deadline, closed_at, r.enforcement)
        && matches!(e.verdict, Verdict::OnTime | Verdict::Late)
    {
        let (a, b) = (axis.pct(d), axis.pct(c));
        let _ = write!(
            h,
            "<rect class=\"lag\" data-from=\"{d}\" data-to=\"{c}\" x=\"{}\" y=\"13\" width=\"{}\" height=\"4\"><title>enforcement lag {:+.3} s</title></rect>",
            pc(a),
            pc((b - a).max(0.0)),
            e.lag_s.unwrap_or(c - d)
        );
    }
    // Client packets: one path of ticks (publishers send thousands), on a 0..100000 scale.
    let mut ticks = String::new();
    let mut count = 0u64;
    let mut last_x = u64::MAX;
    for m in &lane.marks.marks {
        if let Mark::Activity(t, _, _) = *m {
            count += 1;
            let x = (axis.pct(secs(t)) * 1000.0).round() as u64;
            if x != last_x {
                let _ = write!(ticks, "M{x} 22v6");
                last_x = x;
            }
        }
    }
    if count > 0 {
        let _ = write!(
            h,
            "<svg class=\"ticks\" viewBox=\"0 0 100000 30\" preserveAspectRatio=\"none\" width=\"100%\" height=\"30\"><path class=\"activity\" data-count=\"{count}\" vector-effect=\"non-scaling-stroke\" d=\"{ticks}\"><title>{count} client packets</title></path></svg>"
        );
    }
    for m in &lane.marks.marks {
        let (kind, ts, title) = match *m {
            Mark::Activity(..) => continue,
            Mark::Pingreq(t) => ("pingreq", secs(t), format!("PINGREQ {}", hms(secs(t)))),
            Mark::Pingresp(t, rtt) => (
                "pingresp",
                secs(t),
                match rtt {
                    Some(d) => format!("PINGRESP {}: round trip {:.3} ms", hms(secs(t)), d.as_secs_f64() * 1e3),
                    None => format!("PINGRESP at {} (no PINGREQ outstanding)", hms(secs(t))),
                },
            ),
        };
        marker(h, axis, Marker { kind, ts, title, extra_class: "" });
    }
    for e in &r.events {
        let ts = secs(e.ts);
        if let EventKind::KeepaliveExpired { .. } = e.kind {
            marker(h, axis, Marker { kind: "deadline", ts, title: format!("deadline {}", hms(ts)), extra_class: "" });
        }
        let extra = match e.kind {
            EventKind::Close { by: Side::Broker, .. } => " by-broker",
            _ => "",
        };
        marker(h, axis, Marker { kind: e.kind.as_str(), ts, title: describe(&e.kind, ts), extra_class: extra });
    }
    h.push_str("</svg></svg></summary>\n");
    fields_table(h, lane);
    h.push_str("</details>\n");
}

fn silence_rect(h: &mut String, axis: &Axis, from: f64, to: f64, ratio: f64) {
    if ratio < MIN_SHADED {
        return; // not close to the deadline: left unshaded (publishers have thousands)
    }
    let (a, b) = (axis.pct(from), axis.pct(to));
    let _ = write!(
        h,
        "<rect class=\"silence\" data-from=\"{from}\" data-to=\"{to}\" data-ratio=\"{ratio:.4}\" x=\"{}\" y=\"3\" width=\"{}\" height=\"24\" {}><title>silence {:.3} s = {:.0}% of 1.5 x keepalive</title></rect>",
        pc(a),
        pc((b - a).max(0.0)),
        silence_fill(ratio),
        to - from,
        ratio * 100.0
    );
}

/// The session's JSON fields (all but the event list) as a table.
fn fields_table(h: &mut String, lane: &Lane) {
    h.push_str("<table class=\"fields\">");
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&lane.record) {
        for (k, v) in map {
            let text = match (&*k, &v) {
                ("events", serde_json::Value::Array(a)) => format!("{} listed (drawn above)", a.len()),
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, serde_json::Value::Null) => "-".into(),
                _ => v.to_string(),
            };
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(&k), escape(&text));
        }
    }
    if lane.marks.dropped > 0 {
        let _ = write!(
            h,
            "<tr><th>not drawn</th><td>{} pings and client packets beyond the first {MAX_MARKS_PER_SESSION}</td></tr>",
            lane.marks.dropped
        );
    }
    h.push_str("</table>\n");
}

/// One lane per severity class of the sessions beyond the `top`: how many were open over time.
fn aggregates(h: &mut String, axis: &Axis, rest: &[Brief]) {
    if rest.is_empty() {
        return;
    }
    for (severity, what) in CLASSES {
        let mut open = [0i64; BINS + 1];
        let mut count = 0u64;
        for b in rest.iter().filter(|b| b.severity == severity) {
            count += 1;
            open[axis.bin(secs(b.started))] += 1;
            open[axis.bin(secs(b.ended)) + 1] -= 1;
        }
        if count == 0 {
            continue;
        }
        let mut level = 0i64;
        let levels: Vec<i64> = open[..BINS]
            .iter()
            .map(|d| {
                level += d;
                level
            })
            .collect();
        let max = levels.iter().copied().max().unwrap_or(1).max(1);
        let _ = write!(
            h,
            "<div class=\"row aggregate sev{severity}\" data-severity=\"{severity}\" data-count=\"{count}\"><div class=\"who\">{count} more: {what}<br><small>sessions open over time</small></div><svg class=\"track\"><svg class=\"plot\" x=\"0%\" width=\"100%\">"
        );
        let w = 100.0 / BINS as f64;
        for (b, n) in levels.iter().enumerate().filter(|(_, n)| **n > 0) {
            let height = 26.0 * (*n as f64 / max as f64);
            let _ = write!(
                h,
                "<rect class=\"bar-open\" x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{height:.1}\"><title>{n} open</title></rect>",
                pc(b as f64 * w),
                28.0 - height,
                pc(w)
            );
        }
        h.push_str("</svg></svg></div>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(escape("<script>\"x\"&'y'</script>"), "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;");
        assert_eq!(escape("a\u{0}b"), "a\\u{0}b");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000.25), "2023-11-14 22:13:20.250 UTC");
        assert_eq!(utc(951_825_600.0), "2000-02-29 12:00:00.000 UTC");
        assert_eq!(hms(1_700_000_000.25), "22:13:20.250");
    }

    #[test]
    fn the_axis_maps_times_to_percent() {
        let a = Axis { t0: 100.0, t1: 110.0 };
        assert_eq!(a.pct(105.0), 50.0);
        assert_eq!(a.pct(90.0), 0.0);
        assert_eq!(a.bin(110.0), BINS - 1);
        assert_eq!(Axis { t0: 5.0, t1: 5.0 }.pct(5.0), 0.0);
    }

    #[test]
    fn silences_go_from_green_to_red() {
        assert!(silence_fill(0.0).starts_with("fill=\"hsl(120,"));
        assert!(silence_fill(1.0).starts_with("fill=\"hsl(0,"));
        assert!(silence_fill(7.0).starts_with("fill=\"hsl(0,"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(40.0), 60.0);
        assert_eq!(fmt_secs(90.0), "1m30s");
        assert_eq!(fmt_secs(0.5), "0.5 s");
    }

    /// A client pinging exactly at its keepalive keeps its contract: its silences stay green.
    #[test]
    fn silences_up_to_one_keepalive_are_green_then_amber_to_red() {
        let hue = |ratio: f64| silence_fill(ratio).split(['(', ',']).nth(1).unwrap().parse::<f64>().unwrap();
        assert_eq!(hue(0.5), 120.0);
        assert_eq!(hue(1.0 / 1.5), 120.0, "exactly one keepalive");
        assert!(hue(1.2 / 1.5) < 90.0 && hue(1.2 / 1.5) > 30.0, "amber past it");
        assert_eq!(hue(1.0), 0.0, "red at 1.5 x");
        assert_eq!(
            (counted(1, ("expiry", "expiries")), counted(2, ("expiry", "expiries"))),
            ("1 expiry".into(), "2 expiries".into())
        );
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use crate::session::event::FlowKeyJson;
    use crate::session::record::RecordState;
    use crate::sink::report::{CaptureStats, Report, Settings};

    fn ev(ts: f64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session: 4, flow, kind, client_id: None }
    }

    /// A page of one session fed through the sink and its record.
    fn page(events: &[Event], top: usize) -> String {
        let mut html = HtmlReport::new(top);
        let mut state = RecordState::new(events[0].ts, false);
        for e in events {
            html.on_event(e).unwrap();
            state.apply(e);
        }
        let end = ev(
            20.0,
            EventKind::SessionEnd {
                last_packet: Timestamp::from_secs_f64(20.0),
                max_silence_s: Duration::from_secs(9),
                open: false,
                evicted: false,
                mqtt: true,
            },
        );
        let record = state.finish(&end).unwrap();
        let mut report = Report::new();
        report.add(&record);
        html.record(record);
        let capture = CaptureStats {
            first_ts: Some(Timestamp::from_secs_f64(10.0)),
            last_ts: Some(Timestamp::from_secs_f64(20.0)),
            ..Default::default()
        };
        let settings = Settings { ports: vec![1883], ping_timeout_s: None, enforcement_tolerance_s: 1.0 };
        html.render(&report.totals(capture, Default::default(), settings))
    }

    #[test]
    fn a_session_is_one_lane_with_its_pings_silences_and_escaped_client_id() {
        let events = [
            ev(10.0, EventKind::SessionStart { mid_stream: false }),
            ev(
                10.0,
                EventKind::Connect {
                    protocol: crate::mqtt::Protocol::V3_1_1,
                    keepalive_s: 4,
                    client_id: Some("a<b>\"c".into()),
                    clean_start: true,
                    will: false,
                },
            ),
            ev(10.5, EventKind::Connack { code: 0, server_keepalive_s: None, effective_keepalive_s: Some(4) }),
            ev(15.0, EventKind::ClientActivity { silence_s: Duration::from_secs(5), keepalive_s: 4 }),
            ev(15.0, EventKind::Pingreq),
            ev(15.001, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(1)) }),
        ];
        let p = page(&events, 0);
        assert_eq!(p.matches("<details class=\"lane").count(), 1);
        assert!(p.contains("data-session=\"4\" data-client-id=\"a&lt;b&gt;&quot;c\" data-verdict=\"none\""), "{p}");
        assert!(p.contains("data-kind=\"pingreq\" data-ts=\"15\" cx=\"50.0000%\""), "{p}");
        assert!(p.contains("round trip 1.000 ms"), "RTT on hover");
        // The 5 s silence before the ping is 5/6 of 1.5 x keepalive.
        assert!(p.contains("data-from=\"10\" data-to=\"15\" data-ratio=\"0.8333\""), "{p}");
        assert!(!p.contains("a<b>"));
    }

    #[test]
    fn sessions_beyond_top_become_counts() {
        let p = page(&[ev(10.0, EventKind::SessionStart { mid_stream: false })], 0);
        assert!(!p.contains("row aggregate"));
        let mut html = HtmlReport::new(1);
        let mk = |id: u64, expired: bool| {
            let mut s = RecordState::new(Timestamp::from_secs_f64(10.0), false);
            if expired {
                s.apply(&ev(
                    12.0,
                    EventKind::KeepaliveExpired { keepalive_s: 1, last_activity: Timestamp::from_secs_f64(10.5) },
                ));
            }
            s.snapshot(id, ev(0.0, EventKind::Pingreq).flow, Duration::ZERO)
        };
        html.record(mk(1, false));
        html.record(mk(2, true));
        html.record(mk(3, false));
        assert_eq!(html.top.len(), 1);
        assert_eq!(html.top.peek().unwrap().record.id, 2, "the most severe is kept");
        assert_eq!(html.rest.len(), 2);
    }
}

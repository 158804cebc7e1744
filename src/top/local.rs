//! `top FILE` and `top -`: the sessions of a capture or pipe being analysed, folded from the
//! same event stream `analyze` makes.
//!
//! Contract: [`Fold`] is a [`Sink`] that keeps, per open session, the row `top` shows (client,
//! keepalive, last client packet, deadline, pings, round trips, the last [`MAX_EVENTS`] events)
//! and the last [`MAX_CLOSED`] closes, and counts the totals. The deadline is the last client
//! packet + 1.5 x the effective keepalive, as the session rules have it; a session is expired
//! from its `keepalive_expired` event on. Sessions still open at the end of a capture stay open
//! (their clock stops there). [`Fold::snapshot`] picks what a screen shows, as the agent's
//! `/sessions?sort=deadline` does: the `rows` open sessions nearest their deadline (overdue ones
//! first), in time linear in the open sessions. [`run`] runs the analysis on its own thread
//! with a shared fold.

use super::agent::event_line;
use super::model::{Close, Row, Snapshot, Totals};
use crate::session::{Event, EventKind, SessionId};
use crate::sink::Sink;
use crate::sink::report::filter::Glob;
use crate::time::expiry_span;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Events kept per session for its timeline (the latest).
pub const MAX_EVENTS: usize = 200;
/// Closes kept.
pub const MAX_CLOSED: usize = 1000;

/// The fold of the event stream into rows and totals.
#[derive(Default)]
pub struct Fold {
    open: HashMap<SessionId, Row>,
    closed: VecDeque<Row>,
    totals: Totals,
    /// The latest event's time, and when it was seen (for the clock of live input).
    now: f64,
    seen: Option<Instant>,
    /// Ping round trips: their sum (ms) and count, for the mean.
    rtt_sum_ms: f64,
    rtt_count: u64,
    /// The input is read to its end.
    finished: bool,
    /// The input is live (a pipe): the clock runs on between events.
    live: bool,
    error: Option<String>,
}

impl Fold {
    pub fn new(live: bool) -> Self {
        Fold { live, ..Fold::default() }
    }

    /// The input ended (its totals, and why it failed if it did).
    pub fn finish(&mut self, packets: Option<u64>, error: Option<String>) {
        self.finished = true;
        self.totals.packets = packets;
        self.error = error;
    }

    /// The open sessions (whose client id matches `filter`) nearest their deadline, at most
    /// `rows`, the closes, and the totals.
    pub fn snapshot(&self, rows: usize, filter: Option<&Glob>) -> Snapshot {
        let keep = |r: &Row| filter.is_none_or(|g| r.client_id.as_deref().is_some_and(|id| g.matches(id)));
        let mut open: Vec<&Row> = self.open.values().filter(|r| keep(r)).collect();
        let open_total = open.len() as u64;
        let by_deadline = |a: &&Row, b: &&Row| {
            let d = |r: &Row| if r.expired { f64::MIN } else { r.deadline.unwrap_or(f64::MAX) };
            d(a).total_cmp(&d(b)).then(a.id.cmp(&b.id))
        };
        if open.len() > rows && rows > 0 {
            open.select_nth_unstable_by(rows - 1, by_deadline);
            open.truncate(rows);
        }
        open.sort_by(by_deadline);
        let mut closed: Vec<Row> = self.closed.iter().rev().filter(|r| keep(r)).take(rows).cloned().collect();
        closed.reverse();
        let mut totals = self.totals.clone();
        totals.open = self.open.len() as u64;
        totals.expired_open = self.open.values().filter(|r| r.expired).count() as u64;
        totals.rtt_mean_ms = (self.rtt_count > 0).then(|| self.rtt_sum_ms / self.rtt_count as f64);
        let running =
            if self.live && !self.finished { self.seen.map_or(0.0, |s| s.elapsed().as_secs_f64()) } else { 0.0 };
        Snapshot {
            source: String::new(),
            now: self.now + running,
            finished: self.finished,
            open: open.into_iter().cloned().collect(),
            open_total,
            closed,
            totals,
            error: self.error.clone(),
        }
    }

    /// The session's row: open, or among the latest closes (the events that follow a close).
    fn row(&mut self, e: &Event) -> Option<&mut Row> {
        match self.open.get_mut(&e.session) {
            Some(r) => Some(r),
            None => self.closed.iter_mut().rev().take(64).find(|r| r.id == e.session),
        }
    }

    fn push_closed(&mut self, row: Row) {
        if self.closed.len() == MAX_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(row);
    }
}

/// The deadline of a session whose client was last heard at `last` with keepalive `k`.
fn deadline(last: Option<f64>, k: Option<u32>) -> Option<f64> {
    match (last, k) {
        (Some(t), Some(k)) if k > 0 => Some(t + expiry_span(u16::try_from(k).unwrap_or(u16::MAX)).as_secs_f64()),
        _ => None,
    }
}

impl Sink for Fold {
    fn on_event(&mut self, e: &Event) -> std::io::Result<()> {
        let ts = e.ts.as_secs_f64();
        if ts > self.now || self.seen.is_none() {
            self.now = ts;
        }
        self.seen = Some(crate::time::monotonic_now());
        match &e.kind {
            EventKind::SessionStart { .. } => {
                let row = Row {
                    id: e.session,
                    client: e.flow.client.to_string(),
                    transport: "unknown".into(),
                    started: ts,
                    last_activity: Some(ts),
                    ..Row::default()
                };
                self.open.insert(e.session, row);
            }
            EventKind::SessionEnd { open: true, .. } => {} // open at the end of the capture: stays open
            EventKind::SessionEnd { mqtt, evicted, .. } => {
                // Closed already (and listed), or ended without a close: evicted.
                if let Some(mut row) = self.open.remove(&e.session)
                    && *mqtt
                {
                    let kind = if *evicted { "evicted" } else { "ended" };
                    row.close = Some(Close { at: ts, kind: kind.into(), ..Close::default() });
                    self.push_closed(row);
                }
                return Ok(());
            }
            EventKind::Connect { .. } => self.totals.connects += 1,
            EventKind::Pingreq => self.totals.pings += 1,
            EventKind::Pingresp { rtt_ms } => {
                self.totals.pings += 1;
                if let Some(rtt) = rtt_ms {
                    self.rtt_sum_ms += rtt.as_secs_f64() * 1000.0;
                    self.rtt_count += 1;
                }
            }
            EventKind::PingUnanswered { .. } => self.totals.pings_unanswered += 1,
            EventKind::KeepaliveExpired { .. } => self.totals.expiries += 1,
            EventKind::Close { .. } => self.totals.closes += 1,
            EventKind::CloseWithoutDisconnect { .. } => self.totals.closes_without_disconnect += 1,
            _ => {}
        }
        let Some(row) = self.row(e) else { return Ok(()) };
        match &e.kind {
            EventKind::Transport { transport } => row.transport = transport.as_str().into(),
            EventKind::Connect { keepalive_s, client_id, .. } => {
                row.client_id.clone_from(client_id);
                row.keepalive_s = Some(u32::from(*keepalive_s));
                row.last_activity = Some(ts);
            }
            EventKind::Connack { effective_keepalive_s: Some(k), .. } => row.keepalive_s = Some(u32::from(*k)),
            EventKind::Pingreq => {
                row.pingreq += 1;
                row.last_activity = Some(ts);
            }
            EventKind::ClientActivity { keepalive_s, .. } => {
                row.last_activity = Some(ts);
                row.keepalive_s = Some(u32::from(*keepalive_s));
            }
            EventKind::Pingresp { rtt_ms } => {
                row.pingresp += 1;
                if let Some(rtt) = rtt_ms {
                    let ms = rtt.as_secs_f64() * 1000.0;
                    // A running median would need every sample: the latest is what a live view wants.
                    row.rtt_ms = Some(ms);
                }
            }
            EventKind::KeepaliveExpired { .. } => row.expired = true,
            EventKind::Close { close, by, reason_code, .. } => {
                row.close = Some(Close {
                    at: ts,
                    kind: close.as_str().into(),
                    by: Some(by.as_str().into()),
                    reason_code: *reason_code,
                    enforcement: None,
                });
            }
            EventKind::Enforcement { verdict, lag_s } => {
                if let Some(c) = &mut row.close {
                    c.enforcement = Some((verdict.as_str().into(), *lag_s));
                }
            }
            _ => {}
        }
        row.deadline = deadline(row.last_activity, row.keepalive_s.filter(|_| row.close.is_none()));
        if !matches!(e.kind, EventKind::ClientActivity { .. }) {
            if row.events.len() == MAX_EVENTS {
                row.events.remove(0);
            }
            if let Ok(v) = serde_json::to_value(e) {
                row.events.push(event_line(&v));
            }
        }
        // A closed session is listed among the closes at once (its connection may linger).
        if matches!(e.kind, EventKind::Close { .. })
            && let Some(row) = self.open.remove(&e.session)
        {
            self.push_closed(row);
        }
        Ok(())
    }
}

/// A fold shared between the analysis thread and the screen.
pub type SharedFold = Arc<Mutex<Fold>>;

/// Analyses `opts` on a new thread into a shared fold (whose clock runs on between events when
/// `live`); the thread stops reading when `stop` is raised.
pub fn run(mut opts: crate::app::AnalyzeOptions, live: bool, stop: Arc<std::sync::atomic::AtomicBool>) -> SharedFold {
    let fold: SharedFold = Arc::new(Mutex::new(Fold::new(live)));
    let shared = fold.clone();
    opts.tracker.session.activity_events = true; // each client packet: the deadlines move
    opts.tracker.records = false;
    opts.progress = false;
    std::thread::spawn(move || {
        let mut sink = Locked(shared.clone());
        let result = crate::app::analyze_until(opts, Some(&stop), &mut [&mut sink]);
        let mut f = shared.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(totals) => f.finish(Some(totals.capture.packets), None),
            Err(e) => f.finish(None, Some(e.to_string())),
        }
    });
    fold
}

/// The fold behind its lock, as a sink.
struct Locked(SharedFold);

impl Sink for Locked {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).on_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Side;
    use crate::pipeline::Pipeline;
    use crate::synth::{Capture, Conn, Encap, mqtt};
    use crate::time::Timestamp;
    use crate::tracker::TrackerConfig;

    /// Two clients, keepalive 2: `chatty` pings every second, `quiet` falls silent after its
    /// CONNECT; the broker closes quiet 1.5 s after its deadline.
    fn capture() -> Capture {
        let t = Timestamp::from_secs_f64;
        let mut cap = Capture::new(Encap::Ethernet);
        let mut chatty = Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
        let mut quiet = Conn::new("10.0.0.2:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 3, 4);
        chatty.handshake(&mut cap, t(0.0));
        chatty.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 2, "chatty", true, None));
        chatty.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
        quiet.handshake(&mut cap, t(0.3));
        quiet.send(&mut cap, t(0.4), Side::Client, &mqtt::connect(4, 2, "quiet", true, None));
        quiet.send(&mut cap, t(0.5), Side::Broker, &mqtt::connack(0, None));
        for i in 1..8 {
            let at = f64::from(i);
            chatty.send(&mut cap, t(at), Side::Client, &mqtt::pingreq());
            chatty.send(&mut cap, t(at + 0.002), Side::Broker, &mqtt::pingresp());
        }
        quiet.fin(&mut cap, t(4.9), Side::Broker);
        cap
    }

    fn fold_until(until: f64) -> Fold {
        let cap = capture();
        let mut cfg = TrackerConfig::default();
        cfg.session.activity_events = true;
        let mut pipeline = Pipeline::new(cfg);
        let mut fold = Fold::new(false);
        for (ts, frame) in cap.frames.iter().filter(|(ts, _)| ts.as_secs_f64() <= until) {
            pipeline.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        }
        pipeline.poll(Timestamp::from_secs_f64(until));
        pipeline.drain(&mut [&mut fold]).unwrap();
        fold
    }

    fn cid(s: &Snapshot) -> Vec<&str> {
        s.open.iter().map(|r| r.client_id.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn a_silent_client_rises_expires_and_closes() {
        // At 2.5 s: quiet's deadline is 0.4 + 3 = 3.4; chatty pinged at 2.0, so its deadline is
        // 5.0. The quiet one is nearest.
        let f = fold_until(2.5);
        let s = f.snapshot(10, None);
        assert_eq!(cid(&s), ["quiet", "chatty"]);
        assert_eq!(s.open[0].deadline, Some(3.4));
        assert_eq!(s.now, 2.002, "a capture's clock: its latest event");
        assert!((s.open[0].remaining(2.5).unwrap() - 0.9).abs() < 1e-9);
        assert_eq!((s.open[1].pingreq, s.open[1].pingresp), (2, 2));
        assert!((s.open[1].rtt_ms.unwrap() - 2.0).abs() < 1e-6);
        // At 4 s it has expired, still open.
        let s = fold_until(4.0).snapshot(10, None);
        assert!(s.open[0].expired && s.open[0].client_id.as_deref() == Some("quiet"));
        assert_eq!((s.totals.expiries, s.totals.expired_open), (1, 1));
        // At 5.5 s the broker's close is among the closes, with who and why.
        let s = fold_until(5.5).snapshot(10, None);
        assert_eq!(cid(&s), ["chatty"]);
        let closed = &s.closed[0];
        let c = closed.close.as_ref().unwrap();
        assert_eq!(
            (closed.client_id.as_deref(), c.kind.as_str(), c.by.as_deref()),
            (Some("quiet"), "fin", Some("broker"))
        );
        assert_eq!(c.enforcement.as_ref().map(|e| e.0.as_str()), Some("late"));
        assert!(closed.events.iter().any(|(_, e)| e.starts_with("keepalive_expired")), "{:?}", closed.events);
        assert_eq!((s.totals.connects, s.totals.closes, s.totals.closes_without_disconnect), (2, 1, 1));
        assert!((s.totals.rtt_mean_ms.unwrap() - 2.0).abs() < 1e-6, "{:?}", s.totals.rtt_mean_ms);
    }

    #[test]
    fn the_snapshot_is_bounded_and_filtered() {
        let f = fold_until(2.5);
        assert_eq!(cid(&f.snapshot(1, None)), ["quiet"], "the nearest deadline of all");
        let s = f.snapshot(10, Some(&Glob::new("ch*")));
        assert_eq!((cid(&s), s.open_total, s.totals.open), (vec!["chatty"], 1, 2));
    }

    #[test]
    fn open_at_the_end_of_a_capture_stays_open() {
        let cap = capture();
        let mut cfg = TrackerConfig::default();
        cfg.session.activity_events = true;
        let mut pipeline = Pipeline::new(cfg);
        let mut fold = Fold::new(false);
        for (ts, frame) in &cap.frames {
            pipeline.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        }
        pipeline.finish(&mut [&mut fold]).unwrap();
        fold.finish(Some(cap.frames.len() as u64), None);
        let s = fold.snapshot(10, None);
        assert_eq!((cid(&s), s.finished, s.totals.packets), (vec!["chatty"], true, Some(cap.frames.len() as u64)));
    }
}

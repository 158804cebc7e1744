//! What `top` shows, without a terminal: session rows, their order, countdowns, the filter,
//! and the cells as text.
//!
//! Contract: a [`Snapshot`] is what a source (a live agent, or a capture being analysed) last
//! said: open sessions, recent closes (newest last), totals, and the source's clock when it was
//! taken. The [`View`] holds what the person chose (sort key, client id filter, pause, the
//! selected row, an open timeline) and orders and filters a snapshot's rows at a given clock
//! ([`View::open_rows`]). Open sessions past their deadline (expired, not closed by the broker)
//! come first whatever the sort; by default the rest follow by deadline, soonest first, and
//! sessions without a deadline (keepalive off or unknown) last. Every cell is formatted here,
//! in bounded width, with captured strings escaped ([`crate::sink::report::terminal::escape`]).

use crate::sink::report::filter::Glob;
use crate::sink::report::terminal::{escape, truncate};
use std::cmp::Ordering;

/// How a session ended (closed rows only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Close {
    /// When it closed (source clock, seconds).
    pub at: f64,
    /// The close kind's name: `fin`, `rst`, `disconnect`, `close_notify`, `ws_close`, `refused`.
    pub kind: String,
    /// `client` or `broker`.
    pub by: Option<String>,
    /// The MQTT 5 DISCONNECT reason code or WebSocket close status.
    pub reason_code: Option<u16>,
    /// The enforcement verdict of an expired session (`on_time`, `late`, `not_enforced`,
    /// `early`) and how long after the deadline the broker closed.
    pub enforcement: Option<(String, Option<f64>)>,
}

/// One session as `top` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub id: u64,
    /// The client's address.
    pub client: String,
    pub client_id: Option<String>,
    pub transport: String,
    /// The effective keepalive (0: off).
    pub keepalive_s: Option<u32>,
    pub started: f64,
    /// The client's last packet (source clock).
    pub last_activity: Option<f64>,
    /// When the session expires (or expired): last activity + 1.5 x keepalive.
    pub deadline: Option<f64>,
    /// The client was silent past its deadline.
    pub expired: bool,
    pub pingreq: u64,
    pub pingresp: u64,
    /// Median ping round trip.
    pub rtt_ms: Option<f64>,
    /// `None` while open.
    pub close: Option<Close>,
    /// The session's events as timeline lines (time, what), oldest first.
    pub events: Vec<(f64, String)>,
}

impl Row {
    /// Seconds left before the deadline at `now` (negative: past it).
    pub fn remaining(&self, now: f64) -> Option<f64> {
        self.deadline.map(|d| d - now)
    }

    /// Past the deadline at `now` (or said so by the source).
    pub fn overdue(&self, now: f64) -> bool {
        self.expired || self.remaining(now).is_some_and(|r| r < 0.0)
    }

    /// Silence since the client's last packet at `now`.
    pub fn silence(&self, now: f64) -> Option<f64> {
        self.last_activity.map(|t| (now - t).max(0.0))
    }
}

/// The totals and rates of the dashboard's first row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub open: u64,
    pub expired_open: u64,
    pub connects: u64,
    pub closes: u64,
    pub closes_without_disconnect: u64,
    pub expiries: u64,
    pub pings: u64,
    pub pings_unanswered: u64,
    /// Packets read, and those the kernel dropped (not known while a capture is being read).
    pub packets: Option<u64>,
    pub dropped: Option<u64>,
    /// Mean ping round trip over all pings, in milliseconds.
    pub rtt_mean_ms: Option<f64>,
    /// Per second, from the previous totals: connects, closes, expiries, pings, packets.
    pub rates: Option<Rates>,
}

/// Per-second rates between two totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub connects: f64,
    pub closes: f64,
    pub expiries: f64,
    pub pings: f64,
    pub packets: f64,
}

impl Totals {
    /// Sets the rates from the `earlier` totals, `seconds` before these (none for a zero or
    /// negative span, or when a counter went back: the source restarted).
    pub fn rate_from(&mut self, earlier: &Totals, seconds: f64) {
        let per = |now: u64, then: u64| (now >= then).then(|| (now - then) as f64 / seconds);
        if seconds <= 0.0 {
            return;
        }
        if let (Some(connects), Some(closes), Some(expiries), Some(pings), Some(packets)) = (
            per(self.connects, earlier.connects),
            per(self.closes, earlier.closes),
            per(self.expiries, earlier.expiries),
            per(self.pings, earlier.pings),
            per(self.packets.unwrap_or(0), earlier.packets.unwrap_or(0)),
        ) {
            self.rates = Some(Rates { connects, closes, expiries, pings, packets });
        }
    }
}

/// What a source said last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Where from (`http://host:9883`, a file name, `-`).
    pub source: String,
    /// The source's clock when it was taken (Unix seconds for an agent, packet time for a capture).
    pub now: f64,
    /// The source will say no more (a capture file read to its end): its clock stands still.
    pub finished: bool,
    /// Open sessions (those the source listed: for an agent, at most the rows asked for).
    pub open: Vec<Row>,
    /// Open sessions in all, listed or not.
    pub open_total: u64,
    /// Recent closes, newest last.
    pub closed: Vec<Row>,
    pub totals: Totals,
    /// The last error talking to the source, shown until the next good answer.
    pub error: Option<String>,
}

/// What the open sessions are ordered by (after the expired ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// The soonest deadline first.
    #[default]
    Deadline,
    /// The longest silence first.
    Silence,
    /// Client id, A to Z.
    ClientId,
    /// The slowest ping round trip first.
    Rtt,
    /// The oldest session first.
    Started,
}

impl SortKey {
    const ALL: [SortKey; 5] = [SortKey::Deadline, SortKey::Silence, SortKey::ClientId, SortKey::Rtt, SortKey::Started];

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Deadline => "deadline",
            SortKey::Silence => "silence",
            SortKey::ClientId => "client id",
            SortKey::Rtt => "rtt",
            SortKey::Started => "started",
        }
    }

    /// The next key (`s`).
    pub fn next(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Orders two open rows at `now` by this key (the expired-first rule is applied by the caller).
    fn cmp(self, a: &Row, b: &Row, now: f64) -> Ordering {
        let none_last = |a: Option<f64>, b: Option<f64>, asc: bool| match (a, b) {
            (Some(x), Some(y)) if asc => x.total_cmp(&y),
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let by = match self {
            SortKey::Deadline => none_last(a.deadline, b.deadline, true),
            SortKey::Silence => none_last(a.silence(now), b.silence(now), false),
            SortKey::ClientId => match (&a.client_id, &b.client_id) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            SortKey::Rtt => none_last(a.rtt_ms, b.rtt_ms, false),
            SortKey::Started => a.started.total_cmp(&b.started),
        };
        by.then(a.id.cmp(&b.id))
    }
}

/// What the person chose to see.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub sort: SortKey,
    /// The client id pattern (`*`, `?`), as typed; empty: every session.
    pub filter: String,
    /// While typing a filter: the text so far.
    pub editing: Option<String>,
    /// The clock and rows stand still; no requests.
    pub paused: bool,
    /// The selected open row (index into [`View::open_rows`]).
    pub selected: usize,
    /// The session whose timeline is open.
    pub timeline: Option<u64>,
    /// How far the timeline is scrolled down.
    pub timeline_scroll: usize,
}

/// What a key does to the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    NextSort,
    TogglePause,
    Up,
    Down,
    /// Start typing a client id filter.
    StartFilter,
    /// A character typed into the filter.
    Type(char),
    Backspace,
    /// Enter: apply the filter being typed, else open the selected session's timeline.
    Enter,
    /// Esc: drop the filter being typed, else close the timeline, else clear the filter.
    Back,
    Quit,
}

/// What the caller does after an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Redraw,
    /// The filter changed: ask the source again.
    Refetch,
    Quit,
}

impl View {
    /// The client id pattern, if any.
    pub fn glob(&self) -> Option<Glob> {
        (!self.filter.is_empty()).then(|| Glob::new(&self.filter))
    }

    fn keeps(&self, r: &Row) -> bool {
        match self.glob() {
            None => true,
            Some(g) => r.client_id.as_deref().is_some_and(|id| g.matches(id)),
        }
    }

    /// The open rows the filter keeps, in display order at `now`: past their deadline first
    /// (the most overdue first), then by the sort key.
    pub fn open_rows<'a>(&self, snap: &'a Snapshot, now: f64) -> Vec<&'a Row> {
        let mut rows: Vec<&Row> = snap.open.iter().filter(|r| self.keeps(r)).collect();
        rows.sort_by(|a, b| match (a.overdue(now), b.overdue(now)) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => SortKey::Deadline.cmp(a, b, now),
            (false, false) => self.sort.cmp(a, b, now),
        });
        rows
    }

    /// The closes the filter keeps, newest first.
    pub fn closed_rows<'a>(&self, snap: &'a Snapshot) -> Vec<&'a Row> {
        snap.closed.iter().rev().filter(|r| self.keeps(r)).collect()
    }

    /// The session whose timeline is open, open or closed.
    pub fn timeline_row<'a>(&self, snap: &'a Snapshot) -> Option<&'a Row> {
        let id = self.timeline?;
        snap.open.iter().chain(&snap.closed).find(|r| r.id == id)
    }

    /// Applies a key's action to the view of `snap` at `now` (the selection stays on the rows
    /// shown).
    pub fn apply(&mut self, action: Action, snap: &Snapshot, now: f64) -> Outcome {
        if let Some(text) = &mut self.editing {
            match action {
                Action::Type(c) if !c.is_control() && text.chars().count() < 64 => text.push(c),
                Action::Backspace => {
                    text.pop();
                }
                Action::Enter => {
                    self.filter = self.editing.take().unwrap_or_default();
                    self.selected = 0;
                    return Outcome::Refetch;
                }
                Action::Back => self.editing = None,
                _ => {}
            }
            return Outcome::Redraw;
        }
        let shown = self.open_rows(snap, now).len();
        match action {
            Action::Quit => return Outcome::Quit,
            Action::NextSort => self.sort = self.sort.next(),
            Action::TogglePause => self.paused = !self.paused,
            Action::Up if self.timeline.is_some() => self.timeline_scroll = self.timeline_scroll.saturating_sub(1),
            Action::Down if self.timeline.is_some() => self.timeline_scroll += 1,
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(shown.saturating_sub(1)),
            Action::StartFilter => self.editing = Some(self.filter.clone()),
            Action::Enter => {
                self.timeline = self.open_rows(snap, now).get(self.selected).map(|r| r.id);
                self.timeline_scroll = 0;
            }
            Action::Back if self.timeline.is_some() => self.timeline = None,
            Action::Back if !self.filter.is_empty() => {
                self.filter.clear();
                return Outcome::Refetch;
            }
            Action::Back | Action::Type(_) | Action::Backspace => {}
        }
        self.selected = self.selected.min(shown.saturating_sub(1));
        Outcome::Redraw
    }
}

/// A countdown to the deadline: `4.2s`, `1m05s`, `-3.1s` past it, `-` without one.
pub fn countdown(remaining: Option<f64>) -> String {
    match remaining {
        None => "-".into(),
        Some(r) if r < 0.0 => format!("-{}", seconds(-r)),
        Some(r) => seconds(r),
    }
}

/// A duration in at most 7 columns: `0.4s`, `12.3s`, `2m05s`, `3h12m`, `>99d`.
pub fn seconds(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) } else { f64::MAX };
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else if s < 100.0 * 86400.0 {
        format!("{}d{:02}h", (s / 86400.0) as u64, ((s % 86400.0) / 3600.0) as u64)
    } else {
        ">99d".into()
    }
}

/// A client id for a cell: escaped, cut to `width` columns with an ellipsis; `-` when none.
pub fn client_id_cell(id: Option<&str>, width: usize) -> String {
    match id {
        None => "-".into(),
        Some(id) => truncate(&escape(id), width).into_owned(),
    }
}

/// How a session closed, who closed it and why: `fin by broker (expired, late +1.2s)`,
/// `disconnect by client (reason 4)`.
pub fn close_cell(c: &Close) -> String {
    let mut s = c.kind.replace('_', " ");
    if let Some(by) = &c.by {
        s.push_str(" by ");
        s.push_str(by);
    }
    let mut why = Vec::new();
    if let Some(code) = c.reason_code {
        why.push(format!("reason {code}"));
    }
    match &c.enforcement {
        Some((verdict, Some(lag))) => why.push(format!("expired, {} {lag:+.1}s", verdict.replace('_', " "))),
        Some((verdict, None)) if verdict == "early" => why.push("closed before the deadline".into()),
        Some((verdict, None)) => why.push(format!("expired, {}", verdict.replace('_', " "))),
        None => {}
    }
    if !why.is_empty() {
        s.push_str(&format!(" ({})", why.join(", ")));
    }
    s
}

/// The pings cell: `answered/sent`.
pub fn pings_cell(r: &Row) -> String {
    format!("{}/{}", r.pingresp, r.pingreq)
}

/// A count in at most 6 columns: `999`, `12.3k`, `4.5M`.
pub fn count(n: u64) -> String {
    match n {
        0..1000 => n.to_string(),
        1000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A rate: `12/s`, `0.5/s`.
pub fn rate(r: f64) -> String {
    if r >= 10.0 { format!("{}/s", count(r.round() as u64)) } else { format!("{r:.1}/s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, cid: &str, last: f64, ka: u32) -> Row {
        Row {
            id,
            client: format!("10.0.0.1:{}", 40000 + id),
            client_id: Some(cid.into()),
            transport: "tcp".into(),
            keepalive_s: Some(ka),
            started: id as f64,
            last_activity: Some(last),
            deadline: (ka > 0).then(|| last + 1.5 * f64::from(ka)),
            ..Row::default()
        }
    }

    fn snap(open: Vec<Row>) -> Snapshot {
        Snapshot { open, ..Snapshot::default() }
    }

    fn ids(rows: &[&Row]) -> Vec<u64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn nearest_deadline_first_expired_on_top_no_deadline_last() {
        let s = snap(vec![
            row(1, "a", 100.0, 60), // deadline 190
            row(2, "b", 100.0, 10), // deadline 115
            row(3, "c", 100.0, 0),  // keepalive off: no deadline
            row(4, "d", 90.0, 10),  // deadline 105
            row(5, "e", 80.0, 10),  // deadline 95: past at 110
        ]);
        let v = View::default();
        assert_eq!(ids(&v.open_rows(&s, 100.0)), [5, 4, 2, 1, 3]);
        // At 110 session 5 and 4 are past their deadlines: they stay on top, most overdue first.
        assert_eq!(ids(&v.open_rows(&s, 110.0)), [5, 4, 2, 1, 3]);
        // Another sort keeps the overdue ones on top.
        let v = View { sort: SortKey::ClientId, ..View::default() };
        assert_eq!(ids(&v.open_rows(&s, 110.0)), [5, 4, 1, 2, 3]);
        let v = View { sort: SortKey::Silence, ..View::default() };
        assert_eq!(ids(&v.open_rows(&s, 100.0)), [5, 4, 1, 2, 3], "longest silence first, then by id");
    }

    #[test]
    fn a_silent_client_rises_as_its_deadline_nears() {
        // Both keepalive 10; `quiet` stops at 100, `chatty` keeps talking. At 104 chatty's last
        // packet (103) puts its deadline at 118, after quiet's 115.
        let mut chatty = row(1, "chatty", 99.0, 10);
        let quiet = row(2, "quiet", 100.0, 10);
        let v = View::default();
        assert_eq!(ids(&v.open_rows(&snap(vec![chatty.clone(), quiet.clone()]), 100.0)), [1, 2]);
        chatty.last_activity = Some(103.0);
        chatty.deadline = Some(118.0);
        let s = snap(vec![chatty, quiet]);
        assert_eq!(ids(&v.open_rows(&s, 104.0)), [2, 1]);
        assert_eq!(countdown(s.open[1].remaining(104.0)), "11.0s");
        assert_eq!(countdown(s.open[1].remaining(116.5)), "-1.5s");
        assert!(s.open[1].overdue(116.5) && !s.open[1].overdue(114.0));
    }

    #[test]
    fn filter_keys_pause_and_timeline() {
        let s = snap(vec![row(1, "dev-1", 100.0, 10), row(2, "other", 100.0, 10), row(3, "dev-2", 100.0, 10)]);
        let mut v = View::default();
        assert_eq!(v.apply(Action::StartFilter, &s, 100.0), Outcome::Redraw);
        for c in "dev-x".chars() {
            v.apply(Action::Type(c), &s, 100.0);
        }
        v.apply(Action::Backspace, &s, 100.0);
        v.apply(Action::Type('*'), &s, 100.0);
        assert_eq!(v.apply(Action::Enter, &s, 100.0), Outcome::Refetch);
        assert_eq!((v.filter.as_str(), ids(&v.open_rows(&s, 100.0))), ("dev-*", vec![1, 3]));
        v.apply(Action::Down, &s, 100.0);
        v.apply(Action::Down, &s, 100.0);
        assert_eq!(v.selected, 1, "the selection stays on the rows shown");
        v.apply(Action::Enter, &s, 100.0);
        assert_eq!(v.timeline_row(&s).map(|r| r.id), Some(3));
        v.apply(Action::Back, &s, 100.0);
        assert_eq!(v.timeline, None);
        assert_eq!(v.apply(Action::Back, &s, 100.0), Outcome::Refetch, "Esc clears the filter");
        assert_eq!(v.open_rows(&s, 100.0).len(), 3);
        v.apply(Action::TogglePause, &s, 100.0);
        assert!(v.paused);
        v.apply(Action::NextSort, &s, 100.0);
        assert_eq!(v.sort, SortKey::Silence);
        assert_eq!(v.apply(Action::Quit, &s, 100.0), Outcome::Quit);
        // Typing a filter: q is a letter, not quit; control characters are not kept.
        v.apply(Action::StartFilter, &s, 100.0);
        assert_eq!(v.apply(Action::Type('q'), &s, 100.0), Outcome::Redraw);
        v.apply(Action::Type('\u{1b}'), &s, 100.0);
        assert_eq!(v.editing.as_deref(), Some("q"));
        v.apply(Action::Back, &s, 100.0);
        assert_eq!((v.editing.as_deref(), v.filter.as_str()), (None, ""));
    }

    #[test]
    fn cells_are_bounded_and_say_who_and_why() {
        assert_eq!(seconds(0.04), "0.0s");
        assert_eq!(seconds(65.0), "1m05s");
        assert_eq!(seconds(7300.0), "2h01m");
        assert_eq!(seconds(f64::INFINITY), ">99d");
        assert_eq!(seconds(f64::NAN), ">99d");
        assert_eq!(countdown(None), "-");
        assert_eq!(client_id_cell(Some("a\u{1b}[2Jb-very-long-client-id"), 10).chars().count(), 10);
        assert!(!client_id_cell(Some("a\u{1b}[2J"), 20).contains('\u{1b}'), "escaped");
        let c = Close {
            at: 1.0,
            kind: "fin".into(),
            by: Some("broker".into()),
            reason_code: None,
            enforcement: Some(("late".into(), Some(1.25))),
        };
        assert_eq!(close_cell(&c), "fin by broker (expired, late +1.2s)");
        let c = Close { kind: "disconnect".into(), by: Some("client".into()), reason_code: Some(4), ..c };
        assert_eq!(close_cell(&Close { enforcement: None, ..c }), "disconnect by client (reason 4)");
        assert_eq!((count(999), count(12_345), count(4_500_000)), ("999".into(), "12.3k".into(), "4.5M".into()));
        assert_eq!((rate(0.25), rate(1234.0)), ("0.2/s".into(), "1.2k/s".into()));
    }

    #[test]
    fn rates_from_two_totals_and_none_after_a_restart() {
        let a = Totals { connects: 10, closes: 4, expiries: 1, pings: 100, packets: Some(1000), ..Totals::default() };
        let mut b =
            Totals { connects: 20, closes: 8, expiries: 1, pings: 150, packets: Some(3000), ..Totals::default() };
        b.rate_from(&a, 2.0);
        assert_eq!(b.rates, Some(Rates { connects: 5.0, closes: 2.0, expiries: 0.0, pings: 25.0, packets: 1000.0 }));
        let mut restarted = Totals { connects: 1, ..Totals::default() };
        restarted.rate_from(&b, 1.0);
        assert_eq!(restarted.rates, None);
    }
}

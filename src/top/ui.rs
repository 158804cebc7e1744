//! Drawing `top`'s screen with ratatui: thin, every cell's text comes from [`super::model`].
//!
//! Contract: [`draw`] paints one frame from a snapshot, the view and the clock: the header (the
//! source, totals and rates; sort, filter, pause, errors; each item kept whole, as many lines as
//! the width needs), the open sessions (overdue ones
//! first, marked `EXPIRED`), the recent closes (how, by whom, why), and a line of keys; or, with
//! a timeline open, that session's events. Columns are dropped from the least needed when the
//! terminal is narrow (the deadline, client id and close always stay), so each row still reads.
//! Nothing is drawn that the source did not say: unknown figures are `-`.

use super::model::{self, Row, Snapshot, View, client_id_cell, close_cell, count, countdown, pings_cell, rate};
use crate::sink::report::times::Zone;
use crate::time::Timestamp;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, TableState, Wrap};

/// Closes shown at most (fewer when the terminal is short).
const MAX_CLOSES_SHOWN: usize = 8;

/// A column: its header, its width, and how much it is wanted (lower: dropped later).
struct Column {
    header: &'static str,
    width: u16,
    rank: u8,
}

/// The columns that fit in `width`, in their order, keeping the most wanted.
fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut by_rank: Vec<usize> = (0..columns.len()).collect();
    by_rank.sort_by_key(|&i| columns[i].rank);
    let mut used = 0u16;
    let mut kept = Vec::new();
    for i in by_rank {
        let w = columns[i].width + 1;
        if used + w <= width || kept.is_empty() {
            used += w;
            kept.push(i);
        }
    }
    kept.sort_unstable();
    kept
}

const OPEN_COLUMNS: [Column; 8] = [
    Column { header: "DEADLINE", width: 13, rank: 0 },
    Column { header: "CLIENT ID", width: 20, rank: 1 },
    Column { header: "SILENCE", width: 7, rank: 2 },
    Column { header: "KA", width: 5, rank: 3 },
    Column { header: "PINGS", width: 9, rank: 4 },
    Column { header: "RTT ms", width: 7, rank: 5 },
    Column { header: "CLIENT", width: 21, rank: 6 },
    Column { header: "TRANSPORT", width: 13, rank: 7 },
];

fn open_cells(r: &Row, now: f64) -> [String; 8] {
    let deadline =
        if r.overdue(now) { format!("EXPIRED {}", countdown(r.remaining(now))) } else { countdown(r.remaining(now)) };
    [
        deadline,
        client_id_cell(r.client_id.as_deref(), 20),
        r.silence(now).map_or_else(|| "-".into(), model::seconds),
        r.keepalive_s.map_or_else(|| "?".into(), |k| if k == 0 { "off".into() } else { k.to_string() }),
        pings_cell(r),
        r.rtt_ms.map_or_else(|| "-".into(), |ms| format!("{ms:.2}")),
        r.client.clone(),
        r.transport.clone(),
    ]
}

const CLOSED_COLUMNS: [Column; 4] = [
    Column { header: "CLOSED", width: 8, rank: 0 },
    Column { header: "CLIENT ID", width: 20, rank: 1 },
    Column { header: "HOW, BY, WHY", width: 38, rank: 2 },
    Column { header: "CLIENT", width: 21, rank: 3 },
];

fn closed_cells(r: &Row) -> [String; 4] {
    let c = r.close.clone().unwrap_or_default();
    [clock(c.at), client_id_cell(r.client_id.as_deref(), 20), close_cell(&c), r.client.clone()]
}

/// `HH:MM:SS` (UTC) of a source time.
fn clock(t: f64) -> String {
    let s = Zone::Utc.time_of_day(Timestamp::from_secs_f64(t));
    s.split('.').next().unwrap_or(&s).to_string()
}

fn table<'a>(columns: &[Column], keep: &[usize], rows: Vec<(Vec<String>, Style)>) -> Table<'a> {
    let header = TableRow::new(keep.iter().map(|&i| Cell::from(columns[i].header)))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let body = rows
        .into_iter()
        .map(|(cells, style)| TableRow::new(keep.iter().map(|&i| Cell::from(cells[i].clone()))).style(style));
    let last = keep.len().saturating_sub(1);
    let widths = keep.iter().enumerate().map(|(n, &i)| {
        if n == last { Constraint::Min(columns[i].width) } else { Constraint::Length(columns[i].width) }
    });
    Table::new(body, widths.collect::<Vec<_>>()).header(header).column_spacing(1)
}

/// The header's items (the source, totals and rates; sort, filter, pause, errors), each kept
/// whole on a line.
fn header_items(snap: &Snapshot, view: &View) -> Vec<Span<'static>> {
    let t = &snap.totals;
    let r = t.rates;
    let with_rate = |name: &str, n: u64, per: Option<f64>| match per {
        Some(p) => format!("{name} {} ({})", count(n), rate(p)),
        None => format!("{name} {}", count(n)),
    };
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let red = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let mut items = vec![
        Span::styled(snap.source.clone(), bold),
        Span::styled(
            format!("open {} ({} expired)", count(t.open), count(t.expired_open)),
            if t.expired_open > 0 { red } else { Style::new() },
        ),
    ];
    let mut plain = vec![
        with_rate("connects", t.connects, r.map(|r| r.connects)),
        with_rate("closes", t.closes, r.map(|r| r.closes)),
        format!("without DISCONNECT {}", count(t.closes_without_disconnect)),
        with_rate("expiries", t.expiries, r.map(|r| r.expiries)),
        with_rate("pings", t.pings, r.map(|r| r.pings)),
        format!("unanswered {}", count(t.pings_unanswered)),
        format!("rtt {}", t.rtt_mean_ms.map_or_else(|| "-".into(), |m| format!("{m:.2} ms"))),
    ];
    if let Some(p) = t.packets {
        plain.push(with_rate("packets", p, r.map(|r| r.packets)));
    }
    if let Some(d) = t.dropped {
        plain.push(format!("dropped {}", count(d)));
    }
    items.extend(plain.into_iter().map(Span::raw));
    items.push(Span::raw(format!("| sort: {}", view.sort.name())));
    match &view.editing {
        Some(text) => items.push(Span::styled(
            format!("filter client id: {text}_ (Enter apply, Esc cancel)"),
            Style::new().fg(Color::Yellow),
        )),
        None if !view.filter.is_empty() => items.push(Span::raw(format!("filter: {}", view.filter))),
        None => {}
    }
    let listed = snap.open.len() as u64;
    if listed < snap.open_total {
        items.push(Span::raw(format!("{listed} of {} nearest their deadline", snap.open_total)));
    }
    if view.paused {
        items.push(Span::styled("PAUSED", Style::new().add_modifier(Modifier::REVERSED)));
    }
    if snap.finished {
        items.push(Span::raw("input ended: the clock stands at its last packet"));
    }
    items.push(Span::raw(format!("at {}", clock(snap.now))));
    if let Some(e) = &snap.error {
        items.push(Span::styled(format!("error: {e}"), Style::new().fg(Color::Red)));
    }
    items
}

/// The items packed into lines of `width` (an item wider than a line gets a line of its own
/// and is wrapped there).
fn pack(items: Vec<Span<'static>>, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width.max(1));
    let mut lines: Vec<Vec<Span>> = vec![Vec::new()];
    let mut used = 0;
    for item in items {
        let w = item.width();
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && used + 2 + w > width {
            lines.push(Vec::new());
            used = 0;
        }
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() {
            last.push(Span::raw("  "));
            used += 2;
        }
        used += w;
        last.push(item);
    }
    lines.into_iter().map(Line::from).collect()
}

const KEYS: &str = "s sort  / filter  p pause  ↑↓ select  Enter timeline  Esc back  q quit";
/// The keys on a narrow terminal.
const KEYS_SHORT: &str = "s sort / filter p pause ⏎ timeline q quit";

/// One frame of the screen at clock `now`.
pub fn draw(frame: &mut Frame, snap: &Snapshot, view: &View, now: f64) {
    let area = frame.area();
    let head = pack(header_items(snap, view), area.width);
    let head_height = head_lines(&head, area.width);
    let [top, body, keys] =
        Layout::vertical([Constraint::Length(head_height), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(head).wrap(Wrap { trim: false }), top);
    let key_help = if usize::from(area.width) >= KEYS.chars().count() { KEYS } else { KEYS_SHORT };
    frame.render_widget(Paragraph::new(key_help).style(Style::new().add_modifier(Modifier::DIM)), keys);
    if let Some(row) = view.timeline_row(snap) {
        timeline(frame, body, row, view, now);
        return;
    }
    let closed = view.closed_rows(snap);
    let closes_height =
        if closed.is_empty() { 0 } else { (closed.len().min(MAX_CLOSES_SHOWN) as u16 + 2).min(body.height / 2) };
    let [open_area, closed_area] =
        Layout::vertical([Constraint::Min(2), Constraint::Length(closes_height)]).areas(body);
    let open = view.open_rows(snap, now);
    let keep = fit(&OPEN_COLUMNS, open_area.width);
    let rows = open
        .iter()
        .map(|r| {
            let style = if r.overdue(now) {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else if r.remaining(now).is_some_and(|left| left < 1.5) {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            };
            (open_cells(r, now).to_vec(), style)
        })
        .collect();
    let mut state = TableState::default().with_selected((!open.is_empty()).then_some(view.selected));
    frame.render_stateful_widget(
        table(&OPEN_COLUMNS, &keep, rows).row_highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        open_area,
        &mut state,
    );
    if closes_height > 0 {
        let [title, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(closed_area);
        frame.render_widget(
            Paragraph::new("Recent closes, newest first").style(Style::new().add_modifier(Modifier::BOLD)),
            title,
        );
        let keep = fit(&CLOSED_COLUMNS, list.width);
        let rows = closed.iter().map(|r| (closed_cells(r).to_vec(), Style::new())).collect();
        frame.render_widget(table(&CLOSED_COLUMNS, &keep, rows), list);
    }
}

/// Lines the header takes when wrapped at `width`.
fn head_lines(lines: &[Line], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    lines.iter().map(|l| l.width().div_ceil(w).max(1) as u16).sum::<u16>().min(6)
}

/// One session's events, oldest first, with the time since the one before.
fn timeline(frame: &mut Frame, area: Rect, r: &Row, view: &View, now: f64) {
    let state = match &r.close {
        Some(c) => close_cell(c),
        None => format!("open, deadline {}", countdown(r.remaining(now))),
    };
    let mut lines = vec![
        Line::styled(
            format!(
                "Session {}  {}  {}  keepalive {}  {}",
                r.id,
                client_id_cell(r.client_id.as_deref(), 40),
                r.client,
                r.keepalive_s.map_or_else(|| "?".into(), |k| k.to_string()),
                state
            ),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::raw(""),
    ];
    let mut previous: Option<f64> = None;
    for (ts, what) in &r.events {
        let since = previous.map_or_else(String::new, |p| format!("+{}", model::seconds(ts - p)));
        previous = Some(*ts);
        let what = crate::sink::report::terminal::escape(what).into_owned();
        lines.push(Line::raw(format!("{}  {since:>8}  {what}", Zone::Utc.time_of_day(Timestamp::from_secs_f64(*ts)))));
    }
    if r.events.is_empty() {
        lines.push(Line::raw("(no events listed)"));
    }
    let scroll = view.timeline_scroll.min(lines.len().saturating_sub(1)) as u16;
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((scroll, 0)), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{Close, Totals};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn snap() -> Snapshot {
        let row = |id: u64, cid: &str, last: f64| Row {
            id,
            client: format!("127.0.0.1:{}", 50000 + id),
            client_id: Some(cid.into()),
            transport: "tcp".into(),
            keepalive_s: Some(5),
            started: 1_700_000_000.0,
            last_activity: Some(last),
            deadline: Some(last + 7.5),
            pingreq: 3,
            pingresp: 3,
            rtt_ms: Some(0.25),
            ..Row::default()
        };
        let t0 = 1_700_000_100.0;
        let mut gone = row(9, "gone", t0 - 20.0);
        gone.close = Some(Close {
            at: t0 - 5.0,
            kind: "fin".into(),
            by: Some("broker".into()),
            reason_code: None,
            enforcement: Some(("late".into(), Some(1.3))),
        });
        Snapshot {
            source: "http://127.0.0.1:9883".into(),
            now: t0,
            open: vec![row(1, "chatty", t0 - 1.0), row(2, "quiet", t0 - 9.0)],
            open_total: 2,
            closed: vec![gone],
            totals: Totals { open: 2, expired_open: 1, connects: 3, closes: 1, ..Totals::default() },
            ..Snapshot::default()
        }
    }

    fn screen(width: u16, height: u16, view: &View) -> Vec<String> {
        let s = snap();
        let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
        t.draw(|f| draw(f, &s, view, s.now)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..height)
            .map(|y| (0..width).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
            .collect()
    }

    fn find<'a>(lines: &'a [String], text: &str) -> Option<(usize, &'a String)> {
        lines.iter().enumerate().find(|(_, l)| l.contains(text))
    }

    #[test]
    fn the_expired_session_heads_the_table_and_the_close_says_who_and_why() {
        let lines = screen(120, 20, &View::default());
        let all = lines.join("\n");
        let (header, _) = find(&lines, "DEADLINE").expect(&all);
        let (quiet, q) = find(&lines, "quiet").expect(&all);
        let (chatty, c) = find(&lines, "chatty").expect(&all);
        assert!(header < quiet && quiet < chatty, "{all}");
        assert!(q.contains("EXPIRED -1.5s") && q.contains("9.0s"), "{q}");
        assert!(c.trim_start().starts_with("6.5s"), "{c}");
        let (_, gone) = find(&lines, "gone").expect(&all);
        assert!(gone.contains("fin by broker (expired, late +1.3s)") && gone.contains("22:14:55"), "{gone}");
        assert!(lines[0].contains("open 2 (1 expired)") && lines[0].contains("connects 3"), "{all}");
        assert!(find(&lines, "q quit").is_some(), "{all}");
        assert!(lines[1].contains("sort: deadline"), "{all}");
    }

    #[test]
    fn a_narrow_terminal_keeps_deadline_client_id_and_close() {
        let lines = screen(40, 20, &View::default());
        let all = lines.join("\n");
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
        let (_, q) = find(&lines, "quiet").expect(&all);
        assert!(q.contains("EXPIRED -1.5s"), "{all}");
        assert!(find(&lines, "CLIENT ID").is_some() && find(&lines, "TRANSPORT").is_none(), "{all}");
        assert!(find(&lines, "gone").is_some(), "{all}");
        // Header items are not split across lines; the keys are the short ones.
        assert!(find(&lines, "without DISCONNECT 0").is_some(), "{all}");
        assert!(find(&lines, "s sort / filter").is_some(), "{all}");
        // Very small still draws without a panic.
        screen(10, 4, &View::default());
        screen(1, 1, &View::default());
    }

    #[test]
    fn the_timeline_and_the_status_line() {
        let mut s = snap();
        s.open[1].events = vec![(s.now - 10.0, "connect keepalive_s=5".into()), (s.now - 9.0, "pingreq".into())];
        let view = View { timeline: Some(2), paused: true, filter: "q*".into(), ..View::default() };
        let mut t = Terminal::new(TestBackend::new(100, 12)).unwrap();
        t.draw(|f| draw(f, &s, &view, s.now)).unwrap();
        let text = format!("{:?}", t.backend().buffer());
        for want in ["Session 2  quiet", "connect keepalive_s=5", "+1.0s  pingreq", "PAUSED", "filter: q*"] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    #[test]
    fn columns_fit_by_rank() {
        assert_eq!(fit(&OPEN_COLUMNS, 200), (0..8).collect::<Vec<_>>());
        assert_eq!(fit(&OPEN_COLUMNS, 36), [0, 1]);
        assert_eq!(fit(&OPEN_COLUMNS, 5), [0], "the first column always");
    }
}

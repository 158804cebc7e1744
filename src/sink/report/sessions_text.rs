//! `/sessions?format=text`: the live agent's sessions as a compact table for people.
//!
//! Contract: one line per listed session, in the document's order (open ones, then the closed
//! ones, newest last), columns of bounded width, captured strings escaped
//! ([`super::terminal::escape`]); an open session's deadline is counted from the agent's clock
//! when the document was made (`in 4.2 s`, `passed 1.3 s ago`), a closed one shows how, by whom
//! and when it closed.

use super::sessions::SessionsDocument;
use super::terminal::{self, escape};
use super::text::MAX_CLIENT_ID_WIDTH;
use super::times::Zone;
use crate::session::record::{CloseRecord, SessionRecord};
use std::fmt::Write as _;

const HEADER: [&str; 9] = ["ID", "CLIENT ID", "CLIENT", "STATE", "KEEPALIVE", "SILENCE", "DEADLINE", "PINGS", "RTT ms"];

impl SessionsDocument {
    /// The table (see the module doc).
    pub fn render_text(&self) -> String {
        let rows: Vec<[String; 9]> = self.sessions.iter().map(row).collect();
        let mut widths: Vec<usize> = HEADER.iter().map(|h| terminal::width(h)).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(terminal::width(c));
            }
        }
        widths[1] = widths[1].min(MAX_CLIENT_ID_WIDTH);
        let listed_open = self.sessions.iter().filter(|r| r.close.kind == CloseRecord::OPEN_KIND).count();
        let mut out = format!(
            "{} open sessions ({listed_open} listed), {} recently closed listed\n\n",
            self.open,
            self.sessions.len() - listed_open
        );
        let mut line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                let c = if i == 1 { terminal::truncate(c, *w) } else { (*c).into() };
                terminal::pad(&mut l, &c, w + 2);
            }
            let _ = writeln!(out, "{}", l.trim_end());
        };
        line(&HEADER);
        for r in &rows {
            line(&r.iter().map(String::as_str).collect::<Vec<_>>());
        }
        out
    }
}

fn row(r: &SessionRecord) -> [String; 9] {
    let open = r.close.kind == CloseRecord::OPEN_KIND;
    let state = match (open, r.expired, r.close.by) {
        (true, true, _) => "EXPIRED, open".to_string(),
        (true, false, _) => "open".to_string(),
        (false, _, Some(by)) => format!("{} by {by}", r.close.kind),
        (false, _, None) => r.close.kind.to_string(),
    };
    let keepalive =
        r.effective_keepalive_s.map_or_else(|| "?".into(), |k| if k == 0 { "off".into() } else { format!("{k} s") });
    let silence = match (open, r.silence_s) {
        (true, Some(s)) => format!("{s:.1} s"),
        _ => format!("{:.1} s max", r.max_silence_s.as_secs_f64()),
    };
    let deadline = match (open, r.deadline, r.last_activity, r.silence_s) {
        (true, Some(d), Some(last), Some(s)) => {
            let left = d.as_secs_f64() - (last.as_secs_f64() + s);
            if left >= 0.0 { format!("in {left:.1} s") } else { format!("passed {:.1} s ago", -left) }
        }
        (true, ..) => "-".into(),
        (false, ..) => match r.closed.or(r.ended) {
            Some(t) => format!("closed {}", Zone::Utc.format(t)),
            None => "-".into(),
        },
    };
    [
        r.id.to_string(),
        r.client_id.as_deref().map_or_else(|| "-".into(), |id| escape(id).into_owned()),
        r.client.to_string(),
        state,
        keepalive,
        silence,
        deadline,
        format!("{}/{}", r.pingresp, r.pingreq),
        r.ping_rtt_ms.map_or_else(|| "-".into(), |p| format!("{:.2}", p.median)),
    ]
}

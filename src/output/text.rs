//! The text report (`analyze -f text`): the table of the most severe sessions and the summary,
//! after one session's timeline when one is asked for (`--session ID`, streamed as its events
//! happen).
//!
//! Contract: a [`TextReport`] keeps the `top` most severe sessions the filter lets through and
//! writes the report at [`Sink::finish`]; asked for a session that never appears, it writes the
//! report nowhere and fails with [`NoSuchSession`].

use super::Shown;
use crate::session::record::SessionRecord;
use crate::session::{Event, SessionId};
use crate::sink::report::filter::SessionFilter;
use crate::sink::report::text::TextOptions;
use crate::sink::report::timeline::Timeline;
use crate::sink::report::{AnalysisReport, Totals, WorstSessions};
use crate::sink::{Sink, Wants};
use std::io::{self, Write};

/// What the text report shows.
#[derive(Clone, Debug, Default)]
pub struct TextOutput {
    /// Sessions listed, most severe first (0: all).
    pub top: usize,
    pub filter: SessionFilter,
    pub text: TextOptions,
    /// This session's timeline first.
    pub session: Option<SessionId>,
}

/// `--session ID` named a session the capture does not have (an error of usage: exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("no session {0} in the capture (the session ids are the `id`s of `-f json`)")]
pub struct NoSuchSession(pub SessionId);

/// The text report's sink.
pub struct TextReport<W: Write> {
    /// The writer, or the timeline writing to it.
    out: Option<Out<W>>,
    worst: Option<WorstSessions>,
    shown: Shown,
    text: TextOptions,
}

enum Out<W: Write> {
    Plain(W),
    Timeline(Timeline<W>),
}

impl<W: Write> TextReport<W> {
    pub fn new(out: W, opts: TextOutput) -> Self {
        let out = match opts.session {
            Some(id) => Out::Timeline(Timeline::new(out, id, opts.text.zone)),
            None => Out::Plain(out),
        };
        TextReport {
            out: Some(out),
            worst: Some(WorstSessions::new(if opts.top == 0 { usize::MAX } else { opts.top })),
            shown: Shown::new(opts.filter),
            text: opts.text,
        }
    }
}

impl<W: Write> Sink for TextReport<W> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        match &mut self.out {
            Some(Out::Timeline(t)) => t.on_event(event),
            _ => Ok(()),
        }
    }

    fn on_record(&mut self, record: &SessionRecord) -> io::Result<()> {
        if self.shown.keep(record)
            && let Some(worst) = &mut self.worst
        {
            worst.push(record.clone());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(Out::Timeline(t)) => t.flush(),
            Some(Out::Plain(w)) => w.flush(),
            None => Ok(()),
        }
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        let (Some(out), Some(worst)) = (self.out.take(), self.worst.take()) else { return Ok(()) };
        let mut out = match out {
            Out::Plain(w) => w,
            Out::Timeline(t) => {
                if !t.found() {
                    return Err(io::Error::new(io::ErrorKind::NotFound, NoSuchSession(t.session())));
                }
                let mut w = t.into_inner()?;
                writeln!(w)?;
                w
            }
        };
        let report = AnalysisReport::new(self.shown.totals(totals), worst.into_sorted());
        out.write_all(report.render_text_with(&self.text).as_bytes())?;
        out.flush()
    }

    fn wants(&self) -> Wants {
        Wants { records: true, activity: false }
    }
}

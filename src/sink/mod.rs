//! Consumers of events. Every output is a fold over the same [`Event`] stream, so offline and
//! live cannot drift apart.
//!
//! - [`report`]: per-session records and capture totals, rendered as text or one JSON document.
//! - [`jsonl`]: the events themselves, one JSON object per line, as they happen.
//! - [`metrics`]: Prometheus counters, gauges and histograms.
//! - [`html`]: the session timeline page (`--html`, `-f html`).
//! - [`openmetrics`]: the metrics a live agent would have exported, with timestamps (`-f openmetrics`).

pub mod html;
pub mod jsonl;
pub mod metrics;
pub mod openmetrics;
pub mod report;

use crate::model::stats::SourceStats;
use crate::session::Event;
use crate::session::record::SessionRecord;
use report::Totals;

/// Something that consumes what the pipeline makes: every output (the report, JSON lines, the
/// metrics, the HTML page, the OpenMetrics backfill) is one, built by [`crate::output`] for
/// `analyze` and `live` alike. Only [`Sink::on_event`] is required.
pub trait Sink {
    /// One event; an error stops the run (a closed pipe, a full disk).
    fn on_event(&mut self, event: &Event) -> std::io::Result<()>;

    /// A finished MQTT session's record (sessions still open at the end of the input last, in
    /// the order they began). Records are made only when some sink [`Sink::wants`] them.
    fn on_record(&mut self, _record: &SessionRecord) -> std::io::Result<()> {
        Ok(())
    }

    /// The source's figures so far (cumulative), from a live loop about once a second.
    fn on_stats(&mut self, _stats: &SourceStats) {}

    /// Hands on what is buffered (when input is live, after each step: events reach their
    /// reader as they happen).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// The input ended (`analyze`): writes what the sink held back (a report, a page) with the
    /// run's figures, and flushes.
    fn finish(&mut self, _totals: &Totals) -> std::io::Result<()> {
        self.flush()
    }

    /// What the sink needs the pipeline to make.
    fn wants(&self) -> Wants {
        Wants::default()
    }
}

/// What sinks need besides the events every run makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Session records ([`Sink::on_record`]); without them a tracker keeps less per session.
    pub records: bool,
    /// A `client_activity` event for each client packet (the silences of the metrics and the page).
    pub activity: bool,
}

impl Wants {
    /// What either wants.
    pub fn or(self, other: Wants) -> Wants {
        Wants { records: self.records || other.records, activity: self.activity || other.activity }
    }
}

/// Several sinks as one, in order: each event, record and figure goes to every one; the first
/// error stops.
impl Sink for [&mut dyn Sink] {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.iter_mut().try_for_each(|s| s.on_event(event))
    }

    fn on_record(&mut self, record: &SessionRecord) -> std::io::Result<()> {
        self.iter_mut().try_for_each(|s| s.on_record(record))
    }

    fn on_stats(&mut self, stats: &SourceStats) {
        self.iter_mut().for_each(|s| s.on_stats(stats));
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.iter_mut().try_for_each(|s| s.flush())
    }

    fn finish(&mut self, totals: &Totals) -> std::io::Result<()> {
        self.iter_mut().try_for_each(|s| s.finish(totals))
    }

    fn wants(&self) -> Wants {
        self.iter().fold(Wants::default(), |w, s| w.or(s.wants()))
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        (**self).on_event(event)
    }

    fn on_record(&mut self, record: &SessionRecord) -> std::io::Result<()> {
        (**self).on_record(record)
    }

    fn on_stats(&mut self, stats: &SourceStats) {
        (**self).on_stats(stats);
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (**self).flush()
    }

    fn finish(&mut self, totals: &Totals) -> std::io::Result<()> {
        (**self).finish(totals)
    }

    fn wants(&self) -> Wants {
        (**self).wants()
    }
}

/// A sink from a closure (tests and small tools).
pub struct FnSink<F: FnMut(&Event)>(pub F);

impl<F: FnMut(&Event)> Sink for FnSink<F> {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        (self.0)(event);
        Ok(())
    }
}

/// A sink of the records alone, from a closure (tests and small tools); it wants records.
pub struct RecordSink<F: FnMut(&SessionRecord)>(pub F);

impl<F: FnMut(&SessionRecord)> Sink for RecordSink<F> {
    fn on_event(&mut self, _event: &Event) -> std::io::Result<()> {
        Ok(())
    }

    fn on_record(&mut self, record: &SessionRecord) -> std::io::Result<()> {
        (self.0)(record);
        Ok(())
    }

    fn wants(&self) -> Wants {
        Wants { records: true, activity: false }
    }
}

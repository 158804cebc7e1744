//! Where outputs are chosen and built, for `analyze` and `live` alike: [`Outputs`] is the one
//! builder, one method per output, and is itself the one [`Sink`] a loop hands everything to.
//!
//! Contract: every output is a [`Sink`] in its own file ([`text`], [`json`], [`html`],
//! [`backfill`]; the JSON-lines stream and the metrics are sinks as they are), with its
//! destination; any number of them side by side (`--html FILE` beside `-f json` is one more
//! output, no special case); what they need the pipeline to make is the union of their
//! [`Sink::wants`]. Each output sees every event in time order, every record as its session
//! ends, and [`Sink::finish`] once with the run's figures. This module sits above the sinks and
//! the sources, and may use both (the OpenMetrics backfill counts the capture's packets in a
//! first pass over the files: [`packet_steps`]).

pub mod backfill;
pub mod html;
pub mod json;
pub mod text;

use crate::capture::{CaptureError, OfflineReader, PacketSource};
use crate::model::stats::SourceStats;
use crate::session::Event;
use crate::session::record::SessionRecord;
use crate::sink::jsonl::JsonLines;
use crate::sink::metrics::Metrics;
use crate::sink::openmetrics::PacketSteps;
use crate::sink::report::filter::SessionFilter;
use crate::sink::report::{Report, Settings, Totals};
use crate::sink::{Sink, Wants};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The outputs of one run (or one live capture thread), built one method at a time; a [`Sink`]
/// that hands everything to each in the order they were added.
#[derive(Default)]
pub struct Outputs<'w> {
    sinks: Vec<Box<dyn Sink + 'w>>,
}

impl<'w> Outputs<'w> {
    pub fn new() -> Self {
        Outputs { sinks: Vec::new() }
    }

    /// Any sink as one more output.
    pub fn with(mut self, sink: impl Sink + 'w) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// The text report (`-f text`): the most severe sessions the filter lets through, after one
    /// session's timeline when asked for (`--session`).
    pub fn text(self, out: impl Write + 'w, opts: text::TextOutput) -> Self {
        self.with(text::TextReport::new(out, opts))
    }

    /// The JSON document (`-f json`), streamed session by session.
    pub fn json(self, out: impl Write + 'w, settings: Settings, filter: SessionFilter) -> Self {
        self.with(json::JsonReport::new(out, settings, filter))
    }

    /// The events as JSON lines (`-f jsonl`, `live --events`).
    pub fn jsonl(self, out: impl Write + 'w, filter: SessionFilter) -> Self {
        self.with(JsonLines::with_filter(out, filter))
    }

    /// The live agent's metrics, sampled every `step` of capture time (`-f openmetrics`).
    pub fn openmetrics(
        self,
        out: impl Write + 'w,
        step: Duration,
        instance: &str,
        packets: Option<PacketSteps>,
    ) -> Self {
        self.with(backfill::BackfillOutput::new(out, step, instance, packets))
    }

    /// The HTML timeline page (`-f html` to `out`, or `--html FILE`).
    pub fn html(self, to: html::PageTo<'w>, top: usize) -> Self {
        self.with(html::HtmlPage::new(to, top))
    }

    /// The live metrics (`live`).
    pub fn metrics(self, metrics: Metrics) -> Self {
        self.with(metrics)
    }

    /// The last output added, made lenient: its first error is logged and the output dropped,
    /// the others go on (`live --events` on a full disk: the metrics stay).
    pub fn lenient(mut self, what: &'static str) -> Self {
        if let Some(last) = self.sinks.pop() {
            self.sinks.push(Box::new(Lenient { sink: Some(last), what }));
        }
        self
    }
}

impl Sink for Outputs<'_> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.on_event(event))
    }

    fn on_record(&mut self, record: &SessionRecord) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.on_record(record))
    }

    fn on_stats(&mut self, stats: &SourceStats) {
        self.sinks.iter_mut().for_each(|s| s.on_stats(stats));
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.flush())
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.finish(totals))
    }

    fn wants(&self) -> Wants {
        self.sinks.iter().fold(Wants::default(), |w, s| w.or(s.wants()))
    }
}

/// An output whose failure is logged once and ends it alone (see [`Outputs::lenient`]).
struct Lenient<'w> {
    sink: Option<Box<dyn Sink + 'w>>,
    what: &'static str,
}

impl Lenient<'_> {
    fn check(&mut self, result: io::Result<()>) -> io::Result<()> {
        if let Err(err) = result {
            tracing::error!("writing {} failed, they are no longer written: {err}", self.what);
            self.sink = None;
        }
        Ok(())
    }
}

impl Sink for Lenient<'_> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        let result = self.sink.as_mut().map_or(Ok(()), |s| s.on_event(event));
        self.check(result)
    }

    fn on_record(&mut self, record: &SessionRecord) -> io::Result<()> {
        let result = self.sink.as_mut().map_or(Ok(()), |s| s.on_record(record));
        self.check(result)
    }

    fn on_stats(&mut self, stats: &SourceStats) {
        if let Some(s) = self.sink.as_mut() {
            s.on_stats(stats);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.sink.as_mut().map_or(Ok(()), |s| s.flush());
        self.check(result)
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        let result = self.sink.as_mut().map_or(Ok(()), |s| s.finish(totals));
        self.check(result)
    }

    fn wants(&self) -> Wants {
        self.sink.as_ref().map_or(Wants::default(), |s| s.wants())
    }
}

/// The sessions a filter lets through, and their summary (the text and JSON reports').
struct Shown {
    filter: SessionFilter,
    matched: Report,
}

impl Shown {
    fn new(filter: SessionFilter) -> Self {
        Shown { filter, matched: Report::new() }
    }

    /// True when the session is shown (and counted in the summary).
    fn keep(&mut self, r: &SessionRecord) -> bool {
        let keep = self.filter.matches(r);
        if keep {
            self.matched.add(r);
        }
        keep
    }

    /// The figures with the summary of the sessions shown (all of them without a filter).
    fn totals(&mut self, all: &Totals) -> Totals {
        if self.filter.is_empty() {
            return all.clone();
        }
        std::mem::take(&mut self.matched).totals(all.capture.clone(), all.tcp.clone(), all.settings.clone())
    }
}

/// Counts the packets of `files` per `step` (read in order as one capture, time kept monotonic
/// as the analysis does). `None` when a file is standard input, which cannot be read twice.
/// Damage ends a file; the analysis reports it: this counts what it would read.
pub fn packet_steps(files: &[PathBuf], step: Duration) -> Result<Option<PacketSteps>, CaptureError> {
    if files.iter().any(|f| f.as_os_str() == "-") {
        return Ok(None);
    }
    let mut steps = PacketSteps::new(step);
    for f in files {
        let mut reader = OfflineReader::open(f)?;
        while let Ok(Some(p)) = reader.next_packet() {
            steps.add(p.ts);
        }
    }
    Ok(Some(steps))
}

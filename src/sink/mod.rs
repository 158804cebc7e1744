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

use crate::session::Event;

/// Something that consumes events.
pub trait Sink {
    /// One event; an error stops the run (a closed pipe, a full disk).
    fn on_event(&mut self, event: &Event) -> std::io::Result<()>;

    /// Hands on what is buffered (when input is live, after each step: events reach their
    /// reader as they happen).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

//! The OpenMetrics backfill (`analyze -f openmetrics`): the live agent's metrics fold, sampled
//! every step of capture time, written at the end.

use crate::session::Event;
use crate::sink::openmetrics::{Backfill, PacketSteps};
use crate::sink::report::Totals;
use crate::sink::{Sink, Wants};
use std::io::{self, Write};
use std::time::Duration;

/// The backfill's sink, with its destination.
pub struct BackfillOutput<W: Write> {
    backfill: Option<Backfill>,
    out: W,
}

impl<W: Write> BackfillOutput<W> {
    pub fn new(out: W, step: Duration, instance: &str, packets: Option<PacketSteps>) -> Self {
        BackfillOutput { backfill: Some(Backfill::new(step, instance, packets)), out }
    }
}

impl<W: Write> Sink for BackfillOutput<W> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        self.backfill.as_mut().map_or(Ok(()), |b| b.on_event(event))
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        let Some(backfill) = self.backfill.take() else { return Ok(()) };
        backfill.finish(totals.capture.last_ts, &mut self.out)?;
        self.out.flush()
    }

    fn wants(&self) -> Wants {
        Wants { records: false, activity: true } // as live: the silence-ratio histogram
    }
}

//! The JSON document (`analyze -f json`), streamed: each session is written as it ends, so
//! memory holds open sessions only.

use super::Shown;
use crate::session::Event;
use crate::session::record::SessionRecord;
use crate::sink::report::filter::SessionFilter;
use crate::sink::report::{JsonWriter, Settings, Totals};
use crate::sink::{Sink, Wants};
use std::io::{self, Write};

/// The JSON document's sink: the sessions the filter lets through, then the figures.
pub struct JsonReport<W: Write> {
    writer: Option<JsonWriter<W>>,
    shown: Shown,
}

impl<W: Write> JsonReport<W> {
    pub fn new(out: W, settings: Settings, filter: SessionFilter) -> Self {
        JsonReport { writer: Some(JsonWriter::new(out, settings)), shown: Shown::new(filter) }
    }
}

impl<W: Write> Sink for JsonReport<W> {
    fn on_event(&mut self, _event: &Event) -> io::Result<()> {
        Ok(())
    }

    fn on_record(&mut self, record: &SessionRecord) -> io::Result<()> {
        match &mut self.writer {
            Some(w) if self.shown.keep(record) => w.session(record),
            _ => Ok(()),
        }
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        let Some(writer) = self.writer.take() else { return Ok(()) };
        writer.end(&self.shown.totals(totals))?.flush()
    }

    fn wants(&self) -> Wants {
        Wants { records: true, activity: false }
    }
}

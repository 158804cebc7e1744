//! The event stream as JSON lines: one object per event, in time order, written as they happen.
//! Each object has `ts`, `session`, `client`, `broker`, `kind` and the kind's fields (README,
//! "Events").

use super::Sink;
use crate::session::{Event, EventKind};
use std::io::Write;

/// Writes events as JSON lines.
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }

    /// Flushes buffered lines.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        if let EventKind::ClientActivity { .. } = event.kind {
            return Ok(()); // a metrics feed, not an event of the stream
        }
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

//! The event stream as JSON lines: one object per event, in time order, written as they happen.
//! Each object has `ts`, `session`, `client`, `broker`, `kind` and the kind's fields (README,
//! "Events").

use super::Sink;
use crate::session::Event;
use std::io::Write;

/// Writes events as JSON lines.
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }
}

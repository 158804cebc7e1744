//! The `analyze --format json` document (README, "JSON output"): streamed one session at a
//! time by [`JsonWriter`], or held whole as an [`AnalysisReport`].
//!
//! Contract: the streamed document and the in-memory one serialise to the same bytes
//! ([`AnalysisReport::write_json`]); nothing is written before the first session or the end, so
//! an input that fails at once leaves no partial document.

use super::totals::{CaptureStats, Settings, Summary, Totals};
use crate::session::record::SessionRecord;
use crate::tracker::TrackerCounters;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

/// Version of the JSON document; bumped when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;

/// Writes the `analyze --format json` document as the sessions end: the head, then one line per
/// session, then the capture figures. Memory does not grow with the number of sessions. Nothing
/// is written before the first session (or [`JsonWriter::end`]), so an input that fails at once
/// leaves no partial document.
pub struct JsonWriter<W: Write> {
    out: W,
    settings: Settings,
    sessions: u64,
    begun: bool,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W, settings: Settings) -> Self {
        JsonWriter { out, settings, sessions: 0, begun: false }
    }

    fn begin(&mut self) -> std::io::Result<()> {
        if !self.begun {
            self.begun = true;
            write!(self.out, r#"{{"format":"{FORMAT}","version":{JSON_VERSION},"tool":"{TOOL}","settings":"#)?;
            serde_json::to_writer(&mut self.out, &self.settings)?;
            self.out.write_all(br#","sessions":["#)?;
        }
        Ok(())
    }

    /// Writes one session.
    pub fn session(&mut self, r: &SessionRecord) -> std::io::Result<()> {
        self.begin()?;
        self.out.write_all(if self.sessions == 0 { b"\n" } else { b",\n" })?;
        self.sessions += 1;
        serde_json::to_writer(&mut self.out, r)?;
        Ok(())
    }

    /// Writes the capture figures and closes the document.
    pub fn end(mut self, t: &Totals) -> std::io::Result<W> {
        self.begin()?;
        self.out.write_all(b"\n],\n\"capture\":")?;
        serde_json::to_writer(&mut self.out, &t.capture)?;
        self.out.write_all(b",\n\"tcp\":")?;
        serde_json::to_writer(&mut self.out, &t.tcp)?;
        self.out.write_all(b",\n\"mqtt_packets\":")?;
        serde_json::to_writer(&mut self.out, &t.mqtt_packets)?;
        self.out.write_all(b",\n\"summary\":")?;
        serde_json::to_writer(&mut self.out, &t.summary)?;
        self.out.write_all(b"}\n")?;
        Ok(self.out)
    }
}

const FORMAT: &str = "mqtt-keepalive/analyze";
const TOOL: &str = concat!("mqtt-keepalive ", env!("CARGO_PKG_VERSION"));

/// The whole `analyze` result, held in memory (the library's and the text table's form; the
/// JSON output streams through [`JsonWriter`] instead). Fields in the JSON document's order.
#[derive(Debug, Serialize)]
pub struct AnalysisReport {
    pub format: &'static str,
    pub version: u32,
    pub tool: &'static str,
    pub settings: Settings,
    /// In the order the sessions ended.
    pub sessions: Vec<SessionRecord>,
    pub capture: CaptureStats,
    pub tcp: TrackerCounters,
    pub mqtt_packets: BTreeMap<&'static str, u64>,
    pub summary: Summary,
}

impl AnalysisReport {
    pub fn new(totals: Totals, sessions: Vec<SessionRecord>) -> Self {
        let Totals { settings, capture, tcp, mqtt_packets, summary } = totals;
        AnalysisReport {
            format: FORMAT,
            version: JSON_VERSION,
            tool: TOOL,
            settings,
            sessions,
            capture,
            tcp,
            mqtt_packets,
            summary,
        }
    }

    /// The JSON document, byte for byte as `analyze --format json` streams it.
    pub fn write_json<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut w = JsonWriter::new(out, self.settings.clone());
        for r in &self.sessions {
            w.session(r)?;
        }
        let totals = Totals {
            settings: self.settings.clone(),
            capture: self.capture.clone(),
            tcp: self.tcp.clone(),
            mqtt_packets: self.mqtt_packets.clone(),
            summary: self.summary.clone(),
        };
        w.end(&totals)
    }
}

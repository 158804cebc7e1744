//! Helpers shared by the integration tests.
#![allow(dead_code)]

use mqtt_keepalive::app::{self, AnalyzeOptions};
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::session::{Event, EventKind};
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::report::{AnalysisReport, SessionRecord};
use mqtt_keepalive::tracker::TrackerConfig;
use std::path::{Path, PathBuf};

/// Path of a file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Every event, in emission order.
#[derive(Default)]
pub struct Collect(pub Vec<Event>);

impl Sink for Collect {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.0.push(event.clone());
        Ok(())
    }
}

/// Analyses files with default rules on `ports`; returns the report and every event.
pub fn analyze_with(files: &[PathBuf], tracker: TrackerConfig, ports: &[u16]) -> (AnalysisReport, Vec<Event>) {
    let mut events = Collect::default();
    let opts = AnalyzeOptions {
        files: files.to_vec(),
        tracker: TrackerConfig { ports: PortSet::new(ports), ..tracker },
        ports: ports.to_vec(),
        progress: false,
    };
    let report = app::analyze(opts, &mut [&mut events as &mut dyn Sink]).expect("analysis succeeds");
    (report, events.0)
}

/// Analyses one fixture with default rules.
pub fn analyze_fixture(name: &str) -> (AnalysisReport, Vec<Event>) {
    analyze_with(&[fixture(name)], TrackerConfig::default(), &[1883])
}

/// Writes capture bytes to a temporary file and analyses it with default rules.
pub fn analyze_bytes(bytes: &[u8]) -> (AnalysisReport, Vec<Event>) {
    analyze_bytes_with(bytes, TrackerConfig::default())
}

pub fn analyze_bytes_with(bytes: &[u8], tracker: TrackerConfig) -> (AnalysisReport, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    std::fs::write(&path, bytes).unwrap();
    analyze_with(&[path], tracker, &[1883])
}

/// The only session of a report.
pub fn only_session(report: &AnalysisReport) -> &SessionRecord {
    assert_eq!(report.sessions.len(), 1, "expected one session: {}", report.render_text());
    &report.sessions[0]
}

/// Events of one session with the given kind name.
pub fn events_named<'a>(events: &'a [Event], session: u64, name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.session == session && e.kind.name() == name).collect()
}

/// Timestamp (seconds) of the session's CONNECT.
pub fn connect_time(events: &[Event], session: u64) -> f64 {
    events_named(events, session, "connect")[0].ts.as_secs_f64()
}

/// The close event's fields.
pub fn close_of(events: &[Event], session: u64) -> &EventKind {
    &events_named(events, session, "close")[0].kind
}

//! Where outputs are chosen and built: above the sinks (each output one [`crate::sink::Sink`])
//! and the sources, which it may both use (the OpenMetrics backfill counts the capture's
//! packets in a first pass over the files).

use crate::capture::{CaptureError, OfflineReader, PacketSource};
use crate::sink::openmetrics::PacketSteps;
use std::path::PathBuf;
use std::time::Duration;

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

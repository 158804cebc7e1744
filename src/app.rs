//! The one loop: capture -> decode -> tracker -> sinks. The only place that knows whether the
//! input is a file or live, and the owner of the clock.
//!
//! Contract: [`analyze`] reads the given captures in order as one stream, keeps packet time
//! monotonic (an earlier timestamp than the last is counted and treated as the last), and returns
//! the report. Unusable input (a file that cannot be opened or is not a capture) fails before
//! anything is analysed; damage inside a file ends that file with a warning, keeps what was read,
//! and moves on to the next one.

use crate::capture::{CaptureError, OfflineReader, PacketSource};
use crate::decode::{self, Skip};
use crate::sink::Sink;
use crate::sink::report::{AnalysisReport, CaptureStats, Report, Settings};
use crate::time::Timestamp;
use crate::tracker::{Tracker, TrackerConfig};
use std::collections::HashSet;
use std::path::PathBuf;

/// What `analyze` needs.
pub struct AnalyzeOptions {
    pub files: Vec<PathBuf>,
    pub tracker: TrackerConfig,
    /// Port list as given (for the report's settings).
    pub ports: Vec<u16>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Why `analyze` stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that cannot be used at all (exit status 2).
    #[error(transparent)]
    Input(#[from] CaptureError),
    /// Writing output failed (a closed pipe is handled by the caller).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Analyses the files, feeding every event to `sinks` as it happens, and returns the report.
pub fn analyze(opts: AnalyzeOptions, sinks: &mut [&mut dyn Sink]) -> Result<AnalysisReport, AppError> {
    let mut readers = Vec::new();
    for f in &opts.files {
        readers.push(OfflineReader::open(f)?);
    }
    let settings = Settings {
        ports: opts.ports.clone(),
        ping_timeout_s: opts.tracker.session.ping_timeout.map(|d| d.as_secs_f64()),
        enforcement_tolerance_s: opts.tracker.session.enforcement_tolerance.as_secs_f64(),
    };
    let mut tracker = Tracker::new(opts.tracker);
    let mut report = Report::new();
    let mut stats =
        CaptureStats { files: opts.files.iter().map(|f| f.display().to_string()).collect(), ..Default::default() };
    let mut warned_links = HashSet::new();
    let mut clock: Option<Timestamp> = None;
    for mut reader in readers {
        let progress = opts.progress.then(|| progress_bar(&reader)).flatten();
        loop {
            let packet = match reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e @ (CaptureError::Damaged { .. } | CaptureError::Read { .. })) => {
                    eprintln!("mqtt-keepalive: warning: {e}");
                    stats.warnings.push(e.to_string());
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            stats.packets += 1;
            stats.bytes += packet.data.len() as u64;
            stats.first_ts.get_or_insert(packet.ts);
            let now = match clock {
                Some(last) if packet.ts < last => {
                    stats.timestamps_out_of_order += 1;
                    last
                }
                _ => packet.ts,
            };
            clock = Some(now);
            if (packet.data.len() as u64) < u64::from(packet.orig_len) {
                stats.truncated_packets += 1;
            }
            match decode::decode(packet.link, packet.data) {
                Ok(seg) => {
                    if !tracker.on_segment(now, &seg) {
                        stats.other_tcp_segments += 1;
                    }
                }
                Err(skip) => {
                    if let Skip::UnsupportedLink(link) = skip
                        && warned_links.insert(link)
                    {
                        let w = format!(
                            "{}: packets with unsupported link type {} skipped",
                            reader.path().display(),
                            crate::capture::LinkType(link).name()
                        );
                        eprintln!("mqtt-keepalive: warning: {w}");
                        stats.warnings.push(w);
                    }
                    *stats.skipped.entry(skip_name(skip).to_string()).or_default() += 1;
                }
            }
            dispatch(&mut tracker, &mut report, sinks)?;
            if let Some(bar) = &progress
                && stats.packets.is_multiple_of(4096)
            {
                bar.set_position(reader.position());
            }
        }
        if reader.truncated_tail() {
            stats.truncated_files += 1;
            let w = format!(
                "{}: the file ends inside a packet record (cut short); the records before it were analysed",
                reader.path().display()
            );
            eprintln!("mqtt-keepalive: warning: {w}");
            stats.warnings.push(w);
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
    }
    stats.last_ts = clock;
    if let Some(end) = clock {
        tracker.finish(end);
    }
    dispatch(&mut tracker, &mut report, sinks)?;
    let counters = tracker.counters().clone();
    Ok(report.build(stats, counters, settings))
}

/// Hands the tracker's new events to the report and the sinks.
fn dispatch(tracker: &mut Tracker, report: &mut Report, sinks: &mut [&mut dyn Sink]) -> std::io::Result<()> {
    for event in tracker.events().drain(..) {
        report.apply(&event);
        for sink in sinks.iter_mut() {
            sink.on_event(&event)?;
        }
    }
    Ok(())
}

fn skip_name(skip: Skip) -> &'static str {
    match skip {
        Skip::UnsupportedLink(_) => "unsupported_link",
        Skip::NotIp => "not_ip",
        Skip::NotTcp => "not_tcp",
        Skip::Fragment => "ip_fragment",
        Skip::Truncated => "truncated_headers",
    }
}

fn progress_bar(reader: &OfflineReader) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    let size = reader.size()?;
    if size < (16 << 20) || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .ok()?
            .progress_chars("=> "),
    );
    bar.set_message(reader.path().display().to_string());
    Some(bar)
}

//! The one loop: capture -> decode -> tracker -> sinks. The only place that knows whether the
//! input is a file or live, and the owner of the clock.
//!
//! Contract: [`analyze`] reads the given captures in order as one stream (on two threads: one
//! reads and decodes, one tracks), keeps packet time
//! monotonic (an earlier timestamp than the last is counted and treated as the last), and returns
//! the report. Unusable input (a file that cannot be opened or is not a capture) fails before
//! anything is analysed; damage inside a file ends that file with a warning, keeps what was read,
//! and moves on to the next one.

use crate::capture::{CaptureError, OfflineReader, PacketSource};
use crate::decode::{self, Skip};
use crate::sink::Sink;
use crate::sink::report::{AnalysisReport, CaptureStats, Report, SessionRecord, Settings, Totals};
use crate::time::Timestamp;
use crate::tracker::{Tracker, TrackerConfig};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};

/// What `analyze` needs.
pub struct AnalyzeOptions {
    pub files: Vec<PathBuf>,
    pub tracker: TrackerConfig,
    /// Port list as given (for the report's settings).
    pub ports: Vec<u16>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl AnalyzeOptions {
    /// The rule settings, as the report states them.
    pub fn settings(&self) -> Settings {
        Settings {
            ports: self.ports.clone(),
            ping_timeout_s: self.tracker.session.ping_timeout.map(|d| d.as_secs_f64()),
            enforcement_tolerance_s: self.tracker.session.enforcement_tolerance.as_secs_f64(),
        }
    }
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

/// A decoded frame handed from the reader thread to the tracker: owned, payload in its batch.
struct Item {
    ts: Timestamp,
    captured: u32,
    orig_len: u32,
    segment: Result<SegmentMeta, Skip>,
    /// The TCP payload's place in [`Batch::bytes`].
    payload: std::ops::Range<usize>,
}

/// A [`decode::Segment`] without its borrowed payload.
struct SegmentMeta {
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    seq: crate::flow::seq::SeqNumber,
    ack: Option<crate::flow::seq::SeqNumber>,
    syn: bool,
    fin: bool,
    rst: bool,
    wire_len: u32,
}

/// What the reader thread sends: up to [`BATCH`] frames, then maybe the end of a file.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    /// The current file ended after these items: cut short (true) or not, or with damage.
    file_end: Option<Result<bool, CaptureError>>,
}

const BATCH: usize = 1024;
/// Batches in flight between the threads (bounded: the reader cannot run ahead of memory).
const IN_FLIGHT: usize = 8;

/// Analyses the files, feeding every event to `sinks` as it happens, and returns the report
/// with every session record in memory (in the order the sessions ended).
pub fn analyze(opts: AnalyzeOptions, sinks: &mut [&mut dyn Sink]) -> Result<AnalysisReport, AppError> {
    let mut sessions = Vec::new();
    let totals = analyze_streaming(opts, sinks, &mut |r| {
        sessions.push(r);
        Ok(())
    })?;
    Ok(AnalysisReport::new(totals, sessions))
}

/// Analyses the files, feeding every event to `sinks` and every MQTT session's record to
/// `records` as the session ends (sessions still open at the end of the capture last, in the
/// order they began), and returns the capture's figures. Memory holds open sessions only.
///
/// Two threads, one per stage: a reader thread parses the capture files and decodes frames into
/// batches; this thread runs the tracker over them in order. The tracker is sequential and sees
/// the same segments in the same order as a single thread would, so the output is identical.
pub fn analyze_streaming(
    opts: AnalyzeOptions,
    sinks: &mut [&mut dyn Sink],
    records: &mut dyn FnMut(SessionRecord) -> std::io::Result<()>,
) -> Result<Totals, AppError> {
    let mut readers = Vec::new();
    for f in &opts.files {
        readers.push(OfflineReader::open(f)?);
    }
    let settings = opts.settings();
    let mut tracker = Tracker::new(opts.tracker);
    let mut report = Report::new();
    let mut stats =
        CaptureStats { files: opts.files.iter().map(|f| f.display().to_string()).collect(), ..Default::default() };
    let mut warned_links = HashSet::new();
    let mut clock: Option<Timestamp> = None;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT + 2);
    let progress = opts.progress;
    std::thread::scope(|scope| {
        scope.spawn(move || read_and_decode(readers, progress, full_tx, empty_rx));
        let mut file = 0;
        for mut batch in full_rx {
            for item in &batch.items {
                stats.packets += 1;
                stats.bytes += u64::from(item.captured);
                stats.first_ts.get_or_insert(item.ts);
                let now = match clock {
                    Some(last) if item.ts < last => {
                        stats.timestamps_out_of_order += 1;
                        last
                    }
                    _ => item.ts,
                };
                clock = Some(now);
                if item.captured < item.orig_len {
                    stats.truncated_packets += 1;
                }
                match &item.segment {
                    Ok(m) => {
                        let seg = decode::Segment {
                            src: m.src,
                            dst: m.dst,
                            seq: m.seq,
                            ack: m.ack,
                            syn: m.syn,
                            fin: m.fin,
                            rst: m.rst,
                            payload: &batch.bytes[item.payload.clone()],
                            wire_len: m.wire_len,
                        };
                        if !tracker.on_segment(now, &seg) {
                            stats.other_tcp_segments += 1;
                        }
                    }
                    Err(skip) => {
                        if let Skip::UnsupportedLink(link) = skip
                            && warned_links.insert(*link)
                        {
                            let w = format!(
                                "{}: packets with unsupported link type {} skipped",
                                opts.files[file].display(),
                                crate::link::LinkType(*link).name()
                            );
                            eprintln!("mqtt-keepalive: warning: {w}");
                            stats.warnings.push(w);
                        }
                        *stats.skipped.entry(skip_name(*skip).to_string()).or_default() += 1;
                    }
                }
                dispatch(&mut tracker, &mut report, sinks, records)?;
            }
            match batch.file_end.take() {
                None => {}
                Some(Ok(truncated)) => {
                    if truncated {
                        stats.truncated_files += 1;
                        let w = format!(
                            "{}: the file ends inside a packet record (cut short); the records before it were analysed",
                            opts.files[file].display()
                        );
                        eprintln!("mqtt-keepalive: warning: {w}");
                        stats.warnings.push(w);
                    }
                    file += 1;
                }
                Some(Err(e)) => {
                    eprintln!("mqtt-keepalive: warning: {e}");
                    stats.warnings.push(e.to_string());
                    file += 1;
                }
            }
            batch.items.clear();
            batch.bytes.clear();
            let _ = empty_tx.try_send(batch); // recycled; dropped if the pool is full
        }
        Ok::<(), AppError>(())
    })?;
    stats.last_ts = clock;
    if let Some(end) = clock {
        let mut ending = tracker.start_finish(end);
        while tracker.finish_some(&mut ending, BATCH) {
            dispatch(&mut tracker, &mut report, sinks, records)?;
        }
    }
    dispatch(&mut tracker, &mut report, sinks, records)?;
    let counters = tracker.counters().clone();
    Ok(report.totals(stats, counters, settings))
}

/// The reader stage: parses every file in order and decodes its frames into batches. Stops
/// early if the tracker stage has gone (its receiver dropped, e.g. on an output error).
fn read_and_decode(readers: Vec<OfflineReader>, progress: bool, full: SyncSender<Batch>, empty: Receiver<Batch>) {
    for mut reader in readers {
        let bar = progress.then(|| progress_bar(&reader)).flatten();
        let mut batch = empty.try_recv().unwrap_or_default();
        let end = loop {
            match reader.next_packet() {
                Ok(Some(p)) => {
                    let start = batch.bytes.len();
                    let segment = decode::decode(p.link, p.data).map(|seg| {
                        batch.bytes.extend_from_slice(seg.payload);
                        SegmentMeta {
                            src: seg.src,
                            dst: seg.dst,
                            seq: seg.seq,
                            ack: seg.ack,
                            syn: seg.syn,
                            fin: seg.fin,
                            rst: seg.rst,
                            wire_len: seg.wire_len,
                        }
                    });
                    let payload = start..batch.bytes.len();
                    batch.items.push(Item {
                        ts: p.ts,
                        captured: p.data.len() as u32,
                        orig_len: p.orig_len,
                        segment,
                        payload,
                    });
                }
                Ok(None) => break Ok(reader.truncated_tail()),
                Err(e) => break Err(e),
            }
            if batch.items.len() == BATCH {
                if let Some(bar) = &bar {
                    bar.set_position(reader.position());
                }
                let next = empty.try_recv().unwrap_or_default();
                if full.send(std::mem::replace(&mut batch, next)).is_err() {
                    return;
                }
            }
        };
        batch.file_end = Some(end);
        if full.send(batch).is_err() {
            return;
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

/// Hands the tracker's new events to the sinks, and its finished records to the report and to
/// `records`.
fn dispatch(
    tracker: &mut Tracker,
    report: &mut Report,
    sinks: &mut [&mut dyn Sink],
    records: &mut dyn FnMut(SessionRecord) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for event in tracker.events().drain(..) {
        for sink in sinks.iter_mut() {
            sink.on_event(&event)?;
        }
    }
    for record in tracker.finished().drain(..) {
        report.add(&record);
        records(record)?;
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

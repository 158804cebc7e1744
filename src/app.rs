//! The offline loop (`analyze`): capture files through the [`Pipeline`] to the sinks.
//!
//! Contract: [`analyze`] reads the given captures in order as one stream (on two threads: one
//! reads and decodes, one runs the pipeline, whose clock keeps packet time monotonic) and
//! returns the report. Unusable input (a file that cannot be opened or is not a capture) fails before
//! anything is analysed; damage inside a file ends that file with a warning, keeps what was read,
//! and moves on to the next one.

use crate::capture::{CaptureError, OfflineReader, PacketSource};
use crate::decode::{self, Skip};
use crate::pipeline::{Pipeline, Records};
use crate::sink::Sink;
use crate::sink::report::{AnalysisReport, CaptureStats, Report, SessionRecord, Settings, Totals};
use crate::time::Timestamp;
use crate::tracker::TrackerConfig;
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
    /// The TLS key log cannot be read (exit status 2).
    #[error(transparent)]
    KeyLog(#[from] crate::layer::tls::KeyLogError),
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
/// batches; this thread runs the [`Pipeline`] over them in order. The pipeline sees the same
/// segments in the same order as a single thread would, so the output is identical.
pub fn analyze_streaming(
    opts: AnalyzeOptions,
    sinks: &mut [&mut dyn Sink],
    records: &mut Records<'_>,
) -> Result<Totals, AppError> {
    let mut readers = Vec::new();
    for f in &opts.files {
        readers.push(OfflineReader::open(f)?);
    }
    let settings = opts.settings();
    let mut pipeline = Pipeline::new(opts.tracker);
    let mut report = Report::new();
    let mut records = |r: SessionRecord| {
        report.add(&r);
        records(r)
    };
    let files: Vec<String> = opts.files.iter().map(|f| f.display().to_string()).collect();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT + 2);
    let progress = opts.progress;
    std::thread::scope(|scope| {
        scope.spawn(move || read_and_decode(readers, progress, full_tx, empty_rx));
        let mut file = 0;
        pipeline.set_source(files.first().cloned().unwrap_or_default());
        for mut batch in full_rx {
            for item in &batch.items {
                let segment = item.segment.as_ref().map_err(|skip| *skip).map(|m| decode::Segment {
                    src: m.src,
                    dst: m.dst,
                    seq: m.seq,
                    ack: m.ack,
                    syn: m.syn,
                    fin: m.fin,
                    rst: m.rst,
                    payload: &batch.bytes[item.payload.clone()],
                    wire_len: m.wire_len,
                });
                pipeline.segment(item.ts, item.captured, item.orig_len, segment);
                pipeline.drain(sinks, &mut records)?;
            }
            show_warnings(&mut pipeline);
            match batch.file_end.take() {
                None => {}
                Some(end) => {
                    match end {
                        Ok(false) => {}
                        Ok(true) => {
                            pipeline.count_truncated_file();
                            pipeline.warn(format!(
                                "{}: the file ends inside a packet record (cut short); the records before it were analysed",
                                files[file]
                            ));
                        }
                        Err(e) => pipeline.warn(e.to_string()),
                    }
                    show_warnings(&mut pipeline);
                    file += 1;
                    pipeline.set_source(files.get(file).cloned().unwrap_or_default());
                }
            }
            batch.items.clear();
            batch.bytes.clear();
            let _ = empty_tx.try_send(batch); // recycled; dropped if the pool is full
        }
        Ok::<(), AppError>(())
    })?;
    pipeline.finish(sinks, &mut records)?;
    let stats = CaptureStats { files, ..pipeline.stats() };
    let counters = pipeline.counters().clone();
    Ok(report.totals(stats, counters, settings))
}

/// Shows the pipeline's new warnings on stderr (they are in the report too).
fn show_warnings(pipeline: &mut Pipeline) {
    for w in pipeline.take_new_warnings() {
        eprintln!("mqtt-keepalive: warning: {w}");
    }
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

//! The offline loop (`analyze`): capture files through the [`Pipeline`] to the sinks.
//!
//! Contract: [`analyze`] reads the given captures as one stream (on two threads: one reads and
//! decodes, one runs the pipeline, whose clock keeps packet time monotonic) and returns the
//! report. Unusable input (a file that cannot be opened or is not a capture) fails before
//! anything is analysed; damage inside a file ends that file with a warning, keeps what was read,
//! and moves on to the next one. Regular files are read in the order of their first packets (as
//! `tcpdump -C/-G` rotates them), a file named twice once, with a warning for each, and for
//! captures that overlap or timestamps that go backwards.
//!
//! Files are read on packet time alone: the same files give the same output, byte for byte.
//! Live input (a pipe or FIFO, e.g. `tcpdump -U -w - | analyze -`) is handed on as it comes (a
//! partial batch as soon as the input stalls, or [`FLUSH_AFTER`] at most), the sinks are flushed
//! after each step, and deadlines fire on the clock: packet time there is the latest packet's
//! timestamp advanced by the wall time since it arrived, [`STREAM_GRACE`] behind
//! ([`StreamClock`]). [`analyze_until`] stops reading when its flag is raised (a signal) and
//! still settles every session and reports, with a warning that the input was cut short.

use crate::capture::{CaptureError, Intake, OfflineReader, Source, SourceError};
use crate::decode::{self, Skip};
use crate::model::stats::CaptureStats;
use crate::pipeline::Pipeline;
use crate::session::record::SessionRecord;
use crate::sink::report::{AnalysisReport, Report, Settings, Totals};
use crate::sink::{RecordSink, Sink};
use crate::time::{StreamClock, Timestamp, monotonic_now};
use crate::tracker::{StreamInput, TcpChange, TrackerConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// How far behind live input's packet clock deadlines fire: tcpdump without
/// `--immediate-mode` hands packets on up to 1 s after their timestamps.
pub const STREAM_GRACE: Duration = Duration::from_secs(1);
/// Live input's frames are handed on this long after the first of a batch was read, at most
/// (and at once when the input stalls).
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// Longest wait for input before looking at the stop flag (and, for live input, the clock).
const MAX_WAIT: Duration = Duration::from_millis(100);

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
    /// The items come from live input (a pipe, a FIFO).
    live: bool,
}

const BATCH: usize = 1024;
/// Batches in flight between the threads (bounded: the reader cannot run ahead of memory).
const IN_FLIGHT: usize = 8;

/// Analyses the files, feeding every event to `sinks` as it happens, and returns the report
/// with every session record in memory (in the order the sessions ended).
pub fn analyze(opts: AnalyzeOptions, sinks: &mut [&mut dyn Sink]) -> Result<AnalysisReport, AppError> {
    let mut sessions = Vec::new();
    let mut collect = RecordSink(|r: &SessionRecord| sessions.push(r.clone()));
    let mut all: Vec<&mut dyn Sink> = vec![&mut collect];
    for s in sinks.iter_mut() {
        all.push(&mut **s);
    }
    let totals = analyze_until(opts, None, &mut all)?;
    Ok(AnalysisReport::new(totals, sessions))
}

/// Analyses the files, feeding every event to `sinks`, and every MQTT session's record as the
/// session ends (sessions still open at the end of the capture last, in the order they began),
/// and returns the capture's figures; records are made when a sink [`Sink::wants`] them, and the
/// `client_activity` events when one wants those. Memory holds open sessions only. Stops
/// reading when `stop` is raised (by a signal handler), and still settles every session,
/// drains, and returns the figures, with a warning that the input was cut short. The sinks'
/// [`Sink::finish`] is the caller's to call (after it has shown the warnings).
///
/// Two threads, one per stage: a reader thread parses the capture files and decodes frames into
/// batches; this thread runs the [`Pipeline`] over them in order. The pipeline sees the same
/// segments in the same order as a single thread would, so the output is identical.
pub fn analyze_until(
    mut opts: AnalyzeOptions,
    stop: Option<&AtomicBool>,
    sinks: &mut [&mut dyn Sink],
) -> Result<Totals, AppError> {
    let wants = sinks.wants();
    opts.tracker.records = wants.records;
    opts.tracker.session.activity_events |= wants.activity;
    let mut warnings = Vec::new();
    let inputs = open_in_order(&opts.files, &mut warnings)?;
    let files: Vec<String> = inputs.iter().map(|(name, _)| name.clone()).collect();
    let readers: Vec<OfflineReader> = inputs.into_iter().map(|(_, r)| r).collect();
    let settings = opts.settings();
    let mut pipeline = Pipeline::new(opts.tracker);
    for w in warnings {
        pipeline.warn(w);
    }
    show_warnings(&mut pipeline);
    let mut report = Summing(Report::new());
    let mut all: Vec<&mut dyn Sink> = vec![&mut report];
    for s in sinks.iter_mut() {
        all.push(&mut **s);
    }
    let sinks = &mut all[..];
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(IN_FLIGHT + 2);
    let progress = opts.progress;
    // Not joined: a reader waiting on a pipe must not keep a stopped run from reporting. It
    // ends at the end of its input or at its next batch once this side has gone.
    std::thread::spawn(move || read_and_decode(readers, progress, full_tx, empty_rx));
    let mut file = 0;
    pipeline.set_source(files.first().cloned().unwrap_or_default());
    let mut clock: Option<StreamClock> = None; // while live input is read, once it has a packet
    let mut order = TimeOrder::default();
    let mut interrupted = false;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            interrupted = true;
            break;
        }
        let wait = match (clock, pipeline.next_deadline()) {
            (Some(c), Some(deadline)) => {
                c.until(deadline, monotonic_now()).map_or(MAX_WAIT, |d| d.clamp(Duration::from_millis(1), MAX_WAIT))
            }
            _ => MAX_WAIT,
        };
        let mut batch = match full_rx.recv_timeout(wait) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                // Live input fell silent: its deadlines fire on the clock.
                if let Some(now) = clock.and_then(|c| c.at(monotonic_now())) {
                    pipeline.poll(now);
                    pipeline.drain(sinks)?;
                    flush(sinks)?;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut latest = None;
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
            order.packet(item.ts);
            latest = latest.max(Some(item.ts));
            pipeline.segment(item.ts, item.captured, item.orig_len, segment);
            pipeline.drain(sinks)?;
        }
        if batch.live {
            if let Some(ts) = latest {
                clock.get_or_insert(StreamClock::new(STREAM_GRACE)).arrived(ts, monotonic_now());
            }
            flush(sinks)?;
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
                if let Some(w) = order.file_end(&files[file]) {
                    pipeline.warn(w);
                }
                show_warnings(&mut pipeline);
                file += 1;
                clock = None;
                pipeline.set_source(files.get(file).cloned().unwrap_or_default());
            }
        }
        batch.items.clear();
        batch.bytes.clear();
        let _ = empty_tx.try_send(batch); // recycled; dropped if the pool is full
    }
    drop(full_rx); // the reader stops at its next batch
    if interrupted {
        if let Some(w) = files.get(file).and_then(|f| order.file_end(f)) {
            pipeline.warn(w);
        }
        pipeline.warn(
            "input cut short by a signal (SIGINT or SIGTERM): the report covers the packets read until then".into(),
        );
        show_warnings(&mut pipeline);
    }
    pipeline.finish(sinks)?;
    flush(sinks)?;
    let stats = CaptureStats { files, ..pipeline.stats() };
    let counters = pipeline.counters().clone();
    Ok(report.0.totals(stats, counters, settings))
}

fn flush(sinks: &mut [&mut dyn Sink]) -> std::io::Result<()> {
    sinks.iter_mut().try_for_each(|s| s.flush())
}

/// The summary of the records, as a sink beside the others.
struct Summing(Report);

impl Sink for Summing {
    fn on_event(&mut self, _event: &crate::session::Event) -> std::io::Result<()> {
        Ok(())
    }

    fn on_record(&mut self, record: &SessionRecord) -> std::io::Result<()> {
        self.0.add(record);
        Ok(())
    }
}

/// Opens every input (all before any is read, so a bad one fails the run at once). A file
/// named twice (the same device and inode) is read once; standard input likewise. Regular
/// files are put in the order of their first packets' timestamps (stable: files without a
/// packet last); with live input or standard input among them, the order given stands.
fn open_in_order(paths: &[PathBuf], warnings: &mut Vec<String>) -> Result<Vec<(String, OfflineReader)>, CaptureError> {
    let mut inputs: Vec<(PathBuf, String, OfflineReader)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut stdin = false;
    for path in paths {
        let name = path.display().to_string();
        if path == Path::new("-") && std::mem::replace(&mut stdin, true) {
            warnings.push("-: standard input given twice: read once".into());
            continue;
        }
        let reader = OfflineReader::open(path)?;
        if let Some(id) = reader.identity() {
            if let Some(first) = seen.get(&id) {
                let also = if *first == name { String::new() } else { format!(" (as {first})") };
                warnings.push(format!("{name}: the same file given twice{also}: read once"));
                continue;
            }
            seen.insert(id, name.clone());
        }
        inputs.push((path.clone(), name, reader));
    }
    // Standard input cannot be opened again to look at its first packet (a second read moves
    // the same file offset): with it, the order given stands.
    if inputs.len() > 1 && inputs.iter().all(|(path, _, r)| !r.is_live() && path != Path::new("-")) {
        let mut keyed = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            // Damage before the first packet shows when the file is read.
            let first = OfflineReader::first_timestamp(&input.0).ok().flatten();
            keyed.push(((first.is_none(), first, i), input));
        }
        keyed.sort_by_key(|(key, _)| *key);
        if keyed.windows(2).any(|w| w[0].0.2 > w[1].0.2) {
            let names: Vec<&str> = keyed.iter().map(|(_, (_, name, _))| name.as_str()).collect();
            warnings.push(format!(
                "capture files read in the order of their first packets, not as given: {}",
                names.join(", ")
            ));
        }
        inputs = keyed.into_iter().map(|(_, input)| input).collect();
    }
    Ok(inputs.into_iter().map(|(_, name, r)| (name, r)).collect())
}

/// Watches packet times across files: overlapping captures and timestamps going backwards.
#[derive(Default)]
struct TimeOrder {
    /// The latest timestamp so far (all files).
    latest: Option<Timestamp>,
    /// The current file has a packet.
    started: bool,
    /// The latest timestamp before the current file, when its first packet is earlier.
    overlaps: Option<Timestamp>,
    /// Packets of the current file stamped earlier than one before them.
    backwards: u64,
}

impl TimeOrder {
    fn packet(&mut self, ts: Timestamp) {
        if !std::mem::replace(&mut self.started, true) {
            self.overlaps = self.latest.filter(|latest| ts < *latest);
        }
        match self.latest {
            Some(latest) if ts < latest => self.backwards += 1,
            _ => self.latest = Some(ts),
        }
    }

    /// The warning for the file that ended, if any.
    fn file_end(&mut self, name: &str) -> Option<String> {
        let backwards = std::mem::take(&mut self.backwards);
        self.started = false;
        let consequence = "were taken as happening at the latest time; verdicts near them may be wrong";
        match self.overlaps.take() {
            Some(latest) => Some(format!(
                "{name} overlaps the capture before it (it starts before {latest:?}, the latest time read): \
                 its {backwards} packets stamped earlier {consequence}"
            )),
            None if backwards > 0 => Some(format!(
                "{name}: timestamps go backwards: {backwards} packets stamped earlier than one before them {consequence}"
            )),
            None => None,
        }
    }
}

/// Shows the pipeline's new warnings on stderr (they are in the report too).
fn show_warnings(pipeline: &mut Pipeline) {
    for w in pipeline.take_new_warnings() {
        eprintln!("mqtt-keepalive: warning: {w}");
    }
}

/// The reader stage: parses every file in order and decodes its frames into batches (each file
/// a [`Source`], the batch its [`Intake`]). Stops early if the tracker stage has gone (its
/// receiver dropped, e.g. on an output error). Live input's batches go as soon as the input
/// stalls, or [`FLUSH_AFTER`] after their first frame.
fn read_and_decode(readers: Vec<OfflineReader>, progress: bool, full: SyncSender<Batch>, empty: Receiver<Batch>) {
    // Files never wait on a clock: a read blocks until data comes, or the end.
    const BLOCK: Duration = Duration::MAX;
    let never = Timestamp::from_nanos(0); // files carry their own timestamps
    for mut reader in readers {
        let live = reader.is_live();
        let bar = progress.then(|| progress_bar(&reader)).flatten();
        let mut batch = empty.try_recv().unwrap_or_default();
        let mut first_read = None; // when the first frame of a live batch was read
        let end = loop {
            // Live input waits for data only with nothing to hand on, and is looked at frame
            // by frame (a batch goes at the latest FLUSH_AFTER after its first frame).
            let (wait, max) = match live {
                false => (BLOCK, BATCH - batch.items.len()),
                true if batch.items.is_empty() => (BLOCK, 1),
                true => (Duration::ZERO, 1),
            };
            let fed = match reader.feed(&mut batch, wait, never, max) {
                Ok(fed) => fed,
                Err(SourceError::File(e)) => break Err(e),
                Err(e) => {
                    break Err(CaptureError::Read { path: reader.path().into(), record: 0, detail: e.to_string() });
                }
            };
            let stalled = fed.items < max && !fed.end;
            let due = batch.items.len() == BATCH
                || (live && !batch.items.is_empty() && {
                    let now = monotonic_now();
                    stalled || now.saturating_duration_since(*first_read.get_or_insert(now)) >= FLUSH_AFTER
                });
            if due && !fed.end {
                if let Some(bar) = &bar {
                    bar.set_position(reader.position());
                }
                let next = empty.try_recv().unwrap_or_default();
                batch.live = live;
                if full.send(std::mem::replace(&mut batch, next)).is_err() {
                    return;
                }
                first_read = None;
            }
            if fed.end {
                break Ok(reader.truncated_tail());
            }
        };
        batch.file_end = Some(end);
        batch.live = live;
        if full.send(batch).is_err() {
            return;
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

/// The reader stage's batch is where a file hands its frames: each is decoded here, on the
/// reader's thread, its payload copied into the batch.
impl Intake for Batch {
    #[inline]
    fn frame(&mut self, ts: Timestamp, link: crate::link::LinkType, data: &[u8], orig_len: u32) {
        let start = self.bytes.len();
        let segment = decode::decode(link, data).map(|seg| {
            self.bytes.extend_from_slice(seg.payload);
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
        let payload = start..self.bytes.len();
        self.items.push(Item { ts, captured: data.len() as u32, orig_len, segment, payload });
    }

    /// Files hand frames only.
    fn stream(&mut self, _: Timestamp, _: crate::flow::FlowKey, _: crate::flow::Side, _: StreamInput<'_>) {}

    /// Files hand frames only.
    fn tcp(&mut self, _: Timestamp, _: crate::flow::FlowKey, _: TcpChange) {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Event, EventKind};

    /// Raises the stop flag at the first event (as Ctrl-C would, mid-file).
    struct StopAtFirst<'a>(&'a AtomicBool, u64);

    impl Sink for StopAtFirst<'_> {
        fn on_event(&mut self, e: &Event) -> std::io::Result<()> {
            self.0.store(true, Ordering::Relaxed);
            if let EventKind::SessionEnd { .. } = e.kind {
                self.1 += 1;
            }
            Ok(())
        }
    }

    #[test]
    fn a_stop_mid_file_ends_the_input_and_still_settles_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.pcap");
        let w =
            crate::synth::workload::Workload { sessions: 40, duration: Duration::from_secs(120), ..Default::default() };
        crate::synth::workload::write(&w, std::fs::File::create(&path).unwrap()).unwrap();
        let opts = || AnalyzeOptions {
            files: vec![path.clone()],
            tracker: TrackerConfig::default(),
            ports: vec![1883],
            progress: false,
        };
        let whole = analyze(opts(), &mut []).unwrap();
        let stop = AtomicBool::new(false);
        let mut sink = StopAtFirst(&stop, 0);
        let mut sessions = 0;
        let mut count = RecordSink(|_: &SessionRecord| sessions += 1);
        let cut = analyze_until(opts(), Some(&stop), &mut [&mut sink, &mut count]).unwrap();
        assert!(
            cut.capture.packets < whole.capture.packets,
            "{} of {} packets",
            cut.capture.packets,
            whole.capture.packets
        );
        assert!(cut.capture.packets > 0);
        assert!(sessions > 0 && sink.1 == sessions, "every session begun is settled and reported");
        assert!(
            cut.capture.warnings.iter().any(|w| w.contains("input cut short by a signal")),
            "{:?}",
            cut.capture.warnings
        );
        assert!(!whole.capture.warnings.iter().any(|w| w.contains("cut short")));
    }
}

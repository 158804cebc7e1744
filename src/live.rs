//! The live agent: capture threads running the [`Pipeline`] on live frames, with deadlines
//! fired on the clock, and the HTTP server on a small tokio runtime beside them.
//!
//! Contract: [`run`] binds the HTTP port and opens the capture before anything else (so a taken
//! port or a missing interface fails at once): a TPACKET_V3 ring (falling back, with a warning,
//! to one `recvmsg` per packet when the kernel refuses it), or libpcap. It then loops until
//! SIGINT or SIGTERM; each turn fires the deadlines due, hands out the events, and waits for
//! packets at most until the tracker's next deadline (rounded up, so it never spins), so a
//! silent client is reported expired when its deadline passes even if no packet ever comes, and
//! its expiry reaches the metrics before the loop waits again. Time below this loop is packet
//! time; this loop is the one place (with `time.rs`) that reads the real-time clock (the kernel
//! stamps packets with the same clock): it polls the pipeline [`GRACE`] behind it, so packets
//! still queued in the socket are not older than the tracker's clock, and hands it to the
//! capture for packets that carry no kernel timestamp. The sessions live in the tracker, on the
//! capture thread: `/sessions` requests are answered there between turns. With
//! `capture_threads` > 1, each thread has its own ring in one fanout group (the kernel keeps a
//! connection on one thread) and its own pipeline; the metrics are shared, `/sessions` is
//! merged from all threads, and the events interleave by whole lines. The eBPF source
//! (`--backend ebpf`, alone or beside packet capture) runs as one more such thread, on its own
//! ports, fed by the BPF ring buffer instead of frames. On a signal it stops the capture,
//! flushes the events and returns.

use crate::capture::LiveCaptureError;
use crate::capture::afpacket::AfPacket;
use crate::capture::ebpf::{EbpfError, EbpfOptions, EbpfSource};
use crate::capture::ring::{self, Ring, RingConfig};
use crate::capture::{LiveSource, Source, SourceError};
use crate::model::stats::SourceStats;
use crate::output::Outputs;
use crate::pipeline::Pipeline;
use crate::server::{self, AppState};
use crate::session::record::SessionRecord;
use crate::sink::Sink;
use crate::sink::metrics::Metrics;
use crate::sink::report::filter::SessionFilter;
use crate::sink::report::{RecentSessions, SessionsDocument, SessionsSelection};
use crate::time::Timestamp;
use crate::tracker::TrackerConfig;
use prometheus_client::registry::Registry;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How far behind the real-time clock the tracker is polled.
pub const GRACE: Duration = Duration::from_millis(100);
/// Longest wait for a packet before checking for signals and deadlines.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// Which capture implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    AfPacket,
    /// libpcap, through the `pcap` crate (cargo feature `libpcap`).
    Libpcap,
}

/// What `live` needs.
pub struct LiveOptions {
    pub interfaces: Vec<String>,
    /// The broker ports packet capture watches.
    pub ports: Vec<u16>,
    /// Packet capture (false: the eBPF source alone).
    pub packets: bool,
    /// The eBPF source, with its own ports (not captured as packets).
    pub ebpf: Option<EbpfOptions>,
    pub tracker: TrackerConfig,
    pub listen: SocketAddr,
    /// JSON-lines events to this file (`-`: standard output).
    pub events: Option<PathBuf>,
    pub client_id_labels: usize,
    pub keep_closed: usize,
    pub backend: Backend,
    /// A libpcap filter expression replacing the port filter (libpcap backend only).
    pub filter: Option<String>,
    /// Bytes of TPACKET_V3 ring per socket (AF_PACKET backend); 0: no ring, one `recvmsg` a
    /// packet.
    pub ring_size: usize,
    /// Capture threads, each with its own ring and pipeline, in one `PACKET_FANOUT_HASH` group
    /// (the kernel keeps each connection on one thread); 1: no fanout.
    pub capture_threads: usize,
}

impl From<SourceError> for LiveError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::File(e) => LiveError::File(e),
            SourceError::Live(e) => LiveError::Capture(e),
            SourceError::Ebpf(e) => LiveError::Ebpf(e),
        }
    }
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Bad configuration or environment (exit status 2).
    #[error("cannot listen on {addr}: {source} (is another agent running? choose another --listen)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Capture(#[from] LiveCaptureError),
    #[error("cannot open the events file {path}: {source}")]
    Events { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    KeyLog(#[from] crate::layer::tls::KeyLogError),
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    /// A capture file as a live source (never, today).
    #[error(transparent)]
    File(#[from] crate::capture::CaptureError),
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

impl LiveError {
    /// True for errors of setup (exit status 2) rather than of running (1).
    pub fn is_setup(&self) -> bool {
        match self {
            LiveError::Listen { .. } | LiveError::Events { .. } | LiveError::Unsupported(_) | LiveError::KeyLog(_) => {
                true
            }
            LiveError::Capture(e) => !matches!(e, LiveCaptureError::Os { what: "receive" | "poll", .. }),
            LiveError::Ebpf(e) => e.is_setup(),
            LiveError::File(_) => true,
            LiveError::Server(_) => false,
        }
    }
}

fn open_source(opts: &LiveOptions) -> Result<Box<dyn LiveSource + Send>, LiveError> {
    match opts.backend {
        Backend::AfPacket => {
            if opts.filter.is_some() {
                return Err(LiveError::Unsupported("--filter needs the libpcap backend (--backend libpcap)".into()));
            }
            if opts.ring_size == 0 {
                return Ok(Box::new(AfPacket::open(&opts.interfaces, &opts.ports)?));
            }
            let cfg = RingConfig { size: opts.ring_size, fanout: None };
            match Ring::open(&opts.interfaces, &opts.ports, cfg) {
                Ok(ring) => {
                    tracing::info!(ring_bytes = cfg.blocks() * ring::BLOCK_SIZE, "capturing through a TPACKET_V3 ring");
                    Ok(Box::new(ring))
                }
                Err(e @ (LiveCaptureError::NoSuchInterface { .. } | LiveCaptureError::Permission { .. })) => {
                    Err(e.into())
                }
                Err(e) => {
                    tracing::warn!("no TPACKET_V3 ring ({e}); capturing with one recvmsg per packet instead");
                    Ok(Box::new(AfPacket::open(&opts.interfaces, &opts.ports)?))
                }
            }
        }
        #[cfg(feature = "libpcap")]
        Backend::Libpcap => {
            Ok(Box::new(crate::capture::libpcap::Libpcap::open(&opts.interfaces, &opts.ports, opts.filter.as_deref())?))
        }
        #[cfg(not(feature = "libpcap"))]
        Backend::Libpcap => {
            Err(LiveError::Unsupported("this build has no libpcap backend (build with --features libpcap)".into()))
        }
    }
}

/// The capture sources, one per capture thread: with several, TPACKET_V3 rings in one fanout
/// group (no recvmsg fallback: that socket has no fanout here).
fn open_sources(opts: &LiveOptions) -> Result<Vec<Box<dyn LiveSource + Send>>, LiveError> {
    let n = opts.capture_threads.max(1);
    if n == 1 {
        return Ok(vec![open_source(opts)?]);
    }
    if opts.backend != Backend::AfPacket || opts.filter.is_some() || opts.ring_size == 0 {
        return Err(LiveError::Unsupported(
            "--capture-threads above 1 needs the afpacket backend with its ring (--ring-size above 0)".into(),
        ));
    }
    let group = (std::process::id() & 0xffff) as u16;
    let cfg = RingConfig { size: opts.ring_size, fanout: Some(group) };
    let mut sources: Vec<Box<dyn LiveSource + Send>> = Vec::new();
    for _ in 0..n {
        sources.push(Box::new(Ring::open(&opts.interfaces, &opts.ports, cfg)?));
    }
    tracing::info!(
        threads = n,
        ring_bytes = cfg.blocks() * ring::BLOCK_SIZE,
        "capturing through TPACKET_V3 rings in a fanout group"
    );
    Ok(sources)
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(opts: LiveOptions) -> Result<(), LiveError> {
    let listener =
        std::net::TcpListener::bind(opts.listen).map_err(|source| LiveError::Listen { addr: opts.listen, source })?;
    let mut events: Option<Box<dyn Write + Send>> = match &opts.events {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| LiveError::Events { path: p.clone(), source })?,
        )),
    };
    if !opts.packets && opts.ebpf.is_none() {
        return Err(LiveError::Unsupported("no capture backend chosen".into()));
    }
    if opts.packets && opts.interfaces.is_empty() {
        return Err(LiveError::Unsupported(
            "packet capture needs an interface (-i IFACE); with --backend ebpf alone none is needed".into(),
        ));
    }
    let mut cfg = opts.tracker.clone();
    cfg.session.activity_events = true;
    let mut sources: Vec<(Box<dyn Source + Send>, TrackerConfig)> = Vec::new();
    if opts.packets {
        let packet_sources = open_sources(&opts)?;
        let n = packet_sources.len();
        // The table limits are packet capture's: each thread has its share.
        let mut packet_cfg = cfg.clone();
        packet_cfg.ports = crate::flow::PortSet::new(&opts.ports);
        packet_cfg.max_flows = (cfg.max_flows / n).max(1);
        packet_cfg.max_buffered_total /= n;
        for source in packet_sources {
            sources.push((Box::new(source), packet_cfg.clone()));
        }
    }
    if let Some(ebpf) = &opts.ebpf {
        let mut ebpf_cfg = cfg.clone();
        ebpf_cfg.ports = crate::flow::PortSet::new(&ebpf.ports);
        ebpf_cfg.stream_transport = Some(crate::layer::Transport::Tls);
        let source = EbpfSource::open(ebpf.clone())?;
        sources.push((Box::new(source), ebpf_cfg));
    }
    let threads = sources.len();
    // Each thread's tracker numbers its sessions apart from the others': i, i + n, i + 2n, ...
    for (i, (_, cfg)) in sources.iter_mut().enumerate() {
        cfg.session_ids = crate::tracker::SessionIds { first: i as u64, step: threads as u64 };
    }

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, opts.client_id_labels);
    let (sessions, session_requests) = std::sync::mpsc::sync_channel(16);
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState { registry: Arc::new(registry), sessions, ready };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(LiveError::Server)?;
    }
    let server = spawn_server(listener, state, stop.clone())?;
    tracing::info!(
        interfaces = ?opts.interfaces,
        ports = ?opts.ports,
        ebpf_ports = ?opts.ebpf.as_ref().map(|e| &e.ports),
        listen = %opts.listen,
        "capturing"
    );

    let result = if threads == 1 {
        let (mut source, cfg) = sources.into_iter().next().expect("one source");
        let closed = RecentSessions::new(opts.keep_closed);
        let mut capture =
            CaptureLoop::new(cfg, live_outputs(metrics, events.as_mut()), closed, Timestamp::now_realtime());
        let result = capture.run(source.as_mut(), &session_requests, &stop);
        capture.finish(source.as_mut());
        result
    } else {
        let events = events.map(|w| Arc::new(std::sync::Mutex::new(w)));
        run_threads(sources, metrics, events, session_requests, opts.keep_closed, &stop)
    };
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    tracing::info!("stopped");
    result
}

/// Runs one capture thread per source (each with its own pipeline and tracker settings;
/// metrics shared), and a thread answering `/sessions` from all of them, until `stop`; the
/// first error stops all.
fn run_threads(
    sources: Vec<(Box<dyn Source + Send>, TrackerConfig)>,
    metrics: Metrics,
    events: Option<Arc<std::sync::Mutex<Box<dyn Write + Send>>>>,
    session_requests: SessionRequestRx,
    keep_closed: usize,
    stop: &AtomicBool,
) -> Result<(), LiveError> {
    let mut shares: Vec<Metrics> = (1..sources.len()).map(|_| metrics.share()).collect();
    shares.insert(0, metrics);
    std::thread::scope(|scope| {
        let mut asks = Vec::new();
        let mut handles = Vec::new();
        for (i, ((mut source, cfg), metrics)) in sources.into_iter().zip(shares).enumerate() {
            let (ask, requests) = std::sync::mpsc::sync_channel(1);
            asks.push(ask);
            let lines = events.clone().map(SharedLines::new);
            let thread = std::thread::Builder::new().name(format!("capture-{i}")).spawn_scoped(scope, move || {
                let sinks = live_outputs(metrics, lines);
                let closed = RecentSessions::new(keep_closed);
                let mut capture = CaptureLoop::new(cfg, sinks, closed, Timestamp::now_realtime());
                let result = capture.run(source.as_mut(), &requests, stop);
                capture.finish(source.as_mut());
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            });
            handles.push(thread.map_err(LiveError::Server)?);
        }
        scope.spawn(move || gather_sessions(&session_requests, &asks, keep_closed, stop));
        let mut result = Ok(());
        for h in handles {
            match h.join() {
                Ok(Err(e)) if result.is_ok() => result = Err(e),
                Err(panic) => std::panic::resume_unwind(panic),
                _ => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// A live loop's outputs, built as `analyze` builds its own: the metrics always; the events as
/// JSON lines while writing them works (a failure, such as a full disk, is logged once and the
/// agent goes on without them: metrics and `/sessions` are unaffected).
fn live_outputs<'w>(metrics: Metrics, events: Option<impl Write + 'w>) -> Outputs<'w> {
    let outputs = Outputs::new().metrics(metrics);
    match events {
        Some(w) => outputs.jsonl(std::io::BufWriter::new(w), SessionFilter::default()).lenient("events"),
        None => outputs,
    }
}

/// One capture thread's side of a shared events output: writes whole lines only, so the
/// threads' events interleave line by line (each thread's in time order).
struct SharedLines {
    out: Arc<std::sync::Mutex<Box<dyn Write + Send>>>,
    pending: Vec<u8>,
}

impl SharedLines {
    fn new(out: Arc<std::sync::Mutex<Box<dyn Write + Send>>>) -> Self {
        SharedLines { out, pending: Vec::new() }
    }

    fn write_lines(&mut self) -> std::io::Result<()> {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else { return Ok(()) };
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(&self.pending[..=end])?;
        self.pending.drain(..=end);
        Ok(())
    }
}

impl Write for SharedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.write_lines()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_lines()?;
        self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).flush()
    }
}

/// Answers `/sessions` for several capture threads: asks each for its document and merges them
/// (open counts added, the `limit` most severe open sessions of all, the most recently closed).
fn gather_sessions(
    requests: &SessionRequestRx,
    threads: &[std::sync::mpsc::SyncSender<SessionRequest>],
    keep_closed: usize,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let (selection, reply) = match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut docs = Vec::new();
        for t in threads {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if t.send((selection.clone(), tx)).is_ok()
                && let Ok(doc) = rx.blocking_recv()
            {
                docs.push(doc);
            }
        }
        let _ = reply.send(merge_sessions(docs, &selection, keep_closed));
    }
}

/// One document from several threads' documents (each already chosen by `selection`).
fn merge_sessions(docs: Vec<SessionsDocument>, selection: &SessionsSelection, keep_closed: usize) -> SessionsDocument {
    let open_total: u64 = docs.iter().map(|d| d.open).sum();
    let (open, mut closed): (Vec<_>, Vec<_>) =
        docs.into_iter().flat_map(|d| d.sessions).partition(|r| r.ended.is_none());
    closed.sort_by_key(|r| r.ended);
    let mut recent = RecentSessions::new(keep_closed);
    for r in closed {
        recent.push(r);
    }
    let mut doc = SessionsDocument::select(open, selection, &recent);
    doc.open = open_total;
    doc
}

/// Most packets taken in one turn of the loop (a turn waits once; the packets after the first
/// are the ones already queued, taken with a zero timeout).
const BATCH: usize = 256;

/// A `/sessions` request: which sessions to list, and where to send the document.
type SessionRequest = (SessionsSelection, tokio::sync::oneshot::Sender<SessionsDocument>);
/// What `/sessions` requests arrive on.
type SessionRequestRx = std::sync::mpsc::Receiver<SessionRequest>;

/// One capture thread's loop state: its pipeline, sinks, the recently closed sessions, and the
/// counts the housekeeping publishes.
struct CaptureLoop<'w> {
    pipeline: Pipeline,
    sinks: Outputs<'w>,
    closed: RecentSessions,
    housekeeping: Timestamp,
    /// Turns of the loop, each at most one wait: how often the thread woke up.
    wakeups: u64,
    /// The TLS key log clients append to (`--tls-keylog`), read again once a second.
    keylog: Option<Arc<crate::layer::tls::KeyLog>>,
}

impl<'w> CaptureLoop<'w> {
    fn new(cfg: TrackerConfig, sinks: Outputs<'w>, closed: RecentSessions, now: Timestamp) -> Self {
        let keylog = cfg.layers.keylog.clone();
        CaptureLoop { pipeline: Pipeline::new(cfg), sinks, closed, housekeeping: now, wakeups: 0, keylog }
    }

    /// One turn at real time `wall`: fires the deadlines up to `wall - GRACE`, hands out the
    /// events (those just fired, and those of the previous turn's packets), answers `/sessions`,
    /// once a second publishes the capture counts, then waits for a packet at most until the
    /// next deadline (rounded up: never a zero timeout) and takes it and the packets already
    /// queued behind it (at most [`BATCH`]). Nothing fired waits for a packet to be handed out.
    fn turn(&mut self, source: &mut dyn Source, wall: Timestamp, requests: &SessionRequestRx) -> Result<(), LiveError> {
        self.wakeups += 1;
        // Deadlines fire on the clock, packets or not: the tracker runs GRACE behind the
        // real-time clock, so packets still queued in the socket are not older than it.
        let poll_at = Timestamp::from_nanos(wall.as_nanos().saturating_sub(GRACE.as_nanos() as i64));
        // What a source already holds goes first (after a stall of this thread it may be older
        // than the grace: polled first, its times would be clamped to the clock's).
        source.take_held(&mut self.pipeline);
        self.pipeline.poll(poll_at);
        // Everything so far is handed out before waiting: the expiries just fired, and the
        // events of the previous turn's packets.
        self.hand_out();
        // `/sessions`: the records live in the tracker, on this thread.
        while let Ok((selection, reply)) = requests.try_recv() {
            let open = self.pipeline.tracker().open_records();
            let _ = reply.send(SessionsDocument::select(open, &selection, &self.closed));
        }
        if wall.since(self.housekeeping) >= Duration::from_secs(1) {
            self.housekeeping = wall;
            self.publish_counts(source);
            let _ = self.sinks.flush(); // a failing output is lenient: it logs and goes
            // Clients append their TLS secrets as they connect: read the new lines.
            if let Some(Err(e)) = self.keylog.as_ref().map(|k| k.refresh()) {
                tracing::warn!("{e}");
            }
        }
        let wait = wait_for(self.pipeline.next_deadline(), poll_at);
        source.feed(&mut self.pipeline, wait, wall, BATCH)?;
        Ok(())
    }

    /// The events so far to the sinks, the finished sessions' records to them and to the closed
    /// list.
    fn hand_out(&mut self) {
        let _ = self.pipeline.drain(&mut [&mut self.sinks, &mut Closed(&mut self.closed)]);
    }

    /// Turns until `stop` is set or the capture fails.
    fn run(
        &mut self,
        source: &mut dyn Source,
        requests: &SessionRequestRx,
        stop: &AtomicBool,
    ) -> Result<(), LiveError> {
        while !stop.load(Ordering::Relaxed) {
            self.turn(source, Timestamp::now_realtime(), requests)?;
        }
        Ok(())
    }

    /// Hands the source's figures so far to the sinks (the metrics count them).
    fn publish_counts(&mut self, source: &mut dyn Source) {
        let stats = SourceStats {
            packets: self.pipeline.packets(),
            kernel: source.stats(),
            ebpf: source.ebpf_stats(),
            flows_tracked: self.pipeline.tracker().live_connections(),
        };
        self.sinks.on_stats(&stats);
    }

    /// The loop stops: the last counts, and the events written out.
    fn finish(mut self, source: &mut dyn Source) {
        source.finish(&mut self.pipeline);
        self.hand_out();
        self.publish_counts(source);
        let _ = self.sinks.flush(); // a failing output is lenient: it logs
    }
}

/// The recently closed sessions (for `/sessions`), as a sink of records.
struct Closed<'a>(&'a mut RecentSessions);

impl Sink for Closed<'_> {
    fn on_event(&mut self, _event: &crate::session::Event) -> std::io::Result<()> {
        Ok(())
    }

    fn on_record(&mut self, record: &SessionRecord) -> std::io::Result<()> {
        self.0.push(record.clone());
        Ok(())
    }
}

/// How long to wait for a packet when the next deadline is `next` and the tracker's clock is
/// at `now`: until the deadline, rounded up to whole milliseconds (poll's unit) so the loop never
/// wakes before it and spins with a zero timeout, and at most [`MAX_WAIT`] (for signals).
fn wait_for(next: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(next) = next else { return MAX_WAIT };
    let nanos = next.since(now).as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_WAIT)
}

/// Serves HTTP on a small tokio runtime until `stop` is set.
fn spawn_server(
    listener: std::net::TcpListener,
    state: AppState,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, LiveError> {
    listener.set_nonblocking(true).map_err(LiveError::Server)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("http")
        .enable_all()
        .build()
        .map_err(LiveError::Server)?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("HTTP listener: {e}"),
                };
                let shutdown = async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                server::serve(listener, server::router(state), shutdown).await;
            });
        })
        .map_err(LiveError::Server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{KernelStats, LinkType, Packet};
    use crate::flow::Side;
    use crate::synth::{self, Capture, Encap, mqtt};
    use std::collections::VecDeque;

    /// A link with a fake clock: frames arrive at their timestamps; a wait moves the clock to
    /// the next arrival or by the timeout, whichever comes first.
    struct FakeLink {
        frames: VecDeque<(Timestamp, Vec<u8>)>,
        link: LinkType,
        clock: Timestamp,
        current: Vec<u8>,
        /// Turns that neither waited nor got a packet (a busy loop's signature).
        zero_waits: u64,
        waits: u64,
        delivered: u64,
        /// The clients' deadlines, and the metrics they must appear in before any wait once
        /// they are older than the tracker's clock (`wall - GRACE`).
        deadlines: Vec<Timestamp>,
        registry: Option<Arc<Registry>>,
        /// Waits that began with a fired expiry not yet in the metrics.
        late_waits: u64,
    }

    impl LiveSource for FakeLink {
        fn next_packet(&mut self, timeout: Duration, _now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
            let due = self.frames.front().is_some_and(|(at, _)| *at <= self.clock);
            if !due {
                if timeout.is_zero() {
                    return Ok(None);
                }
                self.waits += 1;
                self.check_reported();
                let until = Timestamp::from_nanos(self.clock.as_nanos() + timeout.as_nanos() as i64);
                match self.frames.front() {
                    Some((at, _)) if *at <= until => self.clock = *at,
                    _ => {
                        self.clock = until;
                        return Ok(None);
                    }
                }
            }
            let (ts, frame) = self.frames.pop_front().expect("a frame is due");
            self.current = frame;
            self.delivered += 1;
            Ok(Some(Packet { ts, link: self.link, data: &self.current, orig_len: self.current.len() as u32 }))
        }
        fn stats(&mut self) -> KernelStats {
            KernelStats::default()
        }
    }

    impl FakeLink {
        /// Counts a wait that begins while an expiry already fired is not in the metrics.
        fn check_reported(&mut self) {
            let Some(registry) = &self.registry else { return };
            let poll_at = Timestamp::from_nanos(self.clock.as_nanos() - GRACE.as_nanos() as i64);
            let fired = self.deadlines.iter().filter(|d| **d < poll_at).count();
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            let reported = text
                .lines()
                .find_map(|l| l.strip_prefix("mqtt_keepalive_expired_total{transport=\"tcp\"} "))
                .map_or(0, |n| n.parse::<usize>().unwrap());
            if reported < fired {
                self.late_waits += 1;
            }
        }

        fn new(cap: Capture) -> Self {
            let link = cap.encap.link_type();
            FakeLink {
                frames: cap.frames.into_iter().collect(),
                link,
                clock: Timestamp::from_nanos(0),
                current: Vec::new(),
                zero_waits: 0,
                waits: 0,
                delivered: 0,
                deadlines: Vec::new(),
                registry: None,
                late_waits: 0,
            }
        }
    }

    /// The spin of issue 16: a steady low packet rate and a thousand deadlines each well under a
    /// millisecond from a packet. The loop must wake once per packet arrival or deadline (plus
    /// the idle [`MAX_WAIT`] ticks), never wait with a zero timeout, and never begin a wait with
    /// a fired expiry not yet in the metrics (it would show up to [`MAX_WAIT`] late).
    #[test]
    fn the_loop_wakes_per_packet_or_deadline_and_never_spins() {
        let ms = |n: f64| Timestamp::from_nanos((n * 1e6) as i64);
        let clients = 1000;
        let mut cap = Capture::new(Encap::Ethernet);
        let broker: std::net::SocketAddr = "10.0.0.9:1883".parse().unwrap();
        let mut deadlines = Vec::new();
        for i in 0..clients {
            // A client every 10 ms (500 packets/s); it connects with keepalive 1 and falls silent:
            // its deadline (CONNECT + 1.5 s) lands a fraction of a millisecond from the handshake
            // or CONNECT of the client 150 places later.
            let at = 1000.0 + 10.0 * i as f64;
            let client = std::net::SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 40000));
            let mut c = synth::Conn::new(client, broker, 1, 2);
            c.handshake(&mut cap, ms(at));
            let connect_at = ms(at + 0.25 + 0.1 * (i % 7) as f64);
            c.send(&mut cap, connect_at, Side::Client, &mqtt::connect(4, 1, "c", false, None));
            deadlines.push(Timestamp::from_nanos(connect_at.as_nanos() + 1_500_000_000));
            c.send(&mut cap, ms(at + 0.95), Side::Broker, &mqtt::connack(0, None));
        }
        let arrivals = {
            let mut t: Vec<Timestamp> = cap.frames.iter().map(|(t, _)| *t).collect();
            t.dedup();
            t.len() as u64
        };
        let mut registry = Registry::default();
        let sinks = Outputs::new().metrics(Metrics::new(&mut registry, 0));
        let mut cfg = TrackerConfig::default();
        cfg.session.activity_events = true;
        let mut capture = CaptureLoop::new(cfg, sinks, RecentSessions::new(0), Timestamp::from_nanos(0));
        let registry = Arc::new(registry);
        let mut link = FakeLink::new(cap);
        link.deadlines = deadlines;
        link.registry = Some(registry.clone());
        let (_requests, rx) = std::sync::mpsc::sync_channel(1);
        let end = ms(1000.0 + 10.0 * clients as f64 + 3000.0);
        while link.clock < end {
            let before = (link.waits, link.delivered);
            let wall = link.clock;
            capture.turn(&mut link, wall, &rx).unwrap();
            if (link.waits, link.delivered) == before {
                link.zero_waits += 1; // a turn that neither waited nor had a packet: a spin
            }
            link.clock = Timestamp::from_nanos(link.clock.as_nanos() + 2_000); // a turn costs 2 us
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.lines().any(|l| l == format!("mqtt_keepalive_expired_total{{transport=\"tcp\"}} {clients}")),
            "every deadline fired"
        );
        let seconds = end.since(ms(0.0)).as_secs_f64();
        let idle_ticks = (seconds / MAX_WAIT.as_secs_f64()).ceil() as u64;
        assert!(
            capture.wakeups <= arrivals + clients as u64 + idle_ticks + 2,
            "{} wake-ups for {arrivals} packet arrivals, {clients} deadlines and {idle_ticks} idle ticks",
            capture.wakeups
        );
        assert_eq!(link.zero_waits, 0, "turns without a wait or a packet");
        assert_eq!(link.late_waits, 0, "waits begun with a fired expiry not yet in the metrics");
    }

    #[test]
    fn shared_lines_are_never_split() {
        #[derive(Clone, Default)]
        struct Out(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);
        impl Write for Out {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let shared: Arc<std::sync::Mutex<Box<dyn Write + Send>>> =
            Arc::new(std::sync::Mutex::new(Box::new(out.clone())));
        let (mut a, mut b) = (SharedLines::new(shared.clone()), SharedLines::new(shared));
        a.write_all(b"{\"a\":").unwrap();
        b.write_all(b"{\"b\":1}\n{\"b\"").unwrap();
        a.write_all(b"1}\n").unwrap();
        b.write_all(b":2}\n").unwrap();
        let writes = out.0.lock().unwrap().clone();
        assert_eq!(writes, [b"{\"b\":1}\n".to_vec(), b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()]);
    }

    #[test]
    fn the_wait_is_rounded_up_so_the_loop_never_spins() {
        let t = Timestamp::from_nanos;
        assert_eq!(wait_for(Some(t(1_000_000_001)), t(1_000_000_000)), Duration::from_millis(1), "1 ns -> 1 ms");
        assert_eq!(wait_for(Some(t(5)), t(5)), Duration::from_millis(1), "due now: not a zero timeout");
        assert_eq!(wait_for(Some(t(2_500_000)), t(0)), Duration::from_millis(3));
        assert_eq!(wait_for(Some(t(i64::MAX)), t(0)), MAX_WAIT);
        assert_eq!(wait_for(None, t(0)), MAX_WAIT);
    }
}

//! The live agent: capture -> decode -> tracker -> sinks on a capture thread, with deadlines
//! fired on the clock, and the HTTP server on a small tokio runtime beside it.
//!
//! Contract: [`run`] binds the HTTP port and opens the capture before anything else (so a taken
//! port or a missing interface fails at once), then loops until SIGINT or SIGTERM: it waits for
//! a packet at most until the tracker's next deadline, so a silent client is reported expired
//! when its deadline passes even if no packet ever comes. Time below this loop is packet time;
//! the loop reads the real-time clock (the kernel stamps packets with the same clock) and polls
//! the tracker [`GRACE`] behind it, so packets still queued in the socket are not older than the
//! tracker's clock. The sessions live in the tracker, on this thread: `/sessions` requests are
//! answered here between packets. On a signal it stops the capture, flushes the events and
//! returns.

use crate::capture::LiveSource;
use crate::capture::afpacket::AfPacket;
use crate::capture::LiveCaptureError;
use crate::decode;
use crate::server::{self, AppState};
use crate::sink::Sink;
use crate::sink::jsonl::JsonLines;
use crate::sink::metrics::Metrics;
use crate::sink::report::{RecentSessions, SessionsDocument};
use crate::time::Timestamp;
use crate::tracker::{Tracker, TrackerConfig};
use prometheus_client::registry::Registry;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    pub ports: Vec<u16>,
    pub tracker: TrackerConfig,
    pub listen: SocketAddr,
    /// JSON-lines events to this file (`-`: standard output).
    pub events: Option<PathBuf>,
    pub client_id_labels: usize,
    pub keep_closed: usize,
    pub backend: Backend,
    /// A libpcap filter expression replacing the port filter (libpcap backend only).
    pub filter: Option<String>,
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
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

impl LiveError {
    /// True for errors of setup (exit status 2) rather than of running (1).
    pub fn is_setup(&self) -> bool {
        match self {
            LiveError::Listen { .. } | LiveError::Events { .. } | LiveError::Unsupported(_) => true,
            LiveError::Capture(e) => !matches!(e, LiveCaptureError::Os { what: "receive" | "poll", .. }),
            LiveError::Server(_) => false,
        }
    }
}

fn open_source(opts: &LiveOptions) -> Result<Box<dyn LiveSource>, LiveError> {
    match opts.backend {
        Backend::AfPacket => {
            if opts.filter.is_some() {
                return Err(LiveError::Unsupported("--filter needs the libpcap backend (--backend libpcap)".into()));
            }
            Ok(Box::new(AfPacket::open(&opts.interfaces, &opts.ports)?))
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

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(mut opts: LiveOptions) -> Result<(), LiveError> {
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
    let mut source = open_source(&opts)?;

    let mut registry = Registry::default();
    let mut metrics = Metrics::new(&mut registry, opts.client_id_labels);
    let (sessions, session_requests) = std::sync::mpsc::sync_channel(16);
    let mut closed = RecentSessions::new(opts.keep_closed);
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState { registry: Arc::new(registry), sessions, ready };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(LiveError::Server)?;
    }
    let server = spawn_server(listener, state, stop.clone())?;
    tracing::info!(interfaces = ?opts.interfaces, ports = ?opts.ports, listen = %opts.listen, "capturing");

    opts.tracker.session.activity_events = true;
    let mut tracker = Tracker::new(opts.tracker);
    let mut lines = events.as_mut().map(|w| JsonLines::new(std::io::BufWriter::new(w)));
    let mut clock = Timestamp::now_realtime();
    let mut last_housekeeping = Instant::now();
    let mut captured = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let wall = Timestamp::now_realtime();
        let poll_at = Timestamp::from_nanos(wall.as_nanos() - GRACE.as_nanos() as i64).max(clock);
        let wait = tracker.next_deadline().map_or(MAX_WAIT, |d| d.since(poll_at).min(MAX_WAIT));
        match source.next_packet(wait) {
            Ok(Some(p)) => {
                captured += 1;
                clock = clock.max(p.ts);
                if let Ok(seg) = decode::decode(p.link, p.data) {
                    tracker.on_segment(clock, &seg);
                }
            }
            Ok(None) => {}
            Err(e) => break Err(LiveError::Capture(e)),
        }
        // Deadlines fire on the clock, packets or not.
        clock = clock.max(poll_at);
        tracker.poll(clock);
        for e in tracker.events().drain(..) {
            let _ = metrics.on_event(&e);
            if let Some(Err(err)) = lines.as_mut().map(|l| l.on_event(&e)) {
                events_failed(&mut lines, &err);
            }
        }
        tracker.finished().drain(..).for_each(|r| closed.push(r));
        // `/sessions`: the records live in the tracker, on this thread.
        while let Ok((limit, reply)) = session_requests.try_recv() {
            let _ = reply.send(SessionsDocument::new(tracker.open_records(), limit, &closed));
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            metrics.add_captured(std::mem::take(&mut captured));
            metrics.set_kernel_dropped(source.stats().dropped);
            metrics.set_flows_tracked(tracker.live_connections());
            if let Some(Err(err)) = lines.as_mut().map(|l| l.flush()) {
                events_failed(&mut lines, &err);
            }
        }
    };
    metrics.add_captured(captured);
    if let Some(l) = lines
        && let Err(err) = l.into_inner()
    {
        tracing::error!("writing events failed at shutdown: {err}");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    tracing::info!("stopped");
    result
}

/// Writing events failed (a full disk): say so once and go on without them; metrics and
/// /sessions are unaffected.
fn events_failed<W: Write>(lines: &mut Option<JsonLines<W>>, err: &std::io::Error) {
    tracing::error!("writing events failed, events are no longer written: {err}");
    *lines = None;
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

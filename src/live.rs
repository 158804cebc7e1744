//! The live agent: a capture thread running the [`Pipeline`] on live frames, with deadlines
//! fired on the clock, and the HTTP server on a small tokio runtime beside it.
//!
//! Contract: [`run`] binds the HTTP port and opens the capture before anything else (so a taken
//! port or a missing interface fails at once), then loops until SIGINT or SIGTERM: it waits for
//! a packet at most until the tracker's next deadline (rounded up, so it never spins), so a
//! silent client is reported expired when its deadline passes even if no packet ever comes.
//! Time below this loop is packet time; this loop is the one place (with `time.rs`) that reads
//! the real-time clock (the kernel stamps packets with the same clock): it polls the pipeline
//! [`GRACE`] behind it, so packets still queued in the socket are not older than the tracker's
//! clock, and hands it to the capture for packets that carry no kernel timestamp. The sessions live in the tracker, on this thread: `/sessions` requests are
//! answered here between packets. On a signal it stops the capture, flushes the events and
//! returns.

use crate::capture::LiveCaptureError;
use crate::capture::LiveSource;
use crate::capture::afpacket::AfPacket;
use crate::pipeline::Pipeline;
use crate::server::{self, AppState};
use crate::sink::Sink;
use crate::sink::jsonl::JsonLines;
use crate::sink::metrics::Metrics;
use crate::sink::report::{RecentSessions, SessionsDocument};
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
    #[error(transparent)]
    KeyLog(#[from] crate::layer::tls::KeyLogError),
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
    let metrics = Metrics::new(&mut registry, opts.client_id_labels);
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
    let keylog = opts.tracker.layers.keylog.clone();
    let mut pipeline = Pipeline::new(opts.tracker);
    let mut sinks = LiveSinks { metrics, lines: events.as_mut().map(|w| JsonLines::new(std::io::BufWriter::new(w))) };
    let mut housekeeping = Timestamp::now_realtime();
    let mut counted = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        // Deadlines fire on the clock, packets or not: the tracker runs GRACE behind the
        // real-time clock, so packets still queued in the socket are not older than it.
        let wall = Timestamp::now_realtime();
        let poll_at = Timestamp::from_nanos(wall.as_nanos().saturating_sub(GRACE.as_nanos() as i64));
        pipeline.poll(poll_at);
        let wait = wait_for(pipeline.next_deadline(), poll_at);
        match source.next_packet(wait, wall) {
            Ok(Some(p)) => pipeline.frame(p.ts, p.link, p.data, p.orig_len),
            Ok(None) => {}
            Err(e) => break Err(LiveError::Capture(e)),
        }
        let _ = pipeline.drain(&mut [&mut sinks], &mut |r| {
            closed.push(r);
            Ok(())
        });
        // `/sessions`: the records live in the tracker, on this thread.
        while let Ok((selection, reply)) = session_requests.try_recv() {
            let _ = reply.send(SessionsDocument::select(pipeline.tracker().open_records(), &selection, &closed));
        }
        if wall.since(housekeeping) >= Duration::from_secs(1) {
            housekeeping = wall;
            sinks.metrics.add_captured(pipeline.packets() - std::mem::replace(&mut counted, pipeline.packets()));
            sinks.metrics.set_kernel_dropped(source.stats().dropped);
            sinks.metrics.set_flows_tracked(pipeline.tracker().live_connections());
            sinks.flush();
            // Clients append their TLS secrets as they connect: read the new lines.
            if let Some(Err(e)) = keylog.as_ref().map(|k| k.refresh()) {
                tracing::warn!("{e}");
            }
        }
    };
    sinks.metrics.add_captured(pipeline.packets() - counted);
    if let Some(l) = sinks.lines
        && let Err(err) = l.into_inner()
    {
        tracing::error!("writing events failed at shutdown: {err}");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    tracing::info!("stopped");
    result
}

/// How long to wait for a packet when the next deadline is `next` and the tracker's clock is
/// at `now`: until the deadline, rounded up to whole milliseconds (poll's unit) so the loop never
/// wakes before it and spins with a zero timeout, and at most [`MAX_WAIT`] (for signals).
fn wait_for(next: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(next) = next else { return MAX_WAIT };
    let nanos = next.since(now).as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_WAIT)
}

/// The live outputs: metrics always; the JSON-lines events while writing them works (a
/// failure, such as a full disk, is logged once and the agent goes on without them: metrics
/// and `/sessions` are unaffected).
struct LiveSinks<W: Write> {
    metrics: Metrics,
    lines: Option<JsonLines<std::io::BufWriter<W>>>,
}

impl<W: Write> LiveSinks<W> {
    fn flush(&mut self) {
        if let Some(Err(err)) = self.lines.as_mut().map(|l| l.flush()) {
            self.events_failed(&err);
        }
    }

    fn events_failed(&mut self, err: &std::io::Error) {
        tracing::error!("writing events failed, events are no longer written: {err}");
        self.lines = None;
    }
}

impl<W: Write> Sink for LiveSinks<W> {
    fn on_event(&mut self, e: &crate::session::Event) -> std::io::Result<()> {
        let _ = self.metrics.on_event(e);
        if let Some(Err(err)) = self.lines.as_mut().map(|l| l.on_event(e)) {
            self.events_failed(&err);
        }
        Ok(())
    }
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

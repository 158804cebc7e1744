//! mqtt-keepalive: thin main. Parses the command line ([`cli`]), runs the command, and decides
//! the exit status in one place ([`exit_code`]): 0 analysed (findings are output, not errors)
//! or stopped by a signal (`analyze` then reports what it read, with a note on stderr); 1 runtime failure (an interface went away, output failed); 2
//! unusable input, bad usage or setup (no such interface, no permission, port taken, a broker
//! the probe cannot connect to). A closed output pipe (`| head`) ends the run quietly with
//! status 0. `probe` reports its findings in the status too: 3 when some deadline was not
//! enforced within tolerance, 130 when Ctrl-C cut the run short (the partial table is printed).

mod cli;

use clap::Parser;
use cli::{AnalyzeArgs, Cli, Command, Format};
use mqtt_keepalive::app::{self, AppError};
use mqtt_keepalive::live::LiveError;
use mqtt_keepalive::probe::ProbeError;
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::html::HtmlReport;
use mqtt_keepalive::sink::jsonl::JsonLines;
use mqtt_keepalive::sink::openmetrics::{Backfill, PacketSteps};
use mqtt_keepalive::sink::report::filter::SessionFilter;
use mqtt_keepalive::sink::report::timeline::Timeline;
use mqtt_keepalive::sink::report::totals::capture_warnings;
use mqtt_keepalive::sink::report::{AnalysisReport, JsonWriter, Report, SessionRecord, Totals, WorstSessions};
use std::cell::RefCell;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Analyze(#[from] AppError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Top(#[from] mqtt_keepalive::top::TopError),
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
    #[error("no session {0} in the capture (the session ids are the `id`s of `-f json`)")]
    NoSuchSession(u64),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Live(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let result = match cli.command {
        Command::Analyze(args) => run_analyze(&args).map(|()| 0),
        Command::Live(args) => args.options().and_then(mqtt_keepalive::live::run).map(|()| 0).map_err(Failure::from),
        Command::Probe(args) => run_probe(&args),
        Command::Top(args) => args
            .options()
            .map_err(|e| Failure::Analyze(e.into()))
            .and_then(|o| mqtt_keepalive::top::run(o).map_err(Failure::from))
            .map(|()| 0),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            let code = exit_code(&e);
            if code != 0 {
                eprintln!("mqtt-keepalive: {e}");
            }
            ExitCode::from(code)
        }
    }
}

/// The exit status of a failure (see the module doc).
fn exit_code(e: &Failure) -> u8 {
    match e {
        Failure::Analyze(AppError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Failure::Analyze(AppError::Input(_) | AppError::KeyLog(_)) => 2,
        Failure::Analyze(AppError::Output(_)) => 1,
        Failure::Live(e) if e.is_setup() => 2,
        Failure::Live(_) => 1,
        Failure::Probe(_) => 2,
        Failure::Top(_) => 2,
        Failure::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Failure::Output(_) => 1,
        Failure::NoSuchSession(_) => 2,
    }
}

fn run_analyze(args: &AnalyzeArgs) -> Result<(), Failure> {
    // SIGINT/SIGTERM end the input; the report of what was read is still written. A second
    // signal while the first is being handled ends the process at once (status 1).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    run_analyze_until(args, &stop)
}

fn run_analyze_until(args: &AnalyzeArgs, stop: &std::sync::atomic::AtomicBool) -> Result<(), Failure> {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let html = match args.format {
        Format::Jsonl => {
            // Only the events are output: records are not made, nor kept (unless for --html).
            let mut lines = JsonLines::with_filter(&mut out, args.filter());
            let mut opts = args.options().map_err(AppError::from)?;
            opts.tracker.records = false;
            let (totals, html) = analyze_plus_html(args, stop, opts, Some(&mut lines), None)?;
            lines.into_inner()?;
            html.map(|h| (totals, h))
        }
        Format::Json => {
            // Streamed: each session is written as it ends, so memory holds open sessions only.
            let opts = args.options().map_err(AppError::from)?;
            let settings = opts.settings();
            let mut json = JsonWriter::new(&mut out, &settings);
            let mut shown = Shown::new(args.filter());
            let (totals, html) = analyze_plus_html(
                args,
                stop,
                opts,
                None,
                Some(&mut |r| if shown.keep(&r) { json.session(&r) } else { Ok(()) }),
            )?;
            json.end(&shown.totals(totals.clone()))?;
            html.map(|h| (totals, h))
        }
        Format::Text => {
            let mut worst = WorstSessions::new(if args.top == 0 { usize::MAX } else { args.top });
            let mut shown = Shown::new(args.filter());
            let text = args.text_options();
            // --session: that session's timeline first, streamed as its events happen.
            let mut timeline = args.session.map(|id| Timeline::new(&mut out, id, text.zone));
            let (totals, html) = analyze_plus_html(
                args,
                stop,
                args.options().map_err(AppError::from)?,
                timeline.as_mut().map(|t| t as &mut dyn Sink),
                Some(&mut |r| {
                    if shown.keep(&r) {
                        worst.push(r);
                    }
                    Ok(())
                }),
            )?;
            if let Some(t) = timeline {
                if !t.found() {
                    return Err(Failure::NoSuchSession(t.session()));
                }
                writeln!(t.into_inner()?)?;
            }
            let report = AnalysisReport::new(shown.totals(totals.clone()), worst.into_sorted());
            out.write_all(report.render_text_with(&text).as_bytes())?;
            html.map(|h| (totals, h))
        }
        Format::Openmetrics => {
            // The live agent's metrics fold, sampled every --step of capture time.
            let mut opts = args.options().map_err(AppError::from)?;
            opts.tracker.session.activity_events = true; // as live: the silence-ratio histogram
            opts.tracker.records = false;
            let packets = PacketSteps::count(&args.files, args.step).map_err(AppError::from)?;
            let instance = args.instance.clone().unwrap_or_else(|| {
                let first = &args.files[0];
                first.file_name().map_or_else(|| first.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
            let mut backfill = Backfill::new(args.step, &instance, packets);
            let (totals, html) = analyze_plus_html(args, stop, opts, Some(&mut backfill), None)?;
            backfill.finish(totals.capture.last_ts, &mut out)?;
            html.map(|h| (totals, h))
        }
        Format::Html => {
            let (totals, html) = analyze_plus_html(args, stop, args.options().map_err(AppError::from)?, None, None)?;
            if let Some(h) = html {
                h.write(&totals, &mut out)?;
            }
            None
        }
    };
    out.flush()?;
    if let (Some((totals, page)), Some(path)) = (html, &args.html) {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = std::fs::File::create(path).map_err(named)?;
        page.write(&totals, BufWriter::new(file)).and_then(|mut w| w.flush()).map_err(named)?;
        eprintln!("mqtt-keepalive: wrote the HTML timeline to {}", path.display());
    }
    Ok(())
}

/// The sessions a filter lets through, and their summary.
struct Shown {
    filter: SessionFilter,
    matched: Report,
}

impl Shown {
    fn new(filter: SessionFilter) -> Self {
        Shown { filter, matched: Report::new() }
    }

    /// True when the session is shown (and counted in the summary).
    fn keep(&mut self, r: &SessionRecord) -> bool {
        let keep = self.filter.matches(r);
        if keep {
            self.matched.add(r);
        }
        keep
    }

    /// The figures with the summary of the sessions shown (all of them without a filter).
    fn totals(self, all: Totals) -> Totals {
        if self.filter.is_empty() {
            return all;
        }
        self.matched.totals(all.capture, all.tcp, all.settings)
    }
}

/// Runs the analysis with an optional extra sink and record consumer, and with the HTML
/// timeline's sink and records as well when the page is asked for (`--html` or `-f html`).
fn analyze_plus_html(
    args: &AnalyzeArgs,
    stop: &std::sync::atomic::AtomicBool,
    mut opts: app::AnalyzeOptions,
    sink: Option<&mut dyn Sink>,
    mut records: Option<&mut dyn FnMut(SessionRecord) -> io::Result<()>>,
) -> Result<(Totals, Option<HtmlReport>), AppError> {
    let html = (args.html.is_some() || args.format == Format::Html).then(|| RefCell::new(HtmlReport::new(args.top)));
    if html.is_some() {
        opts.tracker.session.activity_events = true; // each client packet, for the silences
        opts.tracker.records = true;
    }
    let mut html_sink = html.as_ref();
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    if let Some(s) = sink {
        sinks.push(s);
    }
    if let Some(h) = html_sink.as_mut() {
        sinks.push(h);
    }
    let totals = app::analyze_until(opts, Some(stop), &mut sinks, &mut |r| match (&html, records.as_mut()) {
        (Some(h), Some(f)) => {
            h.borrow_mut().record(r.clone());
            f(r)
        }
        (Some(h), None) => {
            h.borrow_mut().record(r);
            Ok(())
        }
        (None, Some(f)) => f(r),
        (None, None) => Ok(()),
    })?;
    drop(sinks);
    for w in capture_warnings(&totals.settings, &totals.capture, &totals.tcp) {
        eprintln!("mqtt-keepalive: warning: {w}");
    }
    Ok((totals, html.map(RefCell::into_inner)))
}

/// `probe`: runs the scenarios and prints the table; the status is the probe's finding (0 every
/// deadline enforced within tolerance, 3 not, 130 interrupted).
fn run_probe(args: &cli::ProbeArgs) -> Result<u8, Failure> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let opts = args.options()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let bar = (!args.no_progress && io::IsTerminal::is_terminal(&io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(opts.run_length().as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("probing {msg} [{bar:30}] {pos}/{len} s")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let target = opts.target.display();
    let result = mqtt_keepalive::probe::run(&opts, &stop, &mut |p| {
        if let Some(bar) = &bar {
            bar.set_position(p.elapsed.as_secs());
            bar.set_message(format!("{target}: {} of {} connections done", p.finished, p.scenarios));
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    let text = match args.format {
        cli::ProbeFormat::Text => report.render_text(),
        cli::ProbeFormat::Json => serde_json::to_string_pretty(&report).map_err(io::Error::from)? + "\n",
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush())?;
    Ok(if report.run.interrupted { 130 } else { report.exit_status() })
}

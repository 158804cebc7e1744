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
use mqtt_keepalive::output::html::PageTo;
use mqtt_keepalive::output::text::{NoSuchSession, TextOutput};
use mqtt_keepalive::output::{self, Outputs};
use mqtt_keepalive::probe::ProbeError;
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::report::totals::capture_warnings;
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
    let opts = args.options().map_err(AppError::from)?;
    let out = BufWriter::with_capacity(1 << 16, io::stdout());
    let outputs = Outputs::new();
    let outputs = match args.format {
        Format::Text => outputs.text(
            out,
            TextOutput { top: args.top, filter: args.filter(), text: args.text_options(), session: args.session },
        ),
        Format::Json => outputs.json(out, opts.settings(), args.filter()),
        Format::Jsonl => outputs.jsonl(out, args.filter()),
        Format::Openmetrics => {
            let packets = output::packet_steps(&args.files, args.step).map_err(AppError::from)?;
            let instance = args.instance.clone().unwrap_or_else(|| {
                let first = &args.files[0];
                first.file_name().map_or_else(|| first.display().to_string(), |n| n.to_string_lossy().into_owned())
            });
            outputs.openmetrics(out, args.step, &instance, packets)
        }
        Format::Html => outputs.html(PageTo::Writer(Box::new(out)), args.top),
    };
    let mut outputs = match &args.html {
        Some(path) => outputs.html(PageTo::File(path.clone()), args.top),
        None => outputs,
    };
    let totals = app::analyze_until(opts, Some(stop), &mut [&mut outputs])?;
    for w in capture_warnings(&totals.settings, &totals.capture, &totals.tcp) {
        eprintln!("mqtt-keepalive: warning: {w}");
    }
    // The text report says it among its own warnings; the other formats' readers see stderr.
    if args.format != Format::Text
        && let Some(w) = totals.summary.key_log_warning()
    {
        eprintln!("mqtt-keepalive: warning: {w}");
    }
    outputs.finish(&totals).map_err(|e| match e.get_ref().and_then(|e| e.downcast_ref::<NoSuchSession>()) {
        Some(NoSuchSession(id)) => Failure::NoSuchSession(*id),
        None => Failure::Output(e),
    })?;
    if let Some(path) = &args.html {
        eprintln!("mqtt-keepalive: wrote the HTML timeline to {}", path.display());
    }
    Ok(())
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

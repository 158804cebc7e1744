//! mqtt-keepalive: thin main. Parses the command line, runs it, maps errors to exit codes:
//! 0 analysed (findings are output, not errors) or stopped by a signal; 1 runtime failure (an
//! interface went away, output failed); 2 unusable input, bad usage or setup (no such interface,
//! no permission, port taken). A closed output pipe (`| head`) ends the run quietly with status 0.

use clap::Parser;
use mqtt_keepalive::app::{self, AppError};
use mqtt_keepalive::cli::{AnalyzeArgs, Cli, Command, Format};
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::jsonl::JsonLines;
use mqtt_keepalive::sink::report::{AnalysisReport, JsonWriter, WorstSessions};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

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
        Command::Analyze(args) => run_analyze(&args),
        Command::Live(args) => {
            return match mqtt_keepalive::live::run(args.options()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mqtt-keepalive: {e}");
                    ExitCode::from(if e.is_setup() { 2 } else { 1 })
                }
            };
        }
        Command::Probe(args) => return run_probe(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e @ AppError::Input(_)) => {
            eprintln!("mqtt-keepalive: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mqtt-keepalive: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_analyze(args: &AnalyzeArgs) -> Result<(), AppError> {
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    match args.format {
        Format::Jsonl => {
            // Only the events are output: records are not made, nor kept.
            let mut lines = JsonLines::new(&mut out);
            let mut opts = args.options();
            opts.tracker.records = false;
            app::analyze_streaming(opts, &mut [&mut lines as &mut dyn Sink], &mut |_| Ok(()))?;
            lines.into_inner()?;
        }
        Format::Json => {
            // Streamed: each session is written as it ends, so memory holds open sessions only.
            let opts = args.options();
            let settings = opts.settings();
            let mut json = JsonWriter::new(&mut out, &settings);
            let totals = app::analyze_streaming(opts, &mut [], &mut |r| json.session(&r))?;
            json.end(&totals)?;
        }
        Format::Text => {
            let mut worst = WorstSessions::new(if args.top == 0 { usize::MAX } else { args.top });
            let totals = app::analyze_streaming(args.options(), &mut [], &mut |r| {
                worst.push(r);
                Ok(())
            })?;
            let report = AnalysisReport::new(totals, worst.into_sorted());
            out.write_all(report.render_text().as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `probe`: 0 every deadline enforced on time, 3 some late/early/not enforced or a problem,
/// 2 could not connect (or bad arguments), 130 stopped by Ctrl-C (the partial table is printed).
fn run_probe(args: &mqtt_keepalive::cli::ProbeArgs) -> ExitCode {
    use mqtt_keepalive::cli::ProbeFormat;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let opts = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mqtt-keepalive: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    let bar = if !args.no_progress && io::IsTerminal::is_terminal(&io::stderr()) {
        let bar = indicatif::ProgressBar::new(opts.run_length().as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("probing {msg} [{bar:30}] {pos}/{len} s")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
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
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqtt-keepalive: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match args.format {
        ProbeFormat::Text => report.render_text(),
        ProbeFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("mqtt-keepalive: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("mqtt-keepalive: {e}");
        return ExitCode::from(1);
    }
    if report.run.interrupted { ExitCode::from(130) } else { ExitCode::from(report.exit_status()) }
}

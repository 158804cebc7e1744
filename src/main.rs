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

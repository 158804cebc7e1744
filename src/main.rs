//! mqtt-keepalive: thin main. Parses the command line ([`cli`]), runs the command, and decides
//! the exit status in one place ([`exit_code`]): 0 analysed (findings are output, not errors)
//! or stopped by a signal; 1 runtime failure (an interface went away, output failed); 2
//! unusable input, bad usage or setup (no such interface, no permission, port taken). A closed
//! output pipe (`| head`) ends the run quietly with status 0.

mod cli;

use clap::Parser;
use cli::{AnalyzeArgs, Cli, Command, Format};
use mqtt_keepalive::app::{self, AppError};
use mqtt_keepalive::live::LiveError;
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::jsonl::JsonLines;
use mqtt_keepalive::sink::report::{AnalysisReport, JsonWriter, WorstSessions};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Analyze(#[from] AppError),
    #[error(transparent)]
    Live(#[from] LiveError),
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
        Command::Analyze(args) => run_analyze(&args).map_err(Failure::from),
        Command::Live(args) => mqtt_keepalive::live::run(args.options()).map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
        Failure::Analyze(AppError::Input(_)) => 2,
        Failure::Analyze(AppError::Output(_)) => 1,
        Failure::Live(e) if e.is_setup() => 2,
        Failure::Live(_) => 1,
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

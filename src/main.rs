//! mqtt-keepalive: thin main. Parses the command line, runs it, maps errors to exit codes:
//! 0 analysed (findings are output, not errors), 1 runtime failure, 2 unusable input or usage.
//! A closed output pipe (`| head`) ends the run quietly with status 0.

use clap::Parser;
use mqtt_keepalive::app::{self, AppError};
use mqtt_keepalive::cli::{AnalyzeArgs, Cli, Command, Format};
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::jsonl::JsonLines;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => run_analyze(&args),
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
            let mut lines = JsonLines::new(&mut out);
            app::analyze(args.options(), &mut [&mut lines as &mut dyn Sink])?;
            lines.into_inner()?;
        }
        Format::Json => {
            let report = app::analyze(args.options(), &mut [])?;
            serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Format::Text => {
            let report = app::analyze(args.options(), &mut [])?;
            out.write_all(report.render_text().as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

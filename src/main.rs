//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use poetry_serve::config::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(err) => return fail(&err, ExitCode::from(2)),
    };
    match poetry_serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, ExitCode::FAILURE),
    }
}

/// Logs go to stderr, at the level RUST_LOG asks for (info by default), as text or JSON.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per event, its fields (peer, bytes, chunks, duration_ms, outcome...) at
        // the top level beside timestamp, level, target and threadName.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn fail(err: &anyhow::Error, code: ExitCode) -> ExitCode {
    eprintln!("poetry-serve: error: {err:#}");
    code
}

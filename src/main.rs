//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use poetry_serve::config::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match cli.validate() {
        Ok(config) => config,
        Err(err) => return fail(&err, ExitCode::from(2)),
    };
    match poetry_serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, ExitCode::FAILURE),
    }
}

/// Logs go to stderr, at the level RUST_LOG asks for (info by default).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true)
        .init();
}

fn fail(err: &anyhow::Error, code: ExitCode) -> ExitCode {
    eprintln!("poetry-serve: error: {err:#}");
    code
}

//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use poetry_serve::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    poetry_serve::logging::init(cli.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(err) => return fail(&err, ExitCode::from(2)),
    };
    match poetry_serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, ExitCode::FAILURE),
    }
}

/// Prints `err` as one line on stderr and returns `code`.
fn fail(err: &anyhow::Error, code: ExitCode) -> ExitCode {
    // A closed stderr leaves nowhere to say it; the exit status still tells.
    let _ = writeln!(std::io::stderr(), "poetry-serve: error: {err:#}");
    code
}

//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;

use poetry_serve::{Cli, Config, LogFormat, Refusal};

fn main() -> ExitCode {
    let (cli, origins) = match Cli::parse_args() {
        Ok(parsed) => parsed,
        Err(Refusal::BadValue(line)) => {
            let json = Cli::wants_json_logs().then_some(LogFormat::Json);
            return fail(&anyhow::anyhow!(line), ExitCode::from(2), json);
        }
        Err(Refusal::Usage(err)) => err.exit(), // usage errors with clap's hints; --help; --version
    };
    if let Some(what) = cli.generate {
        return match what.write(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.into(), ExitCode::FAILURE, None),
        };
    }
    let format = cli.log_format;
    poetry_serve::init_log(format);
    let logged = Some(format);
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(refused) => {
            let line = origins.refusal(&refused);
            return fail(&anyhow::anyhow!(line), ExitCode::from(2), logged);
        }
    };
    let result = poetry_serve::run(config);
    match result {
        Ok(()) => {
            poetry_serve::flush_log();
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err, ExitCode::FAILURE, logged),
    }
}

/// Says `err` in one line on stderr and returns `code`: as a JSON log event when the logs are
/// JSON (set up here if they were not yet), so that a log shipper reads it like any other;
/// otherwise as `poetry-serve: error: …`.
fn fail(err: &anyhow::Error, code: ExitCode, logs: Option<LogFormat>) -> ExitCode {
    match logs {
        Some(LogFormat::Json) => {
            // A refused command line fails before logging is set up.
            poetry_serve::init_log(LogFormat::Json);
            poetry_serve::log_fatal(err);
            poetry_serve::flush_log();
        }
        _ => {
            poetry_serve::flush_log();
            // A closed stderr leaves nowhere to say it; the exit status still tells.
            let _ = writeln!(std::io::stderr(), "poetry-serve: error: {err:#}");
        }
    }
    code
}

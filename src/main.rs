//! The `poetry-serve` command: read the command line, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use poetry_serve::cli::{self, Cli};
use poetry_serve::ops::{self, logging, logging::LogFormat};

fn main() -> ExitCode {
    let (cli, matches) = match Cli::read() {
        Ok(read) => read,
        Err(err) => match cli::refusal(&err) {
            Some(line) => return fail(&anyhow::anyhow!(line), 2, Cli::wants_json(&err)),
            None => err.exit(), // usage errors with clap's hints; --help; --version
        },
    };
    let json = cli.operations.log_format == LogFormat::Json;
    if let Some(what) = cli.operations.generate {
        let written = what.write(&mut std::io::stdout().lock());
        return written.map_or_else(|err| fail(&err.into(), 1, false), |()| ExitCode::SUCCESS);
    }
    if let Some(addr) = cli.operations.health_check {
        let healthy = ops::http::probe(addr, Duration::from_secs(2));
        return healthy.map_or_else(|err| fail(&err, 1, false), |()| ExitCode::SUCCESS);
    }
    logging::init(cli.operations.log_format);
    let options = match cli.options(&matches) {
        Ok(options) => options,
        Err(line) => return fail(&anyhow::anyhow!(line), 2, json),
    };
    let config = match cli.config(&matches) {
        Ok(config) => config,
        Err(line) => return fail(&anyhow::anyhow!(line), 2, json),
    };
    match ops::run(config, options) {
        Ok(()) => {
            logging::flush();
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err, 1, json),
    }
}

/// Says `err` in one line on stderr and returns the exit status `code`: as a JSON log event
/// when the logs are JSON, so that a log shipper reads it like any other; otherwise as
/// `poetry-serve: error: …`.
fn fail(err: &anyhow::Error, code: u8, json: bool) -> ExitCode {
    if json {
        logging::init(LogFormat::Json);
        logging::fatal(err);
    }
    logging::flush();
    if !json {
        // A closed stderr leaves nowhere to say it; the exit status still tells. Each mistake of
        // several is a line.
        for line in format!("{err:#}").lines() {
            let _ = writeln!(std::io::stderr(), "poetry-serve: error: {line}");
        }
    }
    ExitCode::from(code)
}

//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use poetry_serve::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value one of our parsers refused: one line, like every other bad value.
        Err(err) if err.kind() == ErrorKind::ValueValidation => {
            let text = err.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            let line = line.strip_prefix("error: ").unwrap_or(line);
            return fail(&anyhow::anyhow!("{line}"), ExitCode::from(2));
        }
        Err(err) => err.exit(), // usage errors with clap's hints; --help; --version
    };
    if let Some(what) = cli.generate {
        return match what.write(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.into(), ExitCode::FAILURE),
        };
    }
    poetry_serve::init_log(cli.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(err) => return fail(&err, ExitCode::from(2)),
    };
    let result = poetry_serve::run(config);
    poetry_serve::flush_log();
    match result {
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

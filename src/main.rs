//! The `poetry-serve` command: parse the flags, set up logging, run the server.

use std::io::Write;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use poetry_serve::Cli;

fn main() -> ExitCode {
    let matches = match Cli::definition().try_get_matches() {
        Ok(matches) => matches,
        // A value one of our parsers refused: one line, like every other bad value.
        Err(err) if is_bad_value(&err) => {
            let text = err.render().to_string();
            let mut lines = text.lines();
            let line = lines.next().unwrap_or_default();
            let line = line.strip_prefix("error: ").unwrap_or(line);
            // clap lists an enum's values on a line of their own; keep them on this one.
            let values = lines
                .next()
                .map(str::trim)
                .filter(|l| l.starts_with("[possible"));
            let line = [Some(line), values]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let err = in_variable(anyhow::anyhow!("{line}"), refused_variable(&err));
            return fail(&err, ExitCode::from(2));
        }
        Err(err) => err.exit(), // usage errors with clap's hints; --help; --version
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    if let Some(what) = cli.generate {
        return match what.write(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.into(), ExitCode::FAILURE),
        };
    }
    poetry_serve::init_log(cli.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(err) => {
            let variable = invalid_variable(&err, &matches);
            return fail(&in_variable(err, variable), ExitCode::from(2));
        }
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

/// Whether clap refused a value: one our parsers refused, or not one of an enum's.
fn is_bad_value(err: &clap::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    )
}

/// Names the environment variable a bad value came from, if it came from one, before the
/// line the same value gets on the command line.
fn in_variable(err: anyhow::Error, variable: Option<String>) -> anyhow::Error {
    match variable {
        Some(name) => err.context(format!("in ${name}")),
        None => err,
    }
}

/// The variable holding the value one of clap's parsers refused, if the value came from one.
/// clap reads the command line first and a variable only for an option absent from it, so
/// the value was the variable's if the command line alone has nothing to refuse.
fn refused_variable(err: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let mut command = Cli::definition();
    command.build(); // an argument shows as in the error ("--port <PORT>") once built
    let arg = command
        .get_arguments()
        .find(|arg| arg.to_string() == *shown)?;
    let name = arg.get_env()?;
    std::env::var_os(name)?;
    let without_env = Cli::definition()
        .mut_args(|arg| arg.env(None))
        .try_get_matches();
    let on_command_line = matches!(&without_env, Err(err) if is_bad_value(err));
    (!on_command_line).then(|| name.to_string_lossy().into_owned())
}

/// The variable holding the value `Cli::validate` refused (its errors begin "invalid
/// --option"), if the value came from one.
fn invalid_variable(err: &anyhow::Error, matches: &ArgMatches) -> Option<String> {
    let text = err.to_string();
    let long = text.strip_prefix("invalid --")?.split([' ', ':']).next()?;
    let command = Cli::definition();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))?;
    let from_env = matches.value_source(arg.get_id().as_str()) == Some(ValueSource::EnvVariable);
    from_env
        .then(|| arg.get_env())??
        .to_str()
        .map(str::to_owned)
}

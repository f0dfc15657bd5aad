//! Options from the environment: every option has a `POETRY_SERVE_<OPTION>` variable, which
//! `--help` names; a variable sets the option, the command line wins over it, and a bad value
//! in one gets the command line's one line, naming the variable.

use std::net::TcpStream;
use std::process::{Command, Output};

use poetry_serve::cli::Cli;

use crate::common::{BIN, Binary, BinaryPoem, LIMIT, Target, run_command, shipped};

/// The options that are actions rather than settings, and so have no variable.
const ACTIONS: [&str; 4] = ["help", "version", "generate", "health-check"];

/// The variable an option's long name calls for: `--max-per-source` → `POETRY_SERVE_MAX_PER_SOURCE`.
fn variable_for(long: &str) -> String {
    format!("POETRY_SERVE_{}", long.to_uppercase().replace('-', "_"))
}

/// Runs the binary with `args`, with only `env` set among the variables it reads.
fn run_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("POETRY_SERVE_") {
            command.env_remove(key);
        }
    }
    run_command(command.args(args).envs(env.iter().copied()))
}

/// Every option but the actions has its variable, named after it, and `--help` names each.
#[test]
fn every_option_has_a_variable_that_help_names() {
    let command = Cli::definition();
    let options: Vec<_> = command
        .get_arguments()
        .filter_map(|arg| Some((arg, arg.get_long()?)))
        .filter(|(_, long)| !ACTIONS.contains(long))
        .collect();
    assert!(!options.is_empty());
    let help = run_with(&[], &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for (arg, long) in options {
        let expected = variable_for(long);
        let env = arg.get_env().map(|name| name.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some(&*expected), "--{long}");
        assert!(
            help.contains(&format!("[env: {expected}]")),
            "--help does not name {expected}:\n{help}"
        );
    }
}

/// Variables set options: a comma-separated list of addresses listens on each, and a fault
/// and the pacing come from theirs.
#[test]
fn variables_set_options() {
    let poem = BinaryPoem::new(40);
    let server = Binary::launch(poem.path())
        .env("POETRY_SERVE_IFACE", "127.0.0.1,::1")
        .env("POETRY_SERVE_DELAY", "0")
        .env("POETRY_SERVE_CLOSE_AFTER", "25")
        .start();
    let second = server.listening_addrs(1)[0];
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(second.ip().to_string(), "::1");
    for addr in [server.addr, second] {
        let fetch = crate::common::fetch_at(addr);
        server.assert_bytes(&fetch.bytes, &poem.bytes[..25]);
    }
}

/// A switch takes 1/0, true/false, yes/no or on/off from its variable: 0 leaves it off, yes
/// turns it on, and anything else is refused in one line that names the variable.
#[test]
fn switches_take_yes_and_no() {
    let (path, bytes) = shipped("science.txt");
    let server =
        Binary::launch(&path).args(&["--delay", "0"]).env("POETRY_SERVE_REFUSE", "0").start();
    server.fetch_exact(&bytes);
    let server =
        Binary::launch(&path).args(&["--delay", "0"]).env("POETRY_SERVE_REFUSE", "yes").start();
    // The reset may come before the client has set its socket up: any error means refused.
    let fetch = TcpStream::connect_timeout(&server.addr, LIMIT).map(|stream| {
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        crate::common::read_to_end(stream, std::time::Instant::now())
    });
    assert!(
        fetch.as_ref().map_or(true, |f| f.bytes.is_empty() && f.ended.is_err()),
        "a refused connection gets no poem: {fetch:?}; stderr:\n{}",
        server.stderr()
    );
    let poem = path.display().to_string();
    let refused = run_with(&[("POETRY_SERVE_REUSE_PORT", "maybe")], &[&poem]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .starts_with("poetry-serve: error: in $POETRY_SERVE_REUSE_PORT: invalid value 'maybe'"),
        "{stderr}"
    );
}

/// The command line wins over a variable, even over one whose value would be refused.
#[test]
fn the_command_line_wins() {
    let poem = BinaryPoem::new(64);
    let server = Binary::launch(poem.path())
        .args(&["--iface", "127.0.0.1", "--delay", "0"])
        .env("POETRY_SERVE_IFACE", "::1")
        .env("POETRY_SERVE_DELAY", "2 fortnights")
        .env("POETRY_SERVE_PORT", "not a port") // the launch passes --port 0
        .start();
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    server.fetch_exact(&poem.bytes);
}

/// A bad value in a variable gets exactly the line the same value gets on the command line,
/// exit status 2 as there, with the variable named first: for values clap's parsers refuse,
/// values outside an enum, and values the validation step refuses.
#[test]
fn a_bad_value_names_its_variable() {
    let poem = shipped("science.txt").0.display().to_string();
    for (long, value) in [
        ("port", "65536"),
        ("workers", "0"),
        ("metrics", "nowhere"),
        ("order", "shuffled"),
        ("delay", "2 fortnights"),
        ("write-timeout", "0"),
        ("iface", "not an address"),
    ] {
        let flag = format!("--{long}={value}");
        let typed = run_with(&[], &[&flag, &poem]);
        let variable = variable_for(long);
        let from_env = run_with(&[(&variable, value)], &[&poem]);
        let typed_err = String::from_utf8_lossy(&typed.stderr);
        let env_err = String::from_utf8_lossy(&from_env.stderr);
        let story = format!("typed:\n{typed_err}\nfrom {variable}:\n{env_err}");
        assert_eq!(typed.status.code(), Some(2), "{story}");
        assert_eq!(from_env.status.code(), Some(2), "{story}");
        assert_eq!(env_err.lines().count(), 1, "one line: {story}");
        let line = typed_err
            .strip_prefix("poetry-serve: error: ")
            .unwrap_or_else(|| panic!("not our line: {story}"));
        assert_eq!(env_err, format!("poetry-serve: error: in ${variable}: {line}"), "{story}");
    }
}

/// A variable in the environment, any variable, leaves `--generate` working: the completion
/// script is printed whatever POETRY_SERVE_* says.
#[test]
fn variables_do_not_stop_generate() {
    // A --faults file that is not there is read only when serving.
    let env = [
        ("POETRY_SERVE_REUSE_PORT", "0"),
        ("POETRY_SERVE_DELAY", "0.1"),
        ("POETRY_SERVE_FAULTS", "/nonexistent/faults.toml"),
    ];
    for what in ["bash", "man"] {
        let output = run_with(&env, &["--generate", what]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "--generate {what}: {stderr}");
        assert!(output.stdout.len() > 1000, "--generate {what} printed little: {stderr}");
    }
}

/// A switch its variable sets off is not given at all: it conflicts with no other fault, and
/// a fault rate still needs a fault.
#[test]
fn a_switch_set_off_counts_as_absent() {
    let (path, bytes) = shipped("science.txt");
    let server = Binary::launch(&path)
        .args(&["--delay", "0", "--close-after", "10"])
        .env("POETRY_SERVE_REFUSE", "0")
        .start();
    server.fetch_exact(&bytes[..10]);
    let poem = path.display().to_string();
    let output = run_with(&[("POETRY_SERVE_REFUSE", "off")], &["--fault-rate", "0.5", &poem]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("required") && stderr.contains("--refuse>"), "{stderr}");
}

//! The command line as a user types and reads it: host names and several addresses, durations
//! with units, the help, and the shell completion and man page made from the same definition.

use std::time::Duration;

use clap::CommandFactory;
use poetry_serve::cli::Cli;

use crate::common::{Binary, BinaryPoem, Target, run};

/// `--iface localhost` and the bracketed `[::1]` listen where they say, and the short
/// options do what the long ones do.
#[test]
fn host_names_and_brackets_are_listened_on() {
    let poem = BinaryPoem::new(64);
    let server = Binary::launch(poem.path()).args(&["-i", "localhost", "-d", "0"]).start();
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    server.fetch_exact(&poem.bytes);
    let server = Binary::launch(poem.path()).args(&["--iface", "[::1]", "--delay", "0"]).start();
    assert_eq!(server.addr.ip().to_string(), "::1");
    server.fetch_exact(&poem.bytes);
}

/// --iface given twice listens on both addresses, on one port, with one listening line each.
#[test]
fn several_addresses_each_get_a_listening_line() {
    let poem = BinaryPoem::new(64);
    let server = Binary::launch(poem.path())
        .args(&["--iface", "127.0.0.1", "--iface", "::1", "--delay", "0"])
        .start();
    let second = server.listening_addrs(1)[0];
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(second.ip().to_string(), "::1");
    assert_eq!(server.addr.port(), second.port(), "port 0 picks one port for both");
    for _ in 0..3 {
        for addr in [server.addr, second] {
            let fetch = crate::common::fetch_at(addr);
            server.assert_bytes(&fetch.bytes, &poem.bytes);
        }
    }
}

/// A delay with a unit paces as its value says: 3 chunks at 300ms take 0.6 s.
#[test]
fn delays_take_units() {
    let poem = BinaryPoem::new(30);
    let server =
        Binary::launch(poem.path()).args(&["--num-bytes", "10", "--delay", "300ms"]).start();
    let fetch = server.fetch_exact(&poem.bytes);
    assert!(fetch.elapsed >= Duration::from_millis(600), "{:?}", fetch.elapsed);
}

/// --write-timeout starts, and serves, at both ends of its range: 1ms and 24 days.
#[test]
fn write_timeouts_at_both_ends_of_their_range_start() {
    let poem = BinaryPoem::new(64);
    for timeout in ["1ms", "24d"] {
        let server =
            Binary::launch(poem.path()).args(&["--write-timeout", timeout, "--delay", "0"]).start();
        server.fetch_exact(&poem.bytes);
    }
}

/// --help names every option and --version the version, both on stdout with success.
#[test]
fn help_and_version() {
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in ["--port", "--iface", "--num-bytes", "--delay", "--workers", "--write-timeout"] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// -h gives one line per option and --help the detail, both within 80 columns; --help ends
/// with the signals, RUST_LOG and the exit statuses, and names each option's variable.
#[test]
fn help_fits_80_columns_and_tells_what_a_daemon_should() {
    let short = String::from_utf8(run(&["-h"]).stdout).unwrap();
    let long = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for (name, text) in [("-h", &short), ("--help", &long)] {
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest <= 80, "{name} has a line of {widest} columns:\n{text}");
    }
    // In -h, every line of an option list ("Options:", or a heading of its own) is an
    // option: none wraps onto a second line.
    let options: Vec<&str> = short
        .split("\n\n")
        .filter_map(|block| {
            let (heading, lines) = block.split_once('\n')?;
            let listed =
                heading.ends_with(':') && !heading.starts_with(' ') && heading != "Arguments:";
            listed.then_some(lines)
        })
        .flat_map(str::lines)
        .collect();
    for line in &options {
        assert!(line.trim_start().starts_with('-'), "wrapped: {line:?}\n{short}");
    }
    assert_eq!(options.len(), listed_options(), "{short}");
    for needle in [
        "SIGHUP",
        "SIGUSR1",
        "SIGTERM",
        "RUST_LOG",
        "Exit status",
        "128+N",
        "--log-format <FORMAT>",
        "--delay <DURATION>",
        "-p, --port <PORT>",
        "-i, --iface <ADDR>",
        "-d, --delay",
        "-n, --num-bytes",
        "-w, --workers",
        "[env: POETRY_SERVE_MAX_PER_SOURCE]",
        "[env: POETRY_SERVE_POEMS]",
    ] {
        assert!(long.contains(needle), "--help lacks {needle:?}:\n{long}");
    }
    assert!(!short.contains("[env:"), "-h names no variable:\n{short}");
}

/// How many options the help lists, from the command's definition: every argument that is
/// not positional and not hidden, with the -h and -V that clap adds when it builds the command.
fn listed_options() -> usize {
    let mut command = Cli::command();
    command.build();
    command.get_arguments().filter(|arg| !arg.is_positional() && !arg.is_hide_set()).count()
}

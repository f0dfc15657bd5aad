//! The command line as a user types and reads it: host names and several addresses, durations
//! with units, the help, and the shell completion and man page made from the same definition.

use std::process::Command;
use std::time::Duration;

use clap::CommandFactory;
use poetry_serve::Cli;

use crate::common::{BIN, BinaryPoem, Server, require, run, run_command};

/// `--iface localhost` and the bracketed `[::1]` listen where they say, and the short
/// options do what the long ones do.
#[test]
fn host_names_and_brackets_are_listened_on() {
    let poem = BinaryPoem::new(64);
    let server = Server::launch(poem.path())
        .args(&["-i", "localhost", "-d", "0"])
        .start();
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    server.fetch_exact(&poem.bytes);
    let server = Server::launch(poem.path())
        .args(&["--iface", "[::1]", "--delay", "0"])
        .start();
    assert_eq!(server.addr.ip().to_string(), "::1");
    server.fetch_exact(&poem.bytes);
}

/// --iface given twice listens on both addresses, on one port, with one listening line each.
#[test]
fn several_addresses_each_get_a_listening_line() {
    let poem = BinaryPoem::new(64);
    let server = Server::launch(poem.path())
        .args(&["--iface", "127.0.0.1", "--iface", "::1", "--delay", "0"])
        .start();
    let second = server.listening_addrs(1)[0];
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(second.ip().to_string(), "::1");
    assert_eq!(
        server.addr.port(),
        second.port(),
        "port 0 picks one port for both"
    );
    for _ in 0..3 {
        for addr in [server.addr, second] {
            let fetch = server.fetch_from(addr);
            server.assert_bytes(&fetch.bytes, &poem.bytes);
        }
    }
}

/// A delay with a unit paces as its value says: 3 chunks at 300ms take 0.6 s.
#[test]
fn delays_take_units() {
    let poem = BinaryPoem::new(30);
    let server = Server::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "300ms"])
        .start();
    let fetch = server.fetch_exact(&poem.bytes);
    assert!(
        fetch.elapsed >= Duration::from_millis(600),
        "{:?}",
        fetch.elapsed
    );
    assert!(
        fetch.elapsed < Duration::from_secs(5),
        "{:?}",
        fetch.elapsed
    );
}

/// --write-timeout starts, and serves, at both ends of its range: 1ms and 24 days.
#[test]
fn write_timeouts_at_both_ends_of_their_range_start() {
    let poem = BinaryPoem::new(64);
    for timeout in ["1ms", "24d"] {
        let server = Server::launch(poem.path())
            .args(&["--write-timeout", timeout, "--delay", "0"])
            .start();
        server.fetch_exact(&poem.bytes);
    }
}

/// bash loads the generated completion script, and it completes a flag.
#[test]
#[cfg_attr(missing_bash, ignore = "bash is not installed")]
fn bash_completes_flags() {
    require("bash");
    let script = format!(
        r#"source <("{BIN}" --generate bash) || exit 3
        COMP_WORDS=(poetry-serve --max-per-s)
        COMP_CWORD=1
        COMP_LINE="poetry-serve --max-per-s"
        COMP_POINT=${{#COMP_LINE}}
        # The function the script registered for the command, as bash would find it.
        complete=$(complete -p poetry-serve) || exit 4
        function=$(printf '%s' "$complete" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
        "$function" poetry-serve --max-per-s poetry-serve
        printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let output = run_command(Command::new("bash").args(["-c", &script]));
    let completed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(completed.trim(), "--max-per-source", "{output:?}");
}

/// `man -l` renders the generated man page, with the options and the exit statuses.
#[test]
#[cfg_attr(missing_man, ignore = "man is not installed (Debian's man-db)")]
fn man_renders_the_page() {
    require("man");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("poetry-serve.1");
    let generated = run_command(Command::new(BIN).args(["--generate", "man"]));
    assert!(generated.status.success(), "{generated:?}");
    std::fs::write(&page, &generated.stdout).unwrap();
    let rendered = run_command(
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"),
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    // man may hyphenate or use typographic hyphens; compare without them.
    let plain = text.replace(['\u{2010}', '\u{2212}'], "-");
    for needle in [
        "poetry-serve [OPTIONS] POEM...",
        "poetry-serve --generate WHAT",
        "--max-per-source <N>",
        "--delay <DURATION>",
        "SIGHUP",
    ] {
        assert!(plain.contains(needle), "{needle}:\n{text}");
    }
    // The sections a man page reader looks for, in order, and no catch-all EXTRA.
    let sections: Vec<&str> = plain
        .lines()
        .filter(|line| line.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(str::trim_end)
        .collect();
    let expected = [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SIGNALS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ];
    let found: Vec<&str> = sections
        .iter()
        .copied()
        .filter(|s| expected.contains(s) || *s == "EXTRA")
        .collect();
    assert_eq!(found, expected, "{text}");
    // Readable at 80 columns: man wraps the text, and no line runs past the width.
    let wide: Vec<&str> = plain.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "lines over 80 columns: {wide:#?}");
}

/// --help names every option and --version the version, both on stdout with success.
#[test]
fn help_and_version() {
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--port",
        "--iface",
        "--num-bytes",
        "--delay",
        "--workers",
        "--write-timeout",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// -h gives one line per option and --help the detail, both within 80 columns; --help ends
/// with the signals, RUST_LOG and the exit statuses, and the placeholders match the README.
#[test]
fn help_fits_80_columns_and_tells_what_a_daemon_should() {
    let short = String::from_utf8(run(&["-h"]).stdout).unwrap();
    let long = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for (name, text) in [("-h", &short), ("--help", &long)] {
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= 80,
            "{name} has a line of {widest} columns:\n{text}"
        );
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
        assert!(
            line.trim_start().starts_with('-'),
            "wrapped: {line:?}\n{short}"
        );
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
    ] {
        assert!(long.contains(needle), "--help lacks {needle:?}:\n{long}");
    }
    assert_help_shows_the_readme_options(&long);
}

/// The options the README's usage table names, cell by cell: each as its short flag (if the
/// cell gives one), its long name and its placeholder (if it shows one). "`-p`, `--port
/// <PORT>`" is `(Some('p'), "port", Some("PORT"))`.
fn readme_options() -> Vec<(Option<char>, String, Option<String>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let usage = readme
        .split("\n## Usage\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Usage section in README.md");
    let mut options = Vec::new();
    for row in usage.lines().filter(|line| line.starts_with("| `")) {
        let cell = row.split(" | ").next().unwrap_or_default();
        let mut short = None;
        for (n, code) in cell.split('`').enumerate() {
            if n % 2 == 0 {
                continue; // outside backquotes
            }
            if let Some(long) = code.strip_prefix("--") {
                let (name, placeholder) = match long.split_once(' ') {
                    Some((name, value)) => {
                        let value = value.strip_prefix('<').and_then(|v| v.strip_suffix('>'));
                        (name, Some(value.expect("a <PLACEHOLDER>").to_string()))
                    }
                    None => (long, None),
                };
                options.push((short.take(), name.to_string(), placeholder));
            } else if let Some(flag) = code.strip_prefix('-') {
                short = flag.chars().next();
            }
        }
    }
    options
}

/// Every option the README's usage table shows is defined as it shows it (short flag and
/// placeholder) and shown so in `help`, and every option defined is in the table.
fn assert_help_shows_the_readme_options(help: &str) {
    let readme = readme_options();
    let mut command = Cli::command();
    command.build();
    for (short, long, placeholder) in &readme {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long.as_str()))
            .unwrap_or_else(|| panic!("the README shows --{long}, which is not defined"));
        assert_eq!(arg.get_short(), *short, "--{long}'s short flag");
        if let Some(placeholder) = placeholder {
            let defined: Vec<String> = arg
                .get_value_names()
                .unwrap_or_default()
                .iter()
                .map(|name| name.to_string())
                .collect();
            assert_eq!(defined, [placeholder.as_str()], "--{long}'s placeholder");
        }
        let shown = match (short, placeholder) {
            (Some(short), Some(value)) => format!("-{short}, --{long} <{value}>"),
            (Some(short), None) => format!("-{short}, --{long}"),
            (None, Some(value)) => format!("--{long} <{value}>"),
            (None, None) => format!("--{long}"),
        };
        assert!(help.contains(&shown), "--help lacks {shown:?}:\n{help}");
    }
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        if let Some(long) = arg.get_long() {
            assert!(
                readme.iter().any(|(_, name, _)| name == long),
                "--{long} is missing from the README's usage table"
            );
        }
    }
}

/// How many options the help lists, from the command's definition: every argument that is
/// not positional and not hidden, with the -h and -V that clap adds when it builds the command.
fn listed_options() -> usize {
    let mut command = Cli::command();
    command.build();
    command
        .get_arguments()
        .filter(|arg| !arg.is_positional() && !arg.is_hide_set())
        .count()
}

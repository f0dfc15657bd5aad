//! The command line as a user types it: host names and several addresses, durations with
//! units, and the shell completion and man page made from the same definition.

use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, Server, binary_bytes, have, poem_file, run_command};

/// `--iface localhost` and the bracketed `[::1]` listen where they say, and the short
/// options do what the long ones do.
#[test]
fn host_names_and_brackets_are_listened_on() {
    let bytes = binary_bytes(64);
    let poem = poem_file(&bytes);
    let server = Server::launch(poem.path())
        .args(&["-i", "localhost", "-d", "0"])
        .start();
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    server.fetch_exact(&bytes);
    let server = Server::launch(poem.path())
        .args(&["--iface", "[::1]", "--delay", "0"])
        .start();
    assert_eq!(server.addr.ip().to_string(), "::1");
    server.fetch_exact(&bytes);
}

/// --iface given twice listens on both addresses, on one port, with one listening line each.
#[test]
fn several_addresses_each_get_a_listening_line() {
    let bytes = binary_bytes(64);
    let poem = poem_file(&bytes);
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
            server.assert_bytes(&fetch.bytes, &bytes);
        }
    }
}

/// A delay with a unit paces as its value says: 3 chunks at 300ms take 0.6 s.
#[test]
fn delays_take_units() {
    let bytes = binary_bytes(30);
    let poem = poem_file(&bytes);
    let server = Server::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "300ms"])
        .start();
    let fetch = server.fetch_exact(&bytes);
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
    let bytes = binary_bytes(64);
    let poem = poem_file(&bytes);
    for timeout in ["1ms", "24d"] {
        let server = Server::launch(poem.path())
            .args(&["--write-timeout", timeout, "--delay", "0"])
            .start();
        server.fetch_exact(&bytes);
    }
}

/// bash loads the generated completion script, and it completes a flag.
#[test]
fn bash_completes_flags() {
    if !have("bash") {
        return;
    }
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
fn man_renders_the_page() {
    if !have("man") {
        return;
    }
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
    for needle in [
        "poetry-serve",
        "--max-per-source",
        "--delay",
        "SIGHUP",
        "Exit status",
    ] {
        // man may hyphenate or use typographic hyphens; compare without them.
        let plain = text.replace(['\u{2010}', '\u{2212}'], "-");
        assert!(plain.contains(needle), "{needle}:\n{text}");
    }
}

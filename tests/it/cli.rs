//! Bad input: each mistake gets one clear line on stderr and a non-zero exit, before anything
//! listens, without a panic.

use std::net::TcpListener;
use std::process::{Command, Output};

use crate::common::{BIN, run, run_command, shipped};

/// Asserts that the run failed cleanly and that stderr mentions every one of `needles`.
#[track_caller]
fn assert_refused(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let story = format!(
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(!output.status.success(), "must fail: {story}");
    assert!(
        output.status.code().is_some(),
        "must exit, not die of a signal: {story}"
    );
    assert!(stdout.is_empty(), "nothing may listen: {story}");
    assert!(!stderr.contains("panicked"), "no panic: {story}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr must mention {needle:?}: {story}"
        );
    }
}

/// Asserts the exit status: 1 for a server that cannot start, 2 for a bad command line.
#[track_caller]
fn assert_code(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
}

/// Asserts a refusal of our own (not clap's usage error) is exactly one line.
#[track_caller]
fn assert_one_line(output: &Output, needles: &[&str]) {
    assert_refused(output, needles);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line only:\n{stderr}"
    );
    assert!(stderr.starts_with("poetry-serve: error: "), "{stderr}");
}

fn science() -> String {
    shipped("science.txt").0.display().to_string()
}

/// A poem path that does not exist is named in the error.
#[test]
fn missing_poem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.txt").display().to_string();
    let output = run(&["--port", "0", &path]);
    assert_one_line(&output, &["cannot open poem", &path, "No such file"]);
    assert_code(&output, 1);
}

/// A directory with no poems in it (no .txt files) is refused.
#[test]
fn directory_without_poems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a poem").unwrap();
    let output = run(&["--port", "0", &dir.path().display().to_string()]);
    assert_one_line(&output, &["holds no poems"]);
}

/// One bad poem among good ones is refused, by name.
#[test]
fn one_bad_poem_among_several() {
    let output = run(&["--port", "0", &science(), "/no/such/poem.txt"]);
    assert_one_line(&output, &["cannot open poem '/no/such/poem.txt'"]);
}

/// --order and --log-format take only their documented values.
#[test]
fn unknown_order_or_log_format() {
    assert_refused(
        &run(&["--order", "alphabetical", &science()]),
        &["alphabetical", "sequential", "random"],
    );
    assert_refused(
        &run(&["--log-format", "xml", &science()]),
        &["xml", "text", "json"],
    );
}

/// A FIFO is refused without blocking on opening it.
#[test]
fn fifo_poem() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let output = run(&["--port", "0", &fifo.display().to_string()]);
    assert_one_line(&output, &["is a FIFO"]);
}

/// A device is refused.
#[test]
fn device_poem() {
    assert_one_line(&run(&["--port", "0", "/dev/null"]), &["is a device"]);
}

/// A file the server may not read is refused. Root reads everything, so as root the server
/// runs without the capabilities that let it.
#[test]
fn unreadable_poem() {
    let poem = crate::common::poem_file(b"secret");
    let path = poem.path().display().to_string();
    std::fs::set_permissions(
        poem.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // SAFETY: geteuid has no preconditions.
    let output = if unsafe { libc::geteuid() } == 0 {
        run_command(
            Command::new("setpriv")
                .args(["--bounding-set=-dac_override,-dac_read_search"])
                .args([
                    "--inh-caps=-dac_override,-dac_read_search",
                    BIN,
                    "--port",
                    "0",
                ])
                .arg(&path),
        )
    } else {
        run(&["--port", "0", &path])
    };
    assert_one_line(&output, &["cannot open poem", "Permission denied"]);
}

/// A port another socket listens on is refused.
#[test]
fn port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run(&["--port", &port, &science()]);
    assert_one_line(&output, &["cannot listen on 127.0.0.1:", &port, "in use"]);
    assert_code(&output, 1);
}

/// A host name is not an address.
#[test]
fn iface_not_an_ip() {
    let output = run(&["--iface", "localhost", &science()]);
    assert_one_line(
        &output,
        &["--iface 'localhost'", "not an IPv4 or IPv6 address"],
    );
}

/// An address this machine does not have (TEST-NET-1, never routed) cannot be bound.
#[test]
fn iface_not_local() {
    let output = run(&["--iface", "192.0.2.1", "--port", "0", &science()]);
    assert_one_line(
        &output,
        &["cannot listen on 192.0.2.1:0", "assign requested address"],
    );
}

/// Ports stop at 65535.
#[test]
fn port_too_large() {
    assert_refused(&run(&["--port", "65536", &science()]), &["65536", "--port"]);
}

/// Zero-byte chunks make no sense.
#[test]
fn zero_num_bytes() {
    let output = run(&["--num-bytes", "0", &science()]);
    assert_one_line(&output, &["--num-bytes 0"]);
    assert_code(&output, 2);
}

/// Delays must be finite and not negative, in either spelling of the flag.
#[test]
fn bad_delays() {
    for args in [
        ["--delay", "-1"],
        ["--delay", "-0.5"],
        ["--delay", "NaN"],
        ["--delay", "inf"],
    ] {
        assert_one_line(&run(&[args[0], args[1], &science()]), &["invalid --delay"]);
    }
    assert_one_line(
        &run(&["--delay=-inf", &science()]),
        &["invalid --delay -inf"],
    );
}

/// A pool needs a worker.
#[test]
fn zero_workers() {
    assert_one_line(&run(&["--workers", "0", &science()]), &["--workers 0"]);
}

/// A zero write timeout would drop every client at once.
#[test]
fn zero_write_timeout() {
    assert_one_line(
        &run(&["--write-timeout", "0", &science()]),
        &["--write-timeout 0"],
    );
}

/// Unknown options get clap's usage error.
#[test]
fn unknown_option() {
    let output = run(&["--bogus", &science()]);
    assert_refused(&output, &["--bogus", "Usage"]);
    assert_code(&output, 2);
}

/// The poem is required.
#[test]
fn no_poem() {
    assert_refused(&run(&["--port", "0"]), &["<POEM>", "required"]);
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

/// A worker count the system cannot start gets one line naming the limit and status 1, not
/// an abort halfway through starting threads. Ten million fits nowhere; twenty thousand does
/// not fit the usual vm.max_map_count of 65530 (four maps a thread).
#[test]
fn impossible_worker_counts() {
    let output = run(&["--port", "0", "--workers", "10000000", &science()]);
    assert_one_line(&output, &["--workers 10000000 does not fit", "raise"]);
    assert_code(&output, 1);
    let max_maps: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max_maps < 20_000 * 4 {
        let output = run(&["--port", "0", "--workers", "20000", &science()]);
        assert_one_line(
            &output,
            &["--workers 20000 does not fit", "vm.max_map_count"],
        );
        assert_code(&output, 1);
    }
}

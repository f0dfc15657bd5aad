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
    let story = format!("status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(!output.status.success(), "must fail: {story}");
    assert!(output.status.code().is_some(), "must exit, not die of a signal: {story}");
    assert!(stdout.is_empty(), "nothing may listen: {story}");
    assert!(!stderr.contains("panicked"), "no panic: {story}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr must mention {needle:?}: {story}");
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
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line only:\n{stderr}");
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

/// --order and --log-format take only their documented values, refused in the one line every
/// bad value gets, with the possible values on it.
#[test]
fn unknown_order_or_log_format() {
    let order = run(&["--order", "alphabetical", &science()]);
    assert_one_line(
        &order,
        &[
            "invalid value 'alphabetical' for '--order <ORDER>'",
            "[possible values: sequential, random]",
        ],
    );
    assert_code(&order, 2);
    assert_one_line(&run(&["--log-format", "xml", &science()]), &["xml", "text", "json"]);
}

/// A jitter over half the delay would let two deadlines swap: refused, naming the bound.
#[test]
fn jitter_over_half_the_delay() {
    let output = run(&["--delay", "0.3", "--jitter", "1", &science()]);
    assert_one_line(
        &output,
        &["invalid value '1s' for '--jitter <DURATION>'", "at most half of --delay (150ms)"],
    );
    assert_code(&output, 2);
}

/// With --log-format json, a start-up error is a JSON event too, for a log shipper, even with
/// RUST_LOG=off: a bad value of clap's, a check across options, and a server that cannot start;
/// with the format given before the bad value, after it, or in its variable.
#[test]
fn start_up_errors_are_json_under_json_logs() {
    let science = science();
    for (args, says) in [
        (vec!["--port", "-1"], "invalid value '-1' for '--port <PORT>'"),
        (vec!["--workers", "0"], "invalid value '0' for '--workers <N>'"),
        (vec!["--delay", "0.3", "--jitter", "1"], "at most half of --delay"),
        (vec!["--iface", "192.0.2.1", "--port", "0"], "cannot listen on"),
    ] {
        let json = ["--log-format", "json"];
        let before = [&json[..], &args, &[science.as_str()]].concat();
        let after = [&args[..], &json, &[science.as_str()]].concat();
        let mut from_env = Command::new(BIN);
        from_env
            .args([&args[..], &[science.as_str()]].concat())
            .env("POETRY_SERVE_LOG_FORMAT", "json");
        let mut typed_before = Command::new(BIN);
        typed_before.args(&before);
        let mut typed_after = Command::new(BIN);
        typed_after.args(&after);
        for mut command in [typed_before, typed_after, from_env] {
            let output = run_command(command.env("RUST_LOG", "off"));
            assert_one_json_error(&output, says);
        }
    }
}

/// Asserts that the run failed with one JSON error event on stderr saying `says`.
fn assert_one_json_error(output: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let event: serde_json::Value = serde_json::from_str(lines.last().unwrap_or(&""))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stderr}"));
    assert_eq!(event["level"], "ERROR", "{stderr}");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{says}: {stderr}");
    for line in lines {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{stderr}");
    }
}

/// A FIFO is refused without blocking on opening it.
#[test]
fn fifo_poem() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    crate::common::mkfifo(&fifo);
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
    std::fs::set_permissions(poem.path(), std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .unwrap();
    // SAFETY: geteuid has no preconditions.
    let output = if unsafe { libc::geteuid() } == 0 {
        run_command(
            Command::new("setpriv")
                .args(["--bounding-set=-dac_override,-dac_read_search"])
                .args(["--inh-caps=-dac_override,-dac_read_search", BIN, "--port", "0"])
                .arg(&path),
        )
    } else {
        run(&["--port", "0", &path])
    };
    assert_one_line(&output, &["cannot open poem", "Permission denied"]);
}

/// A worker count the system cannot start gets one line naming the limit to raise and exit
/// status 1, before anything listens, not an abort halfway through starting threads. Ten
/// million fits nowhere; one more than vm.max_map_count's memory maps allow (two a thread, its
/// stack and guard page) fits nowhere either, whatever the machine's setting, and that limit is
/// checked first.
#[test]
fn impossible_worker_counts() {
    let output = run(&["--port", "0", "--workers", "10000000", &science()]);
    assert_one_line(&output, &["--workers 10000000 does not fit", "raise"]);
    assert_code(&output, 1);
    let max_maps: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("read vm.max_map_count")
        .trim()
        .parse()
        .expect("vm.max_map_count is a number");
    let workers = (max_maps / 2 + 1).to_string();
    let output = run(&["--port", "0", "--workers", &workers, &science()]);
    assert_one_line(
        &output,
        &[&format!("--workers {workers} does not fit"), "raise vm.max_map_count"],
    );
    assert_code(&output, 1);
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

/// Something that is neither an address nor a host name is refused, naming the flag.
#[test]
fn iface_neither_address_nor_name() {
    let output = run(&["--iface", "not an address", &science()]);
    assert_one_line(
        &output,
        &["invalid value 'not an address' for '--iface <ADDR>'", "not an IP address or host name"],
    );
    assert_code(&output, 2);
}

/// An address this machine does not have (TEST-NET-1, never routed) cannot be bound.
#[test]
fn iface_not_local() {
    let output = run(&["--iface", "192.0.2.1", "--port", "0", &science()]);
    assert_one_line(&output, &["cannot listen on 192.0.2.1:0", "assign requested address"]);
}

/// Ports stop at 65535.
#[test]
fn port_too_large() {
    let output = run(&["--port", "65536", &science()]);
    assert_one_line(&output, &["65536", "--port", "is not in 0..=65535"]);
}

/// Zero-byte chunks, an empty pool and negative numbers are refused in one line that says
/// what the flag takes, not with clap's tip to write `-- -1`.
#[test]
fn numbers_out_of_range() {
    for (flag, value, says) in [
        ("--num-bytes", "0", "must be at least 1"),
        ("--workers", "-3", "must be at least 1"),
        ("--port", "-1", "-1 is not in 0..=65535"),
        ("-p", "-1", "-1 is not in 0..=65535"),
        ("--max-per-source", "-5", "-5 is not in 0..=4294967295"),
    ] {
        let output = run(&[flag, value, &science()]);
        assert_one_line(&output, &[&format!("invalid value '{value}'"), says]);
        assert_code(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("tip:"), "clap's unhelpful tip: {stderr}");
    }
}

/// Durations must be finite, not negative, at most a year (--write-timeout: from 1 ms to 24
/// days, what the kernel holds), and not so small they round to zero; each flag says its
/// range in one wording, whatever end was missed.
#[test]
fn bad_durations() {
    for (flag, value) in [
        ("--delay", "-1"),
        ("--delay", "NaN"),
        ("--delay", "inf"),
        ("--delay", "1e-12"),
        ("--delay", "2 fortnights"),
        ("--delay=-inf", ""),
    ] {
        let args: Vec<&str> = [flag, value].into_iter().filter(|a| !a.is_empty()).collect();
        let output = run(&[&args[..], &[science().as_str()]].concat());
        let value = flag.strip_prefix("--delay=").unwrap_or(value);
        assert_one_line(
            &output,
            &[
                &format!("invalid value '{value}' for '--delay <DURATION>'"),
                "must be 0 or from 1ns to 1 year",
            ],
        );
        assert_code(&output, 2);
    }
    // Below 1 ms the kernel's time-outs would be off; from 25 days on it refuses them.
    for value in ["0", "400d", "-3", "1ns", "999us", "25d"] {
        let output = run(&["--write-timeout", value, &science()]);
        let says = format!(
            "invalid value '{value}' for '--write-timeout <DURATION>': must be from 1ms to 24 days"
        );
        assert_one_line(&output, &[&says]);
        assert_code(&output, 2);
    }
}

/// A negative duration given as its own argument (`--close-delay -1`) is a value, refused in
/// one line like any other, not an unknown option.
#[test]
fn every_duration_refuses_a_negative_in_one_line() {
    use clap::CommandFactory;
    let command = poetry_serve::cli::Cli::command();
    let durations = (command.get_arguments())
        .filter(|arg| arg.get_value_names().is_some_and(|names| names[0] == "DURATION"));
    let mut checked = 0;
    for arg in durations {
        let long = arg.get_long().expect("a long name");
        let output = run(&[&format!("--{long}"), "-1", &science()]);
        assert_one_line(&output, &[&format!("invalid value '-1' for '--{long} <DURATION>'")]);
        assert_code(&output, 2);
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} durations checked");
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

/// Every option that takes a value refuses a bad one in the one line every bad value gets,
/// naming the option, whatever parser it has; the list comes from the command's definition.
/// `--trace` takes any name for the file it creates: [`unwritable_trace`] checks its refusal.
#[test]
fn every_option_refuses_a_bad_value_in_one_line() {
    use clap::CommandFactory;
    let command = poetry_serve::cli::Cli::command();
    let mut checked = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !arg.get_action().takes_values() || ["generate", "trace"].contains(&long) {
            continue;
        }
        let output = run(&[&format!("--{long}=!bad"), &science()]);
        assert_one_line(&output, &[&format!("invalid value '!bad' for '--{long}")]);
        assert_code(&output, 2);
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} options checked");
    // The switches take their value from a variable only.
    let output = run_command(Command::new(BIN).arg(science()).env("POETRY_SERVE_REFUSE", "maybe"));
    assert_one_line(&output, &["in $POETRY_SERVE_REFUSE: invalid value 'maybe' for '--refuse'"]);
}

/// A worker count the open-file limit cannot hold a descriptor each for, and a reserve besides,
/// gets one line naming the limit and exit status 1; a soft limit below what is needed is
/// raised to the hard one.
#[test]
fn workers_beyond_the_open_file_limit() {
    let poem = science();
    let refused = run_command(
        Command::new("sh").args(["-c", "ulimit -n 200 && exec \"$0\" \"$@\"", BIN]).args([
            "--port",
            "0",
            "--workers",
            "300",
            &poem,
        ]),
    );
    assert_one_line(&refused, &["--workers 300 does not fit", "open-file limit is 200"]);
    assert_code(&refused, 1);
    let raised = crate::common::Binary::launch(std::path::Path::new(&poem))
        .args(&["--workers", "300", "--log-format", "json"])
        .under_shell("ulimit -Sn 200 && ulimit -Hn 1000")
        .start();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", raised.pid())).unwrap();
    let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    assert!(files.split_whitespace().filter(|w| *w == "1000").count() == 2, "{files}");
}

/// A worker count the address space limit (`ulimit -v`) cannot hold gets one line naming the
/// limit and exit status 1, not an abort halfway through starting threads.
#[test]
fn workers_beyond_the_address_space_limit() {
    let poem = science();
    let refused = run_command(
        Command::new("sh").args(["-c", "ulimit -v 204800 && exec \"$0\" \"$@\"", BIN]).args([
            "--port",
            "0",
            "--workers",
            "2000",
            &poem,
        ]),
    );
    assert_one_line(&refused, &["--workers 2000 does not fit", "address space limit"]);
    assert_code(&refused, 1);
}

/// Threads of every process whose real user is `uid`, as RLIMIT_NPROC counts them.
fn threads_of(uid: u32) -> u64 {
    let statuses = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok());
    let field = |status: &str, name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    (statuses.filter(|s| field(s, "Uid:") == Some(u64::from(uid))))
        .filter_map(|s| field(&s, "Threads:"))
        .sum()
}

/// A worker count the process limit (`ulimit -u`, which counts every thread of the user) cannot
/// hold gets one line naming it, rather than a failure to start the threads. As root, which
/// that limit does not bind, the server runs as nobody.
#[test]
fn workers_beyond_the_process_limit() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut command = Command::new("prlimit");
    let poem = science();
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", BIN];
    // Room for the server's own threads (main, the log's), not for 100 workers.
    let limit = match uid {
        0 => 64,
        _ => threads_of(uid) + 70,
    };
    command.arg(format!("--nproc={limit}:{limit}"));
    match uid {
        0 => command.arg("setpriv").args(nobody),
        _ => command.arg(BIN),
    };
    let refused = run_command(command.args(["--port", "0", "--workers", "100", &poem]));
    assert_one_line(
        &refused,
        &["--workers 100 does not fit", &format!("ulimit -u) is {limit}"), "LimitNPROC="],
    );
    assert_code(&refused, 1);
}

/// A worker count the control group's task limit (pids.max, which systemd's TasksMax= sets)
/// cannot hold gets one line naming it. Needs root and a pids controller to make a group in;
/// without them it fails under CI=true and says why otherwise.
#[test]
fn workers_beyond_the_control_groups_task_limit() {
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids");
    let hierarchy = match v1.join("cgroup.procs").exists() {
        true => v1.to_path_buf(),
        false => std::path::PathBuf::from("/sys/fs/cgroup"),
    };
    let group = hierarchy.join(format!("poetry-serve-test-{}", std::process::id()));
    let made =
        std::fs::create_dir(&group).and_then(|()| std::fs::write(group.join("pids.max"), "100"));
    if let Err(err) = made {
        let _ = std::fs::remove_dir(&group);
        let why = format!("cannot make a control group with a task limit ({err})");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("not checked: {why}");
        return;
    }
    let script = format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", group.display());
    let refused = run_command(Command::new("sh").args([
        "-c",
        &script,
        BIN,
        "--port",
        "0",
        "--workers",
        "200",
        &science(),
    ]));
    std::fs::remove_dir(&group).expect("remove the test's control group");
    assert_one_line(
        &refused,
        &["--workers 200 does not fit", "allows 100 tasks (pids.max)", "TasksMax="],
    );
    assert_code(&refused, 1);
}

/// An empty path, for a poem or the trace, is refused as empty, not with an empty list of
/// possible values.
#[test]
fn empty_paths() {
    let poem = run(&["--port", "0", ""]);
    assert_one_line(&poem, &["invalid value '' for '[POEM]...': must not be empty"]);
    assert_code(&poem, 2);
    let trace = run(&["--port", "0", "--trace", "", &science()]);
    assert_one_line(&trace, &["invalid value '' for '--trace <FILE>': must not be empty"]);
    assert_code(&trace, 2);
}

/// A trace file that cannot be written (in a missing directory, or a directory itself) is
/// refused at start-up, before anything listens, naming the file and why.
#[test]
fn unwritable_trace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").join("trace.json").display().to_string();
    let output = run(&["--port", "0", "--trace", &missing, &science()]);
    assert_one_line(&output, &["cannot write the trace", &missing, "No such file"]);
    assert_code(&output, 1);
    let directory = dir.path().display().to_string();
    let output = run(&["--port", "0", "--trace", &directory, &science()]);
    assert_one_line(&output, &["cannot write the trace", &directory, "Is a directory"]);
    assert_code(&output, 1);
}

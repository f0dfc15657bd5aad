//! Tests that need tools from outside the Rust toolchain: bash, man, promtool,
//! systemd-socket-activate, unshare, ip and nft for a network namespace, and chromium. Where one is
//! missing, its tests show as ignored, naming what is missing (`[needs …]`); under CI (`CI`
//! set), where `.ci/run` has installed them all, a missing tool fails its test instead.
//!
//! The harness is libtest-mimic's, since libtest cannot decide to ignore a test as it runs.

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

use common::{BIN, Binary, BinaryPoem, LIMIT, Target, eventually, get, read_to_end, run_command};

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        needs(&["bash"], "bash_completes_flags", bash_completes_flags),
        needs(&["man"], "man_renders_the_page", man_renders_the_page),
        needs(
            &["promtool"],
            "promtool_accepts_the_metrics_page",
            promtool_accepts_the_metrics_page,
        ),
        needs(
            &["systemd-socket-activate"],
            "socket_activation_serves_on_the_socket_it_is_given",
            socket_activation_serves_on_the_socket_it_is_given,
        ),
        needs(
            &["root", "unshare", "ip", "nft"],
            "a_vanished_client_frees_its_worker_within_the_write_timeout",
            a_vanished_client_frees_its_worker_within_the_write_timeout,
        ),
        needs(
            &["16000 descriptors"],
            "several_addresses_find_a_port_free_on_each",
            several_addresses_find_a_port_free_on_each,
        ),
        needs(
            &["python3"],
            "python_connect_times_out_on_a_black_hole",
            python_connect_times_out_on_a_black_hole,
        ),
        needs(
            &["nc", "curl"],
            "nc_and_curl_time_out_on_a_black_hole",
            nc_and_curl_time_out_on_a_black_hole,
        ),
        needs(
            &["pytest"],
            "the_documented_pytest_suite_passes",
            the_documented_pytest_suite_passes,
        ),
        needs(
            &["chromium"],
            "chromium_draws_the_timeline_and_its_marks_grow",
            chromium_draws_the_timeline_and_its_marks_grow,
        ),
        needs(
            &["python3"],
            "the_teaching_page_replays_with_its_clients",
            the_teaching_page_replays_with_its_clients,
        ),
        // Run only by the test above, inside the namespace it makes.
        Trial::test("vanished_client_inside_a_namespace", || {
            vanished_client_inside_a_namespace();
            Ok(())
        })
        .with_ignored_flag(true),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// The test `name`, which needs `tools` on PATH: shown as ignored, naming them, where one is
/// missing, unless under CI, where that fails it.
fn needs(tools: &[&str], name: &str, test: fn()) -> Trial {
    let missing: Vec<&str> = tools.iter().copied().filter(|tool| !available(tool)).collect();
    let in_ci = std::env::var_os("CI").is_some();
    let ignored = !missing.is_empty() && !in_ci;
    let kind = format!("needs {}", tools.join(", "));
    let missing = missing.join(", ");
    Trial::test(name, move || match missing.is_empty() {
        true => {
            test();
            Ok(())
        }
        false => Err(Failed::from(format!("{missing} missing: .ci/run installs it"))),
    })
    .with_kind(kind)
    .with_ignored_flag(ignored)
}

/// Whether `tool` is on PATH; "root" is whether the tests run as root (a network namespace
/// needs it), and "16000 descriptors" whether the open-file limit can be raised that far.
fn available(tool: &str) -> bool {
    if tool == "root" {
        // SAFETY: geteuid has no preconditions.
        return unsafe { libc::geteuid() } == 0;
    }
    if tool == "16000 descriptors" {
        return raise_open_files() >= 16_000;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// bash loads the generated completion script, and it completes a flag.
fn bash_completes_flags() {
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
fn man_renders_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("poetry-serve.1");
    let generated = run_command(Command::new(BIN).args(["--generate", "man"]));
    assert!(generated.status.success(), "{generated:?}");
    std::fs::write(&page, &generated.stdout).unwrap();
    let rendered = run_command(
        Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "80"),
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
    let found: Vec<&str> =
        sections.iter().copied().filter(|s| expected.contains(s) || *s == "EXTRA").collect();
    assert_eq!(found, expected, "{text}");
    // Readable at 80 columns: man wraps the text, and no line runs past the width.
    let wide: Vec<&str> = plain.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "lines over 80 columns: {wide:#?}");
}

/// `promtool check metrics` (Debian's prometheus package) accepts the page.
fn promtool_accepts_the_metrics_page() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--metrics", "127.0.0.1:0", "--close-after", "5"])
        .start();
    let metrics = server.metrics_addr();
    server.fetch();
    let (status, page) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{page}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(output.status.success(), "promtool: {output:?}\n{page}");
}

/// Handed a listening socket by systemd-socket-activate (LISTEN_FDS), the server serves on
/// it rather than binding its own, and names it in its listening line.
fn socket_activation_serves_on_the_socket_it_is_given() {
    let poem = BinaryPoem::new(300);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // --port 1 would need privileges: the server must not try to bind it.
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), BIN, "--port", "1", "--delay", "0"])
        .arg(poem.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-socket-activate");
    // The activator listens at once and starts the server on the first connection.
    let fetched = eventually("systemd-socket-activate listening", String::new, || {
        let stream = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        Some(read_to_end(stream, Instant::now()))
    });
    let second = common::fetch_at(addr);
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    let output = {
        let deadline = Instant::now() + LIMIT;
        while activator.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = activator.kill();
        activator.wait_with_output().unwrap()
    };
    let story = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(fetched.bytes, poem.bytes, "{story}");
    assert_eq!(second.bytes, poem.bytes, "{story}");
    assert!(story.contains(&format!("poetry-serve listening on {addr}")), "{story}");
    assert!(story.contains("sockets from systemd"), "{story}");
}

/// The test that runs [`vanished_client_inside_a_namespace`] in a namespace of its own.
fn a_vanished_client_frees_its_worker_within_the_write_timeout() {
    let exe = std::env::current_exe().expect("the test binary");
    let output = run_command(
        Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(exe)
            .args(["vanished_client_inside_a_namespace", "--exact", "--ignored", "--nocapture"]),
    );
    let story = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{story}");
    assert!(story.contains("1 passed"), "the inner test did not run: {story}");
}

/// Run only by the test above, inside a fresh network namespace (it refuses to run anywhere
/// else, since it adds a firewall rule).
fn vanished_client_inside_a_namespace() {
    // /proc/self/net/dev lists the interfaces of this thread's own namespace.
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("list the interfaces");
    let interfaces: Vec<&str> =
        dev.lines().filter_map(|line| Some(line.split_once(':')?.0.trim())).collect();
    assert_eq!(interfaces, ["lo"], "not in a private network namespace");

    let poem = BinaryPoem::new(1000); // 100 chunks at 0.1 s: 10 s, far past the timeout
    let server = Binary::launch(poem.path())
        .args(&["--workers", "1", "--num-bytes", "10", "--delay", "0.1"])
        .args(&["--write-timeout", "2", "--log-format", "json"])
        .start();
    let mut client = server.connect();
    let mut first = [0u8; 10];
    client.read_exact(&mut first).expect("the first chunk");
    let port = client.local_addr().unwrap().port();
    // From now on nothing reaches the client, and it acknowledges nothing: it has vanished.
    let rules = format!(
        "add table inet vanish\n\
         add chain inet vanish input {{ type filter hook input priority 0; }}\n\
         add rule inet vanish input tcp dport {port} drop\n"
    );
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft refused the rule");
    let vanished = Instant::now();

    server.wait_for_outcome("timed_out", 1);
    let freed = vanished.elapsed();
    eprintln!("worker freed {freed:?} after the client vanished (--write-timeout 2)");
    assert!(
        freed < Duration::from_secs(6),
        "took {freed:?} to drop the vanished client:\n{}",
        server.stderr()
    );
    // The only worker is free: the next client's poem starts.
    let next = server.start_streaming(10);
    drop(next);
}

/// Raises this process's open-file limit to its hard limit, and returns it.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit are given a valid, exclusively borrowed rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// With several addresses and port 0, the port picked for one is free on every other: with
/// every odd port of the ephemeral range held on ::1 (the kernel picks odd ports for a bind to
/// port 0), a server on 127.0.0.1 and ::1 still starts, on one port for both.
fn several_addresses_find_a_port_free_on_each() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut bounds = range.split_whitespace().map(|n| n.parse::<u16>().unwrap());
    let (low, high) = (bounds.next().unwrap(), bounds.next().unwrap());
    let held: Vec<socket2::Socket> = (low..=high)
        .filter(|port| port % 2 == 1)
        .filter_map(|port| {
            let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None);
            let socket = socket.expect("a socket");
            let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            socket.bind(&addr.into()).ok().map(|()| socket)
        })
        .collect();
    assert!(held.len() > 1000, "only {} odd ports held", held.len());
    for _ in 0..5 {
        let poem = BinaryPoem::new(10);
        let mut config = poetry_serve::Config::new(poem.path());
        config.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let server = poetry_serve::Server::start(config).expect("a port free on both addresses");
        let addrs = server.local_addrs().to_vec();
        assert_eq!(addrs[0].port(), addrs[1].port(), "{addrs:?}");
        for addr in addrs {
            assert_eq!(common::fetch_at(addr).bytes, poem.bytes);
        }
    }
}

/// A server with --blackhole on a free port, and the one connection that fills its backlog.
fn black_hole() -> (Binary, TcpStream) {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path()).args(&["--blackhole"]).start();
    let first = TcpStream::connect_timeout(&server.addr(), LIMIT).expect("the first connects");
    (server, first)
}

/// Python's `socket.create_connection(..., timeout=1)` raises `TimeoutError` against
/// --blackhole, once the one connection the backlog holds is taken, and at every try after.
fn python_connect_times_out_on_a_black_hole() {
    let (server, _first) = black_hole();
    let script = r#"
import socket, sys, time
address = ("127.0.0.1", int(sys.argv[1]))
for attempt in range(2):
    started = time.monotonic()
    try:
        socket.create_connection(address, timeout=1)
        print("connected")
    except TimeoutError:
        print("timed out after %.1f s" % (time.monotonic() - started))
"#;
    let port = server.addr().port().to_string();
    let output = run_command(Command::new("python3").args(["-c", script, &port]));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(said, "timed out after 1.0 s\ntimed out after 1.0 s\n", "{output:?}");
}

/// `nc -w 1` and `curl --connect-timeout 1 telnet://` (raw TCP) give up on the connect
/// against --blackhole: nc with status 1, curl with 28 (operation timed out).
fn nc_and_curl_time_out_on_a_black_hole() {
    let (server, _first) = black_hole();
    let port = server.addr().port().to_string();
    let started = Instant::now();
    let nc = run_command(Command::new("nc").args(["-w", "1", "127.0.0.1", &port]));
    assert_eq!(nc.status.code(), Some(1), "{nc:?}");
    assert!(started.elapsed() >= Duration::from_secs(1), "nc gave up at once: {nc:?}");
    let url = format!("telnet://127.0.0.1:{port}");
    let curl = run_command(Command::new("curl").args(["-sS", "--connect-timeout", "1", &url]));
    assert_eq!(curl.status.code(), Some(28), "{curl:?}");
    assert!(String::from_utf8_lossy(&curl.stderr).contains("Timeout was reached"), "{curl:?}");
}

/// The pytest suite in docs/testing.md, run as it is written, beside the script and the poem
/// it names: its three tests pass against the binary.
fn the_documented_pytest_suite_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/testing.md")).expect("docs/testing.md");
    let block = |fence: &str| -> String {
        let after = docs.split(fence).nth(1).unwrap_or_else(|| panic!("no {fence} block"));
        after.split("```").next().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test_client.py"), block("```python\n")).unwrap();
    std::fs::write(dir.path().join("first-two.toml"), block("```toml\n")).unwrap();
    std::fs::create_dir(dir.path().join("poems")).unwrap();
    std::fs::copy(root.join("poems/science.txt"), dir.path().join("poems/science.txt")).unwrap();
    let output = run_command(
        Command::new("pytest")
            .args(["-q", "-p", "no:cacheprovider", "test_client.py"])
            .current_dir(dir.path())
            .env("POETRY_SERVE", BIN),
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(said.contains("3 passed"), "{said}");
}

/// What headless Chromium makes of `url` (a profile of its own in `profile`, so that runs side
/// by side do not share one): the DOM once loaded, or once the page's scripts have had
/// `budget_ms` of virtual time; or a screenshot `width` × `height` into `shot`.
fn chromium(
    profile: &std::path::Path,
    url: &str,
    budget_ms: Option<u32>,
    shot: Option<(&str, u32, u32)>,
) -> String {
    let mut command = Command::new("chromium");
    command.args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]);
    command.args(["--disable-background-networking", "--disable-component-update"]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    if let Some(budget) = budget_ms {
        command.arg(format!("--virtual-time-budget={budget}"));
    }
    match shot {
        Some((file, width, height)) => {
            command.arg(format!("--screenshot={file}"));
            command.arg(format!("--window-size={width},{height}"));
        }
        None => {
            command.arg("--dump-dom");
        }
    }
    let output = run_command(command.arg(url));
    assert!(output.status.success(), "chromium: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `data-chunks` of lane `id` in a dumped DOM, if it has that lane.
fn lane_chunks(dom: &str, id: u64) -> Option<u64> {
    let after = dom.split(&format!(r#"class="lane" data-id="{id}" data-chunks=""#)).nth(1)?;
    after.split('"').next()?.parse().ok()
}

/// In headless Chromium, the status page of a server with one worker and two clients draws
/// the first client's lane, says the second waits in the backlog, and, refreshed by its
/// script, shows the lane's marks grown in a later look; it also makes a screenshot
/// (printed path), to look at when the picture changes.
fn chromium_draws_the_timeline_and_its_marks_grow() {
    let poem = BinaryPoem::new(100_000); // 10,000 chunks: far longer than the test
    let server = Binary::launch(poem.path())
        .args(&["--workers", "1", "--delay", "0.05", "--metrics", "127.0.0.1:0"])
        .start();
    let url = format!("http://{}/", server.metrics_addr());
    let _first = server.start_streaming(10);
    let _second = server.connect(); // waits in the listen backlog behind the first
    let profile = tempfile::tempdir().unwrap();
    // The page as loaded, before its script refreshes it: whole without it.
    let served = eventually(
        "the second client in the backlog",
        || server.stderr(),
        || {
            let dom = chromium(profile.path(), &url, None, None);
            dom.contains("1 more waiting in the listen backlog").then_some(dom)
        },
    );
    let before = lane_chunks(&served, 0).unwrap_or_else(|| panic!("no lane 0:\n{served}"));
    assert!(lane_chunks(&served, 1).is_none(), "the second is not accepted yet:\n{served}");
    // After a few refreshes by the script, the same lane with more marks.
    let refreshed = eventually(
        "the lane's marks grown after the script's refreshes",
        || server.stderr(),
        || {
            let dom = chromium(profile.path(), &url, Some(3000), None);
            let grown = lane_chunks(&dom, 0).is_some_and(|after| after > before);
            (grown && dom.contains(r#"id="updated">updated "#)).then_some(dom)
        },
    );
    assert!(refreshed.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline""#));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("timeline.png");
    let _ = std::fs::remove_file(&shot);
    chromium(profile.path(), &url, Some(2000), Some((shot.to_str().unwrap(), 1280, 900)));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {}", shot.display());
    eprintln!("timeline screenshot: {}", shot.display());
}

/// The fenced blocks of a Markdown page, in order: (language, text).
fn fenced(page: &str) -> Vec<(&str, &str)> {
    let parts: Vec<&str> = page.split("```").collect();
    (parts.iter().skip(1).step_by(2))
        .map(|block| block.split_once('\n').unwrap_or((block, "")))
        .collect()
}

/// `line` with a time at its end ("in 10.0 s") made `in T s`, so that runs compare.
fn untimed(line: &str) -> String {
    match line.rsplit_once(" in ") {
        Some((head, tail)) if tail.strip_suffix(" s").is_some_and(|t| t.parse::<f64>().is_ok()) => {
            format!("{head} in T s")
        }
        _ => line.to_string(),
    }
}

/// The servers a `sh` block of docs/teaching.md starts, started as written but with
/// `--delay 0.002` and free ports; with the port each line names.
fn teaching_servers(root: &std::path::Path, block: &str) -> Vec<(String, Binary)> {
    (block.lines())
        .filter_map(|line| line.strip_prefix("target/release/poetry-serve "))
        .map(|line| {
            let words: Vec<&str> = line.trim_end_matches('&').split_whitespace().collect();
            let (poem, flags) = words.split_last().expect("a poem");
            let (mut args, mut port) = (Vec::new(), None);
            let mut flags = flags.iter();
            while let Some(&flag) = flags.next() {
                let value = *flags.next().unwrap_or_else(|| panic!("{flag} without a value"));
                match flag {
                    "--port" => port = Some(value.to_string()),
                    "--delay" => args.extend(["--delay", "0.002"]),
                    "--metrics" => args.extend(["--metrics", "127.0.0.1:0"]),
                    _ => args.extend([flag, value]),
                }
            }
            let server = Binary::launch(&root.join(poem)).args(&args).start();
            (port.expect("--port"), server)
        })
        .collect()
}

/// Runs `python3 CLIENT PORT...`, a line of docs/teaching.md, against `servers`; returns what
/// it printed, with each server's address as the page names it and the times as `T`.
fn teaching_client(root: &std::path::Path, line: &str, servers: &[(String, Binary)]) -> String {
    let mut words = line.split_whitespace().skip(1); // python3
    let client = root.join(words.next().expect("the client"));
    let real = |port: &str| {
        let (_, server) = servers.iter().find(|(p, _)| p == port).expect("a server on that port");
        server.addr().port().to_string()
    };
    let args: Vec<String> =
        words.map(|w| if w.starts_with('-') { w.to_string() } else { real(w) }).collect();
    let output = run_command(Command::new("python3").arg(client).args(&args));
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{line}: {output:?}");
    for (port, server) in servers {
        said = said.replace(&format!(":{} ", server.addr().port()), &format!(":{port} "));
        said = said.replace(&format!(":{}\n", server.addr().port()), &format!(":{port}\n"));
    }
    said.lines().map(untimed).collect::<Vec<_>>().join("\n")
}

/// docs/teaching.md, replayed fast: its three servers, and its blocking and asynchronous
/// clients against them, print what the page shows (times aside; the asynchronous client's
/// reads checked for their form and sums); then one server with one worker and three clients.
fn the_teaching_page_replays_with_its_clients() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/teaching.md")).expect("docs/teaching.md");
    let blocks = fenced(&page);
    let after = |needle: &str| -> (&str, &str) {
        let at = (blocks.iter().position(|(_, text)| text.contains(needle)))
            .unwrap_or_else(|| panic!("no block with {needle:?}"));
        let (_, command) = blocks[at];
        let line = command.lines().find(|l| l.contains(needle)).unwrap();
        let shown = (blocks[at + 1..].iter().find(|(lang, _)| *lang == "text"))
            .unwrap_or_else(|| panic!("no output after {needle:?}"))
            .1;
        (line, shown)
    };
    let expected = |shown: &str| shown.lines().map(untimed).collect::<Vec<_>>().join("\n");

    let three = blocks.iter().find(|(_, text)| text.contains("--num-bytes 30")).unwrap().1;
    let servers = teaching_servers(root, three);
    assert_eq!(servers.len(), 3, "{three}");

    let (line, shown) = after("blocking_client.py 10000");
    assert_eq!(teaching_client(root, line, &servers), expected(shown), "{line}");

    let (line, shown) = after("async_client.py 10000 10001");
    let said = teaching_client(root, line, &servers);
    let summary = |text: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len() - 4..].iter().map(|l| l.to_string()).collect()
    };
    assert_eq!(summary(&said), summary(&expected(shown)), "{said}");
    let mut sums = [0usize; 3];
    for read in said.lines().take_while(|l| l.contains(" bytes of poetry from ")) {
        let mut words = read.split_whitespace(); // Task N: got B bytes of poetry from ADDR
        let task: usize = words.nth(1).unwrap().trim_end_matches(':').parse().unwrap();
        sums[task - 1] += words.nth(1).unwrap().parse::<usize>().unwrap();
    }
    assert_eq!(sums, [3003, 615, 653], "{said}");
    drop(servers);

    let (line, shown) = after("async_client.py --quiet 10000 10000 10000");
    let one = blocks.iter().find(|(_, text)| text.contains(line)).unwrap().1;
    let server = teaching_servers(root, one);
    assert_eq!(server.len(), 1, "{one}");
    assert_eq!(teaching_client(root, line, &server), expected(shown), "{line}");
}

//! Running it as a daemon: several poems, reload, stats, JSON logs, dual stack, SO_REUSEPORT.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use poetry_serve::{Config, Order};

use crate::common::{
    Binary, BinaryPoem, InProcess, LIMIT, Target, binary_bytes, eventually, poem_in_dir,
    read_to_end,
};

/// `poems`, unpaced, in `order`, with `seed`.
fn serving(poems: &[&std::path::Path], order: Order, seed: Option<u64>) -> InProcess {
    let mut config = Config::new(poems[0]);
    config.poems = poems.iter().map(|p| p.to_path_buf()).collect();
    config.pacing.delay = Duration::ZERO;
    config.order = order;
    config.faults.seed = seed;
    InProcess::start(config)
}

/// Three small poems, told apart by their first byte.
fn three_poems() -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let mut texts = Vec::new();
    for (name, first) in [("a.txt", b'A'), ("b.txt", b'B'), ("c.txt", b'C')] {
        let mut text = binary_bytes(300);
        text[0] = first;
        std::fs::write(dir.path().join(name), &text).unwrap();
        texts.push(text);
    }
    std::fs::write(dir.path().join("README.md"), "not a poem").unwrap();
    (dir, texts)
}

/// Several POEM arguments are served in turn, in the order given.
#[test]
fn several_poems_are_served_in_turn() {
    let (dir, texts) = three_poems();
    let (a, b, c) = (dir.path().join("a.txt"), dir.path().join("b.txt"), dir.path().join("c.txt"));
    let server = serving(&[&c, &a, &b], Order::Sequential, None);
    for expected in [&texts[2], &texts[0], &texts[1], &texts[2], &texts[0]] {
        server.fetch_exact(expected);
    }
}

/// A directory serves its .txt files in name order, and nothing else in it.
#[test]
fn a_directory_serves_its_txt_files() {
    let (dir, texts) = three_poems();
    let server = serving(&[dir.path()], Order::Sequential, None);
    for expected in [&texts[0], &texts[1], &texts[2], &texts[0]] {
        server.fetch_exact(expected);
    }
}

/// --order random serves only the given poems, and not always the same one.
#[test]
fn random_order_serves_each_poem_whole() {
    let (dir, texts) = three_poems();
    let server = serving(&[dir.path()], Order::Random, None);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let fetch = server.fetch();
        assert!(texts.contains(&fetch.bytes), "not one of the poems: {}", server.story());
        seen.insert(fetch.bytes[0]);
    }
    assert!(seen.len() > 1, "30 random fetches all gave poem {seen:?}");
}

/// With --seed, --order random repeats: the same clients, one after another, get the same
/// poems in every run; another seed gives another sequence.
#[test]
fn a_seed_makes_random_order_repeatable() {
    let (dir, _) = three_poems();
    let firsts = |seed| -> Vec<u8> {
        let server = serving(&[dir.path()], Order::Random, Some(seed));
        (0..24).map(|_| server.fetch().bytes[0]).collect()
    };
    let first = firsts(7);
    assert_eq!(first, firsts(7), "the same seed, another sequence");
    assert_ne!(first, firsts(8), "another seed, the same sequence");
}

/// --metrics takes a host name, as --iface does: localhost:0 listens on a loopback address.
#[test]
fn metrics_take_a_host_name() {
    let poem = BinaryPoem::new(50);
    let server = Binary::launch(poem.path()).args(&["--metrics", "localhost:0"]).start();
    let metrics = server.metrics_addr();
    assert!(metrics.ip().is_loopback(), "{metrics}");
    assert_eq!(crate::common::get(metrics, "/healthz").0, 200);
}

/// SIGHUP reloads: a poem in flight finishes with the old text, new connections get the new
/// one, and a reload that fails keeps serving what was there.
#[test]
fn sighup_reloads_the_poems() {
    let old = binary_bytes(100);
    let (dir, path) = poem_in_dir(&old);
    let server = Binary::launch(&path).args(&["--num-bytes", "10", "--delay", "0.05"]).start();
    let in_flight = server.start_streaming(10);

    // Replace the file the way editors do: write a new one and rename it over the old.
    let new = b"an entirely new poem\n".repeat(3);
    std::fs::write(dir.path().join("poem.new"), &new).unwrap();
    std::fs::rename(dir.path().join("poem.new"), &path).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_logs("reloaded", 1);
    server.fetch_exact(&new);
    server.assert_bytes(&in_flight.finish().bytes, &old);

    std::fs::remove_file(&path).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_logs("reload failed", 1);
    server.fetch_exact(&new);
}

/// A reload that finds a .txt entry it cannot serve in a directory (a FIFO, a link to
/// /dev/zero) names each one in a warning, and serves the rest.
#[test]
fn a_reload_names_each_file_it_skips() {
    let (dir, _path) = poem_in_dir(b"the one poem\n");
    let server = Binary::launch(dir.path()).args(&["--delay", "0", "--log-format", "json"]).start();
    let fifo = dir.path().join("fifo.txt");
    crate::common::mkfifo(&fifo);
    let zero = dir.path().join("zero.txt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_message("reloaded");
    let skipped = server.wait_for_events("skipped: not a regular file", 2);
    let mut named: Vec<(&str, &str)> = skipped
        .iter()
        .map(|event| {
            let file = event["file"].as_str().unwrap_or_default();
            (file, event["what"].as_str().unwrap_or_default())
        })
        .collect();
    named.sort();
    assert_eq!(
        named,
        [(fifo.to_str().unwrap(), "a FIFO"), (zero.to_str().unwrap(), "a character device")],
        "{}",
        server.stderr()
    );
    assert!(skipped.iter().all(|event| event["level"] == "WARN"), "{skipped:?}");
    server.fetch_exact(b"the one poem\n");
}

/// SIGUSR1 prints the stats line even when logging is off, with busy and queued counts.
#[test]
fn sigusr1_prints_stats_at_any_log_level() {
    let poem = BinaryPoem::new(100);
    let args = ["--workers", "1", "--num-bytes", "10", "--delay", "0.3"];
    let server = Binary::launch(poem.path())
        .args(&args)
        .args(&["--log-format", "json"])
        .env("RUST_LOG", "off")
        .start();
    let _streaming = server.start_streaming(10);
    let _waiting = server.connect(); // waits in the backlog, unaccepted, for the only worker
    let stats = server.wait_for_stats(|stats| stats["busy_workers"] == 1);
    for (field, value) in [("accepted", 1), ("complete", 0), ("aborted", 0), ("queued", 0)] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
    let events = server.events();
    assert!(
        events
            .iter()
            .all(|event| event["message"] == "stats" && event["target"] == "poetry_serve::stats"),
        "RUST_LOG=off lets through the stats line only, yet:\n{}",
        server.stderr()
    );
}

/// --log-format json writes one JSON object per line, with stable top-level field names.
#[test]
fn json_logs_have_stable_fields() {
    let poem = BinaryPoem::new(50);
    let server =
        Binary::launch(poem.path()).args(&["--delay", "0", "--log-format", "json"]).start();
    server.fetch_exact(&poem.bytes);
    // Every line up to it must read as a JSON object, or the wait fails.
    let ended = &server.wait_for_events("connection ended", 1)[0];
    assert_eq!(ended["bytes"], 50, "{ended}");
    assert_eq!(ended["outcome"], "complete", "{ended}");
    assert!(ended["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{ended}");
    assert!(ended["chunks"].is_u64() && ended["duration_ms"].is_u64(), "{ended}");
}

/// A poem whose file name holds a newline cannot forge a line of the text log: the name is
/// logged escaped (as it shows everywhere, then quoted, its backslashes escaped again), and every
/// line is a whole event of the server's.
#[test]
fn a_poem_name_with_a_newline_forges_no_log_line() {
    let bytes = binary_bytes(50);
    let dir = tempfile::tempdir().unwrap();
    let forged = "2026-01-01T00:00:00.000000Z  INFO worker-0 poetry_serve::connection: forged";
    let path = dir.path().join(format!("poem\n{forged}\r.txt"));
    std::fs::write(&path, &bytes).unwrap();
    let server = Binary::launch(&path).args(&["--delay", "0"]).start();
    server.fetch_exact(&bytes);
    let log = server.wait_for_logs("connection ended", 1);
    assert!(
        log.lines().all(|line| !line.contains("forged") || line.contains(r"poem\\n2026")),
        "a forged line:\n{log}"
    );
    let ended =
        log.lines().find(|line| line.contains("connection ended")).expect("the connection line");
    assert!(
        ended.contains(r#"poem=""#) && ended.contains(r"forged\\r.txt"),
        "the name is not escaped in {ended:?}"
    );
    assert!(ended.contains("outcome=\"complete\""), "{log}");
}

/// --iface :: accepts IPv4 clients too, and logs them as plain IPv4 addresses.
#[test]
fn dual_stack_accepts_ipv4_clients() {
    let poem = BinaryPoem::new(64);
    let mut config = Config::new(poem.path());
    config.listen = vec!["[::]:0".parse().unwrap()];
    config.pacing.chunk = std::num::NonZeroUsize::new(1).unwrap();
    config.pacing.delay = Duration::from_millis(100);
    let server = InProcess::start(config);
    assert_eq!(server.addr().ip().to_string(), "::");
    let v4: SocketAddr = ([127, 0, 0, 1], server.addr().port()).into();
    let stream = TcpStream::connect_timeout(&v4, LIMIT).expect("IPv4 connect to a :: listener");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let peer = eventually(
        "the client being served",
        || server.story(),
        || server.handle.connections().first().map(|c| c.peer),
    );
    assert_eq!(peer, stream.local_addr().unwrap(), "a plain IPv4 peer");
    let fetch = read_to_end(stream, Instant::now());
    server.assert_bytes(&fetch.bytes, &poem.bytes);
}

/// With SO_REUSEPORT two servers share one port and both take connections; without it the
/// second cannot bind.
#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let poem = BinaryPoem::new(64);
    let shared = |port: u16| {
        let mut config = Config::new(poem.path());
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        config.reuse_port = true;
        config.pacing.delay = Duration::ZERO;
        config
    };
    let first = InProcess::start(shared(0));
    let port = first.addr().port();
    let alone = Config { reuse_port: false, ..shared(port) };
    let refused = poetry_serve::Server::start(alone).err().expect("the port is taken");
    assert!(format!("{refused:#}").contains("in use"), "{refused:#}");
    let second = InProcess::start(shared(port));
    for _ in 0..40 {
        first.fetch_exact(&poem.bytes);
    }
    // The kernel spreads connections by a hash of their addresses: 40 all landing on one of
    // two servers has a chance of 2 in 2^40.
    let served = |server: &InProcess| server.tally().ended(poetry_serve::Outcome::Complete);
    let what = "40 connections served between them";
    eventually(
        what,
        || format!("{} / {}", served(&first), served(&second)),
        || (served(&first) + served(&second) == 40).then_some(()),
    );
    assert!(served(&first) > 0 && served(&second) > 0, "{} / {}", served(&first), served(&second));
}

/// A reload lets go of the files it replaced: once no connection streams an old poem, the
/// server holds no descriptor of it (a week of reloads must not pile up open files).
#[test]
fn a_reload_closes_the_files_it_replaced() {
    let (dir, path) = poem_in_dir(b"the first poem\n");
    let server = Binary::launch(&path).args(&["--delay", "0"]).start();
    server.fetch_exact(b"the first poem\n");
    std::fs::write(dir.path().join("poem.new"), b"the second poem\n").unwrap();
    std::fs::rename(dir.path().join("poem.new"), &path).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_logs("reloaded", 1);
    server.fetch_exact(b"the second poem\n");
    let open: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    assert!(
        !open.iter().any(|target| target.ends_with("(deleted)")),
        "a replaced poem is still open: {open:?}"
    );
}

/// No file in a poem's place can block a reload: with a FIFO renamed over the poem and a new
/// poem renamed back, again and again, every reload ends at once (with the new poem, or keeping
/// the old set), whenever the swap falls between looking at the file and opening it.
#[test]
fn a_fifo_swapped_in_cannot_block_a_reload() {
    let (dir, path) = poem_in_dir(b"a poem\n");
    let mut config = Config::new(&path);
    config.pacing.delay = Duration::ZERO;
    let server = InProcess::start(config);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let (fifo, file) = (dir.path().join("fifo"), dir.path().join("file"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                crate::common::mkfifo(&fifo);
                std::fs::rename(&fifo, &path).unwrap();
                std::fs::write(&file, b"a poem\n").unwrap();
                std::fs::rename(&file, &path).unwrap();
            }
        });
        let blocked = (0..500).find(|_| {
            let (done, reloaded) = std::sync::mpsc::channel();
            let handle = server.handle.clone();
            std::thread::spawn(move || done.send(handle.reload().is_ok()));
            reloaded.recv_timeout(LIMIT).is_err()
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(blocked, None, "a reload blocked\n{}", server.story());
    });
    let (worked, failed) = server.handle.counters().reloads();
    assert_eq!(worked + failed, 500);
    server.fetch_exact(b"a poem\n");
}

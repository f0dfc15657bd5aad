//! SIGINT and SIGTERM: stop accepting at once, let poems in flight finish within the grace
//! period, then exit 0 with a summary; a second signal exits at once.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Instant;

use crate::common::{Binary, BinaryPoem, LIMIT, Target, read_to_end};

const SIGINT: i32 = libc::SIGINT;
const SIGTERM: i32 = libc::SIGTERM;

/// Asserts that connecting to the server is refused now.
#[track_caller]
fn assert_refused(server: &Binary) {
    match TcpStream::connect_timeout(&server.addr, LIMIT) {
        Err(err) if err.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!(
            "a connect after shutdown must be refused, got {other:?}; stderr:\n{}",
            server.stderr()
        ),
    }
}

/// SIGTERM closes the listener at once, lets the poem in flight finish, and exits 0 with a
/// summary line.
#[test]
fn sigterm_drains_poems_in_flight_and_refuses_new_connects() {
    let poem = BinaryPoem::new(100);
    let mut server = Binary::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "0.1", "--log-format", "json"])
        .start();
    let client = server.start_streaming(10);
    server.signal(SIGTERM);
    server.wait_for_message("listener closed");
    assert_refused(&server);
    server.assert_bytes(&client.finish().bytes, &poem.bytes);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let stats = server.last_stats();
    for (field, value) in [("accepted", 1), ("complete", 1), ("aborted", 0), ("bytes_sent", 100)] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
}

/// Shutdown works while every worker is busy and clients wait in the listen backlog: the
/// listener still closes at once, the poem in flight is finished within the grace, and the
/// clients that were still waiting are closed unserved, each counted and logged, rather than
/// reset by the kernel.
#[test]
fn shutdown_with_every_worker_busy() {
    let poem = BinaryPoem::new(100);
    let mut server = Binary::launch(poem.path())
        .args(&["--workers", "1", "--num-bytes", "10", "--delay", "0.05"])
        .args(&["--log-format", "json", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let first = server.start_streaming(10);
    let waiting = [server.connect(), server.connect()];
    let backlog = || {
        crate::common::sample(&crate::common::get(metrics, "/metrics").1, "poetry_listen_backlog")
    };
    crate::common::eventually(
        "two clients in the backlog",
        || server.stderr(),
        || (backlog() == 2.0).then_some(()),
    );
    server.signal(SIGTERM);
    server.wait_for_message("listener closed");
    assert_refused(&server);
    server.assert_bytes(&first.finish().bytes, &poem.bytes);
    for stream in waiting {
        let fetch = read_to_end(stream, Instant::now());
        assert!(fetch.bytes.is_empty(), "{fetch:?}");
        assert_eq!(fetch.ended, Ok(()), "closed, not reset: {fetch:?}");
    }
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    let stats = server.last_stats();
    for (field, value) in [("accepted", 3), ("complete", 1), ("shutdown", 2), ("aborted", 2)] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
    assert_eq!(server.outcomes().len(), 3, "one line per connection:\n{}", server.stderr());
}

/// When the grace period runs out, what still streams is closed, logged with the outcome
/// `shutdown`, and counted as aborted; the server exits 0.
#[test]
fn the_grace_period_bounds_shutdown() {
    let poem = BinaryPoem::new(300); // 30 chunks at 1 s: half a minute if nothing cut it short
    let mut server = Binary::launch(poem.path())
        .args(&[
            "--num-bytes",
            "10",
            "--delay",
            "1",
            "--shutdown-grace",
            "0.5",
            "--log-format",
            "json",
        ])
        .start();
    let client = server.start_streaming(10);
    server.signal(SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    let cut_off = server.wait_for_message("grace period over");
    assert_eq!(cut_off["cut_off"], 1, "{cut_off}");
    assert_eq!(server.outcomes(), ["shutdown"], "{}", server.stderr());
    let stats = server.last_stats();
    for (field, value) in [("accepted", 1), ("complete", 0), ("aborted", 1), ("shutdown", 1)] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
    // The client sees its connection end early, not hang.
    let got = client.finish().bytes.len();
    assert!(got < 300, "all {got} bytes arrived, though the grace ran out");
}

/// A connection whose write is blocked on a client that reads nothing is cut off when the
/// grace ends too, and logged, instead of holding the exit for the whole write timeout.
#[test]
fn the_grace_period_cuts_off_a_blocked_write() {
    let poem = BinaryPoem::new(32 << 20); // far more than the socket buffers hold
    let mut server = Binary::launch(poem.path())
        .args(&[
            "--delay",
            "0",
            "--write-timeout",
            "60",
            "--shutdown-grace",
            "0.5",
            "--log-format",
            "json",
            "--metrics",
            "127.0.0.1:0",
        ])
        .start();
    let metrics = server.metrics_addr();
    let staller = server.connect(); // never reads
    // Its worker writes until the socket buffers are full, then blocks: the grace (0.5 s)
    // ends with it blocked, whenever the signal comes.
    crate::common::eventually(
        "a worker writing",
        || server.stderr(),
        || {
            let page = crate::common::get(metrics, "/metrics").1;
            (crate::common::sample(&page, "poetry_bytes_sent_total") > 0.0).then_some(())
        },
    );
    server.signal(SIGTERM);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert_eq!(server.outcomes(), ["shutdown"], "{}", server.stderr());
    drop(staller);
}

/// A second signal ends the server at once, with the conventional 128 + signal status.
#[test]
fn a_second_signal_exits_at_once() {
    let poem = BinaryPoem::new(300);
    let mut server =
        Binary::launch(poem.path()).args(&["--num-bytes", "10", "--delay", "1"]).start();
    let _client = server.start_streaming(10);
    server.signal(SIGINT);
    server.wait_for_logs("listener closed", 1);
    server.signal(SIGTERM);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(128 + SIGTERM), "{}", server.stderr());
    assert!(server.stderr().contains("second signal"), "{}", server.stderr());
}

/// SIGTERM stops the process that got it, every time, even when another `--reuse-port`
/// server shares the port; the other one keeps serving and sees nothing of it.
#[test]
fn sigterm_stops_only_its_own_server_when_the_port_is_shared() {
    let poem = BinaryPoem::new(64);
    let args = ["--reuse-port", "--delay", "0", "--shutdown-grace", "2", "--log-format", "json"];
    let other = Binary::launch(poem.path()).args(&args).start();
    for round in 1..=8 {
        let mut server = Binary::launch(poem.path()).port(other.addr.port()).args(&args).start();
        server.signal(SIGTERM);
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(0), "round {round}: {}", server.stderr());
        // With the signalled server gone, every connect reaches the other one.
        other.fetch_exact(&poem.bytes);
        let served = other.wait_for_events("connection ended", round).len();
        assert_eq!(
            served,
            round,
            "round {round}: the other server saw a connection it was not sent:\n{}",
            other.stderr()
        );
    }
}

/// At a stop, every connection still waiting in the listen backlog is closed unserved, counted
/// and logged, even when the backlog holds more than the open-file limit allows at once (each
/// is closed before the next is taken): no client is reset unseen. Before the fix, with
/// `ulimit -n 1024`, `--workers 100` and 2,500 clients, 1,485 were reset and never counted.
#[test]
fn a_stop_ends_a_backlog_larger_than_the_open_file_limit() {
    // Within the smallest listen backlog a current kernel allows (somaxconn 4096 since 5.4).
    const CLIENTS: usize = 400;
    const WORKERS: usize = 20;
    let poem = BinaryPoem::new(300);
    let mut server = Binary::launch(poem.path())
        .under_shell("ulimit -n 256")
        .args(&["--log-format", "json", "--workers", "20", "--delay", "0.5"])
        .args(&["--shutdown-grace", "1s"])
        .start();
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    server.wait_for_stats(|stats| stats["busy_workers"] == WORKERS);
    server.signal(SIGTERM);
    let endings: Vec<String> = std::thread::scope(|scope| {
        let reading: Vec<_> = (clients.into_iter())
            .map(|client| {
                scope.spawn(move || {
                    client.set_read_timeout(Some(LIMIT)).unwrap();
                    match std::io::copy(&mut &client, &mut std::io::sink()) {
                        Ok(_) => "end of file".to_string(),
                        Err(err) => err.kind().to_string(),
                    }
                })
            })
            .collect();
        reading.into_iter().map(|r| r.join().expect("a client thread")).collect()
    });
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    let unclean: Vec<&String> = endings.iter().filter(|e| *e != "end of file").collect();
    assert!(unclean.is_empty(), "{} of {CLIENTS} clients ended so: {unclean:?}", unclean.len());
    assert_eq!(server.last_stats()["accepted"], CLIENTS);
    assert_eq!(server.outcomes().len(), CLIENTS);
}

//! SIGINT and SIGTERM: stop accepting at once, let poems in flight finish within the grace
//! period, then exit 0 with a summary; a second signal exits at once.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{BinaryPoem, LIMIT, Server, read_to_end};

const SIGINT: i32 = libc::SIGINT;
const SIGTERM: i32 = libc::SIGTERM;

/// Asserts that connecting to the server is refused now.
#[track_caller]
fn assert_refused(server: &Server) {
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
    let mut server = Server::launch(poem.path())
        .args(&[
            "--num-bytes",
            "10",
            "--delay",
            "0.1",
            "--log-format",
            "json",
        ])
        .start();
    let client = server.start_streaming(10);
    server.signal(SIGTERM);
    server.wait_for_message("listener closed");
    assert_refused(&server);
    let got = client.finish().expect("the rest of the poem");
    server.assert_bytes(&got, &poem.bytes);
    let status = server.wait_exit(LIMIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let stats = server.last_stats();
    for (field, value) in [
        ("accepted", 1),
        ("complete", 1),
        ("aborted", 0),
        ("bytes_sent", 100),
    ] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
}

/// Shutdown works while the accept loop is blocked waiting for a free worker: the listener
/// still closes at once, and the queued client is served within the grace period.
#[test]
fn shutdown_with_every_worker_busy() {
    let poem = BinaryPoem::new(100);
    let mut server = Server::launch(poem.path())
        .args(&["--workers", "1", "--num-bytes", "10", "--delay", "0.05"])
        .args(&["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .start();
    let first = server.start_streaming(10);
    let queued = server.connect(); // fills the queue (capacity 1)
    let waiting = server.connect(); // held by the accept loop, which now waits for room
    server.wait_for_events("accepted", 3);
    server.signal(SIGTERM);
    server.wait_for_message("listener closed");
    assert_refused(&server);
    let got = first.finish().expect("first client");
    server.assert_bytes(&got, &poem.bytes);
    let fetch = read_to_end(queued, Instant::now()).expect("queued client");
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    // The one the accept loop held was never handed to a worker: it is closed unserved.
    let fetch = read_to_end(waiting, Instant::now());
    assert!(
        fetch.map_or(true, |f| f.bytes.is_empty()),
        "{}",
        server.stderr()
    );
    assert_eq!(
        server.wait_exit(LIMIT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    let stats = server.last_stats();
    for (field, value) in [("accepted", 3), ("complete", 2), ("aborted", 1)] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
}

/// When the grace period runs out, what still streams is closed, logged with the outcome
/// `shutdown`, and counted as aborted; the server exits 0.
#[test]
fn the_grace_period_bounds_shutdown() {
    let poem = BinaryPoem::new(300); // 30 chunks at 1 s: half a minute if nothing cut it short
    let mut server = Server::launch(poem.path())
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
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        server.stderr()
    );
    let cut_off = server.wait_for_message("grace period over");
    assert_eq!(cut_off["cut_off"], 1, "{cut_off}");
    assert_eq!(server.outcomes(), ["shutdown"], "{}", server.stderr());
    let stats = server.last_stats();
    for (field, value) in [
        ("accepted", 1),
        ("complete", 0),
        ("aborted", 1),
        ("shutdown", 1),
    ] {
        assert_eq!(stats[field], value, "{field} in {stats}");
    }
    // The client sees its connection end early, not hang.
    let got = client.finish().map_or(10, |got| got.len());
    assert!(
        got < 300,
        "all {got} bytes arrived, though the grace ran out"
    );
}

/// A connection whose write is blocked on a client that reads nothing is cut off when the
/// grace ends too, and logged, instead of holding the exit for the whole write timeout.
#[test]
fn the_grace_period_cuts_off_a_blocked_write() {
    let poem = BinaryPoem::new(32 << 20); // far more than the socket buffers hold
    let mut server = Server::launch(poem.path())
        .args(&[
            "--delay",
            "0",
            "--write-timeout",
            "60",
            "--shutdown-grace",
            "0.5",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "debug")
        .start();
    let staller = server.connect(); // never reads
    server.wait_for_events("accepted", 1);
    server.signal(SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert_eq!(server.outcomes(), ["shutdown"], "{}", server.stderr());
    drop(staller);
}

/// A second signal ends the server at once, with the conventional 128 + signal status.
#[test]
fn a_second_signal_exits_at_once() {
    let poem = BinaryPoem::new(300);
    let mut server = Server::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "1"])
        .start();
    let _client = server.start_streaming(10);
    server.signal(SIGINT);
    server.wait_for_log("listener closed");
    server.signal(SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(128 + SIGTERM), "{}", server.stderr());
    assert!(
        server.stderr().contains("second signal"),
        "{}",
        server.stderr()
    );
}

/// SIGTERM stops the process that got it, every time, even when another `--reuse-port`
/// server shares the port; the other one keeps serving and sees nothing of it.
#[test]
fn sigterm_stops_only_its_own_server_when_the_port_is_shared() {
    let poem = BinaryPoem::new(64);
    let args = [
        "--reuse-port",
        "--delay",
        "0",
        "--shutdown-grace",
        "2",
        "--log-format",
        "json",
    ];
    let other = Server::launch(poem.path()).args(&args).start();
    for round in 1..=8 {
        let mut server = Server::launch(poem.path())
            .port(other.addr.port())
            .args(&args)
            .start();
        server.signal(SIGTERM);
        let status = server.wait_exit(Duration::from_secs(5));
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

//! The faults of the connect and the close, faults scripted per connection, and changes to
//! them while the server runs, as Rust's own client stack meets them. (Python, nc and curl
//! meet them in `tests/tools`.)

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use poetry_serve::script::Script;
use poetry_serve::{Behaviour, Config, Fault, Outcome, Pacing};

use crate::common::{Binary, BinaryPoem, InProcess, LIMIT, Target, ms, read_to_end};

/// A poem of 300 bytes, served unpaced.
fn unpaced(poem: &BinaryPoem) -> Config {
    let mut config = Config::new(poem.path());
    config.pacing.delay = Duration::ZERO;
    config
}

/// With --accept-delay, a client's connect succeeds at once (the kernel completes the
/// handshake), a read timeout shorter than the delay expires with nothing read, and the poem
/// comes no sooner than the delay; the wait shows in the backlog-wait histogram.
#[test]
fn an_accept_delay_holds_the_first_byte_not_the_connect() {
    let poem = BinaryPoem::new(300);
    let mut config = unpaced(&poem);
    config.faults.accept_delay = ms(1500);
    let server = InProcess::start(config);
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&server.addr(), LIMIT).expect("connect");
    // Connected, and held: accepted and queued, not served.
    server.wait_tally("the connection held", |t| (t.accepted, t.queued, t.busy) == (1, 1, 0));
    stream.set_read_timeout(Some(ms(300))).unwrap();
    let err = stream.read(&mut [0u8; 16]).expect_err("nothing to read yet");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let fetch = read_to_end(stream, started);
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    assert!(fetch.first_byte() >= ms(1500), "first byte after {:?}", fetch.first_byte());
    let waits = server.handle.counters().backlog_waits.buckets();
    let over_a_second: u64 = (waits.iter()).filter(|(bound, _)| *bound > 1.0).map(|b| b.1).sum();
    assert_eq!(over_a_second, 1, "{waits:?}");
    // The hold is the connection's wait, not part of its time served (unpaced: moments).
    server.wait_ended(Outcome::Complete, 1);
    let counters = server.handle.counters();
    let (served, waited) = (counters.durations.sum(), counters.backlog_waits.sum());
    assert!(served < waited, "the hold counted in the connection's duration: {served} s");
}

/// A stop while --accept-delay holds a connection ends it at once, unserved, counted as
/// shutdown; its client sees the end of the connection.
#[test]
fn a_stop_ends_a_held_connection() {
    let poem = BinaryPoem::new(300);
    let mut config = unpaced(&poem);
    config.faults.accept_delay = ms(60_000);
    let server = InProcess::start(config);
    let stream = server.connect();
    server.wait_tally("the connection held", |t| t.queued == 1);
    let handle = server.handle.clone();
    server.stop();
    let tally = handle.counters().tally();
    assert_eq!((tally.accepted, tally.queued, tally.ended(Outcome::Shutdown)), (1, 0, 1));
    let fetch = read_to_end(stream, Instant::now());
    assert_eq!((fetch.bytes.len(), fetch.ended), (0, Ok(())));
}

/// With --blackhole, the backlog holds one connection (on Linux, a backlog of 0 still admits
/// one); every connect after it gets no answer, and `connect_timeout` times out. Nothing is
/// ever accepted.
#[test]
fn a_black_hole_lets_one_connect_through_then_none() {
    let poem = BinaryPoem::new(300);
    let mut config = unpaced(&poem);
    config.blackhole = true;
    let server = InProcess::start(config);
    let first = TcpStream::connect_timeout(&server.addr(), ms(1000)).expect("the first connects");
    for _ in 0..2 {
        let started = Instant::now();
        let err = TcpStream::connect_timeout(&server.addr(), ms(500)).expect_err("no answer");
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= ms(500), "refused at once, not timed out: {err}");
    }
    first.set_read_timeout(Some(ms(300))).unwrap();
    let err = (&first).read(&mut [0u8; 16]).expect_err("nothing is served");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    assert_eq!(server.tally().accepted, 0);
    assert_eq!(server.handle.backlog().map(|(waiting, _)| waiting), Some(1));
}

/// With --close-delay, the whole poem arrives at once, and its end (EOF) only after the
/// delay; the close is counted.
#[test]
fn a_close_delay_holds_the_end_after_the_last_byte() {
    let poem = BinaryPoem::new(300);
    let mut config = unpaced(&poem);
    config.faults.close_delay = ms(1000);
    let server = InProcess::start(config);
    let fetch = server.fetch_exact(&poem.bytes);
    let last_byte = fetch.arrivals.last().expect("bytes arrived").0;
    // The delay runs from the server's last write; the client reads that byte a little later.
    assert!(fetch.elapsed >= ms(1000), "EOF after {:?}", fetch.elapsed);
    assert!(
        fetch.elapsed >= last_byte + ms(900),
        "EOF {:?}, last byte {last_byte:?}",
        fetch.elapsed
    );
    server.wait_ended(Outcome::Complete, 1);
    assert_eq!(server.handle.counters().closes_delayed(), 1);
}

/// Fetches the poem, retrying when the connection is reset, up to five tries; returns what the
/// last try received and how many tries it took.
fn fetch_with_retries(server: &impl Target) -> (Vec<u8>, usize) {
    for attempt in 1..=5 {
        // A reset may come as the connect returns, or at the first read.
        let fetch = server.try_fetch();
        if fetch.ended.is_ok() {
            return (fetch.bytes, attempt);
        }
        assert_eq!(fetch.ended, Err(ErrorKind::ConnectionReset), "try {attempt}");
    }
    panic!("five tries, five resets");
}

/// "The first two reset, then serve": a retrying client gets the poem on its third try, and
/// every client after it on its first.
#[test]
fn a_retrying_client_succeeds_on_the_third_try() {
    let poem = BinaryPoem::new(300);
    let script: Script = toml::from_str(
        "[[connection]]\nnumbers = \"1-2\"\nfault = { refuse = true }\n", // the first two reset
    )
    .unwrap();
    let mut config = unpaced(&poem);
    config.faults = script.behaviour(config.pacing).unwrap().faults;
    let server = InProcess::start(config);
    let (bytes, tries) = fetch_with_retries(&server);
    server.assert_bytes(&bytes, &poem.bytes);
    assert_eq!(tries, 3);
    assert_eq!(fetch_with_retries(&server).1, 1);
    server.wait_ended(Outcome::Fault(Fault::Refuse), 2);
}

/// The example script in docs/testing.md runs as it says: the first two connections are
/// reset, then every third from the fourth (4, 7) stalls after 100 bytes, and the rest are
/// served whole.
#[test]
fn the_documented_script_does_what_it_says() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/testing.md"))
        .expect("docs/testing.md");
    let example = docs.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next());
    let example = example.expect("a ```toml block in docs/testing.md");
    let file = crate::common::poem_file(example.as_bytes());
    let (poem, bytes) = crate::common::shipped("science.txt");
    let server = Binary::launch(&poem)
        .args(&["--faults", &file.path().to_string_lossy(), "--log-format", "json"])
        .start();
    for number in 1..=7 {
        match number {
            1 | 2 => {
                let fetch = server.try_fetch();
                assert_eq!(fetch.ended, Err(ErrorKind::ConnectionReset), "connection {number}");
            }
            4 | 7 => {
                // 100 bytes, then nothing: a read with a short timeout finds nothing more.
                let mut stream = server.connect();
                let mut head = [0u8; 100];
                stream.read_exact(&mut head).expect("the first 100 bytes");
                assert_eq!(&head[..], &bytes[..100]);
                stream.set_read_timeout(Some(ms(400))).unwrap();
                let err = stream.read(&mut [0u8; 16]).expect_err("a stall");
                assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
            }
            _ => server.assert_bytes(&server.fetch().bytes, &bytes),
        }
    }
    let refused = server.wait_for_outcome("refused", 2);
    let numbers: Vec<_> = refused.iter().map(|event| event["number"].as_u64()).collect();
    assert_eq!(numbers, [Some(1), Some(2)]);
}

/// A change through the handle reaches every connection accepted after it, and none in
/// flight; going back restores what the server started with.
#[test]
fn a_change_reaches_new_connections_and_spares_those_in_flight() {
    let poem = BinaryPoem::new(300);
    let mut config = Config::new(poem.path());
    config.pacing = Pacing::new(NonZeroUsize::new(100).unwrap(), ms(200));
    let server = InProcess::start(config);
    let in_flight = server.start_streaming(100);
    let started = server.handle.behaviour();
    let mut refusing = Behaviour::clone(&started);
    refusing.faults.fault = Some((Fault::Refuse, 0));
    server.handle.change(refusing).expect("a valid change");
    let fetch = server.try_fetch();
    assert_eq!((fetch.bytes.len(), fetch.ended), (0, Err(ErrorKind::ConnectionReset)));
    let rest = in_flight.finish();
    server.assert_bytes(&rest.bytes, &poem.bytes);
    // A change that does not check is refused, and nothing changes.
    let mut bad = Behaviour::clone(&started);
    bad.pacing.jitter = ms(150);
    let invalid = server.handle.change(bad).expect_err("jitter above half the delay");
    assert_eq!(invalid.option, "jitter");
    assert_eq!(server.handle.behaviour().faults.fault, Some((Fault::Refuse, 0)));
    server.handle.restore();
    server.fetch_exact(&poem.bytes);
}

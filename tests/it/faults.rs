//! Misbehaving on purpose: jitter, varying chunk sizes and faults, each reproducible with a
//! seed, each ending only its own connection.

use std::io::ErrorKind;
use std::num::NonZeroUsize;
use std::time::Duration;

use poetry_serve::{Config, Fault, Faults, Outcome, Pacing};

use crate::common::{Binary, BinaryPoem, InProcess, Target, ms, poem_file};

/// `poem` served unpaced with `fault` after its byte count, to `rate` of the connections.
fn faulted(poem: &std::path::Path, fault: (Fault, u64), rate: f64, seed: u64) -> Config {
    let mut config = Config::new(poem);
    config.pacing.delay = Duration::ZERO;
    config.faults = Faults { fault: Some(fault), rate, seed: Some(seed), ..Faults::default() };
    config
}

/// With a jitter the pauses vary around the delay, and no chunk comes before its deadline
/// allows. (That the deadlines do not drift is the pacing's unit test.)
#[test]
fn jitter_varies_the_pauses() {
    let poem = BinaryPoem::new(200); // 20 chunks of 10 bytes, 100 ms apart: 1.9 s
    let mut config = Config::new(poem.path());
    config.pacing.delay = ms(100);
    config.pacing.jitter = ms(40);
    config.faults.seed = Some(7);
    let server = InProcess::start(config);
    let fetch = server.fetch_exact(&poem.bytes);
    let mut arrived = Vec::new(); // when each whole chunk had arrived
    for &(at, total) in &fetch.arrivals {
        while arrived.len() < total / 10 {
            arrived.push(at);
        }
    }
    for (k, &at) in arrived.iter().enumerate() {
        let nominal = ms(100 * k as u64);
        assert!(at + ms(40) >= nominal, "chunk {k} early: {arrived:?}");
    }
    let gaps: Vec<i64> = (arrived.windows(2)).map(|w| (w[1] - w[0]).as_millis() as i64).collect();
    let varied = gaps.iter().filter(|&&g| (g - 100).abs() > 10).count();
    assert!(varied >= 3, "the pauses hardly vary: {gaps:?}");
}

/// With a largest chunk each chunk's size is drawn between the bounds.
#[test]
fn chunk_sizes_vary_between_the_bounds() {
    let poem = BinaryPoem::new(600);
    let mut config = Config::new(poem.path());
    let five = NonZeroUsize::new(5).unwrap();
    config.pacing =
        Pacing { chunk_max: NonZeroUsize::new(50).unwrap(), ..Pacing::new(five, ms(50)) };
    let server = InProcess::start(config);
    let fetch = server.fetch_exact(&poem.bytes);
    let sizes: Vec<usize> = (fetch.arrivals.iter())
        .scan(0, |before, &(_, total)| Some(total - std::mem::replace(before, total)))
        .collect();
    // A read may hold two chunks on a busy machine, but with fixed 5-byte chunks every read
    // would be a multiple of 5.
    assert!(sizes.iter().any(|n| n % 5 != 0), "every read a multiple of 5: {sizes:?}");
    assert!(sizes.iter().any(|&n| n > 10), "no big chunk: {sizes:?}");
}

/// --close-after cuts the poem short with a clean close, counted as cut_short.
#[test]
fn close_after_ends_the_poem_early_and_cleanly() {
    let poem = BinaryPoem::new(1000);
    let server = InProcess::start(faulted(poem.path(), (Fault::Close, 100), 1.0, 1));
    server.fetch_exact(&poem.bytes[..100]);
    let tally = server.wait_ended(Outcome::Fault(Fault::Close), 1);
    assert_eq!(tally.ended(Outcome::Complete), 0, "{tally:?}");
}

/// --reset-after delivers that many bytes, then resets the connection.
#[test]
fn reset_after_resets_once_the_bytes_are_delivered() {
    let poem = BinaryPoem::new(1000);
    let server = InProcess::start(faulted(poem.path(), (Fault::Reset, 100), 1.0, 1));
    // A blocking connect returns with the handshake, before the server can send anything: a
    // connect that polls (connect_timeout) may find the reset already there, on a slow machine,
    // and fail with the 100 bytes unread.
    let stream = std::net::TcpStream::connect(server.addr()).expect("connect");
    stream.set_read_timeout(Some(crate::common::LIMIT)).unwrap();
    let fetch = crate::common::read_to_end(stream, std::time::Instant::now());
    assert_eq!(fetch.ended, Err(ErrorKind::ConnectionReset), "{}", server.story());
    server.assert_bytes(&fetch.bytes, &poem.bytes[..100]);
    server.wait_ended(Outcome::Fault(Fault::Reset), 1);
}

/// A reset waiting for a client that stopped reading to take its bytes ends at the stop's
/// cut-off, counted and logged as shutdown, like every other connection.
#[test]
fn a_reset_waiting_for_delivery_ends_at_the_cut_off() {
    let poem = BinaryPoem::new(4 << 20);
    let mut config = faulted(poem.path(), (Fault::Reset, 3 << 20), 1.0, 1);
    config.shutdown_grace = Duration::ZERO;
    let server = InProcess::start(config);
    let _reads_nothing = server.connect();
    server.wait_tally("the poem streaming", |t| t.busy == 1);
    // Wait until the poem is written up to the fault and the worker waits for its delivery.
    crate::common::eventually(
        "3 MiB written",
        || server.story(),
        || {
            let views = server.handle.connections();
            views.first().filter(|view| view.bytes == 3 << 20).map(|_| ())
        },
    );
    let handle = server.handle.clone();
    server.stop();
    let tally = handle.counters().tally();
    assert_eq!((tally.busy, tally.ended(Outcome::Shutdown)), (0, 1), "{tally:?}");
}

/// --stall-after sends that many bytes, then nothing until the write timeout ends it; the
/// other connections are served meanwhile.
#[test]
fn stall_after_holds_the_connection_then_closes() {
    let poem = BinaryPoem::new(1000);
    let mut config = faulted(poem.path(), (Fault::Stall, 50), 0.5, 5);
    config.write_timeout = Duration::from_secs(1);
    config.workers = NonZeroUsize::new(4).unwrap();
    let server = InProcess::start(config);
    let mut stalled = 0;
    for fetch in server.fetch_many(8) {
        if fetch.bytes.len() == 50 {
            stalled += 1;
            server.assert_bytes(&fetch.bytes, &poem.bytes[..50]);
            // Nothing after the 50th byte until the stall ends, a second later.
            let last = fetch.arrivals.last().map_or(Duration::ZERO, |&(at, _)| at);
            assert!(fetch.elapsed - last >= ms(800), "{fetch:?}");
        } else {
            server.assert_bytes(&fetch.bytes, &poem.bytes);
        }
    }
    assert!(stalled > 0 && stalled < 8, "{stalled} of 8 stalled");
    server.wait_ended(Outcome::Fault(Fault::Stall), stalled);
}

/// --refuse resets each connection at once, sending nothing: the client sees ECONNRESET (as
/// it reads, or already as its connect returns), not the end of file a clean close would give.
#[test]
fn refuse_resets_at_once() {
    let poem = poem_file(b"never sent\n");
    let server = InProcess::start(faulted(poem.path(), (Fault::Refuse, 0), 1.0, 1));
    for _ in 0..20 {
        let fetch = server.try_fetch();
        assert!(fetch.bytes.is_empty(), "{} bytes sent", fetch.bytes.len());
        assert_eq!(fetch.ended, Err(ErrorKind::ConnectionReset), "{}", server.story());
    }
    server.wait_ended(Outcome::Fault(Fault::Refuse), 20);
}

/// The same seed faults the same connections, in accept order, run after run; the others get
/// the whole poem byte for byte.
#[test]
fn a_seed_repeats_which_connections_are_faulted() {
    let poem = BinaryPoem::new(300);
    let pattern = |seed| -> Vec<usize> {
        let server = InProcess::start(faulted(poem.path(), (Fault::Close, 10), 0.5, seed));
        (0..16)
            .map(|_| {
                let got = server.fetch().bytes;
                assert!(got == poem.bytes || got == poem.bytes[..10], "{} bytes", got.len());
                got.len()
            })
            .collect()
    };
    let first = pattern(11);
    assert!(first.contains(&10) && first.contains(&300), "{first:?}");
    assert_eq!(first, pattern(11));
}

/// The faults are counted in the stats line under their outcomes; without a fault flag the
/// stats line has no fault fields at all.
#[test]
fn the_stats_line_shows_fault_outcomes_only_when_faults_are_played() {
    let poem = poem_file(b"a poem\n");
    let plain = Binary::launch(poem.path()).args(&["--delay", "0", "--log-format", "json"]).start();
    plain.fetch_exact(b"a poem\n");
    let stats = plain.wait_for_stats(|stats| stats["complete"] == 1);
    for field in Fault::ALL.map(Fault::label) {
        assert!(stats.get(field).is_none(), "{field} in {stats}");
    }
    let faulty = Binary::launch(poem.path())
        .args(&["--delay", "0", "--close-after", "2", "--log-format", "json"])
        .start();
    faulty.fetch_exact(b"a ");
    let stats = faulty.wait_for_stats(|stats| stats["cut_short"] == 1);
    for outcome in Outcome::all() {
        assert!(stats.get(outcome.label()).is_some(), "{} missing: {stats}", outcome.label());
    }
}

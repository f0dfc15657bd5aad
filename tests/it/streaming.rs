//! What a client receives: every byte of the file, on schedule, over IPv4 and IPv6.

use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use poetry_serve::{Config, Outcome, Pacing};

use crate::common::{
    Binary, BinaryPoem, InProcess, Target, binary_bytes, ms, poem_file, poem_in_dir, read_to_end,
    shipped,
};

/// A configuration serving `poem` in chunks of `chunk` bytes, `delay` apart.
fn paced(poem: &std::path::Path, chunk: usize, delay: Duration) -> Config {
    let chunk = NonZeroUsize::new(chunk).expect("a chunk of at least a byte");
    Config { pacing: Pacing::new(chunk, delay), ..Config::new(poem) }
}

/// A shipped text poem arrives byte for byte through the paced path, and is counted whole.
#[test]
fn text_poem_arrives_exactly() {
    let (path, bytes) = shipped("science.txt");
    let server = InProcess::start(paced(&path, 7, ms(1)));
    server.fetch_exact(&bytes);
    let tally = server.wait_ended(Outcome::Complete, 1);
    assert_eq!(server.handle.counters().bytes(), bytes.len() as u64, "{tally:?}");
}

/// Binary data (every byte value) arrives exactly, paced and unpaced, small and large.
#[test]
fn binary_poem_arrives_exactly() {
    let poem = BinaryPoem::new(4099);
    InProcess::start(paced(poem.path(), 1000, ms(1))).fetch_exact(&poem.bytes);
    let poem = BinaryPoem::new(3 << 20);
    InProcess::start(paced(poem.path(), 10, Duration::ZERO)).fetch_exact(&poem.bytes);
}

/// An empty file gives a clean close with nothing in it.
#[test]
fn empty_poem_closes_cleanly() {
    let poem = poem_file(b"");
    let server = InProcess::start(Config::new(poem.path()));
    server.fetch_exact(b"");
    server.wait_ended(Outcome::Complete, 1);
    assert_eq!(server.handle.counters().bytes(), 0);
}

/// Chunks leave on the deadline schedule: no chunk arrives before its time, 40 chunks of 10
/// bytes at 50 ms take at least 1.95 s, and each is counted as a paced chunk.
#[test]
fn chunks_are_paced_on_schedule() {
    let poem = BinaryPoem::new(400);
    let server = InProcess::start(paced(poem.path(), 10, ms(50)));
    let fetch = server.fetch_exact(&poem.bytes);
    // The client starts its clock before connecting, the server after accepting, so chunk k
    // can never arrive sooner than k × 50 ms after the client's start.
    for &(at, total) in &fetch.arrivals {
        let last_chunk = (total - 1) / 10;
        assert!(
            at >= ms(50) * last_chunk as u32,
            "byte {total} arrived at {at:?}, before chunk {last_chunk} was due: {:?}",
            fetch.arrivals
        );
    }
    assert!(fetch.elapsed >= ms(1950), "too fast: {:?}", fetch.elapsed);
    server.wait_ended(Outcome::Complete, 1);
    let chunks: u64 = server.handle.counters().lateness.buckets().iter().map(|b| b.1).sum();
    assert_eq!(chunks, 40);
}

/// A chunk that goes out late does not push back the ones after it: the schedule counts from
/// the connection's start, so chunks that fell due while the first waited are each as late as
/// their deadline is old. A schedule that waited a delay after each write would have sent every
/// later chunk on its (moved) time.
#[test]
fn a_late_chunk_does_not_delay_the_rest() {
    // 4 chunks of 16 MiB, 0.5 s apart, due at 0, 0.5, 1 and 1.5 s. The client reads nothing
    // for 2 s, far more than the socket buffers hold, so chunk 1 cannot leave before 2 s: it is
    // at least 1.5 s late, chunk 2 at least 1 s and chunk 3 at least 0.5 s.
    let poem = BinaryPoem::new(64 << 20);
    let server = InProcess::start(paced(poem.path(), 16 << 20, ms(500)));
    let started = Instant::now();
    let stream = server.connect();
    thread::sleep(Duration::from_secs(2));
    let fetch = read_to_end(stream, started);
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    server.wait_ended(Outcome::Complete, 1);
    let late = server.handle.counters().lateness.sum();
    assert!(late >= 2.9, "chunks {late:.3} s late in all: the schedule moved with the writes");
}

/// With --delay 0 the poem is not cut into --num-bytes writes: a 3 MiB poem at the default
/// 10-byte chunk takes a handful of writes, not 300,000, and none is counted as late.
#[test]
fn zero_delay_is_unpaced() {
    let poem = BinaryPoem::new(3 << 20);
    let server =
        Binary::launch(poem.path()).args(&["--delay", "0", "--log-format", "json"]).start();
    server.fetch_exact(&poem.bytes);
    let ended = &server.wait_for_events("connection ended", 1)[0];
    assert_eq!([&ended["bytes"], &ended["chunks"]], [3 << 20, 3], "{ended}");
}

/// The server listens on IPv6 loopback, and serves clients there.
#[test]
fn ipv6_loopback() {
    let (path, bytes) = shipped("fascination.txt");
    let config =
        Config { listen: vec!["[::1]:0".parse().unwrap()], ..paced(&path, 10, Duration::ZERO) };
    let server = InProcess::start(config);
    assert_eq!(server.addr().ip().to_string(), "::1");
    server.fetch_exact(&bytes);
}

/// A poem file truncated while it is served ends that poem early with a clean close; one
/// deleted while served is still sent whole (the server holds it open). Neither stops the
/// server.
#[test]
fn poem_file_truncated_or_deleted_while_served() {
    let bytes = binary_bytes(400);
    let (_dir, path) = poem_in_dir(&bytes);
    let server = InProcess::start(paced(&path, 10, ms(20)));

    // Truncated to 100 bytes while the first client is at about byte 10.
    let client = server.start_streaming(10);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(100).unwrap();
    let got = client.finish();
    assert_eq!(got.ended, Ok(()), "a clean end, not a reset");
    server.assert_bytes(&got.bytes, &bytes[..100]);
    // The next client gets the shorter file.
    server.fetch_exact(&bytes[..100]);

    // Deleted while the next client is mid-poem: it still gets all 100 bytes.
    let client = server.start_streaming(10);
    std::fs::remove_file(&path).unwrap();
    server.assert_bytes(&client.finish().bytes, &bytes[..100]);
    // And the server, holding the file open, serves it to newcomers too.
    server.fetch_exact(&bytes[..100]);
}

/// The highest resident memory process `pid` has had (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    (status.lines())
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// With `--num-bytes` (or a PUT to `--control`) above the poem's size, a connection holds a
/// buffer of at most 1 MiB, as an unpaced one does, not the whole poem. Before the fix each
/// client of a 16 MiB poem made the server hold 16 MiB (8 at once, 128 MiB; under `ulimit -v`
/// the allocation failed and the process aborted). The peak of resident memory shows it after
/// the fact, whenever it happened.
#[test]
fn a_chunk_larger_than_the_poem_does_not_hold_the_poem() {
    let poem = BinaryPoem::new(16 << 20);
    let server = Binary::launch(poem.path())
        .args(&["--log-format", "json", "--num-bytes", "1000000000", "--delay", "1h"])
        .start();
    let before = peak_rss_kib(server.pid());
    server.fetch_exact(&poem.bytes);
    let grown = peak_rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 8 * 1024, "a 16 MiB chunk raised the peak RSS by {grown} KiB");
}

//! Misbehaving on purpose: jitter, varying chunk sizes and faults, each reproducible with
//! --seed, each ending only its own connection.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{BinaryPoem, LIMIT, Server, poem_file};

/// What one client saw: the bytes, each read's size and time, and how it ended.
struct Seen {
    bytes: Vec<u8>,
    reads: Vec<(Duration, usize)>,
    ended: Result<(), ErrorKind>,
}

fn watch(mut stream: TcpStream) -> Seen {
    let started = Instant::now();
    let (mut bytes, mut reads) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    let ended = loop {
        assert!(started.elapsed() < LIMIT, "no end within the limit");
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                reads.push((started.elapsed(), n));
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => break Err(err.kind()),
        }
    };
    Seen {
        bytes,
        reads,
        ended,
    }
}

/// With --jitter the pauses vary around --delay, yet the poem ends on time: chunk k arrives
/// within the jitter of k × delay (plus room for a loaded machine), never drifting.
#[test]
fn jitter_varies_the_pauses_without_drift() {
    let poem = BinaryPoem::new(200); // 20 chunks of 10 bytes, 100 ms apart: 1.9 s
    let server = Server::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "100ms", "--jitter", "40ms"])
        .args(&["--seed", "7"])
        .start();
    let seen = watch(server.connect());
    server.assert_bytes(&seen.bytes, &poem.bytes);
    let mut arrived = Vec::new(); // when each whole chunk had arrived
    let mut total = 0;
    for &(at, n) in &seen.reads {
        total += n;
        while arrived.len() < total / 10 {
            arrived.push(at);
        }
    }
    let story = format!("chunk arrivals: {arrived:?}");
    for (k, &at) in arrived.iter().enumerate() {
        let nominal = Duration::from_millis(100 * k as u64);
        // Never earlier than the jitter allows; late only by what a busy machine adds.
        assert!(
            at + Duration::from_millis(40) >= nominal,
            "chunk {k} early: {story}"
        );
        assert!(
            at < nominal + Duration::from_millis(540),
            "chunk {k} late: {story}"
        );
    }
    let gaps: Vec<i64> = arrived
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as i64)
        .collect();
    let varied = gaps.iter().filter(|&&g| (g - 100).abs() > 10).count();
    assert!(varied >= 3, "the pauses hardly vary: {gaps:?}");
}

/// With --num-bytes-max each chunk's size is drawn between the bounds.
#[test]
fn chunk_sizes_vary_between_the_bounds() {
    let poem = BinaryPoem::new(600);
    let server = Server::launch(poem.path())
        .args(&[
            "--num-bytes",
            "5",
            "--num-bytes-max",
            "50",
            "--delay",
            "50ms",
        ])
        .start();
    let seen = watch(server.connect());
    server.assert_bytes(&seen.bytes, &poem.bytes);
    let sizes: Vec<usize> = seen.reads.iter().map(|&(_, n)| n).collect();
    // A read may hold two chunks on a busy machine, but with fixed 5-byte chunks every read
    // would be a multiple of 5.
    assert!(
        sizes.iter().any(|n| n % 5 != 0),
        "every read a multiple of 5: {sizes:?}"
    );
    assert!(sizes.iter().any(|&n| n > 10), "no big chunk: {sizes:?}");
}

/// --close-after cuts the poem short with a clean close, logged as cut_short.
#[test]
fn close_after_ends_the_poem_early_and_cleanly() {
    let poem = BinaryPoem::new(1000);
    let server = Server::launch(poem.path())
        .args(&[
            "--delay",
            "0",
            "--close-after",
            "100",
            "--log-format",
            "json",
        ])
        .start();
    let seen = watch(server.connect());
    assert_eq!(seen.ended, Ok(()), "a clean close, not a reset");
    server.assert_bytes(&seen.bytes, &poem.bytes[..100]);
    let ended = &server.wait_for_outcome("cut_short", 1)[0];
    assert_eq!(ended["bytes"], 100, "{ended}");
    let stats = server.wait_for_stats(|stats| stats["cut_short"] == 1);
    assert_eq!(stats["complete"], 0, "{stats}");
}

/// --reset-after delivers that many bytes, then resets the connection.
#[test]
fn reset_after_resets_once_the_bytes_are_delivered() {
    let poem = BinaryPoem::new(1000);
    let server = Server::launch(poem.path())
        .args(&[
            "--delay",
            "0",
            "--reset-after",
            "100",
            "--log-format",
            "json",
        ])
        .start();
    let seen = watch(server.connect());
    assert_eq!(
        seen.ended,
        Err(ErrorKind::ConnectionReset),
        "{}",
        server.stderr()
    );
    server.assert_bytes(&seen.bytes, &poem.bytes[..100]);
    server.wait_for_outcome("reset", 1);
}

/// --stall-after sends that many bytes, then nothing until --write-timeout ends it; the
/// other connections are served meanwhile.
#[test]
fn stall_after_holds_the_connection_then_closes() {
    let poem = BinaryPoem::new(1000);
    let server = Server::launch(poem.path())
        .args(&[
            "--delay",
            "0",
            "--stall-after",
            "50",
            "--write-timeout",
            "1",
        ])
        .args(&["--fault-rate", "0.5", "--seed", "5", "--workers", "4"])
        .args(&["--log-format", "json"])
        .start();
    let mut stalled = 0;
    for fetch in server.fetch_many(8) {
        let fetch = fetch.expect("a stalled or served client");
        if fetch.bytes.len() == 50 {
            stalled += 1;
            server.assert_bytes(&fetch.bytes, &poem.bytes[..50]);
            // Nothing after the 50th byte until the stall ends, after about a second.
            let last = fetch.arrivals.last().map_or(Duration::ZERO, |&(at, _)| at);
            assert!(
                fetch.elapsed - last >= Duration::from_millis(800),
                "{fetch:?}"
            );
        } else {
            server.assert_bytes(&fetch.bytes, &poem.bytes);
        }
    }
    assert!(stalled > 0 && stalled < 8, "{stalled} of 8 stalled");
    server.wait_for_stats(|stats| stats["stalled"] == stalled);
    let logged = server.wait_for_outcome("stalled", stalled).len();
    assert_eq!(logged, stalled, "{}", server.stderr());
}

/// --refuse resets each connection at once, sending nothing: the client reads ECONNRESET,
/// not the end of file a clean close would give.
#[test]
fn refuse_resets_at_once() {
    let poem = poem_file(b"never sent\n");
    let server = Server::launch(poem.path())
        .args(&["--refuse", "--log-format", "json"])
        .start();
    let seen = watch(server.connect());
    assert!(seen.bytes.is_empty(), "{} bytes sent", seen.bytes.len());
    assert_eq!(
        seen.ended,
        Err(ErrorKind::ConnectionReset),
        "{}",
        server.stderr()
    );
    server.wait_for_outcome("refused", 1);
}

/// The same seed faults the same connections, in accept order, run after run; the others
/// get the whole poem byte for byte.
#[test]
fn a_seed_repeats_which_connections_are_faulted() {
    let poem = BinaryPoem::new(300);
    let pattern = |seed: &str| -> Vec<usize> {
        let server = Server::launch(poem.path())
            .args(&["--delay", "0", "--close-after", "10", "--fault-rate", "0.5"])
            .args(&["--seed", seed])
            .start();
        (0..16)
            .map(|_| {
                let got = server.fetch().bytes;
                assert!(
                    got == poem.bytes || got == poem.bytes[..10],
                    "{} bytes",
                    got.len()
                );
                got.len()
            })
            .collect()
    };
    let first = pattern("11");
    assert!(first.contains(&10) && first.contains(&300), "{first:?}");
    assert_eq!(first, pattern("11"));
}

/// Without a fault flag nothing changes: the stats line has no fault fields.
#[test]
fn no_fault_flag_no_fault_fields() {
    let poem = poem_file(b"a poem\n");
    let server = Server::launch(poem.path())
        .args(&["--delay", "0", "--log-format", "json"])
        .start();
    server.fetch_exact(b"a poem\n");
    let stats = server.wait_for_stats(|stats| stats["complete"] == 1);
    for field in ["stalled", "cut_short", "reset", "refused"] {
        assert!(stats.get(field).is_none(), "{field} in {stats}");
    }
}

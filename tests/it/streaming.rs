//! What a client receives: every byte of the file, on schedule, over IPv4 and IPv6.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    BinaryPoem, Server, binary_bytes, poem_file, poem_in_dir, read_to_end, shipped,
};

/// A shipped text poem arrives byte for byte through the paced path.
#[test]
fn text_poem_arrives_exactly() {
    let (path, bytes) = shipped("science.txt");
    let server = Server::launch(&path)
        .args(&[
            "--num-bytes",
            "7",
            "--delay",
            "0.001",
            "--log-format",
            "json",
        ])
        .start();
    server.fetch_exact(&bytes);
    let ended = &server.wait_for_outcome("complete", 1)[0];
    assert_eq!(ended["bytes"], bytes.len(), "{ended}");
}

/// Binary data (every byte value) arrives exactly, paced and unpaced, small and large.
#[test]
fn binary_poem_arrives_exactly() {
    let poem = BinaryPoem::new(4099);
    Server::launch(poem.path())
        .args(&["--num-bytes", "1000", "--delay", "0.001"])
        .start()
        .fetch_exact(&poem.bytes);

    let poem = BinaryPoem::new(3 << 20);
    Server::launch(poem.path())
        .args(&["--delay", "0"])
        .start()
        .fetch_exact(&poem.bytes);
}

/// An empty file gives an immediate, clean close.
#[test]
fn empty_poem_closes_cleanly() {
    let poem = poem_file(b"");
    let server = Server::launch(poem.path())
        .args(&["--log-format", "json"])
        .start();
    let fetch = server.fetch_exact(b"");
    assert!(
        fetch.elapsed < Duration::from_secs(5),
        "took {:?}",
        fetch.elapsed
    );
    let ended = &server.wait_for_events("connection ended", 1)[0];
    assert_eq!([&ended["bytes"], &ended["chunks"]], [0, 0], "{ended}");
}

/// Chunks leave on the deadline schedule: 40 chunks of 10 bytes at 50 ms take 1.95 s, and no
/// chunk arrives before its time.
#[test]
fn chunks_are_paced_on_schedule() {
    let poem = BinaryPoem::new(400);
    let server = Server::launch(poem.path())
        .args(&[
            "--num-bytes",
            "10",
            "--delay",
            "0.05",
            "--log-format",
            "json",
        ])
        .start();
    let fetch = server.fetch_exact(&poem.bytes);
    let delay = Duration::from_millis(50);
    // The client starts its clock before connecting, the server after accepting, so chunk k
    // can never arrive sooner than k × 50 ms after the client's start.
    let mut seen = 0;
    for &(at, total) in &fetch.arrivals {
        let last_chunk = (total - 1) / 10;
        assert!(
            at >= delay * last_chunk as u32,
            "byte {total} arrived at {at:?}, before chunk {last_chunk} was due: {:?}",
            fetch.arrivals
        );
        seen = total;
    }
    assert_eq!(seen, 400);
    assert!(
        fetch.elapsed >= Duration::from_millis(1950),
        "too fast: {:?}",
        fetch.elapsed
    );
    // Generous: a loaded machine may run late, but not by seconds.
    assert!(
        fetch.elapsed < Duration::from_millis(4000),
        "too slow: {:?}",
        fetch.elapsed
    );
    let ended = &server.wait_for_events("connection ended", 1)[0];
    assert_eq!([&ended["bytes"], &ended["chunks"]], [400, 40], "{ended}");
}

/// A chunk that goes out late does not push back the ones after it: the schedule is counted
/// from the connection's start, so overdue chunks leave at once and the poem ends on time.
#[test]
fn a_late_chunk_does_not_delay_the_rest() {
    // 4 chunks of 16 MiB, 0.5 s apart: the last is due at 1.5 s. The client reads nothing for
    // 2 s, so the first chunk cannot leave before then (far more than the socket buffers
    // hold); the others are overdue by then and follow at once. A schedule that waited a
    // delay after each write would end at 2 s + 3 × 0.5 s = 3.5 s.
    let poem = BinaryPoem::new(64 << 20);
    let server = Server::launch(poem.path())
        .args(&["--num-bytes", &(16 << 20).to_string(), "--delay", "0.5"])
        .start();
    let started = Instant::now();
    let stream = server.connect();
    thread::sleep(Duration::from_secs(2));
    let fetch = read_to_end(stream, started).expect("the whole poem");
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    assert!(
        fetch.elapsed < Duration::from_millis(3000),
        "the late first chunk pushed the rest back: EOF at {:?}",
        fetch.elapsed
    );
}

/// With --delay 0 the poem is not cut into --num-bytes writes: a 3 MiB poem at the default
/// 10-byte chunk takes a handful of writes, not 300,000.
#[test]
fn zero_delay_is_unpaced() {
    let poem = BinaryPoem::new(3 << 20);
    let server = Server::launch(poem.path())
        .args(&["--delay", "0", "--log-format", "json"])
        .start();
    server.fetch_exact(&poem.bytes);
    let ended = &server.wait_for_events("connection ended", 1)[0];
    assert_eq!([&ended["bytes"], &ended["chunks"]], [3 << 20, 3], "{ended}");
}

/// The server listens on IPv6 loopback and says so as [::1]:port.
#[test]
fn ipv6_loopback() {
    let (path, bytes) = shipped("fascination.txt");
    let server = Server::launch(&path)
        .args(&["--iface", "::1", "--delay", "0", "--log-format", "json"])
        .start();
    assert_eq!(server.addr.ip().to_string(), "::1");
    server.fetch_exact(&bytes);
    let ended = &server.wait_for_events("connection ended", 1)[0];
    let peer = ended["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("[::1]:"), "{ended}");
}

/// A poem file truncated while it is served ends that poem early with a clean close; one
/// deleted while served is still sent whole (the server holds it open). Neither stops the
/// server.
#[test]
fn poem_file_truncated_or_deleted_while_served() {
    let bytes = binary_bytes(400);
    let (_dir, path) = poem_in_dir(&bytes);
    let server = Server::launch(&path)
        .args(&["--num-bytes", "10", "--delay", "0.02"])
        .start();

    // Truncated to 100 bytes while the first client is at about byte 10.
    let client = server.start_streaming(10);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let got = client.finish().expect("a clean end, not a reset");
    server.assert_bytes(&got, &bytes[..100]);
    // The next client gets the shorter file.
    server.fetch_exact(&bytes[..100]);

    // Deleted while the next client is mid-poem: it still gets all 100 bytes.
    let client = server.start_streaming(10);
    std::fs::remove_file(&path).unwrap();
    let got = client.finish().expect("the rest");
    server.assert_bytes(&got, &bytes[..100]);
    // And the server, holding the file open, serves it to newcomers too.
    server.fetch_exact(&bytes[..100]);
}

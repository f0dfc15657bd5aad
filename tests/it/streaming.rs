//! What a client receives: every byte of the file, on schedule, over IPv4 and IPv6.

use std::time::Duration;

use crate::common::{Server, binary_bytes, poem_file, poem_in_dir, shipped};

/// A shipped text poem arrives byte for byte through the paced path.
#[test]
fn text_poem_arrives_exactly() {
    let (path, bytes) = shipped("science.txt");
    let server = Server::start(&path, &["--num-bytes", "7", "--delay", "0.001"]);
    server.fetch_exact(&bytes);
    let log = server.wait_for_log("outcome=\"complete\"");
    assert!(log.contains(&format!("bytes={}", bytes.len())), "{log}");
}

/// Binary data (every byte value) arrives exactly, paced and unpaced, small and large.
#[test]
fn binary_poem_arrives_exactly() {
    let small = binary_bytes(4099);
    let poem = poem_file(&small);
    Server::start(poem.path(), &["--num-bytes", "1000", "--delay", "0.001"]).fetch_exact(&small);

    let large = binary_bytes(3 << 20);
    let poem = poem_file(&large);
    Server::start(poem.path(), &["--delay", "0"]).fetch_exact(&large);
}

/// An empty file gives an immediate, clean close.
#[test]
fn empty_poem_closes_cleanly() {
    let poem = poem_file(b"");
    let server = Server::start(poem.path(), &[]);
    let fetch = server.fetch_exact(b"");
    assert!(
        fetch.elapsed < Duration::from_secs(5),
        "took {:?}",
        fetch.elapsed
    );
    server.wait_for_log("bytes=0 chunks=0");
}

/// Chunks leave on the deadline schedule: 40 chunks of 10 bytes at 50 ms take 1.95 s, and no
/// chunk arrives before its time.
#[test]
fn chunks_are_paced_on_schedule() {
    let bytes = binary_bytes(400);
    let poem = poem_file(&bytes);
    let server = Server::start(poem.path(), &["--num-bytes", "10", "--delay", "0.05"]);
    let fetch = server.fetch_exact(&bytes);
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
    server.wait_for_log("bytes=400 chunks=40 ");
}

/// With --delay 0 the poem is not cut into --num-bytes writes: a 3 MiB poem at the default
/// 10-byte chunk takes a handful of writes, not 300,000.
#[test]
fn zero_delay_is_unpaced() {
    let bytes = binary_bytes(3 << 20);
    let poem = poem_file(&bytes);
    let server = Server::start(poem.path(), &["--delay", "0"]);
    server.fetch_exact(&bytes);
    server.wait_for_log("bytes=3145728 chunks=3 ");
}

/// The server listens on IPv6 loopback and says so as [::1]:port.
#[test]
fn ipv6_loopback() {
    let (path, bytes) = shipped("fascination.txt");
    let server = Server::start(&path, &["--iface", "::1", "--delay", "0"]);
    assert_eq!(server.addr.ip().to_string(), "::1");
    server.fetch_exact(&bytes);
    let log = server.wait_for_log("connection ended");
    assert!(log.contains("peer=[::1]:"), "{log}");
}

/// A poem file truncated while it is served ends that poem early with a clean close; one
/// deleted while served is still sent whole (the server holds it open). Neither stops the
/// server.
#[test]
fn poem_file_truncated_or_deleted_while_served() {
    let bytes = binary_bytes(400);
    let (_dir, path) = poem_in_dir(&bytes);
    let server = Server::start(&path, &["--num-bytes", "10", "--delay", "0.02"]);

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

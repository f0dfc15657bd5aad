//! Running it in the open: per-source limits, the PROXY protocol and a broken log pipe. Each
//! ends its own connection, never the server. (Impossible worker counts, refused at start-up,
//! are with the other bad input.)

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{Binary, BinaryPoem, Target, poem_file, read_to_end};

const OTHER_SOURCE: [u8; 4] = [127, 0, 0, 2];

/// With --max-per-source 4, one source holding ten times the limit in idle sockets cannot
/// keep a client from another source waiting: the flood's extra connections are closed
/// unserved and counted as rejected, and the other client gets its first byte at once.
#[test]
fn one_source_cannot_take_every_worker() {
    let poem = BinaryPoem::new(2000); // 200 chunks at 0.1 s: 20 s a poem
    let server = Binary::launch(poem.path())
        .args(&["--workers", "8", "--num-bytes", "10", "--delay", "0.1"])
        .args(&["--max-per-source", "4", "--log-format", "json"])
        .start();
    // None of these reads: they would hold 8 workers and 8 queue slots for 20 s.
    let flood: Vec<TcpStream> = (0..40).map(|_| server.connect()).collect();
    let started = Instant::now();
    let mut other = server.connect_from(IpAddr::from(OTHER_SOURCE));
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 10];
    other
        .read_exact(&mut first)
        .unwrap_or_else(|err| panic!("the other source waited: {err}\n{}", server.stderr()));
    assert_eq!(first, poem.bytes[..10], "{}", server.stderr());
    eprintln!("other source's first chunk after {:?}", started.elapsed());
    server.wait_for_stats(|stats| stats["rejected"] == 36);
    let summary = |event: &serde_json::Value| {
        let message = event["message"].as_str().unwrap_or_default();
        event["level"] == "WARN" && message.contains("over --max-per-source closed unserved")
    };
    server.wait_for_events_where("summing up the rejections", 1, summary);
    // A rejected connection was closed without a byte of poem; an admitted one is streaming.
    let rejected = flood
        .into_iter()
        .filter(|mut stream| {
            let mut buf = [0u8; 10];
            matches!(stream.read(&mut buf), Ok(0) | Err(_))
        })
        .count();
    assert_eq!(rejected, 36, "{}", server.stderr());
}

/// The PROXY v1 header's client is the peer in the log, and the balancer is logged beside it.
#[test]
fn proxy_v1_names_the_client() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--log-format", "json"])
        .start();
    let ended = fetch_behind(
        &server,
        &poem,
        &[
            b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::9 ::1 51001 10000\r\n".to_vec(),
        ],
    );
    assert_eq!(
        peers(&ended),
        [Some("203.0.113.9:51000"), Some("[2001:db8::9]:51001")],
        "{}",
        server.stderr()
    );
    for event in &ended {
        let via = event["via"].as_str().unwrap_or_default();
        assert!(via.starts_with("127.0.0.1:"), "the balancer: {event}");
    }
}

/// Sends each PROXY header on a connection of its own, checks that the poem then arrives byte
/// for byte, and returns the connections' log events.
fn fetch_behind(server: &Binary, poem: &BinaryPoem, headers: &[Vec<u8>]) -> Vec<serde_json::Value> {
    for header in headers {
        let mut client = server.connect();
        client.write_all(header).unwrap();
        let fetch = read_to_end(client, Instant::now());
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    server.wait_for_events("connection ended", headers.len())
}

/// The peers the log events name, sorted: a worker may log its connection after its client
/// has the whole poem, so the lines can come in any order.
fn peers(events: &[serde_json::Value]) -> Vec<Option<&str>> {
    let mut peers: Vec<_> = events.iter().map(|event| event["peer"].as_str()).collect();
    peers.sort();
    peers
}

/// A binary PROXY v2 header, built by hand, for a TCP client over IPv4 or IPv6.
fn proxy_v2(client: std::net::SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    let (family, addresses): (u8, Vec<u8>) = match client.ip() {
        IpAddr::V4(ip) => (0x11, [ip.octets(), [127, 0, 0, 1]].concat()),
        IpAddr::V6(ip) => (0x21, [ip.octets(), std::net::Ipv6Addr::LOCALHOST.octets()].concat()),
    };
    header.push(family); // TCP over IPv4 or IPv6
    let len = (addresses.len() + 4) as u16;
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&addresses);
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&10000u16.to_be_bytes());
    header
}

/// The PROXY v2 header's client is the peer too, IPv4 or IPv6.
#[test]
fn proxy_v2_names_the_client() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--log-format", "json"])
        .start();
    let headers = ["198.51.100.20:40000", "[2001:db8::20]:40001"]
        .map(|client| proxy_v2(client.parse().unwrap()));
    let ended = fetch_behind(&server, &poem, &headers);
    assert_eq!(
        peers(&ended),
        [Some("198.51.100.20:40000"), Some("[2001:db8::20]:40001")],
        "{}",
        server.stderr()
    );
}

/// A missing, malformed or slow header ends that connection only, with a debug line saying
/// why and a summary naming the latest; the next client with a good header is served.
#[test]
fn bad_proxy_headers_end_only_their_connection() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--workers", "2"])
        .args(&["--proxy-timeout", "300ms", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .start();
    let mut slow = server.connect();
    slow.write_all(b"PROXY TCP4 203.0.113.9").unwrap(); // and nothing more
    for garbage in [&b"GET / HTTP/1.0\r\n\r\n"[..], &[0u8; 64][..], b"PROXY TCP4 x y z w\r\n"] {
        let mut client = server.connect();
        client.write_all(garbage).unwrap();
        let got = read_to_end(client, Instant::now()).bytes.len();
        assert_eq!(got, 0, "garbage got {got} bytes of poem");
    }
    let closed_early = server.connect(); // sends nothing at all, then hangs up
    drop(closed_early);
    let mut good = server.connect();
    good.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n").unwrap();
    let fetch = read_to_end(good, Instant::now());
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    // The slow one is closed once its time is up.
    assert_eq!(read_to_end(slow, Instant::now()).bytes, b"");
    let bad = server.wait_for_outcome("bad_header", 5);
    assert!(bad.iter().all(|event| event["level"] == "DEBUG"), "{bad:?}");
    let summary =
        |event: &serde_json::Value| event["level"] == "WARN" && event["bad_header"].is_u64();
    let summaries = server.wait_for_events_where("summing up the bad headers", 1, summary);
    assert!(summaries[0]["latest"].as_str().is_some_and(|l| l.contains("PROXY")), "{summaries:?}");
    for reason in
        ["bad PROXY", "closed before any PROXY header", "no complete PROXY header within 300ms"]
    {
        let given = bad
            .iter()
            .any(|event| event["error"].as_str().is_some_and(|error| error.contains(reason)));
        assert!(given, "no {reason:?} among {bad:?}");
    }
}

/// A PROXY header may reach the server in any number of pieces: v1 and v2 headers sent one
/// byte at a time, each byte its own segment, are read whole, the poem arrives byte for
/// byte, and the log names the client each header gave.
#[test]
fn proxy_headers_sent_a_byte_at_a_time_are_read_whole() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--log-format", "json"])
        .start();
    let headers = [
        b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n".to_vec(),
        proxy_v2("198.51.100.20:40000".parse().unwrap()),
    ];
    for header in &headers {
        let mut client = server.connect();
        client.set_nodelay(true).unwrap();
        for byte in header {
            client.write_all(std::slice::from_ref(byte)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let fetch = read_to_end(client, Instant::now());
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    let ended = server.wait_for_events("connection ended", 2);
    let peers: Vec<_> = ended.iter().map(|event| &event["peer"]).collect();
    assert_eq!(peers, ["203.0.113.9:51000", "198.51.100.20:40000"], "{}", server.stderr());
    assert!(ended.iter().all(|event| event["outcome"] == "complete"), "{}", server.stderr());
}

/// A malformed PROXY header is logged (at debug level) with what was wrong with it: a v2
/// header's version, command, address family or length, a v1 line ending in LF alone.
#[test]
fn bad_proxy_headers_are_logged_with_what_was_wrong() {
    let poem = poem_file(b"never sent");
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .start();
    let good = proxy_v2("198.51.100.20:40000".parse().unwrap());
    let altered = |at: usize, value: u8| {
        let mut header = good.clone();
        header[at] = value;
        header
    };
    // Bytes 12 and 13 are version and command, family and protocol; 14 and 15 the length.
    let mut short = altered(15, 4);
    short.truncate(16 + 4);
    let cases = [
        (altered(12, 0x31), "v2 header: version 3"),
        (altered(12, 0x2f), "v2 header: command 0xf"),
        (altered(13, 0x41), "v2 header: address family 0x4"),
        (short, "v2 header: too short for its address family"),
        (
            b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\n".to_vec(),
            "v1 header: the line ends in LF alone",
        ),
    ];
    for (n, (header, says)) in cases.iter().enumerate() {
        let mut client = server.connect();
        client.write_all(header).unwrap();
        let got = read_to_end(client, Instant::now()).bytes.len();
        assert_eq!(got, 0, "{header:?} got {got} bytes of poem");
        let ended = server.wait_for_events("connection ended", n + 1);
        let event = &ended[n];
        assert_eq!(event["outcome"], "bad_header", "{event}");
        let reason = event["error"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{header:?} must say {says:?}: {event}");
    }
}

/// Behind a balancer the per-source limit counts the clients its headers name, not the
/// balancer: two clients are each held to the limit, separately.
#[test]
fn the_limit_applies_to_the_client_a_proxy_header_names() {
    let poem = BinaryPoem::new(1000); // 100 chunks at 0.1 s: 10 s a poem
    let server = Binary::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "0.1", "--proxy-protocol"])
        .args(&["--max-per-source", "1", "--log-format", "json"])
        .start();
    let open = |client: &str| {
        let mut stream = server.connect();
        stream.write_all(&proxy_v2(client.parse().unwrap())).unwrap();
        stream
    };
    let mut first = open("198.51.100.1:1000");
    let mut chunk = [0u8; 10];
    first.read_exact(&mut chunk).expect("the first client is served");
    let second = open("198.51.100.1:1001"); // same client: over the limit
    let got = read_to_end(second, Instant::now()).bytes.len();
    assert_eq!(got, 0, "{}", server.stderr());
    let mut third = open("198.51.100.2:1000"); // another client: served
    third.read_exact(&mut chunk).expect("another client is served");
    server.wait_for_stats(|stats| stats["rejected"] == 1);
    let warned = server.wait_for_events_where("naming the latest source", 1, |event| {
        event["level"] == "WARN" && event.get("latest").is_some()
    });
    assert_eq!(warned[0]["latest"], "198.51.100.1", "{}", warned[0]);
}

/// With its stderr pipe closed (a stopped `… | tee log`), every log line fails, and is counted
/// as dropped, yet the server serves every client byte for byte with its pool full, survives
/// SIGUSR1, and stops on SIGTERM with status 0.
#[test]
fn a_broken_log_pipe_stops_nothing() {
    let poem = BinaryPoem::new(100);
    let mut server = Binary::launch(poem.path())
        .args(&["--workers", "2", "--num-bytes", "10", "--delay", "0.01"])
        .args(&["--metrics", "127.0.0.1:0"])
        .stderr_closed()
        .start();
    let metrics = server.metrics_addr();
    for _ in 0..3 {
        for fetch in server.fetch_many(6) {
            server.assert_bytes(&fetch.bytes, &poem.bytes);
        }
        server.signal(libc::SIGUSR1);
    }
    // Every line was lost, and counted.
    let page = crate::common::get(metrics, "/metrics").1;
    assert!(crate::common::sample(&page, "poetry_log_lines_dropped_total") >= 18.0, "{page}");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0));
}

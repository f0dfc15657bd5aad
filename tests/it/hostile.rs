//! Nothing a client sends can stop the server: hostile requests to the metrics listener and
//! hostile PROXY headers end their own connection, and poems go on byte for byte.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use poetry_serve::ops::http::Limits;

use crate::common::{
    Binary, BinaryPoem, InProcess, LIMIT, Target, eventually, get, poem_file, sample,
};

/// The metrics listener's bound on connections one source holds at once.
const PER_SOURCE: usize = 8;

/// Sends `bytes` to `addr` and closes without waiting for an answer.
fn send_and_close(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    let _ = stream.write_all(bytes); // the server may answer and close before the end
}

/// Connects to `addr`, sends a request, and resets the connection at once (SO_LINGER of zero).
fn connect_and_reset(addr: SocketAddr) {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
}

/// How many of `what` (`fd`, `task`) the process `pid` has now.
fn count(pid: u32, what: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{what}")).map(|dir| dir.count()).unwrap_or(0)
}

/// A request announcing a body of 99,999,999,999 bytes gets its answer, and neither the server
/// nor a poem in flight notices: no client can size an allocation.
#[test]
fn a_huge_content_length_aborts_nothing() {
    let poem = BinaryPoem::new(400);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0.05", "--num-bytes", "40", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let in_flight = server.start_streaming(40);
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
    ] {
        send_and_close(metrics, request.as_bytes());
    }
    server.assert_bytes(&in_flight.finish().bytes, &poem.bytes);
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    server.fetch_exact(&poem.bytes);
}

/// Out of file descriptors, the metrics listener pauses and carries on: once poem clients
/// leave and free some, health checks are answered again.
#[test]
fn the_metrics_listener_outlives_descriptor_exhaustion() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--workers", "40", "--delay", "0.1", "--num-bytes", "1"])
        .args(&["--metrics", "127.0.0.1:0", "--log-format", "json"])
        .start();
    let metrics = server.metrics_addr();
    // Every worker serving a client that reads nothing more: 40 descriptors open, then a limit
    // below them.
    let hogs: Vec<_> = (0..40).map(|_| server.start_streaming(1)).collect();
    server.limit_open_files(32);
    // This one waits in the backlog: the metrics listener's accept fails.
    let mut waiting = TcpStream::connect_timeout(&metrics, LIMIT).expect("connect to metrics");
    waiting.set_read_timeout(Some(LIMIT)).unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    server.wait_for_message("metrics: accept failed");
    // The clients leave; their workers come back to accept, more of them than there are
    // descriptor numbers below the limit: the poem listener runs out too (a worker blocked in
    // accept holds a number), and all but one of its workers give theirs back.
    drop(hogs);
    server.wait_for_message("accept failed");
    let mut answer = String::new();
    waiting
        .read_to_string(&mut answer)
        .unwrap_or_else(|err| panic!("no answer ({err}); stderr:\n{}", server.stderr()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
}

/// Idle connections to the metrics port cost neither a thread each nor unbounded
/// descriptors: one source holds a few places, and the rest wait in the listen backlog.
#[test]
fn idle_metrics_connections_are_bounded() {
    let poem = poem_file(b"a poem\n");
    let server =
        Binary::launch(poem.path()).args(&["--workers", "4", "--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let pid = server.pid();
    let (threads, fds) = (count(pid, "task"), count(pid, "fd"));
    // Many more than one source may hold.
    let idle: Vec<TcpStream> =
        (0..150).map(|_| TcpStream::connect_timeout(&metrics, LIMIT).expect("connect")).collect();
    // The listener takes a source's share and closes each one over it as it accepts it: once
    // the backlog is empty, every place it will take is taken.
    let accepted = format!("/proc/{pid}/net/tcp");
    eventually(
        "the backlog emptied",
        || server.stderr(),
        || {
            let table = std::fs::read_to_string(&accepted).ok()?;
            let port = format!(":{:04X} ", metrics.port());
            // The listening socket's line: state 0A (LISTEN), receive queue the backlog.
            let listening = table
                .lines()
                .find(|l| l.contains(&port) && l.split_whitespace().nth(3) == Some("0A"))?;
            let queue = listening.split_whitespace().nth(4)?.split(':').nth(1)?;
            (u32::from_str_radix(queue, 16).ok()? == 0).then_some(())
        },
    );
    assert_eq!(count(pid, "task"), threads, "a thread per connection?");
    let grown = count(pid, "fd") - fds;
    assert!(grown <= PER_SOURCE + 2, "{grown} more descriptors for 150 idle connections");
    drop(idle);
    assert_eq!(crate::common::get_eventually(metrics, "/healthz"), (200, "ok\n".into()));
}

/// An idle connection to the metrics port is closed after the request timeout, and a scrape
/// works once they are gone.
#[test]
fn idle_metrics_connections_are_timed_out() {
    let poem = poem_file(b"a poem\n");
    let server = InProcess::start(InProcess::config(poem.path()));
    let limits = Limits { request_timeout: Duration::from_millis(300), ..Limits::default() };
    let any_port = "127.0.0.1:0".parse().unwrap();
    let metrics =
        poetry_serve::ops::metrics::serve(any_port, server.handle.clone(), limits, None).unwrap();
    let mut idle = TcpStream::connect_timeout(&metrics, LIMIT).expect("connect");
    idle.set_read_timeout(Some(LIMIT)).unwrap();
    let closed = idle.read(&mut [0u8; 16]);
    assert!(
        matches!(&closed, Ok(0))
            || matches!(&closed, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "an idle connection stayed open: {closed:?}"
    );
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
}

/// One source that holds as many connections as it may, each stalled mid-request, gets any
/// more closed at once, and the health checks of another source are answered: one client
/// cannot starve a liveness probe into restarting the server.
#[test]
fn one_source_cannot_take_every_metrics_place() {
    let poem = poem_file(b"a poem\n");
    let server = Binary::launch(poem.path()).args(&["--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let hogs: Vec<TcpStream> = (0..PER_SOURCE + 12)
        .map(|_| {
            let mut hog = TcpStream::connect_timeout(&metrics, LIMIT).expect("connect");
            hog.write_all(b"G").unwrap(); // and never the rest
            hog
        })
        .collect();
    // The ones over the source's share are closed as soon as they are accepted, well before
    // the 10 s the listener gives a request's head.
    let mut closed = 0;
    for mut hog in hogs.iter().skip(PER_SOURCE) {
        hog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match hog.read(&mut [0u8; 16]) {
            Ok(0) => closed += 1,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => closed += 1,
            _ => {} // still open after 5 s: held
        }
    }
    assert_eq!(closed, 12, "connections over the source's share stayed open");
    // Another source is answered while the first holds its share.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into()).unwrap();
    socket.connect_timeout(&metrics.into(), LIMIT).expect("connect");
    let mut probe = TcpStream::from(socket);
    probe.set_read_timeout(Some(LIMIT)).unwrap();
    probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(hogs);
}

/// A connection to the metrics port answers one request and closes, even when the client asks
/// to keep it and sends more: clients that ask again and again hold no place for long.
#[test]
fn a_metrics_connection_answers_one_request_and_closes() {
    let poem = BinaryPoem::new(50);
    let server = Binary::launch(poem.path()).args(&["--metrics", "127.0.0.1:0"]).start();
    let metrics = server.metrics_addr();
    let mut client = TcpStream::connect_timeout(&metrics, LIMIT).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
    let mut answer = Vec::new();
    let ended = client.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(ended.is_ok(), "still open after 5 s ({ended:?}): {answer}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
}

/// Connections reset straight after sending a request leave no panic and no stray text in a JSON
/// log: every line on stderr is still one JSON event.
#[test]
fn resets_on_the_metrics_port_leave_the_log_clean() {
    let poem = poem_file(b"a poem\n");
    let server = Binary::launch(poem.path())
        .args(&["--log-format", "json", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    connect_and_reset(metrics);
                }
            });
        }
    });
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    server.fetch_exact(b"a poem\n");
    // Every line so far, the one waited for included, must read as a JSON event.
    server.wait_for_events("connection ended", 1);
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

/// Seeded draws (fastrand, as the server's own), so a failing case can be replayed.
struct Draws(fastrand::Rng);

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }

    /// `seed` with a few of its bytes flipped, dropped, doubled or replaced, or cut short, or
    /// with a hostile piece spliced in.
    fn mutate(&mut self, seed: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(bytes.len().max(1));
            match self.below(6) {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << self.below(8),
                1 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                2 if !bytes.is_empty() => bytes.insert(at, bytes[at]),
                3 => bytes.insert(at, self.0.u8(..)),
                4 => bytes.truncate(at),
                _ => {
                    let piece = pieces[self.below(pieces.len())];
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
        }
        bytes
    }
}

/// Seeded, bounded fuzzing: hundreds of mutated HTTP requests to the metrics port and mutated
/// PROXY v1/v2 headers to a --proxy-protocol port; both servers then still serve byte for byte
/// and answer health checks.
#[test]
fn mutated_requests_and_headers_stop_nothing() {
    let poem = BinaryPoem::new(300);
    let metrics_server =
        Binary::launch(poem.path()).args(&["--delay", "0", "--metrics", "127.0.0.1:0"]).start();
    let metrics = metrics_server.metrics_addr();
    let proxied = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--proxy-timeout", "200ms"])
        .start();
    let mut draws = Draws(fastrand::Rng::with_seed(0x5eed_2026_1204));
    let requests: [&[u8]; 3] = [
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"HEAD /healthz HTTP/1.0\r\n\r\n",
        b"POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    ];
    let http_pieces: [&[u8]; 7] = [
        b"Content-Length: 99999999999\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
        b"\r\n\r\n",
        b"\x00\xff\x80",
        &[b'a'; 9000],
        b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for _ in 0..400 {
        let seed = requests[draws.below(requests.len())];
        let request = draws.mutate(seed, &http_pieces);
        send_and_close(metrics, &request);
    }
    let headers: [&[u8]; 3] = [
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n",
        // v2: signature, PROXY over TCP/IPv4, 12 bytes of addresses and ports
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc0\x00\x02\x02\x04\xd2\x00\x50",
    ];
    let proxy_pieces: [&[u8]; 4] = [b"\xff\xff", b"99999999999", b" ", &[b'9'; 200]];
    for _ in 0..400 {
        let seed = headers[draws.below(headers.len())];
        let header = draws.mutate(seed, &proxy_pieces);
        send_and_close(proxied.addr, &header);
    }
    metrics_server.fetch_exact(&poem.bytes);
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    let (status, page) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{page}");
    let mut stream = proxied.connect();
    stream.write_all(b"PROXY TCP4 192.0.2.7 192.0.2.2 4321 80\r\n").unwrap();
    let fetched = crate::common::read_to_end(stream, Instant::now());
    proxied.assert_bytes(&fetched.bytes, &poem.bytes);
    let log = proxied.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

/// Every accepted connection is either queued, busy or ended in every scrape while serving;
/// and at SIGTERM the clients still waiting in the backlog are accepted, closed and logged:
/// every connection the kernel completed gets its one log line and its outcome.
#[test]
fn every_accepted_connection_is_counted_and_logged_at_shutdown() {
    let poem = BinaryPoem::new(200);
    let mut server = Binary::launch(poem.path())
        .args(&["--workers", "2", "--delay", "0.2", "--num-bytes", "10"])
        .args(&["--shutdown-grace", "0.5", "--metrics", "127.0.0.1:0", "--log-format", "json"])
        .start();
    let metrics = server.metrics_addr();
    let clients: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    // Two streaming, the other eight waiting in the backlog.
    let page = eventually(
        "2 accepted and 8 in the backlog",
        || server.stderr(),
        || {
            let (_, page) = get(metrics, "/metrics");
            let backlog = sample(&page, "poetry_listen_backlog");
            (sample(&page, "poetry_connections_accepted_total") == 2.0 && backlog == 8.0)
                .then_some(page)
        },
    );
    let in_hand = sample(&page, "poetry_workers_busy") + sample(&page, "poetry_connections_queued");
    let ended: f64 = (page.lines())
        .filter(|line| line.starts_with("poetry_connections_ended_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(sample(&page, "poetry_connections_accepted_total"), in_hand + ended, "{page}");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    drop(clients);
    let lines = server.outcomes().len();
    let stats = server.last_stats();
    assert_eq!((stats["accepted"].as_u64(), lines), (Some(10), 10), "{}", server.stderr());
}

/// With --max-per-source 1, a client that reads each poem to its end, closes and connects
/// again is never refused: its place is free before it can see the end.
#[test]
fn a_sequential_client_is_never_refused_by_its_own_last_connection() {
    let poem = poem_file(b"a short poem\n");
    let mut config = InProcess::config(poem.path());
    config.pacing.delay = Duration::ZERO;
    config.max_per_source = std::num::NonZeroU32::new(1);
    let server = InProcess::start(config);
    for round in 0..300 {
        let fetched = server.fetch();
        assert_eq!(fetched.bytes, b"a short poem\n", "round {round}\n{}", server.story());
    }
}

/// What a page costs is bounded whatever the number of connections: with more being served
/// than a page lists, `/status.json` lists the first ones and counts the rest, and `/` is of
/// the same bounded size.
#[test]
fn the_status_page_lists_a_bounded_number_of_connections() {
    const CLIENTS: usize = 230;
    let poem = BinaryPoem::new(10_000); // a minute and more at 10 bytes every 0.7 s
    let mut config = InProcess::config(poem.path());
    config.workers = std::num::NonZeroUsize::new(CLIENTS).unwrap();
    let server = InProcess::start(config);
    let any_port = "127.0.0.1:0".parse().unwrap();
    let metrics =
        poetry_serve::ops::metrics::serve(any_port, server.handle.clone(), Limits::default(), None)
            .unwrap();
    let clients: Vec<_> = (0..CLIENTS).map(|_| server.start_streaming(10)).collect();
    let (_, json) = get(metrics, "/status.json");
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let listed = status["connections"].as_array().map(Vec::len);
    assert_eq!((listed, status["more_connections"].as_u64()), (Some(200), Some(30)), "{status}");
    let (_, page) = get(metrics, "/");
    assert_eq!(page.matches("<progress").count(), 200);
    assert!(page.contains("and 30 more, not listed"));
    assert!(page.len() < 128 << 10, "a page of {} bytes", page.len());
    drop(clients);
}

/// Every snapshot of the counters balances, however fast connections come and go: accepted =
/// queued + busy + ended, in every read.
#[test]
fn the_counters_balance_in_every_snapshot() {
    let poem = poem_file(b"a short poem\n");
    let mut config = InProcess::config(poem.path());
    config.pacing.delay = Duration::ZERO;
    let server = InProcess::start(config);
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    server.fetch();
                }
            });
        }
        // Until a few hundred connections have come and gone, every snapshot on the way.
        eventually(
            "300 connections",
            || server.story(),
            || {
                let t = server.tally();
                let ended: u64 = t.ended.iter().sum();
                assert_eq!(t.accepted, t.queued + t.busy + ended, "{t:?}");
                (t.accepted >= 300).then_some(())
            },
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// A costly page being made does not hold up a liveness probe: while one answer of the
/// listener is stuck in the making, /healthz is answered.
#[test]
fn a_slow_page_holds_up_no_health_check() {
    use poetry_serve::ops::http::{self, Answer, Asked, Routes};
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (making, made) = std::sync::mpsc::channel::<()>();
    let channels = std::sync::Mutex::new((held, making));
    let route = move |asked: &Asked| match asked.path.as_str() {
        "/healthz" => Answer::text(200, "ok\n"),
        _ => {
            let (held, making) = &*channels.lock().unwrap();
            making.send(()).unwrap();
            let _ = held.recv_timeout(LIMIT);
            Answer::text(200, "made at last\n")
        }
    };
    let routes = Routes { quick: &["/healthz"], route: Box::new(route) };
    let addr = http::serve("127.0.0.1:0".parse().unwrap(), routes, Limits::default()).unwrap();
    let slow = thread::spawn(move || get(addr, "/metrics"));
    made.recv_timeout(LIMIT).expect("the slow page is being made");
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    assert!(!slow.is_finished(), "the slow page was made meanwhile");
    release.send(()).unwrap();
    assert_eq!(slow.join().unwrap(), (200, "made at last\n".into()));
}

/// The metrics port answers only requests whose Host names it: an IP address, localhost, or a
/// name given with --metrics-host. A page whose name was made to resolve here (DNS rebinding)
/// gets 421 for the pages, while health checks answer whatever the Host.
#[test]
fn a_foreign_host_is_refused() {
    let poem = poem_file(b"a poem\n");
    let server = Binary::launch(poem.path())
        .args(&["--metrics", "127.0.0.1:0", "--metrics-host", "poems.example"])
        .start();
    let metrics = server.metrics_addr();
    let asking = |host: &str, path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        crate::common::http(metrics, request.as_bytes()).0
    };
    let port = metrics.port();
    for path in ["/", "/status.json", "/metrics"] {
        assert_eq!(asking(&format!("rebound.example:{port}"), path), 421, "{path}");
        assert_eq!(asking(&format!("127.0.0.1:{port}"), path), 200, "{path}");
        assert_eq!(asking(&format!("localhost:{port}"), path), 200, "{path}");
        assert_eq!(asking("[::1]", path), 200, "{path}");
        assert_eq!(asking("POEMS.example", path), 200, "{path}");
        assert_eq!(asking(&format!("[::1]:{port}"), path), 200, "{path}");
        // What is not a host and a port, and a second Host, are refused.
        for odd in ["[::1]rebound.example", "user@127.0.0.1", "127.0.0.1:x", "a b", ""] {
            assert_eq!(asking(odd, path), 421, "{odd:?} {path}");
        }
        assert_eq!(asking("127.0.0.1\r\nHost: rebound.example", path), 421, "{path}");
    }
    assert_eq!(asking("rebound.example", "/healthz"), 200);
}

/// Behind --proxy-protocol, one peer may hold only so many connections waiting for their
/// header; one more is closed at once, and another peer's client is served meanwhile.
#[test]
fn one_peer_cannot_hold_every_worker_without_headers() {
    let poem = BinaryPoem::new(100);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--proxy-protocol", "--proxy-max-waiting", "2"])
        .args(&["--workers", "8", "--log-format", "json", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let waiting: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    eventually(
        "two connections waiting for a header",
        || server.stderr(),
        || {
            let page = get(metrics, "/metrics").1;
            (sample(&page, "poetry_workers_busy") == 2.0).then_some(())
        },
    );
    let mut over = server.connect();
    over.set_read_timeout(Some(LIMIT)).unwrap();
    let closed = over.read(&mut [0u8; 16]);
    assert!(matches!(closed, Ok(0)) || closed.is_err(), "{closed:?}");
    let mut other = server.connect_from([127, 0, 0, 2].into());
    other.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n").unwrap();
    let fetch = crate::common::read_to_end(other, Instant::now());
    server.assert_bytes(&fetch.bytes, &poem.bytes);
    drop(waiting);
}

/// A burst of rejected connections is summed up on a timer, and what the last summary has not
/// told yet is told when the server stops: the summaries add up to every rejection.
#[test]
fn every_rejection_is_in_a_summary() {
    let poem = BinaryPoem::new(1000); // 100 chunks at 0.1 s: the place stays taken
    let mut server = Binary::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "0.1", "--max-per-source", "1"])
        .args(&["--log-format", "json", "--shutdown-grace", "0"])
        .start();
    let _held = server.start_streaming(10);
    for _ in 0..300 {
        let mut rejected = server.connect();
        let _ = rejected.read(&mut [0u8; 1]); // closed unserved at once
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    let summed: u64 = (server.events().iter())
        .filter_map(|event| event["rejected"].as_u64().filter(|_| event["level"] == "WARN"))
        .sum();
    assert_eq!(summed, 300, "{}", server.stderr());
    assert_eq!(server.last_stats()["rejected"], 300);
}

/// Behind --proxy-protocol, a stop ends at once the connections still waiting for their
/// header (they have no poem in flight), logged as `shutdown`, while the poems in flight finish:
/// every connection accepted gets its line.
#[test]
fn a_stop_behind_a_balancer_accounts_for_every_connection() {
    let poem = BinaryPoem::new(100);
    let mut server = Binary::launch(poem.path())
        .args(&["--num-bytes", "10", "--delay", "0.1", "--proxy-protocol", "--workers", "6"])
        .args(&["--proxy-timeout", "1h", "--log-format", "json", "--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics_addr();
    let streaming: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = server.connect();
            stream.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n").unwrap();
            stream
        })
        .collect();
    let waiting: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    eventually(
        "five connections taken",
        || server.stderr(),
        || {
            let page = get(metrics, "/metrics").1;
            (sample(&page, "poetry_workers_busy") == 5.0).then_some(())
        },
    );
    server.signal(libc::SIGTERM);
    for stream in streaming {
        server.assert_bytes(&crate::common::read_to_end(stream, Instant::now()).bytes, &poem.bytes);
    }
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    let mut outcomes = server.outcomes();
    outcomes.sort();
    assert_eq!(outcomes, ["complete", "complete", "shutdown", "shutdown", "shutdown"]);
    assert_eq!(server.last_stats()["accepted"], 5);
    drop(waiting);
}

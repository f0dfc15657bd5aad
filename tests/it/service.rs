//! A good service citizen: Prometheus metrics and health checks over HTTP, systemd's
//! readiness notifications, and socket activation.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::{Binary, BinaryPoem, InProcess, LIMIT, Target, get, http, poem_file, sample};

/// --metrics serves the counters in the Prometheus text format, health checks, and HTTP
/// errors for bad requests; poems are served all the while.
#[test]
fn metrics_and_health_over_http() {
    let poem = BinaryPoem::new(500);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--metrics", "127.0.0.1:0", "--max-per-source", "9"])
        .start();
    let metrics = server.metrics_addr();
    assert_ne!(metrics.port(), 0);
    for _ in 0..3 {
        server.fetch_exact(&poem.bytes);
    }
    // A bad request gets an HTTP error, and the server carries on.
    let (status, _) = http(metrics, b"garbage\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(get(metrics, "/nowhere").0, 404);
    assert_eq!(http(metrics, b"POST /metrics HTTP/1.0\r\n\r\n").0, 405);
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(metrics, "/readyz"), (200, "ready\n".into()));
    server.fetch_exact(&poem.bytes);
    server.wait_for_logs("connection ended", 4);

    let (status, page) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{page}");
    assert_eq!(sample(&page, "poetry_connections_accepted_total"), 4.0);
    assert_eq!(sample(&page, r#"poetry_connections_ended_total{outcome="complete"}"#), 4.0);
    assert_eq!(sample(&page, "poetry_bytes_sent_total"), 2000.0);
    assert_eq!(sample(&page, "poetry_connection_duration_seconds_count"), 4.0);
    assert_eq!(sample(&page, "poetry_workers"), 256.0);
    assert_eq!(sample(&page, "poetry_poems"), 1.0);
    for name in [
        r#"poetry_connections_ended_total{outcome="rejected"}"#,
        r#"poetry_reloads_total{result="ok"}"#,
        "poetry_workers_busy",
        "poetry_connections_queued",
        r#"poetry_build_info{version=""#,
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(page.contains(name), "{name}:\n{page}");
    }
    assert!(!page.contains("peer"), "no per-client labels:\n{page}");
}

/// Clients of the metrics port that never finish a request hold up neither the poems nor the
/// next scrape: with no request timeout to end them, a scrape still gets through at once.
#[test]
fn a_stalled_metrics_client_stops_nothing() {
    let poem = BinaryPoem::new(200);
    let mut config = InProcess::config(poem.path());
    config.pacing.delay = Duration::ZERO;
    let server = InProcess::start(config);
    let limits = poetry_serve::ops::http::Limits {
        request_timeout: Duration::from_secs(3600),
        ..Default::default()
    };
    let any_port = "127.0.0.1:0".parse().unwrap();
    let metrics =
        poetry_serve::ops::metrics::serve(any_port, server.handle.clone(), limits.clone(), None)
            .unwrap();
    // One fewer than a source's share of the listener's places, so the scrape below, from the
    // same address, has one.
    let stalled: Vec<TcpStream> = (1..limits.per_source.get())
        .map(|_| {
            let mut half = TcpStream::connect_timeout(&metrics, LIMIT).expect("connect");
            half.write_all(b"GET /metr").unwrap(); // and never the rest
            half
        })
        .collect();
    server.fetch_exact(&poem.bytes);
    let (status, page) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{page}");
    drop(stalled);
}

/// With NOTIFY_SOCKET set, systemd hears READY=1 once the server listens, RELOADING=1 and
/// READY=1 around a SIGHUP reload, and STOPPING=1 on SIGTERM, in that order.
#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind a notify socket");
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let poem = poem_file(b"a poem\n");
    let mut server =
        Binary::launch(poem.path()).env("NOTIFY_SOCKET", path.to_str().unwrap()).start();
    let mut heard = Vec::new();
    let mut expect = |state: &str| {
        let started = Instant::now();
        loop {
            let mut buf = [0u8; 4096];
            let n = socket.recv(&mut buf).expect("a notification in time");
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            heard.push(message.clone());
            // STATUS= updates may come in between; they are not what is waited for.
            if message.lines().any(|l| l == state) {
                return message;
            }
            assert!(started.elapsed() < LIMIT, "no {state}; heard {heard:?}");
        }
    };
    let ready = expect("READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    server.signal(libc::SIGHUP);
    let reloading = expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    expect("READY=1");
    server.signal(libc::SIGTERM);
    expect("STOPPING=1");
    assert_eq!(server.wait_exit().code(), Some(0));
}

/// A NOTIFY_SOCKET nobody listens on is warned of once, naming it, however many
/// notifications fail after it (ready, reloading, ready again, stopping), and the server
/// serves and stops as usual.
#[test]
fn an_unusable_notify_socket_is_warned_of_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no such socket");
    let poem = poem_file(b"a poem\n");
    let mut server = Binary::launch(poem.path())
        .args(&["--delay", "0", "--log-format", "json"])
        .env("NOTIFY_SOCKET", missing.to_str().unwrap())
        .start();
    server.fetch_exact(b"a poem\n");
    server.signal(libc::SIGHUP);
    server.wait_for_message("reloaded");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.stderr());
    let warned: Vec<serde_json::Value> =
        server.events().into_iter().filter(|event| event["level"] == "WARN").collect();
    assert_eq!(warned.len(), 1, "{}", server.stderr());
    assert_eq!(warned[0]["socket"], missing.to_str().unwrap(), "{}", warned[0]);
    assert!(
        warned[0]["message"].as_str().is_some_and(|m| m.contains("NOTIFY_SOCKET")),
        "{}",
        warned[0]
    );
}

/// A socket handed over in LISTEN_FDS that is bound but not listening is refused at start-up
/// with one line (exit status 1), rather than taken and failing every accept for ever.
#[test]
fn a_socket_from_systemd_that_does_not_listen_is_refused() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let poem = poem_file(b"never served\n");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind it, and never listen");
    let fd = socket.as_raw_fd();
    // The shell's own pid is the server's once it execs: systemd's LISTEN_PID.
    let mut command = Binary::launch(poem.path())
        .env("LISTEN_FDS", "1")
        .under_shell("export LISTEN_PID=$$")
        .command();
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // fd 3 is where systemd puts the first socket; dup2 leaves the copy open on exec.
            let done = match fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0),
                _ => libc::dup2(fd, 3),
            };
            match done {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let output = crate::common::run_command(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let story = format!("{:?}\nstderr:\n{stderr}", output.status);
    assert_eq!(output.status.code(), Some(1), "{story}");
    assert!(output.stdout.is_empty(), "nothing may listen: {story}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {story}");
    assert!(
        stderr.contains("socket 0 from systemd (LISTEN_FDS)") && stderr.contains("not listening"),
        "{story}"
    );
}

/// A `NOTIFY_SOCKET` whose reader is behind (its queue full) holds up neither the start-up nor
/// the stop: a notification is worth losing, a stop is not. Before the fix the signal thread
/// blocked in its `send` of STOPPING=1 before it stopped anything: the server went on serving
/// past the grace period until another signal interrupted the send.
#[test]
fn a_stalled_notify_socket_does_not_hold_the_stop() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("notify");
    let _systemd = UnixDatagram::bind(&path).expect("bind the notify socket");
    // Fill its queue, from as many senders as it takes, until a fresh one cannot send.
    let mut senders = Vec::new();
    'full: loop {
        let sender = UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        for sent in 0.. {
            if sender.send_to(b"STATUS=filler", &path).is_err() {
                if sent == 0 {
                    break 'full;
                }
                break;
            }
        }
        senders.push(sender);
        assert!(senders.len() < 1000, "the notify socket's queue never filled");
    }
    let poem = BinaryPoem::new(300);
    let mut server = Binary::launch(poem.path())
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .args(&["--log-format", "json", "--delay", "0"])
        .start();
    server.fetch_exact(&poem.bytes);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(); // fails, saying so, if there is no exit within LIMIT
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

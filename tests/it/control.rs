//! `--control`: the JSON API that reads, replaces and restores the faults and pacing while the
//! server runs, and what it refuses.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use crate::common::{
    Binary, BinaryPoem, LIMIT, Target, get, get_eventually, http, ms, read_to_end, run, send,
};

/// A server of a 300-byte poem, unpaced, with the control API on a free loopback port; and
/// that port.
fn controlled(poem: &BinaryPoem, args: &[&str]) -> (Binary, SocketAddr) {
    let mut all = vec!["--delay", "0", "--control", "127.0.0.1:0", "--log-format", "json"];
    all.extend_from_slice(args);
    let server = Binary::launch(poem.path()).args(&all).start();
    let control = server.control_addr();
    (server, control)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body:?}"))
}

/// GET shows what is in force; PUT replaces it for connections accepted from then on, counted
/// from 1 again ("1-2" is the next two); DELETE goes back to the start-up faults.
#[test]
fn put_changes_the_next_connections_and_delete_goes_back() {
    let poem = BinaryPoem::new(300);
    let (server, control) = controlled(&poem, &["--close-after", "100"]);
    let (status, body) = get(control, "/faults");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["fault"], serde_json::json!({ "close-after": 100 }));
    server.fetch_exact(&poem.bytes[..100]);
    // One connection in flight, accepted before the change: it keeps what it had.
    let in_flight = server.connect();
    let script = r#"{"connection": [{"numbers": "1-2", "fault": {"refuse": true}}]}"#;
    let (status, body) = send(control, "PUT", "/faults", script);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["connection"][0]["numbers"], "1-2");
    assert!(json(&body).get("fault").is_none(), "no fault beyond the rule: {body}");
    let held = read_to_end(in_flight, Instant::now());
    server.assert_bytes(&held.bytes, &poem.bytes[..100]);
    for _ in 0..2 {
        let fetch = server.try_fetch();
        assert_eq!((fetch.bytes.len(), fetch.ended), (0, Err(ErrorKind::ConnectionReset)));
    }
    server.fetch_exact(&poem.bytes);
    let (status, body) = send(control, "DELETE", "/faults", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["fault"], serde_json::json!({ "close-after": 100 }));
    server.fetch_exact(&poem.bytes[..100]);
    let changes = server.wait_for_events_where("two changes logged", 2, |event| {
        event["target"].as_str().is_some_and(|target| target.ends_with("control"))
    });
    assert_eq!(changes.len(), 2);
}

/// Bad JSON, an unknown field, and values that do not check each get 400 with one line saying
/// why, and nothing changes.
#[test]
fn a_bad_change_gets_one_line_and_changes_nothing() {
    let poem = BinaryPoem::new(300);
    let (server, control) = controlled(&poem, &[]);
    let (_, before) = get(control, "/faults");
    for (body, says) in [
        ("{not json", "bad JSON"),
        (r#"{"dealy": "1s"}"#, "unknown field `dealy`"),
        (r#"{"delay": "soon"}"#, "delay:"),
        (r#"{"fault": {"refuse": true, "close-after": 3}}"#, "one fault at a time"),
        (r#"{"connection": [{"numbers": "5-2"}]}"#, "the first is after the last"),
        (r#"{"delay": "0", "jitter": "1s"}"#, "jitter"),
        (r#"{"fault-rate": 2}"#, "fault-rate"),
        (r#"{"fault-rate": -0.0}"#, "fault-rate"),
        (r#"{"delay": "-0"}"#, "delay:"),
        (r#"{"connection": [{"numbers": "1-99999999999999999999"}]}"#, "is not N, N-M or N-"),
        ("[]", "bad JSON"),
        ("", "bad JSON"),
    ] {
        let (status, answer) = send(control, "PUT", "/faults", body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer.contains(says), "{body} -> {answer:?}");
        assert_eq!(answer.trim_end().lines().count(), 1, "{body} -> {answer:?}");
        assert_eq!(get(control, "/faults").1, before, "{body} changed something");
    }
    server.fetch_exact(&poem.bytes);
}

/// Only /faults answers, with GET, PUT and DELETE; another Host than an address or localhost
/// is refused, as a DNS-rebinding page would send.
#[test]
fn the_api_answers_only_what_it_serves() {
    let poem = BinaryPoem::new(300);
    let (_server, control) = controlled(&poem, &[]);
    assert_eq!(get(control, "/").0, 404);
    assert_eq!(get(control, "/metrics").0, 404);
    assert_eq!(send(control, "POST", "/faults", "{}").0, 405);
    let rebinding =
        format!("GET /faults HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n", control.port());
    assert_eq!(http(control, rebinding.as_bytes()).0, 421);
}

/// --control listens on loopback only unless --control-anywhere says otherwise; the refusal
/// is one line and exit status 2, before anything listens.
#[test]
fn control_beyond_loopback_needs_saying_so() {
    let poem = BinaryPoem::new(300);
    let path = poem.path().to_string_lossy().to_string();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9000"] {
        let output = run(&["--port", "0", "--control", addr, &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{addr}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--control-anywhere"), "{stderr}");
    }
    // From a variable, the refusal names it, as every other value's does.
    let mut command = std::process::Command::new(crate::common::BIN);
    command.args(["--port", "0", &path]).env("POETRY_SERVE_CONTROL", "192.0.2.1:9000");
    let output = crate::common::run_command(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("poetry-serve: error: in $POETRY_SERVE_CONTROL: "), "{stderr}");
    // Said, the address is taken (checked without listening beyond loopback).
    use clap::FromArgMatches;
    let matches = poetry_serve::cli::Cli::definition()
        .try_get_matches_from([
            "poetry-serve",
            "--control",
            "192.0.2.1:9000",
            "--control-anywhere",
            &path,
        ])
        .expect("valid flags");
    let cli = poetry_serve::cli::Cli::from_arg_matches(&matches).unwrap();
    let options = cli.options(&matches).expect("allowed when said");
    assert_eq!(options.control, Some("192.0.2.1:9000".parse().unwrap()));
    // Without --control, --control-anywhere is a usage error.
    assert_eq!(run(&["--control-anywhere", &path]).status.code(), Some(2));
}

/// The control port faces what a hostile client sends: bodies too large (announced or
/// streamed), bodies that never finish, heads of garbage, and a crowd of idle connections.
/// Each ends only its own connection; the API and the poems carry on, unchanged.
#[test]
fn the_control_port_survives_hostile_requests() {
    let poem = BinaryPoem::new(300);
    let (server, control) = controlled(&poem, &[]);
    let (_, before) = get(control, "/faults");
    // Announced too large: refused before a byte of it is read (a length past what hyper
    // parses is refused by hyper, with 431 for a bad head).
    for (length, status) in [(1u64 << 40, 413), (u64::MAX, 431)] {
        let huge = format!(
            "PUT /faults HTTP/1.1\r\nHost: {control}\r\nContent-Length: {length}\r\n\r\n{{"
        );
        assert_eq!(http(control, huge.as_bytes()).0, status, "{length}");
    }
    // Streamed past the bound in chunks, with no length announced.
    let mut stream = TcpStream::connect_timeout(&control, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let head =
        format!("PUT /faults HTTP/1.1\r\nHost: {control}\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, " ".repeat(16 * 1024));
    for _ in 0..5 {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break; // refused already
        }
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // Garbage heads, seeded so that a failure repeats.
    let mut rng = fastrand::Rng::with_seed(26);
    for _ in 0..200 {
        let len = rng.usize(1..2048);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if rng.bool() {
            junk.splice(
                0..0,
                b"PUT /faults HTTP/1.1\r\nContent-Length: 40\r\n\r\n".iter().copied(),
            );
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&control, LIMIT) {
            stream.set_read_timeout(Some(ms(2000))).unwrap();
            let _ = stream.write_all(&junk);
            let _ = stream.read(&mut [0u8; 256]);
        }
    }
    // Idle connections, and a body that stops halfway, all held while others are answered.
    // From other sources: one source may hold only four connections.
    let idle: Vec<TcpStream> =
        (2..10).filter_map(|host| connect_from([127, 0, 0, host], control)).collect();
    assert_eq!(idle.len(), 8);
    let mut halfway = connect_from([127, 0, 0, 10], control).unwrap();
    let partial = format!(
        "PUT /faults HTTP/1.1\r\nHost: {control}\r\nContent-Length: 100\r\n\r\n{{\"delay\""
    );
    halfway.write_all(partial.as_bytes()).unwrap();
    assert_eq!(get_eventually(control, "/faults"), (200, before.clone()));
    drop(idle);
    drop(halfway);
    assert_eq!(get_eventually(control, "/faults"), (200, before));
    server.fetch_exact(&poem.bytes);
}

/// What is in force is read back as a script that, put back, changes nothing: GET's answer is
/// a valid PUT.
#[test]
fn what_get_shows_can_be_put_back() {
    let poem = BinaryPoem::new(300);
    let (_server, control) = controlled(
        &poem,
        &["--reset-after", "7", "--fault-rate", "0.5", "--seed", "3", "--accept-delay", "10ms"],
    );
    let (_, shown) = get(control, "/faults");
    let (status, again) = send(control, "PUT", "/faults", &shown);
    assert_eq!((status, &again), (200, &shown));
    assert_eq!(json(&shown)["accept-delay"], "10ms");
}

/// A connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket.connect_timeout(&addr.into(), LIMIT).ok()?;
    Some(socket.into())
}

/// The status page says when a connection in flight ends by its own pacing, not by the one a
/// change put in force since (which it does not get).
#[test]
fn the_status_page_ends_a_connection_by_its_own_pacing() {
    let poem = BinaryPoem::new(300);
    let server = Binary::launch(poem.path())
        .args(&["--delay", "1", "--num-bytes", "10", "--log-format", "json"])
        .args(&["--control", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .start();
    let (metrics, control) = (server.metrics_addr(), server.control_addr());
    let _client = server.connect();
    server.wait_for_stats(|stats| stats["busy_workers"] == 1);
    let (status, body) = send(control, "PUT", "/faults", r#"{"delay": "1ms"}"#);
    assert_eq!(status, 200, "{body}");
    let (status, page) = get(metrics, "/status.json");
    assert_eq!(status, 200, "{page}");
    // 30 chunks a second apart: the last is due 29 s after the first (by the new pacing, at
    // once).
    let ends_in = json(&page)["connections"][0]["ends_in_s"].as_f64();
    assert!(ends_in.is_some_and(|s| s > 1.0), "{page}");
}

//! `--trace FILE`: the binary writes every connection's life as Chrome Trace Event JSON, and
//! closes the file as valid JSON when SIGTERM stops it. Each connection is checked against
//! what the log says of it (`--log-format json`): its peer, its worker, its bytes, its wait.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::Instant;

use serde_json::Value;

use crate::common::{Binary, BinaryPoem, Fetch, Target, mkfifo, read_to_end, run_command};

/// Starts the binary serving `poem` with a trace to `path`, JSON logs and `args`.
fn traced(poem: &BinaryPoem, path: &Path, args: &[&str]) -> Binary {
    let path = path.to_str().expect("a temporary path is UTF-8");
    Binary::launch(poem.path()).args(&["--log-format", "json", "--trace", path]).args(args).start()
}

/// Stops `server` with SIGTERM, waits for its exit, and reads the trace at `path`: a JSON
/// array of events.
fn stop_and_read(mut server: Binary, path: &Path) -> (Binary, Vec<Value>) {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    let text = std::fs::read_to_string(path).expect("the trace file");
    let events = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!("the trace is not a JSON array of events ({err}):\n{text}\n{}", server.stderr())
    });
    (server, events)
}

/// Each track's name, by tid.
fn track_names(events: &[Value]) -> HashMap<u64, String> {
    (events.iter())
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_string()))
        .collect()
}

/// The events of connection `id` that are `ph` and `name`, in the file's order.
fn of<'a>(events: &'a [Value], id: &Value, ph: &str, name: &str) -> Vec<&'a Value> {
    (events.iter())
        .filter(|e| e["ph"] == ph && e["name"] == name && e["args"]["connection"] == *id)
        .collect()
}

fn ts(event: &Value) -> f64 {
    event["ts"].as_f64().unwrap_or_else(|| panic!("no ts: {event}"))
}

/// Four clients of a paced poem on two workers: every connection has its accept, its wait in
/// the backlog ending as its worker takes it, and a slice on the track of the worker the log
/// names, with its outcome and bytes; and every one of its chunks is on that track, in order,
/// within its slice. Nothing was dropped, and the log says what the file holds.
#[test]
fn every_chunk_of_every_connection_is_on_its_workers_track() {
    let poem = BinaryPoem::new(95); // chunks of 10: nine of 10 bytes and one of 5
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("trace.json");
    let server = traced(&poem, &path, &["--workers", "2", "--delay", "100ms", "--num-bytes", "10"]);
    // All four connect at once, so that the second is taken while the first streams (for 0.9 s)
    // and the two others wait in the backlog for a worker.
    let started = Instant::now();
    let clients: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    let fetches: Vec<Fetch> = thread::scope(|scope| {
        let reading: Vec<_> =
            clients.into_iter().map(|c| scope.spawn(move || read_to_end(c, started))).collect();
        reading.into_iter().map(|r| r.join().expect("a client thread")).collect()
    });
    for fetch in fetches {
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    let ended = server.wait_for_outcome("complete", 4);
    let (server, events) = stop_and_read(server, &path);
    let story =
        || format!("{}\n{}", serde_json::to_string_pretty(&events).unwrap(), server.stderr());
    let tracks = track_names(&events);
    let accept = (tracks.iter()).find(|(_, name)| *name == "accept").map(|(&tid, _)| tid);
    let accept = accept.unwrap_or_else(|| panic!("no accept track:\n{}", story()));
    // Per connection: its worker, when it was taken and ended, and when its wait began.
    let mut served = Vec::new();
    for logged in &ended {
        let peer = &logged["peer"];
        let slices: Vec<_> =
            events.iter().filter(|e| e["ph"] == "X" && e["args"]["peer"] == *peer).collect();
        assert_eq!(slices.len(), 1, "one slice for {peer}:\n{}", story());
        let slice = slices[0];
        let (id, tid) = (&slice["args"]["connection"], slice["tid"].as_u64().unwrap());
        assert_eq!(tracks.get(&tid), logged["threadName"].as_str().map(String::from).as_ref());
        assert_eq!(slice["args"]["outcome"], "complete", "{slice}");
        assert_eq!(slice["args"]["bytes"], 95, "{slice}");
        assert_eq!(slice["args"]["chunks"], 10, "{slice}");
        let (start, end) = (ts(slice), ts(slice) + slice["dur"].as_f64().unwrap());

        let chunks = of(&events, id, "i", "chunk");
        let numbers: Vec<u64> = chunks.iter().map(|c| c["args"]["n"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>(), "connection {id}:\n{}", story());
        let sizes: Vec<u64> = chunks.iter().map(|c| c["args"]["bytes"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [10, 10, 10, 10, 10, 10, 10, 10, 10, 5], "connection {id}");
        assert!(chunks.iter().all(|c| c["tid"] == tid), "on worker {tid}: {chunks:#?}");
        let times: Vec<f64> = chunks.iter().map(|c| ts(c)).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "in order: {times:?}");
        // The end's time is the start's plus a duration, both rounded to the nanosecond.
        let within = |t: f64| start <= t && t <= end + 0.001;
        assert!(times.iter().all(|&t| within(t)), "{times:?} within {start}..{end}");
        assert!(chunks.iter().all(|c| c["args"]["late_us"].is_u64()), "{chunks:#?}");

        let accepted = of(&events, id, "i", "accepted");
        assert_eq!(accepted.len(), 1, "connection {id}:\n{}", story());
        assert_eq!((&accepted[0]["tid"], &accepted[0]["args"]["peer"]), (&accept.into(), peer));
        let wait: Vec<_> = (events.iter())
            .filter(|e| e["cat"] == "backlog" && e["id"] == *id && e["tid"] == accept)
            .collect();
        let phases: Vec<_> = wait.iter().map(|e| e["ph"].as_str().unwrap()).collect();
        assert_eq!(phases, ["b", "e"], "connection {id}:\n{}", story());
        assert_eq!(ts(wait[1]), start, "the wait ends as the worker takes it");
        assert!(ts(wait[0]) <= ts(accepted[0]) && ts(accepted[0]) <= start);
        // The log's wait is the same, to the millisecond (and left out when under one).
        let backlog_ms = wait[0]["args"]["backlog_us"].as_u64().unwrap() / 1000;
        assert_eq!(logged["waited_ms"].as_u64().unwrap_or(0), backlog_ms, "{logged}");
        served.push((tid, start, end, ts(wait[0])));
    }
    // Two on each worker: the second waited in the backlog while the first was served, and
    // was taken once it had ended.
    served.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let workers: Vec<u64> = served.iter().map(|s| s.0).collect();
    assert_eq!(workers.len(), 4);
    assert!(workers[0] == workers[1] && workers[2] == workers[3] && workers[1] != workers[2]);
    for pair in served.chunks(2) {
        let [(_, _, first_end, _), (_, second_start, _, second_waits)] = pair else {
            unreachable!("chunks of two")
        };
        assert!(second_waits < first_end && first_end <= second_start, "{served:?}\n{}", story());
    }

    let last = events.last().unwrap();
    assert_eq!(last["name"], "trace ended", "{}", story());
    assert_eq!((&last["args"]["dropped"], &last["args"]["over_cap"]), (&0.into(), &0.into()));
    let written = server.wait_for_message("trace written");
    assert_eq!(written["events"], events.len(), "{written}");
    assert_eq!((&written["dropped"], &written["over_cap"]), (&0.into(), &0.into()));
}

/// SIGTERM while poems stream, with no grace: the connections are cut off, and the file is
/// still closed as valid JSON, with each cut connection's slice and outcome.
#[test]
fn a_trace_stopped_mid_poem_is_valid_json() {
    let poem = BinaryPoem::new(95);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("trace.json");
    let args = ["--workers", "2", "--delay", "1s", "--num-bytes", "10", "--shutdown-grace", "0"];
    let server = traced(&poem, &path, &args);
    let clients = [server.start_streaming(10), server.start_streaming(10)];
    let (server, events) = stop_and_read(server, &path);
    drop(clients);
    let slices: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), 2, "{events:#?}\n{}", server.stderr());
    for slice in slices {
        assert_eq!(slice["args"]["outcome"], "shutdown", "{slice}");
        let chunks = of(&events, &slice["args"]["connection"], "i", "chunk");
        assert!(!chunks.is_empty() && chunks.iter().all(|c| c["tid"] == slice["tid"]));
    }
    assert_eq!(events.last().unwrap()["name"], "trace ended");
}

/// A FIFO that nothing reads is refused at start-up, in one line: opening it for writing would
/// wait for a reader, and before the fix held the start-up for good, deaf to SIGTERM.
#[test]
fn a_fifo_nothing_reads_is_refused() {
    let poem = BinaryPoem::new(300);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    let launch = Binary::launch(poem.path()).args(&["--trace", fifo.to_str().unwrap()]);
    let output = run_command(&mut launch.command());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("poetry-serve: error: cannot write the trace"), "{stderr}");
    assert!(stderr.trim_end().ends_with("nothing reads the FIFO; start its reader first"));
}

/// A reader that stops reading (a stalled `tail`, a hung log shipper) costs the trace, not the
/// stop: the server stops with its stats line and says the trace was given up on. Before the
/// fix the stop waited for the writer, blocked in write(2), for good.
#[test]
fn a_reader_that_stops_reading_does_not_hold_the_stop() {
    const FETCHES: usize = 1000;
    let poem = BinaryPoem::new(300);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    // The reader opens the FIFO first (without waiting for a writer), then never reads.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO to read");
    let mut server = traced(&poem, &fifo, &["--delay", "0", "--workers", "4"]);
    // A connection is half a dozen lines of trace: a thousand fill the pipe (64 KiB) and the
    // writer's buffer (64 KiB) several times over.
    for _ in 0..FETCHES {
        server.fetch_exact(&poem.bytes);
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert_eq!(server.last_stats()["accepted"], FETCHES);
    let given_up = server.events().into_iter().any(|event| {
        event["message"].as_str().is_some_and(|m| m.starts_with("cannot write the trace"))
            && event["error"].as_str().is_some_and(|e| e.contains("stopped reading"))
    });
    assert!(given_up, "{}", server.stderr());
}

/// Under a file-size limit (`ulimit -f`, `LimitFSIZE=`), a trace that reaches it stops, with a
/// warning at once, and the server goes on serving and stops cleanly. Before the fix the
/// kernel's SIGXFSZ killed the process at the first write past the limit.
#[test]
fn a_file_size_limit_stops_the_trace_not_the_server() {
    const FETCHES: usize = 300;
    let poem = BinaryPoem::new(300);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("trace.json");
    let mut server = Binary::launch(poem.path())
        .under_shell("ulimit -f 16") // 16 KiB: a few dozen connections' events
        .args(&["--log-format", "json", "--delay", "0", "--workers", "4"])
        .args(&["--trace", trace.to_str().unwrap()])
        .start();
    for _ in 0..FETCHES {
        server.fetch_exact(&poem.bytes);
    }
    server.wait_for_events_where("the trace's failure, said at once", 1, |event| {
        event["message"].as_str().is_some_and(|m| m.starts_with("cannot write the trace"))
    });
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert_eq!(server.last_stats()["accepted"], FETCHES, "{}", server.stderr());
}

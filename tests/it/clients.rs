//! Clients that misbehave (hang up, stall, never stop talking) and the fixed pool's limit:
//! each ends only its own connection, and the worker moves on.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{BinaryPoem, LIMIT, Server, read_to_end, shipped};

/// With --workers 2, four clients connecting at once are served in two waves: never more than
/// two at a time, and the second wave only once the first is done.
#[test]
fn the_pool_limits_concurrent_clients() {
    let poem = BinaryPoem::new(50); // 5 chunks: at least 0.8 s per client
    let server = Server::launch(poem.path())
        .args(&["--workers", "2", "--num-bytes", "10", "--delay", "0.2"])
        .start();
    let fetches: Vec<_> = server
        .fetch_many(4)
        .into_iter()
        .map(|fetch| fetch.expect("fetch"))
        .collect();
    for fetch in &fetches {
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    let mut spans: Vec<_> = fetches
        .iter()
        .map(|f| (f.first_byte(), f.elapsed))
        .collect();
    spans.sort();
    let story = format!("(first byte, EOF) per client: {spans:?}");
    // A poem takes at least 0.8 s, so the third client cannot start before then...
    assert!(
        spans[2].0 >= Duration::from_millis(800),
        "third client started early: {story}"
    );
    // ...and at no moment are more than two clients between first byte and EOF. A worker is
    // free once its client has everything, which that client may notice a moment after the
    // next client's first byte: 100 ms of EOF is allowed for that (a chunk is 200 ms).
    let slack = Duration::from_millis(100);
    for &(begin, _) in &spans {
        let streaming = spans
            .iter()
            .filter(|&&(b, e)| b <= begin && begin + slack < e)
            .count();
        assert!(streaming <= 2, "{streaming} clients at once: {story}");
    }
}

/// A client that hangs up mid-poem is logged as such, and the only worker serves the next.
#[test]
fn a_client_hanging_up_frees_its_worker() {
    let poem = BinaryPoem::new(200);
    let server = Server::launch(poem.path())
        .args(&["--workers", "1", "--num-bytes", "10", "--delay", "0.02"])
        .args(&["--log-format", "json"])
        .start();
    let mut quitter = server.connect();
    let mut first = [0u8; 20];
    quitter.read_exact(&mut first).expect("the first chunks");
    drop(quitter);
    server.fetch_exact(&poem.bytes);
    let ended = server.wait_for_events("connection ended", 2);
    let outcomes: Vec<_> = ended.iter().map(|event| &event["outcome"]).collect();
    assert_eq!(
        outcomes,
        ["client_closed", "complete"],
        "{}",
        server.stderr()
    );
}

/// A client that stops reading is dropped after --write-timeout, and its worker is free again.
#[test]
fn a_stalled_reader_is_dropped_after_the_write_timeout() {
    // Far more than loopback's socket buffers hold, so the server's writes must block.
    let poem = BinaryPoem::new(32 << 20);
    let server = Server::launch(poem.path())
        .args(&["--workers", "1", "--delay", "0", "--write-timeout", "1"])
        .args(&["--log-format", "json"])
        .start();
    let staller = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    staller.set_recv_buffer_size(4096).unwrap();
    staller
        .connect_timeout(&server.addr.into(), LIMIT)
        .expect("connect");
    // The only worker is now stuck on the staller; this client waits until it is dropped.
    server.fetch_exact(&poem.bytes);
    let ended = server.wait_for_events("connection ended", 2);
    let outcomes: Vec<_> = ended.iter().map(|event| &event["outcome"]).collect();
    assert_eq!(outcomes, ["timed_out", "complete"], "{}", server.stderr());
    drop(staller);
}

/// A client that reads the whole poem but never stops sending or closes cannot hold its
/// worker: the server discards its input for a bounded time, then closes.
#[test]
fn a_client_that_keeps_talking_cannot_hold_the_worker() {
    let (path, bytes) = shipped("science.txt");
    let server = Server::launch(&path)
        .args(&["--workers", "1", "--delay", "0"])
        .start();
    let talker = server.connect();
    let mut writer = talker.try_clone().unwrap();
    let chatter = thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < LIMIT {
            if writer.write_all(&[b'x'; 1024]).is_err() {
                return; // the server closed on us: expected
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let fetch = read_to_end(talker, Instant::now()).expect("the talker's poem");
    server.assert_bytes(&fetch.bytes, &bytes);
    // The talker holds its end open and keeps talking; the next client still gets served.
    server.fetch_exact(&bytes);
    chatter.join().unwrap();
}

/// Whatever a client sends is read and thrown away, so it still receives every byte: the
/// server does not close with unread input, which would make the kernel reset the connection
/// and destroy the poem's tail.
#[test]
fn a_client_that_sends_data_still_gets_every_byte() {
    let poem = BinaryPoem::new(1 << 20);
    let server = Server::launch(poem.path()).args(&["--delay", "0"]).start();
    for round in 1..=3 {
        let started = Instant::now();
        let mut client = server.connect();
        client
            .write_all(&[b'y'; 50_000])
            .expect("send before reading");
        // The whole poem fits in the socket buffers: the server finishes writing and reaches
        // its close (logging the connection first) while the poem sits unread here.
        server.wait_for_logs("connection ended", round);
        let fetch = read_to_end(client, started)
            .unwrap_or_else(|err| panic!("lost the poem's tail: {err}; {}", server.stderr()));
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
}

/// A netcat user typing a line mid-poem still gets the whole paced poem.
#[test]
fn typing_during_a_paced_poem_loses_nothing() {
    let (path, bytes) = shipped("fascination.txt");
    let server = Server::launch(&path)
        .args(&["--num-bytes", "50", "--delay", "0.01"])
        .start();
    let mut client = server.start_streaming(50);
    client
        .stream
        .write_all(b"hello, is this thing on?\n")
        .unwrap();
    let got = client.finish().expect("the rest");
    server.assert_bytes(&got, &bytes);
}

/// Workers run at the lowest CPU priority, below the accept loop, so that a burst of connects
/// is accepted before the backlog overflows (see `pool::WORKER_NICENESS`).
#[test]
fn workers_run_below_the_accept_loop() {
    let (path, _) = shipped("science.txt");
    let server = Server::launch(&path).args(&["--workers", "3"]).start();
    // The main thread's nice value, then each worker's, once it has started (a thread names
    // itself and lowers its priority when it first runs, which on a loaded machine can come
    // after the listening line).
    let main = nice_values(server.pid())
        .get("poetry-serve")
        .copied()
        .expect("the main thread is there");
    let expected = (main + 10).min(19);
    let started = Instant::now();
    loop {
        let nice = nice_values(server.pid());
        let workers = ["worker-0", "worker-1", "worker-2"];
        if workers.iter().all(|w| nice.get(*w) == Some(&expected)) {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "workers not at nice {expected}: {nice:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The nice value of each thread of process `pid`, by thread name.
fn nice_values(pid: u32) -> std::collections::BTreeMap<String, i32> {
    let mut nice = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads") {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        // Field 19 of stat is the nice value; fields are counted after the "(comm) " part.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if let Some(Ok(value)) = after.split_whitespace().nth(16).map(str::parse) {
            // A thread not yet named shares the main thread's name: keep the first seen,
            // which is the main thread (its task id is the lowest).
            nice.entry(name.trim().to_string()).or_insert(value);
        }
    }
    nice
}

/// Out of file descriptors, the accept loop pauses instead of failing or spinning, and every
/// client waiting in the backlog is served once descriptors free up: nothing is dropped.
#[test]
fn running_out_of_file_descriptors_drops_no_one() {
    let poem = BinaryPoem::new(50);
    // 24 descriptors: a handful for the server itself, the rest for about 15 connections.
    let server = Server::launch(poem.path())
        .args(&["--workers", "64", "--num-bytes", "10", "--delay", "0.05"])
        .under_shell("ulimit -n 24")
        .start();
    let fetches = server.fetch_many(40);
    for fetch in fetches {
        let fetch =
            fetch.unwrap_or_else(|err| panic!("a client lost out: {err}\n{}", server.stderr()));
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    let log = server.stderr();
    assert!(
        log.contains("accept failed; pausing"),
        "the limit was never reached:\n{log}"
    );
}

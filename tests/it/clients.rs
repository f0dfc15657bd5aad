//! Clients that misbehave (hang up, stall, never stop talking) and the fixed pool's limit:
//! each ends only its own connection, and the worker moves on.

use std::io::Write;
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use poetry_serve::{Config, Outcome};

use crate::common::{
    Binary, BinaryPoem, InProcess, LIMIT, Target, eventually, ms, read_to_end, shipped,
};

/// `poem` in chunks of 10 bytes, `delay` apart, to `workers` clients at once.
fn config(poem: &std::path::Path, workers: usize, delay: Duration) -> Config {
    let mut config = Config::new(poem);
    config.workers = NonZeroUsize::new(workers).unwrap();
    config.pacing.delay = delay;
    config
}

/// With two workers, four clients connecting at once are served two at a time: two stream
/// while the other two wait in the listen backlog, unaccepted, and then all four get the poem.
#[test]
fn the_pool_limits_concurrent_clients() {
    let poem = BinaryPoem::new(50);
    let server = InProcess::start(config(poem.path(), 2, ms(200)));
    thread::scope(|scope| {
        let clients: Vec<_> =
            (0..4).map(|_| scope.spawn(|| server.fetch_exact(&poem.bytes))).collect();
        let waiting = |t: &poetry_serve::Tally| {
            t.busy == 2 && server.handle.backlog().is_some_and(|(n, _)| n == 2)
        };
        server.wait_tally("two streaming and two in the backlog", waiting);
        for client in clients {
            client.join().expect("a client");
        }
    });
    let tally = server.wait_ended(Outcome::Complete, 4);
    assert_eq!(tally.accepted, 4, "{tally:?}");
}

/// A client that hangs up mid-poem is counted as such, and the only worker serves the next.
#[test]
fn a_client_hanging_up_frees_its_worker() {
    let poem = BinaryPoem::new(200);
    let server = InProcess::start(config(poem.path(), 1, ms(20)));
    drop(server.start_streaming(20));
    server.fetch_exact(&poem.bytes);
    let tally = server.wait_ended(Outcome::Complete, 1);
    assert_eq!(tally.ended(Outcome::ClientClosed), 1, "{tally:?}");
}

/// A client that stops reading is dropped after the write timeout, and its worker is free
/// again.
#[test]
fn a_stalled_reader_is_dropped_after_the_write_timeout() {
    // Far more than loopback's socket buffers hold, so the server's writes must block.
    let poem = BinaryPoem::new(32 << 20);
    let mut config = config(poem.path(), 1, Duration::ZERO);
    config.write_timeout = Duration::from_secs(1);
    let server = InProcess::start(config);
    let staller = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    staller.set_recv_buffer_size(4096).unwrap();
    staller.connect_timeout(&server.addr().into(), LIMIT).expect("connect");
    // The only worker is now stuck on the staller; this client waits until it is dropped.
    server.fetch_exact(&poem.bytes);
    let tally = server.wait_ended(Outcome::Complete, 1);
    assert_eq!(tally.ended(Outcome::TimedOut), 1, "{tally:?}");
    drop(staller);
}

/// A client that reads the whole poem but never stops sending or closes cannot hold its
/// worker: the server discards its input for the linger, then closes.
#[test]
fn a_client_that_keeps_talking_cannot_hold_the_worker() {
    let (path, bytes) = shipped("science.txt");
    let mut config = config(&path, 1, Duration::ZERO);
    config.linger = ms(200);
    let server = InProcess::start(config);
    let talker = server.connect();
    let mut writer = talker.try_clone().unwrap();
    let chatter = thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < LIMIT && writer.write_all(&[b'x'; 1024]).is_ok() {
            thread::sleep(ms(5));
        }
    });
    let fetch = read_to_end(talker, Instant::now());
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
    let server = InProcess::start(config(poem.path(), 4, Duration::ZERO));
    for round in 1..=3 {
        let started = Instant::now();
        let mut client = server.connect();
        client.write_all(&[b'y'; 50_000]).expect("send before reading");
        // The whole poem fits in the socket buffers: the server finishes writing and reaches
        // its close while the poem sits unread here.
        let what = "the poem handed to the kernel";
        eventually(
            what,
            || server.story(),
            || (server.handle.counters().bytes() >= round << 20).then_some(()),
        );
        let fetch = read_to_end(client, started);
        assert_eq!(fetch.ended, Ok(()), "lost the poem's tail\n{}", server.story());
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
}

/// A netcat user typing a line mid-poem still gets the whole paced poem.
#[test]
fn typing_during_a_paced_poem_loses_nothing() {
    let (path, bytes) = shipped("fascination.txt");
    let mut config = config(&path, 4, ms(10));
    config.pacing = poetry_serve::Pacing::new(NonZeroUsize::new(50).unwrap(), ms(10));
    let server = InProcess::start(config);
    let mut client = server.start_streaming(50);
    client.stream.write_all(b"hello, is this thing on?\n").unwrap();
    let got = client.finish();
    server.assert_bytes(&got.bytes, &bytes);
    assert_eq!(got.ended, Ok(()));
}

/// A client that keeps sending while it reads too slowly to take the poem's end before the
/// linger runs out is counted as an unclean close, not as complete.
#[test]
fn a_close_that_may_cost_the_tail_is_not_called_complete() {
    let poem = BinaryPoem::new(12 * 1024);
    let mut config = config(poem.path(), 4, Duration::ZERO);
    config.linger = ms(300);
    let server = InProcess::start(config);
    // A small receive window, so most of the poem waits in the server's send queue.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.connect_timeout(&server.addr().into(), LIMIT).expect("connect");
    let mut stream = std::net::TcpStream::from(socket);
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    eventually(
        "an unclean close",
        || server.story(),
        || {
            let _ = stream.write_all(b"chatter\n");
            let tally = server.tally();
            assert_eq!(tally.ended(Outcome::Complete), 0, "{}", server.story());
            (tally.ended(Outcome::UncleanClose) == 1).then_some(())
        },
    );
}

/// Out of file descriptors (its limit lowered while it runs), accepting pauses instead of
/// failing or spinning, and every client waiting in the backlog is served once descriptors free
/// up: nothing is dropped.
#[test]
fn running_out_of_file_descriptors_drops_no_one() {
    let poem = BinaryPoem::new(50);
    let server = Binary::launch(poem.path())
        .args(&["--workers", "64", "--num-bytes", "10", "--delay", "0.05"])
        .start();
    // 24 descriptors: a handful for the server itself, the rest for about 15 connections. The
    // workers waiting in accept hold a descriptor number each, taken before the limit fell:
    // more clients than workers, so that the workers come back for more.
    server.limit_open_files(24);
    for fetch in server.fetch_many(100) {
        server.assert_bytes(&fetch.bytes, &poem.bytes);
    }
    server.wait_for_logs("accept failed; pausing", 1);
}

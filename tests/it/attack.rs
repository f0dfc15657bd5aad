//! What an attack round found (2026-12-06): hostile environments and inputs that hung, stalled
//! or bloated the server. Each test failed on the commit it was written against.

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::common::{Binary, BinaryPoem, LIMIT, Target, shipped};

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A child process killed (and reaped) when dropped, whatever the test did.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    (status.lines())
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// `--trace` naming a FIFO that nobody reads is refused at start-up with one line and exit
/// status 1. Before the fix, the blocking `open` held the start-up
/// with the signal handlers registered and no thread acting on them: only SIGKILL ended it.
#[test]
fn a_trace_fifo_nobody_reads_is_refused_at_start_up() {
    let (poem, _) = shipped("science.txt");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    let mut command = Binary::launch(&poem).args(&["--trace", fifo.to_str().unwrap()]).command();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poetry-serve");
    let mut child = Killed(child);
    let stderr = child.0.stderr.take().expect("stderr is piped");
    let (line_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
        let _ = line_tx.send(lines);
    });
    let exited = eventually_or_none(|| child.0.try_wait().unwrap());
    if exited.is_none() {
        // Still running: a SIGTERM must end it all the same, before the test fails.
        let pid = i32::try_from(child.0.id()).unwrap();
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let ended = eventually_or_none(|| child.0.try_wait().unwrap());
        panic!("still starting after {LIMIT:?}; ended by a SIGTERM: {}", ended.is_some());
    }
    let lines = lines.recv_timeout(LIMIT).expect("stderr closes with the process");
    assert_eq!(exited.unwrap().code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("poetry-serve: error: cannot write the trace"), "{lines:?}");
    assert!(lines[0].ends_with("nothing reads the FIFO; start its reader first"), "{lines:?}");
}

/// Like `common::eventually`, but gives `None` instead of failing once [`LIMIT`] has passed.
fn eventually_or_none<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if started.elapsed() >= LIMIT {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `--trace` into a pipe whose reader stops reading (a stalled `tail`, a hung log shipper): the
/// poems are served all the same, and a SIGTERM still ends the server with its stats line, the
/// trace given up on and said so. Before the fix, the stop joined a writer blocked in write(2)
/// for good: no stats line, no exit.
#[test]
fn a_trace_reader_that_stops_reading_does_not_hold_the_stop() {
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
    let mut server = Binary::launch(poem.path())
        .args(&["--log-format", "json", "--delay", "0", "--workers", "4"])
        .args(&["--trace", fifo.to_str().unwrap()])
        .start();
    // Each connection is half a dozen lines of trace: a thousand fill the pipe (64 KiB) and the
    // writer's buffer (64 KiB) several times over.
    for _ in 0..1000 {
        server.fetch_exact(&poem.bytes);
    }
    server.signal(libc::SIGTERM);
    // Fails, saying so, if there is no exit within LIMIT.
    let status = server.wait_exit();
    let log = server.stderr();
    assert!(status.success(), "{status:?}\n{log}");
    let stats = server.last_stats();
    assert_eq!(stats["accepted"], 1000, "{stats}");
    assert!(log.contains("cannot write the trace") && log.contains("stopped reading"), "{log}");
}

/// With `--num-bytes` (or a PUT to `--control`) above the poem's size, a connection holds a
/// buffer of at most 1 MiB, as an unpaced one does, not the whole poem: before the fix, 8
/// clients of a 16 MiB poem grew the server's RSS by 128 MiB, and under `ulimit -v` the
/// allocation failed and the process aborted.
#[test]
fn a_chunk_larger_than_the_poem_does_not_hold_the_poem_per_connection() {
    const CLIENTS: usize = 8;
    let poem = BinaryPoem::new(16 << 20);
    let server = Binary::launch(poem.path())
        .args(&["--log-format", "json", "--workers", "8", "--write-timeout", "1h"])
        .args(&["--num-bytes", "1000000000", "--delay", "1h"])
        .start();
    let before = rss_kib(server.pid());
    // Clients that do not read: the first chunk (the whole poem) waits in the server.
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let client = server.connect();
            socket2::SockRef::from(&client).set_recv_buffer_size(4096).unwrap();
            client
        })
        .collect();
    server.wait_for_stats(|stats| stats["busy_workers"] == CLIENTS);
    // Each worker has read its chunk before it blocks writing it; sample until it shows.
    let mut grown = 0;
    for _ in 0..50 {
        grown = grown.max(rss_kib(server.pid()).saturating_sub(before));
        thread::sleep(Duration::from_millis(10));
    }
    for client in &clients {
        let _ = client.shutdown(Shutdown::Both);
    }
    assert!(
        grown < 64 * 1024,
        "{CLIENTS} connections of a 16 MiB poem with --num-bytes above its size grew the \
         server's RSS by {} MiB:\n{}",
        grown / 1024,
        server.story()
    );
}

/// At a stop, every connection still waiting in the listen backlog is closed unserved, counted
/// and logged, even when the backlog holds more than the open-file limit allows at once (each
/// is closed before the next is taken): no client is reset unseen. Before the fix, with
/// `ulimit -n 1024`, `--workers 100` and 2,500 clients, 1,485 were reset and never counted.
#[test]
fn a_stop_counts_and_ends_cleanly_a_backlog_larger_than_the_open_file_limit() {
    const CLIENTS: usize = 400;
    const WORKERS: usize = 20;
    let (poem, _) = shipped("science.txt");
    let mut server = Binary::launch(&poem)
        .under_shell("ulimit -n 256")
        .args(&["--log-format", "json", "--workers", "20", "--delay", "0.5"])
        .args(&["--shutdown-grace", "1s"])
        .start();
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    server.wait_for_stats(|stats| stats["busy_workers"] == WORKERS);
    server.signal(libc::SIGTERM);
    let endings: Vec<&str> = thread::scope(|scope| {
        let reading: Vec<_> = (clients.into_iter())
            .map(|client| {
                scope.spawn(move || {
                    client.set_read_timeout(Some(LIMIT)).unwrap();
                    match std::io::copy(&mut &client, &mut std::io::sink()) {
                        Ok(_) => "end of file",
                        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => "reset",
                        Err(_) => "other error",
                    }
                })
            })
            .collect();
        reading.into_iter().map(|r| r.join().expect("a client thread")).collect()
    });
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    let resets = endings.iter().filter(|e| **e == "reset").count();
    let stats = server.last_stats();
    let logged = server.outcomes().len();
    assert!(
        resets == 0 && stats["accepted"] == CLIENTS && logged == CLIENTS,
        "of {CLIENTS} clients, {resets} were reset at the stop; the server counted {} and \
         logged {logged}",
        stats["accepted"]
    );
}

/// A `NOTIFY_SOCKET` whose reader is behind (its queue full) holds up neither the start-up nor
/// the stop: a notification is worth losing, a stop is not. Before the fix the signal thread
/// blocked in its `send` of STOPPING=1 before it stopped anything: the server went on serving
/// past the grace period until another signal interrupted the send.
#[test]
fn a_stalled_notify_socket_does_not_hold_the_stop() {
    use std::os::unix::net::UnixDatagram;
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
    let (poem, poem_bytes) = shipped("science.txt");
    let mut server = Binary::launch(&poem)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .args(&["--log-format", "json", "--delay", "0"])
        .start();
    server.fetch_exact(&poem_bytes);
    server.signal(libc::SIGTERM);
    // Fails, saying so, if there is no exit within LIMIT.
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

/// Under a file-size limit (`ulimit -f`, `LimitFSIZE=`), a trace that reaches it stops, with a
/// warning at once, and the server goes on serving and stops cleanly. Before the fix the kernel's
/// SIGXFSZ killed the process at the first write past the limit.
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

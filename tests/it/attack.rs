//! What an attack round found (2026-12-06): hostile environments and inputs that hang, stall or
//! bloat the server. Each test says what it should do; those marked FAILS TODAY fail on the
//! commit they were written against, and pass once the finding is fixed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpStream};
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

/// FAILS TODAY. `--trace` naming a FIFO that nobody reads: the trace is created with a blocking
/// `open`, after the signal handlers are registered but before the thread that acts on them
/// starts, so the server neither listens nor says anything, and SIGTERM and SIGINT (any number
/// of them) are swallowed: only SIGKILL ends it. Either refusing the FIFO (exit status 1, one
/// line) or listening would do; and a SIGTERM must end the process either way.
#[test]
fn a_trace_fifo_nobody_reads_neither_hangs_start_up_nor_swallows_sigterm() {
    let (poem, _) = shipped("science.txt");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    let mut command = Binary::launch(&poem).args(&["--trace", fifo.to_str().unwrap()]).command();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start poetry-serve");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let (line_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    // Started: either it listens (a line on stdout) or it refused and exited.
    let started = lines.recv_timeout(LIMIT).is_ok() || child.0.try_wait().unwrap().is_some();
    // Either way a SIGTERM ends it (at once if it already exited).
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let ended = eventually_or_none(|| child.0.try_wait().unwrap());
    assert!(
        started && ended.is_some(),
        "with --trace on a FIFO nobody reads: started (listening or refused) within {LIMIT:?}: \
         {started}; ended by SIGTERM within {LIMIT:?}: {}",
        ended.is_some()
    );
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

/// FAILS TODAY. `--trace` into a pipe whose reader stops reading (a FIFO read by a stalled
/// `tail`, a log shipper that hangs): the poems are served all the same, but SIGTERM never
/// completes: once the connections have drained, dropping the trace joins its writer thread,
/// which is blocked in write(2) for good, so there is no stats line and no exit; only a second
/// signal ends the process (status 143, still without the stats line). The stop must finish
/// and say the trace could not be written, as it does on a full disk.
#[test]
fn a_trace_reader_that_stops_reading_does_not_hold_the_stop() {
    let poem = BinaryPoem::new(300);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    // The reader opens the FIFO (which waits for the server to open it for writing), then
    // never reads.
    let reader_path = fifo.clone();
    let reader = thread::spawn(move || File::open(reader_path).expect("open the FIFO to read"));
    let mut server = Binary::launch(poem.path())
        .args(&["--log-format", "json", "--delay", "0", "--workers", "4"])
        .args(&["--trace", fifo.to_str().unwrap()])
        .start();
    let _reader = reader.join().expect("the reader thread");
    // Each connection is half a dozen lines of trace: a thousand fill the pipe (64 KiB) and the
    // writer's buffer (64 KiB) several times over.
    for _ in 0..1000 {
        server.fetch_exact(&poem.bytes);
    }
    server.signal(libc::SIGTERM);
    // Fails, saying so, if there is no exit within LIMIT.
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    let stats = server.last_stats();
    assert_eq!(stats["accepted"], 1000, "{stats}");
}

/// FAILS TODAY. A paced chunk is read into a buffer of its own size, capped only by the poem's
/// size: with `--num-bytes` (or a PUT to `--control`) above the poem's size, every connection
/// holds the whole poem in memory, despite "a poem is read as it is served, never held in
/// memory" (`--help`) and "with --delay 0 a buffer of up to 1 MiB per connection"
/// (docs/operations.md). 8 clients of a 16 MiB poem made the server's RSS grow by 128 MiB;
/// 40 clients of a 32 MiB poem, by 1.25 GiB; under `ulimit -v` (LimitAS=) the allocation
/// fails and the process aborts. A buffer of at most the unpaced one (1 MiB) a connection
/// keeps these 8 well under 64 MiB.
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

/// FAILS TODAY. At a stop, the connections still waiting in the listen backlog are to be
/// "closed unserved but counted and logged: its client sees the end of the connection rather
/// than a reset" (`Intake::close`). But `Listeners::close` accepts the whole backlog into one
/// list before any of it is closed, and stops draining at the first failed accept: with the
/// open-file limit lower than the backlog, the rest are reset by the kernel as the sockets
/// close, never counted nor logged, and nothing says so. Measured with `ulimit -n 1024`,
/// `--workers 100` and 2,500 clients: 1,485 reset unseen, 1,015 counted.
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

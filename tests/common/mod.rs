//! Helpers shared by every integration test: a server started in-process ([`InProcess`]) or as
//! the real binary ([`Binary`]), clients that talk to either over loopback, and one way to wait
//! for anything ([`eventually`]), always up to [`LIMIT`].

#![allow(dead_code)] // each test binary uses its own share of these

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use poetry_serve::{Config, Handle, Server, Tally};

/// The longest any single wait in these tests may take before it counts as a failure.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_poetry-serve");

/// Calls `check` until it gives a value, and returns it; fails, saying `what` was waited for
/// and what `story` tells, if none comes within [`LIMIT`].
#[track_caller]
pub fn eventually<T>(
    what: &str,
    story: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < LIMIT, "never {what}:\n{}", story());
        thread::sleep(Duration::from_millis(10));
    }
}

/// A file holding `bytes`, deleted when dropped.
pub fn poem_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("create a temporary poem");
    file.write_all(bytes).expect("write the temporary poem");
    file
}

/// A poem of binary bytes (see [`binary_bytes`]) in a temporary file, deleted when dropped.
pub struct BinaryPoem {
    /// What the file holds: what a client must receive.
    pub bytes: Vec<u8>,
    file: tempfile::NamedTempFile,
}

impl BinaryPoem {
    /// A poem of `len` bytes.
    pub fn new(len: usize) -> BinaryPoem {
        let bytes = binary_bytes(len);
        let file = poem_file(&bytes);
        BinaryPoem { bytes, file }
    }

    /// Where the poem is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A directory holding one file, `poem.txt`, with `bytes` in it: for tests that replace,
/// truncate or delete the poem while it is served. Both are deleted when the directory drops.
pub fn poem_in_dir(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("poem.txt");
    std::fs::write(&path, bytes).expect("write the temporary poem");
    (dir, path)
}

/// `len` bytes that cover every byte value and do not repeat with a short period.
pub fn binary_bytes(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// A shipped poem's path and contents.
pub fn shipped(name: &str) -> (PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("poems").join(name);
    let bytes = std::fs::read(&path).expect("read a shipped poem");
    (path, bytes)
}

/// A duration of `ms` milliseconds.
pub fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// What one client received.
#[derive(Debug)]
pub struct Fetch {
    /// Every byte, in order.
    pub bytes: Vec<u8>,
    /// For each read: when it returned, since the client started, and the total so far.
    pub arrivals: Vec<(Duration, usize)>,
    /// From the start to the end.
    pub elapsed: Duration,
    /// How it ended: `Ok` at EOF, or the error that ended it (a reset, say).
    pub ended: Result<(), ErrorKind>,
}

impl Fetch {
    /// A fetch that ended as its connect failed, with `kind`.
    pub fn failed(kind: ErrorKind) -> Fetch {
        Fetch { bytes: Vec::new(), arrivals: Vec::new(), elapsed: Duration::ZERO, ended: Err(kind) }
    }

    /// When the first byte arrived.
    pub fn first_byte(&self) -> Duration {
        self.arrivals.first().map_or(self.elapsed, |&(at, _)| at)
    }
}

/// Reads `stream` to its end, recording when each piece arrived relative to `started`.
pub fn read_to_end(mut stream: TcpStream, started: Instant) -> Fetch {
    let (mut bytes, mut arrivals) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        if started.elapsed() > LIMIT {
            break Err(ErrorKind::TimedOut);
        }
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                arrivals.push((started.elapsed(), bytes.len()));
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => break Err(err.kind()),
        }
    };
    Fetch { bytes, arrivals, elapsed: started.elapsed(), ended }
}

/// Fetches the whole poem from `addr` (one of a server's addresses).
pub fn fetch_at(addr: SocketAddr) -> Fetch {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    read_to_end(stream, started)
}

/// A client partway through a poem: connected, its first bytes read.
pub struct InFlight {
    /// The connection, to read the rest from (or write to, as a chatty client would).
    pub stream: TcpStream,
    head: Vec<u8>,
    started: Instant,
}

impl InFlight {
    /// Reads the rest to the end and returns every byte received, the first ones included.
    pub fn finish(self) -> Fetch {
        let mut rest = read_to_end(self.stream, self.started);
        rest.bytes = [self.head, rest.bytes].concat();
        rest
    }
}

/// A server the tests talk to over loopback, in-process or as the binary.
pub trait Target {
    /// The first address it listens on.
    fn addr(&self) -> SocketAddr;

    /// What it has said so far, for a failing assertion.
    fn story(&self) -> String;

    /// Connects from the loopback address `from` (127.0.0.2, say: another source, as far as
    /// the server can tell), with read and write timeouts of [`LIMIT`].
    fn connect_from(&self, from: IpAddr) -> TcpStream {
        let addr = self.addr();
        let socket =
            socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)
                .expect("a client socket");
        socket.bind(&SocketAddr::new(from, 0).into()).expect("bind the client to its source");
        // Before the connect: a server that resets at once would make them fail after it.
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        socket.set_write_timeout(Some(LIMIT)).unwrap();
        // Not connect_timeout: once connected it reads the socket's pending error, and a server
        // that resets at once (a fault) may have done so already; that read would take the
        // reset away from the bytes sent before it. Here the first read reports it, after them
        // (and a refused connect, as its error).
        socket.set_nonblocking(true).unwrap();
        match socket.connect(&addr.into()) {
            Err(err) if err.raw_os_error() != Some(libc::EINPROGRESS) => {
                panic!("connect to {addr}: {err}\n{}", self.story())
            }
            _ => {}
        }
        let mut connected = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&socket),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for a socket open for the call.
        let ready = unsafe { libc::poll(&mut connected, 1, LIMIT.as_millis() as libc::c_int) };
        assert_eq!(ready, 1, "connect to {addr} timed out\n{}", self.story());
        socket.set_nonblocking(false).unwrap();
        TcpStream::from(socket)
    }

    /// Connects from the loopback address the server listens on.
    fn connect(&self) -> TcpStream {
        let loopback = match self.addr().ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        };
        self.connect_from(loopback)
    }

    /// Fetches the whole poem on a new connection.
    fn fetch(&self) -> Fetch {
        let started = Instant::now();
        read_to_end(self.connect(), started)
    }

    /// Fetches on a new connection whose connect may fail: a server that resets at once may
    /// have the reset arrive as the connect returns. The failure is the fetch's end.
    fn try_fetch(&self) -> Fetch {
        let started = Instant::now();
        match TcpStream::connect_timeout(&self.addr(), LIMIT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                read_to_end(stream, started)
            }
            Err(err) => Fetch::failed(err.kind()),
        }
    }

    /// Fetches and checks that the poem arrived byte for byte, ending cleanly.
    fn fetch_exact(&self, expected: &[u8]) -> Fetch {
        let fetch = self.fetch();
        self.assert_bytes(&fetch.bytes, expected);
        assert_eq!(fetch.ended, Ok(()), "a clean end\n{}", self.story());
        fetch
    }

    /// Fetches the poem on `n` connections at once, all timed from one start, and returns
    /// what each received (in no particular order).
    fn fetch_many(&self, n: usize) -> Vec<Fetch>
    where
        Self: Sync,
    {
        let started = Instant::now();
        thread::scope(|scope| {
            let clients: Vec<_> =
                (0..n).map(|_| scope.spawn(move || read_to_end(self.connect(), started))).collect();
            clients.into_iter().map(|c| c.join().expect("a client thread")).collect()
        })
    }

    /// Connects and reads the first `n` bytes, so the poem is known to be streaming.
    fn start_streaming(&self, n: usize) -> InFlight {
        self.streaming(self.connect(), n)
    }

    /// Like [`Target::start_streaming`], from the loopback address `from`.
    fn start_streaming_from(&self, from: IpAddr, n: usize) -> InFlight {
        self.streaming(self.connect_from(from), n)
    }

    /// Reads the first `n` bytes from `stream`, just connected.
    fn streaming(&self, mut stream: TcpStream, n: usize) -> InFlight {
        let started = Instant::now();
        let mut head = vec![0u8; n];
        stream
            .read_exact(&mut head)
            .unwrap_or_else(|err| panic!("the first {n} bytes: {err}\n{}", self.story()));
        InFlight { stream, head, started }
    }

    /// Asserts two byte strings are equal, and tells the whole story when they are not.
    #[track_caller]
    fn assert_bytes(&self, got: &[u8], expected: &[u8]) {
        if got != expected {
            let first_diff = got.iter().zip(expected).position(|(a, b)| a != b);
            panic!(
                "got {} bytes, expected {}; first difference at {first_diff:?}\n{}",
                got.len(),
                expected.len(),
                self.story()
            );
        }
    }
}

/// A server started in-process, on 127.0.0.1 and a free port; dropped, it stops at once.
pub struct InProcess {
    server: Option<Server>,
    pub handle: Handle,
    addr: SocketAddr,
}

impl InProcess {
    /// A configuration serving `poem` on 127.0.0.1, a free port, with the tutorial's pacing;
    /// change any field, then [`InProcess::start`].
    pub fn config(poem: &Path) -> Config {
        Config::new(poem)
    }

    /// Starts a server with `config`.
    pub fn start(config: Config) -> InProcess {
        let server = Server::start(config).expect("start an in-process server");
        let handle = server.handle();
        let addr = server.local_addrs()[0];
        InProcess { server: Some(server), handle, addr }
    }

    /// Where every connection is now.
    pub fn tally(&self) -> Tally {
        self.handle.counters().tally()
    }

    /// Waits until the tally is as `wanted` says (`what` says how, if it never is), and
    /// returns it.
    #[track_caller]
    pub fn wait_tally(&self, what: &str, wanted: impl Fn(&Tally) -> bool) -> Tally {
        eventually(what, || self.story(), || Some(self.tally()).filter(&wanted))
    }

    /// Waits until `count` connections have ended with `outcome`.
    #[track_caller]
    pub fn wait_ended(&self, outcome: poetry_serve::Outcome, count: u64) -> Tally {
        let what = format!("{count} connections ended {}", outcome.label());
        self.wait_tally(&what, |t| t.ended(outcome) >= count)
    }

    /// Stops the server as SIGTERM would, draining it within its grace.
    pub fn stop(mut self) -> poetry_serve::Stopped {
        self.server.take().expect("running").stop()
    }
}

impl Target for InProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn story(&self) -> String {
        format!("tally: {:?}\nconnections: {:#?}", self.tally(), self.handle.connections())
    }
}

/// A running poetry-serve process, killed when dropped.
pub struct Binary {
    child: Child,
    /// The address from the listening line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Says when the server's stderr has closed, that is, when everything it logged is in.
    stderr_eof: Mutex<Receiver<()>>,
    /// The lines on stdout not yet read.
    stdout: Mutex<Receiver<std::io::Result<String>>>,
}

/// How to start the binary: the poems, the flags and the environment, then [`Launch::start`].
pub struct Launch {
    poems: Vec<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: String,
    shell: Option<String>,
    close_stderr: bool,
}

impl Launch {
    /// Adds flags, in order, after `--port`.
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Adds more poems after the first.
    pub fn poem(mut self, poem: &Path) -> Launch {
        self.poems.push(poem.to_owned());
        self
    }

    /// Listens on `port` instead of port 0.
    pub fn port(mut self, port: u16) -> Launch {
        self.port = port.to_string();
        self
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `prelude` in a shell that then `exec`s the server (`ulimit -n 24`, say).
    pub fn under_shell(mut self, prelude: &str) -> Launch {
        self.shell = Some(prelude.into());
        self
    }

    /// Closes the reading end of the server's stderr as soon as it starts, as a stopped
    /// `… | tee log` would: every line it logs then fails with EPIPE.
    pub fn stderr_closed(mut self) -> Launch {
        self.close_stderr = true;
        self
    }

    /// The command this launch runs.
    pub fn command(&self) -> Command {
        let mut command = match &self.shell {
            Some(prelude) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("{prelude} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
            None => Command::new(BIN),
        };
        command
            .args(["--port", &self.port])
            .args(&self.args)
            .args(&self.poems)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts the server and waits for its listening line.
    pub fn start(self) -> Binary {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start poetry-serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let (eof_tx, stderr_eof) = mpsc::channel();
        if self.close_stderr {
            drop(err_pipe);
            let _ = eof_tx.send(());
        } else {
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = err_pipe.read(&mut chunk) {
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
                let _ = eof_tx.send(());
            });
        }
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Binary {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
            stderr_eof: Mutex::new(stderr_eof),
            stdout: Mutex::new(line_rx),
        };
        server.addr = server.listening_addrs(1)[0];
        server
    }
}

impl Binary {
    /// A launch of the binary on 127.0.0.1, port 0, serving `poem`.
    pub fn launch(poem: &Path) -> Launch {
        Launch {
            poems: vec![poem.to_owned()],
            args: Vec::new(),
            env: Vec::new(),
            port: "0".into(),
            shell: None,
            close_stderr: false,
        }
    }

    /// Reads the next line the server wrote on stdout.
    pub fn stdout_line(&self) -> String {
        match self.stdout.lock().unwrap().recv_timeout(LIMIT) {
            Ok(Ok(line)) => line,
            other => panic!("no line on stdout ({other:?}); stderr:\n{}", self.stderr()),
        }
    }

    /// Reads the next `count` listening lines and returns their addresses.
    pub fn listening_addrs(&self, count: usize) -> Vec<SocketAddr> {
        (0..count)
            .map(|_| {
                let line = self.stdout_line();
                line.strip_prefix("poetry-serve listening on ")
                    .and_then(|addr| addr.parse().ok())
                    .unwrap_or_else(|| panic!("odd listening line {line:?}"))
            })
            .collect()
    }

    /// Reads the metrics line (the next line on stdout, after the listening lines) and
    /// returns the metrics listener's address.
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = self.stdout_line();
        line.strip_prefix("poetry-serve metrics on http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("odd metrics line {line:?}"))
    }

    /// Reads the control line (the next line on stdout, after the listening and metrics
    /// lines) and returns the control listener's address.
    pub fn control_addr(&self) -> SocketAddr {
        let line = self.stdout_line();
        line.strip_prefix("poetry-serve control on http://")
            .and_then(|rest| rest.strip_suffix("/faults"))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("odd control line {line:?}"))
    }

    /// Lowers the server's open-file limit to `n` while it runs, as `prlimit` does (from
    /// util-linux).
    pub fn limit_open_files(&self, n: u32) {
        let limit = format!("--nofile={n}:{n}");
        let done =
            run_command(Command::new("prlimit").args(["--pid", &self.pid().to_string(), &limit]));
        assert!(done.status.success(), "prlimit: {done:?}");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every line on stderr so far, each read as one JSON log event (`--log-format json`);
    /// fails on a line that is not. A last line still being written is left for the next call.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let log = self.stderr();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        (complete.lines())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not a JSON event ({err}): {line:?}\n{log}"))
            })
            .collect()
    }

    /// With `--log-format json`: waits until the log holds at least `count` events that are
    /// `wanted` (`what` says which), and returns every one of them, in the order logged.
    #[track_caller]
    pub fn wait_for_events_where(
        &self,
        what: &str,
        count: usize,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let what = format!("{count} events {what}");
        eventually(
            &what,
            || self.stderr(),
            || {
                let events: Vec<_> = self.events().into_iter().filter(&wanted).collect();
                (events.len() >= count).then_some(events)
            },
        )
    }

    /// With `--log-format json`: waits for `count` events whose message is `message`.
    #[track_caller]
    pub fn wait_for_events(&self, message: &str, count: usize) -> Vec<serde_json::Value> {
        self.wait_for_events_where(&format!("{message:?}"), count, |e| e["message"] == message)
    }

    /// With `--log-format json`: waits for an event whose message begins with `start`.
    #[track_caller]
    pub fn wait_for_message(&self, start: &str) -> serde_json::Value {
        let wanted =
            |e: &serde_json::Value| e["message"].as_str().is_some_and(|m| m.starts_with(start));
        self.wait_for_events_where(&format!("beginning {start:?}"), 1, wanted).remove(0)
    }

    /// With `--log-format json`: waits until `count` connections have ended with `outcome`.
    #[track_caller]
    pub fn wait_for_outcome(&self, outcome: &str, count: usize) -> Vec<serde_json::Value> {
        self.wait_for_events_where(&format!("with outcome {outcome}"), count, |e| {
            e["message"] == "connection ended" && e["outcome"] == outcome
        })
    }

    /// With `--log-format json`: the outcome of each connection ended so far, in log order.
    pub fn outcomes(&self) -> Vec<String> {
        (self.events().into_iter())
            .filter(|event| event["message"] == "connection ended")
            .map(|event| event["outcome"].as_str().unwrap_or("(none)").to_string())
            .collect()
    }

    /// With `--log-format json`: the last stats event (the final one, once the server exited).
    pub fn last_stats(&self) -> serde_json::Value {
        (self.events().into_iter())
            .rfind(|event| event["message"] == "stats")
            .unwrap_or_else(|| panic!("no stats event:\n{}", self.stderr()))
    }

    /// With `--log-format json`: sends SIGUSR1 until a stats event is `wanted`, and returns it.
    #[track_caller]
    pub fn wait_for_stats(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        eventually(
            "a stats event as wanted",
            || self.stderr(),
            || {
                self.signal(libc::SIGUSR1);
                thread::sleep(Duration::from_millis(40));
                self.events().into_iter().find(|e| e["message"] == "stats" && wanted(e))
            },
        )
    }

    /// Waits until stderr holds `needle` `count` times, and returns stderr.
    #[track_caller]
    pub fn wait_for_logs(&self, needle: &str, count: usize) -> String {
        let what = format!("{count} × {needle:?} in the log");
        eventually(
            &what,
            || self.stderr(),
            || {
                let log = self.stderr();
                (log.matches(needle).count() >= count).then_some(log)
            },
        )
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pids fit in i32");
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// Waits for the server to exit, at most [`LIMIT`], and returns how it exited.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let stderr = Arc::clone(&self.stderr);
        let story = move || stderr.lock().unwrap().clone();
        let child = &mut self.child;
        let status = eventually("an exit", story, || child.try_wait().expect("try_wait"));
        // The last lines are in once the reader has seen stderr close.
        let _ = self.stderr_eof.lock().unwrap().recv_timeout(LIMIT);
        status
    }
}

impl Target for Binary {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn story(&self) -> String {
        format!("stderr:\n{}", self.stderr())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` (raw bytes) to `addr` over HTTP and returns the status code and the body.
pub fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect over HTTP");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an HTTP answer");
    let status = (answer.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// GETs `path` from `addr` until an answer comes: a listener that has not yet seen a source's
/// earlier connections close may close a new one unanswered.
pub fn get_eventually(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    eventually(&format!("an answer to GET {path}"), String::new, || {
        let mut stream = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
        stream.set_read_timeout(Some(LIMIT)).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let status = answer.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string()))
    })
}

/// GETs `path` from `addr` on a connection of its own; returns the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http(addr, request.as_bytes())
}

/// Sends `method path` with `body` (JSON) to `addr`; returns the status code and the body.
pub fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(addr, request.as_bytes())
}

/// The value of the sample `name` (with its labels, if any) in a Prometheus text page.
pub fn sample(page: &str, name: &str) -> f64 {
    (page.lines())
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}:\n{page}"))
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let path_c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: `path_c` is a valid NUL-terminated path for the duration of the call.
    let made = unsafe { libc::mkfifo(path_c.as_ptr(), 0o644) };
    assert_eq!(made, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Runs the binary with `args` to completion (at most [`LIMIT`]) and returns its output.
pub fn run(args: &[&str]) -> Output {
    run_command(Command::new(BIN).args(args))
}

/// Runs `command` to completion (at most [`LIMIT`]) and returns its output.
pub fn run_command(command: &mut Command) -> Output {
    let child = (command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()))
        .spawn()
        .expect("start the command");
    let (done, output) = mpsc::channel();
    let pid = child.id();
    thread::spawn(move || done.send(child.wait_with_output()));
    match output.recv_timeout(LIMIT) {
        Ok(output) => output.expect("collect the output"),
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{command:?} still running after {LIMIT:?}");
        }
    }
}

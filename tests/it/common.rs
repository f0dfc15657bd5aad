//! Helpers shared by every integration test: start the real binary, talk to it over loopback,
//! and wait for anything only up to a limit.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any single wait in these tests may take before it counts as a failure.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_poetry-serve");

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
pub fn poem_in_dir(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
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
pub fn shipped(name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("poems")
        .join(name);
    let bytes = std::fs::read(&path).expect("read a shipped poem");
    (path, bytes)
}

/// A running poetry-serve, killed when dropped.
pub struct Server {
    child: Child,
    /// The address from the listening line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Says when the server's stderr has closed, that is, when everything it logged is in.
    stderr_eof: Mutex<std::sync::mpsc::Receiver<()>>,
    /// The lines on stdout not yet read.
    stdout: Mutex<std::sync::mpsc::Receiver<std::io::Result<String>>>,
}

/// How to start a server: the poems, the flags and the environment, then [`Launch::start`].
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
    pub fn start(self) -> Server {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start poetry-serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let (eof_tx, stderr_eof) = std::sync::mpsc::channel();
        if self.close_stderr {
            drop(err_pipe);
            let _ = eof_tx.send(());
        } else {
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = err_pipe.read(&mut chunk) {
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
                let _ = eof_tx.send(());
            });
        }
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Server {
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

impl Server {
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

    /// Every line on stderr so far, each read as one JSON log event (`--log-format json`);
    /// fails on a line that is not. A last line still being written is left for the next call.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let log = self.stderr();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not a JSON event ({err}): {line:?}\n{log}"))
            })
            .collect()
    }

    /// Fetches the whole poem from `addr`, one of the server's listening addresses.
    pub fn fetch_from(&self, addr: SocketAddr) -> Fetch {
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, LIMIT)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}; stderr:\n{}", self.stderr()));
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        read_to_end(stream, started).unwrap_or_else(|err| {
            panic!(
                "fetch from {addr} failed: {err}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`, and returns stderr.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_logs(needle, 1)
    }

    /// Waits until stderr contains `needle` at least `count` times, and returns stderr.
    pub fn wait_for_logs(&self, needle: &str, count: usize) -> String {
        let started = Instant::now();
        loop {
            let log = self.stderr();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                started.elapsed() < LIMIT,
                "fewer than {count} of {needle:?} in the log:\n{log}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// With `--log-format json`: waits until the log holds at least `count` events that are
    /// `wanted` (`what` says which, if none come), and returns every one of them, in the order
    /// logged.
    pub fn wait_for_events_where(
        &self,
        what: &str,
        count: usize,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let events: Vec<serde_json::Value> =
                self.events().into_iter().filter(&wanted).collect();
            if events.len() >= count {
                return events;
            }
            assert!(
                started.elapsed() < LIMIT,
                "fewer than {count} events {what} in the log:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// With `--log-format json`: waits until the log holds at least `count` events whose
    /// message is `message`, and returns every one of them, in the order logged.
    pub fn wait_for_events(&self, message: &str, count: usize) -> Vec<serde_json::Value> {
        self.wait_for_events_where(&format!("{message:?}"), count, |event| {
            event["message"] == message
        })
    }

    /// With `--log-format json`: waits for an event whose message begins with `start`
    /// ("accept failed", say, for "accept failed; pausing before the next"), and returns it.
    pub fn wait_for_message(&self, start: &str) -> serde_json::Value {
        let events = self.wait_for_events_where(&format!("beginning {start:?}"), 1, |event| {
            event["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(start))
        });
        events.into_iter().next().expect("one event, waited for")
    }

    /// With `--log-format json`: waits until at least `count` connections have ended with
    /// `outcome`, and returns their events, in the order logged.
    pub fn wait_for_outcome(&self, outcome: &str, count: usize) -> Vec<serde_json::Value> {
        self.wait_for_events_where(&format!("with outcome {outcome}"), count, |event| {
            event["message"] == "connection ended" && event["outcome"] == outcome
        })
    }

    /// With `--log-format json`: the outcome of each connection ended so far, in the order
    /// logged.
    pub fn outcomes(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|event| event["message"] == "connection ended")
            .map(|event| event["outcome"].as_str().unwrap_or("(none)").to_string())
            .collect()
    }

    /// With `--log-format json`: the last stats event (the final one, once the server has
    /// exited).
    pub fn last_stats(&self) -> serde_json::Value {
        self.events()
            .into_iter()
            .rfind(|event| event["message"] == "stats")
            .unwrap_or_else(|| panic!("no stats event:\n{}", self.stderr()))
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pids fit in i32");
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// Waits for the server to exit, at most `limit`, and returns how it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The last lines are in once the reader has seen stderr close.
                let _ = self.stderr_eof.lock().unwrap().recv_timeout(LIMIT);
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "server still running after {limit:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connects to the server.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, LIMIT)
            .unwrap_or_else(|err| panic!("connect failed: {err}; stderr:\n{}", self.stderr()));
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream
    }

    /// Connects from the loopback address `from` (127.0.0.2, say): another source, as far
    /// as the server can tell.
    pub fn connect_from(&self, from: std::net::IpAddr) -> TcpStream {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(self.addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("a client socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .expect("bind the client to its source address");
        socket
            .connect_timeout(&self.addr.into(), LIMIT)
            .unwrap_or_else(|err| panic!("connect failed: {err}; stderr:\n{}", self.stderr()));
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream
    }

    /// With `--log-format json`: sends SIGUSR1 until a stats event is `wanted` (`rejected`
    /// at 36, say), and returns that event.
    pub fn wait_for_stats(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let started = Instant::now();
        loop {
            self.signal(libc::SIGUSR1);
            thread::sleep(Duration::from_millis(50));
            let found = self
                .events()
                .into_iter()
                .find(|event| event["message"] == "stats" && wanted(event));
            if let Some(stats) = found {
                return stats;
            }
            assert!(
                started.elapsed() < LIMIT,
                "no stats event as wanted:\n{}",
                self.stderr()
            );
        }
    }

    /// Connects and reads the first `n` bytes, so the poem is known to be streaming.
    pub fn start_streaming(&self, n: usize) -> InFlight {
        let started = Instant::now();
        self.streaming(self.connect(), n, started)
    }

    /// Like [`Server::start_streaming`], from the loopback address `from` (127.0.0.2, say).
    pub fn start_streaming_from(&self, from: std::net::IpAddr, n: usize) -> InFlight {
        let started = Instant::now();
        self.streaming(self.connect_from(from), n, started)
    }

    /// Reads the first `n` bytes from `stream`, connected at `started`.
    fn streaming(&self, mut stream: TcpStream, n: usize, started: Instant) -> InFlight {
        let mut head = vec![0u8; n];
        stream.read_exact(&mut head).expect("the first chunk");
        InFlight {
            stream,
            head,
            started,
        }
    }

    /// Fetches the whole poem on a new connection.
    pub fn fetch(&self) -> Fetch {
        let started = Instant::now();
        let stream = self.connect();
        read_to_end(stream, started).unwrap_or_else(|err| {
            panic!("fetch failed: {err}; stderr:\n{}", self.stderr());
        })
    }

    /// Fetches the poem on `n` connections at once, all timed from one start, and returns what
    /// each received (in no particular order).
    pub fn fetch_many(&self, n: usize) -> Vec<std::io::Result<Fetch>> {
        let started = Instant::now();
        thread::scope(|scope| {
            let clients: Vec<_> = (0..n)
                .map(|_| scope.spawn(move || read_to_end(self.connect(), started)))
                .collect();
            clients
                .into_iter()
                .map(|client| client.join().expect("client thread"))
                .collect()
        })
    }

    /// Fetches and checks that the poem arrived byte for byte.
    pub fn fetch_exact(&self, expected: &[u8]) -> Fetch {
        let fetch = self.fetch();
        self.assert_bytes(&fetch.bytes, expected);
        fetch
    }

    /// Asserts two byte strings are equal, and tells the whole story when they are not.
    pub fn assert_bytes(&self, got: &[u8], expected: &[u8]) {
        if got != expected {
            let first_diff = got.iter().zip(expected).position(|(a, b)| a != b);
            panic!(
                "got {} bytes, expected {}; first difference at {:?}; stderr:\n{}",
                got.len(),
                expected.len(),
                first_diff,
                self.stderr()
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client partway through a poem: connected, its first bytes read.
pub struct InFlight {
    /// The connection, to read the rest from (or write to, as a chatty client would).
    pub stream: TcpStream,
    head: Vec<u8>,
    started: Instant,
}

impl InFlight {
    /// Reads the rest to EOF and returns every byte received, the first ones included.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        let rest = read_to_end(self.stream, self.started)?;
        Ok([self.head, rest.bytes].concat())
    }
}

/// What one client received.
#[derive(Debug)]
pub struct Fetch {
    /// Every byte, in order.
    pub bytes: Vec<u8>,
    /// For each read: when it returned, since the client started, and the total so far.
    pub arrivals: Vec<(Duration, usize)>,
    /// From the start to EOF.
    pub elapsed: Duration,
}

impl Fetch {
    /// When the first byte arrived.
    pub fn first_byte(&self) -> Duration {
        self.arrivals.first().map_or(self.elapsed, |&(at, _)| at)
    }
}

/// Sends `request` (raw bytes) to `addr` over HTTP and returns the status code and the body.
pub fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect over HTTP");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an HTTP answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// GETs `path` from `addr` on a connection of its own; returns the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of the sample `name` (with its labels, if any) in a Prometheus text page.
pub fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}:\n{page}"))
}

/// Reads `stream` to EOF, recording when each piece arrived relative to `started`.
pub fn read_to_end(mut stream: TcpStream, started: Instant) -> std::io::Result<Fetch> {
    let mut bytes = Vec::new();
    let mut arrivals = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if started.elapsed() > LIMIT {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "no EOF within the limit",
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                arrivals.push((started.elapsed(), bytes.len()));
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Fetch {
        bytes,
        arrivals,
        elapsed: started.elapsed(),
    })
}

/// Runs the binary with `args` to completion (at most [`LIMIT`]) and returns its output.
pub fn run(args: &[&str]) -> Output {
    run_command(Command::new(BIN).args(args))
}

/// Runs `command` to completion (at most [`LIMIT`]) and returns its output.
pub fn run_command(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "{command:?} still running after {LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// Fails unless `tool` is on PATH. Outside CI, build.rs marks a test that needs a missing
/// tool as ignored, so this fails only in CI (which installs them all) or if the tool went
/// missing since the build.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing; .ci/run installs it");
}

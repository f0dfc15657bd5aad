//! `--trace FILE`: every connection's life written as Chrome Trace Event JSON, which
//! ui.perfetto.dev and chrome://tracing open (see docs/trace.md for what each track shows).
//!
//! [`Trace`] is a [`Watch`]er and a writer thread of its own. A worker's call only stamps the
//! event into a bounded queue and returns: when the queue is full the event is dropped and
//! counted, never waited for (the first worker to find it full wakes the writer early). The
//! writer wakes every [`TICK`], takes what is queued, pairs each connection's events (its
//! backlog wait ends when a worker takes it; its slice on the worker's track ends with it) and
//! writes them through a `BufWriter`, until the file reaches its cap.
//! Dropping the [`Trace`] once the server has stopped writes what is still queued, the summary
//! event and the closing bracket, so the file is valid JSON, and logs what was dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tracing::{info, warn};

use crate::outcome::Outcome;
use crate::watch::{Event, Watch};

/// The file stops growing at this size: the events after it are counted, not written.
pub const MAX_BYTES: u64 = 1 << 30;

/// Events waiting for the writer at most; more are dropped. At [`TICK`] this absorbs three
/// million events a second, more than the server sends chunks, and takes a few MiB.
const QUEUE: usize = 32_768;

/// How often the writer takes what is queued. It polls rather than blocks on the queue so
/// that no worker ever pays for waking it.
const TICK: Duration = Duration::from_millis(10);

/// Room kept below the cap for the summary event and the closing bracket.
const TAIL: u64 = 1024;

/// Connections accepted and not yet taken by a worker, kept for their backlog slice; past
/// this (only if events were dropped), the oldest are forgotten.
const WAITING: usize = 4096;

/// One event as the watcher hands it over: the connection, when, and what.
type Record = (u64, Instant, Event);

/// The trace being written: its watcher, for the server's `Config::watchers`, and its writer
/// thread, finished when the trace is dropped.
#[derive(Debug)]
pub struct Trace {
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<Written>>,
    path: PathBuf,
}

impl Trace {
    /// Creates (or truncates) `path` and starts writing the trace there, with a track per
    /// worker of `workers` and one for the accepts; time 0 is now. Fails, naming the file,
    /// if it cannot be written.
    pub fn start(path: &Path, workers: NonZeroUsize) -> anyhow::Result<Trace> {
        let shown = crate::poem::shown(path);
        // Without blocking: a FIFO nobody reads would hold the start-up in `open`.
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        let fifo = || std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        let file = opened.map_err(|err| match err.raw_os_error() {
            Some(libc::ENXIO) if fifo() => {
                anyhow::anyhow!("nothing reads the FIFO; start its reader first")
            }
            _ => err.into(),
        });
        let file = file.with_context(|| format!("cannot write the trace {shown}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (recorder, queued) = Recorder::new(QUEUE);
        let file = TraceFile { file, stop: Arc::clone(&stop), deadline: None };
        let out = BufWriter::with_capacity(1 << 16, file);
        let mut writer = Writer::new(out, workers, MAX_BYTES, Arc::clone(&recorder.dropped));
        writer.begin().with_context(|| format!("cannot write the trace {shown}"))?;
        let stopping = Arc::clone(&stop);
        let writer = thread::Builder::new()
            .name("trace".into())
            .spawn(move || writer.run(&queued, &stopping))
            .context("cannot start the trace's thread")?;
        let _ = recorder.writer.set(writer.thread().clone());
        let recorder = Arc::new(recorder);
        Ok(Trace { recorder, stop, writer: Some(writer), path: path.to_owned() })
    }

    /// The watcher to add to the server's configuration.
    pub fn watcher(&self) -> Arc<dyn Watch> {
        self.recorder.clone()
    }

    /// Writes what is still queued and closes the file; once, and logs how it went.
    fn finish(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        writer.thread().unpark();
        let shown = crate::poem::shown(&self.path);
        let Ok(written) = writer.join() else {
            // Its panic message went to stderr.
            return warn!(trace = %shown, "the trace's writer failed; the file is incomplete");
        };
        let Written { events, bytes, dropped, over_cap, failed } = written;
        match failed {
            Some(error) => {
                let error = error.to_string();
                warn!(trace = %shown, error, events, dropped, "cannot write the trace");
            }
            None if dropped + over_cap > 0 => {
                let missing = "trace written, with events missing";
                warn!(trace = %shown, events, bytes, dropped, over_cap, "{missing}");
            }
            None => info!(trace = %shown, events, bytes, dropped, over_cap, "trace written"),
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The trace's file, opened without blocking. A pipe whose reader is slow or stopped makes the
/// writer wait (and the queue drop events meanwhile); once the server stops, the writer waits
/// at most [`STOP_WAIT`] in all, so that the stop ends.
struct TraceFile {
    file: File,
    stop: Arc<AtomicBool>,
    /// When the writer gives up: [`STOP_WAIT`] after its first wait since the stop.
    deadline: Option<Instant>,
}

/// How long, once the server stops, the trace's writer waits for its reader in all.
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Write for TraceFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.file.write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                written => return written,
            }
            if self.stop.load(Ordering::Acquire) {
                let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + STOP_WAIT);
                if Instant::now() >= deadline {
                    let why = "its reader is too slow, or stopped reading";
                    return Err(io::Error::new(io::ErrorKind::TimedOut, why));
                }
            }
            thread::sleep(TICK);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The watcher: puts each event in the writer's queue, or counts it if there is no room.
#[derive(Debug)]
struct Recorder {
    queue: SyncSender<Record>,
    /// Events the queue had no room for (the writer reads it too, for the summary).
    dropped: Arc<AtomicU64>,
    /// The writer, to wake when the queue is full.
    writer: OnceLock<Thread>,
}

impl Recorder {
    fn new(capacity: usize) -> (Recorder, Receiver<Record>) {
        let (queue, queued) = mpsc::sync_channel(capacity);
        (Recorder { queue, dropped: Arc::default(), writer: OnceLock::new() }, queued)
    }
}

impl Watch for Recorder {
    fn event(&self, id: u64, at: Instant, event: Event) {
        // A worker never waits for the file: a full queue loses the event, and counts it. Waking
        // the writer costs a system call only while it sleeps: once, however many workers find
        // the queue full before it runs.
        if self.queue.try_send((id, at, event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }
}

/// What the writer did, for the log.
#[derive(Debug)]
struct Written {
    /// Events written.
    events: u64,
    /// The file's size.
    bytes: u64,
    /// Events missing: dropped for want of room in the queue, or placed nowhere because their
    /// connection's first events were.
    dropped: u64,
    /// Events not written because the file had reached its cap.
    over_cap: u64,
    /// Why writing stopped early, if it did.
    failed: Option<io::Error>,
}

/// A connection being served, as far as the writer knows.
struct Serving {
    id: u64,
    peer: Option<SocketAddr>,
    taken: Instant,
    /// Its last event so far, where its slice ends if its end never comes.
    last: Instant,
    chunks: u64,
}

/// Turns events into the trace's lines, and writes them to `out` up to `cap` bytes.
struct Writer<W: Write> {
    out: W,
    /// Time 0 of the trace.
    origin: Instant,
    pid: u32,
    /// The accepts' track: after the workers' own.
    accept: u64,
    cap: u64,
    /// Room kept below the cap: [`TAIL`], until the end.
    reserve: u64,
    bytes: u64,
    events: u64,
    /// The watcher's count of events it dropped.
    dropped: Arc<AtomicU64>,
    /// Events that came but could not be placed, their connection's first events dropped.
    lost: u64,
    over_cap: u64,
    failed: Option<io::Error>,
    /// Accepted, not yet taken: when, from where, and since when it waited in the backlog.
    waiting: BTreeMap<u64, (Instant, SocketAddr, Instant)>,
    /// By worker, the connection it serves.
    serving: HashMap<usize, Serving>,
    /// By connection, its worker.
    worker_of: HashMap<u64, usize>,
    /// Workers whose track is named.
    named: HashSet<usize>,
    /// One event's line, reused.
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    fn new(out: W, workers: NonZeroUsize, cap: u64, dropped: Arc<AtomicU64>) -> Writer<W> {
        Writer {
            out,
            origin: Instant::now(),
            pid: std::process::id(),
            accept: workers.get() as u64,
            cap,
            reserve: TAIL,
            bytes: 0,
            events: 0,
            dropped,
            lost: 0,
            over_cap: 0,
            failed: None,
            waiting: BTreeMap::new(),
            serving: HashMap::new(),
            worker_of: HashMap::new(),
            named: HashSet::new(),
            line: Vec::with_capacity(256),
        }
    }

    /// Opens the array and names the process and the accepts' track.
    fn begin(&mut self) -> io::Result<()> {
        self.out.write_all(b"[\n")?;
        self.bytes = 2;
        let accept = self.accept;
        self.put(Line::meta("process_name", 0, Name { name: "poetry-serve" }));
        self.put(Line::meta("thread_name", accept, Name { name: "accept" }));
        // chrome://tracing shows the accepts first; Perfetto ignores it.
        self.put(Line::meta("thread_sort_index", accept, Sort { sort_index: -1 }));
        self.out.flush()?;
        match self.failed.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Writes every event queued, every [`TICK`], until `stop`; then what is left, and the end.
    fn run(mut self, queued: &Receiver<Record>, stop: &AtomicBool) -> Written {
        loop {
            // Read before the queue is emptied, so that the last round sees every event.
            let stopping = stop.load(Ordering::Acquire);
            while let Ok((id, at, event)) = queued.try_recv() {
                self.record(id, at, event);
            }
            if stopping {
                return self.end();
            }
            if self.failed.is_none()
                && let Err(err) = self.out.flush()
            {
                self.fail(err);
            }
            thread::park_timeout(TICK);
        }
    }

    /// Turns one event into lines, pairing it with what came before on its connection.
    fn record(&mut self, id: u64, at: Instant, event: Event) {
        match event {
            Event::Accepted { peer, waited } => {
                let since = at.checked_sub(waited).unwrap_or(at);
                let args = AcceptedArgs { connection: id, peer, backlog_us: micros(waited) };
                self.put(Line::instant("accepted", self.accept, self.us(at), args));
                self.waiting.insert(id, (at, peer, since));
                while self.waiting.len() > WAITING {
                    self.waiting.pop_first();
                }
            }
            Event::Taken { worker } => self.taken(id, at, worker),
            Event::Chunk { bytes, late } => {
                let Some(&worker) = self.worker_of.get(&id) else {
                    self.lost += 1;
                    return;
                };
                let serving = self.serving.get_mut(&worker).expect("worker_of follows serving");
                serving.chunks += 1;
                serving.last = at;
                let n = serving.chunks;
                let args = ChunkArgs { connection: id, n, bytes, late_us: micros(late) };
                self.put(Line::instant("chunk", worker as u64, self.us(at), args));
            }
            Event::Ended { outcome, bytes } => {
                let Some(&worker) = self.worker_of.get(&id) else {
                    self.lost += 1;
                    return;
                };
                self.worker_of.remove(&id);
                let serving = self.serving.remove(&worker).expect("worker_of follows serving");
                self.slice(worker, serving, at, Some(outcome), bytes);
            }
        }
    }

    /// A worker took connection `id`: its backlog wait ends, and its slice begins.
    fn taken(&mut self, id: u64, at: Instant, worker: usize) {
        if self.named.insert(worker) {
            let name = format!("worker-{worker}");
            self.put(Line::meta("thread_name", worker as u64, Name { name: &name }));
        }
        // A worker serves one connection at a time: one still open lost its end.
        if let Some(stale) = self.serving.remove(&worker) {
            self.worker_of.remove(&stale.id);
            let last = stale.last;
            self.slice(worker, stale, last, None, 0);
        }
        let peer = match self.waiting.remove(&id) {
            Some((accepted, peer, since)) => {
                let backlog_us = micros(accepted.saturating_duration_since(since));
                let queue_us = micros(at.saturating_duration_since(accepted));
                let args = WaitArgs { connection: id, peer, backlog_us, queue_us };
                let (from, to) = (self.us(since), self.us(at));
                self.put(Line::wait("b", id, self.accept, from, args));
                self.put(Line::wait("e", id, self.accept, to, NoArgs {}));
                Some(peer)
            }
            None => None,
        };
        self.serving.insert(worker, Serving { id, peer, taken: at, last: at, chunks: 0 });
        self.worker_of.insert(id, worker);
    }

    /// The connection's slice on its worker's track, from taken to `end`; with no `outcome`
    /// when its end was lost.
    fn slice(
        &mut self,
        worker: usize,
        serving: Serving,
        end: Instant,
        outcome: Option<Outcome>,
        bytes: u64,
    ) {
        let Serving { id, peer, taken, chunks, .. } = serving;
        let name = match peer {
            Some(peer) => format!("#{id} {peer}"),
            None => format!("#{id}"),
        };
        let label = outcome.map_or("unknown", Outcome::label);
        let args = SliceArgs { connection: id, peer, outcome: label, bytes, chunks };
        let dur = end.saturating_duration_since(taken).as_nanos() as f64 / 1000.0;
        let mut line = Line::complete(&name, worker as u64, self.us(taken), dur, args);
        // Coloured by chrome://tracing; Perfetto colours by name.
        line.cname = Some(match outcome {
            Some(Outcome::Complete) => "good",
            _ => "bad",
        });
        self.put(line);
    }

    /// Closes what is still open, writes the summary and the closing bracket.
    fn end(mut self) -> Written {
        let open: Vec<usize> = self.serving.keys().copied().collect();
        for worker in open {
            let serving = self.serving.remove(&worker).expect("a key just read");
            let last = serving.last;
            self.slice(worker, serving, last, None, 0);
        }
        let now = self.us(Instant::now());
        // Every event has been handed over: the server has stopped.
        let dropped = self.dropped.load(Ordering::Relaxed) + self.lost;
        let (events, over_cap, cap_bytes) = (self.events, self.over_cap, self.cap);
        let summary = Summary { events, dropped, over_cap, cap_bytes };
        let mut line = Line::instant("trace ended", 0, now, summary);
        line.s = Some("g");
        // The cap kept room for this line and the bracket.
        self.reserve = 0;
        self.put(line);
        if self.failed.is_none()
            && let Err(err) = self.out.write_all(b"\n]\n").and_then(|()| self.out.flush())
        {
            self.failed = Some(err);
        }
        self.bytes += 3;
        let Writer { events, bytes, over_cap, failed, .. } = self;
        Written { events, bytes, dropped, over_cap, failed }
    }

    /// Writes one line, unless the file has reached its cap or failed.
    fn put<A: Serialize>(&mut self, mut line: Line<'_, A>) {
        if self.failed.is_some() {
            return;
        }
        line.pid = self.pid;
        self.line.clear();
        self.line.extend_from_slice(if self.events == 0 { b"" } else { b",\n" });
        serde_json::to_writer(&mut self.line, &line).expect("a trace line serializes");
        let len = self.line.len() as u64;
        // Once one line does not fit, none does: the file ends where its events stop. The last
        // line has its room kept.
        let full = self.over_cap > 0 || self.bytes + len + self.reserve > self.cap;
        if self.reserve > 0 && full {
            self.over_cap += 1;
            return;
        }
        match self.out.write_all(&self.line) {
            Ok(()) => (self.bytes, self.events) = (self.bytes + len, self.events + 1),
            Err(err) => self.fail(err),
        }
    }

    /// Stops the writing for good, and says so at once (the server goes on without it).
    fn fail(&mut self, err: io::Error) {
        warn!(error = %err, "cannot write the trace: nothing more is written to it");
        self.failed = Some(err);
    }

    /// `at` in microseconds since the trace began, to the nanosecond.
    fn us(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.origin).as_nanos() as f64 / 1000.0
    }
}

/// Whole microseconds in `duration`.
fn micros(duration: Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}

/// One event of the Trace Event Format.
#[derive(Serialize)]
struct Line<'a, A> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    ph: &'static str,
    /// An instant's scope: `t` (its thread), `g` (the whole trace).
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    pid: u32,
    tid: u64,
    ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cname: Option<&'static str>,
    args: A,
}

impl<'a, A> Line<'a, A> {
    /// A mark on track `tid` at `ts`.
    fn instant(name: &'a str, tid: u64, ts: f64, args: A) -> Line<'a, A> {
        let (cat, s, id, dur, cname) = (None, Some("t"), None, None, None);
        Line { name, cat, ph: "i", s, id, pid: 0, tid, ts, dur, cname, args }
    }

    /// A slice of `dur` microseconds on track `tid`.
    fn complete(name: &'a str, tid: u64, ts: f64, dur: f64, args: A) -> Line<'a, A> {
        let mut line = Line::instant(name, tid, ts, args);
        (line.ph, line.s, line.dur) = ("X", None, Some(dur));
        line
    }

    /// A name or an order for track `tid`.
    fn meta(name: &'a str, tid: u64, args: A) -> Line<'a, A> {
        let mut line = Line::instant(name, tid, 0.0, args);
        (line.ph, line.s) = ("M", None);
        line
    }

    /// The beginning (`b`) or end (`e`) of connection `id`'s wait for a worker. Waits overlap,
    /// which slices on one track may not, so they are async events, each its own row.
    fn wait(ph: &'static str, id: u64, tid: u64, ts: f64, args: A) -> Line<'a, A> {
        let mut line = Line::instant("backlog", tid, ts, args);
        (line.ph, line.s, line.cat, line.id) = (ph, None, Some("backlog"), Some(id));
        line
    }
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Sort {
    sort_index: i64,
}

#[derive(Serialize)]
struct AcceptedArgs {
    connection: u64,
    peer: SocketAddr,
    backlog_us: u64,
}

#[derive(Serialize)]
struct WaitArgs {
    connection: u64,
    peer: SocketAddr,
    /// In the listen backlog, up to the accept.
    backlog_us: u64,
    /// From the accept to a worker taking it.
    queue_us: u64,
}

#[derive(Serialize)]
struct NoArgs {}

#[derive(Serialize)]
struct ChunkArgs {
    connection: u64,
    /// The chunk's place in its connection, from 1.
    n: u64,
    bytes: usize,
    late_us: u64,
}

#[derive(Serialize)]
struct SliceArgs<'a> {
    connection: u64,
    peer: Option<SocketAddr>,
    outcome: &'a str,
    bytes: u64,
    chunks: u64,
}

/// What the trace holds and what it misses, as its last event.
#[derive(Serialize)]
struct Summary {
    events: u64,
    dropped: u64,
    over_cap: u64,
    cap_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    const WORKERS: NonZeroUsize = NonZeroUsize::new(2).expect("2");
    const PEER: ([u8; 4], u16) = ([127, 0, 0, 1], 4000);

    /// The events of a trace written by `play`, which records events on a writer whose time 0
    /// it is given, and what the writer said of them.
    fn written(
        cap: u64,
        play: impl FnOnce(&mut Writer<&mut Vec<u8>>, Instant),
    ) -> (Vec<Value>, Written) {
        let mut file = Vec::new();
        let mut writer = Writer::new(&mut file, WORKERS, cap, Arc::default());
        writer.begin().expect("a Vec takes every byte");
        let origin = writer.origin;
        play(&mut writer, origin);
        let written = writer.end();
        assert_eq!(written.bytes, file.len() as u64);
        let text = String::from_utf8(file).expect("JSON is UTF-8");
        let events = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}:\n{text}"));
        (events, written)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
        events.iter().filter(|e| e["name"] == name).collect()
    }

    /// A full queue loses the event at once and counts it: the watcher never waits.
    #[test]
    fn a_full_queue_drops_and_never_blocks() {
        let (recorder, queued) = Recorder::new(2);
        let recorder = Arc::new(recorder);
        let (done, returned) = mpsc::channel();
        let watcher = Arc::clone(&recorder);
        thread::spawn(move || {
            for n in 0..10 {
                watcher.event(n, Instant::now(), Event::Taken { worker: 0 });
            }
            done.send(()).expect("the test waits");
        });
        // Blocking on the full queue would never return: no one reads it.
        returned.recv_timeout(Duration::from_secs(20)).expect("every call returned");
        assert_eq!(recorder.dropped.load(Ordering::Relaxed), 8);
        let kept: Vec<u64> = queued.try_iter().map(|(id, ..)| id).collect();
        assert_eq!(kept, [0, 1]);
    }

    /// The first event the queue has no room for wakes the writer, rather than wait its tick.
    #[test]
    fn a_full_queue_wakes_the_writer() {
        let (recorder, _queued) = Recorder::new(1);
        let (woken, wakes) = mpsc::channel();
        let writer = thread::spawn(move || {
            thread::park();
            woken.send(()).expect("the test waits");
        });
        recorder.writer.set(writer.thread().clone()).expect("set once");
        // The first fills the queue; the second finds it full.
        recorder.event(0, Instant::now(), Event::Taken { worker: 0 });
        recorder.event(1, Instant::now(), Event::Taken { worker: 0 });
        wakes.recv_timeout(Duration::from_secs(20)).expect("the full queue woke the writer");
    }

    /// Each connection gets its wait for a worker, a slice on its worker's track with its
    /// outcome, and its chunks there, numbered in order, each track named after its worker.
    #[test]
    fn each_connection_is_paired_on_its_workers_track() {
        let peer = |port| SocketAddr::from((PEER.0, port));
        let (events, written) = written(MAX_BYTES, |w, t0| {
            let accepted = |port| Event::Accepted { peer: peer(port), waited: ms(3) };
            w.record(0, t0 + ms(10), accepted(4000));
            w.record(1, t0 + ms(11), accepted(4001));
            w.record(0, t0 + ms(12), Event::Taken { worker: 1 });
            w.record(1, t0 + ms(13), Event::Taken { worker: 0 });
            for k in 0..3 {
                let late = ms(k);
                w.record(0, t0 + ms(20 + 10 * k), Event::Chunk { bytes: 10, late });
                if k < 2 {
                    w.record(1, t0 + ms(21 + 10 * k), Event::Chunk { bytes: 7, late });
                }
            }
            w.record(1, t0 + ms(40), Event::Ended { outcome: Outcome::ClientClosed, bytes: 14 });
            w.record(0, t0 + ms(50), Event::Ended { outcome: Outcome::Complete, bytes: 30 });
        });
        assert_eq!(written.events, events.len() as u64, "{events:#?}");
        let threads: Vec<(u64, &str)> = named(&events, "thread_name")
            .iter()
            .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(threads, [(2, "accept"), (1, "worker-1"), (0, "worker-0")]);
        for (id, worker, outcome, chunks, bytes) in
            [(0, 1, "complete", 3, 30), (1, 0, "client_closed", 2, 14)]
        {
            let slice = named(&events, &format!("#{id} {}", peer(4000 + id as u16)));
            assert_eq!(slice.len(), 1, "{events:#?}");
            let slice = slice[0];
            assert_eq!((slice["ph"].as_str(), slice["tid"].as_u64()), (Some("X"), Some(worker)));
            assert_eq!(slice["ts"], 12_000.0 + id as f64 * 1000.0);
            assert_eq!(slice["args"]["outcome"], outcome);
            assert_eq!(slice["args"]["chunks"], chunks);
            assert_eq!(slice["args"]["bytes"], bytes);
            let mine: Vec<_> = named(&events, "chunk")
                .into_iter()
                .filter(|e| e["args"]["connection"] == id)
                .collect();
            let numbers: Vec<u64> = mine.iter().map(|e| e["args"]["n"].as_u64().unwrap()).collect();
            assert_eq!(numbers, (1..=chunks).collect::<Vec<_>>());
            assert!(mine.iter().all(|e| e["tid"] == worker), "{mine:#?}");
            let wait: Vec<_> = named(&events, "backlog")
                .into_iter()
                .filter(|e| e["id"] == id)
                .map(|e| (e["ph"].as_str().unwrap(), e["ts"].as_f64().unwrap()))
                .collect();
            let (accepted, taken) = (10_000.0 + id as f64 * 1000.0, slice["ts"].as_f64().unwrap());
            assert_eq!(wait, [("b", accepted - 3000.0), ("e", taken)]);
        }
        let last = events.last().unwrap();
        assert_eq!((&last["name"], &last["args"]["dropped"]), (&"trace ended".into(), &0.into()));
    }

    /// A connection whose end was dropped is closed at its last event, outcome unknown, when
    /// its worker takes the next one; an event of a connection never seen taken is counted.
    #[test]
    fn a_lost_end_is_closed_as_unknown_and_counted() {
        let (events, written) = written(MAX_BYTES, |w, t0| {
            w.dropped.store(5, Ordering::Relaxed);
            w.record(0, t0 + ms(1), Event::Taken { worker: 0 });
            w.record(0, t0 + ms(2), Event::Chunk { bytes: 10, late: ms(0) });
            w.record(1, t0 + ms(5), Event::Taken { worker: 0 });
            w.record(7, t0 + ms(6), Event::Chunk { bytes: 10, late: ms(0) });
            w.record(1, t0 + ms(9), Event::Ended { outcome: Outcome::Complete, bytes: 0 });
        });
        let lost = &named(&events, "#0")[0];
        assert_eq!((lost["ts"].as_f64(), lost["dur"].as_f64()), (Some(1000.0), Some(1000.0)));
        assert_eq!(lost["args"]["outcome"], "unknown");
        assert_eq!(named(&events, "#1")[0]["args"]["outcome"], "complete");
        assert_eq!(written.dropped, 6, "five by the queue, one that reached nowhere");
        assert_eq!(events.last().unwrap()["args"]["dropped"], 6);
    }

    /// The file stops short of its cap, and is still valid JSON that ends with the summary.
    #[test]
    fn the_file_stops_at_its_cap_and_stays_valid() {
        let cap = 4 * TAIL;
        let (events, written) = written(cap, |w, t0| {
            w.record(0, t0, Event::Taken { worker: 0 });
            for k in 1..=1000 {
                w.record(0, t0 + ms(k), Event::Chunk { bytes: 10, late: ms(0) });
            }
            w.record(0, t0 + ms(1001), Event::Ended { outcome: Outcome::Complete, bytes: 10_000 });
        });
        assert!(written.bytes <= cap, "{} bytes", written.bytes);
        let chunks = named(&events, "chunk").len() as u64;
        assert!(chunks > 0, "{events:#?}");
        // Every event past the first that did not fit: the rest of the chunks, and the end.
        assert_eq!(written.over_cap, 1000 - chunks + 1);
        let last = events.last().unwrap();
        assert_eq!(last["name"], "trace ended");
        assert_eq!(last["args"]["over_cap"], written.over_cap);
    }

    /// A file that fails (a full disk) stops the writing, not the writer.
    #[test]
    fn a_failing_file_stops_the_writing() {
        /// Takes this many more bytes, then fails.
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = Writer::new(Full(600), WORKERS, MAX_BYTES, Arc::default());
        writer.begin().expect("the start fits");
        let t0 = writer.origin;
        writer.record(0, t0, Event::Taken { worker: 0 });
        for k in 1..=100 {
            writer.record(0, t0 + ms(k), Event::Chunk { bytes: 10, late: ms(0) });
        }
        let written = writer.end();
        assert_eq!(written.failed.map(|e| e.raw_os_error()), Some(Some(libc::ENOSPC)));
        assert!(written.events < 100, "{}", written.events);
    }
}

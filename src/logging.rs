//! Logging: every event goes to stderr through `tracing`, as text or JSON, at the level
//! `RUST_LOG` asks for (info by default), except the stats line, which is always written
//! because it is asked for explicitly (SIGUSR1, shutdown). A line that cannot be written is
//! dropped: logging never stops the server.
//!
//! Lines are formatted by the thread that logs and appended to one queue; a writer thread of
//! its own takes everything queued at once and writes it with one `write`. When lines come
//! fast, the writer is busy or gathering the next batch, and a logging thread only appends:
//! it wakes the writer only when the writer sleeps with nothing to write.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::stats;

/// The lines logged and not yet written, shared by every thread that logs and the writer.
static QUEUE: Queue = Queue::new();

/// At most this many lines wait for stderr; further lines are dropped until it catches up, so
/// that a stalled stderr never stalls the server nor fills its memory.
const MAX_QUEUED: usize = 128_000;

/// After each write, how long the writer lets lines gather before it takes the next batch:
/// under load, one wake-up and one `write` carry many lines instead of one each. A line waits
/// at most this much longer to reach stderr; an idle writer sleeps until a line comes.
const GATHER: Duration = Duration::from_millis(2);

/// How long [`flush`] waits for the writer to write out what is queued: long enough for any
/// working stderr, bounded for one that is blocked (a pipe nobody reads).
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The target of the event that says why the server could not start or stopped on an error.
const FATAL: &str = "poetry_serve::fatal";

/// Logs why the server could not start, or stopped, as one error event that is written
/// whatever `RUST_LOG` says (with `--log-format json`, a log shipper reads it like any other).
pub fn fatal(err: &anyhow::Error) {
    tracing::error!(target: FATAL, "{err:#}");
}

/// Sets up the process-wide logger, before anything logs; [`flush`] before the process ends.
/// Only the first call counts.
///
/// Lines are formatted by the thread that logs and written by a thread of their own (see the
/// module's doc), so a worker never waits for stderr, nor for another worker writing to it.
/// If stderr falls far behind ([`MAX_QUEUED`] lines queued), further lines are dropped rather
/// than stall the server.
pub fn init(format: LogFormat) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| set_up(format));
}

fn set_up(format: LogFormat) {
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The stats line and the reason the server stops are asked for explicitly, so they are
    // written whatever RUST_LOG says.
    let stats_line = filter_fn(|meta| [stats::TARGET, FATAL].contains(&meta.target()));
    // Running before the thread starts, so that it is never taken for asleep while it is.
    QUEUE.open(Stage::Running);
    let started = thread::Builder::new()
        .name("log".into())
        .spawn(|| QUEUE.write_out(io::stderr()));
    if started.is_err() {
        // Without its thread, lines would only pile up: they are written as they come.
        QUEUE.open(Stage::Absent);
    }
    // A line that cannot be written (stderr a pipe whose reader has gone) is dropped by the
    // writer thread. The fmt layer's own reports of write errors are turned off: they use
    // `eprintln!`, which panics on that same broken stderr.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Lines)
        .log_internal_errors(false)
        .with_thread_names(true);
    let layer = match format {
        // Field values a client or the file system chooses (a poem's path, say) could hold a
        // newline and forge a line of their own; JSON escapes them, and so does this.
        LogFormat::Text => layer
            .fmt_fields(EscapedFields)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        // One object per event, its fields (peer, bytes, chunks, duration_ms, outcome...) at
        // the top level beside timestamp, level, target and threadName.
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(stats_line.or(level)))
        .init();
}

/// Writes out every line logged so far, and waits (up to [`FLUSH_LIMIT`]) until it is
/// written. Lines logged afterwards are dropped: call it only when the process is about to
/// end.
pub fn flush() {
    QUEUE.close();
}

/// The queue between the threads that log and the writer thread.
struct Queue {
    state: Mutex<Pending>,
    /// Wakes the writer: lines came while it slept, or the queue closed.
    wake: Condvar,
    /// Tells [`flush`] that the writer has written everything and ended.
    written: Condvar,
}

struct Pending {
    /// Whole lines, in the order they were logged.
    lines: Vec<u8>,
    /// How many lines `lines` holds.
    count: usize,
    writer: Stage,
    /// Set by [`flush`]: no more lines are taken.
    closed: bool,
}

/// Where the writer thread is, as the threads that log and [`flush`] need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No writer thread (logging not set up, or its thread could not start).
    Absent,
    /// Writing, or gathering the next batch: lines are only appended.
    Running,
    /// Sleeping until a line comes: the next line wakes it.
    Waiting,
    /// It has written everything and ended.
    Ended,
}

/// A handle the fmt layer writes each formatted line through.
#[derive(Clone, Copy)]
struct Lines;

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        Lines
    }
}

impl Write for Lines {
    /// Takes one whole line: the fmt layer formats an event and writes it with one call.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        QUEUE.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Queue {
    const fn new() -> Queue {
        Queue {
            state: Mutex::new(Pending {
                lines: Vec::new(),
                count: 0,
                writer: Stage::Absent,
                closed: false,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while the lock is held; if something did, the bytes are still whole
        // lines.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Says whether a writer thread runs.
    fn open(&self, writer: Stage) {
        self.state().writer = writer;
    }

    /// Queues `line` for the writer, waking it if it sleeps; with no writer thread, writes it
    /// at once.
    fn push(&self, line: &[u8]) {
        let mut state = self.state();
        match state.writer {
            Stage::Absent if !state.closed => {
                drop(state);
                let _ = io::stderr().write_all(line);
                return;
            }
            _ if state.closed || state.count >= MAX_QUEUED => return, // dropped
            _ => {}
        }
        state.lines.extend_from_slice(line);
        state.count += 1;
        let asleep = state.writer == Stage::Waiting;
        if asleep {
            state.writer = Stage::Running;
        }
        drop(state);
        if asleep {
            self.wake.notify_one();
        }
    }

    /// The writer thread's life: waits for lines, writes all that are queued with one call,
    /// lets the next ones gather, and after [`Queue::close`] writes the rest and ends.
    fn write_out(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.state();
            while state.lines.is_empty() && !state.closed {
                state.writer = Stage::Waiting;
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.writer = Stage::Running;
            std::mem::swap(&mut batch, &mut state.lines);
            state.count = 0;
            let closed = state.closed;
            drop(state);
            // A batch that cannot be written (stderr a pipe whose reader has gone) is dropped.
            let _ = out.write_all(&batch);
            batch.clear();
            if closed {
                let mut state = self.state();
                if state.lines.is_empty() {
                    state.writer = Stage::Ended;
                    drop(state);
                    self.written.notify_all();
                    return;
                }
                continue; // lines queued just before the close: write them too
            }
            thread::sleep(GATHER);
        }
    }

    /// Takes no more lines and waits (up to [`FLUSH_LIMIT`]) until the writer has written
    /// every line queued before.
    fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        if state.writer == Stage::Absent || state.writer == Stage::Ended {
            return;
        }
        drop(state);
        self.wake.notify_one();
        let deadline = Instant::now() + FLUSH_LIMIT;
        let mut state = self.state();
        while state.writer != Stage::Ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return; // stderr is blocked: what is left stays unwritten
            }
            state = self
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The text format's fields, as tracing-subscriber writes them, with every control character
/// in a value escaped (a newline as `\n`), so that one event is always one line.
struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = Escaped<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Escaped(DefaultVisitor::new(target, true))
    }
}

/// A visitor that hands every value that may hold text to the one it wraps with its control
/// characters escaped.
struct Escaped<V>(V);

impl<V: Visit> Visit for Escaped<V> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.record_debug(field, &NoControl(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            // The message is written bare; other strings are quoted and escaped as Debug.
            "message" => self.record_debug(field, &format_args!("{value}")),
            _ => self.0.record_str(field, value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Nothing logs an error value as such (errors go in as `%err`); should one, it is
        // written as its message alone.
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.record_u64(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.record_f64(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record_bool(field, value);
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Escaped<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Escaped<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// A value written as its `Debug` form with control characters escaped.
struct NoControl<'a>(&'a dyn fmt::Debug);

impl fmt::Debug for NoControl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        write!(EscapeControl(f), "{:?}", self.0)
    }
}

/// Writes through to a formatter, escaping control characters on the way.
struct EscapeControl<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeControl<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().expect("found at `at`");
            write!(self.0, "{}", control.escape_default())?;
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the writer thread writes into and the test reads.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every line queued before the close is written, each thread's in order, however the
    /// lines fall into batches; lines after the close are dropped, and the close returns.
    #[test]
    fn closing_writes_every_line_queued_before_it() {
        static QUEUE: Queue = Queue::new();
        let sink = Sink::default();
        let out = sink.clone();
        QUEUE.open(Stage::Running);
        let writer = thread::spawn(move || QUEUE.write_out(out));
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    for n in 0..5000 {
                        QUEUE.push(format!("{t} {n}\n").as_bytes());
                        if n % 1000 == 0 {
                            thread::sleep(GATHER); // let the writer fall asleep now and then
                        }
                    }
                })
            })
            .collect();
        for logger in loggers {
            logger.join().unwrap();
        }
        // Written as they come, not only at the close.
        let started = Instant::now();
        while sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            < 20_000
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "lines left queued"
            );
            thread::sleep(Duration::from_millis(1));
        }
        QUEUE.close();
        QUEUE.push(b"after the close\n");
        writer.join().unwrap();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for t in 0..4 {
            let lines: Vec<&str> = written
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            let expected: Vec<String> = (0..5000).map(|n| format!("{t} {n}")).collect();
            assert_eq!(lines, expected, "thread {t}'s lines");
        }
        assert_eq!(written.lines().count(), 20_000, "nothing else: {written}");
    }

    /// With no writer thread, closing returns at once.
    #[test]
    fn closing_without_a_writer_returns_at_once() {
        static QUEUE: Queue = Queue::new();
        let started = Instant::now();
        QUEUE.close();
        assert!(started.elapsed() < FLUSH_LIMIT / 2);
    }

    /// Control characters come out escaped, everything else as it was.
    #[test]
    fn control_characters_are_escaped() {
        let shown = format!("{:?}", NoControl(&format_args!("a\nb\r\x1b[31mé\u{85}z")));
        assert_eq!(shown, r"a\nb\r\u{1b}[31mé\u{85}z");
    }
}

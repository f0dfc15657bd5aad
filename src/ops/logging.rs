//! Logging: every event goes to stderr through `tracing`, as text or JSON, at the level
//! `RUST_LOG` asks for (info by default), except the stats line and the reason the server
//! could not start, which are asked for explicitly and always written.
//!
//! Lines are formatted by the thread that logs and written by tracing-appender's thread, so no
//! worker ever waits for stderr. When stderr falls behind by [`MAX_QUEUED`] lines, or fails (a
//! pipe whose reader has gone), lines are dropped rather than stall or stop the server, and
//! counted: [`dropped`] feeds the stats line and `/metrics`.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::prelude::*;

/// How log lines (and the stats line) are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// At most this many lines wait for stderr; further lines are dropped, and counted, until it
/// catches up, so that a stalled stderr never stalls the server nor fills its memory.
pub const MAX_QUEUED: usize = 128_000;

/// The target of the event that says why the server could not start or stopped on an error.
const FATAL: &str = "poetry_serve::fatal";

/// The target of the stats line's event.
pub const STATS: &str = "poetry_serve::stats";

/// Lines the queue had no room for.
static QUEUE_FULL: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines stderr refused.
static WRITE_FAILED: AtomicU64 = AtomicU64::new(0);

/// The writer thread's guard, until [`flush`].
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Log lines dropped so far: stderr too slow, or failing.
pub fn dropped() -> u64 {
    let full = QUEUE_FULL.get().map_or(0, |counter| counter.dropped_lines() as u64);
    full + WRITE_FAILED.load(Relaxed)
}

/// Sets up the process-wide logger, before anything logs; [`flush`] before the process ends.
/// Only the first call counts.
pub fn init(format: LogFormat) {
    if QUEUE_FULL.get().is_some() {
        return;
    }
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(MAX_QUEUED)
        .thread_name("log")
        .finish(Stderr);
    let _ = QUEUE_FULL.set(writer.error_counter());
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let asked_for = filter_fn(|meta| [STATS, FATAL].contains(&meta.target()));
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_thread_names(true);
    let layer = match format {
        // Values a client or the file system chooses (a poem's path, say) could hold a newline
        // and forge a line of their own; JSON escapes them, and so does EscapedFields.
        LogFormat::Text => {
            (layer.fmt_fields(EscapedFields)).with_ansi(io::stderr().is_terminal()).boxed()
        }
        // One object per event, its fields at the top level beside timestamp, level, target
        // and threadName.
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer.with_filter(asked_for.or(level))).try_init();
    *GUARD.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
}

/// Writes out every line logged so far, waiting up to a second for stderr; lines logged after
/// it are dropped. For when the process is about to end.
pub fn flush() {
    drop(GUARD.lock().unwrap_or_else(PoisonError::into_inner).take());
}

/// Logs why the server could not start, or stopped, as one error event written whatever
/// `RUST_LOG` says.
pub fn fatal(err: &anyhow::Error) {
    tracing::error!(target: FATAL, "{err:#}");
}

/// Standard error, whose failures are counted rather than reported: a report would go to
/// stderr too.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if io::stderr().write_all(line).is_err() {
            WRITE_FAILED.fetch_add(1, Relaxed);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
/// characters escaped, and in quotes if it holds a space, a quote or an equals sign, so that no
/// value can pass for another field.
struct Escaped<V>(V);

impl<V: Visit> Visit for Escaped<V> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{:?}", NoControl(value));
        match field.name() != "message" && text.contains([' ', '"', '=', '\\']) {
            true => self.0.record_debug(field, &text), // a String's Debug: quoted, escaped
            false => self.0.record_debug(field, &format_args!("{text}")),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            // The message is written bare; other strings are quoted and escaped as Debug.
            "message" => self.record_debug(field, &format_args!("{value}")),
            _ => self.0.record_str(field, value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
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

    /// Control characters come out escaped, everything else as it was.
    #[test]
    fn control_characters_are_escaped() {
        let shown = format!("{:?}", NoControl(&format_args!("a\nb\r\x1b[31mé\u{85}z")));
        assert_eq!(shown, r"a\nb\r\u{1b}[31mé\u{85}z");
    }
}

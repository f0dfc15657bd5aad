//! Logging: every event goes to stderr through `tracing`, as text or JSON, at the level
//! `RUST_LOG` asks for (info by default), except the stats line, which is always written
//! because it is asked for explicitly (SIGUSR1, shutdown). A line that cannot be written is
//! dropped: logging never stops the server.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};

use tracing_appender::non_blocking::WorkerGuard;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::stats;

/// The log writer's guard: dropping it writes out the lines still queued. Taken by
/// [`flush`] when the process is about to end.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Sets up the process-wide logger, before anything logs; [`flush`] before the process ends.
/// Only the first call counts.
///
/// Lines are formatted by the thread that logs and written by a thread of their own
/// (tracing-appender's non-blocking writer), so a worker never waits for stderr, nor for
/// another worker writing to it. If stderr falls far behind (128,000 lines queued), further
/// lines are dropped rather than stall the server.
pub fn init(format: LogFormat) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| set_up(format));
}

fn set_up(format: LogFormat) {
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stats_line = filter_fn(|meta| meta.target() == stats::TARGET);
    let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .thread_name("log")
        .finish(std::io::stderr());
    // A line that cannot be written (stderr a pipe whose reader has gone) is dropped by the
    // writer thread. The fmt layer's own reports of write errors are turned off: they use
    // `eprintln!`, which panics on that same broken stderr.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
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
    *WRITER.lock().unwrap_or_else(PoisonError::into_inner) = Some(flush);
}

/// Writes out every line logged so far, and waits (briefly) until it is written. Lines logged
/// afterwards are dropped: call it only when the process is about to end.
pub fn flush() {
    let guard = WRITER.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(guard);
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

    /// Control characters come out escaped, everything else as it was.
    #[test]
    fn control_characters_are_escaped() {
        let shown = format!("{:?}", NoControl(&format_args!("a\nb\r\x1b[31mé\u{85}z")));
        assert_eq!(shown, r"a\nb\r\u{1b}[31mé\u{85}z");
    }
}

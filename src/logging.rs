//! Logging: every event goes to stderr through `tracing`, as text or JSON, at the level
//! `RUST_LOG` asks for (info by default), except the stats line, which is always written
//! because it is asked for explicitly (SIGUSR1, shutdown). A line that cannot be written is
//! dropped: logging never stops the server.

use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};

use tracing_appender::non_blocking::WorkerGuard;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::LogFormat;
use crate::stats;

/// The log writer's guard: dropping it writes out the lines still queued. Taken by
/// [`flush`] when the process is about to end.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Sets up the process-wide logger. Call once, before anything logs, and [`flush`] before
/// the process ends.
///
/// Lines are formatted by the thread that logs and written by a thread of their own
/// (tracing-appender's non-blocking writer), so a worker never waits for stderr, nor for
/// another worker writing to it. If stderr falls far behind (128,000 lines queued), further
/// lines are dropped rather than stall the server.
pub fn init(format: LogFormat) {
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stats_line = filter_fn(|meta| meta.target() == stats::TARGET);
    let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .thread_name("log")
        .finish(std::io::stderr());
    // A line that cannot be written (stderr a pipe whose reader has gone) is dropped by the
    // writer thread. The fmt layer's own reports of write errors are turned off: they use
    // `eprintln!`, which panics on that same broken stderr.
    let layer = fmt::layer()
        .with_writer(writer)
        .log_internal_errors(false)
        .with_thread_names(true);
    let layer = match format {
        LogFormat::Text => layer.with_ansi(std::io::stderr().is_terminal()).boxed(),
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

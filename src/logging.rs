//! Logging: every event goes to stderr through `tracing`, as text or JSON, at the level
//! `RUST_LOG` asks for (info by default), except the stats line, which is always written
//! because it is asked for explicitly (SIGUSR1, shutdown). A line that cannot be written is
//! dropped: logging never stops the server.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::LogFormat;
use crate::stats;

/// Sets up the process-wide logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stats_line = filter_fn(|meta| meta.target() == stats::TARGET);
    // A line that cannot be written (stderr a pipe whose reader has gone) is dropped. By
    // default the fmt layer reports the failure with `eprintln!`, which panics on that same
    // broken stderr and would kill whichever worker or signal thread was logging.
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
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
}

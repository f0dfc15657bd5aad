//! Operations: running the server as a daemon. Everything here watches or steers the server
//! through its [`Handle`], and nothing in the core knows of it.
//!
//! - [`run`]: the daemon's life, from the signal handlers to the last stats line.
//! - [`logging`]: where log lines go, as text or JSON, and how many were dropped.
//! - [`stats`]: the stats line.
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`, and the routes of the status page
//!   ([`status`]) and its timeline ([`timeline`]), served by [`http`], the listener bounded
//!   against hostile clients.
//! - [`control`]: `--control`, the JSON API that changes the faults and pacing while the server
//!   runs, on the same listener.
//! - [`systemd`]: readiness notification and socket activation.
//! - [`signals`]: SIGINT and SIGTERM (stop), SIGUSR1 (stats line), SIGHUP (reload).
//! - [`trace`]: `--trace`, every connection's life as a file a trace viewer opens.

mod control;
pub mod http;
pub mod logging;
pub mod metrics;
mod signals;
mod stats;
mod status;
mod systemd;
mod timeline;
mod trace;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::info;

use crate::config::Config;
use crate::server::{Handle, Server};
use crate::watch::Watch;

/// The listeners beside the poem port, each off unless asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where to serve metrics, health and the status page.
    pub metrics: Option<SocketAddr>,
    /// Host names, beside IP addresses and `localhost`, that those listeners answer to.
    pub hosts: Vec<String>,
    /// Where to serve the control API.
    pub control: Option<SocketAddr>,
    /// Where to write the trace of every connection.
    pub trace: Option<PathBuf>,
}

/// Runs the server as a daemon until SIGINT or SIGTERM, then drains it and returns.
///
/// Every check that can fail on bad input (the poems, the addresses, the thread limits)
/// happens before the listening lines; then one line per bound address goes to stdout, and
/// one for the metrics and the control API, if served.
pub fn run(mut config: Config, options: Options) -> anyhow::Result<()> {
    // Each HTTP listener's places, and its runtime's own descriptors, are kept from the workers.
    let metrics_limits = http::Limits { hosts: options.hosts.clone(), ..http::Limits::default() };
    let metrics = options.metrics.map(|addr| (addr, metrics_limits));
    let control = options.control.map(|addr| (addr, control::limits(options.hosts.clone())));
    for (_, limits) in metrics.iter().chain(&control) {
        config.reserved_descriptors += limits.descriptors();
    }
    // The status page's timeline watches every connection from the first.
    let timeline = options.metrics.map(|_| Arc::new(timeline::Timeline::default()));
    config.watchers.extend(timeline.iter().map(|t| Arc::clone(t) as Arc<dyn Watch>));

    // A write past `ulimit -f` (the trace, a log on stderr) then fails; it does not kill.
    crate::sys::ignore_file_size_signal().context("cannot ignore SIGXFSZ")?;
    // --trace: opened before anything listens, and before the signal handlers, so that a
    // SIGTERM still ends a start-up whose open waits; dropped after the server, it closes
    // the file.
    let trace = options.trace.as_deref().map(|path| trace::Trace::start(path, config.workers));
    let trace = trace.transpose()?;
    config.watchers.extend(trace.as_ref().map(trace::Trace::watcher));
    let signals = signals::Signals::register().context("cannot install signal handlers")?;
    let server = match systemd::inherited_listeners()? {
        Some(sockets) => {
            info!(
                sockets = sockets.len(),
                "listening on sockets from systemd (LISTEN_FDS); --iface and --port do not apply"
            );
            Server::start_on(config, sockets)?
        }
        None => Server::start(config)?,
    };
    let handle = server.handle();
    let metrics = match metrics {
        Some((addr, limits)) => Some(metrics::serve(addr, handle.clone(), limits, timeline)?),
        None => None,
    };
    let control = match control {
        Some((addr, limits)) => Some(control::serve(addr, handle.clone(), limits)?),
        None => None,
    };
    signals.watch(handle.clone()).context("cannot start the signal thread")?;
    systemd::keep_status(handle.clone())?;
    // Every thread is up before the lines that say the server is ready.
    let summaries = summarize(handle.clone())?;
    announce(server.local_addrs(), metrics, control);
    log_serving(&handle);
    systemd::ready(&systemd::status(&handle));
    server.wait();
    drop(trace); // every connection has ended: its last events are in, and the file is closed
    // The last summaries, once every connection has ended.
    summaries.lock().unwrap_or_else(PoisonError::into_inner).write(&handle);
    stats::log(&handle, true);
    systemd::flush(Duration::from_secs(1));
    Ok(())
}

/// Writes the summaries on a thread of their own while the server runs: within a second of
/// the first event of a burst, then at most once every [`stats::SUMMARY_EVERY`]. Returns them,
/// for the last.
fn summarize(handle: Handle) -> anyhow::Result<Arc<Mutex<stats::Summaries>>> {
    let summaries = Arc::new(Mutex::new(stats::Summaries::default()));
    let written = Arc::clone(&summaries);
    let mut last = Instant::now() - stats::SUMMARY_EVERY;
    thread::Builder::new()
        .name("summaries".into())
        .spawn(move || {
            while !handle.is_stopping() {
                thread::sleep(Duration::from_secs(1));
                if last.elapsed() >= stats::SUMMARY_EVERY
                    && written.lock().unwrap_or_else(PoisonError::into_inner).write(&handle)
                {
                    last = Instant::now();
                }
            }
        })
        .context("cannot start the summaries' thread")?;
    Ok(summaries)
}

/// Prints the lines on stdout that scripts wait for, with the real bound addresses.
fn announce(local: &[SocketAddr], metrics: Option<SocketAddr>, control: Option<SocketAddr>) {
    let mut stdout = std::io::stdout().lock();
    // If nobody reads stdout, the lines have nowhere to go and the server carries on.
    for addr in local {
        let _ = writeln!(stdout, "poetry-serve listening on {addr}");
    }
    if let Some(addr) = metrics {
        let _ = writeln!(stdout, "poetry-serve metrics on http://{addr}/metrics");
    }
    if let Some(addr) = control {
        let _ = writeln!(stdout, "poetry-serve control on http://{addr}/faults");
    }
    let _ = stdout.flush();
}

/// Logs each poem being served, and what the server does with them.
fn log_serving(handle: &Handle) {
    let poems = handle.poems();
    for poem in &poems {
        let bytes = std::fs::metadata(poem).map_or(0, |meta| meta.len());
        info!(poem = %crate::poem::shown(poem), bytes, "poem");
    }
    let config = handle.config();
    info!(
        poems = poems.len(),
        order = config.order.name(),
        num_bytes = config.pacing.chunk,
        delay_s = config.pacing.delay.as_secs_f64(),
        workers = config.workers,
        "serving"
    );
}

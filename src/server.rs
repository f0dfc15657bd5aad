//! The server's life: bind, serve, drain. [`run`] is the whole of it, read top to bottom; the
//! accept loop is here too.
//!
//! The main thread accepts connections and hands each one to the worker pool. When every
//! worker is busy and the pool's queue is full, it waits instead of accepting, so clients wait
//! in the kernel's listen backlog; the backlog is set large (see [`crate::listener`]) so that a
//! burst of thousands of connects is queued there rather than left to SYN retries.

use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use tracing::{debug, info, warn};

use crate::capacity;
use crate::collection::Collection;
use crate::config::Config;
use crate::connection;
use crate::limit::{Limit, OverLimit};
use crate::listener::Listeners;
use crate::metrics;
use crate::pool::Pool;
use crate::progress::Board;
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::signals::Signals;
use crate::stats::Stats;
use crate::systemd;

/// Runs the server until SIGINT or SIGTERM, then drains it and returns.
///
/// Every check that can fail on bad input (the poems, the addresses, the thread limits)
/// happens before the listening lines; then one line per bound address goes to stdout.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Bind: everything that can fail on bad input, before the listening line.
    let signals = Signals::register().context("cannot install signal handlers")?;
    let poems = Collection::open(&config.poems, config.order, config.faults.seed)?;
    let listeners = match systemd::inherited_listeners()? {
        Some(sockets) => {
            info!(
                sockets = sockets.len(),
                "listening on sockets from systemd (LISTEN_FDS); --iface and --port do not apply"
            );
            Listeners::inherited(sockets).context("cannot use the sockets from systemd")?
        }
        None => Listeners::bind(&config.listen, config.reuse_port)?,
    };
    for socket in listeners.sockets() {
        connection::set_options(
            socket.into(),
            config.write_timeout,
            config.pacing.is_paced(),
        )
        .context("cannot set the listening socket's options")?;
    }
    let local = listeners
        .local_addrs()
        .context("cannot read the listening address")?;
    let shutdown = Shutdown::new(listeners.sockets()).context("cannot set up shutdown")?;
    capacity::check(config.workers.get())?;
    let pool =
        Pool::new(config.workers, shutdown.clone()).context("cannot start the worker threads")?;
    let shared = Arc::new(Shared {
        limit: Arc::new(Limit::new(config.max_per_source)),
        stats: Stats::new(config.faults.fault.is_some()),
        load: pool.load(),
        board: Board::new(config.workers.get()),
        listening: local.clone(),
        shutdown: shutdown.clone(),
        poems,
        config,
    });
    let metrics = match shared.config.metrics {
        Some(addr) => Some(metrics::serve(addr, Arc::clone(&shared))?),
        None => None,
    };
    signals
        .watch(Arc::clone(&shared))
        .context("cannot start the signal thread")?;
    systemd::keep_status(Arc::clone(&shared))?;

    // Serve, until a signal begins the shutdown.
    let config = &shared.config;
    announce(&local, metrics);
    log_poems(&shared.poems);
    info!(
        poems = shared.poems.current().len(),
        order = config.order.name(),
        num_bytes = config.pacing.chunk(),
        delay_s = config.pacing.delay().as_secs_f64(),
        workers = config.workers,
        "serving"
    );
    systemd::ready(&systemd::status(&shared));
    accept_loop(&listeners, &pool, &shared, &shutdown);
    drop(listeners); // from here on, connects are refused

    // Drain: poems in flight get the grace period, then the final report.
    info!(
        streaming = pool.busy(),
        grace_s = shared.config.shutdown_grace.as_secs_f64(),
        "listener closed; letting poems in flight finish"
    );
    let cut_off = pool.drain(shared.config.shutdown_grace);
    if cut_off > 0 {
        warn!(
            cut_off,
            "grace period over; closed connections still streaming"
        );
    }
    shared.stats.final_report().log();
    Ok(())
}

/// Logs each poem being served. The set is only borrowed here: holding it for the server's
/// life would keep files a reload replaced open for good.
fn log_poems(poems: &Collection) {
    for poem in poems.current().iter() {
        info!(poem = %poem.path().display(), bytes = poem.size().unwrap_or(0), "poem");
    }
}

/// Prints the lines on stdout that scripts wait for, with the real bound addresses: one per
/// listening address, then one for the metrics, if they are served.
fn announce(local: &[SocketAddr], metrics: Option<SocketAddr>) {
    let mut stdout = std::io::stdout().lock();
    // If nobody reads stdout, the lines have nowhere to go and the server carries on.
    for addr in local {
        let _ = writeln!(stdout, "poetry-serve listening on {addr}");
    }
    if let Some(addr) = metrics {
        let _ = writeln!(stdout, "poetry-serve metrics on http://{addr}/metrics");
    }
    let _ = stdout.flush();
}

/// How long to pause after `accept` fails for lack of resources (out of file descriptors,
/// say), so the loop does not spin while connections finish and free some.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections and queues them for the pool until shutdown begins.
fn accept_loop(listeners: &Listeners, pool: &Pool, shared: &Arc<Shared>, shutdown: &Shutdown) {
    loop {
        let accepted = listeners.accept();
        if shutdown.has_begun() {
            // Whatever woke us (the shut listener, or a client that arrived just then) is
            // closed unserved.
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                accept_failed(&err);
                continue;
            }
        };
        // An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d; log it as a.b.c.d.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let id = shared.stats.accepted();
        debug!(%peer, busy = pool.busy(), "accepted");
        let chance = shared
            .config
            .faults
            .chance(id, shared.config.pacing.varies());
        if let Some(fault) = chance.fault.filter(|fault| fault.at_accept()) {
            connection::play_at_accept(stream, peer, fault, shared);
            continue;
        }
        // Behind a balancer the client is known only from its PROXY header, which a worker
        // reads; otherwise the limit is applied here, before the connection takes a worker.
        let admission = match shared.config.proxy_protocol {
            true => None,
            false => match shared.limit.admit(peer.ip()) {
                Ok(admission) => admission,
                Err(OverLimit) => {
                    connection::reject(peer, shared);
                    continue; // `stream` is closed here, unserved
                }
            },
        };
        let for_job = Arc::clone(shared);
        let job =
            Box::new(move || connection::serve(stream, peer, id, admission, chance, &for_job));
        if pool.execute(job).is_err() {
            // Shutdown began while it waited for a worker: closed unserved, but logged.
            connection::closed_at_shutdown(peer, shared);
            return;
        }
    }
}

/// Logs a failed `accept` and, if the machine is short of resources, pauses before the next.
fn accept_failed(err: &io::Error) {
    match err.kind() {
        // The client gave up before we got to it: nothing to do.
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted => {
            debug!(error = %err, "accept: client left before it was accepted");
        }
        _ => {
            warn!(error = %err, "accept failed; pausing before the next");
            thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

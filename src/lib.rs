//! poetry-serve: a blocking, threaded TCP server that streams a poem slowly to every client.
//!
//! It is the "slow poetry server" of Dave Peticolas' Twisted introduction, built the way a
//! blocking server is built in Rust: a `std::net::TcpListener` accept loop hands each
//! connection to a fixed pool of worker threads, and a worker sends the poem in chunks of
//! `--num-bytes` bytes, `--delay` seconds apart, then closes.
//!
//! # Layout
//!
//! - [`config`]: the command line and the validated [`Config`] built from it.
//! - [`collection`]: the poems being served, picked per connection, reloaded on SIGHUP.
//! - [`poem`]: opens one poem file and sends from it at any offset, without copying it.
//! - [`server`]: binds the listener and runs the accept loop.
//! - [`pool`]: the fixed pool of worker threads and its bounded queue.
//! - [`connection`]: streams a poem to one client on schedule and closes without loss.
//! - [`pacing`]: the chunk size and the deadline of each chunk.
//! - [`signals`]: SIGINT/SIGTERM (shutdown), SIGUSR1 (stats line), SIGHUP (reload).
//! - [`stats`]: server-wide counters and the stats line.

pub mod collection;
pub mod config;
pub mod connection;
pub mod pacing;
pub mod poem;
pub mod pool;
pub mod server;
pub mod signals;
pub mod stats;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use collection::Collection;
pub use config::Config;
use connection::Context;
use pool::Pool;
use signals::Signals;
use stats::Stats;

/// Runs the server until SIGINT or SIGTERM, then drains it and returns.
///
/// Every check that can fail on bad input (the poems, the address) happens before anything
/// listens. Once listening, one line naming the bound address goes to stdout.
pub fn run(config: Config) -> anyhow::Result<()> {
    let signals = Signals::register().context("cannot install signal handlers")?;
    let poems = Collection::open(&config.poems, config.order)?;
    let listener = server::bind(config.addr, config.reuse_port)?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let pool = Pool::new(config.workers).context("cannot start the worker threads")?;
    let ctx = Arc::new(Context {
        poems,
        pacing: config.pacing,
        write_timeout: config.write_timeout,
        stats: Stats::new(),
    });
    signals
        .watch(signals::Server {
            listening: local,
            closer: pool.closer(),
            ctx: Arc::clone(&ctx),
            load: pool.load(),
            log_format: config.log_format,
        })
        .context("cannot start the signal thread")?;

    announce(local);
    let poems = ctx.poems.current();
    for poem in poems.iter() {
        info!(poem = %poem.path().display(), bytes = poem.size().unwrap_or(0), "poem");
    }
    info!(
        poems = poems.len(),
        order = config.order.name(),
        num_bytes = config.pacing.chunk(),
        delay_s = config.pacing.delay().as_secs_f64(),
        workers = config.workers,
        "serving"
    );
    server::accept_loop(&listener, &pool, &ctx);
    drop(listener); // from here on, connects are refused

    info!(
        streaming = pool.busy(),
        grace_s = config.shutdown_grace.as_secs_f64(),
        "listener closed; letting poems in flight finish"
    );
    let cut_off = pool.shutdown(config.shutdown_grace);
    if cut_off > 0 {
        warn!(
            cut_off,
            "grace period over; closing connections still streaming"
        );
    }
    // Whatever still streams is about to be cut off by the exit: it counts as aborted.
    ctx.stats.report(0, 0).print(config.log_format);
    Ok(())
}

/// Prints the one line on stdout that scripts wait for, with the real bound address.
fn announce(local: std::net::SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    // If nobody reads stdout, the line has nowhere to go and the server carries on regardless.
    let _ = writeln!(stdout, "poetry-serve listening on {local}").and_then(|()| stdout.flush());
}

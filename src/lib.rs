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
//! - [`poem`]: opens the poem file once and sends from it at any offset, without copying it.
//! - [`server`]: binds the listener and runs the accept loop.
//! - [`pool`]: the fixed pool of worker threads and its bounded queue.
//! - [`connection`]: streams the poem to one client on schedule and closes without loss.
//! - [`pacing`]: the chunk size and the deadline of each chunk.
//! - [`shutdown`]: SIGINT/SIGTERM: closing the pool's queue, waking `accept`, the second signal.
//! - [`stats`]: server-wide counters and the summary line.

pub mod config;
pub mod connection;
pub mod pacing;
pub mod poem;
pub mod pool;
pub mod server;
pub mod shutdown;
pub mod stats;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

pub use config::Config;
use connection::Context;
use poem::Poem;
use pool::Pool;
use shutdown::Shutdown;
use stats::Stats;

/// Runs the server until SIGINT or SIGTERM, then drains it and returns.
///
/// Every check that can fail on bad input (the poem, the address) happens before anything
/// listens. Once listening, one line naming the bound address goes to stdout.
pub fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::register().context("cannot install signal handlers")?;
    let poem = Poem::open(&config.poem)?;
    let listener = server::bind(config.addr)?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let pool = Pool::new(config.workers).context("cannot start the worker threads")?;
    shutdown
        .watch(local, pool.closer())
        .context("cannot start the signal thread")?;
    let ctx = Arc::new(Context {
        poem,
        pacing: config.pacing,
        write_timeout: config.write_timeout,
        stats: Stats::default(),
    });

    announce(local);
    info!(
        poem = %ctx.poem.path().display(),
        bytes = ctx.poem.size().unwrap_or(0),
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
    info!("stopped: {}", ctx.stats.snapshot());
    Ok(())
}

/// Prints the one line on stdout that scripts wait for, with the real bound address.
fn announce(local: std::net::SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    // If nobody reads stdout, the line has nowhere to go and the server carries on regardless.
    let _ = writeln!(stdout, "poetry-serve listening on {local}").and_then(|()| stdout.flush());
}

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
//! - [`logging`]: where log lines go, at which level, as text or JSON.
//! - [`server`]: the server's life in [`run`] (bind, serve, drain) and the accept loop.
//! - [`listener`]: the listening sockets, bound and accepted from as one.
//! - [`shutdown`]: the one handle that stops new connections, shared by the signal thread, the
//!   accept loop and the pool.
//! - [`pool`]: the fixed pool of worker threads and its bounded queue.
//! - [`capacity`]: how many worker threads the system lets one process start.
//! - [`connection`]: streams a poem to one client on schedule and closes without loss.
//! - [`limit`]: the per-source limit on connections.
//! - [`proxy`]: reads the PROXY protocol header that names the client behind a balancer.
//! - [`pacing`]: the chunk size and the deadline of each chunk, with jitter if asked for.
//! - [`faults`]: faults played on purpose, and the seeded random draws behind them.
//! - [`collection`]: the poems being served, picked per connection, reloaded on SIGHUP.
//! - [`poem`]: opens one poem file and sends from it at any offset, without copying it.
//! - [`outcome`]: how a connection ended, in the words the logs and the stats line use.
//! - [`stats`]: server-wide counters and the stats line.
//! - [`metrics`]: the counters over HTTP for Prometheus, with health checks.
//! - [`http`]: the HTTP listener behind `--metrics`, bounded against hostile clients.
//! - [`systemd`]: readiness notification and socket activation.
//! - [`signals`]: SIGINT/SIGTERM (shutdown), SIGUSR1 (stats line), SIGHUP (reload).

mod capacity;
mod close;
mod collection;
mod config;
mod connection;
mod faults;
mod http;
mod limit;
mod listener;
mod logging;
mod metrics;
mod outcome;
mod pacing;
mod poem;
mod pool;
mod proxy;
mod server;
mod shared;
mod shutdown;
mod signals;
mod stats;
mod sys;
mod systemd;

pub use config::{Cli, Config};
pub use logging::{flush as flush_log, init as init_log};
pub use server::run;

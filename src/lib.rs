//! poetry-serve: a blocking, threaded TCP server that streams a poem slowly to every client.
//!
//! It is the "slow poetry server" of Dave Peticolas' Twisted introduction, built the way a
//! blocking server is built in Rust: a `std::net::TcpListener` accept loop hands each
//! connection to a fixed pool of worker threads, and a worker sends the poem in chunks of
//! `--num-bytes` bytes, `--delay` seconds apart, then closes.
//!
//! # Layout
//!
//! The core, in the order a connection meets it:
//!
//! - [`server`]: the server's life in [`run`] (bind, serve, drain) and the accept loop.
//! - [`listener`]: the listening sockets, bound and accepted from as one.
//! - [`pool`]: the fixed pool of worker threads and its bounded queue.
//! - [`connection`]: streams a poem to one client on schedule, and ends it with one outcome.
//! - [`close`]: the close without loss, and the socket waits the faults share with it.
//! - [`pacing`]: the chunk size and the deadline of each chunk, with jitter if asked for.
//! - [`collection`]: the poems being served, picked per connection, reloaded on SIGHUP.
//! - [`poem`]: opens one poem file and sends from it at any offset, without copying it.
//!
//! What they share and decide with:
//!
//! - [`cli`]: the command line: options, help, variables, and the parsers of their values.
//! - [`config`]: the validated [`Config`], checked across options.
//! - [`shared`]: what every thread of a running server reads: config, poems, counters.
//! - [`shutdown`]: the one handle that stops new connections and cuts off the rest.
//! - [`outcome`]: how a connection ended, and the one list of outcome kinds.
//! - [`faults`]: faults played on purpose, what each does, and the seeded random draws.
//! - [`limit`]: the per-source limit on connections.
//! - [`proxy`]: reads the PROXY protocol header that names the client behind a balancer.
//! - [`capacity`]: how many worker threads the system lets one process start.
//! - [`sys`]: the operating system's calls std does not wrap, and /proc: every `unsafe`.
//!
//! Operations around it:
//!
//! - [`logging`]: where log lines go, at which level, as text or JSON.
//! - [`stats`]: server-wide counters and the stats line.
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz` and the status page's routes, read at
//!   scrape time.
//! - [`progress`]: each worker's slot, where it publishes its connection and progress.
//! - [`status`]: the live status page, `/` (HTML) and `/status.json`, read from the slots.
//! - [`http`]: the HTTP listener behind `--metrics`, bounded against hostile clients.
//! - [`systemd`]: readiness notification and socket activation.
//! - [`signals`]: SIGINT/SIGTERM (shutdown), SIGUSR1 (stats line), SIGHUP (reload).
//!
//! The modules are private: the binary uses [`Cli`], [`Config`], [`run`] and the logging
//! set-up, and nothing else is exported, so the compiler reports any code nothing calls.

// The map above links to private modules on purpose: the library's one user is its binary,
// and its documentation is built with --document-private-items (.ci/run).
#![allow(rustdoc::private_intra_doc_links)]

mod capacity;
mod cli;
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
mod progress;
mod proxy;
mod server;
mod shared;
mod shutdown;
mod signals;
mod stats;
mod status;
mod sys;
mod systemd;

pub use cli::{Cli, LogFormat, Refusal};
pub use config::Config;
pub use logging::{fatal as log_fatal, flush as flush_log, init as init_log};
pub use server::run;

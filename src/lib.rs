//! poetry-serve: a blocking, threaded TCP server that streams a poem slowly to every client.
//!
//! It is the "slow poetry server" of Dave Peticolas' Twisted introduction, built the way a
//! blocking server is built in Rust: a fixed pool of worker threads shares a
//! `std::net::TcpListener`, each free worker accepts its next connection itself, and sends the
//! poem in chunks of `--num-bytes` bytes, `--delay` seconds apart, then closes.
//!
//! A program (a test suite, say) starts one in-process with [`Server::start`]:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let server = poetry_serve::Server::start(poetry_serve::Config::new("poems/ecstasy.txt"))?;
//! println!("serving on {}", server.local_addrs()[0]);
//! server.stop();
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! The core, in the order a connection meets it; none of it knows of [`ops`]:
//!
//! - [`server`]: [`Server`] (start, stop, drain), its [`Handle`], and how a free worker takes
//!   a connection; what its threads share is in [`shared`].
//! - [`listener`]: the listening sockets, bound and accepted from as one.
//! - [`pool`]: the fixed pool of worker threads, each taking its own jobs.
//! - [`connection`]: the object each connection is while served, its registry, and the
//!   serving, from the PROXY header to the close.
//! - [`close`]: the close without loss, and the socket waits the faults share with it.
//! - [`pacing`]: the chunk size and the deadline of each chunk, with jitter if asked for.
//! - [`collection`] and [`poem`]: the poems, picked per connection and sent at any offset.
//! - [`config`]: the [`Config`] and the checks across its values.
//! - [`counters`]: the one set of counters every report reads.
//! - [`outcome`], [`faults`], [`limit`], [`proxy`]: how a connection ends, faults on purpose,
//!   the per-source limit, the PROXY protocol; [`script`]: faults scripted per connection.
//! - [`watch`]: the hook through which a connection's every moment (accepted, taken, each
//!   chunk, the end) reaches whoever watches.
//! - [`capacity`] and [`sys`]: the system's limits on threads, and every `unsafe` call.
//!
//! Around it, [`cli`] reads the command line into a [`Config`] (its value parsers name the
//! variable a bad value came from: [`sourced`]), and [`ops`] runs the server as a daemon: logs,
//! signals, the stats line, metrics and the status page over HTTP, systemd, a trace file.

// The map above links to private modules on purpose: the documentation is built with
// --document-private-items (.ci/run).
#![allow(rustdoc::private_intra_doc_links)]

mod capacity;
pub mod cli;
mod close;
mod collection;
mod config;
mod connection;
mod counters;
mod faults;
mod limit;
mod listener;
pub mod ops;
mod outcome;
mod pacing;
mod poem;
mod pool;
mod proxy;
pub mod script;
mod server;
mod shared;
mod sourced;
mod sys;
pub mod watch;

pub use collection::Order;
pub use config::{Behaviour, Config, Invalid};
pub use connection::View;
pub use counters::{Counters, Histogram, Tally};
pub use faults::{Fault, FaultFlags, Faults, Numbers, Rule};
pub use outcome::Outcome;
pub use pacing::Pacing;
pub use server::{Handle, Server, Stopped};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust test in docs/testing.md, compiled and run as a doctest.
#[doc = include_str!("../docs/testing.md")]
#[cfg(doctest)]
pub struct TestingDoctests;

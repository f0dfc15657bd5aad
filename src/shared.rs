//! What every part of a running server reads: the validated configuration, the poems, the
//! per-source limit, the counters, the pool's load, each worker's progress and the shutdown. One
//! value, built once by [`crate::server::run`] and shared by `Arc` with the workers, the signal
//! thread, the metrics listener and the systemd status thread.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::collection::Collection;
use crate::config::Config;
use crate::limit::Limit;
use crate::pool::Load;
use crate::progress::Board;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// The running server's state, shared by every thread.
pub struct Shared {
    /// The checked command line, as given.
    pub config: Config,
    /// The poems; each client gets one. Reloaded on SIGHUP.
    pub poems: Collection,
    /// Connections per source.
    pub limit: Arc<Limit>,
    /// Server-wide totals.
    pub stats: Stats,
    /// How busy the worker pool is.
    pub load: Arc<Load>,
    /// What each worker is doing, for the status page.
    pub board: Board,
    /// The addresses the server listens on, as bound.
    pub listening: Vec<SocketAddr>,
    /// Stops new connections, and ends those still streaming when the grace period is over.
    pub shutdown: Shutdown,
}

impl Shared {
    /// The counters now, with the pool's load.
    pub fn report(&self) -> crate::stats::Report {
        self.stats.report(&self.load)
    }
}

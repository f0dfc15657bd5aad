//! What every thread of a running server shares: built once by [`crate::Server::start`], and
//! held by every worker, the listener's thread, and every [`crate::Handle`].

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::collection::Collection;
use crate::config::{Behaviour, Config};
use crate::connection::Registry;
use crate::counters::Counters;
use crate::limit::Limit;
use crate::listener::Waker;

/// What every thread of a running server shares.
pub(crate) struct Shared {
    pub config: Config,
    /// The pacing and faults in force; a change swaps it whole.
    pub behaviour: RwLock<Arc<Behaviour>>,
    pub poems: Collection,
    pub limit: Arc<Limit>,
    /// With `--proxy-protocol`, the connections each peer holds waiting for their header.
    pub waiting: Arc<Limit>,
    pub counters: Counters,
    pub registry: Registry,
    pub listening: Vec<SocketAddr>,
    pub waker: Waker,
    /// The listening sockets, for their backlog, until they are closed.
    pub sockets: Mutex<Vec<TcpListener>>,
}

impl Shared {
    /// The pacing and faults in force now.
    pub fn behaviour(&self) -> Arc<Behaviour> {
        // Held for one statement; nothing panics while it is held.
        Arc::clone(&self.behaviour.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn sockets(&self) -> MutexGuard<'_, Vec<TcpListener>> {
        // Nothing panics while it is held.
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

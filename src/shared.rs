//! What every thread of a running server shares: built once by [`crate::Server::start`], and
//! held by every worker, the listener's thread, and every [`crate::Handle`].

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::collection::Collection;
use crate::config::{Behaviour, Config};
use crate::connection::Registry;
use crate::counters::Counters;
use crate::limit::Limit;
use crate::listener::Waker;

/// What every thread of a running server shares.
pub(crate) struct Shared {
    pub config: Config,
    /// The pacing and faults in force, and the numbering that goes with them.
    pub in_force: Mutex<InForce>,
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

/// What connections get now, and their numbers in accept order.
pub(crate) struct InForce {
    /// The pacing and faults in force; a change swaps it whole.
    pub behaviour: Arc<Behaviour>,
    /// The next connection's number in accept order, from 0.
    pub next: u64,
    /// The first number accepted under `behaviour`: a script put in force through --control
    /// says "the next two" as "1-2".
    pub counted_from: u64,
}

impl Shared {
    /// The pacing and faults in force now.
    pub fn behaviour(&self) -> Arc<Behaviour> {
        Arc::clone(&self.in_force().behaviour)
    }

    /// Puts `behaviour` in force for the connections accepted from now on, numbered from 0.
    pub fn put_in_force(&self, behaviour: Behaviour) {
        let mut in_force = self.in_force();
        (in_force.behaviour, in_force.counted_from) = (Arc::new(behaviour), in_force.next);
    }

    pub fn in_force(&self) -> MutexGuard<'_, InForce> {
        // Held for a few statements; nothing panics while it is held.
        self.in_force.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn sockets(&self) -> MutexGuard<'_, Vec<TcpListener>> {
        // Nothing panics while it is held.
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

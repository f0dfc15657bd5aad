//! The server's life: [`Server::start`] binds and starts serving, a [`Handle`] lets anyone
//! watch it or ask it to stop, and [`Server::stop`] drains it. How a worker takes a connection
//! is here too.
//!
//! Every free worker accepts its next connection itself ([`Intake`]), so when every worker is
//! busy, clients wait in the kernel's listen backlog, which is set large (see
//! [`crate::listener`]) so that a burst of thousands of connects is queued there rather than
//! left to SYN retries. The worker that accepts a connection numbers it, holds it for
//! `--accept-delay`, counts it and serves it. A thread of its own waits for the stop, then
//! closes the listeners.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{debug, info, warn};

use crate::capacity;
use crate::collection::Collection;
use crate::config::{Behaviour, Config, Invalid};
use crate::connection::{self, Accepted, CUT_OFF_WAIT, Registry, View};
use crate::counters::Counters;
use crate::faults::Fault;
use crate::limit::Limit;
use crate::listener::{self, BACKLOG, Listeners};
use crate::outcome::Outcome;
use crate::pool::{Pool, Source};
use crate::shared::{InForce, Shared};
use crate::sys;
use crate::watch::{self, Event};

/// A running server. Dropping it stops it at once, with no grace; [`Server::stop`] drains it.
pub struct Server {
    handle: Handle,
    /// The thread that closes the listeners at the stop, and then hands the pool back.
    listener: Option<JoinHandle<Pool<Intake>>>,
}

/// A running server's state, for whoever watches it or asks it to stop: cheap to clone, and
/// usable from any thread.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still streaming when the grace period ended, and cut off.
    pub cut_off: u64,
}

/// After accept fails for lack of resources (out of file descriptors, say), how long the loop
/// pauses, so that it does not spin while connections finish and free some.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The longest tick of the kernel's clock (HZ=100), in which it reports a backlog wait.
const KERNEL_TICK: Duration = Duration::from_millis(10);

impl Server {
    /// Checks `config`, opens the poems, binds every address and starts serving.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        config.check()?;
        // A black hole's backlog is the smallest: once it is full, connects get no answer.
        let backlog = if config.blackhole { 0 } else { BACKLOG };
        let sockets = listener::bind(&config.listen, config.reuse_port, backlog)?;
        Server::start_on(config, sockets)
    }

    /// Like [`Server::start`], on sockets already listening (systemd's, say) instead of
    /// `config.listen`.
    pub fn start_on(config: Config, sockets: Vec<TcpListener>) -> anyhow::Result<Server> {
        config.check()?;
        if config.blackhole {
            // Listening again with another backlog is allowed, on sockets handed over too.
            for socket in &sockets {
                socket2::SockRef::from(socket).listen(0).context("cannot shrink the backlog")?;
            }
        }
        anyhow::ensure!(!sockets.is_empty(), "no socket to listen on");
        let poems = Collection::open(&config.poems, config.order, config.faults.seed)?;
        let listeners = Listeners::new(sockets, config.workers.get())
            .context("cannot use the listening sockets")?;
        let listening = (listeners.local_addrs()).context("cannot read the listening address")?;
        let sockets = Mutex::new(listeners.clones().context("cannot use the listening sockets")?);
        let poems_open = crate::poem::descriptors(poems.current().len(), config.workers.get());
        capacity::check(config.workers.get(), config.reserved_descriptors + poems_open)?;
        let behaviour = Arc::new(config.behaviour());
        let shared = Arc::new(Shared {
            in_force: Mutex::new(InForce { behaviour, next: 0, counted_from: 0 }),
            limit: Arc::new(Limit::new(config.max_per_source)),
            waiting: Arc::new(Limit::new(config.proxy_max_waiting)),
            counters: Counters::new(),
            registry: Registry::new(config.workers.get()),
            waker: listeners.waker(),
            sockets,
            listening,
            poems,
            config,
        });
        if shared.config.blackhole {
            warn!("a black hole: nothing is accepted, and connects past the backlog get no answer");
        }
        let intake = Arc::new(Intake { shared: Arc::clone(&shared), listeners });
        let for_workers = Arc::clone(&shared);
        let pool =
            Pool::new(shared.config.workers, Arc::clone(&intake), move |worker, accepted| {
                connection::serve(&for_workers, worker, accepted)
            })
            .context("cannot start the worker threads")?;
        let for_listener = Arc::clone(&shared);
        let listener = thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                intake.listeners.sleep(None); // until Handle::stop
                // The second handles first, so that the sockets close with the backlog's drain
                // and a connect after it is refused rather than reset.
                for_listener.sockets().clear();
                intake.close();
                pool // from now on, connects are refused
            })
            .context("cannot start the listener thread")?;
        Ok(Server { handle: Handle(shared), listener: Some(listener) })
    }

    /// Where the server listens, in the order of `config.listen`, with the ports picked.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.handle.0.listening
    }

    /// A handle on the server, to watch it or stop it from elsewhere.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops accepting, lets poems in flight finish within `config.shutdown_grace`, cuts off
    /// what is left, and returns once every worker has ended (or the cut-off's wait is over).
    pub fn stop(mut self) -> Stopped {
        self.handle.stop();
        self.drain(self.handle.0.config.shutdown_grace)
    }

    /// Serves until someone calls [`Handle::stop`], then drains as [`Server::stop`] does.
    pub fn wait(mut self) -> Stopped {
        self.drain(self.handle.0.config.shutdown_grace)
    }

    fn drain(&mut self, grace: Duration) -> Stopped {
        let shared = &self.handle.0;
        let Some(Ok(pool)) = self.listener.take().map(JoinHandle::join) else {
            return Stopped { cut_off: 0 }; // the listener's thread panicked, taking the pool
        };
        let streaming = shared.counters.tally().busy;
        info!(
            streaming,
            grace_s = grace.as_secs_f64(),
            "listener closed; letting poems in flight finish"
        );
        let mut cut_off = 0;
        let cut = || {
            cut_off = shared.counters.tally().busy;
            shared.registry.cut_off();
        };
        pool.join(grace, cut, CUT_OFF_WAIT);
        if cut_off > 0 {
            warn!(cut_off, "grace period over; closed connections still streaming");
        }
        Stopped { cut_off }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.handle.stop();
            self.drain(Duration::ZERO);
        }
    }
}

impl Handle {
    /// Stops accepting new connections, at once; connections already accepted carry on. The
    /// server's owner drains them ([`Server::stop`], [`Server::wait`]).
    pub fn stop(&self) {
        self.0.registry.cut_waiting();
        self.0.waker.wake();
    }

    /// Whether [`Handle::stop`] has been called.
    pub fn is_stopping(&self) -> bool {
        self.0.registry.is_stopping()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Where the server listens, with the ports picked.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.0.listening
    }

    /// The counters: where every connection is, bytes sent, durations and lateness.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// Every connection being served now, in worker order.
    pub fn connections(&self) -> Vec<View> {
        self.0.registry.views()
    }

    /// Connections waiting in the listen backlogs (accepted by the kernel, not yet by the
    /// server), and the most they hold; `None` once stopped, or where the system cannot say.
    pub fn backlog(&self) -> Option<(u64, u64)> {
        let sockets = self.0.sockets();
        let each: Option<Vec<(u32, u32)>> = sockets.iter().map(sys::backlog).collect();
        let each = each.filter(|each| !each.is_empty())?;
        Some(each.iter().fold((0, 0), |(n, max), b| (n + u64::from(b.0), max + u64::from(b.1))))
    }

    /// The pacing and faults in force: what a connection accepted now gets.
    pub fn behaviour(&self) -> Arc<Behaviour> {
        self.0.behaviour()
    }

    /// Changes the pacing and faults, at once for every connection accepted from now on;
    /// connections in flight keep theirs. Refused, changing nothing, if it does not check.
    pub fn change(&self, behaviour: Behaviour) -> Result<(), Invalid> {
        behaviour.check()?;
        self.0.put_in_force(behaviour);
        Ok(())
    }

    /// Whether faults are part of the story: one may be played now, or one has been. Reports
    /// show the faults' outcomes only then, and from then on.
    pub fn plays_faults(&self) -> bool {
        let tally = self.0.counters.tally();
        self.behaviour().faults.any()
            || Fault::ALL.iter().any(|&fault| tally.ended(Outcome::Fault(fault)) > 0)
    }

    /// Goes back to the pacing and faults the server started with.
    pub fn restore(&self) {
        self.0.put_in_force(self.0.config.behaviour());
    }

    /// The poems served now.
    pub fn poems(&self) -> Vec<std::path::PathBuf> {
        (self.0.poems.current().iter()).map(|poem| poem.path().to_owned()).collect()
    }

    /// Opens the poems again; new connections get the new set, and on failure the old one
    /// stays. Returns how many poems are served now.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let result = self.0.poems.reload();
        self.0.counters.reloaded(result.is_ok());
        result
    }
}

/// How a free worker takes its next connection: it accepts from the listeners itself, and
/// numbers, holds and counts what it accepts.
struct Intake {
    shared: Arc<Shared>,
    listeners: Listeners,
}

impl Source for Intake {
    type Job = Accepted;

    fn take(&self, worker: usize) -> Option<Accepted> {
        let shared = &*self.shared;
        if shared.config.blackhole {
            self.listeners.sleep(None);
            return None;
        }
        loop {
            let (stream, peer) = match self.listeners.accept(worker) {
                Ok(Some(accepted)) => accepted,
                Ok(None) => return None,
                Err(err) => {
                    accept_failed(&err);
                    continue;
                }
            };
            if shared.registry.is_stopping() {
                close_unserved(shared, stream, peer, false);
                continue;
            }
            let waited = sys::backlog_wait(&stream).unwrap_or_default();
            let (id, number, behaviour) = self.number();
            // Counted from its accept; while --accept-delay holds it, it is queued.
            shared.counters.accepted();
            // --accept-delay: a connection that has not waited long enough waits the rest here,
            // unserved, held by the worker that took it.
            // The kernel counts the wait in ticks of its clock, rounded up (4 ms at HZ=250, 10 ms
            // at HZ=100): a tick less of it is counted, so that the first byte is never early.
            let counted = waited.saturating_sub(KERNEL_TICK);
            let hold = behaviour.faults.accept_delay.saturating_sub(counted);
            if !hold.is_zero() && !self.listeners.sleep(Some(hold)) {
                close_unserved(shared, stream, peer, true);
                continue;
            }
            // A connection's time is counted from here: the hold is part of its wait.
            let at = Instant::now();
            let waited = waited + hold;
            shared.counters.backlog_waits.observe(waited);
            watch::tell(&shared.config.watchers, id, at, Event::Accepted { peer, waited });
            return Some(Accepted { id, number, stream, peer, at, waited, behaviour });
        }
    }

    /// Closes the listeners, and every connection still waiting in their backlogs unserved but
    /// counted and logged: its client sees the end of the connection rather than a reset.
    fn close(&self) {
        self.listeners.close(|stream, peer| close_unserved(&self.shared, stream, peer, false));
    }
}

impl Intake {
    /// The next connection's number in accept order, its number since what it gets came in
    /// force, and what it gets.
    fn number(&self) -> (u64, u64, Arc<Behaviour>) {
        let mut in_force = self.shared.in_force();
        let id = in_force.next;
        in_force.next += 1;
        (id, id - in_force.counted_from, Arc::clone(&in_force.behaviour))
    }
}

/// Closes a connection accepted as the server stops, unserved but counted and logged; `held`
/// if it was already counted, held by --accept-delay.
fn close_unserved(shared: &Shared, stream: std::net::TcpStream, peer: SocketAddr, held: bool) {
    match held {
        true => shared.counters.dequeued(Outcome::Shutdown),
        false => shared.counters.unserved(Outcome::Shutdown),
    }
    connection::log_unserved(peer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Logs a failed `accept` and, if the machine is short of resources, pauses before the next.
fn accept_failed(err: &io::Error) {
    match listener::client_left(err) {
        true => debug!(error = %err, "accept: client left before it was accepted"),
        false => {
            warn!(error = %err, "accept failed; pausing before the next");
            thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

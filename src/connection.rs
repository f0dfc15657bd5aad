//! One connection: the object a worker serves and everything else observes, the registry that
//! holds it while it is served, and the serving itself, from the PROXY header to the close.
//!
//! Whatever the client does (hang up, stall, send junk) ends only its own connection: every
//! failure here becomes an [`Outcome`] that is counted and logged, never an error that reaches
//! the worker or the server.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tracing::{debug, info};

use crate::close;
use crate::config::Behaviour;
use crate::faults::Fault;
use crate::limit::Source;
use crate::outcome::Outcome;
use crate::pacing::{Pacing, Schedule};
use crate::poem::{LARGE, Opened, Poem};
use crate::proxy;
use crate::shared::Shared;
use crate::sys;
use crate::watch::{self, Event};

/// A connection a worker has accepted, with what was learnt as it was accepted.
pub struct Accepted {
    /// Its number in accept order, from 0.
    pub id: u64,
    /// Its number in accept order since what it gets came in force, from 0: what a script's
    /// rules name (from 1).
    pub number: u64,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub at: Instant,
    /// How long it waited in the listen backlog, as the system says, and held by
    /// `--accept-delay`.
    pub waited: Duration,
    /// The pacing and faults in force when it was accepted.
    pub behaviour: Arc<Behaviour>,
}

/// One client connection, from the moment a worker takes it to its close.
pub struct Connection {
    id: u64,
    number: u64,
    worker: usize,
    accepted: Instant,
    /// How long it waited in the listen backlog before it was accepted.
    waited: Duration,
    behaviour: Arc<Behaviour>,
    stream: TcpStream,
    /// The worker's thread, woken by the cut-off from a sleep between chunks.
    thread: Thread,
    who: Mutex<Who>,
    bytes: AtomicU64,
    chunks: AtomicU64,
    /// Whether its poem has begun: until then, a stop ends it at once.
    streaming: AtomicBool,
}

/// Who the client is and what it gets: set once or twice per connection.
struct Who {
    /// The client: the socket's peer, or the one a PROXY header names.
    peer: SocketAddr,
    /// The balancer it came through, with `--proxy-protocol`.
    via: Option<SocketAddr>,
    /// The poem, once picked, with its size then.
    poem: Option<(Arc<Poem>, u64)>,
    /// How long its close is held (`--close-delay`).
    close_delay: Duration,
}

/// A connection as it is at one moment, for a report.
#[derive(Debug, Clone)]
pub struct View {
    /// Its number in accept order, from 0.
    pub id: u64,
    /// The worker serving it (`worker-N` in the log).
    pub worker: usize,
    pub peer: SocketAddr,
    pub via: Option<SocketAddr>,
    /// The poem's path, as logs show it (see [`crate::poem::shown`]).
    pub poem: Option<String>,
    /// The poem's size when its first chunk left.
    pub poem_bytes: Option<u64>,
    /// Poem bytes handed to the kernel so far.
    pub bytes: u64,
    /// Chunks sent so far.
    pub chunks: u64,
    /// Of the bytes handed to the kernel, those the client has not acknowledged yet: the
    /// socket's send queue (SIOCOUTQ).
    pub unsent: Option<u64>,
    /// When it was accepted.
    pub accepted: Instant,
    /// How long it waited in the listen backlog before that.
    pub waited: Duration,
    /// Its pacing: the one in force when it was accepted.
    pub pacing: Pacing,
}

impl Connection {
    /// What this connection is at this moment.
    pub fn view(&self) -> View {
        let who = self.who();
        View {
            id: self.id,
            worker: self.worker,
            peer: who.peer,
            via: who.via,
            poem: who.poem.as_ref().map(|(poem, _)| poem.shown().to_string()),
            poem_bytes: who.poem.as_ref().map(|(_, size)| *size),
            bytes: self.bytes.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
            unsent: sys::unacknowledged(&self.stream).map(|n| n as u64),
            accepted: self.accepted,
            waited: self.waited,
            pacing: self.behaviour.pacing,
        }
    }

    fn who(&self) -> MutexGuard<'_, Who> {
        // Nothing panics while it is held; the fields would still be whole.
        self.who.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connections being served, one slot per worker, and the cut-offs that end them.
pub struct Registry {
    slots: Box<[Mutex<Option<Arc<Connection>>>]>,
    stopping: AtomicBool,
    cut: AtomicBool,
}

impl Registry {
    pub fn new(workers: usize) -> Registry {
        Registry {
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
            stopping: AtomicBool::new(false),
            cut: AtomicBool::new(false),
        }
    }

    fn slot(&self, worker: usize) -> MutexGuard<'_, Option<Arc<Connection>>> {
        // Nothing panics while a slot is held; its connection would still be whole.
        self.slots[worker].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every connection being served now, in worker order.
    pub fn views(&self) -> Vec<View> {
        (0..self.slots.len())
            .filter_map(|worker| self.slot(worker).as_ref().map(|c| c.view()))
            .collect()
    }

    /// Ends every connection now: sleeping workers wake, blocked reads and writes fail, and
    /// from now on [`Registry::sleep_until`] returns at once.
    pub fn cut_off(&self) {
        self.cut.store(true, Ordering::Release);
        self.end(|_| true);
    }

    /// Ends the connections whose poem has not begun (waiting for a PROXY header): at a stop,
    /// only poems in flight get the grace period.
    pub fn cut_waiting(&self) {
        self.stopping.store(true, Ordering::Release);
        self.end(|connection| !connection.streaming.load(Ordering::Acquire));
    }

    /// Whether [`Registry::cut_waiting`] has been called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn end(&self, which: impl Fn(&Connection) -> bool) {
        for worker in 0..self.slots.len() {
            if let Some(connection) = self.slot(worker).as_ref().filter(|c| which(c)) {
                // The slot holds it, so its socket is open; a failure means it is done anyway.
                let _ = connection.stream.shutdown(Shutdown::Both);
                connection.thread.unpark();
            }
        }
    }

    /// Whether the connections have been cut off.
    pub fn is_cut_off(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Sleeps until `due`, or until the cut-off if that comes first. Returns whether `due` was
    /// reached.
    fn sleep_until(&self, due: Instant) -> bool {
        loop {
            if self.is_cut_off() {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            // May wake early (the cut-off, or spuriously): the loop checks again.
            thread::park_timeout(due - now);
        }
    }
}

/// A connection's place in the registry; dropping it empties the slot.
struct Entered<'a>(&'a Registry, usize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.0.slot(self.1) = None;
    }
}

/// Serves connection `accepted` on `worker`: counts it, streams the poem, closes the
/// connection, and counts and logs how it ended.
pub fn serve(shared: &Shared, worker: usize, accepted: Accepted) {
    shared.counters.taken();
    watch::tell(&shared.config.watchers, accepted.id, Instant::now(), Event::Taken { worker });
    let Accepted { id, number, stream, peer, at, waited, behaviour } = accepted;
    let connection = Arc::new(Connection {
        id,
        number,
        worker,
        accepted: at,
        waited,
        behaviour,
        stream,
        thread: thread::current(),
        who: Mutex::new(Who { peer, via: None, poem: None, close_delay: Duration::ZERO }),
        bytes: AtomicU64::new(0),
        chunks: AtomicU64::new(0),
        streaming: AtomicBool::new(false),
    });
    *shared.registry.slot(worker) = Some(Arc::clone(&connection));
    let entered = Entered(&shared.registry, worker);
    let (outcome, error) = connection.serve(shared);
    if let (Outcome::BadHeader, Some(why)) = (outcome, &error) {
        shared.counters.note(outcome, format!("{why} (from {})", connection.who().peer));
    }
    let end = Instant::now();
    let took = end.saturating_duration_since(connection.accepted);
    shared.counters.durations.observe(took);
    shared.counters.ended(outcome);
    let bytes = connection.bytes.load(Ordering::Relaxed);
    watch::tell(&shared.config.watchers, id, end, Event::Ended { outcome, bytes });
    let who = connection.who();
    macro_rules! ended {
        ($level:ident) => {
            tracing::$level!(
                peer = %who.peer,
                via = who.via.map(tracing::field::display),
                poem = who.poem.as_ref().map(|(poem, _)| tracing::field::display(poem.shown())),
                bytes,
                chunks = connection.chunks.load(Ordering::Relaxed),
                duration_ms = took.as_millis() as u64,
                outcome = outcome.label(),
                error,
                // Added after the fields that scripts already read.
                number = connection.number + 1,
                waited_ms = millis(connection.waited),
                close_delay_ms = millis(who.close_delay),
                "connection ended"
            )
        };
    }
    // Turned away, or without a valid header, it is counted in a summary instead (see
    // ops::stats): a flood of them costs no line each.
    match outcome {
        Outcome::Rejected | Outcome::BadHeader => ended!(debug),
        _ => ended!(info),
    }
    drop(who);
    // Out of the registry first, so that the last reference, and with it the close, is here.
    drop(entered);
}

impl Connection {
    /// Serves the client, up to the close, and says how it ended.
    fn serve(&self, shared: &Shared) -> (Outcome, Option<String>) {
        let config = &shared.config;
        if let Err(err) = set_options(&self.stream, config.write_timeout, &self.behaviour.pacing) {
            return (Outcome::of_error(&err), Some(err.to_string()));
        }
        let pacing = self.behaviour.pacing;
        let plan = self.behaviour.faults.plan(self.number, pacing.varies());
        self.who().close_delay = plan.close_delay;
        if let Some((Fault::Refuse, _)) = plan.fault {
            Fault::Refuse.play(&self.stream, config.write_timeout, || true);
            return (Outcome::Fault(Fault::Refuse), None);
        }
        let socket_peer = self.who().peer;
        let mut client = socket_peer;
        // Behind a balancer the client is known only from its PROXY header, which one peer may
        // make only so many connections wait for.
        if config.proxy_protocol {
            let Ok(waiting) = shared.waiting.admit(socket_peer.ip()) else {
                let why =
                    format!("{socket_peer} holds too many connections waiting for their header");
                return (Outcome::BadHeader, Some(why));
            };
            let header = proxy::read_header(&self.stream, socket_peer, config.header_timeout);
            drop(waiting);
            match header {
                Ok(named) => {
                    client = named;
                    let mut who = self.who();
                    (who.peer, who.via) = (client, Some(socket_peer));
                }
                // Still waiting for it when the server began to stop: see Registry::cut_waiting.
                Err(_) if shared.registry.is_stopping() => return (Outcome::Shutdown, None),
                Err(reason) => return (Outcome::BadHeader, Some(reason)),
            }
        }
        let Ok(admission) = shared.limit.admit(client.ip()) else {
            let source = Source::of(client.ip());
            debug!(%source, "over --max-per-source: closed unserved");
            shared.counters.note(Outcome::Rejected, source.to_string());
            return (Outcome::Rejected, None);
        };
        self.streaming.store(true, Ordering::Release);
        let started = Instant::now();
        let poem = shared.poems.pick(self.id);
        let mut schedule = Schedule::new(pacing, started, plan.rng);
        let (mut outcome, stopped) = match self.stream_poem(shared, poem, &mut schedule, plan.fault)
        {
            Ok(stopped) => (Outcome::Complete, stopped),
            Err(err) => {
                let outcome = Outcome::of_error(&err);
                let error = (outcome == Outcome::Error).then(|| err.to_string());
                // Whatever error the cut-off caused, the cut-off is why it ended; so is a stop
                // that found the poem not yet begun, and shut the stream down as it began.
                let unbegun = self.bytes.load(Ordering::Relaxed) == 0;
                if shared.registry.is_cut_off() || (shared.registry.is_stopping() && unbegun) {
                    return (Outcome::Shutdown, None);
                }
                return (outcome, error);
            }
        };
        if let Some((fault, _)) = stopped {
            fault.play(&self.stream, config.write_timeout, || !shared.registry.is_cut_off());
            outcome = match shared.registry.is_cut_off() {
                true => Outcome::Shutdown, // cut off while it played
                false => Outcome::Fault(fault),
            };
        }
        // After the whole poem, shut the write side so the client sees EOF right after the last
        // byte; if that fails, the client is already gone. Whether anything is still in flight
        // is asked first: the FIN the shutdown queues would count as unacknowledged.
        let closes_cleanly = matches!(outcome, Outcome::Complete | Outcome::Fault(Fault::Close));
        // --close-delay: the last byte is out, and the close waits (a stop ends the wait).
        if closes_cleanly && !plan.close_delay.is_zero() {
            shared.counters.close_delayed();
            shared.registry.sleep_until(Instant::now() + plan.close_delay);
        }
        let delivered = closes_cleanly && close::nothing_in_flight(&self.stream);
        // The source's place is given back before the client can see the end, so that a client
        // that reconnects as soon as it reads EOF is never refused for the one it just finished.
        drop(admission);
        let lingering = closes_cleanly && self.stream.shutdown(Shutdown::Write).is_ok();
        // Linger unless nothing is in flight, lest a reset destroy what the client has not yet
        // received; and say so if it still might.
        if lingering && !delivered && !close::close_without_loss(&self.stream, config.linger) {
            outcome = Outcome::UncleanClose;
        }
        (outcome, None)
        // The stream is closed when the last reference goes: if the client is gone or
        // stalled, a reset is the right answer to it (and after a reset fault, the zero linger
        // sends one).
    }

    /// Sends the poem on the pacing schedule, as it was when the connection began (a file that
    /// is truncated meanwhile ends the poem early). A `fault` stops the poem after its byte
    /// count; then it is returned, to be played.
    fn stream_poem(
        &self,
        shared: &Shared,
        poem: Arc<Poem>,
        schedule: &mut Schedule,
        fault: Option<(Fault, u64)>,
    ) -> io::Result<Option<(Fault, u64)>> {
        self.who().poem = Some((Arc::clone(&poem), 0));
        let opened = self.open(shared, &poem)?;
        let size = opened.size()?;
        let pacing = &self.behaviour.pacing;
        // A chunk larger than the buffer goes in several reads and writes: whatever the chunk
        // size, a connection holds at most `LARGE`, never the whole poem.
        let most = pacing.max_step().min(LARGE).min(usize::try_from(size).unwrap_or(LARGE));
        let mut buffer = vec![0; most.max(1)];
        if let Some((_, known)) = &mut self.who().poem {
            *known = size;
        }
        let stopped = fault.filter(|&(_, after)| after < size);
        let len = stopped.map_or(size, |(_, after)| after);
        let mut offset = 0;
        while offset < len {
            // Unpaced, every step is due at once; either way, the cut-off ends the poem here.
            let (due, step) = schedule.next_step();
            if !shared.registry.sleep_until(due) {
                return Err(io::Error::other("cut off"));
            }
            let (start, end) = (offset, len.min(offset + step as u64));
            while offset < end {
                // `end - offset` is at most one step, which is a usize.
                let want = (end - offset) as usize;
                match opened.send(&self.stream, &mut offset, want, &mut buffer) {
                    Ok(0) => {
                        debug!(
                            offset,
                            expected = len,
                            "poem file ended early: truncated while served?"
                        );
                        return Ok(None);
                    }
                    Ok(sent) => {
                        self.bytes.fetch_add(sent as u64, Ordering::Relaxed);
                        shared.counters.sent(sent);
                    }
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            self.chunks.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let late = now.saturating_duration_since(due);
            if pacing.is_paced() {
                shared.counters.lateness.observe(late);
            }
            let bytes = (offset - start) as usize; // at most one step
            watch::tell(&shared.config.watchers, self.id, now, Event::Chunk { bytes, late });
        }
        Ok(stopped)
    }
}

impl Connection {
    /// Opens `poem`. Out of descriptors, it waits for some to be freed, as accepting does, up to
    /// the write timeout: other connections end and give theirs back.
    fn open(&self, shared: &Shared, poem: &Poem) -> io::Result<Opened> {
        let give_up = Instant::now() + shared.config.write_timeout;
        loop {
            match poem.open() {
                Err(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    let next = Instant::now() + OPEN_BACKOFF;
                    if next > give_up || !shared.registry.sleep_until(next) {
                        return Err(err);
                    }
                }
                opened => return opened,
            }
        }
    }
}

/// A time worth logging in whole milliseconds, or `None` (no field) below one.
fn millis(time: Duration) -> Option<u64> {
    Some(time.as_millis() as u64).filter(|&ms| ms > 0)
}

/// Out of descriptors, how long to wait before trying to open a poem again.
const OPEN_BACKOFF: Duration = Duration::from_millis(100);

/// Sets the socket options a connection streams with.
fn set_options(stream: &TcpStream, timeout: Duration, pacing: &Pacing) -> io::Result<()> {
    let socket = SockRef::from(stream);
    socket.set_write_timeout(Some(timeout))?;
    // A client that vanishes without a reset (cable pulled, NAT entry dropped) leaves paced
    // chunks unacknowledged while they still fit the socket buffer, so the write timeout never
    // fires; this makes the kernel give up on it after the same time, instead of after TCP's
    // own retransmissions (about 15 minutes).
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(timeout))?;
    // Nagle's algorithm would hold a small chunk back until the previous one is acknowledged;
    // a paced chunk must leave when it is due, as its own segment.
    if pacing.is_paced() {
        socket.set_tcp_nodelay(true)?;
    }
    Ok(())
}

/// Logs the end of a connection closed at shutdown before it was served.
pub fn log_unserved(peer: SocketAddr) {
    info!(
        peer = %peer,
        bytes = 0u64,
        chunks = 0u64,
        duration_ms = 0u64,
        outcome = Outcome::Shutdown.label(),
        "connection ended"
    );
}

/// How long [`serve`] may take to log the end of a connection once it is cut off; only a
/// bound, since a cut connection ends at once.
pub const CUT_OFF_WAIT: Duration = Duration::from_secs(2);

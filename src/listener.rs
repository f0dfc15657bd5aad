//! The listening sockets: bound with the options the server needs, and accepted from by every
//! free worker at once, with a close that wakes every worker waiting on them.
//!
//! With one socket (the usual case) each free worker blocks in `accept` on it, as a bare
//! thread-per-client server does: the kernel hands each new connection to one waiting worker,
//! and no thread stands between the backlog and the worker that serves it. With several
//! (`--iface` given more than once, or a host name with several addresses) the sockets are
//! non-blocking and the free workers wait on one epoll instance that watches them all, which
//! wakes one worker per ready socket. Why not one accept thread handing connections over, and
//! why a signal wakes the blocked workers: see [docs/design.md](../docs/design.md), "The
//! listeners".

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::sys;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). std's `TcpListener::bind` asks for 128, which a burst of clients overflows.
pub const BACKLOG: i32 = 4096;

/// Every socket the server listens on (never none until closed), and what wakes the workers
/// waiting on them.
pub struct Listeners {
    /// Read-locked by each worker while it accepts, write-locked by [`Listeners::close`] once
    /// every worker has been woken: so the sockets close when none is in use.
    sockets: RwLock<Vec<TcpListener>>,
    closed: AtomicBool,
    woken: UnixStream,
    waker: Waker,
    /// With several sockets, what the workers wait on: each socket (its index as the token)
    /// and the wake-up (`WOKEN`).
    poller: Option<sys::Poller>,
    /// For each worker, its thread while it is blocked in `accept` on the one socket, else 0:
    /// whom [`Listeners::close`] must interrupt.
    waiting: Box<[AtomicU64]>,
    /// Out of descriptors, the one worker that goes on trying to accept while the others wait
    /// for it to succeed (see [`Listeners::starve`]); `starved` says whether there is one.
    prober: Mutex<Option<usize>>,
    starved: AtomicBool,
    fed: Condvar,
}

/// The poller's token for the wake-up.
const WOKEN: u64 = u64::MAX;

/// How long [`Listeners::close`] lets the workers it interrupted leave `accept` before it
/// interrupts those still there again (one may have been about to enter it).
const INTERRUPT_AGAIN: Duration = Duration::from_millis(2);

/// Ends every wait on the listeners, from any thread: [`Listeners::sleep`] and the workers'
/// waits on several sockets at once, and (through [`Listeners::close`]) every accept.
#[derive(Clone)]
pub struct Waker(Arc<UnixStream>);

impl Waker {
    /// Makes [`Listeners::sleep`] return, now and from then on.
    pub fn wake(&self) {
        // One byte is enough, and it is never read; a full buffer means one is there already.
        let _ = (&*self.0).write(&[1]);
    }
}

/// Binds every address in `addrs` and listens with `backlog`.
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections linger in TIME_WAIT; it
/// does not let two servers listen on one port. `reuse_port` sets `SO_REUSEPORT`, which does:
/// the kernel spreads new connections among every process that sets it. An unspecified IPv6
/// address (`::`) accepts IPv4 clients too, unless an IPv4 address is listened on as well.
///
/// Port 0 picks a free port for one address, and the others listen on the same one. Should one
/// of them have that port taken, it starts again, another address picking the port: the
/// kernel picks ports one address at a time, so the one with fewest free ports picks best.
pub fn bind(
    addrs: &[SocketAddr],
    reuse_port: bool,
    backlog: i32,
) -> anyhow::Result<Vec<TcpListener>> {
    let picked = addrs.len() > 1 && addrs.iter().any(|addr| addr.port() == 0);
    let attempts = if picked { 4 * addrs.len() } else { 1 };
    let mut attempt = 0;
    loop {
        match bind_all(addrs, attempt % addrs.len(), reuse_port, backlog) {
            Err(err) if attempt + 1 < attempts && in_use(&err) => attempt += 1,
            bound => return bound,
        }
    }
}

/// Binds `addrs`, beginning with the one at `first`, into sockets in the order of `addrs`.
fn bind_all(
    addrs: &[SocketAddr],
    first: usize,
    reuse_port: bool,
    backlog: i32,
) -> anyhow::Result<Vec<TcpListener>> {
    let dual_stack = !addrs.iter().any(SocketAddr::is_ipv4);
    let mut sockets: Vec<Option<TcpListener>> = addrs.iter().map(|_| None).collect();
    let mut picked = None;
    for at in (first..addrs.len()).chain(0..first) {
        let mut addr = addrs[at];
        if let (0, Some(port)) = (addr.port(), picked) {
            addr.set_port(port);
        }
        let socket = bind_one(addr, reuse_port, dual_stack, backlog)
            .with_context(|| format!("cannot listen on {addr}"))?;
        picked = picked.or(Some(socket.local_addr()?.port()));
        sockets[at] = Some(socket);
    }
    Ok(sockets.into_iter().flatten().collect())
}

/// Whether `err` says the address was in use.
fn in_use(err: &anyhow::Error) -> bool {
    let io = err.downcast_ref::<io::Error>();
    io.is_some_and(|err| err.kind() == ErrorKind::AddrInUse)
}

/// Binds `addr` and listens with `backlog`; `dual_stack` lets a lone `::` take IPv4 too.
pub fn bind_one(
    addr: SocketAddr,
    reuse_port: bool,
    dual_stack: bool,
    backlog: i32,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

impl Listeners {
    /// Takes `sockets` (bound and listening) for `workers` workers to accept from.
    pub fn new(sockets: Vec<TcpListener>, workers: usize) -> io::Result<Listeners> {
        let (woken, waker) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        let poller = match sockets.len() {
            1 => {
                // Handed over by systemd, it may be non-blocking.
                sockets[0].set_nonblocking(false)?;
                sys::prepare_interrupts()?;
                None
            }
            _ => {
                let poller = sys::Poller::new()?;
                for (at, socket) in sockets.iter().enumerate() {
                    socket.set_nonblocking(true)?;
                    poller.add(socket.as_fd(), at as u64)?;
                }
                poller.add(woken.as_fd(), WOKEN)?;
                Some(poller)
            }
        };
        Ok(Listeners {
            sockets: RwLock::new(sockets),
            closed: AtomicBool::new(false),
            woken,
            waker: Waker(Arc::new(waker)),
            poller,
            waiting: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            prober: Mutex::new(None),
            starved: AtomicBool::new(false),
            fed: Condvar::new(),
        })
    }

    /// What ends a [`Listeners::sleep`].
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// A second handle on each socket, to read its backlog from; while any is open, the socket
    /// listens.
    pub fn clones(&self) -> io::Result<Vec<TcpListener>> {
        self.sockets().iter().map(TcpListener::try_clone).collect()
    }

    /// Where each socket listens, with the real port.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets().iter().map(TcpListener::local_addr).collect()
    }

    fn sockets(&self) -> std::sync::RwLockReadGuard<'_, Vec<TcpListener>> {
        // Nothing panics while it is held.
        self.sockets.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts the next connection on any socket for `worker`, waiting for one; `None` once
    /// closed. Many workers call it at once. Out of descriptors, one of them gets the error, to
    /// report it and pause before it tries again; the others wait until it succeeds.
    pub fn accept(&self, worker: usize) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        let sockets = self.sockets();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            if self.starved.load(Ordering::Acquire) && !self.probes(worker) {
                self.wait_for_descriptors();
                continue;
            }
            let accepted = match (&self.poller, &sockets[..]) {
                (None, [socket]) => self.accept_one(worker, socket),
                (Some(poller), _) => match poller.wait()? {
                    WOKEN => return Ok(None),
                    at => accept(&sockets[at as usize]),
                },
                (None, _) => return Ok(None), // closed
            };
            match accepted {
                Ok(accepted) => {
                    if self.starved.load(Ordering::Acquire) {
                        self.fed(worker);
                    }
                    return Ok(Some(accepted));
                }
                // Interrupted by the close or by a starving worker, or another worker took
                // what the poller saw.
                Err(err)
                    if matches!(err.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
                Err(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if self.starve(worker) {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A blocking accept on the one socket, marked in `waiting` so that it can be interrupted.
    fn accept_one(
        &self,
        worker: usize,
        socket: &TcpListener,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        thread_local!(static READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !READY.get() {
            sys::accept_interrupts();
            READY.set(true);
        }
        let waiting = &self.waiting[worker];
        waiting.store(sys::this_thread(), Ordering::SeqCst);
        // Checked after the mark: whoever set them before interrupts this worker.
        let stop = self.closed.load(Ordering::SeqCst)
            || (self.starved.load(Ordering::SeqCst) && !self.probes(worker));
        let accepted = match stop {
            true => Err(ErrorKind::Interrupted.into()),
            false => accept(socket),
        };
        waiting.store(0, Ordering::SeqCst);
        accepted
    }

    fn prober(&self) -> MutexGuard<'_, Option<usize>> {
        // Nothing panics while it is held.
        self.prober.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn probes(&self, worker: usize) -> bool {
        *self.prober() == Some(worker)
    }

    /// Out of descriptors (`worker`'s accept failed for want of one): from now on only one
    /// worker tries to accept, and the others wait until it succeeds. A worker blocked in
    /// `accept` holds a descriptor number the whole time (the kernel takes one before it
    /// waits), so they are interrupted to give theirs back: what else the process does (the
    /// metrics listener, a reload) then finds one free once a connection ends. Returns whether
    /// `worker` is the one that tries.
    fn starve(&self, worker: usize) -> bool {
        let probes = {
            let mut prober = self.prober();
            self.starved.store(true, Ordering::SeqCst);
            *prober.get_or_insert(worker) == worker
        };
        self.interrupt_waiting();
        probes
    }

    /// The prober's accept succeeded: every worker may accept again.
    fn fed(&self, worker: usize) {
        let mut prober = self.prober();
        if *prober == Some(worker) {
            *prober = None;
            self.starved.store(false, Ordering::SeqCst);
            self.fed.notify_all();
        }
    }

    /// Waits until the prober has accepted a connection, or the listeners close.
    fn wait_for_descriptors(&self) {
        let mut prober = self.prober();
        while prober.is_some() && !self.closed.load(Ordering::SeqCst) {
            prober = self.fed.wait(prober).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Interrupts every worker blocked in `accept` until none is. One marked as waiting may
    /// not have entered accept yet when interrupted, and would then block in it: so again, as
    /// long as one is marked. Whoever calls this has made them stop (closed, or starved) first.
    fn interrupt_waiting(&self) {
        loop {
            let mut marked = 0;
            for thread in self.waiting.iter().map(|w| w.load(Ordering::SeqCst)) {
                if thread != 0 {
                    sys::interrupt(thread);
                    marked += 1;
                }
            }
            if marked == 0 {
                return;
            }
            std::thread::sleep(INTERRUPT_AGAIN);
        }
    }

    /// Sleeps for `time` (or until woken, with `None`); returns false if woken first.
    pub fn sleep(&self, time: Option<Duration>) -> bool {
        let until = time.map(|time| std::time::Instant::now() + time);
        loop {
            // A signal handled on this thread interrupts the wait; it is no wake-up.
            let left =
                until.map(|until| until.saturating_duration_since(std::time::Instant::now()));
            match sys::wait_readable(self.woken.as_fd(), left) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                woken => return !woken.unwrap_or(false),
            }
        }
    }

    /// Stops every accept for good: wakes every worker waiting on the sockets, waits until none
    /// uses them, accepts what is still in the backlogs, handing each connection to `unserved`
    /// before the next (so that a backlog larger than the open-file limit is taken whole), and
    /// closes the sockets. Once only: later calls do nothing.
    pub fn close(&self, mut unserved: impl FnMut(TcpStream, SocketAddr)) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.waker.wake();
        drop(self.prober()); // so that no worker checks `closed` between this and its wait
        self.fed.notify_all();
        self.interrupt_waiting();
        let mut sockets = self.sockets.write().unwrap_or_else(PoisonError::into_inner);
        for socket in sockets.iter() {
            if socket.set_nonblocking(true).is_err() {
                continue;
            }
            loop {
                match accept(socket) {
                    Ok((stream, peer)) => unserved(stream, peer),
                    Err(err) if client_left(&err) => {}
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => {
                        // Out of descriptors, say: what is left is reset as the socket closes.
                        let left = sys::backlog(socket).map_or(0, |(queued, _)| queued);
                        let what = "cannot take the rest of the backlog at the stop";
                        warn!(error = %err, left, "{what}");
                        break;
                    }
                }
            }
        }
        sockets.clear(); // closed: from now on, connects are refused
    }
}

/// Whether a failed `accept` failed for one connection's sake (its client gave up, or its
/// network went away, which Linux reports here: see accept(2)) or for a signal's: the next
/// accept may well succeed.
pub fn client_left(err: &io::Error) -> bool {
    let kind = err.kind();
    matches!(
        kind,
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(
        err.raw_os_error(),
        Some(
            libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Accepts one connection from `socket`: a blocking one on Linux whatever the socket's mode,
/// with no call to make it so; an `EINTR` is returned, not retried (std retries it).
fn accept(socket: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = socket2::SockRef::from(socket).accept()?;
    let peer = peer.as_socket().ok_or_else(|| io::Error::other("a peer that is not IP"))?;
    // An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d; it is a.b.c.d.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    #[cfg(not(target_os = "linux"))]
    stream.set_nonblocking(false)?; // elsewhere it may inherit the listener's O_NONBLOCK
    Ok((stream.into(), peer))
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn listeners(addrs: &[&str], workers: usize) -> Listeners {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        Listeners::new(bind(&addrs, false, 16).unwrap(), workers).unwrap()
    }

    /// A signal handled on the sleeping thread (which interrupts its wait) does not end the
    /// sleep early: only the time, or a wake-up, does.
    #[test]
    fn a_signal_does_not_cut_a_sleep_short() {
        let listeners = listeners(&["127.0.0.1:0"], 1);
        sys::prepare_interrupts().unwrap();
        let (mark, marked) = std::sync::mpsc::channel();
        thread::scope(|scope| {
            let sleeper = scope.spawn(|| {
                sys::accept_interrupts();
                mark.send(sys::this_thread()).unwrap();
                let started = Instant::now();
                (listeners.sleep(Some(Duration::from_millis(600))), started.elapsed())
            });
            let thread = marked.recv_timeout(LIMIT).unwrap();
            for _ in 0..5 {
                thread::sleep(Duration::from_millis(50));
                sys::interrupt(thread);
            }
            let (timed_out, slept) = sleeper.join().unwrap();
            assert!(timed_out, "a signal counted as a wake-up");
            assert!(slept >= Duration::from_millis(600), "cut short after {slept:?}");
        });
    }

    /// Workers take connections from every socket; a close ends every wait, whether workers
    /// block in accept on one socket or wait on several, and then connects are refused.
    #[test]
    fn a_close_ends_every_wait() {
        for addrs in [&["127.0.0.1:0"][..], &["127.0.0.1:0", "[::1]:0"]] {
            let listeners = listeners(addrs, 3);
            let local = listeners.local_addrs().unwrap();
            for addr in &local {
                let _client = TcpStream::connect(addr).unwrap();
                let (_, peer) = listeners.accept(0).unwrap().expect("a connection");
                assert_eq!(peer.is_ipv4(), addr.is_ipv4());
            }
            thread::scope(|scope| {
                let listeners = &listeners;
                let workers: Vec<_> =
                    (1..3).map(|w| scope.spawn(move || listeners.accept(w).unwrap())).collect();
                // On one socket, the close must interrupt them in accept: wait until they are.
                let started = Instant::now();
                while addrs.len() == 1
                    && listeners.waiting[1..].iter().any(|w| w.load(Ordering::SeqCst) == 0)
                {
                    assert!(started.elapsed() < LIMIT, "the workers never waited");
                    thread::sleep(Duration::from_millis(1));
                }
                listeners.close(|_, peer| panic!("{peer} was waiting in the backlog"));
                for worker in workers {
                    assert!(worker.join().unwrap().is_none(), "a connection after the close");
                }
            });
            assert!(listeners.accept(0).unwrap().is_none());
            for addr in local {
                let err = TcpStream::connect(addr).expect_err("refused once closed");
                assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
            }
        }
    }

    /// What waits in the backlog when the listeners close is handed back, to be closed
    /// unserved.
    #[test]
    fn a_close_hands_back_the_backlog() {
        let listeners = listeners(&["127.0.0.1:0"], 1);
        let addr = listeners.local_addrs().unwrap()[0];
        let clients: Vec<_> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut left = Vec::new();
        listeners.close(|_, peer| left.push(peer.port()));
        let mut ports: Vec<u16> = clients.iter().map(|c| c.local_addr().unwrap().port()).collect();
        left.sort();
        ports.sort();
        assert_eq!(left, ports);
    }
}

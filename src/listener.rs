//! The listening sockets: bound with the options the server needs, and accepted from as one,
//! with a wake-up that ends a wait for the next connection.
//!
//! Usually there is one socket. With several (`--iface` given more than once, or a host name
//! with several addresses) the one accept loop waits on all of them with `poll` and accepts
//! from whichever is ready, so the design stays one accept loop feeding one pool. The sockets
//! are non-blocking: a burst of connections is accepted one `accept` call each, and only when
//! none is waiting does the loop sleep in `poll`, beside the wake-up's socket.

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). std's `TcpListener::bind` asks for 128, which a burst of clients overflows.
pub const BACKLOG: i32 = 4096;

/// Every socket the server listens on (never none), and the wake-up's receiving end.
pub struct Listeners {
    sockets: Vec<TcpListener>,
    woken: UnixStream,
    waker: Waker,
    /// The socket that last had a connection, tried first.
    next: std::cell::Cell<usize>,
}

/// Ends the accept loop's wait for a connection, from any thread.
#[derive(Clone)]
pub struct Waker(Arc<UnixStream>);

impl Waker {
    /// Makes [`Listeners::accept`] return `None`, now and from then on.
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
    /// Takes `sockets` (bound and listening) to accept from.
    pub fn new(sockets: Vec<TcpListener>) -> io::Result<Listeners> {
        for socket in &sockets {
            socket.set_nonblocking(true)?;
        }
        let (woken, waker) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        Ok(Listeners {
            sockets,
            woken,
            waker: Waker(Arc::new(waker)),
            next: std::cell::Cell::new(0),
        })
    }

    /// What ends a wait in [`Listeners::accept`].
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// A second handle on each socket, to read its backlog from; while any is open, the socket
    /// listens.
    pub fn clones(&self) -> io::Result<Vec<TcpListener>> {
        self.sockets.iter().map(TcpListener::try_clone).collect()
    }

    /// Where each socket listens, with the real port.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(TcpListener::local_addr).collect()
    }

    /// Accepts the next connection on any socket, waiting for one; `None` once woken.
    pub fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        loop {
            if let Some(accepted) = self.try_accept()? {
                return Ok(Some(accepted));
            }
            let mut fds = vec![self.woken.as_fd()];
            fds.extend(self.sockets.iter().map(|socket| socket.as_fd()));
            if sys::wait_readable(&fds, None)?[0] {
                return Ok(None);
            }
        }
    }

    /// Sleeps for `time` (or until woken, with `None`); returns false if woken first.
    pub fn sleep(&self, time: Option<std::time::Duration>) -> bool {
        let woken = sys::wait_readable(&[self.woken.as_fd()], time);
        !woken.is_ok_and(|ready| ready[0])
    }

    /// Accepts a connection waiting on any socket, without waiting for one.
    pub fn try_accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        let count = self.sockets.len();
        for turn in 0..count {
            let at = (self.next.get() + turn) % count;
            match self.sockets[at].accept() {
                Ok((stream, peer)) => {
                    self.next.set(at);
                    // The worker's writes block, with a timeout; some systems pass the
                    // listener's O_NONBLOCK on to the sockets it accepts.
                    stream.set_nonblocking(false)?;
                    return Ok(Some((stream, peer)));
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// A wait for a connection ends when woken, and every later one at once; connections come
    /// from every socket.
    #[test]
    fn accept_takes_every_socket_and_ends_when_woken() {
        let addrs = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let listeners = Listeners::new(bind(&addrs, false, 16).unwrap()).unwrap();
        for addr in listeners.local_addrs().unwrap() {
            let _client = TcpStream::connect(addr).unwrap();
            let (_, peer) = listeners.accept().unwrap().expect("a connection");
            assert_eq!(peer.is_ipv4(), addr.is_ipv4());
        }
        let waker = listeners.waker();
        let woken = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        assert!(listeners.accept().unwrap().is_none());
        assert!(listeners.accept().unwrap().is_none());
        woken.join().unwrap();
    }
}

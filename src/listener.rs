//! The listening sockets: bound with the options the server needs, and accepted from as one.
//!
//! Usually there is one. With several (`--iface` given more than once, or a host name with
//! several addresses) the one accept loop waits on all of them with `poll` and accepts from
//! whichever is ready, so the design stays one accept loop feeding one pool.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use crate::sys;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). std's `TcpListener::bind` asks for 128.
pub const BACKLOG: i32 = 4096;

/// Every socket the server listens on; never empty.
pub struct Listeners {
    sockets: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address in `addrs` and starts listening with [`BACKLOG`].
    ///
    /// `SO_REUSEADDR` is set so that a restarted server can bind while old connections linger
    /// in TIME_WAIT; it does not let two servers listen on one port. `reuse_port` sets
    /// `SO_REUSEPORT`, which does: every process that sets it may listen on the port, and the
    /// kernel spreads new connections among them. An unspecified IPv6 address (`::`) accepts
    /// IPv4 clients too, unless an IPv4 address is listened on as well. Port 0 picks a free
    /// port for the first address, and the others listen on the same one.
    pub fn bind(addrs: &[SocketAddr], reuse_port: bool) -> anyhow::Result<Listeners> {
        let dual_stack = !addrs.iter().any(SocketAddr::is_ipv4);
        let mut sockets: Vec<TcpListener> = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let mut addr = addr;
            if addr.port() == 0
                && let Some(first) = sockets.first()
            {
                addr.set_port(first.local_addr()?.port());
            }
            let socket = bind(addr, reuse_port, dual_stack)
                .with_context(|| format!("cannot listen on {addr}"))?;
            sockets.push(socket);
        }
        if sockets.len() > 1 {
            for socket in &sockets {
                // Readiness seen by poll can be gone by the time of accept; never block there.
                socket.set_nonblocking(true)?;
            }
        }
        Ok(Listeners { sockets })
    }

    /// Takes over sockets already listening (from systemd's socket activation).
    pub fn inherited(sockets: Vec<TcpListener>) -> io::Result<Listeners> {
        let several = sockets.len() > 1;
        for socket in &sockets {
            // One socket is accepted from blocking; several are polled (systemd's
            // NonBlocking= may have set either).
            socket.set_nonblocking(several)?;
        }
        Ok(Listeners { sockets })
    }

    /// The sockets, in the order of the addresses given.
    pub fn sockets(&self) -> &[TcpListener] {
        &self.sockets
    }

    /// Where each socket listens, with the real port.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(TcpListener::local_addr).collect()
    }

    /// Waits for a connection on any socket and accepts it.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let [only] = &self.sockets[..] else {
            return self.accept_any();
        };
        only.accept()
    }

    fn accept_any(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // The descriptors stay open while `self` is borrowed.
        let fds: Vec<_> = self
            .sockets
            .iter()
            .map(|socket| socket.as_raw_fd())
            .collect();
        loop {
            let ready = sys::wait_readable(&fds)?;
            for (socket, ready) in self.sockets.iter().zip(ready) {
                // A socket shut down at shutdown reports POLLHUP; accept then fails at once.
                if ready {
                    match socket.accept() {
                        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                        Ok((stream, peer)) => {
                            // Accepted sockets do not inherit O_NONBLOCK on Linux, but may
                            // elsewhere; the workers' writes must block.
                            stream.set_nonblocking(false)?;
                            return Ok((stream, peer));
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        }
    }
}

/// Binds `addr` and listens with [`BACKLOG`]; `dual_stack` lets a lone `::` take IPv4 too.
/// The caller says what the socket is for in the error.
pub fn bind(addr: SocketAddr, reuse_port: bool, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

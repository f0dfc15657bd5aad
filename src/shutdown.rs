//! Shutdown, in one place: the one type that the signal thread, the accept loop and the pool
//! share to stop taking new connections.
//!
//! The first SIGINT or SIGTERM calls [`Shutdown::begin`]. That sets a flag, which the accept
//! loop checks after every `accept` and the pool checks while it waits for room in a full
//! queue, and it wakes the accept loop if it is blocked in `accept`: on Linux by shutting
//! down the listening socket itself, which makes a blocked `accept` fail at once. That only
//! touches this process's socket, so it works whatever else listens on the port (several
//! `--reuse-port` instances, say); connecting to ourselves instead could be answered by any
//! of them. The grace period and the final report follow in [`crate::server::run`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::Socket;

/// A handle on the server's shutdown; clones share it.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    begun: AtomicBool,
    /// A second descriptor for the listening socket, shut down to wake a blocked `accept`.
    listener: Socket,
    /// Where the listener listens, for the fallback wake-up on systems where shutting down a
    /// listening socket does not wake `accept`.
    listening: SocketAddr,
}

impl Shutdown {
    /// A shutdown not yet begun, able to wake an `accept` blocked on `listener`.
    pub fn new(listener: &TcpListener) -> io::Result<Shutdown> {
        Ok(Shutdown {
            inner: Arc::new(Inner {
                begun: AtomicBool::new(false),
                listening: listener.local_addr()?,
                listener: Socket::from(listener.try_clone()?),
            }),
        })
    }

    /// Stops new connections: from now on the accept loop ends, and a wait for room in the
    /// pool's queue gives up. Connections already accepted carry on.
    pub fn begin(&self) {
        self.inner.begun.store(true, Ordering::Release);
        // Linux wakes every `accept` on a listening socket that is shut down, and stops
        // queueing connections on it. Elsewhere, connect once to our own address.
        if self
            .inner
            .listener
            .shutdown(std::net::Shutdown::Read)
            .is_err()
        {
            wake_by_connecting(self.inner.listening);
        }
    }

    /// Whether [`Shutdown::begin`] has been called.
    pub fn has_begun(&self) -> bool {
        self.inner.begun.load(Ordering::Acquire)
    }
}

/// Connects to the listener once so that a blocked `accept` returns. Failure is harmless: the
/// accept loop may not be in `accept` at all.
fn wake_by_connecting(listening: SocketAddr) {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(
        &SocketAddr::new(ip, listening.port()),
        Duration::from_secs(1),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// Beginning a shutdown wakes a thread blocked in `accept` on the listener.
    #[test]
    fn begin_wakes_a_blocked_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new(&listener).unwrap();
        let (done_tx, done) = mpsc::channel();
        let acceptor = thread::spawn(move || {
            let accepted = listener.accept().is_ok();
            done_tx.send(accepted).unwrap();
        });
        assert!(
            done.recv_timeout(Duration::from_millis(100)).is_err(),
            "nothing connected, so accept must still be blocked"
        );
        assert!(!shutdown.has_begun());
        shutdown.begin();
        let accepted = done
            .recv_timeout(Duration::from_secs(10))
            .expect("accept must return once shutdown begins");
        assert!(!accepted, "the wake-up is an error, not a connection");
        assert!(shutdown.has_begun());
        acceptor.join().unwrap();
    }
}

//! Shutdown, in one place: the one type that the signal thread, the accept loop, the pool
//! and every connection share.
//!
//! It has two steps. The first SIGINT or SIGTERM calls [`Shutdown::begin`]: no new
//! connections. That sets a flag, which the accept loop checks after every `accept` and the
//! pool checks while it waits for room in a full queue, and it wakes the accept loop if it is
//! blocked in `accept`: on Linux by shutting down the listening socket itself, which makes a
//! blocked `accept` fail at once. That only touches this process's socket, so it works
//! whatever else listens on the port (several `--reuse-port` instances, say); connecting to
//! ourselves instead could be answered by any of them.
//!
//! When the grace period runs out, [`Shutdown::cut_off`] ends the connections still
//! streaming: every connection is [tracked](Shutdown::track) while it is served, so the cut
//! can wake a worker sleeping between chunks and shut down a socket that a worker is blocked
//! writing to. Each connection then ends, and is logged, like any other.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::sys;

/// A handle on the server's shutdown; clones share it.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    begun: AtomicBool,
    /// A second descriptor for each listening socket, shut down to wake a blocked `accept`,
    /// with where it listens, for the fallback wake-up on systems where shutting down a
    /// listening socket does not wake `accept`.
    listeners: Vec<(Socket, SocketAddr)>,
    cut_off: AtomicBool,
    /// The sockets being served now, by descriptor, with the thread serving each. A socket is
    /// removed before it is closed, and the cut holds this lock while it shuts sockets down,
    /// so it never touches a descriptor that has been closed and reused.
    serving: Mutex<HashMap<RawFd, Thread>>,
}

/// A connection registered with [`Shutdown::track`], until dropped.
pub struct Tracked<'a> {
    shutdown: &'a Shutdown,
    fd: RawFd,
}

impl Shutdown {
    /// A shutdown not yet begun, able to wake an `accept` blocked on any of `listeners`.
    pub fn new(listeners: &[TcpListener]) -> io::Result<Shutdown> {
        let listeners = listeners
            .iter()
            .map(|l| Ok((Socket::from(l.try_clone()?), l.local_addr()?)))
            .collect::<io::Result<_>>()?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                begun: AtomicBool::new(false),
                listeners,
                cut_off: AtomicBool::new(false),
                serving: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Stops new connections: from now on the accept loop ends, and a wait for room in the
    /// pool's queue gives up. Connections already accepted carry on.
    pub fn begin(&self) {
        self.inner.begun.store(true, Ordering::Release);
        // Linux wakes every `accept` on a listening socket that is shut down, and stops
        // queueing connections on it. Elsewhere, connect once to our own address.
        for (listener, listening) in &self.inner.listeners {
            if listener.shutdown(std::net::Shutdown::Read).is_err() {
                wake_by_connecting(*listening);
            }
        }
    }

    /// Whether [`Shutdown::begin`] has been called.
    pub fn has_begun(&self) -> bool {
        self.inner.begun.load(Ordering::Acquire)
    }

    /// Registers `stream`, served by the calling thread, so that a cut can end it. Keep the
    /// result while the stream is open; drop it before closing the stream.
    pub fn track(&self, stream: &TcpStream) -> Tracked<'_> {
        let fd = stream.as_raw_fd();
        self.serving().insert(fd, thread::current());
        Tracked { shutdown: self, fd }
    }

    /// Ends every tracked connection now: sleeping workers wake, blocked writes fail, and
    /// from now on [`Shutdown::is_cut_off`] is true.
    pub fn cut_off(&self) {
        self.inner.cut_off.store(true, Ordering::Release);
        for (&fd, thread) in self.serving().iter() {
            // `fd` is open: it is removed from the map, under this lock, before its stream is
            // closed.
            sys::shut_down(fd);
            thread.unpark();
        }
    }

    /// Whether the grace period is over and connections must end.
    pub fn is_cut_off(&self) -> bool {
        self.inner.cut_off.load(Ordering::Acquire)
    }

    /// Sleeps until `due`, or until the cut if that comes first. Returns whether `due` was
    /// reached, that is, false once cut off.
    pub fn sleep_until(&self, due: Instant) -> bool {
        loop {
            if self.is_cut_off() {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            // May wake early (an unpark, or spuriously): the loop checks again.
            thread::park_timeout(due - now);
        }
    }

    fn serving(&self) -> MutexGuard<'_, HashMap<RawFd, Thread>> {
        // Nothing panics while the lock is held, so it cannot be poisoned; if it were, the
        // map is still consistent.
        self.inner
            .serving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.shutdown.serving().remove(&self.fd);
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
        let shutdown = Shutdown::new(std::slice::from_ref(&listener)).unwrap();
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

    /// The cut wakes a worker sleeping until a far deadline, and fails a blocked write.
    #[test]
    fn cut_off_wakes_sleepers_and_blocked_writers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new(std::slice::from_ref(&listener)).unwrap();
        let (done_tx, done) = mpsc::channel();
        let mut clients = Vec::new();
        for writes in [false, true] {
            clients.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            let (served, _) = listener.accept().unwrap();
            let (shutdown, done_tx) = (shutdown.clone(), done_tx.clone());
            thread::spawn(move || {
                let _tracked = shutdown.track(&served);
                let ended = if writes {
                    // The client never reads, so this blocks until the cut shuts the socket.
                    let wrote = io::copy(&mut io::repeat(b'x'), &mut &served);
                    format!("write failed: {}", wrote.is_err())
                } else {
                    let far = Instant::now() + Duration::from_secs(3600);
                    format!("slept to the end: {}", shutdown.sleep_until(far))
                };
                done_tx.send(ended).unwrap();
            });
        }
        assert!(done.recv_timeout(Duration::from_millis(200)).is_err());
        shutdown.cut_off();
        let mut ended: Vec<String> = (0..2)
            .map(|_| {
                done.recv_timeout(Duration::from_secs(10))
                    .expect("the cut must end the sleep and the write")
            })
            .collect();
        ended.sort();
        assert_eq!(ended, ["slept to the end: false", "write failed: true"]);
        let started = Instant::now();
        while !shutdown.serving().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "still tracked");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

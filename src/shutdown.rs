//! Signals and shutdown.
//!
//! The first SIGINT or SIGTERM closes the worker pool's queue, which is what the accept loop
//! watches: it stops, the listener is dropped, and the workers finish what they hold. Because
//! the accept loop may be blocked in `accept`, the signal thread then wakes it by connecting to
//! the listener once. A second signal ends the process at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::signal_name;
use tracing::{info, warn};

use crate::pool::Closer;

/// SIGINT and SIGTERM, caught from the moment this is created.
#[derive(Debug)]
pub struct Shutdown {
    signals: Signals,
}

impl Shutdown {
    /// Starts catching SIGINT and SIGTERM. Register early: until then they kill the process.
    pub fn register() -> io::Result<Shutdown> {
        Ok(Shutdown {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Hands the signals to a thread of their own, which on the first one closes the pool's
    /// queue with `closer` and wakes a blocked `accept` by connecting to `listening`.
    pub fn watch(self, listening: SocketAddr, closer: Closer) -> io::Result<()> {
        let mut signals = self.signals;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut closer = Some(closer);
                for signal in signals.forever() {
                    let name = signal_name(signal).unwrap_or("signal");
                    if let Some(closer) = closer.take() {
                        info!(
                            signal = name,
                            "shutting down: no new connections (signal again to exit now)"
                        );
                        closer.close();
                        wake(listening);
                    } else {
                        warn!(signal = name, "second signal: exiting now");
                        process::exit(128 + signal);
                    }
                }
            })?;
        Ok(())
    }
}

/// Connects to the listener once so that a blocked `accept` returns. Failure is harmless: the
/// accept loop may not be in `accept` at all (waiting for room in a full queue, it is woken by
/// the queue closing).
fn wake(listening: SocketAddr) {
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

//! Signals and shutdown.
//!
//! The first SIGINT or SIGTERM drops the sending side of a channel: every holder of the
//! receiving side, the accept loop above all, sees it disconnect and stops. Because the accept
//! loop may be blocked in `accept`, the signal thread then wakes it by connecting to the
//! listener once. A second signal ends the process at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::low_level::signal_name;
use tracing::{info, warn};

/// SIGINT and SIGTERM, caught from the moment this is created.
#[derive(Debug)]
pub struct Shutdown {
    signals: Signals,
}

/// The receiving end of the stop channel; it disconnects when shutdown begins.
pub type Stop = Receiver<()>;

/// Whether shutdown has begun.
pub fn is_stopping(stop: &Stop) -> bool {
    matches!(stop.try_recv(), Err(TryRecvError::Disconnected))
}

impl Shutdown {
    /// Starts catching SIGINT and SIGTERM. Register early: until then they kill the process.
    pub fn register() -> io::Result<Shutdown> {
        Ok(Shutdown {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Hands the signals to a thread of their own. `listening` is the listener's address,
    /// which the thread connects to once to wake a blocked `accept`.
    pub fn watch(self, listening: SocketAddr) -> io::Result<Stop> {
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        let mut signals = self.signals;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut stop_tx = Some(stop_tx);
                for signal in signals.forever() {
                    let name = signal_name(signal).unwrap_or("signal");
                    if stop_tx.take().is_some() {
                        info!(
                            signal = name,
                            "shutting down: no new connections (signal again to exit now)"
                        );
                        wake(listening);
                    } else {
                        warn!(signal = name, "second signal: exiting now");
                        process::exit(128 + signal);
                    }
                }
            })?;
        Ok(stop)
    }
}

/// Connects to the listener once so that a blocked `accept` returns. Failure is harmless: the
/// accept loop may not be in `accept` at all (it also watches the stop channel while it waits
/// for a free worker).
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

//! Signals: shutdown (SIGINT, SIGTERM), the stats line (SIGUSR1) and reloading the poems
//! (SIGHUP), all handled by one thread of their own.
//!
//! The first SIGINT or SIGTERM closes the worker pool to new work, which is what the accept
//! loop checks: it stops, the listener is dropped, and the workers finish what they hold.
//! Because the accept loop may be blocked in `accept`, the signal thread then wakes it by
//! connecting to the listener once. A second SIGINT or SIGTERM ends the process at once.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::low_level::signal_name;
use tracing::{error, info, warn};

use crate::config::LogFormat;
use crate::connection::Context;
use crate::pool::{Closer, Load};

/// The signals poetry-serve handles, caught from the moment this is created.
pub struct Signals {
    signals: signal_hook::iterator::Signals,
}

/// What the signal thread acts on.
pub struct Server {
    /// The listener's address, connected to once to wake a blocked `accept`.
    pub listening: SocketAddr,
    /// Closes the pool to new work, which stops the accept loop.
    pub closer: Closer,
    /// The poems (reloaded on SIGHUP) and the counters (reported on SIGUSR1).
    pub ctx: Arc<Context>,
    /// The pool's load, for the stats line.
    pub load: Arc<Load>,
    /// How to write the stats line.
    pub log_format: LogFormat,
}

impl Signals {
    /// Starts catching SIGINT, SIGTERM, SIGHUP and SIGUSR1. Register early: until then the
    /// first two kill the process, and so do the others.
    pub fn register() -> io::Result<Signals> {
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        Ok(Signals { signals })
    }

    /// Hands the signals to a thread of their own, acting on `server`.
    pub fn watch(self, server: Server) -> io::Result<()> {
        let mut signals = self.signals;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut stopping = false;
                for signal in signals.forever() {
                    let name = signal_name(signal).unwrap_or("signal");
                    match signal {
                        SIGUSR1 => server.report(),
                        SIGHUP => server.reload(),
                        _ if stopping => {
                            warn!(signal = name, "second signal: exiting now");
                            process::exit(128 + signal);
                        }
                        _ => {
                            stopping = true;
                            info!(
                                signal = name,
                                "shutting down: no new connections (signal again to exit now)"
                            );
                            server.closer.close();
                            wake(server.listening);
                        }
                    }
                }
            })?;
        Ok(())
    }
}

impl Server {
    /// Writes the stats line, at any log level.
    fn report(&self) {
        let report = self.ctx.stats.report(self.load.busy(), self.load.queued());
        report.print(self.log_format);
    }

    /// Opens the poems again; on failure keeps serving the old ones.
    fn reload(&self) {
        match self.ctx.poems.reload() {
            Ok(poems) => info!(poems, "reloaded: new connections get the new poems"),
            Err(err) => {
                error!(error = %format!("{err:#}"), "reload failed; still serving the old poems")
            }
        }
    }
}

/// Connects to the listener once so that a blocked `accept` returns. Failure is harmless: the
/// accept loop may not be in `accept` at all (waiting for room in a full queue, it checks
/// whether the pool is closed every few milliseconds).
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

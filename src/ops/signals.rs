//! Signals: shutdown (SIGINT, SIGTERM), the stats line (SIGUSR1) and reloading the poems
//! (SIGHUP), all handled by one thread of their own.
//!
//! The first SIGINT or SIGTERM stops the server (see [`Handle::stop`]); a second ends the
//! process at once.

use std::io;
use std::process;
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::low_level::signal_name;
use tracing::{error, info, warn};

use super::{logging, stats, systemd};
use crate::server::Handle;

/// The signals poetry-serve handles, caught from the moment this is created.
pub struct Signals {
    signals: signal_hook::iterator::Signals,
}

impl Signals {
    /// Starts catching SIGINT, SIGTERM, SIGHUP and SIGUSR1. Register early: until then the
    /// first two kill the process, and so do the others.
    pub fn register() -> io::Result<Signals> {
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        Ok(Signals { signals })
    }

    /// Hands the signals to a thread of their own, which stops the server, reloads the poems
    /// and logs the stats line. A second SIGINT or SIGTERM exits at once.
    pub fn watch(self, handle: Handle) -> io::Result<()> {
        let mut signals = self.signals;
        thread::Builder::new().name("signals".into()).spawn(move || {
            for signal in signals.forever() {
                let name = signal_name(signal).unwrap_or("signal");
                match signal {
                    SIGUSR1 => stats::log(&handle, false),
                    SIGHUP => reload(&handle),
                    _ if handle.is_stopping() => {
                        warn!(signal = name, "second signal: exiting now");
                        logging::flush();
                        process::exit(128 + signal);
                    }
                    _ => {
                        info!(
                            signal = name,
                            "shutting down: no new connections (signal again to exit now)"
                        );
                        systemd::stopping();
                        handle.stop();
                    }
                }
            }
        })?;
        Ok(())
    }
}

/// Opens the poems again; on failure keeps serving the old ones. systemd hears of the reload
/// (RELOADING=1, then READY=1) when it listens.
fn reload(handle: &Handle) {
    systemd::reloading();
    match handle.reload() {
        Ok(poems) => info!(poems, "reloaded: new connections get the new poems"),
        Err(err) => {
            error!(error = %format!("{err:#}"), "reload failed; still serving the old poems")
        }
    }
    systemd::ready(&systemd::status(handle));
}

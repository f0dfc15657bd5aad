//! Misbehaving on purpose, for testing clients: the fault flags, what each fault does, and the
//! seeded random draws that pick the connections a fault hits and vary their pacing.
//!
//! Every connection that needs random numbers gets a generator of its own, seeded from
//! `--seed` and its number in accept order, so a run with the same seed and the same clients
//! in the same order does the same thing. Faults end only their own connection; with no fault
//! flag, nothing here runs. A new fault is a variant here, its flag here, and its field in the
//! stats line ([`crate::ops::stats`]).

use std::net::TcpStream;
use std::time::Duration;

use crate::close;
use crate::sourced::sourced;

/// A fault, played on a connection once its poem has reached the fault's byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send nothing more: hold the connection until the client gives up or the write timeout
    /// passes.
    Stall,
    /// Close cleanly, as if the poem ended there.
    Close,
    /// Once the client has the bytes, reset the connection.
    Reset,
    /// Reset the connection at once, sending nothing (its byte count is always 0).
    Refuse,
}

impl Fault {
    /// Every fault, in the order the reports show their outcomes.
    pub const ALL: [Fault; 4] = [Fault::Stall, Fault::Close, Fault::Reset, Fault::Refuse];

    /// The outcome a connection with this fault ends with, as logged and counted.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Stall => "stalled",
            Fault::Close => "cut_short",
            Fault::Reset => "reset",
            Fault::Refuse => "refused",
        }
    }

    /// Plays the fault on `stream`, whose poem has stopped at the fault's byte count. After a
    /// reset the stream must be dropped as it is: closing it sends the reset.
    pub fn play(self, stream: &TcpStream, write_timeout: Duration) {
        match self {
            Fault::Close => {}
            // Hold the connection, sending nothing; what the client sends is thrown away.
            Fault::Stall => {
                close::discard_until_closed(stream, write_timeout);
            }
            Fault::Reset => {
                // Once the client has the bytes, so that the reset is all it sees happen.
                close::wait_until_delivered(stream, write_timeout);
                close::reset_on_close(stream);
            }
            Fault::Refuse => close::reset_on_close(stream),
        }
    }
}

/// The fault flags: at most one fault, and the byte count it waits for.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "fault", multiple = false)]
#[command(next_help_heading = "Faults")]
pub struct FaultFlags {
    /// Fault: send nothing after this many bytes
    ///
    /// After this many bytes of the poem, send nothing more: hold the connection until the
    /// client gives up or --write-timeout passes (outcome stalled).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    pub stall_after: Option<u64>,

    /// Fault: close cleanly after this many bytes
    ///
    /// After this many bytes, close the connection cleanly, as if the poem ended there
    /// (outcome cut_short).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    pub close_after: Option<u64>,

    /// Fault: reset after this many bytes
    ///
    /// Once the client has this many bytes, reset the connection (RST; outcome reset).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    pub reset_after: Option<u64>,

    /// Fault: reset every connection at once
    ///
    /// Reset each connection as soon as it is accepted, sending nothing (outcome refused).
    #[arg(long, value_parser = sourced(clap::builder::BoolishValueParser::new()))]
    pub refuse: bool,
}

impl FaultFlags {
    /// The fault asked for, with its byte count; clap lets at most one through.
    pub fn fault(&self) -> Option<(Fault, u64)> {
        let after = |fault, n: Option<u64>| n.map(|n| (fault, n));
        after(Fault::Stall, self.stall_after)
            .or(after(Fault::Close, self.close_after))
            .or(after(Fault::Reset, self.reset_after))
            .or(self.refuse.then_some((Fault::Refuse, 0)))
    }
}

/// Which fault, after how many bytes, for which share of connections, and the seed of every
/// connection's generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// The fault chosen and its byte count, if any.
    pub fault: Option<(Fault, u64)>,
    /// The share of connections that get it, from 0 to 1.
    pub rate: f64,
    /// Where every connection's random numbers start; `None` for a fresh seed each run.
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults { fault: None, rate: 1.0, seed: None }
    }
}

/// What chance decided for one connection: the generator its pacing is drawn from, and its
/// fault. Empty when nothing is random.
#[derive(Default)]
pub struct Chance {
    pub rng: Option<fastrand::Rng>,
    pub fault: Option<(Fault, u64)>,
}

impl Faults {
    /// Draws what chance decides for connection number `id`. Costs nothing when no fault is
    /// asked for and the pacing does not `vary`.
    pub fn chance(&self, id: u64, varies: bool) -> Chance {
        if self.fault.is_none() && !varies {
            return Chance::default();
        }
        let mut rng = match self.seed {
            Some(seed) => seeded(seed, id),
            None => fastrand::Rng::new(),
        };
        let fault = self.fault.filter(|_| self.rate >= 1.0 || rng.f64() < self.rate);
        Chance { rng: Some(rng), fault }
    }
}

/// The generator of connection number `id` under `seed`: the same in every run. A multiplier
/// with well-spread bits keeps neighbouring connections' streams apart.
pub fn seeded(seed: u64, id: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

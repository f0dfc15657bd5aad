//! Misbehaving on purpose, for testing clients: the fault flags, what each fault does, and the
//! seeded random draws that pick the connections a fault hits and vary their pacing.
//!
//! Every connection that needs random numbers gets a generator of its own, seeded from
//! `--seed` and its number in accept order, so a run with the same seed and the same clients
//! in the same order does the same thing. Faults end only their own connection; with no fault
//! flag, nothing here runs. A new fault is a variant here, its flag here, and its field in the
//! stats line (`ops::stats`).

use std::net::TcpStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

    /// The key that names the fault, in a script as on the command line (without `--`).
    pub fn flag(self) -> &'static str {
        match self {
            Fault::Stall => "stall-after",
            Fault::Close => "close-after",
            Fault::Reset => "reset-after",
            Fault::Refuse => "refuse",
        }
    }

    /// Plays the fault on `stream`, whose poem has stopped at the fault's byte count, for as
    /// long as `go_on` says (until the server's cut-off). After a reset the stream must be
    /// dropped as it is: closing it sends the reset.
    pub fn play(self, stream: &TcpStream, write_timeout: Duration, go_on: impl Fn() -> bool) {
        match self {
            Fault::Close => {}
            // Hold the connection, sending nothing; what the client sends is thrown away.
            Fault::Stall => {
                close::discard_until_closed(stream, write_timeout);
            }
            Fault::Reset => {
                // Once the client has the bytes, so that the reset is all it sees happen.
                close::wait_until_delivered(stream, write_timeout, go_on);
                close::reset_on_close(stream);
            }
            Fault::Refuse => close::reset_on_close(stream),
        }
    }
}

/// The fault flags: at most one fault, and the byte count it waits for. A script (see
/// [`crate::script`]) names a fault with the same words: `fault = { reset-after = 100 }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize, Serialize)]
#[group(id = "fault", multiple = false)]
#[command(next_help_heading = "Faults")]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FaultFlags {
    /// Fault: send nothing after this many bytes
    ///
    /// After this many bytes of the poem, send nothing more: hold the connection until the
    /// client gives up or --write-timeout passes (outcome stalled).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<u64>,

    /// Fault: close cleanly after this many bytes
    ///
    /// After this many bytes, close the connection cleanly, as if the poem ended there
    /// (outcome cut_short).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_after: Option<u64>,

    /// Fault: reset after this many bytes
    ///
    /// Once the client has this many bytes, reset the connection (RST; outcome reset).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_after: Option<u64>,

    /// Fault: reset every connection at once
    ///
    /// Reset each connection as soon as it is accepted, sending nothing (outcome refused).
    #[arg(long, value_parser = sourced(clap::builder::BoolishValueParser::new()))]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refuse: bool,
}

impl FaultFlags {
    /// Every fault asked for, with its byte count (clap lets at most one through; a script is
    /// checked for it).
    pub fn faults(&self) -> Vec<(Fault, u64)> {
        let after = |fault, n: Option<u64>| n.map(|n| (fault, n));
        [
            after(Fault::Stall, self.stall_after),
            after(Fault::Close, self.close_after),
            after(Fault::Reset, self.reset_after),
            self.refuse.then_some((Fault::Refuse, 0)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The flags that ask for `fault`.
    pub fn of(fault: Option<(Fault, u64)>) -> FaultFlags {
        let mut flags = FaultFlags::default();
        match fault {
            Some((Fault::Stall, n)) => flags.stall_after = Some(n),
            Some((Fault::Close, n)) => flags.close_after = Some(n),
            Some((Fault::Reset, n)) => flags.reset_after = Some(n),
            Some((Fault::Refuse, _)) => flags.refuse = true,
            None => {}
        }
        flags
    }
}

/// Which fault, after how many bytes, for which share of connections, what each connection
/// named by a rule gets instead, and the seed of every connection's generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// The fault chosen and its byte count, if any.
    pub fault: Option<(Fault, u64)>,
    /// The share of connections that get it, from 0 to 1.
    pub rate: f64,
    /// Where every connection's random numbers start; `None` for a fresh seed each run.
    pub seed: Option<u64>,
    /// After the last byte, how long a connection is held before its close (a slow close).
    pub close_delay: Duration,
    /// How long each connection waits in the listen backlog before it is accepted (its
    /// client's connect succeeds at once, as the kernel completes the handshake).
    pub accept_delay: Duration,
    /// Connections named by their number, each with what it gets; the first rule that names a
    /// connection decides for it, and the rest follow the fields above.
    pub rules: Vec<Rule>,
}

/// What the connections a rule names get.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub numbers: Numbers,
    pub fault: Option<(Fault, u64)>,
    pub close_delay: Duration,
}

/// Connection numbers, counted from 1 in accept order: from `first` to `last` (or on), one in
/// `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    pub first: u64,
    pub last: Option<u64>,
    pub every: u64,
}

impl Numbers {
    /// Whether connection number `n` is one of these.
    pub fn has(&self, n: u64) -> bool {
        n >= self.first
            && self.last.is_none_or(|last| n <= last)
            && (n - self.first).is_multiple_of(self.every.max(1))
    }
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            fault: None,
            rate: 1.0,
            seed: None,
            close_delay: Duration::ZERO,
            accept_delay: Duration::ZERO,
            rules: Vec::new(),
        }
    }
}

/// What one connection gets: the generator its pacing is drawn from (when something is
/// random), its fault, and how long its close is held.
#[derive(Default)]
pub struct Plan {
    pub rng: Option<fastrand::Rng>,
    pub fault: Option<(Fault, u64)>,
    pub close_delay: Duration,
}

impl Faults {
    /// What connection `number` (from 0, in accept order since these faults came in force)
    /// gets. Costs nothing when no fault is asked for and the pacing does not `vary`.
    pub fn plan(&self, number: u64, varies: bool) -> Plan {
        let rng = || match self.seed {
            Some(seed) => seeded(seed, number),
            None => fastrand::Rng::new(),
        };
        if let Some(rule) = self.rules.iter().find(|rule| rule.numbers.has(number + 1)) {
            let rng = varies.then(rng);
            return Plan { rng, fault: rule.fault, close_delay: rule.close_delay };
        }
        let close_delay = self.close_delay;
        if self.fault.is_none() && !varies {
            return Plan { close_delay, ..Plan::default() };
        }
        let mut rng = rng();
        let fault = self.fault.filter(|_| self.rate >= 1.0 || rng.f64() < self.rate);
        Plan { rng: Some(rng), fault, close_delay }
    }

    /// Whether any connection may get a fault.
    pub fn any(&self) -> bool {
        self.fault.is_some() || self.rules.iter().any(|rule| rule.fault.is_some())
    }
}

/// The generator of connection number `id` under `seed`: the same in every run. A multiplier
/// with well-spread bits keeps neighbouring connections' streams apart.
pub fn seeded(seed: u64, id: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

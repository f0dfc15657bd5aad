//! Misbehaving on purpose, for testing clients (`--stall-after`, `--close-after`,
//! `--reset-after`, `--refuse`, with `--fault-rate`), and the random numbers that decide which
//! connections get a fault and how jitter and chunk sizes vary (`--seed` makes them
//! repeatable).
//!
//! Every connection that needs random numbers gets a generator of its own, seeded from
//! `--seed` and its number in the order connections were accepted, so a run with the same
//! seed and the same clients in the same order does the same thing. Faults end only their own
//! connection; with no fault flag, nothing here runs.

use std::net::TcpStream;
use std::time::Duration;

use tracing::debug;

use crate::close;
use crate::outcome::Outcome;

/// A fault to play on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// After this many bytes, send nothing more: hold the connection until the client gives
    /// up or `--write-timeout` passes.
    StallAfter(u64),
    /// After this many bytes, close cleanly, as if the poem ended there.
    CloseAfter(u64),
    /// After this many bytes (once the client has them), reset the connection.
    ResetAfter(u64),
    /// Reset the connection at once, sending nothing.
    Refuse,
}

impl Fault {
    /// How many poem bytes a connection with this fault gets, at most.
    pub fn byte_limit(self) -> u64 {
        match self {
            Fault::StallAfter(n) | Fault::CloseAfter(n) | Fault::ResetAfter(n) => n,
            Fault::Refuse => 0,
        }
    }

    /// Whether the accept loop plays this fault itself, before the connection takes a worker.
    pub fn at_accept(self) -> bool {
        matches!(self, Fault::Refuse)
    }

    /// Plays the fault on `stream`, whose poem has stopped at [`Fault::byte_limit`], and says
    /// how the connection ended. After a reset the stream must be dropped as it is: closing
    /// it sends the reset.
    pub fn play(self, stream: &TcpStream, write_timeout: Duration) -> Outcome {
        match self {
            Fault::CloseAfter(_) => Outcome::CutShort,
            Fault::StallAfter(_) => {
                // Hold the connection, sending nothing, until the client gives up or the
                // write timeout passes; what it sends is thrown away.
                close::discard_until_closed(stream, write_timeout);
                Outcome::Stalled
            }
            Fault::ResetAfter(_) => {
                // Once the client has the bytes, so that the reset is all it sees happen.
                close::wait_until_delivered(stream, write_timeout);
                close::reset_on_close(stream);
                Outcome::Reset
            }
            Fault::Refuse => {
                close::reset_on_close(stream);
                Outcome::Refused
            }
        }
    }
}

/// Which fault, for which share of connections, and the seed of every connection's
/// generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// The fault chosen, if any.
    pub fault: Option<Fault>,
    /// The share of connections that get it, from 0 to 1.
    pub rate: f64,
    /// Where every connection's random numbers start; `None` for a fresh seed each run.
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            fault: None,
            rate: 1.0,
            seed: None,
        }
    }
}

/// What chance decided for one connection: the generator its jitter and chunk sizes are
/// drawn from, and the fault it gets. Empty when nothing is random.
#[derive(Default)]
pub struct Chance {
    /// Where the connection's jitter and chunk sizes are drawn from, if they vary.
    pub rng: Option<fastrand::Rng>,
    /// The fault this connection gets, if any.
    pub fault: Option<Fault>,
}

impl Faults {
    /// Draws what chance decides for connection number `id`. Costs nothing when no fault is
    /// configured and nothing in the pacing `varies`.
    pub fn chance(&self, id: u64, varies: bool) -> Chance {
        if self.fault.is_none() && !varies {
            return Chance::default();
        }
        let mut rng = self.rng(id);
        let fault = self.pick(&mut rng);
        Chance {
            rng: Some(rng),
            fault,
        }
    }

    /// The random numbers of connection number `id` (counting from 0 in accept order).
    pub fn rng(&self, id: u64) -> fastrand::Rng {
        match self.seed {
            Some(seed) => seeded(seed, id),
            None => fastrand::Rng::new(),
        }
    }

    /// The fault for a connection whose generator is `rng`, if it gets one.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> Option<Fault> {
        let fault = self.fault?;
        let chosen = self.rate >= 1.0 || rng.f64() < self.rate;
        debug!(?fault, chosen, "fault drawn");
        chosen.then_some(fault)
    }
}

/// The generator of connection number `id` under `seed`: the same in every run. A multiplier
/// with well-spread bits keeps neighbouring connections' streams apart.
pub fn seeded(seed: u64, id: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives every connection the same draws, run after run; another seed or
    /// another connection draws differently.
    #[test]
    fn a_seed_makes_the_draws_repeatable() {
        let faults = Faults {
            seed: Some(42),
            ..Faults::default()
        };
        let draws = |id| -> Vec<u64> { (0..8).map(|_| faults.rng(id).u64(..)).collect() };
        assert_eq!(draws(7), draws(7));
        assert_ne!(faults.rng(7).u64(..), faults.rng(8).u64(..));
        let other = Faults {
            seed: Some(43),
            ..Faults::default()
        };
        assert_ne!(faults.rng(7).u64(..), other.rng(7).u64(..));
    }

    /// A rate of 0.3 faults about 30% of connections, and exactly the same ones each run.
    #[test]
    fn the_rate_picks_a_share_of_connections() {
        let faults = Faults {
            fault: Some(Fault::Refuse),
            rate: 0.3,
            seed: Some(1),
        };
        let picked = |faults: &Faults| -> Vec<bool> {
            (0..1000)
                .map(|id| faults.pick(&mut faults.rng(id)).is_some())
                .collect()
        };
        let first = picked(&faults);
        let count = first.iter().filter(|&&p| p).count();
        assert!((250..350).contains(&count), "{count} of 1000");
        assert_eq!(first, picked(&faults));
        assert!(Faults::default().pick(&mut fastrand::Rng::new()).is_none());
    }
}

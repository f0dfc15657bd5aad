//! How a connection ended: the one vocabulary of the log line, the counters, the stats line
//! and the metrics. Each variant is named as it is logged; a fault's outcomes are its own
//! (see [`Fault::label`]).

use std::io::{self, ErrorKind};

use crate::faults::Fault;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client received the whole poem.
    Complete,
    /// The client hung up before the end.
    ClientClosed,
    /// The client accepted no data for the write timeout.
    TimedOut,
    /// Any other I/O error; the log line says which.
    Error,
    /// Still streaming when the shutdown grace period ran out, or closed unserved at shutdown.
    Shutdown,
    /// Turned away unserved: its source already held `--max-per-source` connections.
    Rejected,
    /// The whole poem was sent, but the client neither closed its side nor stopped talking
    /// within the linger, so the close may have reset the connection under the poem's end.
    UncleanClose,
    /// With `--proxy-protocol`, no valid PROXY header came in time; the log line says why.
    BadHeader,
    /// A fault played on purpose.
    Fault(Fault),
}

/// How many outcomes are not a fault's.
const OWN: usize = 8;

impl Outcome {
    /// How many outcomes there are: each has a counter.
    pub const COUNT: usize = OWN + Fault::ALL.len();

    /// Every outcome, in the order the stats line and `/metrics` show them.
    pub fn all() -> impl Iterator<Item = Outcome> {
        use Outcome::*;
        let own =
            [Complete, ClientClosed, TimedOut, Error, Shutdown, Rejected, UncleanClose, BadHeader];
        own.into_iter().chain(crate::faults::Fault::ALL.map(Outcome::Fault))
    }

    /// Where this outcome's counter is kept: its place in [`Outcome::all`].
    pub fn index(self) -> usize {
        match self {
            Outcome::Complete => 0,
            Outcome::ClientClosed => 1,
            Outcome::TimedOut => 2,
            Outcome::Error => 3,
            Outcome::Shutdown => 4,
            Outcome::Rejected => 5,
            Outcome::UncleanClose => 6,
            Outcome::BadHeader => 7,
            Outcome::Fault(fault) => OWN + fault as usize,
        }
    }

    /// The word the log line, the stats line and the metrics use.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientClosed => "client_closed",
            Outcome::TimedOut => "timed_out",
            Outcome::Error => "error",
            Outcome::Shutdown => "shutdown",
            Outcome::Rejected => "rejected",
            Outcome::UncleanClose => "unclean_close",
            Outcome::BadHeader => "bad_header",
            Outcome::Fault(fault) => fault.label(),
        }
    }

    /// Sorts an I/O error from the socket into the outcome it means.
    pub fn of_error(err: &io::Error) -> Outcome {
        match err.kind() {
            ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected => Outcome::ClientClosed,
            // SO_SNDTIMEO expiring shows up as EAGAIN.
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::TimedOut,
            _ => Outcome::Error,
        }
    }
}

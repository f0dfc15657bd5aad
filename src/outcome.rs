//! How a connection ended: one vocabulary for the log line, the stats line and the counters.

use std::io::{self, ErrorKind};

/// How a connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// The client received the whole poem.
    Complete,
    /// The client hung up before the end.
    ClientClosed,
    /// The client accepted no data for `--write-timeout`.
    TimedOut,
    /// Any other I/O error.
    Failed(io::Error),
    /// Still streaming when the shutdown grace period ran out.
    CutOff,
    /// Turned away unserved: its source already held `--max-per-source` connections.
    Rejected,
    /// The whole poem was sent, but the client neither closed its side nor stopped talking
    /// within the linger, so the close may have reset the connection under the poem's end.
    UncleanClose,
    /// `--proxy-protocol` is on, and the connection did not begin with a valid PROXY header
    /// in time; the reason says what was wrong.
    BadHeader(String),
    /// A fault on purpose (`--stall-after`): the server stopped sending until the client gave
    /// up or the write timeout passed.
    Stalled,
    /// A fault on purpose (`--close-after`): closed cleanly before the end of the poem.
    CutShort,
    /// A fault on purpose (`--reset-after`): reset after some bytes.
    Reset,
    /// A fault on purpose (`--refuse`): reset at once, unserved.
    Refused,
}

impl Outcome {
    /// How many kinds of outcome there are: the length of [`Outcome::LABELS`].
    pub const KINDS: usize = 12;

    /// How many of the kinds are faults played on purpose: the last ones of
    /// [`Outcome::LABELS`], reported only when a fault is configured.
    pub const FAULTS: usize = 4;

    /// Every outcome's label, in the order of [`Outcome::index`]. The stats line and the
    /// counters use these same words.
    pub const LABELS: [&'static str; Outcome::KINDS] = [
        "complete",
        "client_closed",
        "timed_out",
        "error",
        "shutdown",
        "rejected",
        "unclean_close",
        "bad_header",
        "stalled",
        "cut_short",
        "reset",
        "refused",
    ];

    /// Sorts an I/O error from the socket into the outcome it means.
    pub fn from_error(err: io::Error) -> Outcome {
        match err.kind() {
            ErrorKind::BrokenPipe
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected => Outcome::ClientClosed,
            // SO_SNDTIMEO expiring shows up as EAGAIN.
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Outcome::TimedOut,
            _ => Outcome::Failed(err),
        }
    }

    /// This outcome's place in [`Outcome::LABELS`], for counting.
    pub fn index(&self) -> usize {
        match self {
            Outcome::Complete => 0,
            Outcome::ClientClosed => 1,
            Outcome::TimedOut => 2,
            Outcome::Failed(_) => 3,
            Outcome::CutOff => 4,
            Outcome::Rejected => 5,
            Outcome::UncleanClose => 6,
            Outcome::BadHeader(_) => 7,
            Outcome::Stalled => 8,
            Outcome::CutShort => 9,
            Outcome::Reset => 10,
            Outcome::Refused => 11,
        }
    }

    /// A short, stable name for logs.
    pub fn label(&self) -> &'static str {
        Outcome::LABELS[self.index()]
    }

    /// Whether the client got the whole poem.
    pub fn is_complete(&self) -> bool {
        matches!(self, Outcome::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Socket errors sort into the outcome a reader of the log expects.
    #[test]
    fn socket_errors_sort_into_outcomes() {
        let of = |kind| Outcome::from_error(io::Error::from(kind)).label();
        assert_eq!(of(ErrorKind::BrokenPipe), "client_closed");
        assert_eq!(of(ErrorKind::ConnectionReset), "client_closed");
        assert_eq!(of(ErrorKind::WouldBlock), "timed_out");
        assert_eq!(of(ErrorKind::PermissionDenied), "error");
    }

    /// Each label is distinct, so a count or a log line names one outcome only.
    #[test]
    fn labels_are_distinct() {
        let mut labels = Outcome::LABELS.to_vec();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Outcome::KINDS);
    }
}

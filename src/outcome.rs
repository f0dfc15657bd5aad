//! How a connection ended: one vocabulary for the log line, the stats line and the counters.
//!
//! [`Outcome`] is what a connection's log line says, details included; its [`Kind`] is what
//! is counted. [`Kind::ALL`] is the one list every report reads its labels from: a new kind
//! is a variant, a line in that list and its label.

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

    /// What is counted of this outcome: its kind, without the details.
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Complete => Kind::Complete,
            Outcome::ClientClosed => Kind::ClientClosed,
            Outcome::TimedOut => Kind::TimedOut,
            Outcome::Failed(_) => Kind::Error,
            Outcome::CutOff => Kind::Shutdown,
            Outcome::Rejected => Kind::Rejected,
            Outcome::UncleanClose => Kind::UncleanClose,
            Outcome::BadHeader(_) => Kind::BadHeader,
            Outcome::Stalled => Kind::Stalled,
            Outcome::CutShort => Kind::CutShort,
            Outcome::Reset => Kind::Reset,
            Outcome::Refused => Kind::Refused,
        }
    }

    /// A short, stable name for logs.
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// Whether the client got the whole poem.
    pub fn is_complete(&self) -> bool {
        matches!(self, Outcome::Complete)
    }
}

/// The kinds of outcome: what the counters, the stats line and `/metrics` count, by label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Complete,
    ClientClosed,
    TimedOut,
    Error,
    Shutdown,
    Rejected,
    UncleanClose,
    BadHeader,
    Stalled,
    CutShort,
    Reset,
    Refused,
}

impl Kind {
    /// Every kind, in the order the stats line and `/metrics` show them. Counters are kept
    /// by a kind's place here ([`Kind::slot`]); nothing else depends on the order.
    pub const ALL: [Kind; 12] = [
        Kind::Complete,
        Kind::ClientClosed,
        Kind::TimedOut,
        Kind::Error,
        Kind::Shutdown,
        Kind::Rejected,
        Kind::UncleanClose,
        Kind::BadHeader,
        Kind::Stalled,
        Kind::CutShort,
        Kind::Reset,
        Kind::Refused,
    ];

    /// The word the log line, the stats line and the metrics use for this kind.
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Complete => "complete",
            Kind::ClientClosed => "client_closed",
            Kind::TimedOut => "timed_out",
            Kind::Error => "error",
            Kind::Shutdown => "shutdown",
            Kind::Rejected => "rejected",
            Kind::UncleanClose => "unclean_close",
            Kind::BadHeader => "bad_header",
            Kind::Stalled => "stalled",
            Kind::CutShort => "cut_short",
            Kind::Reset => "reset",
            Kind::Refused => "refused",
        }
    }

    /// Whether only a fault played on purpose ends a connection this way; such kinds are
    /// reported only when a fault is configured.
    pub const fn is_fault(self) -> bool {
        matches!(
            self,
            Kind::Stalled | Kind::CutShort | Kind::Reset | Kind::Refused
        )
    }

    /// This kind's place in [`Kind::ALL`], where its counter is kept.
    pub const fn slot(self) -> usize {
        self as usize
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

    /// Each kind is listed once, at its own slot, and each label is distinct, so a count or
    /// a log line names one outcome only.
    #[test]
    fn every_kind_is_listed_once_with_its_own_label() {
        for (slot, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.slot(), slot, "{kind:?}");
        }
        let mut labels: Vec<_> = Kind::ALL.iter().map(|kind| kind.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Kind::ALL.len());
    }
}

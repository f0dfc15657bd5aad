//! The stats line: the counters in one log event, on SIGUSR1 and when the server stops,
//! written whatever `RUST_LOG` says because it is asked for.

use tracing::info;

use crate::faults::Fault;
use crate::ops::logging;
use crate::outcome::Outcome;
use crate::server::Handle;

/// Logs the stats line. The `last` one, once the server has stopped, counts whatever never got
/// the whole poem (cut off, or left running past the cut-off) as aborted.
///
/// Every outcome has a field, named by its label, in [`Outcome::all`]'s order; the faults'
/// only when a fault is played.
pub fn log(handle: &Handle, last: bool) {
    let counters = handle.counters();
    let tally = counters.tally();
    let ended = |outcome: Outcome| tally.ended(outcome);
    let played = handle.config().faults.fault.is_some();
    let fault = |fault| played.then(|| ended(Outcome::Fault(fault)));
    let (aborted, busy, queued) = match last {
        true => (tally.accepted - ended(Outcome::Complete), 0, 0),
        false => (tally.aborted(), tally.busy, tally.queued),
    };
    info!(
        target: logging::STATS,
        uptime_s = (counters.uptime().as_secs_f64() * 10.0).round() / 10.0,
        accepted = tally.accepted,
        complete = ended(Outcome::Complete),
        aborted,
        client_closed = ended(Outcome::ClientClosed),
        timed_out = ended(Outcome::TimedOut),
        error = ended(Outcome::Error),
        shutdown = ended(Outcome::Shutdown),
        rejected = ended(Outcome::Rejected),
        unclean_close = ended(Outcome::UncleanClose),
        bad_header = ended(Outcome::BadHeader),
        stalled = fault(Fault::Stall),
        cut_short = fault(Fault::Close),
        reset = fault(Fault::Reset),
        refused = fault(Fault::Refuse),
        bytes_sent = counters.bytes(),
        busy_workers = busy,
        queued,
        log_lines_dropped = logging::dropped(),
        "stats"
    );
}

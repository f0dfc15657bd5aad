//! The stats line: the counters in one log event, on SIGUSR1 and when the server stops,
//! written whatever `RUST_LOG` says because it is asked for; and the summaries of what is too
//! frequent to log one line each.

use tracing::{info, warn};

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
    let played = handle.plays_faults();
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

/// How often the summaries are written, at most.
pub const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What the last summaries reported: connections rejected by the per-source limit, bad PROXY
/// headers, and log lines dropped.
#[derive(Default)]
pub struct Summaries([u64; 3]);

impl Summaries {
    /// Writes a warning for each count that grew since the last call, and says whether it
    /// wrote any: a flood of rejected connections or bad headers costs a line per
    /// [`SUMMARY_EVERY`], not one each, and every one of them is in some line (call it once
    /// more when the server has stopped).
    pub fn write(&mut self, handle: &Handle) -> bool {
        let counters = handle.counters();
        let tally = counters.tally();
        let now =
            [tally.ended(Outcome::Rejected), tally.ended(Outcome::BadHeader), logging::dropped()];
        let [rejected, bad_header, dropped] = std::array::from_fn(|at| now[at] - self.0[at]);
        self.0 = now;
        if rejected > 0 {
            let latest = counters.latest(Outcome::Rejected);
            let max = handle.config().max_per_source.map_or(0, |max| max.get());
            warn!(rejected, latest, max, "connections over --max-per-source closed unserved");
        }
        if bad_header > 0 {
            let latest = counters.latest(Outcome::BadHeader);
            warn!(bad_header, latest, "connections closed for a missing or bad PROXY header");
        }
        if dropped > 0 {
            warn!(dropped, "log lines dropped: standard error too slow, or failing");
        }
        rejected + bad_header + dropped > 0
    }
}

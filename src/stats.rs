//! Server-wide counters, shared by the accept loop and every worker, and the stats line that
//! reports them (on SIGUSR1 and at shutdown).
//!
//! Plain relaxed atomics: each counter is read only for reporting, never to make a decision,
//! so no ordering between them is needed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing::info;

use crate::outcome::Outcome;
use crate::pool::Load;

/// The target of the stats line's event. Logging lets it through whatever `RUST_LOG` says,
/// because it is asked for explicitly (see [`crate::logging`]).
pub const TARGET: &str = "poetry_serve::stats";

/// Upper bounds, in seconds, of the buckets connection durations are counted in: from a
/// refused or unpaced connection (milliseconds) to a long paced poem (half an hour).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Totals since the server started.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    accepted: AtomicU64,
    /// Connections ended, by [`Outcome::index`].
    ended: [AtomicU64; Outcome::KINDS],
    bytes: AtomicU64,
    /// Connections served, by the first of [`DURATION_BUCKETS`] their duration fits (the last
    /// slot for longer ones), and the sum of their durations in microseconds.
    durations: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    /// SIGHUP reloads that worked, and that failed.
    reloads: [AtomicU64; 2],
    /// Whether faults are played on purpose, and so reported.
    faults: bool,
}

/// How connection durations were spread, for the metrics' histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    /// For each bound of [`DURATION_BUCKETS`], then +Inf, how many connections took at most
    /// that long and more than the bound before (the metrics encoder adds them up).
    pub buckets: Vec<(f64, u64)>,
    /// How many connections in all.
    pub count: u64,
    /// Their durations added up, in seconds.
    pub sum: f64,
}

/// The counters at one moment, with the pool's load, for the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Time since the server started.
    pub uptime: Duration,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections ended, by [`Outcome::index`].
    pub ended: [u64; Outcome::KINDS],
    /// Connections that did not get the whole poem and never will: the client left, stalled
    /// or failed, they were turned away (a limit, a bad PROXY header), or shutdown closed them. In the final report (nothing streaming,
    /// nothing queued), whatever the grace period cut off counts here too.
    pub aborted: u64,
    /// Poem bytes handed to the kernel for all connections.
    pub bytes: u64,
    /// Workers streaming a poem now.
    pub busy: usize,
    /// Connections accepted and waiting for a worker.
    pub queued: usize,
    /// Whether the counts of faults played on purpose are part of the report.
    pub faults: bool,
}

impl Stats {
    /// Counters at zero, with the uptime clock starting now; `faults` says whether faults are
    /// played on purpose, whose counts are reported only then.
    pub fn new(faults: bool) -> Stats {
        Stats {
            faults,
            started: Instant::now(),
            accepted: AtomicU64::new(0),
            ended: Default::default(),
            bytes: AtomicU64::new(0),
            durations: Default::default(),
            duration_sum_us: AtomicU64::new(0),
            reloads: Default::default(),
        }
    }

    /// Counts how long a served connection took, from accept to its last byte.
    pub fn took(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.durations[slot].fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(duration.as_micros() as u64, Relaxed);
    }

    /// Counts a SIGHUP reload, whether it `worked` or not.
    pub fn reloaded(&self, worked: bool) {
        self.reloads[usize::from(!worked)].fetch_add(1, Relaxed);
    }

    /// Reloads so far: (worked, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads[0].load(Relaxed), self.reloads[1].load(Relaxed))
    }

    /// The spread of connection durations so far.
    pub fn durations(&self) -> Durations {
        let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.durations)
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        Durations {
            count: buckets.iter().map(|&(_, count)| count).sum(),
            buckets,
            sum: self.duration_sum_us.load(Relaxed) as f64 / 1e6,
        }
    }

    /// Counts a newly accepted connection, and returns its number: how many were accepted
    /// before it.
    pub fn accepted(&self) -> u64 {
        self.accepted.fetch_add(1, Relaxed)
    }

    /// Counts poem bytes as they are sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts how a connection ended.
    pub fn ended(&self, outcome: &Outcome) {
        self.ended[outcome.index()].fetch_add(1, Relaxed);
    }

    /// The counters now, with the pool's `load`.
    pub fn report(&self, load: &Load) -> Report {
        self.snapshot(load.busy(), load.queued())
    }

    /// The counters once the server has stopped serving: whatever was still streaming or
    /// queued then was cut off, and counts as aborted.
    pub fn final_report(&self) -> Report {
        self.snapshot(0, 0)
    }

    fn snapshot(&self, busy: usize, queued: usize) -> Report {
        let faults = self.faults;
        let accepted = self.accepted.load(Relaxed);
        let ended = self.ended.each_ref().map(|count| count.load(Relaxed));
        let complete = ended[Outcome::Complete.index()];
        // Ended without the whole poem, or never served at all (accepted, but neither
        // complete, nor streaming, nor queued: dropped at shutdown). A connection whose poem
        // is complete but whose close is still lingering counts as both complete and busy,
        // which is why the second figure alone can fall short.
        let incomplete: u64 = ended.iter().sum::<u64>() - complete;
        let unserved = accepted.saturating_sub(complete + (busy + queued) as u64);
        Report {
            uptime: self.started.elapsed(),
            accepted,
            ended,
            aborted: incomplete.max(unserved),
            bytes: self.bytes.load(Relaxed),
            busy,
            queued,
            faults,
        }
    }
}

impl Report {
    /// Logs the stats line, at any log level. Its outcome fields are named by
    /// [`Outcome::LABELS`] (a test holds them to it).
    pub fn log(&self) {
        let [
            complete,
            client_closed,
            timed_out,
            error,
            shutdown,
            rejected,
            unclean_close,
            bad_header,
            stalled,
            cut_short,
            reset,
            refused,
        ] = self.ended;
        // Without a fault configured, these fields are left out (a `None` is not written).
        let fault = |count: u64| self.faults.then_some(count);
        info!(
            target: TARGET,
            uptime_s = (self.uptime.as_secs_f64() * 10.0).round() / 10.0,
            accepted = self.accepted,
            complete,
            aborted = self.aborted,
            client_closed,
            timed_out,
            error,
            shutdown,
            rejected,
            unclean_close,
            bad_header,
            stalled = fault(stalled),
            cut_short = fault(cut_short),
            reset = fault(reset),
            refused = fault(refused),
            bytes_sent = self.bytes,
            busy_workers = self.busy,
            queued = self.queued,
            "stats"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Streaming and queued connections are not aborted, but cut-off ones at the end are.
    #[test]
    fn connections_in_flight_are_not_counted_as_aborted() {
        let stats = Stats::new(false);
        for _ in 0..5 {
            stats.accepted();
        }
        stats.ended(&Outcome::Complete);
        stats.ended(&Outcome::TimedOut);
        let report = stats.snapshot(2, 1);
        assert_eq!(
            (report.accepted, report.ended[0], report.aborted),
            (5, 1, 1)
        );
        assert_eq!(report.ended[Outcome::TimedOut.index()], 1);
        // At the end, with nothing left running, the two that were cut off are aborted.
        assert_eq!(stats.final_report().aborted, 4);
    }

    /// Durations land in the first bucket that holds them.
    #[test]
    fn durations_fill_cumulative_buckets() {
        let stats = Stats::new(false);
        stats.took(Duration::from_millis(3));
        stats.took(Duration::from_secs(2));
        stats.took(Duration::from_secs(4000));
        let spread = stats.durations();
        assert_eq!(spread.count, 3);
        assert_eq!(spread.buckets[0], (0.005, 1));
        assert_eq!(spread.buckets[6], (5.0, 1));
        assert_eq!(spread.buckets.last(), Some(&(f64::INFINITY, 1)));
        let counted: u64 = spread.buckets.iter().map(|&(_, n)| n).sum();
        assert_eq!(counted, 3);
        assert!((spread.sum - 4002.003).abs() < 1e-6, "{}", spread.sum);
    }

    /// A writer into a shared buffer, for reading back what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The stats line names each outcome with the log's own label, and carries every figure.
    #[test]
    fn the_stats_line_uses_the_outcome_labels() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let stats = Stats::new(true);
        stats.ended(&Outcome::TimedOut);
        tracing::subscriber::with_default(subscriber, || stats.final_report().log());
        let line = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for label in Outcome::LABELS {
            assert!(line.contains(&format!(" {label}=")), "{label}: {line}");
        }
        assert!(line.contains(" timed_out=1 "), "{line}");
        for field in [
            "uptime_s=",
            "accepted=0",
            "aborted=1",
            "bytes_sent=0",
            "queued=0",
        ] {
            assert!(line.contains(field), "{field}: {line}");
        }
    }
}

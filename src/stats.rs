//! Server-wide counters, shared by the accept loop and every worker, and the stats line that
//! reports them (on SIGUSR1 and at shutdown).
//!
//! Plain relaxed atomics: each counter is read only for reporting, never to make a decision,
//! so no ordering between them is needed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::outcome::{Kind, Outcome};
use crate::pool::Load;

/// The target of the stats line's event. Logging lets it through whatever `RUST_LOG` says,
/// because it is asked for explicitly (see [`crate::logging`]).
pub const TARGET: &str = "poetry_serve::stats";

/// Upper bounds, in seconds, of the buckets connection durations are counted in: from a
/// refused or unpaced connection (milliseconds) to a long paced poem (half an hour).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Upper bounds, in seconds, of the buckets chunk lateness is counted in: from the workers'
/// timer slack (a millisecond) to a worker starved of CPU for seconds.
pub const LATENESS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Totals since the server started.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    accepted: AtomicU64,
    /// Connections ended, by [`Kind::slot`].
    ended: [AtomicU64; Kind::ALL.len()],
    bytes: AtomicU64,
    /// How long connections took, from accept to their last byte (microseconds summed).
    durations: Histogram<{ DURATION_BUCKETS.len() + 1 }>,
    /// How long after its deadline each paced chunk was handed to the kernel (nanoseconds
    /// summed: a chunk is typically a millisecond late).
    lateness: Histogram<{ LATENESS_BUCKETS.len() + 1 }>,
    /// SIGHUP reloads that worked, and that failed.
    reloads: [AtomicU64; 2],
    /// Whether faults are played on purpose, and so reported.
    faults: bool,
}

/// Durations counted into fixed buckets with relaxed atomics: `N` is the number of bounds
/// plus one, for what exceeds the last.
#[derive(Debug)]
struct Histogram<const N: usize> {
    /// Upper bounds in seconds, as given, and in the sum's unit, for a comparison per count
    /// in whole numbers.
    bounds: &'static [f64],
    bounds_in_unit: [u64; N],
    /// How many values fell in each bucket: the first bound they do not exceed, or the last
    /// slot past every bound.
    counts: [AtomicU64; N],
    /// The values added up, in `unit_ns` nanoseconds each.
    sum: AtomicU64,
    unit_ns: u64,
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram over `bounds` (`N - 1` of them, rising), summing in units of
    /// `unit_ns` nanoseconds.
    fn new(bounds: &'static [f64], unit_ns: u64) -> Self {
        assert_eq!(bounds.len() + 1, N, "one slot per bound, and one past them");
        let mut bounds_in_unit = [u64::MAX; N];
        for (at, bound) in bounds.iter().enumerate() {
            bounds_in_unit[at] = (bound * 1e9 / unit_ns as f64).round() as u64;
        }
        Histogram {
            bounds,
            bounds_in_unit,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            unit_ns,
        }
    }

    /// Counts one value.
    fn count(&self, value: Duration) {
        let units = u64::try_from(value.as_nanos() / u128::from(self.unit_ns)).unwrap_or(u64::MAX);
        // The last bound is u64::MAX, so a slot is always found.
        let slot = self
            .bounds_in_unit
            .iter()
            .position(|&bound| units <= bound)
            .unwrap_or(N - 1);
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum.fetch_add(units, Relaxed);
    }

    /// The counts so far.
    fn spread(&self) -> Spread {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.counts)
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        Spread {
            count: buckets.iter().map(|&(_, count)| count).sum(),
            buckets,
            sum: self.sum.load(Relaxed) as f64 * self.unit_ns as f64 / 1e9,
        }
    }
}

/// How values were spread, for a histogram in the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// For each bound, then +Inf, how many values were at most that and more than the bound
    /// before (the metrics encoder adds them up).
    pub buckets: Vec<(f64, u64)>,
    /// How many values in all.
    pub count: u64,
    /// The values added up, in seconds.
    pub sum: f64,
}

/// The counters at one moment, with the pool's load, for the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Time since the server started.
    pub uptime: Duration,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections ended, by [`Kind::slot`].
    pub ended: [u64; Kind::ALL.len()],
    /// Connections that did not get the whole poem and never will: the client left, stalled or
    /// failed, they were turned away (a limit, a bad PROXY header), or shutdown closed them. In the
    /// final report (nothing streaming, nothing queued), whatever the grace period cut off counts
    /// here too.
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
            durations: Histogram::new(&DURATION_BUCKETS, 1_000),
            lateness: Histogram::new(&LATENESS_BUCKETS, 1),
            reloads: Default::default(),
        }
    }

    /// Counts how long a served connection took, from accept to its last byte.
    pub fn took(&self, duration: Duration) {
        self.durations.count(duration);
    }

    /// Counts how long after its deadline a paced chunk was handed to the kernel.
    pub fn late(&self, lateness: Duration) {
        self.lateness.count(lateness);
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
    pub fn durations(&self) -> Spread {
        self.durations.spread()
    }

    /// The spread of chunk lateness so far.
    pub fn lateness(&self) -> Spread {
        self.lateness.spread()
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
        self.ended[outcome.kind().slot()].fetch_add(1, Relaxed);
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
        let complete = ended[Kind::Complete.slot()];
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
    /// How many connections ended as `kind`.
    pub fn ended(&self, kind: Kind) -> u64 {
        self.ended[kind.slot()]
    }

    /// The kinds this report shows: the faults' only when faults are played.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL
            .into_iter()
            .filter(|kind| self.faults || !kind.is_fault())
    }

    /// Logs the stats line, at any log level. Its outcome fields are named and ordered by
    /// [`Kind::ALL`] (see [`mod@line`]).
    pub fn log(&self) {
        line::log(self);
    }
}

/// The stats line as a tracing event whose fields come from [`Kind::ALL`], so that a new kind
/// of outcome shows up in it without a change here. tracing's macros need every field name
/// written out, so the event's callsite is declared by hand, as the macros would declare it.
mod line {
    use tracing::callsite::{DefaultCallsite, Identifier};
    use tracing::field::{FieldSet, Value, display};
    use tracing::metadata::{Kind as EventKind, Level, Metadata};
    use tracing::{Event, dispatcher};

    use super::{Report, TARGET};
    use crate::outcome::Kind;

    /// The fields before the outcome counts (`complete` goes among them) and after them.
    const BEFORE: [&str; 5] = ["message", "uptime_s", "accepted", "complete", "aborted"];
    const AFTER: [&str; 3] = ["bytes_sent", "busy_workers", "queued"];
    const LEN: usize = BEFORE.len() + Kind::ALL.len() - 1 + AFTER.len();

    /// Every field's name, in order: `complete` beside `accepted` and `aborted`, the other
    /// kinds in [`Kind::ALL`]'s order, then the load.
    static NAMES: [&str; LEN] = names();

    const fn names() -> [&'static str; LEN] {
        let mut names = [""; LEN];
        let mut at = 0;
        while at < BEFORE.len() {
            names[at] = BEFORE[at];
            at += 1;
        }
        let mut kind = 0;
        while kind < Kind::ALL.len() {
            if !matches!(Kind::ALL[kind], Kind::Complete) {
                names[at] = Kind::ALL[kind].label();
                at += 1;
            }
            kind += 1;
        }
        let mut after = 0;
        while after < AFTER.len() {
            names[at] = AFTER[after];
            at += 1;
            after += 1;
        }
        names
    }

    static CALLSITE: DefaultCallsite = DefaultCallsite::new(&META);
    static META: Metadata<'static> = Metadata::new(
        "stats",
        TARGET,
        Level::INFO,
        Some(file!()),
        Some(line!()),
        Some(module_path!()),
        FieldSet::new(&NAMES, Identifier(&CALLSITE)),
        EventKind::EVENT,
    );

    pub fn log(report: &Report) {
        if CALLSITE.interest().is_never() || !dispatcher::get_default(|d| d.enabled(&META)) {
            return;
        }
        let uptime = (report.uptime.as_secs_f64() * 10.0).round() / 10.0;
        let message = display("stats");
        let (busy, queued) = (report.busy as u64, report.queued as u64);
        // A kind not shown (a fault's, with no fault configured) has no value: not written.
        let counts = Kind::ALL.map(|kind| {
            let shown = report.faults || !kind.is_fault();
            shown.then(|| report.ended(kind))
        });
        let mut values: Vec<Option<&dyn Value>> = vec![
            Some(&message),
            Some(&uptime),
            Some(&report.accepted),
            Some(&counts[Kind::Complete.slot()]),
            Some(&report.aborted),
        ];
        for kind in Kind::ALL.iter().filter(|kind| **kind != Kind::Complete) {
            values.push(counts[kind.slot()].as_ref().map(|n| n as &dyn Value));
        }
        values.extend([
            Some(&report.bytes as &dyn Value),
            Some(&busy as &dyn Value),
            Some(&queued as &dyn Value),
        ]);
        let fields = META.fields();
        let pairs: [_; LEN] = std::array::from_fn(|at| {
            // `NAMES` and `values` are built in the same order, LEN long.
            let field = fields.field(NAMES[at]).expect("every name is a field");
            (field, values[at])
        });
        let pairs = pairs.each_ref().map(|(field, value)| (field, *value));
        dispatcher::get_default(|d| d.event(&Event::new(&META, &fields.value_set(&pairs))));
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
        assert_eq!(report.ended(Kind::TimedOut), 1);
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

    /// Lateness is counted to the nanosecond, a bound itself in its own bucket.
    #[test]
    fn lateness_fills_its_buckets() {
        let stats = Stats::new(false);
        stats.late(Duration::from_micros(300));
        stats.late(Duration::from_millis(1));
        stats.late(Duration::from_nanos(1_000_001));
        stats.late(Duration::from_secs(60));
        let spread = stats.lateness();
        assert_eq!(spread.count, 4);
        assert_eq!(spread.buckets[0], (0.0005, 1));
        assert_eq!(spread.buckets[1], (0.001, 1));
        assert_eq!(spread.buckets[2], (0.002, 1));
        assert_eq!(spread.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((spread.sum - 60.002300001).abs() < 1e-9, "{}", spread.sum);
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
        for label in Kind::ALL.map(Kind::label) {
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

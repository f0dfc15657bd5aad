//! The server's counters: the one set every report reads (the stats line, `/metrics`, the
//! status page, systemd's status line, a test).
//!
//! Where each connection is in its life (accepted, waiting for a worker, served, ended and how)
//! is kept under one lock, taken three times per connection and never per chunk, so that every
//! [`Tally`] read is a consistent snapshot: `accepted == queued + busy + ended` always holds.
//! What is counted per chunk (bytes, lateness) is kept in relaxed atomics, which need no
//! ordering between them since they only ever feed reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

/// Upper bounds, in seconds, of the buckets connection durations are counted in: from a
/// refused or unpaced connection (milliseconds) to a long paced poem (half an hour).
pub const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Upper bounds, in seconds, of the buckets chunk lateness is counted in: from well under a
/// millisecond to a worker starved of CPU for seconds.
pub const LATENESS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds, in seconds, of the buckets backlog waits are counted in: from a connection
/// accepted at once to one held for minutes by `--accept-delay` or a full pool.
pub const WAIT_BUCKETS: [f64; 12] =
    [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Totals since the server started.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    tally: Mutex<Tally>,
    bytes: AtomicU64,
    /// SIGHUP reloads that worked, and that failed.
    reloads: [AtomicU64; 2],
    /// How long connections took, from accept to their close.
    pub durations: Histogram,
    /// How long after its deadline each paced chunk was handed to the kernel.
    pub lateness: Histogram,
    /// How long each connection waited in the listen backlog (held there by `--accept-delay`,
    /// or waiting for a free worker) before it was accepted.
    pub backlog_waits: Histogram,
    /// Closes held by `--close-delay`.
    closes_delayed: AtomicU64,
    /// The latest detail of each outcome that is reported in summaries (which source was
    /// rejected, what was wrong with a header), by [`Outcome::index`].
    latest: Mutex<Vec<Option<String>>>,
}

/// Where every connection accepted so far is, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Connections accepted.
    pub accepted: u64,
    /// Accepted and not yet served: held by `--accept-delay`, or between a worker's accept and
    /// its serve.
    pub queued: u64,
    /// Being served by a worker.
    pub busy: u64,
    /// Ended, by [`Outcome::index`].
    pub ended: [u64; Outcome::COUNT],
}

impl Tally {
    /// How many connections ended with `outcome`.
    pub fn ended(&self, outcome: Outcome) -> u64 {
        self.ended[outcome.index()]
    }

    /// Connections that did not get the whole poem and never will: every ended one but the
    /// complete ones.
    pub fn aborted(&self) -> u64 {
        self.ended.iter().sum::<u64>() - self.ended(Outcome::Complete)
    }
}

impl Counters {
    /// Counters at zero, with the uptime clock starting now.
    pub fn new() -> Counters {
        Counters {
            started: Instant::now(),
            tally: Mutex::default(),
            bytes: AtomicU64::new(0),
            reloads: Default::default(),
            durations: Histogram::new(&DURATION_BUCKETS),
            lateness: Histogram::new(&LATENESS_BUCKETS),
            backlog_waits: Histogram::new(&WAIT_BUCKETS),
            closes_delayed: AtomicU64::new(0),
            latest: Mutex::new(vec![None; Outcome::COUNT]),
        }
    }

    /// Where every connection is now.
    pub fn tally(&self) -> Tally {
        *self.lock()
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Poem bytes handed to the kernel so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Closes held by `--close-delay` so far.
    pub fn closes_delayed(&self) -> u64 {
        self.closes_delayed.load(Relaxed)
    }

    /// Reloads so far: (worked, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads[0].load(Relaxed), self.reloads[1].load(Relaxed))
    }

    /// The latest detail noted of `outcome`.
    pub fn latest(&self, outcome: Outcome) -> Option<String> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)[outcome.index()].clone()
    }

    pub(crate) fn note(&self, outcome: Outcome, detail: String) {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)[outcome.index()] = Some(detail);
    }

    pub(crate) fn accepted(&self) {
        let mut tally = self.lock();
        tally.accepted += 1;
        tally.queued += 1;
    }

    pub(crate) fn taken(&self) {
        let mut tally = self.lock();
        tally.queued -= 1;
        tally.busy += 1;
    }

    /// Counts the end of a connection a worker served.
    pub(crate) fn ended(&self, outcome: Outcome) {
        let mut tally = self.lock();
        tally.busy -= 1;
        tally.ended[outcome.index()] += 1;
    }

    /// Counts a connection accepted and ended without a worker (closed unserved at shutdown).
    pub(crate) fn unserved(&self, outcome: Outcome) {
        let mut tally = self.lock();
        tally.accepted += 1;
        tally.ended[outcome.index()] += 1;
    }

    /// Counts the end of a connection that was accepted and never taken by its worker (held by
    /// `--accept-delay` when the server stopped).
    pub(crate) fn dequeued(&self, outcome: Outcome) {
        let mut tally = self.lock();
        tally.queued -= 1;
        tally.ended[outcome.index()] += 1;
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn close_delayed(&self) {
        self.closes_delayed.fetch_add(1, Relaxed);
    }

    pub(crate) fn reloaded(&self, worked: bool) {
        self.reloads[usize::from(!worked)].fetch_add(1, Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // Nothing panics while it is held; if something did, the counts would still be whole.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Counters {
    fn default() -> Counters {
        Counters::new()
    }
}

/// Durations counted into fixed buckets with relaxed atomics, as a Prometheus histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, rising; one more bucket counts what exceeds the last.
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// The values added up, in nanoseconds.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    pub(crate) fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let at = self.bounds.partition_point(|&bound| bound < secs);
        self.counts[at].fetch_add(1, Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum.fetch_add(nanos, Relaxed);
    }

    /// For each bound, then +Inf, how many values were at most that and more than the bound
    /// before.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().map(|n| n.load(Relaxed))).collect()
    }

    /// The values added up, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum.load(Relaxed) as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tally balances at every step of a connection's life, and the ended ones that are not
    /// complete are aborted.
    #[test]
    fn the_tally_balances_at_every_step() {
        let counters = Counters::new();
        let balanced = |t: Tally| t.accepted == t.queued + t.busy + t.ended.iter().sum::<u64>();
        for outcome in [Outcome::Complete, Outcome::TimedOut] {
            counters.accepted();
            assert!(balanced(counters.tally()));
            counters.taken();
            assert!(balanced(counters.tally()));
            counters.ended(outcome);
            assert!(balanced(counters.tally()));
        }
        counters.unserved(Outcome::Shutdown);
        let tally = counters.tally();
        assert!(balanced(tally), "{tally:?}");
        assert_eq!((tally.accepted, tally.aborted()), (3, 2));
    }

    /// Values land in the first bucket that holds them, a bound in its own bucket, and add up
    /// in the sum.
    #[test]
    fn values_fill_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new(&LATENESS_BUCKETS);
        for value in [300_000, 1_000_000, 1_000_001, 60_000_000_000] {
            histogram.observe(Duration::from_nanos(value));
        }
        let buckets = histogram.buckets();
        assert_eq!(&buckets[..3], [(0.0005, 1), (0.001, 1), (0.002, 1)]);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
        assert!((histogram.sum() - 60.002300001).abs() < 1e-9);
    }
}

//! Server-wide counters, shared by the accept loop and every worker.
//!
//! Plain relaxed atomics: each counter is read only for reporting, never to make a decision,
//! so no ordering between them is needed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::connection::Outcome;

/// Totals since the server started.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    completed: AtomicU64,
    client_closed: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of the counters at one moment, for a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that received the whole poem.
    pub completed: u64,
    /// Connections that did not: the client left, stalled or failed, or shutdown cut them off.
    pub aborted: u64,
    /// Of the aborted, those whose client hung up first.
    pub client_closed: u64,
    /// Of the aborted, those dropped by `--write-timeout`.
    pub timed_out: u64,
    /// Of the aborted, those ended by any other I/O error.
    pub failed: u64,
    /// Poem bytes handed to the kernel for all connections.
    pub bytes: u64,
}

impl Stats {
    /// Counts a newly accepted connection.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// Counts poem bytes as they are sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts how a connection ended.
    pub fn ended(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Complete => &self.completed,
            Outcome::ClientClosed => &self.client_closed,
            Outcome::TimedOut => &self.timed_out,
            Outcome::Failed(_) => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The counters now. Connections still streaming count as aborted: the snapshot is taken
    /// for the final summary, when whatever still streams is about to be cut off.
    pub fn snapshot(&self) -> Snapshot {
        let accepted = self.accepted.load(Relaxed);
        let completed = self.completed.load(Relaxed);
        Snapshot {
            accepted,
            completed,
            aborted: accepted.saturating_sub(completed),
            client_closed: self.client_closed.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            failed: self.failed.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} completed={} aborted={} (client_closed={} timed_out={} failed={}) \
             bytes_sent={}",
            self.accepted,
            self.completed,
            self.aborted,
            self.client_closed,
            self.timed_out,
            self.failed,
            self.bytes
        )
    }
}

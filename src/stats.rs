//! Server-wide counters, shared by the accept loop and every worker, and the stats line that
//! reports them (on SIGUSR1 and at shutdown).
//!
//! Plain relaxed atomics: each counter is read only for reporting, never to make a decision,
//! so no ordering between them is needed.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use crate::config::LogFormat;
use crate::connection::Outcome;

/// Totals since the server started.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    accepted: AtomicU64,
    completed: AtomicU64,
    client_closed: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// The counters at one moment, with the pool's load, for the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Time since the server started.
    pub uptime: Duration,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections that received the whole poem.
    pub completed: u64,
    /// Connections that did not and never will: the client left, stalled or failed, or
    /// shutdown closed them unserved. In the report made at the very end (nothing streaming,
    /// nothing queued), whatever the grace period cut off counts here too.
    pub aborted: u64,
    /// Of the aborted, those whose client hung up first.
    pub client_closed: u64,
    /// Of the aborted, those dropped by `--write-timeout`.
    pub timed_out: u64,
    /// Of the aborted, those ended by any other I/O error.
    pub failed: u64,
    /// Poem bytes handed to the kernel for all connections.
    pub bytes: u64,
    /// Workers streaming a poem now.
    pub busy: usize,
    /// Connections accepted and waiting for a worker.
    pub queued: usize,
}

impl Stats {
    /// Counters at zero, with the uptime clock starting now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            accepted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            client_closed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

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

    /// The counters now, with `busy` workers streaming and `queued` connections waiting.
    pub fn report(&self, busy: usize, queued: usize) -> Report {
        let accepted = self.accepted.load(Relaxed);
        let completed = self.completed.load(Relaxed);
        let client_closed = self.client_closed.load(Relaxed);
        let timed_out = self.timed_out.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        // Ended without the whole poem, or never served at all (accepted, but neither
        // completed, nor streaming, nor queued: dropped at shutdown). A connection whose
        // poem is complete but whose close is still lingering counts as both completed and
        // busy, which is why the second figure alone can fall short.
        let unserved = accepted.saturating_sub(completed + (busy + queued) as u64);
        Report {
            uptime: self.started.elapsed(),
            accepted,
            completed,
            aborted: (client_closed + timed_out + failed).max(unserved),
            client_closed,
            timed_out,
            failed,
            bytes: self.bytes.load(Relaxed),
            busy,
            queued,
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Report {
    /// The fields in order, for both formats.
    fn fields(&self) -> [(&'static str, String); 10] {
        [
            ("uptime_s", format!("{:.1}", self.uptime.as_secs_f64())),
            ("accepted", self.accepted.to_string()),
            ("completed", self.completed.to_string()),
            ("aborted", self.aborted.to_string()),
            ("timed_out", self.timed_out.to_string()),
            ("client_closed", self.client_closed.to_string()),
            ("failed", self.failed.to_string()),
            ("bytes_sent", self.bytes.to_string()),
            ("busy_workers", self.busy.to_string()),
            ("queued", self.queued.to_string()),
        ]
    }

    /// The stats line, in `format`: `stats: uptime_s=… accepted=…` as text, or one JSON object
    /// shaped like the JSON log lines, with `"message":"stats"` and the same fields as numbers.
    pub fn line(&self, format: LogFormat) -> String {
        let fields = self.fields();
        match format {
            LogFormat::Text => {
                let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("stats: {}", pairs.join(" "))
            }
            LogFormat::Json => {
                let pairs: Vec<String> =
                    fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!(
                    "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"message\":\"stats\",{}}}",
                    rfc3339_now(),
                    pairs.join(",")
                )
            }
        }
    }

    /// Writes the stats line to stderr, whatever the log level: it is asked for explicitly.
    pub fn print(&self, format: LogFormat) {
        let mut stderr = std::io::stderr().lock();
        // Nowhere else to report a failed write to stderr.
        let _ = writeln!(stderr, "{}", self.line(format));
    }
}

/// The current UTC time as `2026-11-24T23:44:42.610Z`, as the JSON log lines write it.
fn rfc3339_now() -> String {
    rfc3339(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A time since the Unix epoch as an RFC 3339 UTC timestamp with milliseconds.
fn rfc3339(now: Duration) -> String {
    let (days, secs) = (now.as_secs() / 86_400, now.as_secs() % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streaming and queued connections are not aborted, but cut-off ones at the end are.
    #[test]
    fn connections_in_flight_are_not_counted_as_aborted() {
        let stats = Stats::new();
        for _ in 0..5 {
            stats.accepted();
        }
        stats.ended(&Outcome::Complete);
        stats.ended(&Outcome::TimedOut);
        let report = stats.report(2, 1);
        assert_eq!(
            (report.accepted, report.completed, report.aborted),
            (5, 1, 1)
        );
        assert_eq!((report.timed_out, report.busy, report.queued), (1, 2, 1));
        // At shutdown, with nothing left running, the two that were cut off are aborted.
        assert_eq!(stats.report(0, 0).aborted, 4);
    }

    /// The JSON stats line's timestamps are RFC 3339 in UTC, leap days included.
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(951_827_696_789)),
            "2000-02-29T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(1_795_564_799)),
            "2026-11-24T23:59:59.000Z"
        );
    }

    /// The stats line carries every field, as text and as JSON.
    #[test]
    fn the_line_has_every_field_in_both_formats() {
        let report = Stats::new().report(3, 4);
        let text = report.line(LogFormat::Text);
        assert!(text.starts_with("stats: uptime_s="), "{text}");
        assert!(text.ends_with("busy_workers=3 queued=4"), "{text}");
        let json = report.line(LogFormat::Json);
        assert!(json.contains("\"message\":\"stats\""), "{json}");
        assert!(
            json.contains("\"accepted\":0,") && json.ends_with("\"queued\":4}"),
            "{json}"
        );
    }
}

//! Metrics and health over HTTP (`--metrics ADDR:PORT`): `GET /metrics` in the Prometheus
//! text format, `GET /healthz` for liveness probes, `GET /readyz` for readiness, and the live
//! status page, `GET /` and `GET /status.json` (see [`crate::status`]).
//!
//! The figures are read at scrape time from the counters the server keeps anyway ([`Stats`], the
//! pool's [`crate::pool::Load`]) and from /proc for the process, so serving metrics adds nothing to
//! a connection's path. The requests are read by [`crate::http`], which bounds what a client can
//! make it spend.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::{self, Answer};
use crate::shared::Shared;
use crate::stats::{Spread, Stats};
use crate::status;

/// Everything the metrics are read from.
struct Figures {
    shared: Arc<Shared>,
}

/// Starts answering HTTP on `addr` and returns where it listens (port 0 picks one).
pub fn serve(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<SocketAddr> {
    let shutdown = shared.shutdown.clone();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures {
        shared: Arc::clone(&shared),
    }));
    let recent = Recent::default();
    http::serve(
        addr,
        Arc::new(move |path: &str| match path {
            // Fresh at every scrape: it is small whatever the load, and a test or a script
            // reads it straight after what it counts.
            "/metrics" => match encode(&registry) {
                Ok(text) => Answer {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text,
                },
                Err(_) => Answer::text(500, "cannot encode the metrics\n"),
            },
            "/" => recent.get_or("/", Instant::now(), || status::page(&shared)),
            "/status.json" => {
                recent.get_or("/status.json", Instant::now(), || status::json(&shared))
            }
            "/healthz" => Answer::text(200, "ok\n"),
            // Not ready once shutting down: a balancer should stop sending new clients.
            "/readyz" if shutdown.has_begun() => Answer::text(503, "shutting down\n"),
            "/readyz" => Answer::text(200, "ready\n"),
            _ => Answer::text(404, "not found\n"),
        }),
    )
}

/// How long a status page once made is given again as it is. A page of 10,000 busy workers
/// takes milliseconds to make, so a client asking without pause (a hostile one, say) would keep
/// the metrics thread busy, on a core the workers need; this bounds each page to a few renders
/// a second, whoever asks, and the page's own refresh (once a second) sees no difference.
const REUSE_FOR: Duration = Duration::from_millis(250);

/// The pages made in the last [`REUSE_FOR`], by path.
#[derive(Default)]
struct Recent(Mutex<HashMap<&'static str, (Instant, Answer)>>);

impl Recent {
    /// The page for `path` made less than [`REUSE_FOR`] before `now`, or a new one.
    fn get_or(&self, path: &'static str, now: Instant, make: impl FnOnce() -> Answer) -> Answer {
        // The lock is only ever taken by the listener's one thread, so it never waits; a
        // panic while holding it would only lose the cached pages.
        let mut pages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made, answer)) = pages.get(path)
            && now.saturating_duration_since(*made) < REUSE_FOR
        {
            return answer.clone();
        }
        let answer = make();
        pages.insert(path, (now, answer.clone()));
        answer
    }
}

fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figures").finish_non_exhaustive()
    }
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: &Stats = &self.shared.stats;
        let report = self.shared.report();
        counter(
            &mut encoder,
            "poetry_connections_accepted",
            "Connections accepted.",
            report.accepted,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "poetry_connections_ended",
                "Connections ended, by outcome.",
                None,
                MetricType::Counter,
            )?;
            // The faults' outcomes only when faults are played, as in the stats line.
            for kind in report.kinds() {
                let labels = [("outcome", kind.label())];
                let mut metric = family.encode_family(&labels)?;
                metric.encode_counter::<NoLabelSet, _, u64>(&report.ended(kind), None)?;
            }
        }
        counter(
            &mut encoder,
            "poetry_bytes_sent",
            "Poem bytes handed to the kernel.",
            report.bytes,
        )?;
        gauge(
            &mut encoder,
            "poetry_workers_busy",
            "Workers serving a connection now.",
            report.busy as u64,
        )?;
        gauge(
            &mut encoder,
            "poetry_connections_queued",
            "Connections waiting for a worker.",
            report.queued as u64,
        )?;
        gauge(
            &mut encoder,
            "poetry_workers",
            "Size of the worker pool.",
            self.shared.config.workers.get() as u64,
        )?;
        let poems = self.shared.poems.current().len() as u64;
        gauge(&mut encoder, "poetry_poems", "Poems being served.", poems)?;
        {
            let (worked, failed) = stats.reloads();
            let mut family = encoder.encode_descriptor(
                "poetry_reloads",
                "SIGHUP reloads of the poems, by result.",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [("ok", worked), ("failed", failed)] {
                let labels = [("result", result)];
                let mut metric = family.encode_family(&labels)?;
                metric.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        histogram(
            &mut encoder,
            "poetry_connection_duration_seconds",
            "How long served connections took, from accept to their last byte.",
            &stats.durations(),
        )?;
        histogram(
            &mut encoder,
            "poetry_chunk_lateness_seconds",
            "How long after its deadline each paced chunk was handed to the kernel.",
            &stats.lateness(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "poetry_build_info",
                "The running version, as a label; always 1.",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            family.encode_family(&labels)?.encode_gauge(&1u64)?;
        }
        process::encode(&mut encoder)
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    spread: &Spread,
) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(spread.sum, spread.count, &spread.buckets, None)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// The process figures Prometheus's client libraries export under the same names, read from
/// /proc at scrape time.
mod process {
    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;

    use crate::sys::{cpu_seconds, open_fds, resident_bytes, threads};

    pub fn encode(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        if let Some(cpu) = cpu_seconds() {
            encoder
                .encode_descriptor(
                    "process_cpu_seconds",
                    "User and system CPU time spent, in seconds.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
        }
        let figures = [
            (
                "process_resident_memory_bytes",
                "Resident memory, in bytes.",
                resident_bytes(),
            ),
            ("process_open_fds", "Open file descriptors.", open_fds()),
            ("process_threads", "Threads of the process.", threads()),
        ];
        for (name, help, value) in figures {
            if let Some(value) = value {
                super::gauge(encoder, name, help, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page asked for again within REUSE_FOR is the one already made; after it, a new one.
    #[test]
    fn a_page_is_made_at_most_once_per_reuse_period() {
        let recent = Recent::default();
        let start = Instant::now();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Answer::text(200, format!("page {}", made.get()))
        };
        assert_eq!(recent.get_or("/", start, make).body, "page 1");
        let soon = start + REUSE_FOR / 2;
        assert_eq!(recent.get_or("/", soon, make).body, "page 1");
        assert_eq!(recent.get_or("/status.json", soon, make).body, "page 2");
        let later = start + REUSE_FOR;
        assert_eq!(recent.get_or("/", later, make).body, "page 3");
        assert_eq!(made.get(), 3);
    }
}

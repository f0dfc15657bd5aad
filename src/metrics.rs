//! Metrics and health over HTTP (`--metrics ADDR:PORT`): `GET /metrics` in the Prometheus
//! text format, `GET /healthz` for liveness probes and `GET /readyz` for readiness.
//!
//! The figures are read at scrape time from the counters the server keeps anyway ([`Stats`],
//! the pool's [`Load`]) and from /proc for the process, so serving metrics adds nothing to a
//! connection's path. The requests are read by [`crate::http`], which bounds what a client
//! can make it spend.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::connection::Shared;
use crate::http::{self, Answer};
use crate::outcome::Outcome;
use crate::pool::Load;
use crate::stats::Stats;

/// Everything the metrics are read from.
struct Figures {
    shared: Arc<Shared>,
    load: Arc<Load>,
    workers: usize,
}

/// Starts answering HTTP on `addr` and returns where it listens (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    load: Arc<Load>,
    workers: usize,
) -> anyhow::Result<SocketAddr> {
    let shutdown = shared.shutdown.clone();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures {
        shared,
        load,
        workers,
    }));
    http::serve(
        addr,
        Arc::new(move |path: &str| match path {
            "/metrics" => match encode(&registry) {
                Ok(text) => Answer {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text,
                },
                Err(_) => Answer::text(500, "cannot encode the metrics\n"),
            },
            "/healthz" => Answer::text(200, "ok\n"),
            // Not ready once shutting down: a balancer should stop sending new clients.
            "/readyz" if shutdown.has_begun() => Answer::text(503, "shutting down\n"),
            "/readyz" => Answer::text(200, "ready\n"),
            _ => Answer::text(404, "not found\n"),
        }),
    )
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
        let report = stats.report(&self.load);
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
            let kinds = match report.faults {
                true => Outcome::KINDS,
                false => Outcome::KINDS - Outcome::FAULTS,
            };
            for (label, count) in Outcome::LABELS.iter().zip(report.ended).take(kinds) {
                let labels = [("outcome", *label)];
                let mut metric = family.encode_family(&labels)?;
                metric.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
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
            self.workers as u64,
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
        {
            let spread = stats.durations();
            let mut metric = encoder.encode_descriptor(
                "poetry_connection_duration_seconds",
                "How long served connections took, from accept to their last byte.",
                None,
                MetricType::Histogram,
            )?;
            metric.encode_histogram::<NoLabelSet>(
                spread.sum,
                spread.count,
                &spread.buckets,
                None,
            )?;
        }
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

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// The process figures Prometheus's client libraries export under the same names, read from
/// /proc at scrape time.
mod process {
    use std::fs;

    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;

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

    fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
    }

    fn cpu_seconds() -> Option<f64> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces: utime
        // and stime are the 12th and 13th of them.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_whitespace().skip(11);
        let ticks: u64 =
            fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks as f64 / hz)
    }

    fn resident_bytes() -> Option<u64> {
        let statm = fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * page_size())
    }

    fn open_fds() -> Option<u64> {
        Some(fs::read_dir("/proc/self/fd").ok()?.count() as u64)
    }

    fn threads() -> Option<u64> {
        Some(fs::read_dir("/proc/self/task").ok()?.count() as u64)
    }
}

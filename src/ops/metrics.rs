//! Metrics and health over HTTP (`--metrics ADDR:PORT`): `GET /metrics` in the Prometheus
//! text format, `GET /healthz` for liveness probes, `GET /readyz` for readiness, the live
//! status page, `GET /` and `GET /status.json` (see [`super::status`]), and its timeline,
//! `GET /timeline.json` and `GET /timeline.svg` (see [`super::timeline`]).
//!
//! Every figure is read at scrape time from the server's [`Counters`] and from /proc for the
//! process, so serving metrics adds nothing to a connection's path; prometheus-client writes
//! the text format. A new metric is a few lines in [`Figures::encode`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::http::{self, Answer, Asked, Limits, Routes};
use super::timeline::{self, Timeline};
use super::{logging, status};
use crate::counters::{Counters, Histogram};
use crate::outcome::Outcome;
use crate::server::Handle;
use procfs::process::Process;

/// Starts answering HTTP on `addr` and returns where it listens (port 0 picks one). The
/// status page draws `timeline` if given one (which must watch this server); without one,
/// it says the timeline is off and its routes are not found.
pub fn serve(
    addr: SocketAddr,
    handle: Handle,
    limits: Limits,
    timeline: Option<Arc<Timeline>>,
) -> anyhow::Result<SocketAddr> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures(handle.clone())));
    let recent = Recent::default();
    let route = move |asked: &Asked| match asked.path.as_str() {
        // Fresh at every scrape: small whatever the load, and a script reads it straight after
        // what it counts.
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
                Ok(()) => Answer {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text.into(),
                },
                Err(_) => Answer::text(500, "cannot encode the metrics\n"),
            }
        }
        path @ ("/" | "/status.json") => recent
            .get_or(path, Instant::now(), || status::answer(path, &handle, timeline.as_deref())),
        path @ ("/timeline.json" | "/timeline.svg") => match &timeline {
            Some(timeline) => {
                recent.get_or(path, Instant::now(), || timeline::answer(path, timeline, &handle))
            }
            None => Answer::text(404, "not found: no timeline is recorded\n"),
        },
        "/healthz" => Answer::text(200, "ok\n"),
        // Not ready once stopping: a balancer should stop sending new clients.
        "/readyz" if handle.is_stopping() => Answer::text(503, "shutting down\n"),
        "/readyz" => Answer::text(200, "ready\n"),
        _ => Answer::text(404, "not found\n"),
    };
    let routes = Routes { quick: &["/healthz", "/readyz"], route: Box::new(route) };
    http::serve(addr, routes, limits)
}

/// How long a status page once made is given again as it is. A page of 10,000 connections
/// takes milliseconds to make, so a client asking without pause would keep the metrics thread
/// busy on a core the workers need; this bounds each page to a few renders a second, whoever
/// asks, and the page's own refresh (once a second) sees no difference.
const REUSE_FOR: Duration = Duration::from_millis(250);

/// The pages made in the last [`REUSE_FOR`], by path; a clone shares the page's bytes.
#[derive(Default)]
struct Recent(Mutex<HashMap<String, (Instant, Answer)>>);

impl Recent {
    /// The page for `path` made less than [`REUSE_FOR`] before `now`, or a new one.
    fn get_or(&self, path: &str, now: Instant, make: impl FnOnce() -> Answer) -> Answer {
        // Held while a page is made: two asking for the same slow page at once make it once.
        let mut pages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made, answer)) = pages.get(path)
            && now.saturating_duration_since(*made) < REUSE_FOR
        {
            return answer.clone();
        }
        let answer = make();
        pages.insert(path.to_string(), (now, answer.clone()));
        answer
    }
}

/// Every figure, read when scraped from the server's handle.
struct Figures(Handle);

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let handle = &self.0;
        let counters: &Counters = handle.counters();
        let tally = counters.tally();
        let e = &mut encoder;
        counter(e, "poetry_connections_accepted", "Connections accepted.", tally.accepted)?;
        {
            let help = "Connections ended, by outcome.";
            let mut family =
                e.encode_descriptor("poetry_connections_ended", help, None, MetricType::Counter)?;
            // The faults' outcomes only when a fault is played, as in the stats line.
            let played = handle.plays_faults();
            for outcome in Outcome::all().filter(|o| played || !matches!(o, Outcome::Fault(_))) {
                let labels = [("outcome", outcome.label())];
                let mut metric = family.encode_family(&labels)?;
                metric.encode_counter::<NoLabelSet, _, u64>(&tally.ended(outcome), None)?;
            }
        }
        counter(e, "poetry_bytes_sent", "Poem bytes handed to the kernel.", counters.bytes())?;
        gauge(e, "poetry_workers_busy", "Workers serving a connection now.", tally.busy)?;
        gauge(
            e,
            "poetry_connections_queued",
            "Connections accepted and not yet served: held by --accept-delay.",
            tally.queued,
        )?;
        if let Some((waiting, _)) = handle.backlog() {
            let help = "Connections waiting in the listen backlog for a free worker.";
            gauge(e, "poetry_listen_backlog", help, waiting)?;
        }
        let workers = handle.config().workers.get() as u64;
        gauge(e, "poetry_workers", "Size of the worker pool.", workers)?;
        gauge(e, "poetry_poems", "Poems being served.", handle.poems().len() as u64)?;
        {
            let help = "SIGHUP reloads of the poems, by result.";
            let mut family =
                e.encode_descriptor("poetry_reloads", help, None, MetricType::Counter)?;
            let (worked, failed) = counters.reloads();
            for (result, count) in [("ok", worked), ("failed", failed)] {
                let labels = [("result", result)];
                let mut metric = family.encode_family(&labels)?;
                metric.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        let help = "How long served connections took, from accept to their close.";
        histogram(e, "poetry_connection_duration_seconds", help, &counters.durations)?;
        let help = "How long after its deadline each paced chunk was handed to the kernel.";
        histogram(e, "poetry_chunk_lateness_seconds", help, &counters.lateness)?;
        let help = "How long connections waited in the listen backlog before their accept.";
        histogram(e, "poetry_backlog_wait_seconds", help, &counters.backlog_waits)?;
        let help = "Closes held by --close-delay.";
        counter(e, "poetry_closes_delayed", help, counters.closes_delayed())?;
        let help = "1 while nothing is accepted (--blackhole), else 0.";
        gauge(e, "poetry_blackhole", help, u64::from(handle.config().blackhole))?;
        let help = "Log lines dropped: standard error too slow, or failing.";
        counter(e, "poetry_log_lines_dropped", help, logging::dropped())?;
        {
            let help = "The running version, as a label; always 1.";
            let mut family =
                e.encode_descriptor("poetry_build_info", help, None, MetricType::Gauge)?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            family.encode_family(&labels)?.encode_gauge(&1u64)?;
        }
        process(e)
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    let buckets = h.buckets();
    let count = buckets.iter().map(|(_, n)| n).sum();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?.encode_histogram::<NoLabelSet>(
        h.sum(),
        count,
        &buckets,
        None,
    )
}

/// The process figures Prometheus's client libraries export under the same names, read from
/// /proc at scrape time.
fn process(e: &mut DescriptorEncoder) -> std::fmt::Result {
    let me = Process::myself();
    let Ok(stat) = me.as_ref().map_err(|_| ()).and_then(|me| me.stat().map_err(|_| ())) else {
        return Ok(());
    };
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = (stat.utime + stat.stime) as f64 / ticks;
    let help = "User and system CPU time spent, in seconds.";
    e.encode_descriptor("process_cpu_seconds", help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
    if let Ok(boot) = procfs::boot_time_secs() {
        let started = boot as f64 + stat.starttime as f64 / ticks;
        let help = "Start time of the process since the Unix epoch, in seconds.";
        e.encode_descriptor("process_start_time_seconds", help, None, MetricType::Gauge)?
            .encode_gauge(&started)?;
    }
    let rss = stat.rss * procfs::page_size();
    gauge(e, "process_resident_memory_bytes", "Resident memory, in bytes.", rss)?;
    if let Ok(fds) = me.as_ref().map(|me| me.fd_count()) {
        gauge(e, "process_open_fds", "Open file descriptors.", fds.unwrap_or(0) as u64)?;
    }
    gauge(e, "process_threads", "Threads of the process.", stat.num_threads as u64)
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
        assert_eq!(recent.get_or("/", start + REUSE_FOR, make).body, "page 3");
    }
}

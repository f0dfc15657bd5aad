//! The live status page of `--metrics`: `GET /`, HTML, and `GET /status.json`, the same figures
//! as JSON. Both are made, when asked for, from one [`Status`] read off the server's handle: the
//! JSON by serde, the page by askama from `templates/status.html`, with the timeline's picture
//! (see [`super::timeline`]) first; a few lines of script there reload the page's main part
//! each second, and without script the page is whole as served.
//!
//! Every name the server did not make up (poem paths, addresses) is escaped: as HTML in the
//! page (askama escapes every value), by serde in the JSON. At most [`MAX_ROWS`] connections are listed, so that a page
//! costs the same whatever the number of workers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use askama::Template;
use serde::Serialize;

use super::http::Answer;
use super::timeline::{self, Timeline};
use crate::connection::View;
use crate::limit::Source;
use crate::outcome::Outcome;
use crate::pacing::Pacing;
use crate::poem::shown;
use crate::server::Handle;

/// The most connections a page lists; the rest are counted. About 400 bytes of page each.
pub const MAX_ROWS: usize = 200;

/// How many sources the page lists, those holding the most connections first.
const TOP_SOURCES: usize = 10;

/// `GET /` or `GET /status.json`; the page draws `timeline`, if there is one.
pub fn answer(path: &str, handle: &Handle, timeline: Option<&Timeline>) -> Answer {
    let status = Status::of(handle);
    match path {
        "/status.json" => Answer {
            status: 200,
            content_type: "application/json",
            // Plain data throughout: serialising cannot fail.
            body: serde_json::to_vec(&status).unwrap_or_default().into(),
        },
        _ => Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: status
                .html(
                    timeline
                        .map(|timeline| timeline::svg(&timeline.snapshot(Instant::now()), handle)),
                )
                .into(),
        },
    }
}

/// The page: `templates/status.html`, which escapes every value as HTML.
#[derive(Template)]
#[template(path = "status.html")]
struct Page<'a> {
    s: &'a Status,
    /// The timeline's picture, an SVG made by its own template (which escapes every value).
    timeline: Option<String>,
}

/// Everything the page shows, read at one moment.
#[derive(Serialize)]
struct Status {
    version: &'static str,
    uptime_s: f64,
    listening: Vec<String>,
    poems: Vec<String>,
    pacing: PacingView,
    workers: Workers,
    queued: u64,
    accepted: u64,
    aborted: u64,
    bytes_sent: u64,
    outcomes: BTreeMap<&'static str, u64>,
    connections: Vec<Row>,
    /// Connections being served beyond the [`MAX_ROWS`] listed.
    more_connections: usize,
    top_sources: Vec<TopSource>,
}

#[derive(Serialize)]
struct PacingView {
    num_bytes: usize,
    num_bytes_max: usize,
    delay_s: f64,
    jitter_s: f64,
}

#[derive(Serialize)]
struct Workers {
    busy: u64,
    total: usize,
}

/// One connection being served.
#[derive(Serialize)]
struct Row {
    worker: usize,
    peer: String,
    via: Option<String>,
    poem: Option<String>,
    poem_bytes: Option<u64>,
    bytes_sent: u64,
    /// Of the bytes sent, those still in the kernel's send queue: not yet acknowledged.
    unsent_bytes: Option<u64>,
    chunks: u64,
    connected_s: f64,
    ends_in_s: Option<f64>,
}

#[derive(Serialize)]
struct TopSource {
    source: String,
    connections: usize,
}

impl Status {
    fn of(handle: &Handle) -> Status {
        let now = Instant::now();
        let config = handle.config();
        let counters = handle.counters();
        let tally = counters.tally();
        let played = handle.plays_faults();
        let views = handle.connections();
        let pacing = handle.behaviour().pacing;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: secs(counters.uptime()),
            listening: handle.local_addrs().iter().map(ToString::to_string).collect(),
            poems: handle.poems().iter().map(|poem| shown(poem)).collect(),
            pacing: PacingView {
                num_bytes: pacing.chunk.get(),
                num_bytes_max: pacing.chunk_max.get(),
                delay_s: pacing.delay.as_secs_f64(),
                jitter_s: pacing.jitter.as_secs_f64(),
            },
            workers: Workers { busy: tally.busy, total: config.workers.get() },
            queued: tally.queued,
            accepted: tally.accepted,
            aborted: tally.aborted(),
            bytes_sent: counters.bytes(),
            outcomes: (Outcome::all())
                .filter(|o| played || !matches!(o, Outcome::Fault(_)))
                .map(|o| (o.label(), tally.ended(o)))
                .collect(),
            top_sources: top_sources(&views),
            more_connections: views.len().saturating_sub(MAX_ROWS),
            connections: (views.iter().take(MAX_ROWS)).map(|view| Row::of(view, now)).collect(),
        }
    }

    fn html(&self, timeline: Option<String>) -> String {
        // Plain data throughout: rendering cannot fail.
        Page { s: self, timeline }.render().unwrap_or_default()
    }
}

impl Row {
    /// The row of `view`, its end due by its own pacing (a change since does not apply to it).
    fn of(view: &View, now: Instant) -> Row {
        Row {
            worker: view.worker,
            peer: view.peer.to_string(),
            via: view.via.map(|via| via.to_string()),
            poem: view.poem.clone(),
            poem_bytes: view.poem_bytes,
            bytes_sent: view.bytes,
            unsent_bytes: view.unsent,
            chunks: view.chunks,
            connected_s: secs(now.saturating_duration_since(view.accepted)),
            ends_in_s: (view.poem_bytes)
                .and_then(|size| expected_end(&view.pacing, view.accepted, size))
                .map(|end| secs(end.saturating_duration_since(now))),
        }
    }
}

/// The sources holding the most connections now, with their counts: at most [`TOP_SOURCES`],
/// most first, then by address.
fn top_sources(views: &[View]) -> Vec<TopSource> {
    let mut held: HashMap<Source, usize> = HashMap::new();
    for view in views {
        *held.entry(Source::of(view.peer.ip())).or_default() += 1;
    }
    let mut top: Vec<TopSource> = (held.into_iter())
        .map(|(source, connections)| TopSource { source: source.to_string(), connections })
        .collect();
    top.sort_by(|a, b| (b.connections, &a.source).cmp(&(a.connections, &b.source)));
    top.truncate(TOP_SOURCES);
    top
}

/// When the last chunk of a poem of `size` bytes started at `start` is due, on average (chunk
/// sizes and jitter drawn at random even out); `None` when unpaced.
fn expected_end(pacing: &Pacing, start: Instant, size: u64) -> Option<Instant> {
    if !pacing.is_paced() {
        return None;
    }
    let chunk = (pacing.chunk.get() as u64 + pacing.chunk_max.get() as u64) / 2;
    let chunks = size.div_ceil(chunk.max(1));
    Some(pacing.due(start, chunks.saturating_sub(1)))
}

/// Seconds, to a tenth.
fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

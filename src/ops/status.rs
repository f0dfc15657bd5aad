//! The live status page of `--metrics`: `GET /`, HTML, and `GET /status.json`, the same figures
//! as JSON. Both are made, when asked for, from one [`Status`] read off the server's handle: the
//! JSON by serde, the page by [`Status::html`]; a few lines of script reload the page's main
//! part each second, and without script the page is whole as served.
//!
//! Every name the server did not make up (poem paths, addresses) is escaped: as HTML in the
//! page, by serde in the JSON. At most [`MAX_ROWS`] connections are listed, so that a page
//! costs the same whatever the number of workers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::Answer;
use crate::connection::View;
use crate::limit::Source;
use crate::outcome::Outcome;
use crate::pacing::Pacing;
use crate::server::Handle;

/// The most connections a page lists; the rest are counted. About 400 bytes of page each.
pub const MAX_ROWS: usize = 200;

/// How many sources the page lists, those holding the most connections first.
const TOP_SOURCES: usize = 10;

/// `GET /` or `GET /status.json`.
pub fn answer(path: &str, handle: &Handle) -> Answer {
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
            body: status.html().into(),
        },
    }
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
        let played = config.faults.fault.is_some();
        let views = handle.connections();
        let pacing = config.pacing;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: secs(counters.uptime()),
            listening: handle.local_addrs().iter().map(ToString::to_string).collect(),
            poems: (handle.poems().iter()).map(|poem| poem.display().to_string()).collect(),
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
            connections: (views.iter().take(MAX_ROWS))
                .map(|view| Row::of(view, &pacing, now))
                .collect(),
        }
    }

    fn html(&self) -> String {
        let mut page = String::with_capacity(4096 + 400 * self.connections.len());
        page.push_str(HEAD);
        let pacing = &self.pacing;
        let paced = match pacing.num_bytes_max > pacing.num_bytes {
            true => format!("{}-{} bytes", pacing.num_bytes, pacing.num_bytes_max),
            false => format!("{} bytes", pacing.num_bytes),
        };
        let paced = match (pacing.delay_s, pacing.jitter_s) {
            (0.0, _) => "unpaced (--delay 0)".to_string(),
            (delay, 0.0) => format!("{paced} every {delay} s"),
            (delay, jitter) => format!("{paced} every {delay} s ± {jitter} s"),
        };
        let outcomes: Vec<String> =
            (self.outcomes.iter()).map(|(label, n)| format!("{label} {n}")).collect();
        let overview = [
            ("version", self.version.to_string()),
            ("uptime", format!("{:.1} s", self.uptime_s)),
            ("listening", self.listening.join(", ")),
            ("poems", self.poems.join(", ")),
            ("pacing", paced),
            ("workers busy", format!("{} of {}", self.workers.busy, self.workers.total)),
            ("queued", self.queued.to_string()),
            ("accepted", self.accepted.to_string()),
            ("outcomes", outcomes.join(", ")),
        ];
        page.push_str("<table id=\"overview\"><tbody>\n");
        for (name, value) in overview {
            let id = name.replace(' ', "-");
            let _ =
                writeln!(page, "<tr><th>{name}</th><td id=\"{id}\">{}</td></tr>", escape(&value));
        }
        page.push_str(POOL_HEAD);
        for row in &self.connections {
            row.html(&mut page);
        }
        if self.more_connections > 0 {
            let more = self.more_connections;
            let _ = writeln!(page, "<tr><td colspan=\"9\">and {more} more, not listed</td></tr>");
        }
        page.push_str(SOURCES_HEAD);
        for TopSource { source, connections } in &self.top_sources {
            let source = escape(source);
            let _ =
                writeln!(page, "<tr><td>{source}</td><td class=\"num\">{connections}</td></tr>");
        }
        page.push_str(TAIL);
        page
    }
}

impl Row {
    fn of(view: &View, pacing: &Pacing, now: Instant) -> Row {
        Row {
            worker: view.worker,
            peer: view.peer.to_string(),
            via: view.via.map(|via| via.to_string()),
            poem: view.poem.as_ref().map(|poem| poem.display().to_string()),
            poem_bytes: view.poem_bytes,
            bytes_sent: view.bytes,
            unsent_bytes: view.unsent,
            chunks: view.chunks,
            connected_s: secs(now.saturating_duration_since(view.accepted)),
            ends_in_s: (view.poem_bytes)
                .and_then(|size| expected_end(pacing, view.accepted, size))
                .map(|end| secs(end.saturating_duration_since(now))),
        }
    }

    fn html(&self, page: &mut String) {
        let peer = match &self.via {
            Some(via) => format!("{} via {via}", self.peer),
            None => self.peer.clone(),
        };
        let size = self.poem_bytes.unwrap_or(0);
        let shown = |secs: Option<f64>| secs.map_or("-".into(), |s| format!("{s:.1} s"));
        let unsent = self.unsent_bytes.map_or("-".into(), |n| n.to_string());
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{}</td><td class=\"peer\">{}</td><td class=\"poem\">{}</td>\
             <td class=\"num sent\">{} / {size}</td><td class=\"num\">{unsent}</td>\
             <td><progress value=\"{}\" max=\"{}\"></progress></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            self.worker,
            escape(&peer),
            escape(self.poem.as_deref().unwrap_or_default()),
            self.bytes_sent,
            self.bytes_sent.min(size),
            size.max(1),
            self.chunks,
            shown(Some(self.connected_s)),
            shown(self.ends_in_s),
        );
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

/// `text` with the characters that mean something in HTML, in text or in a quoted attribute,
/// written as character references.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>poetry-serve status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { padding: 0.2em 0.7em; text-align: left; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#overview th { font-weight: normal; color: #666; }
progress { width: 10em; }
#updated { color: #666; font-size: 0.9em; }
</style>
</head>
<body>
<h1>poetry-serve</h1>
<p id="updated">as served; refreshed every second while script runs</p>
<main>
"##;

const POOL_HEAD: &str = r##"</tbody></table>
<h2>Pool: one row per busy worker</h2>
<table id="pool">
<thead><tr><th>worker</th><th>peer</th><th>poem</th><th>bytes sent</th><th>in the send queue</th><th>progress</th><th>chunks</th><th>connected</th><th>ends in</th></tr></thead>
<tbody>
"##;

const SOURCES_HEAD: &str = r##"</tbody></table>
<h2>Sources holding the most connections</h2>
<table id="sources">
<thead><tr><th>source (IPv4 address or IPv6 /64)</th><th>connections</th></tr></thead>
<tbody>
"##;

/// The closing tags, and the script that replaces the main part with the page as served again:
/// the page is made once, by the server, and the script only swaps it in.
const TAIL: &str = r##"</tbody></table>
</main>
<script>
"use strict";
async function refresh() {
  try {
    const page = new DOMParser().parseFromString(await (await fetch(location.href, { cache: "no-store" })).text(), "text/html");
    document.querySelector("main").replaceWith(page.querySelector("main"));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) { document.getElementById("updated").textContent = "not updated: " + e; }
}
setInterval(refresh, 1000);
</script>
</body>
</html>
"##;

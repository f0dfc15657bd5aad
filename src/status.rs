//! The live status page of `--metrics`: `GET /`, HTML, and `GET /status.json`, the same
//! figures as JSON (the README documents its fields).
//!
//! Both are read when asked for, from the counters, the pool's load and each worker's slot on
//! the [`Board`](crate::progress::Board), so a page costs the connections being served
//! nothing but the slot locks it takes, one at a time, to read who each worker serves.
//!
//! The page is whole without script, rows and all; a few lines of inline script then fetch
//! `/status.json` every second and refill it, writing every name as text. Every name the
//! server did not make up (poem paths, addresses) is HTML-escaped in the page and
//! JSON-escaped in the JSON, so a poem called `<script>…</script>.txt` shows as its name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::Answer;
use crate::limit::Source;
use crate::pacing::Pacing;
use crate::progress::Row;
use crate::shared::Shared;
use crate::stats::Report;

/// How many sources the page lists, those holding the most connections first.
const TOP_SOURCES: usize = 10;

/// `GET /`: the page.
pub fn page(shared: &Shared) -> Answer {
    Answer {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: Status::of(shared).html(),
    }
}

/// `GET /status.json`: the page's figures.
pub fn json(shared: &Shared) -> Answer {
    Answer {
        status: 200,
        content_type: "application/json",
        body: Status::of(shared).json(),
    }
}

/// Everything the page shows, read at one moment.
struct Status {
    now: Instant,
    report: Report,
    workers: usize,
    listening: Vec<SocketAddr>,
    poems: Vec<String>,
    pacing: Pacing,
    rows: Vec<Row>,
}

impl Status {
    fn of(shared: &Shared) -> Status {
        Status {
            now: Instant::now(),
            report: shared.report(),
            workers: shared.config.workers.get(),
            listening: shared.listening.clone(),
            poems: (shared.poems.current().iter())
                .map(|poem| poem.path().display().to_string())
                .collect(),
            pacing: shared.config.pacing,
            rows: shared.board.rows(),
        }
    }

    /// The sources holding the most connections now, with their counts: at most
    /// [`TOP_SOURCES`], most first, then by address.
    fn top_sources(&self) -> Vec<(String, usize)> {
        let mut held: HashMap<Source, usize> = HashMap::new();
        for row in &self.rows {
            *held.entry(Source::of(row.client.peer.ip())).or_default() += 1;
        }
        let mut top: Vec<(String, usize)> = (held.into_iter())
            .map(|(source, count)| (source.to_string(), count))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_SOURCES);
        top
    }

    /// When the last chunk of a poem of `size` bytes started at `start` is due, on average
    /// (chunk sizes and jitter drawn at random even out); `None` when unpaced.
    fn expected_end(&self, start: Instant, size: u64) -> Option<Instant> {
        let pacing = &self.pacing;
        if !pacing.is_paced() {
            return None;
        }
        let chunk = (pacing.chunk().get() as u64 + pacing.chunk_max().get() as u64) / 2;
        let chunks = size.div_ceil(chunk.max(1));
        Some(pacing.due(start, chunks.saturating_sub(1)))
    }

    fn json(&self) -> String {
        let report = &self.report;
        let outcomes: serde_json::Map<String, Value> = (report.kinds())
            .map(|kind| (kind.label().to_string(), report.ended(kind).into()))
            .collect();
        // The rows by hand, thousands of them: a map per row would cost more than the rest.
        let mut connections = String::with_capacity(256 * self.rows.len() + 2);
        connections.push('[');
        for (at, row) in self.rows.iter().enumerate() {
            if at > 0 {
                connections.push(',');
            }
            self.json_row(&mut connections, row);
        }
        connections.push(']');
        let sources: Vec<Value> = (self.top_sources().into_iter())
            .map(|(source, count)| json!({ "source": source, "connections": count }))
            .collect();
        let document = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": secs(report.uptime),
            "listening": self.listening.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "poems": self.poems,
            "pacing": {
                "num_bytes": self.pacing.chunk().get(),
                "num_bytes_max": self.pacing.chunk_max().get(),
                "delay_s": self.pacing.delay().as_secs_f64(),
                "jitter_s": self.pacing.jitter().as_secs_f64(),
            },
            "workers": { "busy": report.busy, "total": self.workers },
            "queued": report.queued,
            "accepted": report.accepted,
            "aborted": report.aborted,
            "bytes_sent": report.bytes,
            "outcomes": outcomes,
            "connections": [],
            "top_sources": sources,
        });
        // Each key appears once, and a quote inside a string is escaped, so this is the
        // one place the rows go.
        document.to_string().replacen(
            "\"connections\":[]",
            &format!("\"connections\":{connections}"),
            1,
        )
    }

    /// One connection as a JSON object, its names escaped by serde_json.
    fn json_row(&self, out: &mut String, row: &Row) {
        let client = &row.client;
        let poem = client.poem.as_ref();
        let text = |value: Option<String>| {
            value.map_or_else(|| "null".to_string(), |v| Value::from(v).to_string())
        };
        let ends_in = poem
            .and_then(|(_, size)| self.expected_end(client.start, *size))
            .map(|end| secs(end.saturating_duration_since(self.now)));
        let _ = write!(
            out,
            "{{\"worker\":{},\"peer\":\"{}\",\"via\":{},\"poem\":{},\"poem_bytes\":{},\
             \"bytes_sent\":{},\"chunks\":{},\"connected_s\":{},\"ends_in_s\":{}}}",
            row.worker,
            client.peer,
            text(client.via.map(|via| via.to_string())),
            text(poem.map(|(poem, _)| poem.path().display().to_string())),
            poem.map_or_else(|| "null".to_string(), |(_, size)| size.to_string()),
            row.bytes,
            row.chunks,
            secs(self.now.saturating_duration_since(client.start)),
            ends_in.map_or_else(|| "null".to_string(), |s| s.to_string()),
        );
    }

    fn html(&self) -> String {
        let report = &self.report;
        let mut page = String::with_capacity(4096 + 400 * self.rows.len());
        page.push_str(HEAD);
        // In the JSON's order, by name, so the script's refills keep it.
        let mut outcomes: Vec<String> = (report.kinds())
            .map(|kind| format!("{} {}", kind.label(), report.ended(kind)))
            .collect();
        outcomes.sort();
        let outcomes = outcomes.join(", ");
        let pacing = pacing_text(&self.pacing);
        let overview = [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("uptime", format!("{:.1} s", report.uptime.as_secs_f64())),
            ("listening", join(&self.listening)),
            ("poems", self.poems.join(", ")),
            ("pacing", pacing),
            (
                "workers busy",
                format!("{} of {}", report.busy, self.workers),
            ),
            ("queued", report.queued.to_string()),
            ("accepted", report.accepted.to_string()),
            ("outcomes", outcomes),
        ];
        page.push_str("<table id=\"overview\"><tbody>\n");
        for (name, value) in overview {
            let _ = writeln!(
                page,
                "<tr><th>{name}</th><td id=\"{}\">{}</td></tr>",
                name.replace(' ', "-"),
                escape(&value)
            );
        }
        page.push_str(POOL_HEAD);
        for row in &self.rows {
            self.html_row(&mut page, row);
        }
        page.push_str(SOURCES_HEAD);
        for (source, count) in self.top_sources() {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{count}</td></tr>",
                escape(&source)
            );
        }
        page.push_str(TAIL);
        page
    }

    fn html_row(&self, page: &mut String, row: &Row) {
        let client = &row.client;
        let peer = match client.via {
            Some(via) => format!("{} via {via}", client.peer),
            None => client.peer.to_string(),
        };
        let (poem, size) = match &client.poem {
            Some((poem, size)) => (poem.path().display().to_string(), *size),
            None => (String::new(), 0),
        };
        let ends = client
            .poem
            .as_ref()
            .and_then(|(_, size)| self.expected_end(client.start, *size))
            .map_or(String::from("-"), |end| {
                format!("{:.1} s", secs(end.saturating_duration_since(self.now)))
            });
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{}</td><td class=\"peer\">{}</td><td class=\"poem\">{}</td>\
             <td class=\"num sent\">{} / {size}</td><td><progress value=\"{}\" max=\"{}\"></progress></td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.1} s</td><td class=\"num\">{ends}</td></tr>",
            row.worker,
            escape(&peer),
            escape(&poem),
            row.bytes,
            row.bytes.min(size),
            size.max(1),
            row.chunks,
            secs(self.now.saturating_duration_since(client.start)),
        );
    }
}

/// Seconds, to a tenth.
fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pacing in words, as the page shows it.
fn pacing_text(pacing: &Pacing) -> String {
    if !pacing.is_paced() {
        return "unpaced (--delay 0)".into();
    }
    let (chunk, max) = (pacing.chunk().get(), pacing.chunk_max().get());
    let size = if max > chunk {
        format!("{chunk}-{max} bytes")
    } else {
        format!("{chunk} bytes")
    };
    let mut text = format!("{size} every {} s", pacing.delay().as_secs_f64());
    if !pacing.jitter().is_zero() {
        let _ = write!(text, " ± {} s", pacing.jitter().as_secs_f64());
    }
    text
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
"##;

const POOL_HEAD: &str = r##"</tbody></table>
<h2>Pool: one row per busy worker</h2>
<table id="pool">
<thead><tr><th>worker</th><th>peer</th><th>poem</th><th>bytes sent</th><th>progress</th><th>chunks</th><th>connected</th><th>ends in</th></tr></thead>
<tbody>
"##;

const SOURCES_HEAD: &str = r##"</tbody></table>
<h2>Sources holding the most connections</h2>
<table id="sources">
<thead><tr><th>source (IPv4 address or IPv6 /64)</th><th>connections</th></tr></thead>
<tbody>
"##;

/// The closing tags, and the script that refills the page from `/status.json`. It writes
/// every value with `textContent`, never as HTML.
const TAIL: &str = r##"</tbody></table>
<script>
"use strict";
const cell = (tr, text, cls) => { const td = tr.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; };
const fill = (id, rows, draw) => { const body = document.querySelector(id + " tbody"); body.replaceChildren(); rows.forEach(r => draw(body.insertRow(), r)); };
const secs = s => s === null ? "-" : s.toFixed(1) + " s";
function show(s) {
  const p = s.pacing;
  const size = p.num_bytes_max > p.num_bytes ? p.num_bytes + "-" + p.num_bytes_max + " bytes" : p.num_bytes + " bytes";
  const o = { "version": s.version, "uptime": secs(s.uptime_s), "listening": s.listening.join(", "), "poems": s.poems.join(", "),
    "pacing": p.delay_s === 0 ? "unpaced (--delay 0)" : size + " every " + p.delay_s + " s" + (p.jitter_s ? " ± " + p.jitter_s + " s" : ""),
    "workers-busy": s.workers.busy + " of " + s.workers.total, "queued": s.queued, "accepted": s.accepted,
    "outcomes": Object.entries(s.outcomes).map(([k, n]) => k + " " + n).join(", ") };
  for (const [id, text] of Object.entries(o)) document.getElementById(id).textContent = text;
  fill("#pool", s.connections, (tr, c) => {
    cell(tr, c.worker, "num"); cell(tr, c.via ? c.peer + " via " + c.via : c.peer, "peer"); cell(tr, c.poem ?? "", "poem");
    cell(tr, c.bytes_sent + " / " + (c.poem_bytes ?? 0), "num sent");
    const bar = document.createElement("progress"); bar.max = Math.max(c.poem_bytes ?? 0, 1); bar.value = Math.min(c.bytes_sent, bar.max); tr.insertCell().append(bar);
    cell(tr, c.chunks, "num"); cell(tr, secs(c.connected_s), "num"); cell(tr, secs(c.ends_in_s), "num");
  });
  fill("#sources", s.top_sources, (tr, t) => { cell(tr, t.source); cell(tr, t.connections, "num"); });
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
async function refresh() {
  try { const r = await fetch("status.json", { cache: "no-store" }); show(await r.json()); }
  catch (e) { document.getElementById("updated").textContent = "not updated: " + e; }
}
setInterval(refresh, 1000);
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Arc;

    use super::*;
    use crate::poem::Poem;
    use crate::pool::Load;
    use crate::progress::{self, Board};
    use crate::stats::Stats;

    /// A board of `workers` slots, every one busy with a client from its own /64 but the
    /// first ten, halfway through a 1000-byte poem.
    fn busy_board(workers: usize, poem: &Arc<Poem>) -> Board {
        let board = Board::new(workers);
        let start = Instant::now();
        for worker in 0..workers {
            progress::claim(worker);
            let peer: SocketAddr = format!("[2001:db8:{worker:x}::1]:4000").parse().unwrap();
            let shown = board.show(peer, start);
            shown.serving(peer, None, Some(Arc::clone(poem)), 1000);
            shown.sent(500, 50);
            std::mem::forget(shown); // the slot stays busy, as while a poem streams
        }
        board
    }

    /// The page and the JSON with 10,000 busy workers: every row is there; how long the
    /// rendering took is printed, a figure for the README, not a judgement
    /// (`cargo test --release --lib status -- --nocapture`).
    #[test]
    fn ten_thousand_busy_workers_render() {
        const WORKERS: usize = 10_000;
        let file = tempfile::NamedTempFile::new().unwrap();
        let poem = Arc::new(Poem::open(file.path()).unwrap());
        let board = busy_board(WORKERS, &poem);
        let stats = Stats::new(false);
        let pacing = Pacing::new(NonZeroUsize::new(10).unwrap(), Duration::from_millis(700));
        let mut took = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let status = Status {
                now: Instant::now(),
                report: stats.report(&Load::default()),
                workers: WORKERS,
                listening: vec!["127.0.0.1:10000".parse().unwrap()],
                poems: vec![poem.path().display().to_string()],
                pacing,
                rows: board.rows(),
            };
            let gathered = started.elapsed();
            let page = status.html();
            let paged = started.elapsed();
            let json = status.json();
            took.push([gathered, paged - gathered, started.elapsed() - paged]);
            assert_eq!(page.matches("<progress").count(), WORKERS);
            assert_eq!(json.matches("\"worker\":").count(), WORKERS);
            let parsed: Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(
                parsed["connections"].as_array().map(Vec::len),
                Some(WORKERS)
            );
        }
        let median = |part: usize| {
            let mut times: Vec<Duration> = took.iter().map(|t| t[part]).collect();
            times.sort();
            times[times.len() / 2]
        };
        eprintln!(
            "{WORKERS} busy workers, median of 5: slots read in {:.1?}, page rendered in \
             {:.1?}, JSON in {:.1?}",
            median(0),
            median(1),
            median(2)
        );
    }
}

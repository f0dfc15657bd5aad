//! The status page's timeline: one lane per connection over the last minute, drawn as the
//! tutorial draws its tasks (a block where a task runs, a gap where it waits), from the running
//! server. [`Timeline`] is a [`Watch`]er that records each connection's life as it happens:
//! when it arrived, how long it waited in the listen backlog and for a worker, each chunk as it
//! left, and how it ended. `GET /timeline.json` gives the record, `GET /timeline.svg` the
//! picture, which the status page also shows (see [`super::status`]).
//!
//! # Bounds
//!
//! Whatever the number of connections, the recorder holds at most [`LANES`] lanes, each with
//! at most [`MARKS`] marks:
//!
//! - connection `id` has slot `id % LANES`, so the lanes kept are those of the most recent
//!   [`LANES`] connections in accept order; a newer connection takes the slot of the one
//!   [`LANES`] before it, whose later events are then ignored;
//! - a lane's chunks are marked once per [`QUANTUM`]: chunks leaving within the same quantum
//!   add to one mark, so [`MARKS`] marks cover at least the last [`WINDOW`]; older marks are
//!   dropped, while the lane's totals still count their chunks and bytes;
//! - a lane that ended more than [`WINDOW`] ago is no longer shown.
//!
//! That is at most 200 × 600 marks of 16 bytes (under 2 MB) and 200 lanes, allocated as slots
//! are first used and then reused. An event costs one atomic load; for a connection whose lane
//! is kept, one lock of that lane's own mutex (which only its connection's two threads, the
//! page's reader and the connection that takes the slot over ever take) and a constant amount
//! of work. Making a page copies each lane once, under its lock, so it costs the same whatever
//! the number of connections.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use serde::Serialize;

use super::http::Answer;
use crate::faults::Fault;
use crate::outcome::Outcome;
use crate::server::Handle;
use crate::watch::{Event, Watch};

/// The most lanes kept: one per connection, the most recent.
pub const LANES: usize = 200;

/// The most marks a lane keeps.
pub const MARKS: usize = 600;

/// Chunks that leave within one quantum of a lane's life share a mark.
pub const QUANTUM: Duration = Duration::from_millis(100);

/// How far back the timeline shows.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A slot that holds no lane yet.
const NONE: u64 = u64::MAX;

/// The recorder: a [`Watch`] to put in [`crate::Config::watchers`], one per server (a
/// connection is known by its number in its server's accept order).
#[derive(Debug)]
pub struct Timeline {
    /// What every time in the record is counted from.
    epoch: Instant,
    slots: Box<[Slot]>,
}

/// One lane's place. `id` says whose lane it holds, so that the events of a connection whose
/// lane was not kept are turned away without taking the lock.
#[derive(Debug)]
struct Slot {
    id: AtomicU64,
    lane: Mutex<Lane>,
}

/// One connection's life, as recorded.
#[derive(Debug, Clone)]
struct Lane {
    id: u64,
    peer: Option<SocketAddr>,
    accepted: Instant,
    /// In the listen backlog before the accept (and held there by `--accept-delay`).
    waited: Duration,
    taken: Option<(Instant, usize)>,
    ended: Option<(Instant, Outcome)>,
    chunks: u64,
    bytes: u64,
    marks: VecDeque<Mark>,
}

/// The chunks that left within one [`QUANTUM`] of a lane's life.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    /// When the first of them left, in milliseconds since the connection was accepted.
    offset_ms: u32,
    chunks: u32,
    bytes: u64,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::new(Instant::now())
    }
}

impl Timeline {
    /// An empty timeline whose times count from `epoch`.
    pub fn new(epoch: Instant) -> Timeline {
        let slot = |_| Slot { id: AtomicU64::new(NONE), lane: Mutex::new(Lane::empty(epoch)) };
        Timeline { epoch, slots: (0..LANES).map(slot).collect() }
    }

    /// The lanes to show at `now`, in accept order: every lane kept, but those that ended
    /// more than [`WINDOW`] before it; and their marks within the window.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let from = now.checked_sub(WINDOW).unwrap_or(self.epoch);
        let mut lanes: Vec<LaneView> = (self.slots.iter())
            .filter_map(|slot| {
                // Copied out under the lock, so that the lane's thread waits for a copy only.
                let lane = slot.lane.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let shown = lane.id != NONE && lane.ended.is_none_or(|(at, _)| at >= from);
                shown.then(|| LaneView::of(&lane, self.epoch, from))
            })
            .collect();
        lanes.sort_by_key(|lane| lane.id);
        Snapshot {
            now_s: self.secs(now),
            window_s: WINDOW.as_secs_f64(),
            lanes_max: LANES,
            connections: self.connections(),
            lanes,
        }
    }

    /// Connections accepted: the highest number a slot holds, plus one (a slot only ever takes
    /// a newer number, so the newest connection's is always in its slot).
    fn connections(&self) -> u64 {
        let ids = self.slots.iter().map(|slot| slot.id.load(Ordering::Relaxed));
        ids.filter(|&id| id != NONE).max().map_or(0, |id| id + 1)
    }

    /// Seconds from the epoch to `at`, to the millisecond.
    fn secs(&self, at: Instant) -> f64 {
        secs(at.saturating_duration_since(self.epoch))
    }

    fn slot(&self, id: u64) -> &Slot {
        // The remainder is below LANES, the slots' length.
        &self.slots[(id % LANES as u64) as usize]
    }
}

impl Watch for Timeline {
    fn event(&self, id: u64, at: Instant, event: Event) {
        let slot = self.slot(id);
        if let Event::Accepted { peer, waited } = event {
            let mut lane = slot.lane.lock().unwrap_or_else(PoisonError::into_inner);
            // Connections are accepted in order, so a lane here is older: this one replaces it.
            if lane.id == NONE || lane.id < id {
                lane.start(id, peer, at, waited);
                slot.id.store(id, Ordering::Relaxed);
            }
            return;
        }
        if slot.id.load(Ordering::Relaxed) != id {
            return; // its lane was not kept
        }
        let mut lane = slot.lane.lock().unwrap_or_else(PoisonError::into_inner);
        if lane.id != id {
            return; // taken over since the check
        }
        match event {
            Event::Accepted { .. } => {}
            Event::Taken { worker } => lane.taken = Some((at, worker)),
            Event::Chunk { bytes, .. } => lane.chunk(at, bytes as u64),
            Event::Ended { outcome, bytes } => {
                lane.ended = Some((at, outcome));
                lane.bytes = bytes;
            }
        }
    }
}

impl Lane {
    fn empty(epoch: Instant) -> Lane {
        Lane {
            id: NONE,
            peer: None,
            accepted: epoch,
            waited: Duration::ZERO,
            taken: None,
            ended: None,
            chunks: 0,
            bytes: 0,
            marks: VecDeque::new(),
        }
    }

    /// Makes this the lane of connection `id`, keeping the marks' memory for it.
    fn start(&mut self, id: u64, peer: SocketAddr, at: Instant, waited: Duration) {
        let mut marks = std::mem::take(&mut self.marks);
        marks.clear();
        if marks.capacity() < MARKS {
            marks.reserve_exact(MARKS);
        }
        *self = Lane { id, peer: Some(peer), accepted: at, waited, marks, ..Lane::empty(at) };
    }

    /// One chunk of `bytes` left at `at`.
    fn chunk(&mut self, at: Instant, bytes: u64) {
        self.chunks += 1;
        self.bytes += bytes;
        let offset = at.saturating_duration_since(self.accepted).as_millis();
        let offset_ms = u32::try_from(offset).unwrap_or(u32::MAX);
        let quantum = QUANTUM.as_millis() as u32;
        match self.marks.back_mut() {
            Some(last) if last.offset_ms / quantum == offset_ms / quantum => {
                last.chunks = last.chunks.saturating_add(1);
                last.bytes += bytes;
            }
            _ => {
                if self.marks.len() == MARKS {
                    self.marks.pop_front();
                }
                self.marks.push_back(Mark { offset_ms, chunks: 1, bytes });
            }
        }
    }
}

/// What `GET /timeline.json` gives: the lanes shown, in accept order. Times are in seconds
/// since the server started, to the millisecond.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Now.
    pub now_s: f64,
    /// How far back lanes are shown.
    pub window_s: f64,
    /// The most lanes kept.
    pub lanes_max: usize,
    /// Connections accepted since the start.
    pub connections: u64,
    pub lanes: Vec<LaneView>,
}

/// One lane of [`Snapshot`].
#[derive(Debug, Serialize)]
pub struct LaneView {
    /// The connection's number in accept order, from 0.
    pub id: u64,
    /// The client, as the socket names it.
    pub peer: String,
    /// When the client's connect completed: `accepted_s` less `waited_s`.
    pub arrived_s: f64,
    /// When the server accepted it.
    pub accepted_s: f64,
    /// How long it waited in the listen backlog before the accept.
    pub waited_s: f64,
    /// When a worker took it; `None` while it waits for one.
    pub taken_s: Option<f64>,
    /// From the accept to the worker.
    pub queued_s: Option<f64>,
    pub worker: Option<usize>,
    /// Chunks and poem bytes sent so far, marks dropped or not.
    pub chunks: u64,
    pub bytes: u64,
    /// Within the window: `[when the first left, chunks, bytes]`, one per [`QUANTUM`] in which
    /// chunks left.
    pub marks: Vec<(f64, u32, u64)>,
    /// When it ended, and how ([`Outcome::label`]); `None` while it runs.
    pub ended_s: Option<f64>,
    pub outcome: Option<&'static str>,
}

impl LaneView {
    fn of(lane: &Lane, epoch: Instant, from: Instant) -> LaneView {
        let at = |instant: Instant| secs(instant.saturating_duration_since(epoch));
        let accepted_s = at(lane.accepted);
        LaneView {
            id: lane.id,
            peer: lane.peer.map(|peer| peer.to_string()).unwrap_or_default(),
            // Before the epoch, if it waited from before the server started: below zero.
            arrived_s: secs3(accepted_s - secs(lane.waited)),
            accepted_s,
            waited_s: secs(lane.waited),
            taken_s: lane.taken.map(|(taken, _)| at(taken)),
            queued_s: lane.taken.map(|(taken, _)| secs(taken - lane.accepted)),
            worker: lane.taken.map(|(_, worker)| worker),
            chunks: lane.chunks,
            bytes: lane.bytes,
            marks: (lane.marks.iter())
                .map(|mark| (lane.accepted + Duration::from_millis(mark.offset_ms.into()), mark))
                .filter(|(left, _)| *left >= from)
                .map(|(left, mark)| (at(left), mark.chunks, mark.bytes))
                .collect(),
            ended_s: lane.ended.map(|(ended, _)| at(ended)),
            outcome: lane.ended.map(|(_, outcome)| outcome.label()),
        }
    }
}

/// `GET /timeline.json` or `GET /timeline.svg`.
pub fn answer(path: &str, timeline: &Timeline, handle: &Handle) -> Answer {
    let snapshot = timeline.snapshot(Instant::now());
    match path {
        "/timeline.json" => Answer {
            status: 200,
            content_type: "application/json",
            // Plain data throughout: serialising cannot fail.
            body: serde_json::to_vec(&snapshot).unwrap_or_default().into(),
        },
        _ => Answer {
            status: 200,
            content_type: "image/svg+xml; charset=utf-8",
            body: svg(&snapshot, handle).into(),
        },
    }
}

/// The picture of `snapshot`: a standalone SVG, which the status page also puts inline.
pub fn svg(snapshot: &Snapshot, handle: &Handle) -> String {
    let waiting = handle.backlog().map_or(0, |(waiting, _)| waiting);
    // Plain data throughout: rendering cannot fail.
    Figure::of(snapshot, &title(handle), waiting).render().unwrap_or_default()
}

/// What the picture's first line says: where, what and how fast the server serves.
fn title(handle: &Handle) -> String {
    let addrs: Vec<String> = handle.local_addrs().iter().map(ToString::to_string).collect();
    let poems = handle.poems();
    let poems = match poems.as_slice() {
        [one] => one
            .file_name()
            .map_or_else(|| one.display().to_string(), |name| name.to_string_lossy().into_owned()),
        many => format!("{} poems", many.len()),
    };
    let pacing = handle.behaviour().pacing;
    let pace = match pacing.is_paced() {
        false => "unpaced".to_string(),
        true => {
            let bytes = match pacing.chunk_max > pacing.chunk {
                true => format!("{}-{}", pacing.chunk, pacing.chunk_max),
                false => pacing.chunk.to_string(),
            };
            format!("{bytes} bytes every {} s", pacing.delay.as_secs_f64())
        }
    };
    let workers = handle.config().workers.get();
    let workers = if workers == 1 { "1 worker".to_string() } else { format!("{workers} workers") };
    format!("{} · {poems} · {pace} · {workers}", addrs.join(", "))
}

// The picture's geometry, in the SVG's own units: it is drawn 1200 wide and scaled to the page.
const WIDTH: f64 = 1200.0;
/// Where the lanes' labels go.
const LEFT: f64 = 200.0;
/// Room for the last outcome's word.
const RIGHT: f64 = 150.0;
const PLOT: f64 = WIDTH - LEFT - RIGHT;
const TOP: f64 = 76.0;
/// The height all lanes share when there are many; a few lanes get [`PITCH_MAX`] each.
const LANES_HEIGHT: f64 = 640.0;
const PITCH_MAX: f64 = 44.0;
const PITCH_MIN: f64 = 4.0;
/// Lanes at least this tall get words: their number, worker and outcome.
const PITCH_WORDS: f64 = 22.0;
/// Marks closer than this are drawn as one block, as the tutorial draws a task that runs.
const MERGE: f64 = 3.0;
/// A character of the 18-unit font, on average, for laying out the legend.
const CHAR: f64 = 10.0;

/// Everything the template draws, placed.
#[derive(Template)]
#[template(path = "timeline.svg")]
struct Figure {
    height: f64,
    title: String,
    /// Says in words what the picture shows, for those who cannot see it.
    summary: String,
    ticks: Vec<(f64, String)>,
    plot_top: f64,
    plot_bottom: f64,
    plot_right: f64,
    lanes: Vec<Shape>,
    /// Below the lanes: how many are shown, of how many, and who waits unseen.
    note: String,
    note_y: f64,
    legend: Vec<Key>,
}

/// One lane, placed.
struct Shape {
    id: u64,
    chunks: u64,
    outcome: &'static str,
    /// The middle of the lane, the height of its bars and of its line.
    y: f64,
    bar: f64,
    line: f64,
    /// Its number and worker, at the left, if the lane is tall enough; its number alone every
    /// few lanes if not.
    words: Option<(String, String)>,
    font: f64,
    /// The wait, hatched.
    wait: Option<Wait>,
    /// The connection served, a thin line: x and width.
    open: Option<(f64, f64)>,
    /// A path of the marks, each a tick, or a block where they run together.
    marks: String,
    /// How it ended: the glyph's path, its colour, and its word with where it goes.
    end: Option<Glyph>,
}

/// The time a connection waited to be served.
struct Wait {
    x: f64,
    width: f64,
    /// What it says, where, and the text's anchor there: inside the hatching or just before
    /// it, where there is room.
    words: Option<(f64, &'static str, String)>,
}

struct Glyph {
    path: String,
    colour: &'static str,
    filled: bool,
    word: Option<(f64, &'static str)>,
}

/// One entry of the legend: what it shows, where.
struct Key {
    x: f64,
    y: f64,
    kind: KeyKind,
    text: String,
}

enum KeyKind {
    Waiting,
    Mark,
    Open,
    End(Glyph),
}

/// How each outcome is drawn: a shape and a colour, never the colour alone, and its word.
fn look(label: &str) -> (Look, &'static str) {
    // Every outcome by name, so that a new one must be given its look here.
    match Outcome::all().find(|outcome| outcome.label() == label) {
        Some(Outcome::Complete) => (Look::Circle, "#1a7f37"),
        Some(Outcome::UncleanClose) => (Look::Ring, "#1a7f37"),
        Some(Outcome::ClientClosed) => (Look::Cross, "#bc4c00"),
        Some(Outcome::Fault(Fault::Reset)) => (Look::Triangle, "#cf222e"),
        Some(Outcome::Fault(Fault::Close)) => (Look::Bar, "#cf222e"),
        Some(Outcome::Fault(Fault::Stall)) => (Look::Pause, "#8250df"),
        Some(Outcome::TimedOut) => (Look::Diamond, "#8a5a00"),
        Some(Outcome::Error) => (Look::Square, "#cf222e"),
        Some(Outcome::Shutdown) => (Look::Square, "#444444"),
        // Turned away unserved.
        Some(Outcome::Rejected | Outcome::BadHeader | Outcome::Fault(Fault::Refuse)) | None => {
            (Look::Slash, "#57606a")
        }
    }
}

#[derive(Clone, Copy)]
enum Look {
    Circle,
    Ring,
    Cross,
    Triangle,
    Bar,
    Pause,
    Diamond,
    Square,
    Slash,
}

impl Look {
    /// The glyph as a path centred on (x, y), `size` across; and whether it is filled (an
    /// outline otherwise, drawn with a stroke).
    fn path(self, x: f64, y: f64, size: f64) -> (String, bool) {
        let h = r1(size / 2.0);
        let (x, y) = (r1(x), r1(y));
        let s = r1(size);
        let t = r1(size / 3.0);
        match self {
            // Two arcs make a circle.
            Look::Circle | Look::Ring => (
                format!("M{} {y}a{h} {h} 0 1 0 {s} 0a{h} {h} 0 1 0 -{s} 0z", r1(x - h)),
                matches!(self, Look::Circle),
            ),
            Look::Cross => (format!("M{} {}l{s} {s}m0 -{s}l-{s} {s}", r1(x - h), r1(y - h)), false),
            Look::Triangle => (format!("M{x} {}l{h} {s}h-{s}z", r1(y - h)), true),
            Look::Bar => (format!("M{} {}h{t}v{s}h-{t}z", r1(x - t / 2.0), r1(y - h)), true),
            Look::Pause => (
                format!(
                    "M{} {}h{t}v{s}h-{t}zM{} {}h{t}v{s}h-{t}z",
                    r1(x - h),
                    r1(y - h),
                    r1(x + h - t),
                    r1(y - h)
                ),
                true,
            ),
            Look::Diamond => (format!("M{x} {}l{h} {h}l-{h} {h}l-{h} -{h}z", r1(y - h)), true),
            Look::Square => (format!("M{} {}h{s}v{s}h-{s}z", r1(x - h), r1(y - h)), true),
            Look::Slash => (
                format!(
                    "M{} {y}a{h} {h} 0 1 0 {s} 0a{h} {h} 0 1 0 -{s} 0zM{} {}l{s} -{s}",
                    r1(x - h),
                    r1(x - h * 0.7),
                    r1(y + h * 0.7)
                ),
                false,
            ),
        }
    }
}

impl Figure {
    fn of(snapshot: &Snapshot, title: &str, waiting_in_backlog: u64) -> Figure {
        let now = snapshot.now_s;
        let from = now - snapshot.window_s;
        let x = |t: f64| r1(LEFT + PLOT * ((t - from) / snapshot.window_s).clamp(0.0, 1.0));
        let n = snapshot.lanes.len();
        let pitch = (LANES_HEIGHT / n.max(1) as f64).clamp(PITCH_MIN, PITCH_MAX);
        let words = pitch >= PITCH_WORDS;
        let font = if pitch >= 30.0 { 20.0 } else { 16.0 };
        let bar = r1((pitch * 0.66).max(2.0));
        let line = r1((pitch * 0.12).clamp(1.0, 3.0));
        // Lanes too thin for words get their number every few lanes, to find one's place.
        let every = (PITCH_WORDS / pitch).ceil() as usize;
        let lanes: Vec<Shape> = (snapshot.lanes.iter().enumerate())
            .map(|(row, lane)| {
                let y = r1(TOP + pitch * (row as f64 + 0.5));
                let waited_until = lane.taken_s.unwrap_or(now);
                let wait = (waited_until - lane.arrived_s >= 0.0005).then(|| {
                    let (x0, x1) = (x(lane.arrived_s), x(waited_until));
                    let what = format!("waited {:.1} s", waited_until - lane.arrived_s);
                    // Inside the hatching if it fits, else just before it, else not at all.
                    let room = what.chars().count() as f64 * CHAR * 0.9;
                    // A wait too short to show in tenths of a second is drawn, not named.
                    let words = match words && waited_until - lane.arrived_s >= 0.05 {
                        true if x1 - x0 >= room + 12.0 => Some((r1(x0 + 6.0), "start", what)),
                        true if x0 - LEFT >= room + 8.0 => Some((r1(x0 - 6.0), "end", what)),
                        _ => None,
                    };
                    Wait { x: x0, width: r1(x1 - x0), words }
                });
                let open = lane.taken_s.map(|taken| {
                    let end = lane.ended_s.unwrap_or(now);
                    (x(taken), r1(x(end) - x(taken)))
                });
                let end = lane.ended_s.zip(lane.outcome).map(|(ended, outcome)| {
                    let (shape, colour) = look(outcome);
                    let size = (pitch * 0.66).min(24.0);
                    let (path, filled) = shape.path(x(ended), y, size);
                    let word = words.then(|| (r1(x(ended) + size), outcome));
                    Glyph { path, colour, filled, word }
                });
                Shape {
                    id: lane.id,
                    chunks: lane.chunks,
                    outcome: lane.outcome.unwrap_or("running"),
                    y,
                    bar,
                    words: (words || row.is_multiple_of(every)).then(|| {
                        let worker = match lane.worker {
                            _ if !words => String::new(),
                            Some(worker) => format!("worker {worker}"),
                            None => "waiting".to_string(),
                        };
                        (format!("#{}", lane.id + 1), worker)
                    }),
                    line,
                    font,
                    wait,
                    open,
                    marks: marks_path(lane.marks.iter().map(|&(at, _, _)| x(at)), y, bar),
                    end,
                }
            })
            .collect();
        let plot_bottom = r1(TOP + pitch * n.max(1) as f64);
        let ticks = (0..=snapshot.window_s as u64 / 10)
            .map(|k| {
                let ago = snapshot.window_s - 10.0 * k as f64;
                let label = if ago < 0.5 { "now".to_string() } else { format!("−{ago:.0} s") };
                (x(now - ago), label)
            })
            .collect();
        let mut note = match (n, snapshot.connections) {
            (0, _) => "No connection in the last minute.".to_string(),
            (n, all) if all as usize > n && n == snapshot.lanes_max => {
                format!("The {n} most recent of {} connections.", thousands(all))
            }
            (1, _) => "1 connection in the last minute.".to_string(),
            (n, _) => format!("{n} connections in the last minute."),
        };
        if waiting_in_backlog > 0 {
            note += &format!(
                " {waiting_in_backlog} more waiting in the listen backlog: their lanes begin \
                 when a worker is free to accept them."
            );
        }
        let note_y = plot_bottom + 34.0;
        let legend = legend(&snapshot.lanes, note_y + 38.0);
        let legend_bottom = legend.last().map_or(note_y, |key| key.y);
        let summary = format!(
            "{note} Each lane is a connection: hatched while it waits, a tick for each chunk \
             sent, a shape and a word for how it ended."
        );
        Figure {
            height: legend_bottom + 16.0,
            title: title.to_string(),
            summary,
            ticks,
            plot_top: TOP - 6.0,
            plot_bottom,
            plot_right: LEFT + PLOT,
            legend,
            lanes,
            note,
            note_y,
        }
    }
}

/// The legend, in rows from `y` down: the waiting, a chunk, the connection, then each way
/// the lanes shown ended.
fn legend(lanes: &[LaneView], y: f64) -> Vec<Key> {
    let mut outcomes: Vec<&'static str> = lanes.iter().filter_map(|lane| lane.outcome).collect();
    outcomes.sort_unstable();
    outcomes.dedup();
    let (mut x, mut y) = (0.0, y);
    let mut keys = Vec::new();
    let mut add = |kind: KeyKind, text: String| {
        let width = 34.0 + text.len() as f64 * CHAR + 26.0;
        if x > 0.0 && x + width > WIDTH {
            (x, y) = (0.0, y + 32.0);
        }
        keys.push(Key { x: r1(x), y, kind, text });
        x += width;
    };
    add(KeyKind::Waiting, "waiting to be served".into());
    add(KeyKind::Mark, "a chunk sent".into());
    add(KeyKind::Open, "connected".into());
    for outcome in outcomes {
        let (shape, colour) = look(outcome);
        let (path, filled) = shape.path(13.0, -9.0, 18.0);
        add(KeyKind::End(Glyph { path, colour, filled, word: None }), outcome.into());
    }
    keys
}

/// The marks at `xs` (in order) as one path: a tick each, or one block for marks closer
/// than [`MERGE`], `bar` high around `y`.
fn marks_path(xs: impl Iterator<Item = f64>, y: f64, bar: f64) -> String {
    use std::fmt::Write as _;
    let mut path = String::new();
    let top = r1(y - bar / 2.0);
    // Each block after the first moves from the one before (a closed path's end is its
    // start): shorter than placing each anew, with 200 lanes of ticks on a page.
    let mut previous: Option<f64> = None;
    let mut block = |first: f64, last: f64| {
        let (x0, w) = (r1(first - 1.0), r1(last - first + 2.0));
        // Writing to a String cannot fail.
        let _ = match previous {
            None => write!(path, "M{x0} {top}h{w}v{bar}h-{w}z"),
            Some(before) => write!(path, "m{} 0h{w}v{bar}h-{w}z", r1(x0 - before)),
        };
        previous = Some(x0);
    };
    let mut run: Option<(f64, f64)> = None;
    for x in xs {
        run = match run {
            Some((first, last)) if x - last < MERGE => Some((first, x)),
            Some((first, last)) => {
                block(first, last);
                Some((x, x))
            }
            None => Some((x, x)),
        };
    }
    if let Some((first, last)) = run {
        block(first, last);
    }
    path
}

/// `n` with its thousands set apart: 10,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, digit) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Seconds, to the millisecond.
fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Seconds, to the millisecond, from a sum of such.
fn secs3(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// To a tenth of a unit: short numbers in the SVG.
fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Fault;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A timeline that has seen one connection: waited 2 s in the backlog, taken 0.5 s after
    /// its accept, 3 chunks 1 s apart, then complete.
    #[test]
    fn a_lane_records_the_wait_each_chunk_and_the_end() {
        let epoch = Instant::now();
        let t = |s: f64| epoch + Duration::from_secs_f64(s);
        let timeline = Timeline::new(epoch);
        let waited = Duration::from_secs(2);
        timeline.event(0, t(3.0), Event::Accepted { peer: peer(5000), waited });
        timeline.event(0, t(3.5), Event::Taken { worker: 7 });
        for k in 0..3 {
            let at = t(3.5 + k as f64);
            timeline.event(0, at, Event::Chunk { bytes: 10, late: Duration::ZERO });
        }
        timeline.event(0, t(6.0), Event::Ended { outcome: Outcome::Complete, bytes: 30 });
        let snapshot = timeline.snapshot(t(7.0));
        assert_eq!(snapshot.connections, 1);
        let [lane] = snapshot.lanes.as_slice() else { panic!("{snapshot:?}") };
        assert_eq!(lane.peer, "127.0.0.1:5000");
        assert_eq!((lane.arrived_s, lane.accepted_s, lane.waited_s), (1.0, 3.0, 2.0));
        assert_eq!((lane.taken_s, lane.queued_s, lane.worker), (Some(3.5), Some(0.5), Some(7)));
        assert_eq!(lane.marks, [(3.5, 1, 10), (4.5, 1, 10), (5.5, 1, 10)]);
        assert_eq!((lane.chunks, lane.bytes), (3, 30));
        assert_eq!((lane.ended_s, lane.outcome), (Some(6.0), Some("complete")));
    }

    /// Chunks within one quantum share a mark; a lane keeps MARKS marks at most, while its
    /// totals count every chunk.
    #[test]
    fn a_lane_keeps_at_most_marks_marks_and_counts_every_chunk() {
        let epoch = Instant::now();
        let timeline = Timeline::new(epoch);
        let waited = Duration::ZERO;
        timeline.event(0, epoch, Event::Accepted { peer: peer(1), waited });
        timeline.event(0, epoch, Event::Taken { worker: 0 });
        // Four chunks per quantum, for 10 × MARKS quanta.
        let chunks = 4 * 10 * MARKS as u64;
        for k in 0..chunks {
            let at = epoch + QUANTUM * (k / 4) as u32 + Duration::from_millis(k % 4);
            timeline.event(0, at, Event::Chunk { bytes: 5, late: Duration::ZERO });
        }
        let lane = timeline.slot(0).lane.lock().unwrap().clone();
        assert_eq!(lane.marks.len(), MARKS);
        assert!(lane.marks.capacity() < 2 * MARKS, "{}", lane.marks.capacity());
        assert!(lane.marks.iter().all(|mark| (mark.chunks, mark.bytes) == (4, 20)));
        let last = lane.marks.back().unwrap().offset_ms;
        assert_eq!(last as u128, (QUANTUM * (10 * MARKS as u32 - 1)).as_millis());
        assert_eq!((lane.chunks, lane.bytes), (chunks, 5 * chunks));
        // The window shows only its own marks: the last WINDOW / QUANTUM quanta.
        let now = epoch + QUANTUM * 10 * MARKS as u32;
        let shown = &timeline.snapshot(now).lanes[0];
        let in_window = (WINDOW.as_millis() / QUANTUM.as_millis()) as usize;
        assert_eq!(shown.marks.len(), in_window);
    }

    /// Past LANES connections, the oldest lanes give way: only the most recent LANES are
    /// kept, and the events of the others are ignored; lanes ended before the window go.
    #[test]
    fn only_the_most_recent_lanes_are_kept() {
        let epoch = Instant::now();
        let timeline = Timeline::new(epoch);
        let connections = 50 * LANES as u64;
        for id in 0..connections {
            let at = epoch + Duration::from_millis(id);
            timeline.event(id, at, Event::Accepted { peer: peer(2), waited: Duration::ZERO });
            timeline.event(id, at, Event::Taken { worker: 0 });
        }
        // Events for a connection whose slot a newer one took change nothing.
        let before = timeline.slot(0).lane.lock().unwrap().clone();
        timeline.event(0, epoch, Event::Chunk { bytes: 1, late: Duration::ZERO });
        let outcome = Outcome::Fault(Fault::Reset);
        timeline.event(0, epoch, Event::Ended { outcome, bytes: 1 });
        let after = timeline.slot(0).lane.lock().unwrap().clone();
        assert_eq!((before.id, before.chunks), (after.id, after.chunks));
        assert_eq!(after.ended, None);

        let now = epoch + Duration::from_millis(connections);
        let snapshot = timeline.snapshot(now);
        assert_eq!(snapshot.connections, connections);
        let ids: Vec<u64> = snapshot.lanes.iter().map(|lane| lane.id).collect();
        let recent: Vec<u64> = (connections - LANES as u64..connections).collect();
        assert_eq!(ids, recent);

        // Ended long ago: no longer shown.
        let last = connections - 1;
        let outcome = Outcome::ClientClosed;
        timeline.event(last, now, Event::Ended { outcome, bytes: 0 });
        let later = timeline.snapshot(now + WINDOW + Duration::from_secs(1));
        assert_eq!(later.lanes.len(), LANES - 1);
        assert!(later.lanes.iter().all(|lane| lane.id != last));
    }

    /// The picture has a lane for each connection, with its marks, its wait and its end,
    /// each end drawn with a shape and its word as well as a colour.
    #[test]
    fn the_picture_draws_each_lane() {
        let epoch = Instant::now();
        let t = |s: f64| epoch + Duration::from_secs_f64(s);
        let timeline = Timeline::new(epoch);
        for (id, outcome) in [(0, Outcome::Complete), (1, Outcome::Fault(Fault::Stall))] {
            let at = t(20.0 + 10.0 * id as f64);
            let waited = Duration::from_secs(5 + 10 * id);
            timeline.event(id, at, Event::Accepted { peer: peer(3), waited });
            timeline.event(id, at, Event::Taken { worker: id as usize });
            for k in 0..5 {
                let at = at + Duration::from_secs(k);
                timeline.event(id, at, Event::Chunk { bytes: 10, late: Duration::ZERO });
            }
            timeline.event(id, at + Duration::from_secs(5), Event::Ended { outcome, bytes: 50 });
        }
        let svg = Figure::of(&timeline.snapshot(t(50.0)), "<a title>", 3).render().unwrap();
        assert_eq!(svg.matches(r#"<g class="lane""#).count(), 2, "{svg}");
        assert!(svg.contains(r#"data-id="1" data-chunks="5" data-outcome="stalled""#), "{svg}");
        // Chunks 1 s apart are ticks of their own: five in each lane.
        let ticks = |path: &str| path.matches(['M', 'm']).count();
        let marks: Vec<usize> = (svg.split(r#"class="marks" d=""#).skip(1))
            .map(|rest| ticks(rest.split('"').next().unwrap()))
            .collect();
        assert_eq!(marks, [5, 5], "{svg}");
        // A short wait is named just before its hatching, a long one inside it.
        assert!(svg.contains(r#"text-anchor="end" font-size="18""#), "{svg}");
        assert!(svg.contains(">waited 5.0 s<") && svg.contains(">waited 15.0 s<"), "{svg}");
        assert!(svg.contains(">complete<") && svg.contains(">stalled<"), "{svg}");
        // Named or numbered character references, as the template engine writes them.
        let escaped = svg.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
        assert!(escaped.contains("&lt;a title&gt;") && !svg.contains("<a title>"), "{svg}");
        assert!(svg.contains("3 more waiting in the listen backlog"), "{svg}");
    }

    /// With as many lanes as are kept, every lane is drawn, too thin for words, and every
    /// few lanes is numbered; the note says how many connections there were.
    #[test]
    fn many_lanes_are_drawn_thin_and_numbered_every_few() {
        let epoch = Instant::now();
        let timeline = Timeline::new(epoch);
        let connections = 12_345;
        for id in 0..connections {
            let at = epoch + Duration::from_millis(id);
            timeline.event(id, at, Event::Accepted { peer: peer(4), waited: Duration::ZERO });
            timeline.event(id, at, Event::Taken { worker: id as usize });
            timeline.event(id, at, Event::Chunk { bytes: 10, late: Duration::ZERO });
        }
        let now = epoch + Duration::from_secs(20);
        let svg = Figure::of(&timeline.snapshot(now), "many", 0).render().unwrap();
        assert_eq!(svg.matches(r#"<g class="lane""#).count(), LANES, "{svg}");
        assert_eq!(svg.matches("worker").count(), 0, "{svg}");
        let every = (PITCH_WORDS / PITCH_MIN).ceil() as usize;
        assert_eq!(svg.matches(r#"font-weight="600">#"#).count(), LANES.div_ceil(every));
        // The first lane shown is numbered: the 12,146th connection, counted from 1.
        assert!(svg.contains(">#12146<"), "{svg}");
        assert!(svg.contains("The 200 most recent of 12,345 connections."), "{svg}");
    }
}

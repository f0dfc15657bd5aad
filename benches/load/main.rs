//! poetry-serve's benchmark: the release binary against this machine's floor and the tools a
//! user would pick instead, in one run, as ratios.
//!
//! Run with `benches/run` (which installs the peers if missing) or, with those installed,
//! `cargo bench --bench load -- [SCENARIO...]`. Every scenario runs `BENCH_RUNS` times
//! (default 3) and the median is reported. `POETRY_SERVE_BIN` names the binary to measure
//! instead of the one cargo built; `BENCH_BEFORE` a second one that the crowd, pacing and soak
//! scenarios measure in turns with it. Loopback only; every wait is bounded. Three more modes:
//! `drive` (the rate scenario's clients alone, against a server `benches/profile` started),
//! `drive-crowd` (the crowd's clients alone, against a server started by hand, under `perf` or
//! `strace` say) and `pacer` (the floor for the slow job, a process the crowd scenarios start).
//!
//! # Layout
//! - `scenarios/`: one file per scenario, each a method of [`Bench`] adding rows to the table.
//! - `clients.rs`: the load generators, loopback clients that time what they receive.
//! - `figures.rs`: the lesson's SVG figures, from the arrival times its clients measured.
//! - `floor.rs`: the simplest servers that could do the job: one for connections, run in this
//!   process, and the thread-per-client pacer, run as a process of its own.
//! - `peers.rs`: the servers a user would compare it with (nginx, Python, Twisted, socat).
//! - `procs.rs`: the servers under test as processes, and what /proc says about them.
//! - `report.rs`: the results table, its rows and targets.

mod clients;
mod figures;
mod floor;
mod peers;
mod procs;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::Row;

/// The run: where its files go, how many runs each scenario makes, and the rows so far.
struct Bench {
    runs: usize,
    dir: tempfile::TempDir,
    rows: Vec<Row>,
    /// The poetry-serve binaries under test ([`procs::binaries`]): one, or "after" and
    /// "before" for the scenarios that compare two.
    binaries: Vec<procs::Binary>,
}

impl Bench {
    /// Writes a poem for a scenario into the run's directory.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write a poem for the benchmark");
        path
    }

    /// Where a server's log goes.
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Tells the person waiting what runs now, with the time since the start.
    fn say(&self, what: &str) {
        eprintln!("[{:>6.1?}] {what}", START.get().map_or(Duration::ZERO, |s| s.elapsed()));
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Raises the open-file limit to its hard maximum: 10,000 clients need 10,000 descriptors in
/// this process and in the server (which inherits the limit).
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit are given a valid, exclusively borrowed rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `drive ADDR POEM COUNT`: only the rate scenario's clients, against a server started by
/// someone else (benches/profile, under strace or perf): COUNT fetches from 8 threads, each
/// checked against the file POEM.
fn drive(addr: &str, poem: &str, count: &str) {
    let addr = addr.parse().expect("drive ADDR: an IP address and port");
    let poem = std::fs::read(poem).expect("drive POEM: the poem the server sends");
    let count: usize = count.parse().expect("drive COUNT: a number of fetches");
    let batch = clients::fetches(addr, 8, count, &poem, clients::LIMIT);
    println!(
        "{} fetches in {:.2?} ({:.0}/s), {} failed",
        batch.done,
        batch.elapsed,
        batch.done as f64 / batch.elapsed.as_secs_f64(),
        batch.failed
    );
}

/// `drive-crowd ADDR POEM COUNT`: only the crowd's clients (every one connecting at once, each
/// checked against POEM, read in 10-byte chunks 0.5 s apart), against a server started by
/// someone else (under perf or strace, say); prints the times and the first chunk's lateness.
fn drive_crowd(addr: &str, poem: &str, count: &str) {
    let addr = addr.parse().expect("drive-crowd ADDR: an IP address and port");
    let poem = std::fs::read(poem).expect("drive-crowd POEM: the poem the server sends");
    let count: usize = count.parse().expect("drive-crowd COUNT: a number of clients");
    let crowd = clients::crowd(addr, count, &poem, None);
    let mut times = crowd.times();
    times.sort();
    let mut first: Vec<Duration> = (crowd.lateness(10, Duration::from_millis(500)).into_iter())
        .filter_map(|(k, late)| (k == 0).then_some(late))
        .collect();
    first.sort();
    let at =
        |v: &[Duration], q: usize| v.get(v.len() * q / 100).map_or(f64::NAN, |d| d.as_secs_f64());
    let issued = crowd.timelines.last().map_or(Duration::ZERO, |t| t.connect);
    println!(
        "{count} clients, connects issued in {:.3} s: slowest {:.3} s, median {:.3} s, first \
         chunk late p50 {:.1} ms p99 {:.1} ms, longest wait for a first byte {:.0} ms, {} failed",
        issued.as_secs_f64(),
        crowd.slowest.as_secs_f64(),
        at(&times, 50),
        at(&first, 50) * 1e3,
        at(&first, 99) * 1e3,
        crowd.first_byte.as_secs_f64() * 1e3,
        crowd.failed
    );
}

/// The scenarios, in the order a run takes them; with no names, all but the last two (a
/// minute or more each), which run only when named.
const SCENARIOS: [&str; 9] =
    ["rate", "bulk", "startup", "crowd", "maxcrowd", "pacing", "flood", "soak", "lesson"];

fn main() {
    // `cargo bench` passes `--bench`; the other words name scenarios.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    START.get_or_init(Instant::now);
    raise_fd_limit();
    match only.first().map(String::as_str) {
        Some("drive") => {
            let [_, addr, poem, count] = &only[..] else {
                panic!("usage: drive ADDR POEM COUNT");
            };
            drive(addr, poem, count);
            return;
        }
        Some("drive-crowd") => {
            let [_, addr, poem, count] = &only[..] else {
                panic!("usage: drive-crowd ADDR POEM COUNT");
            };
            drive_crowd(addr, poem, count);
            return;
        }
        // The floor's pacer takes poetry-serve's flags, which start with `--`.
        Some("pacer") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            floor::pacer(&args);
            return;
        }
        _ => {}
    }
    for word in &only {
        assert!(
            SCENARIOS.contains(&word.as_str()),
            "no scenario {word:?}; the scenarios are: {}",
            SCENARIOS.join(" ")
        );
    }
    let named = |name: &str| only.iter().any(|o| o == name);
    // Every scenario but the soak and the lesson when none is named.
    let wants = |name: &str| only.is_empty() || named(name);
    let runs = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let binaries = procs::binaries();
    let mut bench = Bench {
        runs,
        dir: tempfile::tempdir().expect("temp dir"),
        rows: vec![],
        binaries: binaries.clone(),
    };
    let busy = procs::cpu_busy();
    if wants("rate") {
        bench.connection_rate();
    }
    if wants("bulk") || wants("startup") {
        bench.say("writing a 1 GiB poem");
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let big = bench.dir.path().join("big.bin");
        let mut file = std::fs::File::create(&big).expect("create the 1 GiB poem");
        for _ in 0..1024 {
            std::io::Write::write_all(&mut file, &chunk).expect("write the 1 GiB poem");
        }
        drop(file);
        if wants("bulk") {
            bench.bulk(&big);
        }
        if wants("startup") {
            bench.startup(&big);
        }
    }
    if wants("crowd") {
        bench.crowd();
    }
    if wants("maxcrowd") {
        bench.max_crowd();
    }
    if wants("pacing") {
        bench.pacing();
    }
    if wants("flood") {
        bench.flood();
    }
    if named("soak") {
        bench.soak();
    }
    if named("lesson") {
        bench.lesson();
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\npoetry-serve benchmark, {}: {}, {cores} cores, Linux {}, loopback, median of {runs} \
         runs{}; {busy} it started",
        today(),
        procs::cpu_model(),
        procs::kernel(),
        if named("lesson") { " (the lesson: one run per point)" } else { "" },
    );
    for binary in &binaries {
        println!("{}: {}", binary.label, binary.path.display());
    }
    println!();
    print!("{}", report::table(&bench.rows));
    let failed = report::missed(&bench.rows);
    println!("\n{failed} target(s) not met; took {:.0?}", START.get().unwrap().elapsed());
}

/// Today's date and time (UTC), as the report and the figures' captions give it.
pub fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "date unknown".into(), |d| d.trim().to_string())
}

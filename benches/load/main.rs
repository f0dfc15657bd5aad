//! poetry-serve's benchmark: the release binary against this machine's floor and the tools a
//! user would pick instead, in one run, as ratios.
//!
//! Run with `benches/run` (which installs the peers if missing) or, with those installed,
//! `cargo bench --bench load`. Every scenario runs `BENCH_RUNS` times (default 3) and the
//! median is reported. Loopback only; every wait is bounded. `benches/profile` uses the
//! `drive` mode: the rate scenario's clients alone, against a server it started itself.
//!
//! # Layout
//! - `scenarios/`: one file per scenario, each a method of [`Bench`] adding rows to the table.
//! - `clients.rs`: the load generators, loopback clients that time what they receive.
//! - `figures.rs`: the lesson's SVG figures, from the arrival times its clients measured.
//! - `floor.rs`: the simplest server that could do the job, run in this process.
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

use procs::installed;
use report::Row;

/// The run: where its files go, how many runs each scenario makes, and the rows so far.
struct Bench {
    runs: usize,
    dir: tempfile::TempDir,
    rows: Vec<Row>,
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

fn main() {
    // `cargo bench` passes `--bench`; a filter word picks scenarios.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    START.get_or_init(Instant::now);
    raise_fd_limit();
    if only.first().is_some_and(|word| word == "drive") {
        let [_, addr, poem, count] = &only[..] else {
            panic!("usage: drive ADDR POEM COUNT");
        };
        drive(addr, poem, count);
        return;
    }
    let runs = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut bench = Bench { runs, dir: tempfile::tempdir().expect("temp dir"), rows: vec![] };
    for peer in ["socat", "endlessh"] {
        if !installed(peer) {
            bench.say(&format!("{peer} is not installed; benches/run installs it"));
        }
    }
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
        bench.crowd(wants("endlessh"));
    }
    if wants("pacing") {
        bench.pacing();
    }
    if wants("flood") {
        bench.flood();
    }
    // A minute or more each, so only when asked for by name.
    if only.iter().any(|o| o == "soak") {
        bench.soak();
    }
    if only.iter().any(|o| o == "lesson") {
        bench.lesson();
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\npoetry-serve benchmark: {}, {cores} cores, Linux {}, loopback, median of {runs} runs\n",
        procs::cpu_model(),
        procs::kernel()
    );
    print!("{}", report::table(&bench.rows));
    let failed = report::missed(&bench.rows);
    println!("\n{failed} target(s) missed; took {:.0?}", START.get().unwrap().elapsed());
}

//! poetry-serve's benchmark: the release binary against this machine's floor and the tools a
//! user would pick instead, in one run, as ratios.
//!
//! Run with `benches/run` (which installs socat and endlessh if missing) or, with those
//! installed, `cargo bench --bench load`. Every scenario runs `BENCH_RUNS` times (default 3)
//! and the median is reported. Loopback only; every wait is bounded.

mod clients;
mod floor;
mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floor::Floor;
use procs::{Served, free_port, installed, listen_overflows};

/// One line of the results table.
struct Row {
    scenario: String,
    ours: String,
    /// The floor or peer figure and our ratio to it, when there is one.
    versus: Option<(String, String)>,
    /// What the figure must reach and whether it did; `None` for a figure only reported.
    goal: Option<Goal>,
}

/// A target and whether it was met, both made from the same numbers so they cannot drift.
struct Goal {
    text: String,
    pass: bool,
}

impl Goal {
    /// `value` must be at least `bound`; `unit` follows the bound in the text (`×`, say).
    fn at_least(value: f64, bound: f64, unit: &str) -> Goal {
        Goal {
            text: format!("≥ {}{unit}", short(bound)),
            pass: value >= bound,
        }
    }

    /// `value` must be at most `bound`.
    fn at_most(value: f64, bound: f64, unit: &str) -> Goal {
        Goal {
            text: format!("≤ {}{unit}", short(bound)),
            pass: value <= bound,
        }
    }

    /// A count that must be zero.
    fn zero(count: usize) -> Goal {
        Goal {
            text: "0".into(),
            pass: count == 0,
        }
    }

    /// Also requires that no fetch failed.
    fn and_none_failed(mut self, failed: usize) -> Goal {
        self.text += ", 0 failed";
        self.pass &= failed == 0;
        self
    }
}

/// A bound as a person writes it: at most three decimals, no trailing zeros.
fn short(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Row {
    /// A figure of ours, reported without a target or a comparison.
    fn new(scenario: &str, ours: String) -> Row {
        Row {
            scenario: scenario.into(),
            ours,
            versus: None,
            goal: None,
        }
    }

    /// Compares with a floor or peer: its figure, and our ratio to it.
    fn versus(mut self, other: String, ratio: String) -> Row {
        self.versus = Some((other, ratio));
        self
    }

    /// Sets the target the figure is judged by.
    fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

struct Bench {
    runs: usize,
    dir: tempfile::TempDir,
    rows: Vec<Row>,
}

impl Bench {
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write a poem for the benchmark");
        path
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn say(&self, what: &str) {
        eprintln!(
            "[{:>6.1?}] {what}",
            START.get().map_or(Duration::ZERO, |s| s.elapsed())
        );
    }

    /// 1. Connection rate: 20,000 fetches of a ~1.5 KB poem from 8 client threads.
    fn connection_rate(&mut self) {
        const TOTAL: usize = 20_000;
        const THREADS: usize = 8;
        let poem: Vec<u8> = (0..1500)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27])
            .collect();
        let path = self.file("rate.txt", &poem);
        // Fetches per second and server CPU µs per fetch, for one server, adding its failures.
        let mut failed = 0;
        let mut time = |addr, cpu: &dyn Fn() -> Duration, total: usize| {
            let before = cpu();
            let batch = clients::fetches(addr, THREADS, total, &poem, clients::LIMIT);
            failed += batch.failed;
            let per_fetch = (cpu() - before).as_secs_f64() * 1e6 / total as f64;
            (total as f64 / batch.elapsed.as_secs_f64(), per_fetch)
        };
        let (mut ours, mut floor, mut socat) = (vec![], vec![], vec![]);
        let (mut cpu, mut floor_cpu) = (vec![], vec![]);
        for run in 0..self.runs {
            self.say(&format!("connection rate, run {}", run + 1));
            let server = Served::poetry(&path, &["--delay", "0"], &self.log("rate"));
            let (rate, per_fetch) = time(server.addr, &|| server.cpu(), TOTAL);
            ours.push(rate);
            cpu.push(per_fetch);
            drop(server);

            let base = Floor::start(Arc::new(poem.clone()));
            let (rate, per_fetch) = time(base.addr, &|| base.cpu(), TOTAL);
            floor.push(rate);
            floor_cpu.push(per_fetch);
            drop(base);

            let port = free_port();
            let peer = Served::peer(
                Command::new("socat").args([
                    &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096"),
                    &format!("FILE:{}", path.display()),
                ]),
                port,
            );
            // socat is slow: a quarter of the fetches is plenty to time it.
            socat.push(time(peer.addr, &|| peer.cpu(), TOTAL / 4).0);
        }
        let (ours, floor, socat) = (median(ours), median(floor), median(socat));
        let (cpu, floor_cpu) = (median(cpu), median(floor_cpu));
        self.rows.push(
            Row::new("1. connection rate vs floor (conn/s)", format!("{ours:.0}"))
                .versus(format!("{floor:.0} floor"), format!("{:.2}×", ours / floor))
                .goal(Goal::at_least(ours / floor, 0.85, "×").and_none_failed(failed)),
        );
        self.rows.push(
            Row::new(
                "1. connection rate vs socat fork (conn/s)",
                format!("{ours:.0}"),
            )
            .versus(format!("{socat:.0} socat"), format!("{:.1}×", ours / socat))
            .goal(Goal::at_least(ours / socat, 10.0, "×")),
        );
        self.rows.push(
            Row::new("1. server CPU per connection (µs)", format!("{cpu:.1}")).versus(
                format!("{floor_cpu:.1} floor"),
                format!("{:.2}×", cpu / floor_cpu),
            ),
        );
        self.rows.push(
            Row::new("1. failed or short fetches", format!("{failed}")).goal(Goal::zero(failed)),
        );
    }

    /// 2. Bulk: a 1 GiB poem at --delay 0 and the default --num-bytes.
    fn bulk(&mut self, big: &Path) {
        let content = Arc::new(std::fs::read(big).expect("read the 1 GiB poem"));
        let (mut ours, mut floor, mut rss) = (vec![], vec![], vec![]);
        for run in 0..self.runs {
            self.say(&format!("bulk, run {}", run + 1));
            let server = Served::poetry(big, &["--delay", "0"], &self.log("bulk"));
            let (got, took) = clients::bulk(server.addr);
            assert_eq!(got, content.len(), "poetry-serve sent a short bulk poem");
            ours.push(got as f64 / took.as_secs_f64() / 1e6);
            rss.push(mib(server.peak_rss()));
            drop(server);

            let base = Floor::start(Arc::clone(&content));
            let (got, took) = clients::bulk(base.addr);
            assert_eq!(got, content.len(), "the floor sent a short bulk poem");
            floor.push(got as f64 / took.as_secs_f64() / 1e6);
        }
        let (ours, floor, rss) = (median(ours), median(floor), median(rss));
        self.rows.push(
            Row::new("2. bulk 1 GiB, --delay 0 (MB/s)", format!("{ours:.0}"))
                .versus(format!("{floor:.0} floor"), format!("{:.2}×", ours / floor))
                .goal(Goal::at_least(ours / floor, 0.95, "×")),
        );
        self.rows.push(
            Row::new(
                "2. bulk: server peak RSS, one client (MiB)",
                format!("{rss:.1}"),
            )
            .goal(Goal::at_most(rss, 64.0, "")),
        );
        // 256 clients at once (every default worker busy), each reading a 64 MiB poem: each
        // connection has a buffer of its own, so memory grows with them, up to a bound.
        self.say("bulk, 256 clients at once");
        let poem = self.file("bulk64.bin", &content[..64 << 20]);
        let server = Served::poetry(&poem, &["--delay", "0"], &self.log("bulk256"));
        let got = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..256)
                .map(|_| scope.spawn(|| clients::bulk(server.addr).0))
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().unwrap())
                .collect::<Vec<_>>()
        });
        let short = got.iter().filter(|&&n| n != 64 << 20).count();
        let rss = mib(server.peak_rss());
        self.rows.push(
            Row::new(
                "2. bulk: server peak RSS, 256 clients at once (MiB)",
                format!("{rss:.1}"),
            )
            .goal(
                Goal::at_most(rss, 300.0, " (256 × 1 MiB buffers + base)").and_none_failed(short),
            ),
        );
    }

    /// 3. Ten thousand slow clients at once, beside endlessh.
    fn crowd(&mut self, with_endlessh: bool) {
        const CLIENTS: usize = 10_000;
        const CHUNKS: usize = 10;
        let ideal = Duration::from_millis(4500);
        let poem: Vec<u8> = (0..100)
            .map(|i| {
                if i % 10 == 9 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let path = self.file("crowd.txt", &poem);
        let (mut slowest, mut rss, mut cpu, mut failed) = (vec![], vec![], vec![], 0);
        let (mut first_byte, mut dropped) = (vec![], 0);
        for run in 0..self.runs {
            self.say(&format!("10,000 slow clients, run {}", run + 1));
            let args = ["--workers", "10000", "--delay", "0.5", "--num-bytes", "10"];
            let server = Served::poetry(&path, &args, &self.log("crowd"));
            let (before, overflows) = (server.cpu(), listen_overflows());
            let crowd = clients::crowd(server.addr, CLIENTS, poem.len(), None);
            dropped += listen_overflows() - overflows;
            let used = server.cpu() - before;
            failed += crowd.failed;
            slowest.push(crowd.slowest.as_secs_f64());
            first_byte.push(crowd.first_byte.as_secs_f64() * 1e3);
            rss.push(mib(server.peak_rss()));
            cpu.push(used.as_secs_f64() * 1e6 / (CLIENTS * CHUNKS) as f64);
        }
        let (e_rss, e_cpu) = if with_endlessh {
            self.endlessh(CLIENTS, CHUNKS)
        } else {
            (None, None)
        };
        // Every run must be within the target, so the worst run is judged; the median beside it.
        let worst = slowest.iter().copied().fold(0.0, f64::max);
        let (slowest, rss, cpu) = (median(slowest), median(rss), median(cpu));
        let ideal_s = ideal.as_secs_f64();
        self.rows.push(
            Row::new(
                "3. 10k clients: slowest connect→EOF, worst run (median) (s)",
                format!("{worst:.2} ({slowest:.2})"),
            )
            .versus(
                format!("{ideal_s:.2} ideal"),
                format!("{:.3}× ({:.3}×)", worst / ideal_s, slowest / ideal_s),
            )
            .goal(Goal::at_most(worst / ideal_s, 1.10, "× in every run").and_none_failed(failed)),
        );
        self.rows.push(Row::new(
            "3. 10k clients: longest wait for a first byte (ms)",
            format!("{:.0}", median(first_byte)),
        ));
        self.rows.push(Row::new(
            "3. 10k clients: connects dropped by a full backlog, all runs",
            format!("{dropped}"),
        ));
        let mut row = Row::new("3. 10k clients: server peak RSS (MiB)", format!("{rss:.1}"))
            .goal(Goal::at_most(rss, 160.0, ""));
        if let Some(r) = e_rss {
            row = row.versus(format!("{r:.1} endlessh"), format!("{:.1}×", rss / r));
        }
        self.rows.push(row);
        let mut row = Row::new("3. 10k clients: CPU per chunk (µs)", format!("{cpu:.1}"));
        if let Some(c) = e_cpu {
            row = row
                .versus(format!("{c:.1} endlessh"), format!("{:.1}×", cpu / c))
                .goal(Goal::at_most(cpu / c, 3.0, "× endlessh"));
        }
        self.rows.push(row);
    }

    /// endlessh with the same clients and delay: its memory and CPU per line written.
    fn endlessh(&self, clients: usize, lines: usize) -> (Option<f64>, Option<f64>) {
        if !installed("endlessh") {
            self.say("endlessh is not installed: skipping it (benches/run installs it)");
            return (None, None);
        }
        let (mut rss, mut cpu) = (vec![], vec![]);
        for run in 0..self.runs {
            self.say(&format!("endlessh, 10,000 clients, run {}", run + 1));
            let port = free_port();
            let peer = Served::peer(
                Command::new("endlessh")
                    .args(["-4", "-d", "500", "-l", "10", "-m"])
                    .arg(clients.to_string())
                    .args(["-p", &port.to_string(), "-f", "/dev/null"]),
                port,
            );
            let before = peer.cpu();
            let crowd = clients::crowd(peer.addr, clients, 0, Some(lines));
            let used = peer.cpu() - before;
            rss.push(mib(peer.peak_rss()));
            cpu.push(used.as_secs_f64() * 1e6 / crowd.lines.max(1) as f64);
        }
        (Some(median(rss)), Some(median(cpu)))
    }

    /// 4. Pacing precision: 64 clients, 100 chunks of 10 bytes at 20 ms.
    fn pacing(&mut self) {
        const CLIENTS: usize = 64;
        const CHUNKS: usize = 100;
        let delay = Duration::from_millis(20);
        let ideal = delay * (CHUNKS as u32 - 1);
        let poem = vec![b'p'; 10 * CHUNKS];
        let path = self.file("pacing.txt", &poem);
        let (mut slowest, mut p50, mut p99, mut failed) = (vec![], vec![], vec![], 0);
        for run in 0..self.runs {
            self.say(&format!("pacing precision, run {}", run + 1));
            let args = ["--delay", "0.02", "--num-bytes", "10"];
            let server = Served::poetry(&path, &args, &self.log("pacing"));
            let (mut late, worst, bad) = clients::pacing(server.addr, CLIENTS, 10, CHUNKS, delay);
            failed += bad;
            late.sort();
            slowest.push(worst.as_secs_f64());
            p50.push(late[late.len() / 2].as_secs_f64() * 1e3);
            p99.push(late[late.len() * 99 / 100].as_secs_f64() * 1e3);
        }
        let (slowest, p50, p99) = (median(slowest), median(p50), median(p99));
        let bound = ideal.as_secs_f64() * 1.05 + 0.1;
        self.rows.push(
            Row::new("4. pacing: slowest of 64 (s)", format!("{slowest:.3}"))
                .versus(
                    format!("{:.2} ideal", ideal.as_secs_f64()),
                    format!("{:.3}×", slowest / ideal.as_secs_f64()),
                )
                .goal(
                    Goal::at_most(slowest, bound, " s (1.05× ideal + 0.1 s)")
                        .and_none_failed(failed),
                ),
        );
        self.rows.push(Row::new(
            "4. pacing: chunk lateness p50 / p99 (ms)",
            format!("{p50:.2} / {p99:.2}"),
        ));
    }

    /// Scenario 6, a flood from one source under --max-per-source: ten times the limit in
    /// idle sockets, and two threads reconnecting as fast as they can, while clients from
    /// other sources time their first byte.
    fn flood(&mut self) {
        const LIMIT: usize = 8;
        const PROBES: usize = 20;
        let poem = vec![b'f'; 1000]; // 100 chunks at 0.5 s: longer than the scenario
        let path = self.file("flood.txt", &poem);
        let limit = LIMIT.to_string();
        let args = ["--delay", "0.5", "--max-per-source", &limit];
        let (mut worst, mut cpu, mut rss, mut rate) = (vec![], vec![], vec![], vec![]);
        let mut failed = 0;
        for run in 0..self.runs {
            self.say(&format!("one-source flood, run {}", run + 1));
            let server = Served::poetry(&path, &args, &self.log("flood"));
            let held = clients::hold(server.addr, 10 * LIMIT);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let (before, started) = (server.cpu(), Instant::now());
            let (probes, connects) = std::thread::scope(|scope| {
                let churners: Vec<_> = (0..2)
                    .map(|_| scope.spawn(|| clients::churn(server.addr, &stop)))
                    .collect();
                // Each probe from an address of its own (127.0.0.2, .3, ...): its connection
                // lingers until the server's next chunk finds it closed, and one source's
                // probes would soon reach the limit themselves.
                let probes: Vec<_> = (0..PROBES as u8)
                    .map(|i| {
                        std::thread::sleep(Duration::from_millis(50));
                        clients::first_byte_from(server.addr, [127, 0, 0, 2 + i].into())
                    })
                    .collect();
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let connects: usize = churners.into_iter().map(|c| c.join().unwrap()).sum();
                (probes, connects)
            });
            let used = server.cpu() - before;
            let elapsed = started.elapsed();
            failed += probes.iter().filter(|p| p.is_none()).count();
            let slowest = probes.iter().flatten().max().copied().unwrap_or(LIMIT_WAIT);
            worst.push(slowest.as_secs_f64() * 1e3);
            rate.push(connects as f64 / elapsed.as_secs_f64());
            cpu.push(used.as_secs_f64() * 1e6 / connects.max(1) as f64);
            rss.push(mib(server.peak_rss()));
            drop(held);
        }
        // Every run must meet the target, so the worst run is reported, not the median.
        let worst = worst.into_iter().fold(0.0, f64::max);
        self.rows.push(
            Row::new(
                "6. flood: other sources' slowest first byte, worst run (ms)",
                format!("{worst:.1}"),
            )
            .goal(Goal::at_most(worst, 100.0, " ms").and_none_failed(failed)),
        );
        self.rows.push(Row::new(
            "6. flood: rejected reconnects per second from the flooding source",
            format!("{:.0}", median(rate)),
        ));
        self.rows.push(Row::new(
            "6. flood: server CPU per rejected connect (µs)",
            format!("{:.1}", median(cpu)),
        ));
        self.rows.push(Row::new(
            "6. flood: server peak RSS (MiB)",
            format!("{:.1}", median(rss)),
        ));
    }

    /// Scenario 7, a soak: a million fetches of a poem sent at once, then paced clients, all
    /// by one process, whose descriptors, threads and memory must end where they were after
    /// warm-up.
    fn soak(&mut self) {
        const WARM_UP: usize = 50_000;
        const FETCHES: usize = 1_000_000;
        const PACED: usize = 2_000;
        let dir = self.dir.path().join("soak");
        std::fs::create_dir_all(&dir).expect("a directory of poems");
        // One chunk (--num-bytes is the poem's size): sent at once, as with --delay 0.
        let short: Vec<u8> = (0..1500).map(|i| b"soak poem\n"[i % 10]).collect();
        std::fs::write(dir.join("a.txt"), &short).expect("write the short poem");
        self.say("soak: warm-up");
        let args = ["--delay", "0.05", "--num-bytes", "1500"];
        let server = Served::poetry(&dir, &args, &self.log("soak"));
        let warm = clients::fetches(server.addr, 8, WARM_UP, &short, clients::LIMIT);
        let after_warm_up = server.usage();
        self.say("soak: a million fetches");
        let bound = Duration::from_secs(150);
        let main = clients::fetches(server.addr, 8, FETCHES - WARM_UP, &short, bound);
        // The paced phase: ten chunks 50 ms apart, the poem swapped in by SIGHUP.
        self.say("soak: paced clients");
        let long: Vec<u8> = (0..15_000).map(|i| b"paced poem\n"[i % 11]).collect();
        std::fs::write(dir.join("b.txt"), &long).expect("write the paced poem");
        std::fs::remove_file(dir.join("a.txt")).expect("remove the short poem");
        server.reload();
        let paced = clients::fetches(server.addr, 200, PACED, &long, bound);
        // Let the last closes finish lingering (at most 2 s) before counting what is held.
        std::thread::sleep(Duration::from_millis(2500));
        let at_end = server.usage();
        let failed = warm.failed + main.failed + paced.failed;
        let done = warm.done + main.done;
        self.rows.push(
            Row::new(
                "7. soak: fetches at once (byte-exact), then paced",
                format!("{done} + {}", paced.done),
            )
            .versus(
                format!("{:.0}/s", main.done as f64 / main.elapsed.as_secs_f64()),
                format!("{:.0} s", main.elapsed.as_secs_f64()),
            )
            .goal(Goal::at_least(done as f64, FETCHES as f64, "").and_none_failed(failed)),
        );
        for (name, warm, end) in [
            ("open fds", after_warm_up.fds, at_end.fds),
            ("threads", after_warm_up.threads, at_end.threads),
            ("RSS (KiB)", after_warm_up.rss_kib, at_end.rss_kib),
        ] {
            let ratio = end as f64 / warm as f64;
            self.rows.push(
                Row::new(&format!("7. soak: {name} at the end"), format!("{end}"))
                    .versus(format!("{warm} after warm-up"), format!("{ratio:.3}×"))
                    .goal(Goal::at_most(ratio, 1.05, "×")),
            );
        }
    }

    /// Scenario 8, the tutorial's lesson: the blocking model (poetry-serve with one worker),
    /// the threaded one (poetry-serve with a worker per client) and the asynchronous one (the
    /// tokio twin), each serving N clients who all connect at once to fetch a poem of 5
    /// chunks 0.1 s apart (0.4 s ideally).
    fn lesson(&mut self) {
        const CHUNKS: usize = 5;
        let ideal = Duration::from_millis(400);
        let poem: Vec<u8> = (0..50).map(|i| b"a poem\n"[i % 7]).collect();
        let path = self.file("lesson.txt", &poem);
        let pace = ["--num-bytes", "10", "--delay", "0.1"];
        // The blocking model takes N × 0.4 s: past 100 clients nobody would wait for it.
        let models: [(&str, &[usize]); 3] = [
            ("blocking (--workers 1)", &[1, 10, 100]),
            ("threaded (--workers N)", &[1, 10, 100, 1000, 10_000]),
            ("async (tokio twin)", &[1, 10, 100, 1000, 10_000]),
        ];
        for (model, counts) in models {
            for &n in counts {
                self.say(&format!("lesson: {model}, {n} clients"));
                let workers = match model.starts_with("blocking") {
                    true => "1".to_string(),
                    false => n.max(1).to_string(),
                };
                let server = if model.starts_with("async") {
                    Served::twin(&path, &pace, &self.log("lesson"))
                } else {
                    let mut args = pace.to_vec();
                    args.extend(["--workers", &workers]);
                    Served::poetry(&path, &args, &self.log("lesson"))
                };
                let before = server.cpu_exact();
                let crowd = clients::crowd(server.addr, n, poem.len(), None);
                let cpu = (server.cpu_exact() - before).as_secs_f64() * 1e6 / (n * CHUNKS) as f64;
                let usage = server.usage();
                let last = crowd.slowest.as_secs_f64();
                self.rows.push(
                    Row::new(
                        &format!("8. lesson: {model}, {n} clients: last done (s)"),
                        format!("{last:.2}"),
                    )
                    .versus(
                        format!("{:.2} ideal", ideal.as_secs_f64()),
                        format!("{:.2}×", last / ideal.as_secs_f64()),
                    )
                    .goal(Goal::zero(crowd.failed)),
                );
                self.rows.push(Row::new(
                    &format!("8. lesson: {model}, {n} clients: CPU per chunk (µs), peak RSS (MiB), threads"),
                    format!("{cpu:.1}, {:.1}, {}", mib(server.peak_rss()), usage.threads),
                ));
            }
        }
    }

    /// 5. Start-up: from exec to the listening line, with a 1 GiB poem.
    fn startup(&mut self, big: &Path) {
        self.say("start-up");
        let mut times = vec![];
        for _ in 0..(self.runs * 7).max(21) {
            let (server, took) = Served::poetry_timed(big, &[], &self.log("startup"));
            times.push(took.as_secs_f64() * 1e3);
            drop(server);
        }
        let ms = median(times);
        self.rows.push(
            Row::new(
                "5. start-up to listening line, 1 GiB poem (ms)",
                format!("{ms:.2}"),
            )
            .goal(Goal::at_most(ms, 20.0, " ms")),
        );
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | poetry-serve | floor / peer | ratio | target | result |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for row in &self.rows {
            let (other, ratio) = row.versus.clone().unwrap_or_default();
            let (target, result) = match &row.goal {
                Some(goal) => (goal.text.as_str(), if goal.pass { "pass" } else { "FAIL" }),
                None => ("report", "-"),
            };
            out += &format!(
                "| {} | {} | {other} | {ratio} | {target} | {result} |\n",
                row.scenario, row.ours
            );
        }
        out
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// What a probe that never got a byte counts as.
const LIMIT_WAIT: Duration = clients::LIMIT;

/// Raises the open-file limit to its hard maximum: 10,000 clients need 10,000 descriptors in
/// this process and in the server (which inherits the limit).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit are given a valid, exclusively borrowed rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter word picks scenarios.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    START.get_or_init(Instant::now);
    raise_fd_limit();
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut bench = Bench {
        runs,
        dir: tempfile::tempdir().expect("temp dir"),
        rows: vec![],
    };
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
    print!("{}", bench.table());
    let failed = bench
        .rows
        .iter()
        .filter(|r| r.goal.as_ref().is_some_and(|g| !g.pass))
        .count();
    println!(
        "\n{failed} target(s) missed; took {:.0?}",
        START.get().unwrap().elapsed()
    );
}

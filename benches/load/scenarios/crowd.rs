//! Scenario 3, the crowd: thousands of slow clients connecting at once, served by poetry-serve
//! and, in the same run, by the floor for the slow job (a bare thread-per-client pacer,
//! [`crate::floor::pacer`]) and by endlessh; poetry-serve's figures as ratios to the floor's.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::Bench;
use crate::clients::{self, Crowd};
use crate::procs::{Binary, Kernel, Served, free_port, installed, largest_crowd, tcp_ext};
use crate::report::{Goal, Row, median, thousands};

/// Bytes a chunk, chunks a poem, and the delay between chunks: ideally 4.5 s a client.
const CHUNK: usize = 10;
const CHUNKS: usize = 10;
const DELAY: Duration = Duration::from_millis(500);

/// The environment variable that sets the largest crowd's size instead of the machine's
/// limits (to measure a binary that refuses that many workers, say).
const MAX_CLIENTS_VARIABLE: &str = "BENCH_MAX_CLIENTS";

/// Who serves a crowd.
#[derive(Debug, Clone)]
enum Contender {
    /// The bare pacer: the floor every ratio is taken against.
    Floor,
    Poetry(Binary),
    /// endlessh, one thread polling every socket: reported beside the floor.
    Endlessh,
}

impl Contender {
    fn label(&self) -> &str {
        match self {
            Contender::Floor => "floor",
            Contender::Poetry(bin) => &bin.label,
            Contender::Endlessh => "endlessh",
        }
    }
}

/// One contender's figures in one run. Memory is per client held at the moment the most
/// clients were held at once (each had its first byte and none of them its end).
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Connect to EOF (s): the slowest client and the median one.
    slowest: f64,
    median: f64,
    /// Machine-wide TcpExt counters over the crowd: ListenOverflows and ListenDrops.
    overflows: u64,
    drops: u64,
    /// Resident memory per held client (KiB): the process's VmRSS then, less the VmRSS of the
    /// same program started idle with one worker.
    rss: f64,
    /// Kernel stacks and page tables per held client (KiB), machine-wide, from before the
    /// server started.
    stacks: f64,
    /// Socket slab per held connection, both ends (KiB), when /proc/slabinfo is readable.
    slab: Option<f64>,
    /// Server CPU per chunk written (per line, for endlessh), in µs.
    cpu: f64,
    /// Chunk lateness (ms): when the client's kernel received it, against the client's
    /// connect + k × the delay.
    p50: f64,
    p99: f64,
    /// The first chunk's lateness alone (ms): the time taking the burst, before pacing.
    first_p50: f64,
    first_p99: f64,
    /// The longest wait from a connect to its first byte (ms).
    first_byte: f64,
    /// Clients not served byte for byte.
    failed: usize,
    /// The most clients held at once.
    held: usize,
}

impl Bench {
    /// Scenario 3: 10,000 clients at once.
    pub fn crowd(&mut self) {
        self.crowd_of("3. 10,000 clients", 10_000);
    }

    /// Scenario 3b: the largest crowd this machine's limits allow ([`largest_crowd`]), or
    /// `BENCH_MAX_CLIENTS`.
    pub fn max_crowd(&mut self) {
        let (clients, why) =
            match std::env::var(MAX_CLIENTS_VARIABLE).ok().and_then(|v| v.parse().ok()) {
                Some(n) => (n, format!("set by {MAX_CLIENTS_VARIABLE}")),
                None => largest_crowd(),
            };
        self.say(&format!("the largest crowd: {} clients ({why})", thousands(clients)));
        self.crowd_of(&format!("3b. {} clients", thousands(clients)), clients);
    }

    /// `clients` clients of a 100-byte poem in 10-byte chunks 0.5 s apart, all connecting at
    /// once, `runs` times; in each run the floor, every binary under test and endlessh serve
    /// them in turn (the order rotating from run to run).
    fn crowd_of(&mut self, name: &str, clients: usize) {
        let poem: Vec<u8> = (0..CHUNK * CHUNKS)
            .map(|i| if i % 10 == 9 { b'\n' } else { b'a' + (i % 26) as u8 })
            .collect();
        let path = self.file("crowd.txt", &poem);
        let mut contenders = vec![Contender::Floor];
        contenders.extend(self.binaries.iter().cloned().map(Contender::Poetry));
        if installed("endlessh") {
            contenders.push(Contender::Endlessh);
        } else {
            self.say("endlessh is not installed: skipping it (benches/run installs it)");
        }
        let mut figures: Vec<Vec<Figures>> = vec![vec![]; contenders.len()];
        // What a contender said when it did not start, once is enough: it is not run again.
        let mut refused: Vec<Option<String>> = vec![None; contenders.len()];
        for run in 0..self.runs {
            for turn in 0..contenders.len() {
                let i = (turn + run) % contenders.len();
                let who = &contenders[i];
                if refused[i].is_some() {
                    continue;
                }
                self.say(&format!(
                    "{} slow clients, {}, run {}",
                    thousands(clients),
                    who.label(),
                    run + 1
                ));
                match self.crowd_run(who, &path, &poem, clients) {
                    Ok(run) => figures[i].push(run),
                    Err(said) => {
                        self.say(&said);
                        refused[i] = Some(said);
                    }
                }
            }
        }
        for (who, said) in contenders.iter().zip(&refused) {
            if let Some(said) = said {
                self.rows.push(
                    Row::new(&format!("{name}, {}: did not start", who.label()), said.clone())
                        .goal(Goal::new("starts", false)),
                );
            }
        }
        if refused[0].is_some() {
            return;
        }
        let (contenders, figures): (Vec<Contender>, Vec<Vec<Figures>>) = contenders
            .into_iter()
            .zip(figures)
            .zip(&refused)
            .filter(|(_, said)| said.is_none())
            .map(|(pair, _)| pair)
            .unzip();
        self.crowd_rows(name, &contenders, &figures);
    }

    /// One contender serving one crowd, measured.
    fn crowd_run(
        &self,
        who: &Contender,
        path: &Path,
        poem: &[u8],
        clients: usize,
    ) -> Result<Figures, String> {
        let log = self.log("crowd");
        let pace = |workers: usize| -> Vec<String> {
            ["--workers", &workers.to_string(), "--delay", "0.5", "--num-bytes", "10"]
                .map(String::from)
                .to_vec()
        };
        let start = |workers: usize| {
            let args = pace(workers);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match who {
                Contender::Floor => Served::pacer(path, &args, &log),
                Contender::Poetry(bin) => Served::try_poetry_bin(&bin.path, path, &args, &log),
                Contender::Endlessh => {
                    let port = free_port();
                    Ok(Served::peer(
                        Command::new("endlessh")
                            .args(["-4", "-d", "500", "-l", "10", "-m"])
                            .arg(workers.to_string())
                            .args(["-p", &port.to_string(), "-f", "/dev/null"]),
                        port,
                    ))
                }
            }
        };
        // What the program holds idle: for a threaded server, started with one worker, so
        // that each client's thread counts as the client's whether the pool starts its
        // threads at once or as clients come.
        let idle = match who {
            Contender::Endlessh => None,
            _ => {
                let idle = start(1)?;
                thread::sleep(Duration::from_millis(200));
                Some(idle.rss_kib())
            }
        };
        let kernel_before = Kernel::settled();
        let server = start(clients)?;
        let idle = idle.unwrap_or_else(|| server.rss_kib());
        let quota = matches!(who, Contender::Endlessh).then_some(CHUNKS);
        let expect = if quota.is_some() { &[][..] } else { poem };
        let (cpu_before, overflows, drops) =
            (server.cpu(), tcp_ext("ListenOverflows"), tcp_ext("ListenDrops"));
        let held = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (crowd, sample) = thread::scope(|scope| {
            let sampler = scope.spawn(|| sample_held(&server, &held, &stop));
            let crowd = clients::crowd_watched(server.addr, clients, expect, quota, &held);
            stop.store(true, Ordering::Relaxed);
            (crowd, sampler.join().expect("sampler"))
        });
        // The server's last closes follow the clients' EOFs: let them finish before the CPU
        // is read.
        thread::sleep(Duration::from_millis(200));
        let cpu = (server.cpu() - cpu_before).as_secs_f64() * 1e6;
        let (overflows, drops) =
            (tcp_ext("ListenOverflows") - overflows, tcp_ext("ListenDrops") - drops);
        drop(server);
        let per = |now: u64, then: u64| (now as f64 - then as f64) / sample.held.max(1) as f64;
        let (p50, p99) = lateness(&crowd, None);
        let (first_p50, first_p99) = lateness(&crowd, Some(0));
        let mut times = crowd.times();
        times.sort();
        let written = match quota {
            Some(_) => crowd.lines,
            None => clients * CHUNKS,
        };
        Ok(Figures {
            slowest: crowd.slowest.as_secs_f64(),
            median: times.get(times.len() / 2).map_or(f64::NAN, Duration::as_secs_f64),
            overflows,
            drops,
            rss: per(sample.rss_kib, idle),
            stacks: per(sample.kernel.stacks_kib, kernel_before.stacks_kib),
            slab: sample
                .kernel
                .socket_slab_kib
                .zip(kernel_before.socket_slab_kib)
                .map(|(now, then)| per(now, then)),
            cpu: cpu / written.max(1) as f64,
            p50,
            p99,
            first_p50,
            first_p99,
            first_byte: crowd.first_byte.as_secs_f64() * 1e3,
            failed: crowd.failed,
            held: sample.held,
        })
    }

    /// The table's rows: each binary's figures beside the floor's from the same runs, then
    /// endlessh's.
    fn crowd_rows(&mut self, name: &str, contenders: &[Contender], figures: &[Vec<Figures>]) {
        let floor = &figures[0];
        let ideal = DELAY.as_secs_f64() * (CHUNKS - 1) as f64;
        let held: Vec<String> = contenders
            .iter()
            .zip(figures)
            .map(|(c, f)| {
                let least = f.iter().map(|f| f.held).min().unwrap_or(0);
                format!("{} {least}", c.label())
            })
            .collect();
        let pick = |f: fn(&Figures) -> f64| {
            move |runs: &[Figures]| runs.iter().map(f).collect::<Vec<f64>>()
        };
        let slowest = pick(|f| f.slowest);
        let middle = pick(|f| f.median);
        self.rows.push(
            Row::new(
                &format!("{name}, floor: slowest / median client, connect→EOF (s)"),
                format!("{:.2} / {:.2}", median(slowest(floor)), median(middle(floor))),
            )
            .versus(
                format!("{ideal:.2} ideal"),
                format!(
                    "{:.3}× / {:.3}×",
                    median(slowest(floor)) / ideal,
                    median(middle(floor)) / ideal
                ),
            )
            .goal(Goal::zero(floor.iter().map(|f| f.failed).sum())),
        );
        self.rows.push(Row::new(
            &format!("{name}: fewest clients held at once, any run"),
            held.join(", "),
        ));
        let floor_median = |f: fn(&Figures) -> f64| median(pick(f)(floor));
        let dropped: u64 = floor.iter().map(|f| f.overflows).sum();
        self.rows.push(Row::new(
            &format!(
                "{name}, floor: resident / kernel stacks + page tables / socket slab per held \
                 client (KiB); CPU per chunk (µs); lateness p50 / p99 (ms); connects dropped"
            ),
            format!(
                "{:.1} / {:.1} / {}; {:.1}; {:.1} / {:.1}; {dropped}",
                floor_median(|f| f.rss),
                floor_median(|f| f.stacks),
                match floor.iter().all(|f| f.slab.is_some()) {
                    true => format!("{:.1}", floor_median(|f| f.slab.unwrap_or(f64::NAN))),
                    false => "unread".into(),
                },
                floor_median(|f| f.cpu),
                floor_median(|f| f.p50),
                floor_median(|f| f.p99),
            ),
        ));
        for (who, ours) in contenders.iter().zip(figures).skip(1) {
            let label = who.label();
            let row = |what: &str| format!("{name}, {label}: {what}");
            if matches!(who, Contender::Endlessh) {
                let rss = Compared::new(&pick(|f| f.rss)(ours), &pick(|f| f.rss)(floor));
                self.rows.push(
                    Row::new(&row("resident memory per held client (KiB)"), rss.ours(1))
                        .versus(rss.theirs(1), rss.ratio()),
                );
                let cpu = Compared::new(&pick(|f| f.cpu)(ours), &pick(|f| f.cpu)(floor));
                self.rows.push(
                    Row::new(&row("CPU per line (µs), floor per chunk"), cpu.ours(1))
                        .versus(cpu.theirs(1), cpu.ratio()),
                );
                continue;
            }
            let failed: usize = ours.iter().map(|f| f.failed).sum();
            let floor_failed: usize = floor.iter().map(|f| f.failed).sum();
            self.rows.push(
                Row::new(&row("clients not served byte for byte, all runs"), failed.to_string())
                    .versus(format!("{floor_failed} floor"), String::new())
                    .goal(Goal::zero(failed)),
            );
            let time = Compared::new(&slowest(ours), &slowest(floor));
            self.rows.push(
                Row::new(&row("slowest client, connect→EOF (s)"), time.ours(2))
                    .versus(time.theirs(2), time.ratio())
                    .goal(Goal::at_most(time.median, 1.02, "× floor").and_none_failed(failed)),
            );
            let time = Compared::new(&middle(ours), &middle(floor));
            self.rows.push(
                Row::new(&row("median client, connect→EOF (s)"), time.ours(2))
                    .versus(time.theirs(2), time.ratio())
                    .goal(Goal::at_most(time.median, 1.02, "× floor")),
            );
            let worse = ours.iter().zip(floor).filter(|(o, f)| o.overflows > f.overflows).count();
            let sum = |runs: &[Figures], f: fn(&Figures) -> u64| runs.iter().map(f).sum::<u64>();
            self.rows.push(
                Row::new(
                    &row("connects dropped by a full backlog, all runs (ListenDrops)"),
                    format!("{} ({})", sum(ours, |f| f.overflows), sum(ours, |f| f.drops)),
                )
                .versus(
                    format!("{} ({}) floor", sum(floor, |f| f.overflows), sum(floor, |f| f.drops)),
                    format!("more in {worse} of {} runs", ours.len()),
                )
                .goal(Goal::new("≤ floor's, every run", worse == 0)),
            );
            let rss = Compared::new(&pick(|f| f.rss)(ours), &pick(|f| f.rss)(floor));
            self.rows.push(
                Row::new(&row("resident memory per held client (KiB)"), rss.ours(1))
                    .versus(rss.theirs(1), rss.ratio())
                    .goal(Goal::at_most(rss.median, 1.1, "× floor")),
            );
            let stacks = Compared::new(&pick(|f| f.stacks)(ours), &pick(|f| f.stacks)(floor));
            self.rows.push(
                Row::new(&row("kernel stacks + page tables per held client (KiB)"), stacks.ours(1))
                    .versus(stacks.theirs(1), stacks.ratio()),
            );
            if ours.iter().chain(floor).all(|f| f.slab.is_some()) {
                let slab = |runs: &[Figures]| -> Vec<f64> {
                    runs.iter().map(|f| f.slab.unwrap_or(f64::NAN)).collect()
                };
                let slab = Compared::new(&slab(ours), &slab(floor));
                self.rows.push(
                    Row::new(
                        &row("socket slab per held connection, both ends (KiB)"),
                        slab.ours(1),
                    )
                    .versus(slab.theirs(1), slab.ratio()),
                );
            }
            let cpu = Compared::new(&pick(|f| f.cpu)(ours), &pick(|f| f.cpu)(floor));
            self.rows.push(
                Row::new(&row("CPU per chunk (µs)"), cpu.ours(1))
                    .versus(cpu.theirs(1), cpu.ratio())
                    .goal(Goal::at_most(cpu.median, 1.2, "× floor")),
            );
            let p50 = Compared::new(&pick(|f| f.p50)(ours), &pick(|f| f.p50)(floor));
            let p99 = Compared::new(&pick(|f| f.p99)(ours), &pick(|f| f.p99)(floor));
            self.rows.push(
                Row::new(
                    &row("chunk lateness p50 / p99, on arrival at the client (ms)"),
                    format!("{:.1} / {}", p50.ours_median, p99.ours(1)),
                )
                .versus(
                    format!("{:.1} / {:.1} floor", p50.theirs_median, p99.theirs_median),
                    format!("{:.2}× / {}", p50.median, p99.ratio()),
                )
                .goal(Goal::at_most(p99.median, 1.5, "× floor (p99)")),
            );
            let first50 =
                Compared::new(&pick(|f| f.first_p50)(ours), &pick(|f| f.first_p50)(floor));
            let first99 =
                Compared::new(&pick(|f| f.first_p99)(ours), &pick(|f| f.first_p99)(floor));
            self.rows.push(
                Row::new(
                    &row("first chunk's lateness p50 / p99: taking the burst (ms)"),
                    format!("{:.1} / {:.1}", first50.ours_median, first99.ours_median),
                )
                .versus(
                    format!("{:.1} / {:.1} floor", first50.theirs_median, first99.theirs_median),
                    format!("{:.2}× / {:.2}×", first50.median, first99.median),
                ),
            );
            let wait = Compared::new(&pick(|f| f.first_byte)(ours), &pick(|f| f.first_byte)(floor));
            self.rows.push(
                Row::new(&row("longest wait for a first byte (ms)"), wait.ours(0))
                    .versus(wait.theirs(0), wait.ratio()),
            );
        }
    }
}

/// One figure of ours beside the floor's over the same runs: medians, worst runs, and the
/// ratio ours / floor taken within each run. Every figure here is better lower, so the worst
/// run is the highest.
struct Compared {
    ours_median: f64,
    ours_worst: f64,
    theirs_median: f64,
    /// The median and the highest of the per-run ratios.
    median: f64,
    worst: f64,
}

impl Compared {
    fn new(ours: &[f64], theirs: &[f64]) -> Compared {
        let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(o, t)| o / t).collect();
        let highest = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Compared {
            ours_median: median(ours.to_vec()),
            ours_worst: highest(ours),
            theirs_median: median(theirs.to_vec()),
            median: median(ratios.clone()),
            worst: highest(&ratios),
        }
    }

    /// Our median and, in parentheses, our worst run, to `places` decimals.
    fn ours(&self, places: usize) -> String {
        format!("{:.places$} ({:.places$})", self.ours_median, self.ours_worst)
    }

    fn theirs(&self, places: usize) -> String {
        format!("{:.places$} floor", self.theirs_median)
    }

    fn ratio(&self) -> String {
        format!("{:.3}× ({:.3}×)", self.median, self.worst)
    }
}

/// The 50th and 99th percentile of every chunk's lateness in `crowd` (or only chunk `k`'s), in
/// ms.
fn lateness(crowd: &Crowd, k: Option<usize>) -> (f64, f64) {
    let mut late: Vec<Duration> = crowd
        .lateness(CHUNK, DELAY)
        .into_iter()
        .filter(|(chunk, _)| k.is_none_or(|k| k == *chunk))
        .map(|(_, late)| late)
        .collect();
    if late.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    late.sort();
    let at = |q: usize| late[(late.len() * q / 100).min(late.len() - 1)].as_secs_f64() * 1e3;
    (at(50), at(99))
}

/// What the server and the kernel held when the most clients were held at once.
struct Sample {
    held: usize,
    rss_kib: u64,
    kernel: Kernel,
}

/// Every 50 ms until `stop`, reads what the server and the kernel hold whenever `held` is at
/// its highest so far, and returns the last such reading.
fn sample_held(server: &Served, held: &AtomicUsize, stop: &AtomicBool) -> Sample {
    let mut best = Sample { held: 0, rss_kib: server.rss_kib(), kernel: Kernel::now() };
    while !stop.load(Ordering::Relaxed) {
        let now = held.load(Ordering::Relaxed);
        if now > 0 && now >= best.held {
            let (rss_kib, kernel) = (server.rss_kib(), Kernel::now());
            // Read again after: a client that ended meanwhile makes the reading a mixture.
            if held.load(Ordering::Relaxed) == now {
                best = Sample { held: now, rss_kib, kernel };
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    best
}

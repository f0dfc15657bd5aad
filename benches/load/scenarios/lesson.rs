//! Scenario 8, the tutorial's lesson: blocking, threaded and async on the same clients.

use std::path::Path;
use std::time::Duration;

use crate::Bench;
use crate::clients::{self, Timeline};
use crate::figures;
use crate::procs::{self, Served};
use crate::report::{Goal, Row, mib, thousands};

impl Bench {
    /// Scenario 8, the tutorial's lesson: the blocking model (poetry-serve with one worker),
    /// the threaded one (poetry-serve with a worker per client) and the asynchronous one (the
    /// tokio twin), each serving N clients who all connect at once to fetch a poem of 5
    /// chunks 0.1 s apart (0.4 s ideally). One run per point, whatever `BENCH_RUNS` says: the
    /// figures and the tables written beside them show exactly that run.
    pub fn lesson(&mut self) {
        const CHUNKS: usize = 5;
        let ideal = Duration::from_millis(400);
        let poem: Vec<u8> = (0..50).map(|i| b"a poem\n"[i % 7]).collect();
        let path = self.file("lesson.txt", &poem);
        let pace = ["--num-bytes", "10", "--delay", "0.1"];
        let busy = procs::cpu_busy();
        // For the figures: each model's ten clients, and its time to the last byte by count.
        let mut ten: Vec<(Model, Vec<Timeline>)> = vec![];
        let mut points: Vec<Point> = vec![];
        for model in Model::ALL {
            for &n in model.clients() {
                self.say(&format!("lesson: {}, {n} clients", model.label()));
                let server = model.start(&path, &pace, n, &self.log("lesson"));
                let (before, overflows) = (server.cpu_exact(), procs::tcp_ext("ListenOverflows"));
                let crowd = clients::crowd(server.addr, n, &poem, None);
                let dropped = procs::tcp_ext("ListenOverflows") - overflows;
                let cpu = (server.cpu_exact() - before).as_secs_f64() * 1e6 / (n * CHUNKS) as f64;
                let usage = server.usage();
                let last = crowd.slowest.as_secs_f64();
                if n == TIMELINE_CLIENTS {
                    ten.push((model, crowd.timelines.clone()));
                }
                let point = Point {
                    model,
                    clients: n,
                    last,
                    cpu,
                    rss: mib(server.peak_rss()),
                    threads: usage.threads,
                    failed: crowd.failed,
                    dropped,
                };
                self.rows.push(
                    Row::new(
                        &format!("8. lesson: {}, {n} clients: last done (s)", model.label()),
                        format!("{last:.2}"),
                    )
                    .versus(
                        format!("{:.2} ideal", ideal.as_secs_f64()),
                        format!("{:.2}×", last / ideal.as_secs_f64()),
                    )
                    .goal(Goal::zero(point.failed)),
                );
                self.rows.push(Row::new(
                    &format!(
                        "8. lesson: {}, {n} clients: CPU per chunk (µs), peak RSS (MiB), threads",
                        model.label()
                    ),
                    format!("{cpu:.1}, {:.1}, {}", point.rss, point.threads),
                ));
                self.rows.push(Row::new(
                    &format!(
                        "8. lesson: {}, {n} clients: connects dropped by a full backlog",
                        model.label()
                    ),
                    format!("{}", point.dropped),
                ));
                points.push(point);
            }
        }
        let machine = format!(
            "benches/run lesson, {}, {}, {} cores, Linux {}, loopback, {busy} it started",
            crate::today(),
            procs::cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            procs::kernel(),
        );
        self.draw_lesson(&machine, &ten, &points, ideal.as_secs_f64(), poem.len() / CHUNKS);
    }

    /// Writes the lesson's figures and its tables (Markdown, as docs/lesson.md shows them)
    /// into `target/lesson/`, each captioned with the run's date and machine, and says where
    /// they went. Nothing tracked by git is written: the committed figures are replaced only
    /// by copying these on purpose.
    fn draw_lesson(
        &self,
        machine: &str,
        ten: &[(Model, Vec<Timeline>)],
        points: &[Point],
        ideal: f64,
        chunk: usize,
    ) {
        let dir = procs::target_dir().join("lesson");
        std::fs::create_dir_all(&dir).expect("create target/lesson");
        let pace = "5 chunks of 10 bytes, 0.1 s apart";
        let panels: Vec<(String, &[Timeline])> = ten
            .iter()
            .map(|(model, clients)| {
                let name = format!("{}: {TIMELINE_CLIENTS} clients at once", model.label());
                (name, clients.as_slice())
            })
            .collect();
        let panels: Vec<(&str, &[Timeline])> =
            panels.iter().map(|(name, c)| (name.as_str(), *c)).collect();
        let timeline = dir.join("lesson-timeline.svg");
        let caption = [
            machine.to_string(),
            format!(
                "{pace}; each panel is one run of {TIMELINE_CLIENTS} clients (the {TIMELINE_CLIENTS}-client \
                 points of the scaling figure, same run)"
            ),
        ];
        figures::timelines(&timeline, &caption, &panels, chunk).expect("draw the timeline");
        let series: Vec<(&str, Vec<(usize, f64)>)> = Model::ALL
            .iter()
            .map(|&model| {
                let line = points
                    .iter()
                    .filter(|p| p.model == model)
                    .map(|p| (p.clients, p.last))
                    .collect();
                (model.label(), line)
            })
            .collect();
        let scaling = dir.join("lesson-scaling.svg");
        let caption = [
            machine.to_string(),
            format!(
                "{pace}; each point is one run; each model's points are shifted sideways a little \
                 so that none hides another"
            ),
        ];
        figures::scaling(&scaling, &caption, ideal, &series).expect("draw the scaling figure");
        let tables = dir.join("lesson.md");
        std::fs::write(&tables, tables_markdown(machine, points, ideal))
            .expect("write target/lesson/lesson.md");
        self.say(&format!(
            "lesson: {}, {} and {}; to publish the figures: cp {}/lesson-*.svg benches/figures/",
            timeline.display(),
            scaling.display(),
            tables.display(),
            dir.display()
        ));
    }
}

/// One model serving one number of clients, once.
struct Point {
    model: Model,
    clients: usize,
    /// Seconds until the last client had the whole poem.
    last: f64,
    /// Server CPU per chunk (µs), peak resident memory (MiB), threads.
    cpu: f64,
    rss: f64,
    threads: usize,
    failed: usize,
    /// Connects the kernel dropped because the listen backlog was full (machine-wide
    /// ListenOverflows over the point): each such client waited for its SYN to be retried.
    dropped: u64,
}

/// The lesson's two tables, as docs/lesson.md shows them, from the points of one run.
fn tables_markdown(machine: &str, points: &[Point], ideal: f64) -> String {
    let counts = [1, 10, 100, 1000, 10_000];
    let find = |model: Model, n: usize| points.iter().find(|p| p.model == model && p.clients == n);
    let mut out = format!(
        "{machine}\n\n| clients | blocking: last done | threaded: last done | async: last done |\n| ---: | ---: | ---: | ---: |\n"
    );
    for n in counts {
        out += &format!("| {} |", thousands(n));
        for model in Model::ALL {
            out += &match find(model, n) {
                Some(p) if p.failed > 0 => format!(" {:.2} s, {} failed |", p.last, p.failed),
                Some(p) if p.dropped > 0 => format!(
                    " {:.2} s ({:.2}×; {} connects dropped) |",
                    p.last,
                    p.last / ideal,
                    thousands(p.dropped as usize)
                ),
                Some(p) => format!(" {:.2} s ({:.2}×) |", p.last, p.last / ideal),
                None => {
                    format!(" not run (≈ {} s) |", thousands((n as f64 * ideal).round() as usize))
                }
            };
        }
        out += "\n";
    }
    out += "\n| clients | blocking: CPU per chunk, RSS, threads | threaded: CPU per chunk, RSS, threads | async: CPU per chunk, RSS, threads |\n| ---: | --- | --- | --- |\n";
    for n in counts {
        out += &format!("| {} |", thousands(n));
        for model in Model::ALL {
            out += &match find(model, n) {
                Some(p) => {
                    format!(" {:.1} µs, {:.1} MiB, {} |", p.cpu, p.rss, thousands(p.threads))
                }
                None => " |".to_string(),
            };
        }
        out += "\n";
    }
    out
}

/// How many clients the timeline shows for each model, as the tutorial's pictures.
const TIMELINE_CLIENTS: usize = 10;

/// The tutorial's three ways to write the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// One client at a time: poetry-serve with one worker.
    Blocking,
    /// A thread per client: poetry-serve with a worker per client.
    Threaded,
    /// One event loop for every client: the tokio twin.
    Async,
}

impl Model {
    const ALL: [Model; 3] = [Model::Blocking, Model::Threaded, Model::Async];

    /// The model's name in the table, with how it is run.
    fn label(self) -> &'static str {
        match self {
            Model::Blocking => "blocking (--workers 1)",
            Model::Threaded => "threaded (--workers N)",
            Model::Async => "async (tokio twin)",
        }
    }

    /// The numbers of clients it is measured with.
    fn clients(self) -> &'static [usize] {
        match self {
            // It takes N × 0.4 s: past 100 clients nobody would wait for it.
            Model::Blocking => &[1, 10, 100],
            Model::Threaded | Model::Async => &[1, 10, 100, 1000, 10_000],
        }
    }

    /// Starts a server of this model for `clients` clients, paced by `pace`.
    fn start(self, poem: &Path, pace: &[&str], clients: usize, log: &Path) -> Served {
        let workers = match self {
            Model::Blocking => 1,
            Model::Threaded => clients.max(1),
            Model::Async => return Served::twin(poem, pace, log),
        }
        .to_string();
        let mut args = pace.to_vec();
        args.extend(["--workers", &workers]);
        Served::poetry(poem, &args, log)
    }
}

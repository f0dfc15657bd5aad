//! Scenario 8, the tutorial's lesson: blocking, threaded and async on the same clients.

use std::path::Path;
use std::time::Duration;

use crate::Bench;
use crate::clients::{self, Timeline};
use crate::figures;
use crate::procs::{self, Served};
use crate::report::{Goal, Row, mib};

impl Bench {
    /// Scenario 8, the tutorial's lesson: the blocking model (poetry-serve with one worker),
    /// the threaded one (poetry-serve with a worker per client) and the asynchronous one (the
    /// tokio twin), each serving N clients who all connect at once to fetch a poem of 5
    /// chunks 0.1 s apart (0.4 s ideally).
    pub fn lesson(&mut self) {
        const CHUNKS: usize = 5;
        let ideal = Duration::from_millis(400);
        let poem: Vec<u8> = (0..50).map(|i| b"a poem\n"[i % 7]).collect();
        let path = self.file("lesson.txt", &poem);
        let pace = ["--num-bytes", "10", "--delay", "0.1"];
        // For the figures: each model's ten clients, and its time to the last byte by count.
        let mut ten: Vec<(Model, Vec<Timeline>)> = vec![];
        let mut last_done: Vec<(Model, Vec<(usize, f64)>)> = vec![];
        for model in Model::ALL {
            let mut points = vec![];
            for &n in model.clients() {
                self.say(&format!("lesson: {}, {n} clients", model.label()));
                let server = model.start(&path, &pace, n, &self.log("lesson"));
                let before = server.cpu_exact();
                let crowd = clients::crowd(server.addr, n, &poem, None);
                let cpu = (server.cpu_exact() - before).as_secs_f64() * 1e6 / (n * CHUNKS) as f64;
                let usage = server.usage();
                let last = crowd.slowest.as_secs_f64();
                points.push((n, last));
                if n == TIMELINE_CLIENTS {
                    ten.push((model, crowd.timelines.clone()));
                }
                self.rows.push(
                    Row::new(
                        &format!("8. lesson: {}, {n} clients: last done (s)", model.label()),
                        format!("{last:.2}"),
                    )
                    .versus(
                        format!("{:.2} ideal", ideal.as_secs_f64()),
                        format!("{:.2}×", last / ideal.as_secs_f64()),
                    )
                    .goal(Goal::zero(crowd.failed)),
                );
                self.rows.push(Row::new(
                    &format!(
                        "8. lesson: {}, {n} clients: CPU per chunk (µs), peak RSS (MiB), threads",
                        model.label()
                    ),
                    format!("{cpu:.1}, {:.1}, {}", mib(server.peak_rss()), usage.threads),
                ));
            }
            last_done.push((model, points));
        }
        self.draw_lesson(&ten, &last_done, ideal.as_secs_f64(), poem.len() / CHUNKS);
    }

    /// Writes the lesson's figures into benches/figures, captioned with the date and the
    /// machine, and says where they went.
    fn draw_lesson(
        &self,
        ten: &[(Model, Vec<Timeline>)],
        last_done: &[(Model, Vec<(usize, f64)>)],
        ideal: f64,
        chunk: usize,
    ) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/figures");
        std::fs::create_dir_all(&dir).expect("create benches/figures");
        let caption = format!(
            "benches/run lesson, {}, {}, {} cores, Linux {}, loopback; 5 chunks of 10 bytes, 0.1 s apart; one run per point",
            today(),
            procs::cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            procs::kernel(),
        );
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
        figures::timelines(&timeline, &caption, &panels, chunk).expect("draw the timeline");
        let series: Vec<(&str, Vec<(usize, f64)>)> = last_done
            .iter()
            .map(|(model, points)| (model.label(), points.clone()))
            .collect();
        let scaling = dir.join("lesson-scaling.svg");
        figures::scaling(&scaling, &caption, ideal, &series).expect("draw the scaling figure");
        self.say(&format!(
            "lesson figures: {} and {}",
            timeline.display(),
            scaling.display()
        ));
    }
}

/// How many clients the timeline shows for each model, as the tutorial's pictures.
const TIMELINE_CLIENTS: usize = 10;

/// Today's date (UTC), as the figures' captions give it.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "date unknown".into(), |d| d.trim().to_string())
}

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

//! Scenario 8, the tutorial's lesson: blocking, threaded and async on the same clients.

use std::path::Path;
use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::procs::Served;
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
        for model in Model::ALL {
            for &n in model.clients() {
                self.say(&format!("lesson: {}, {n} clients", model.label()));
                let server = model.start(&path, &pace, n, &self.log("lesson"));
                let before = server.cpu_exact();
                let crowd = clients::crowd(server.addr, n, poem.len(), None);
                let cpu = (server.cpu_exact() - before).as_secs_f64() * 1e6 / (n * CHUNKS) as f64;
                let usage = server.usage();
                let last = crowd.slowest.as_secs_f64();
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
        }
    }
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

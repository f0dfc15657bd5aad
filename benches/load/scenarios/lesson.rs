//! Scenario 8, the tutorial's lesson: blocking, threaded and async on the same clients.

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
}

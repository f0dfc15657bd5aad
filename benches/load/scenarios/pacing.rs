//! Scenario 4, pacing precision: how late each chunk arrives against its deadline; and again
//! with the status page's JSON polled ten times a second, which must change nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::procs::Served;
use crate::report::{Goal, Row, median};

/// How often the second variant reads `/status.json`: ten times a second, as ten browser tabs
/// left open on the page would.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The figures of one variant over the runs.
#[derive(Default)]
struct Figures {
    slowest: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    failed: usize,
}

impl Bench {
    /// Pacing precision (scenario 4): 64 clients, 100 chunks of 10 bytes at 20 ms; each run
    /// serves them once as they are and once with `/status.json` polled at 10 Hz meanwhile,
    /// by every binary under test, the variants in turns.
    pub fn pacing(&mut self) {
        const CLIENTS: usize = 64;
        const CHUNKS: usize = 100;
        let delay = Duration::from_millis(20);
        let ideal = delay * (CHUNKS as u32 - 1);
        let poem = vec![b'p'; 10 * CHUNKS];
        let path = self.file("pacing.txt", &poem);
        let binaries = self.binaries.clone();
        // (binary, polled) for every variant, each with its figures.
        let variants: Vec<(usize, bool)> =
            (0..binaries.len()).flat_map(|b| [(b, false), (b, true)]).collect();
        let mut figures: Vec<Figures> = variants.iter().map(|_| Figures::default()).collect();
        let mut polls = vec![(0, 0, Duration::ZERO); binaries.len()];
        for run in 0..self.runs {
            // Taken in turns, so that no variant always runs first.
            for turn in 0..variants.len() {
                let v = (turn + run) % variants.len();
                let (b, with_poller) = variants[v];
                let what = if with_poller { ", /status.json polled" } else { "" };
                self.say(&format!(
                    "pacing precision, {}{what}, run {}",
                    binaries[b].label,
                    run + 1
                ));
                let args = ["--delay", "0.02", "--num-bytes", "10", "--metrics", "127.0.0.1:0"];
                let server =
                    Served::poetry_bin(&binaries[b].path, &path, &args, &self.log("pacing"));
                let metrics = server.metrics.expect("started with --metrics");
                let stop = AtomicBool::new(false);
                let ((mut late, worst, bad), polled) = thread::scope(|scope| {
                    let poller = with_poller.then(|| {
                        scope.spawn(|| {
                            clients::poll_http(metrics, "/status.json", POLL_EVERY, &stop)
                        })
                    });
                    let result = clients::pacing(server.addr, CLIENTS, 10, CHUNKS, delay);
                    stop.store(true, Ordering::Relaxed);
                    (result, poller.map(|p| p.join().expect("poller")))
                });
                if let Some(polled) = polled {
                    let (answered, unanswered, slowest) = &mut polls[b];
                    *answered += polled.answered;
                    *unanswered += polled.failed;
                    *slowest = (*slowest).max(polled.slowest);
                }
                let figures = &mut figures[v];
                figures.failed += bad;
                late.sort();
                figures.slowest.push(worst.as_secs_f64());
                if late.is_empty() {
                    continue;
                }
                figures.p50.push(late[late.len() / 2].as_secs_f64() * 1e3);
                figures.p99.push(late[late.len() * 99 / 100].as_secs_f64() * 1e3);
            }
        }
        let mut figures = figures.into_iter();
        for (binary, (answered, unanswered, slowest_poll)) in binaries.iter().zip(polls) {
            let plain = figures.next().expect("a plain variant per binary");
            let polled = figures.next().expect("a polled variant per binary");
            let name = match binaries.len() {
                1 => String::new(),
                _ => format!(", {}", binary.label),
            };
            self.pacing_rows(&name, ideal, plain, polled, (answered, unanswered, slowest_poll));
        }
    }

    /// The rows of one binary's pacing; `name` follows "4. pacing" in each row's name.
    fn pacing_rows(
        &mut self,
        name: &str,
        ideal: Duration,
        plain: Figures,
        polled: Figures,
        (answered, unanswered, slowest_poll): (usize, usize, Duration),
    ) {
        let median = |v: Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
        let bound = ideal.as_secs_f64() * 1.05 + 0.1;
        let ideal_text = format!("{:.2} ideal", ideal.as_secs_f64());
        let (slowest, p50, p99) = (median(plain.slowest), median(plain.p50), median(plain.p99));
        self.rows.push(
            Row::new(&format!("4. pacing{name}: slowest of 64 (s)"), format!("{slowest:.3}"))
                .versus(ideal_text.clone(), format!("{:.3}×", slowest / ideal.as_secs_f64()))
                .goal(
                    Goal::at_most(slowest, bound, " s (1.05× ideal + 0.1 s)")
                        .and_none_failed(plain.failed),
                ),
        );
        self.rows.push(Row::new(
            &format!("4. pacing{name}: chunk lateness p50 / p99 (ms)"),
            format!("{p50:.2} / {p99:.2}"),
        ));
        let (polled_slowest, polled_p50, polled_p99) =
            (median(polled.slowest), median(polled.p50), median(polled.p99));
        self.rows.push(
            Row::new(
                &format!("4. pacing{name}, /status.json polled at 10 Hz: slowest of 64 (s)"),
                format!("{polled_slowest:.3}"),
            )
            .versus(format!("{slowest:.3} unpolled"), format!("{:.3}×", polled_slowest / slowest))
            .goal(
                Goal::at_most(polled_slowest, bound, " s (as unpolled)")
                    .and_none_failed(polled.failed),
            ),
        );
        self.rows.push(
            Row::new(
                &format!("4. pacing{name}, polled: chunk lateness p50 / p99 (ms)"),
                format!("{polled_p50:.2} / {polled_p99:.2}"),
            )
            .versus(
                format!("{p50:.2} / {p99:.2} unpolled"),
                format!("{:.2}× / {:.2}×", polled_p50 / p50, polled_p99 / p99),
            ),
        );
        self.rows.push(
            Row::new(
                &format!("4. pacing{name}, polled: /status.json answers (slowest, ms)"),
                format!("{answered} ({:.1})", slowest_poll.as_secs_f64() * 1e3),
            )
            .goal(Goal::zero(unanswered)),
        );
    }
}

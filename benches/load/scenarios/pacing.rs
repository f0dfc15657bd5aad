//! Scenario 4, pacing precision: how late each chunk arrives against its deadline.

use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::procs::Served;
use crate::report::{Goal, Row, median};

impl Bench {
    /// 4. Pacing precision: 64 clients, 100 chunks of 10 bytes at 20 ms.
    pub fn pacing(&mut self) {
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
}

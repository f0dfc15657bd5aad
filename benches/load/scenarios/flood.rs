//! Scenario 6, a flood from one source under `--max-per-source`.

use std::time::{Duration, Instant};

use crate::Bench;
use crate::clients;
use crate::procs::Served;
use crate::report::{Goal, Row, median, mib};

/// What a probe that never got a byte counts as.
const LIMIT_WAIT: Duration = clients::LIMIT;

impl Bench {
    /// Scenario 6, a flood from one source under --max-per-source: ten times the limit in
    /// idle sockets, and two threads reconnecting as fast as they can, while clients from
    /// other sources time their first byte.
    pub fn flood(&mut self) {
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
                let churners: Vec<_> =
                    (0..2).map(|_| scope.spawn(|| clients::churn(server.addr, &stop))).collect();
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
        self.rows.push(Row::new("6. flood: server peak RSS (MiB)", format!("{:.1}", median(rss))));
    }
}

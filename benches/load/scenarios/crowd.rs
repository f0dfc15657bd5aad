//! Scenario 3, a crowd: ten thousand slow clients at once, beside endlessh.

use std::process::Command;
use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::procs::{Served, free_port, installed, listen_overflows};
use crate::report::{Goal, Row, median, mib};

impl Bench {
    /// 3. Ten thousand slow clients at once, beside endlessh.
    pub fn crowd(&mut self, with_endlessh: bool) {
        const CLIENTS: usize = 10_000;
        const CHUNKS: usize = 10;
        let ideal = Duration::from_millis(4500);
        let poem: Vec<u8> =
            (0..100).map(|i| if i % 10 == 9 { b'\n' } else { b'a' + (i % 26) as u8 }).collect();
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
        let (e_rss, e_cpu) =
            if with_endlessh { self.endlessh(CLIENTS, CHUNKS) } else { (None, None) };
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
}

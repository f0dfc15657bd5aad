//! Scenario 1, connection rate: many short fetches, against the floor and socat.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::floor::Floor;
use crate::procs::{Served, free_port};
use crate::report::{Goal, Row, median};

impl Bench {
    /// 1. Connection rate: 20,000 fetches of a ~1.5 KB poem from 8 client threads.
    pub fn connection_rate(&mut self) {
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
}

//! Scenario 2, bulk: one client reading a 1 GiB poem, then 256 at once, for throughput and memory.

use std::path::Path;
use std::sync::Arc;

use crate::Bench;
use crate::clients;
use crate::floor::Floor;
use crate::procs::Served;
use crate::report::{Goal, Row, median, mib};

impl Bench {
    /// 2. Bulk: a 1 GiB poem at --delay 0 and the default --num-bytes.
    pub fn bulk(&mut self, big: &Path) {
        let content = Arc::new(std::fs::read(big).expect("read the 1 GiB poem"));
        let (mut ours, mut floor, mut rss) = (vec![], vec![], vec![]);
        for run in 0..self.runs {
            self.say(&format!("bulk, run {}", run + 1));
            let server = Served::poetry(big, &["--delay", "0"], &self.log("bulk"));
            let (got, took) = clients::bulk(server.addr);
            assert_eq!(got, content.len(), "poetry-serve sent a short bulk poem");
            ours.push(got as f64 / took.as_secs_f64() / 1e6);
            rss.push(mib(server.peak_rss()));
            drop(server);

            let base = Floor::start(Arc::clone(&content));
            let (got, took) = clients::bulk(base.addr);
            assert_eq!(got, content.len(), "the floor sent a short bulk poem");
            floor.push(got as f64 / took.as_secs_f64() / 1e6);
        }
        let (ours, floor, rss) = (median(ours), median(floor), median(rss));
        self.rows.push(
            Row::new("2. bulk 1 GiB, --delay 0 (MB/s)", format!("{ours:.0}"))
                .versus(format!("{floor:.0} floor"), format!("{:.2}×", ours / floor))
                .goal(Goal::at_least(ours / floor, 0.95, "×")),
        );
        self.rows.push(
            Row::new("2. bulk: server peak RSS, one client (MiB)", format!("{rss:.1}"))
                .goal(Goal::at_most(rss, 64.0, "")),
        );
        // 256 clients at once (every default worker busy), each reading a 64 MiB poem: each
        // connection has a buffer of its own, so memory grows with them, up to a bound.
        self.say("bulk, 256 clients at once");
        let poem = self.file("bulk64.bin", &content[..64 << 20]);
        let server = Served::poetry(&poem, &["--delay", "0"], &self.log("bulk256"));
        let got = std::thread::scope(|scope| {
            let readers: Vec<_> =
                (0..256).map(|_| scope.spawn(|| clients::bulk(server.addr).0)).collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect::<Vec<_>>()
        });
        let short = got.iter().filter(|&&n| n != 64 << 20).count();
        let rss = mib(server.peak_rss());
        self.rows.push(
            Row::new("2. bulk: server peak RSS, 256 clients at once (MiB)", format!("{rss:.1}"))
                .goal(
                    Goal::at_most(rss, 300.0, " (256 × 1 MiB buffers + base)")
                        .and_none_failed(short),
                ),
        );
    }
}

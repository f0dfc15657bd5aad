//! Scenario 5, start-up: from exec to the listening line.

use std::path::Path;

use crate::Bench;
use crate::procs::Served;
use crate::report::{Goal, Row, median};

impl Bench {
    /// 5. Start-up: from exec to the listening line, with a 1 GiB poem.
    pub fn startup(&mut self, big: &Path) {
        self.say("start-up");
        let mut times = vec![];
        for _ in 0..(self.runs * 7).max(21) {
            let (server, took) = Served::poetry_timed(big, &[], &self.log("startup"));
            times.push(took.as_secs_f64() * 1e3);
            drop(server);
        }
        let ms = median(times);
        self.rows.push(
            Row::new("5. start-up to listening line, 1 GiB poem (ms)", format!("{ms:.2}"))
                .goal(Goal::at_most(ms, 20.0, " ms")),
        );
    }
}

//! Scenario 7, a soak: a million fetches and a reload by one process, which must end holding what
//! it held after warm-up.

use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::procs::Served;
use crate::report::{Goal, Row};

impl Bench {
    /// Scenario 7, a soak: a million fetches of a poem sent at once, then paced clients, all
    /// by one process, whose descriptors, threads and memory must end where they were after
    /// warm-up.
    pub fn soak(&mut self) {
        for binary in self.binaries.clone() {
            let name = match self.binaries.len() {
                1 => String::new(),
                _ => format!(", {}", binary.label),
            };
            self.soak_one(&binary.path, &name);
        }
    }

    /// The soak of the binary `bin`; `name` follows "7. soak" in its rows' names.
    fn soak_one(&mut self, bin: &std::path::Path, name: &str) {
        const WARM_UP: usize = 50_000;
        const FETCHES: usize = 1_000_000;
        const PACED: usize = 2_000;
        let dir = self.dir.path().join("soak");
        std::fs::create_dir_all(&dir).expect("a directory of poems");
        // One chunk (--num-bytes is the poem's size): sent at once, as with --delay 0.
        let short: Vec<u8> = (0..1500).map(|i| b"soak poem\n"[i % 10]).collect();
        std::fs::write(dir.join("a.txt"), &short).expect("write the short poem");
        let _ = std::fs::remove_file(dir.join("b.txt"));
        self.say(&format!("soak{name}: warm-up"));
        let args = ["--delay", "0.05", "--num-bytes", "1500"];
        let server = Served::poetry_bin(bin, &dir, &args, &self.log("soak"));
        let warm = clients::fetches(server.addr, 8, WARM_UP, &short, clients::LIMIT);
        let after_warm_up = server.usage();
        self.say(&format!("soak{name}: a million fetches"));
        let bound = Duration::from_secs(150);
        let main = clients::fetches(server.addr, 8, FETCHES - WARM_UP, &short, bound);
        // The paced phase: ten chunks 50 ms apart, the poem swapped in by SIGHUP.
        self.say(&format!("soak{name}: paced clients"));
        let long: Vec<u8> = (0..15_000).map(|i| b"paced poem\n"[i % 11]).collect();
        std::fs::write(dir.join("b.txt"), &long).expect("write the paced poem");
        std::fs::remove_file(dir.join("a.txt")).expect("remove the short poem");
        server.reload();
        let paced = clients::fetches(server.addr, 200, PACED, &long, bound);
        // Let the last closes finish lingering (at most 2 s) before counting what is held.
        std::thread::sleep(Duration::from_millis(2500));
        let at_end = server.usage();
        let failed = warm.failed + main.failed + paced.failed;
        let done = warm.done + main.done;
        self.rows.push(
            Row::new(
                &format!("7. soak{name}: fetches at once (byte-exact), then paced"),
                format!("{done} + {}", paced.done),
            )
            .versus(
                format!("{:.0}/s", main.done as f64 / main.elapsed.as_secs_f64()),
                format!("{:.0} s", main.elapsed.as_secs_f64()),
            )
            .goal(Goal::at_least(done as f64, FETCHES as f64, "").and_none_failed(failed)),
        );
        for (what, warm, end) in [
            ("open fds", after_warm_up.fds, at_end.fds),
            ("threads", after_warm_up.threads, at_end.threads),
            ("RSS (KiB)", after_warm_up.rss_kib, at_end.rss_kib),
        ] {
            let ratio = end as f64 / warm as f64;
            self.rows.push(
                Row::new(&format!("7. soak{name}: {what} at the end"), format!("{end}"))
                    .versus(format!("{warm} after warm-up"), format!("{ratio:.3}×"))
                    .goal(Goal::at_most(ratio, 1.05, "×")),
            );
        }
    }
}

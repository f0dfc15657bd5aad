//! Scenario 1, connection rate: many short fetches of one small poem, from poetry-serve, the
//! floor and the servers a user would compare it with, all in the same run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::Bench;
use crate::clients;
use crate::floor::Floor;
use crate::peers;
use crate::procs::Served;
use crate::report::{Goal, Row, median};

/// Fetches per server per run (a quarter of it for socat, which is slow).
const TOTAL: usize = 20_000;
/// Client threads, each looping connect → read to EOF → close.
const THREADS: usize = 8;

/// The servers timed, in the order each run times them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Server {
    /// poetry-serve at the default log level, its stderr (a line per connection) to a file.
    Poetry,
    /// poetry-serve with `RUST_LOG=off`: what the log line costs.
    PoetryQuiet,
    /// The one-thread accept → `write_all` → close loop in this process.
    Floor,
    /// nginx's stream module, `return` of the poem, no access log.
    Nginx,
    /// The same nginx writing an access log line per connection to a file.
    NginxLog,
    /// The tutorial's blocking server in Python (`slowpoetry.py`'s loop, `--delay 0`).
    Python,
    /// The same poem on Twisted (write, loseConnection).
    Twisted,
    /// socat, a process per connection.
    Socat,
}

impl Server {
    const ALL: [Server; 8] = [
        Server::Poetry,
        Server::PoetryQuiet,
        Server::Floor,
        Server::Nginx,
        Server::NginxLog,
        Server::Python,
        Server::Twisted,
        Server::Socat,
    ];

    /// Its name in the table's peer column.
    fn label(self) -> &'static str {
        match self {
            Server::Poetry => "poetry-serve",
            Server::PoetryQuiet => "poetry-serve, RUST_LOG=off",
            Server::Floor => "floor",
            Server::Nginx => "nginx",
            Server::NginxLog => "nginx + access log",
            Server::Python => "Python blocking",
            Server::Twisted => "Twisted",
            Server::Socat => "socat",
        }
    }

    fn fetches(self) -> usize {
        match self {
            Server::Socat => TOTAL / 4,
            _ => TOTAL,
        }
    }

    /// Whether what it needs is installed (`benches/run` installs it).
    fn available(self) -> bool {
        match self {
            Server::Nginx | Server::NginxLog => peers::nginx_installed(),
            Server::Python => Path::new("/usr/bin/python3").exists(),
            Server::Twisted => peers::twisted_installed(),
            Server::Socat => crate::procs::installed("socat"),
            Server::Poetry | Server::PoetryQuiet | Server::Floor => true,
        }
    }

    fn start(self, bench: &Bench, path: &Path, poem: &[u8]) -> Running {
        let args = ["--delay", "0"];
        let dir = bench.dir.path();
        Running::Process(match self {
            Server::Poetry => Served::poetry(path, &args, &bench.log("rate")),
            Server::PoetryQuiet => Served::poetry_quiet(path, &args, &bench.log("rate-quiet")),
            Server::Floor => return Running::Floor(Floor::start(Arc::new(poem.to_vec()))),
            Server::Nginx => peers::nginx(dir, poem, false),
            Server::NginxLog => peers::nginx(dir, poem, true),
            Server::Python => peers::python_blocking(dir, path, poem.len()),
            Server::Twisted => peers::twisted(path),
            Server::Socat => peers::socat(path),
        })
    }
}

/// A server while it is timed.
enum Running {
    Process(Served),
    Floor(Floor),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Process(served) => served.addr,
            Running::Floor(floor) => floor.addr,
        }
    }

    /// CPU used so far by the server: every process and thread it has, or the floor's thread.
    fn cpu(&self) -> Duration {
        match self {
            Running::Process(served) => served.cpu_tree(),
            Running::Floor(floor) => floor.cpu(),
        }
    }
}

/// One server's figures in one run.
#[derive(Debug, Clone, Copy)]
struct Timed {
    /// Fetches per second.
    rate: f64,
    /// Server CPU per fetch, µs.
    cpu: f64,
}

impl Bench {
    /// Scenario 1, connection rate: 20,000 fetches of a ~1.5 KB poem from 8 client threads,
    /// from each server in turn, every fetch checked byte for byte.
    pub fn connection_rate(&mut self) {
        let poem: Vec<u8> = (0..1500).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[i % 27]).collect();
        let path = self.file("rate.txt", &poem);
        let servers: Vec<Server> = Server::ALL
            .into_iter()
            .filter(|server| {
                let there = server.available();
                if !there {
                    self.say(&format!(
                        "{} is not installed: skipping it (benches/run installs it)",
                        server.label()
                    ));
                }
                there
            })
            .collect();
        let mut runs: Vec<HashMap<Server, Timed>> = vec![];
        let mut failed: HashMap<Server, usize> = HashMap::new();
        for run in 0..self.runs {
            self.say(&format!("connection rate, run {}", run + 1));
            let mut timed = HashMap::new();
            for &server in &servers {
                let running = server.start(self, &path, &poem);
                let total = server.fetches();
                let before = running.cpu();
                let batch = clients::fetches(running.addr(), THREADS, total, &poem, clients::LIMIT);
                let used = running.cpu() - before;
                *failed.entry(server).or_default() += batch.failed;
                timed.insert(
                    server,
                    Timed {
                        rate: total as f64 / batch.elapsed.as_secs_f64(),
                        cpu: used.as_secs_f64() * 1e6 / total as f64,
                    },
                );
            }
            runs.push(timed);
        }
        let figure = |server: Server, of: fn(&Timed) -> f64| {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.get(&server)).map(of).collect();
            (!values.is_empty()).then(|| median(values))
        };
        // Ratios are taken within each run (the machine's speed drifts between runs), and
        // their median reported.
        let ratio = |peer: Server, of: fn(&Timed) -> f64| {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| Some(of(r.get(&Server::Poetry)?) / of(r.get(&peer)?)))
                .collect();
            (!values.is_empty()).then(|| median(values))
        };
        let rate = |t: &Timed| t.rate;
        let cpu = |t: &Timed| t.cpu;
        let ours = figure(Server::Poetry, rate).expect("poetry-serve was timed");
        let ours_cpu = figure(Server::Poetry, cpu).expect("poetry-serve was timed");
        let our_failures = failed.get(&Server::Poetry).copied().unwrap_or(0)
            + failed.get(&Server::PoetryQuiet).copied().unwrap_or(0);

        // (peer, what the rate ratio must reach, what the CPU ratio must stay under)
        let peers: [(Server, Option<f64>, Option<f64>); 7] = [
            (Server::Floor, Some(0.85), None),
            (Server::NginxLog, Some(1.0), Some(1.0)),
            (Server::Nginx, Some(0.9), None),
            (Server::Python, None, Some(0.6)),
            (Server::Twisted, None, None),
            (Server::Socat, None, None),
            (Server::PoetryQuiet, None, None),
        ];
        for (peer, at_least, _) in peers {
            let row = Row::new(
                &format!("1. connection rate vs {} (conn/s)", peer.label()),
                format!("{ours:.0}"),
            );
            let row = versus(row, peer, figure(peer, rate), ratio(peer, rate), 0);
            self.rows.push(match at_least {
                Some(bound) => row.goal(
                    judge(ratio(peer, rate), |r| Goal::at_least(r, bound, "×"))
                        .and_none_failed(our_failures),
                ),
                None => row,
            });
        }
        for (peer, _, at_most) in peers {
            let row = Row::new(
                &format!("1. server CPU per connection vs {} (µs)", peer.label()),
                format!("{ours_cpu:.1}"),
            );
            let row = versus(row, peer, figure(peer, cpu), ratio(peer, cpu), 1);
            let unit = format!("× {}", peer.label());
            self.rows.push(match at_most {
                Some(bound) => {
                    row.goal(judge(ratio(peer, cpu), |r| Goal::at_most(r, bound, &unit)))
                }
                None => row,
            });
        }
        self.rows.push(
            Row::new("1. failed or short fetches, poetry-serve", format!("{our_failures}"))
                .goal(Goal::zero(our_failures)),
        );
        let others: Vec<(Server, usize)> = servers
            .iter()
            .filter(|&&s| s != Server::Poetry && s != Server::PoetryQuiet)
            .map(|&s| (s, failed.get(&s).copied().unwrap_or(0)))
            .collect();
        let peer_failures: Vec<String> =
            others.iter().map(|(s, n)| format!("{} {n}", s.label())).collect();
        let peers_failed: usize = others.iter().map(|(_, n)| n).sum();
        // A peer's figure counts only if it served the poem byte for byte too.
        self.rows.push(
            Row::new("1. failed or short fetches, floor and peers", format!("{peers_failed}"))
                .versus(peer_failures.join(", "), String::new())
                .goal(Goal::zero(peers_failed)),
        );
    }
}

/// Fills in the peer's figure (with `decimals`) and our ratio to it, or says it was not
/// measured.
fn versus(row: Row, peer: Server, theirs: Option<f64>, ratio: Option<f64>, decimals: usize) -> Row {
    match (theirs, ratio) {
        (Some(theirs), Some(r)) => {
            row.versus(format!("{theirs:.decimals$} {}", peer.label()), format!("{r:.2}×"))
        }
        _ => row.versus(format!("{} not measured", peer.label()), String::new()),
    }
}

/// The goal `make` gives for a measured ratio; a ratio that could not be measured misses it.
fn judge(ratio: Option<f64>, make: impl Fn(f64) -> Goal) -> Goal {
    match ratio {
        Some(r) => make(r),
        None => make(f64::NAN).unmeasured(),
    }
}

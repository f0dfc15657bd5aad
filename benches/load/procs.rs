//! Processes under test: poetry-serve itself and the peers, with what /proc says about them.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The release binary `cargo bench` built.
const BUILT: &str = env!("CARGO_BIN_EXE_poetry-serve");

/// The environment variable naming another poetry-serve binary to measure instead of
/// [`BUILT`]: an older build, a build with other features, a script that execs one.
pub const BIN_VARIABLE: &str = "POETRY_SERVE_BIN";

/// The environment variable naming a second binary ("before") that the crowd, pacing and soak
/// scenarios measure in turns with the one under test, in the same run.
pub const BEFORE_VARIABLE: &str = "BENCH_BEFORE";

/// A poetry-serve binary under test and the name the table gives it.
#[derive(Debug, Clone)]
pub struct Binary {
    pub label: String,
    pub path: PathBuf,
}

/// The binaries under test: `POETRY_SERVE_BIN` (or the one cargo built) and, when
/// `BENCH_BEFORE` names one, that one too, labelled "after" and "before".
pub fn binaries() -> Vec<Binary> {
    let named = |variable: &str| {
        std::env::var_os(variable).filter(|v| !v.is_empty()).map(|v| {
            let path = PathBuf::from(v);
            assert!(path.is_file(), "{variable}={} is not a file", path.display());
            std::fs::canonicalize(&path).unwrap_or(path)
        })
    };
    let main = named(BIN_VARIABLE).unwrap_or_else(|| PathBuf::from(BUILT));
    match named(BEFORE_VARIABLE) {
        None => vec![Binary { label: "poetry-serve".into(), path: main }],
        Some(before) => vec![
            Binary { label: "after".into(), path: main },
            Binary { label: "before".into(), path: before },
        ],
    }
}

/// Cargo's target directory, where the benchmark writes what it makes (the lesson's figures):
/// two levels above the binary cargo built.
pub fn target_dir() -> PathBuf {
    Path::new(BUILT).ancestors().nth(2).expect("the binary is in target/PROFILE/").to_path_buf()
}

/// The binary under test (the first of [`binaries`]), for the scenarios that measure one.
pub fn binary() -> PathBuf {
    binaries().swap_remove(0).path
}

/// A process serving on loopback, killed when dropped.
pub struct Served {
    child: Child,
    pub addr: SocketAddr,
    /// The metrics listener's address, when poetry-serve was started with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// Whether to ask it to stop (SIGTERM) before killing it: a peer such as nginx stops its
    /// worker processes only when asked.
    gentle: bool,
}

impl Served {
    /// Starts poetry-serve on 127.0.0.1, port 0, with `args` and `poem`, logging to `log`
    /// (at the default level), and waits for its listening line.
    pub fn poetry(poem: &Path, args: &[&str], log: &Path) -> Served {
        let (served, _) = Served::poetry_timed(poem, args, log);
        served
    }

    /// Like [`Served::poetry`], and also returns the time from spawn to the listening line.
    pub fn poetry_timed(poem: &Path, args: &[&str], log: &Path) -> (Served, Duration) {
        Served::program(&binary(), &[], poem, args, log, &log_level())
    }

    /// Like [`Served::poetry`], with the binary `bin`.
    pub fn poetry_bin(bin: &Path, poem: &Path, args: &[&str], log: &Path) -> Served {
        Served::try_poetry_bin(bin, poem, args, log).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like [`Served::poetry_bin`], or what the binary said when it did not start (a number
    /// of workers it refuses, say).
    pub fn try_poetry_bin(
        bin: &Path,
        poem: &Path,
        args: &[&str],
        log: &Path,
    ) -> Result<Served, String> {
        Served::try_program(bin, &[], poem, args, log, &log_level()).map(|(served, _)| served)
    }

    /// The floor's pacer ([`crate::floor::pacer`]): this benchmark's own executable started
    /// as `pacer` with poetry-serve's flags, waiting for its listening line.
    pub fn pacer(poem: &Path, args: &[&str], log: &Path) -> Result<Served, String> {
        let me = std::env::current_exe().expect("the benchmark's own path");
        Served::try_program(&me, &["pacer"], poem, args, log, "off").map(|(served, _)| served)
    }

    /// Like [`Served::poetry`], with logging off (`RUST_LOG=off`).
    pub fn poetry_quiet(poem: &Path, args: &[&str], log: &Path) -> Served {
        Served::program(&binary(), &[], poem, args, log, "off").0
    }

    /// The asynchronous twin (`examples/async_twin.rs`, which `benches/run` builds), started
    /// as [`Served::poetry`] starts poetry-serve.
    pub fn twin(poem: &Path, args: &[&str], log: &Path) -> Served {
        let twin = Path::new(BUILT)
            .parent()
            .expect("the binary is in a directory")
            .join("examples/async_twin");
        assert!(twin.exists(), "{} is not built: run benches/run", twin.display());
        Served::program(&twin, &[], poem, args, log, &log_level()).0
    }

    /// Starts `program` (poetry-serve, or a twin or pacer that prints a listening line as it
    /// does) with `first` and then `--port 0` and `args` and `poem`, `RUST_LOG` set to
    /// `level`, and waits for the listening line.
    fn program(
        program: &Path,
        first: &[&str],
        poem: &Path,
        args: &[&str],
        log: &Path,
        level: &str,
    ) -> (Served, Duration) {
        Served::try_program(program, first, poem, args, log, level)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like [`Served::program`], or, when no listening line comes, what the program printed
    /// instead (its standard output, or the last line of its log).
    fn try_program(
        program: &Path,
        first: &[&str],
        poem: &Path,
        args: &[&str],
        log_path: &Path,
        level: &str,
    ) -> Result<(Served, Duration), String> {
        let log = std::fs::File::create(log_path).expect("create the server log");
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(first)
            .args(["--port", "0"])
            .args(args)
            .arg(poem)
            .env("RUST_LOG", level)
            // The benchmark's own settings are not the server's.
            .env_remove(BIN_VARIABLE)
            .env_remove(BEFORE_VARIABLE)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", program.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("read the listening line");
        let took = started.elapsed();
        let Some(addr) = line.trim().split_once(" listening on ").and_then(|(_, a)| a.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let said = match line.trim() {
                "" => std::fs::read_to_string(log_path)
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or("nothing")
                    .to_string(),
                line => line.to_string(),
            };
            return Err(format!("{} did not start: {said}", program.display()));
        };
        // With --metrics, the next line names its address.
        let metrics = args.contains(&"--metrics").then(|| {
            line.clear();
            stdout.read_line(&mut line).expect("read the metrics line");
            line.trim()
                .strip_prefix("poetry-serve metrics on http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no metrics line: {line:?}"))
        });
        let served = Served { child, addr, metrics, gentle: false };
        Ok((served, took))
    }

    /// Starts a peer command that listens on `port` of 127.0.0.1 and waits until it accepts.
    pub fn peer(command: &mut Command, port: u16) -> Served {
        Served::peer_printing(command, port, Stdio::null())
    }

    /// Like [`Served::peer`], with the peer's standard output going to `stdout`.
    pub fn peer_printing(command: &mut Command, port: u16, stdout: Stdio) -> Served {
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {command:?}: {err}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "{command:?} never listened");
            thread::sleep(Duration::from_millis(20));
        }
        // Give a forking peer a moment to reap the probe connection.
        thread::sleep(Duration::from_millis(100));
        Served { child, addr, metrics: None, gentle: true }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open descriptors, threads and resident memory now.
    pub fn usage(&self) -> Usage {
        let pid = self.pid();
        let count = |dir: &str| {
            std::fs::read_dir(format!("/proc/{pid}/{dir}")).map_or(0, |entries| entries.count())
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Usage { fds: count("fd"), threads: count("task"), rss_kib }
    }

    /// Sends SIGHUP, so the server reopens its poems, and gives it a moment to.
    pub fn reload(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        thread::sleep(Duration::from_millis(500));
    }

    /// Resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.usage().rss_kib as u64
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    /// CPU time used so far by the threads the process has now, to the nanosecond (the
    /// scheduler's own count, /proc/PID/task/*/schedstat): for runs too short for the clock
    /// ticks of [`Served::cpu`].
    pub fn cpu_exact(&self) -> Duration {
        schedstat_sum(self.pid())
    }

    /// CPU time used so far by the process and every process under it, to the nanosecond for
    /// those alive (the scheduler's count, as [`Served::cpu_exact`]) and to the clock tick for
    /// children already reaped (cutime and cstime): nginx's workers, socat's process per
    /// connection.
    pub fn cpu_tree(&self) -> Duration {
        let mut parents = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                parents.push((pid, fields[1].parse::<u32>().unwrap_or(0)));
            }
        }
        let mut tree = vec![self.pid()];
        let mut at = 0;
        while at < tree.len() {
            let parent = tree[at];
            tree.extend(parents.iter().filter(|p| p.1 == parent).map(|p| p.0));
            at += 1;
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let mut total = Duration::ZERO;
        for pid in tree {
            total += schedstat_sum(pid);
            if let Some(fields) = stat_fields(pid) {
                // cutime and cstime are fields 16 and 17 of stat, 13 and 14 after the state.
                let ticks: u64 =
                    fields[13].parse::<u64>().unwrap_or(0) + fields[14].parse::<u64>().unwrap_or(0);
                total += Duration::from_nanos(ticks * 1_000_000_000 / hz);
            }
        }
        total
    }

    /// CPU time (user + system) used so far by every thread of the process.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.gentle {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(5) {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of /proc/PID/stat after the command name (which is in parentheses and may hold
/// spaces), starting with the state; `None` once the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The scheduler's count of CPU time for every thread `pid` has now.
fn schedstat_sum(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// What a process holds at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: usize,
}

/// The log level servers run at: `BENCH_RUST_LOG`, or the default level.
fn log_level() -> String {
    std::env::var("BENCH_RUST_LOG").unwrap_or("info".into())
}

/// A free TCP port on 127.0.0.1 for a peer that cannot be told to pick one itself.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe address").port()
}

/// Whether `program` is on PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A TcpExt counter of /proc/net/netstat (machine-wide), 0 if it cannot be read:
/// ListenOverflows counts connects dropped because a listen backlog was full.
pub fn tcp_ext(counter: &str) -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == counter)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// What the whole machine's kernel holds at one moment, of what a thread and a socket cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel {
    /// Threads' kernel stacks and page tables (KernelStack + PageTables in /proc/meminfo).
    pub stacks_kib: u64,
    /// The slab caches a TCP socket takes (the `TCP` socket, its inode, its `struct file` and
    /// dentry), from /proc/slabinfo: active objects × object size; `None` when slabinfo cannot
    /// be read (it needs root).
    pub socket_slab_kib: Option<u64>,
}

/// The slab caches of /proc/slabinfo an open TCP socket takes an object of.
const SOCKET_CACHES: [&str; 4] = ["TCP", "sock_inode_cache", "filp", "dentry"];

impl Kernel {
    /// [`Kernel::now`] once the threads of a process that just ended have been freed: the
    /// kernel frees their stacks some time after the process is reaped, so this waits (at
    /// most 5 s) until two readings 200 ms apart agree within 256 KiB.
    pub fn settled() -> Kernel {
        let mut last = Kernel::now();
        for _ in 0..25 {
            thread::sleep(Duration::from_millis(200));
            let now = Kernel::now();
            if now.stacks_kib.abs_diff(last.stacks_kib) < 256 {
                return now;
            }
            last = now;
        }
        last
    }

    pub fn now() -> Kernel {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let socket_slab_kib = std::fs::read_to_string("/proc/slabinfo").ok().map(|slab| {
            let bytes: u64 = slab
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace();
                    let name = fields.next()?;
                    if !SOCKET_CACHES.contains(&name) {
                        return None;
                    }
                    let active: u64 = fields.next()?.parse().ok()?;
                    let size: u64 = fields.nth(1)?.parse().ok()?;
                    Some(active * size)
                })
                .sum();
            bytes / 1024
        });
        Kernel { stacks_kib: field("KernelStack") + field("PageTables"), socket_slab_kib }
    }
}

/// How busy the machine's CPUs were over the second before this call, in words ("7% of 2
/// CPUs busy"): what others running on it leave to a run that starts now. (The load average
/// would not do: after a run it counts the benchmark's own thousands of threads for minutes.)
pub fn cpu_busy() -> String {
    // The aggregate line of /proc/stat: user nice system idle iowait irq softirq steal ...
    let ticks = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4)?;
        Some((fields.iter().sum(), idle))
    };
    let Some((total, idle)) = ticks() else {
        return "CPU use unknown".into();
    };
    thread::sleep(Duration::from_secs(1));
    let Some((total_after, idle_after)) = ticks() else {
        return "CPU use unknown".into();
    };
    let busy = 1.0 - (idle_after - idle) as f64 / (total_after - total).max(1) as f64;
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    format!("{:.0}% of {cpus} CPUs busy in the second before", busy * 100.0)
}

/// The largest crowd the machine lets both ends hold: one descriptor per client in the
/// client and in the server, each under the open-file hard limit, and one thread per client
/// in the server under `kernel.pid_max` and `kernel.threads-max` (what exists already
/// counted) and `vm.max_map_count` (two maps a thread, as the floor's); a thousand of each
/// kept back for the processes' own needs, rounded down to a thousand. Returns the count and
/// the limit that set it.
pub fn largest_crowd() -> (usize, String) {
    let number =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes to a valid, exclusively borrowed rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let tasks = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |t| t.count()))
                .sum::<usize>() as u64
        })
        .unwrap_or(0);
    let mut limits =
        vec![(limit.rlim_max, format!("the open-file hard limit, {}", limit.rlim_max))];
    for (name, path) in [
        ("kernel.pid_max", "/proc/sys/kernel/pid_max"),
        ("kernel.threads-max", "/proc/sys/kernel/threads-max"),
    ] {
        if let Some(max) = number(path) {
            limits.push((
                max.saturating_sub(tasks),
                format!("{name}, {max}, with {tasks} tasks running"),
            ));
        }
    }
    if let Some(max) = number("/proc/sys/vm/max_map_count") {
        limits.push((max / 2, format!("vm.max_map_count, {max}, at two maps a thread")));
    }
    let (room, why) =
        limits.into_iter().min_by_key(|l| l.0).expect("the open-file limit is always there");
    let count = room.saturating_sub(1000) / 1000 * 1000;
    (count.max(1000) as usize, why)
}

/// The CPU's model name, as /proc/cpuinfo gives it: the project's machines differ.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The running kernel's release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

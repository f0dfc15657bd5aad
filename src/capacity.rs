//! How many workers this system lets one process run, checked before any starts: a thread
//! each, and the descriptor each client holds.
//!
//! Every limit that can stop a thread from starting is read and checked, each giving one line
//! that names it and the setting that raises it: the memory maps (`vm.max_map_count`), the
//! tasks of the whole machine (`kernel.pid_max`, `kernel.threads-max`), those of the control
//! group and its parents (`pids.max`, which systemd's `TasksMax=` sets), those of the user
//! (`RLIMIT_NPROC`), the address space (`RLIMIT_AS`) and the descriptors (`RLIMIT_NOFILE`).
//! What one more worker costs in memory maps and address space is measured on a thread started
//! as the pool starts its workers, not assumed. Past some of these limits, starting a thread
//! does not fail cleanly (the process can abort), so nothing is started before every check
//! passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use anyhow::bail;
use procfs::Current;
use procfs::process::Process;

use crate::pool::WORKER_STACK;
use crate::sys;

/// Threads the process has besides the workers (main, signals, the listener's, the log's, the
/// metrics listener's) and a margin for what else may start a task or map memory.
const HEADROOM: u64 = 64;

/// Address space kept beside the workers' (the metrics listener's runtime, its threads for
/// blocking work, the allocator's two arenas).
const SPACE_HEADROOM: u64 = 64 << 20;

/// Fails, naming the limit, unless `workers` clients can be served at once: a thread each, a
/// descriptor each, and `reserved` descriptors more for everything else (the poems being
/// streamed, the listeners, a reload, the metrics listener). Raises the open-file limit as far
/// as it may be raised (to its hard limit) when that is needed, once everything else fits.
pub fn check(workers: usize, reserved: u64) -> anyhow::Result<()> {
    let workers = workers as u64;
    let cost = ThreadCost::measure();
    let rooms = [
        maps(cost.maps),
        machine("kernel.pid_max", procfs::sys::kernel::pid_max().ok().map(|n| n as u64)),
        machine("kernel.threads-max", procfs::sys::kernel::threads_max().ok().map(u64::from)),
        control_groups(),
        user_processes(),
    ];
    for room in rooms.into_iter().flatten() {
        room.check(workers)?;
    }
    // glibc's own limit on allocator arenas, eight per core, said explicitly: unset, it is
    // worked out again (reading /sys/devices/system/cpu/online) as each new thread first
    // allocates, three system calls more on each worker's first connection.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    sys::cap_malloc_arenas(i32::try_from(8 * cores).unwrap_or(i32::MAX));
    address_space(workers, cost.space)?;
    descriptors(workers, reserved)
}

/// Room for more threads under one limit, and how to say so when it is too little.
#[derive(Debug)]
struct Room {
    /// How many more threads fit.
    fit: u64,
    /// The limit, its value and what uses it: "… and vm.max_map_count is 65530 (37 in use)".
    why: String,
    /// What raises it: "raise vm.max_map_count (sysctl)".
    raise: String,
}

impl Room {
    fn check(&self, workers: u64) -> anyhow::Result<()> {
        if workers > self.fit {
            let Room { fit, why, raise } = self;
            bail!(
                "--workers {workers} does not fit: {why}, so at most {fit} workers fit; lower \
                 --workers or {raise}"
            );
        }
        Ok(())
    }
}

/// What one more worker costs: memory maps, and bytes of address space.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ThreadCost {
    maps: u64,
    space: u64,
}

impl ThreadCost {
    /// What a std thread costs, for when nothing can be measured: its stack and guard page,
    /// and the alternate signal stack with its guard page.
    const ASSUMED: ThreadCost = ThreadCost { maps: 4, space: 256 * 1024 };

    /// Starts one thread as the pool starts its workers and finds, in the memory maps, what
    /// it holds: its stack with the guard page below it, and the signal stack std gave it with
    /// its guard page. Found by address, so that other threads starting or ending meanwhile
    /// change nothing.
    fn measure() -> ThreadCost {
        let found = Arc::new(Found::default());
        let running = Arc::new(Barrier::new(2));
        let (thread, report) = (Arc::clone(&running), Arc::clone(&found));
        let probe = std::thread::Builder::new()
            .name("capacity".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let here = 0u8;
                report.stack.store(std::ptr::addr_of!(here) as usize, Ordering::Relaxed);
                let (folded, size) = sys::fold_signal_stack().unwrap_or((0, 0));
                report.signal_stack.store(folded, Ordering::Relaxed);
                report.signal_stack_size.store(size, Ordering::Relaxed);
                thread.wait(); // found
                thread.wait(); // counted
            });
        let Ok(probe) = probe else {
            return ThreadCost::ASSUMED;
        };
        running.wait();
        let maps = Process::myself().and_then(|me| me.maps());
        running.wait();
        let _ = probe.join();
        let Ok(maps) = maps else {
            return ThreadCost::ASSUMED;
        };
        let spans: Vec<(u64, u64)> = maps.iter().map(|map| map.address).collect();
        let page = 4096;
        // The stack's mapping and the guard page below it; the signal stack and its guard
        // page, however the kernel merged them with their neighbours: a thread's own ranges,
        // each counted as the mappings it spans, so that merging with a neighbour (placement
        // luck) is not counted on.
        let stack = found.stack.load(Ordering::Relaxed) as u64;
        let Some(&(start, end)) = spans.iter().find(|(start, end)| (*start..*end).contains(&stack))
        else {
            return ThreadCost::ASSUMED;
        };
        let mut ranges = vec![(start - page, end)];
        let (signal_stack, size) = (
            found.signal_stack.load(Ordering::Relaxed) as u64,
            found.signal_stack_size.load(Ordering::Relaxed) as u64,
        );
        if signal_stack != 0 {
            ranges.push((signal_stack - page, signal_stack + size));
        }
        let maps = ranges.iter().map(|&(start, end)| spanned(&spans, start, end)).sum();
        let space = ranges.iter().map(|(start, end)| end - start).sum();
        ThreadCost { maps, space }
    }
}

/// Where the probe thread's stacks are.
#[derive(Default)]
struct Found {
    stack: AtomicUsize,
    signal_stack: AtomicUsize,
    signal_stack_size: AtomicUsize,
}

/// How many of the mappings `spans` (start, end) the range from `start` to `end` touches.
fn spanned(spans: &[(u64, u64)], start: u64, end: u64) -> u64 {
    spans.iter().filter(|&&(from, to)| from < end && start < to).count() as u64
}

/// Room under `vm.max_map_count` for threads of `per_thread` maps each.
fn maps(per_thread: u64) -> Option<Room> {
    let max = procfs::sys::vm::max_map_count().ok()?;
    let used = Process::myself().and_then(|me| me.maps()).ok()?.len() as u64;
    Some(maps_room(max, used, per_thread))
}

fn maps_room(max: u64, used: u64, per_thread: u64) -> Room {
    Room {
        fit: max.saturating_sub(used + HEADROOM * per_thread) / per_thread.max(1),
        why: format!(
            "each thread takes {per_thread} memory maps and vm.max_map_count is {max} ({used} in \
             use)"
        ),
        raise: "raise vm.max_map_count (sysctl)".into(),
    }
}

/// Room under a machine-wide limit on tasks (`kernel.pid_max` or `kernel.threads-max`), given
/// the tasks that exist.
fn machine(limit: &str, max: Option<u64>) -> Option<Room> {
    // Every task on the machine, as /proc/loadavg counts them.
    let tasks = procfs::LoadAverage::current().ok().map(|load| u64::from(load.max))?;
    Some(machine_room(limit, max?, tasks))
}

fn machine_room(limit: &str, max: u64, tasks: u64) -> Room {
    Room {
        fit: max.saturating_sub(tasks + HEADROOM),
        why: format!("{limit} is {max} threads for the whole machine and {tasks} exist"),
        raise: format!("raise {limit} (sysctl)"),
    }
}

/// The least room under the task limits (`pids.max`) of this process's control group and its
/// parents, with cgroup v1 or v2.
fn control_groups() -> Option<Room> {
    (sys::task_limits().into_iter())
        .map(|limit| cgroup_room(&limit.group, limit.max, limit.current))
        .min_by_key(|room| room.fit)
}

fn cgroup_room(group: &str, max: u64, current: u64) -> Room {
    Room {
        fit: max.saturating_sub(current + HEADROOM),
        why: format!("the control group {group} allows {max} tasks (pids.max) and has {current}"),
        raise: "raise its pids.max (TasksMax= in a systemd unit, --pids-limit for a container)"
            .into(),
    }
}

/// Room under `RLIMIT_NPROC`, which counts every thread of the user, unless the process may
/// exceed it.
fn user_processes() -> Option<Room> {
    let me = Process::myself().ok()?.status().ok()?;
    // CAP_SYS_ADMIN or CAP_SYS_RESOURCE lets a process start tasks past it (as root usually
    // may, but not in a container that dropped them).
    if me.capeff & (1 << 21 | 1 << 24) != 0 {
        return None;
    }
    let max = sys::thread_limit()?;
    Some(user_room(max, sys::user_threads(me.ruid), me.ruid))
}

fn user_room(max: u64, used: u64, uid: u32) -> Room {
    Room {
        fit: max.saturating_sub(used + HEADROOM),
        why: format!(
            "the process limit (ulimit -u) is {max} threads for user {uid}, who has {used}"
        ),
        raise: "raise it (ulimit -u; LimitNPROC= in a systemd unit)".into(),
    }
}

/// Raises the open-file limit to the hard one if `workers` clients and `reserved` more
/// descriptors need it, and fails, naming the limit, if even that is too low.
fn descriptors(workers: u64, reserved: u64) -> anyhow::Result<()> {
    let Some((soft, hard)) = sys::open_file_limit() else {
        return Ok(());
    };
    let needed = workers + reserved;
    if needed <= soft {
        return Ok(());
    }
    Room {
        fit: hard.saturating_sub(reserved),
        why: format!(
            "each client holds a descriptor, {reserved} more are kept for the rest, and the \
             open-file limit is {hard} (ulimit -n; LimitNOFILE= in a systemd unit)"
        ),
        raise: "raise the limit".into(),
    }
    .check(workers)?;
    sys::raise_open_file_limit(hard)?;
    tracing::info!(from = soft, to = hard, "raised the open-file limit (soft) to its hard limit");
    Ok(())
}

/// Fails, naming the limit, if the address space the process may map (`ulimit -v`) cannot hold
/// `workers` more threads of `per_thread` bytes each: past it, starting a thread can abort the
/// process.
fn address_space(workers: u64, per_thread: u64) -> anyhow::Result<()> {
    let Some(max) = sys::address_space_limit() else {
        return Ok(());
    };
    // Each arena reserves 64 MiB as a thread first allocates: they would take the room the
    // workers' stacks need.
    sys::cap_malloc_arenas(2);
    let used = Process::myself().and_then(|me| me.stat()).map_or(0, |stat| stat.vsize);
    Room {
        fit: max.saturating_sub(used + SPACE_HEADROOM) / per_thread.max(1),
        why: format!(
            "each thread maps {} KiB, and the address space limit (ulimit -v; LimitAS= in a \
             systemd unit) is {} MiB with {} MiB in use",
            per_thread >> 10,
            max >> 20,
            used >> 20
        ),
        raise: "raise the limit".into(),
    }
    .check(workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of a few workers fits anywhere; ten million fits nowhere (kernel.pid_max is at
    /// most about four million), and the error names what to raise.
    #[test]
    fn small_pools_fit_and_impossible_ones_are_named() {
        assert!(check(4, 64).is_ok());
        let err = format!("{:#}", check(10_000_000, 64).unwrap_err());
        assert!(err.starts_with("--workers 10000000 does not fit"), "{err}");
        assert!(err.contains("raise"), "{err}");
    }

    /// What a worker costs is measured: its stack with the guard page below it, and the
    /// signal stack std gives it, folded into its own guard page: three maps.
    #[test]
    fn a_workers_cost_is_measured() {
        let cost = ThreadCost::measure();
        assert_eq!(cost.maps, 3, "{cost:?}");
        assert!(cost.space > WORKER_STACK as u64, "{cost:?}");
        assert!(cost.space < 2 * WORKER_STACK as u64, "{cost:?}");
    }

    /// A range counts every mapping it touches, and none it only borders.
    #[test]
    fn a_range_counts_the_mappings_it_spans() {
        let spans = [(0x1000, 0x2000), (0x2000, 0x9000), (0xa000, 0xb000)];
        assert_eq!(spanned(&spans, 0x1000, 0x9000), 2);
        assert_eq!(spanned(&spans, 0x8fff, 0xa001), 2);
        assert_eq!(spanned(&spans, 0x9000, 0xa000), 0);
    }

    /// Each limit's line names it, says what uses it, and how to raise it; a worker count
    /// within the room passes.
    #[test]
    fn each_limit_names_itself_and_its_setting() {
        let cases = [
            (maps_room(65530, 37, 2), 32682, "vm.max_map_count is 65530 (37 in use)", "sysctl"),
            (
                machine_room("kernel.pid_max", 32768, 1200),
                31504,
                "kernel.pid_max is 32768 threads for the whole machine and 1200 exist",
                "raise kernel.pid_max (sysctl)",
            ),
            (
                machine_room("kernel.threads-max", 2000, 100),
                1836,
                "kernel.threads-max is 2000",
                "raise kernel.threads-max (sysctl)",
            ),
            (
                cgroup_room("/system.slice/poetry-serve.service", 4915, 15),
                4836,
                "the control group /system.slice/poetry-serve.service allows 4915 tasks",
                "TasksMax= in a systemd unit",
            ),
            (user_room(1000, 300, 1001), 636, "user 1001, who has 300", "LimitNPROC="),
        ];
        for (room, fit, why, raise) in cases {
            assert_eq!(room.fit, fit, "{room:?}");
            assert!(room.check(fit).is_ok());
            let err = room.check(fit + 1).unwrap_err().to_string();
            let start = format!("--workers {} does not fit: ", fit + 1);
            assert!(err.starts_with(&start), "{err}");
            assert!(err.contains(why) && err.contains(raise), "{err}");
            assert!(err.contains(&format!("at most {fit} workers fit")), "{err}");
        }
    }
}

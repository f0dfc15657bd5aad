//! How many worker threads this system lets one process start, checked before any starts.
//!
//! Starting a thread past some of these limits does not fail cleanly: when the kernel refuses
//! the memory map for a new thread's signal stack guard page, the Rust runtime aborts the
//! whole process. So the pool's size is checked against each limit first, and a size that
//! cannot fit gets one line naming the limit and what to raise.

use anyhow::bail;

use procfs::Current;
use procfs::process::Process;

use crate::sys::{cgroup_pids, thread_limit};

/// Memory maps each thread adds: its stack and guard page, and the signal stack the Rust
/// runtime gives it with its own guard page (counted in `/proc/PID/maps`).
pub const MAPS_PER_THREAD: u64 = 4;

/// Threads the process has besides the workers (main, signals) and a margin for what else
/// may map memory or start a task (the allocator, a reload, the log).
const HEADROOM: u64 = 64;

/// Fails, naming the limit, if `workers` more threads cannot be started here.
pub fn check(workers: usize) -> anyhow::Result<()> {
    let workers = workers as u64;
    let wanted = workers + HEADROOM;
    let maps = Process::myself().and_then(|me| me.maps()).map(|maps| maps.len() as u64);
    if let (Ok(max), Ok(used)) = (procfs::sys::vm::max_map_count(), maps) {
        let fit = max.saturating_sub(used + HEADROOM * MAPS_PER_THREAD) / MAPS_PER_THREAD;
        if workers > fit {
            bail!(
                "--workers {workers} does not fit: each thread takes {MAPS_PER_THREAD} memory \
                 maps and vm.max_map_count is {max} ({used} in use), so at most {fit} workers \
                 fit; lower --workers or raise vm.max_map_count (sysctl)"
            );
        }
    }
    // Every thread on the machine, as /proc/loadavg counts them.
    let tasks = procfs::LoadAverage::current().map(|load| u64::from(load.max));
    let pid_max = procfs::sys::kernel::pid_max().map(|n| n as u64);
    let threads_max = procfs::sys::kernel::threads_max().map(u64::from);
    for (limit, max) in [("kernel.pid_max", pid_max), ("kernel.threads-max", threads_max)] {
        if let (Ok(max), Ok(used)) = (max, &tasks) {
            let used = *used;
            let fit = max.saturating_sub(used + HEADROOM);
            if workers > fit {
                bail!(
                    "--workers {workers} does not fit: {limit} is {max} threads for the whole \
                     machine and {used} exist, so at most {fit} more fit; lower --workers or \
                     raise {limit} (sysctl)"
                );
            }
        }
    }
    if let Some((max, used)) = cgroup_pids() {
        let fit = max.saturating_sub(used + HEADROOM);
        if workers > fit {
            bail!(
                "--workers {workers} does not fit: this control group allows {max} tasks \
                 (pids.max; TasksMax= in a systemd unit) and has {used}, so at most {fit} \
                 workers fit; lower --workers or raise the limit"
            );
        }
    }
    if let Some(max) = thread_limit()
        && wanted > max
    {
        bail!(
            "--workers {workers} does not fit: the process limit (ulimit -u) is {max}; lower \
             --workers or raise the limit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of a few workers fits anywhere; ten million fits nowhere (kernel.pid_max is at
    /// most about four million), and the error names what to raise.
    #[test]
    fn small_pools_fit_and_impossible_ones_are_named() {
        assert!(check(4).is_ok());
        let err = format!("{:#}", check(10_000_000).unwrap_err());
        assert!(err.starts_with("--workers 10000000 does not fit"), "{err}");
        assert!(err.contains("raise"), "{err}");
    }
}

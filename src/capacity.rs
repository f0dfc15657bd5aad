//! How many workers this system lets one process run, checked before any starts: threads, and
//! the descriptor each client holds.
//!
//! Starting a thread past some of these limits does not fail cleanly: when the kernel refuses
//! the memory map for a new thread's signal stack guard page, the Rust runtime aborts the
//! whole process. So the pool's size is checked against each limit first, and a size that
//! cannot fit gets one line naming the limit and what to raise.

use anyhow::bail;

use procfs::Current;
use procfs::process::Process;

use crate::sys::{self, cgroup_pids, thread_limit};

/// Memory maps each thread adds: its stack and guard page, and the signal stack the Rust
/// runtime gives it with its own guard page (counted in `/proc/PID/maps`).
pub const MAPS_PER_THREAD: u64 = 4;

/// Threads the process has besides the workers (main, signals) and a margin for what else
/// may map memory or start a task (the allocator, a reload, the log).
const HEADROOM: u64 = 64;

/// Fails, naming the limit, unless `workers` clients can be served at once: a thread each, a
/// descriptor each, and `reserved` descriptors more for everything else (the poems being
/// streamed, the listeners, a reload, the metrics listener). Raises the open-file limit as far
/// as it may be raised (to its hard limit) when that is needed.
pub fn check(workers: usize, reserved: u64) -> anyhow::Result<()> {
    let workers = workers as u64;
    descriptors(workers, reserved)?;
    address_space(workers)?;
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
    if needed > hard {
        let fit = hard.saturating_sub(reserved);
        bail!(
            "--workers {workers} does not fit: each client holds a descriptor, {reserved} more \
             are kept for the rest, and the open-file limit is {hard} (ulimit -n; LimitNOFILE= in \
             a systemd unit), so at most {fit} workers fit; lower --workers or raise the limit"
        );
    }
    sys::raise_open_file_limit(hard)?;
    tracing::info!(from = soft, to = hard, "raised the open-file limit (soft) to its hard limit");
    Ok(())
}

/// Address space each worker maps (its stack and guard page, and the signal stack and guard
/// page the Rust runtime gives every thread), rounded up: 215 KiB were measured a worker.
const SPACE_PER_WORKER: u64 = 256 * 1024;

/// Address space kept beside the workers' (the metrics listener's runtime, its threads for
/// blocking work, the allocator's two arenas).
const SPACE_HEADROOM: u64 = 64 << 20;

/// Fails, naming the limit, if the address space the process may map (`ulimit -v`) cannot hold
/// `workers` more threads: past it, starting a thread aborts the process.
fn address_space(workers: u64) -> anyhow::Result<()> {
    let Some(max) = sys::address_space_limit() else {
        return Ok(());
    };
    sys::cap_malloc_arenas(2);
    let used = Process::myself().and_then(|me| me.stat()).map_or(0, |stat| stat.vsize);
    let fit = max.saturating_sub(used + SPACE_HEADROOM) / SPACE_PER_WORKER;
    if workers > fit {
        let (max, used) = (max >> 20, used >> 20);
        bail!(
            "--workers {workers} does not fit: each thread maps about {} KiB, and the address \
             space limit (ulimit -v; LimitAS= in a systemd unit) is {max} MiB with {used} MiB in \
             use, so at most {fit} workers fit; lower --workers or raise the limit",
            SPACE_PER_WORKER >> 10
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
        assert!(check(4, 64).is_ok());
        let err = format!("{:#}", check(10_000_000, 64).unwrap_err());
        assert!(err.starts_with("--workers 10000000 does not fit"), "{err}");
        assert!(err.contains("raise"), "{err}");
    }
}

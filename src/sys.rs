//! The operating system's calls that std does not wrap, and what is read from /proc: every
//! `unsafe` block of the crate is here, each with the reason it is sound.
//!
//! Each function answers `None` (or does nothing) where the system cannot say, so callers
//! treat a missing figure as unknown rather than as an error.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Bytes sent on `socket` that the peer has not acknowledged yet (SIOCOUTQ), if the system
/// says.
pub fn unacknowledged(socket: &impl AsRawFd) -> Option<usize> {
    #[cfg(target_os = "linux")]
    return socket_ioctl(socket.as_raw_fd(), libc::TIOCOUTQ);
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// Bytes received on `socket` and not read yet (FIONREAD), if the system says.
pub fn unread(socket: &impl AsRawFd) -> Option<usize> {
    socket_ioctl(socket.as_raw_fd(), libc::FIONREAD)
}

/// A socket ioctl that answers with an int.
fn socket_ioctl(fd: RawFd, request: libc::Ioctl) -> Option<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: both requests write one int, into `count`, which outlives the call.
    let done = unsafe { libc::ioctl(fd, request, &mut count) };
    (done == 0).then(|| usize::try_from(count).ok()).flatten()
}

/// Shuts down both directions of the socket `fd` without closing it: a thread blocked on it
/// wakes with an error, and its owner still closes it.
///
/// The caller must know `fd` is open; shutting down a descriptor number that was closed and
/// reused would shut an unrelated socket, or fail harmlessly on a file.
pub fn shut_down(fd: RawFd) {
    // SAFETY: shutdown(2) reads and writes no memory of ours; the descriptor's validity is
    // the caller's promise, and at worst the call fails.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Waits until at least one of `sockets` is readable (a connection to accept), or reports
/// a hang-up; returns the readiness of each, in order.
pub fn wait_readable(sockets: &[RawFd]) -> io::Result<Vec<bool>> {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds.iter().map(|fd| fd.revents != 0).collect())
}

/// Lowers the calling thread's CPU priority by `steps` nice steps (never past 19, the
/// lowest). On Linux the nice value belongs to the thread.
pub fn lower_thread_priority(steps: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and setpriority touch no memory of ours; `who = 0` is the calling
    // thread. Failure (it cannot fail when lowering) leaves the priority as it was.
    unsafe {
        let inherited = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (inherited + steps).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = steps;
}

/// Lets the kernel wake the calling thread up to `slack` late from its sleeps.
pub fn set_timer_slack(slack: Duration) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a number and touches no memory of ours. Failure would
    // only leave the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, slack.as_nanos() as libc::c_ulong);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = slack;
}

/// The index of the network interface called `name` (eth0), if there is one.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// RLIMIT_NPROC, which counts threads, when it applies: root is exempt from it.
pub fn thread_limit() -> Option<u64> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

/// A file that holds one number, such as a sysctl under /proc/sys.
pub fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Memory maps of this process.
pub fn maps_in_use() -> Option<u64> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    Some(maps.lines().count() as u64)
}

/// Every thread on the machine: the fourth field of /proc/loadavg is `running/total`.
pub fn tasks_on_the_machine() -> Option<u64> {
    let loadavg = fs::read_to_string("/proc/loadavg").ok()?;
    let field = loadavg.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

/// The cgroup v2 task limit and use of this process's control group, when it has a limit.
pub fn cgroup_pids() -> Option<(u64, u64)> {
    let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    // "max" (no limit) does not parse, and then there is nothing to check.
    let max = read_number(dir.join("pids.max"))?;
    let used = read_number(dir.join("pids.current"))?;
    Some((max, used))
}

/// User and system CPU time this process has spent, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// This process's resident memory, in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    Some(pages * page)
}

/// This process's open file descriptors.
pub fn open_fds() -> Option<u64> {
    Some(fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// This process's threads.
pub fn threads() -> Option<u64> {
    Some(fs::read_dir("/proc/self/task").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine-wide thread count is read from /proc/loadavg.
    #[test]
    fn the_machine_has_threads() {
        assert!(tasks_on_the_machine().is_some_and(|n| n > 0));
    }

    /// The process figures /metrics exports can be read here.
    #[test]
    fn the_process_figures_are_readable() {
        assert!(resident_bytes().is_some_and(|n| n > 0));
        assert!(open_fds().is_some_and(|n| n >= 3));
        assert!(threads().is_some_and(|n| n >= 1));
        assert!(cpu_seconds().is_some());
    }
}

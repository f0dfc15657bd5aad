//! The operating system's calls that std does not wrap, and what is read from /proc: every
//! `unsafe` block of the crate is here, each with the reason it is sound.
//!
//! Each function answers `None` where the system cannot say, so callers treat a missing figure
//! as unknown rather than as an error.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

/// Bytes written to `socket` that the peer has not acknowledged yet: the kernel's send queue
/// (SIOCOUTQ).
pub fn unacknowledged(socket: &impl AsFd) -> Option<usize> {
    #[cfg(target_os = "linux")]
    return int_ioctl(socket.as_fd(), libc::TIOCOUTQ);
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// Bytes received on `socket` and not read yet (FIONREAD).
pub fn unread(socket: &impl AsFd) -> Option<usize> {
    int_ioctl(socket.as_fd(), libc::FIONREAD)
}

/// A socket ioctl that answers with an int.
fn int_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl) -> Option<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: `fd` is open for the borrow; both requests write one int, into `count`.
    let done = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut count) };
    (done == 0).then(|| usize::try_from(count).ok()).flatten()
}

/// The kernel's TCP_INFO on `socket`.
#[cfg(target_os = "linux")]
fn tcp_info(socket: BorrowedFd<'_>) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `socket` is open for the borrow, and getsockopt writes at most `len` bytes into
    // `info`, which outlives the call.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    (done == 0).then_some(info)
}

/// How long ago the last ACK arrived on a freshly accepted `socket`: for a client that has
/// sent nothing yet, the handshake's last ACK, so how long the connection waited in the listen
/// backlog (to the millisecond).
pub fn backlog_wait(socket: &impl AsFd) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    return tcp_info(socket.as_fd()).map(|i| Duration::from_millis(i.tcpi_last_ack_recv.into()));
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// A listening socket's backlog: connections waiting to be accepted, and the most it holds.
pub fn backlog(listener: &impl AsFd) -> Option<(u32, u32)> {
    // For a listening socket the kernel reports the accept queue in these two fields.
    #[cfg(target_os = "linux")]
    return tcp_info(listener.as_fd()).map(|i| (i.tcpi_unacked, i.tcpi_sacked));
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// Waits until at least one of `sockets` is readable (a connection to accept, or a wake-up),
/// and returns the readiness of each, in order.
pub fn wait_readable(sockets: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    let mut fds: Vec<libc::pollfd> = (sockets.iter())
        .map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the duration of the call, and
    // every descriptor in it is open for the borrows.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds.iter().map(|fd| fd.revents != 0).collect())
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
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
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
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// When this process started, in seconds since the Unix epoch.
pub fn start_time() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // starttime, in clock ticks since boot, is the 20th field after the command name.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot = fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(boot as f64 + ticks as f64 / hz)
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
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// The process figures /metrics exports, and the machine's thread count, can be read.
    #[test]
    fn the_process_figures_are_readable() {
        assert!(tasks_on_the_machine().is_some_and(|n| n > 0));
        assert!(resident_bytes().is_some_and(|n| n > 0));
        assert!(open_fds().is_some_and(|n| n >= 3));
        assert!(threads().is_some_and(|n| n >= 1));
        assert!(cpu_seconds().is_some());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!(start_time().is_some_and(|t| t > 1e9 && t <= now.as_secs_f64() + 1.0));
    }

    /// A listener's backlog counts the connections not yet accepted, and its limit.
    #[test]
    fn the_backlog_counts_connections_not_yet_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(backlog(&listener), Some((3, 128)));
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(backlog(&listener).map(|b| b.0), Some(2));
        assert!(backlog_wait(&accepted).is_some());
    }
}

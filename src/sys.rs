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
/// backlog, in whole ticks of the kernel's clock rounded up (4 ms at HZ=250).
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

/// Waits until `fd` is readable (a wake-up), or `timeout` passes (rounded up to the
/// millisecond, so never sooner); returns whether it is readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let millis = |t: Duration| t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
    let timeout = timeout.map_or(-1, |t| millis(t) as libc::c_int);
    let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `poll` is one valid pollfd for the duration of the call, and its descriptor is
    // open for the borrow.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(poll.revents != 0)
}

/// The signal that interrupts a worker's blocking `accept` when the server stops: SIGURG, which
/// is ignored unless handled and which the kernel sends only to a process that asked for notice
/// of out-of-band data (`F_SETOWN`), as this one never does (Go's runtime takes it for the same
/// reason).
const INTERRUPT: libc::c_int = libc::SIGURG;

/// Makes [`interrupt`] end a blocking call: a handler that does nothing, installed without
/// `SA_RESTART`, so the call fails with `EINTR` instead of carrying on. Once per process.
pub fn prepare_interrupts() -> io::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    extern "C" fn nothing(_: libc::c_int) {}
    let installed = *INSTALLED.get_or_init(|| {
        // SAFETY: sigaction is given a valid action whose handler is async-signal-safe (it does
        // nothing) and whose mask is initialised by sigemptyset.
        let done = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(INTERRUPT, &action, std::ptr::null_mut())
        };
        if done == 0 { Ok(()) } else { Err(io::Error::last_os_error().raw_os_error().unwrap_or(0)) }
    });
    installed.map_err(io::Error::from_raw_os_error)
}

/// Ignores SIGXFSZ, so that a write past the file-size limit (`ulimit -f`, `LimitFSIZE=`) fails
/// with `EFBIG`, which the writer handles, instead of killing the process.
pub fn ignore_file_size_signal() -> io::Result<()> {
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ; no handler runs.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    match previous == libc::SIG_ERR {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
    }
}

/// Lets [`interrupt`] reach the calling thread, whatever signal mask it inherited.
pub fn accept_interrupts() {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only changes
    // the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, INTERRUPT);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// The calling thread, as [`interrupt`] names it; never 0.
pub fn this_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    let thread = unsafe { libc::pthread_self() } as u64;
    debug_assert_ne!(thread, 0);
    thread
}

/// Interrupts what `thread` (from [`this_thread`]) is blocked in, once [`prepare_interrupts`]
/// has run; the thread must not have ended and been joined.
pub fn interrupt(thread: u64) {
    // SAFETY: the caller guarantees that `thread` names a thread that has not been joined, so
    // its pthread_t is still valid; the signal's handler does nothing.
    unsafe { libc::pthread_kill(thread as libc::pthread_t, INTERRUPT) };
}

/// Lets the kernel wake the calling thread up to `slack` late from its sleeps, so that its
/// timer can expire with others due about then.
pub fn set_timer_slack(slack: Duration) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a number and touches no memory of ours; on failure the
    // thread keeps the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, slack.as_nanos() as libc::c_ulong);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = slack;
}

/// The calling thread's timer slack (for tests).
#[cfg(test)]
pub fn timer_slack() -> Duration {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_GET_TIMERSLACK only returns the calling thread's slack.
    let nanos = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
    #[cfg(not(target_os = "linux"))]
    let nanos = 0;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Folds the alternate signal stack std gave the calling thread into the guard page below it,
/// and returns where it was and its size. std gives every thread it starts such a stack (to report a stack
/// overflow), mapped with a guard page of its own: two memory maps more a thread, which with
/// thousands of threads makes `vm.max_map_count` the first limit. Only for threads std
/// started (`std::thread`), whose alternate stack std mapped and will unmap. Disabled, then made
/// inaccessible as its guard page is, the stack and the guard are one mapping: one map more a
/// thread instead of two. std unmaps the same range when the thread ends; until then nothing
/// uses it. A stack overflow then kills the process with SIGSEGV, without std's message.
pub fn fold_signal_stack() -> Option<(usize, usize)> {
    // SAFETY: sigaltstack with no new stack only writes the current one into `stack`.
    let mut stack: libc::stack_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut stack) } != 0
        || stack.ss_flags & libc::SS_DISABLE != 0
    {
        return None;
    }
    let off = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
    // SAFETY: disabling the calling thread's alternate signal stack touches no memory of ours;
    // from then on no signal handler runs on it, so the pages std mapped for it (which the
    // kernel just named: page-aligned, as std maps them) may be made inaccessible.
    let folded = unsafe {
        libc::sigaltstack(&off, std::ptr::null_mut()) == 0
            && libc::mprotect(stack.ss_sp, stack.ss_size, libc::PROT_NONE) == 0
    };
    folded.then_some((stack.ss_sp as usize, stack.ss_size))
}

/// An epoll instance: what many threads can wait on at once, each woken alone for one ready
/// descriptor (`poll` would wake every waiting thread).
pub struct Poller(std::os::fd::OwnedFd);

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor, which we then own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just opened, owned by nothing else.
        Ok(Poller(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for input (level-triggered), reported as `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: both descriptors are open for the call, and `event` is a valid epoll_event.
        let done = unsafe {
            libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event)
        };
        if done < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits for one watched descriptor to have input, and returns its token.
    pub fn wait(&self) -> io::Result<u64> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        loop {
            // SAFETY: the instance is open, and `event` has room for the one event asked for.
            match unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut event, 1, -1) } {
                1 => return Ok(event.u64),
                0 => {}
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
}

/// The index of the network interface called `name` (eth0), if there is one.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// RLIMIT_NPROC (soft), which counts the threads of the process's real user, when it is finite.
pub fn thread_limit() -> Option<u64> {
    limit(libc::RLIMIT_NPROC).map(|(soft, _)| soft).filter(|&soft| soft != libc::RLIM_INFINITY)
}

/// RLIMIT_NOFILE, soft and hard, when they are finite.
pub fn open_file_limit() -> Option<(u64, u64)> {
    let (soft, hard) = limit(libc::RLIMIT_NOFILE)?;
    (hard != libc::RLIM_INFINITY).then_some((soft, hard))
}

/// RLIMIT_AS, the address space the process may map, when it is finite.
pub fn address_space_limit() -> Option<u64> {
    limit(libc::RLIMIT_AS).map(|(soft, _)| soft).filter(|&soft| soft != libc::RLIM_INFINITY)
}

/// Keeps the allocator to `arenas` arenas. glibc gives threads arenas of their own, up to eight
/// per core by default, each reserving 64 MiB of address space as a thread first allocates.
pub fn cap_malloc_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two ints and touches no memory of ours; on failure the default
    // stays.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// A resource limit, soft and hard.
fn limit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid, exclusively borrowed rlimit.
    let done = unsafe { libc::getrlimit(resource, &mut limit) };
    (done == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

/// Sets RLIMIT_NOFILE's soft limit to `soft`, which must not exceed the hard one.
pub fn raise_open_file_limit(soft: u64) -> io::Result<()> {
    let (_, hard) = open_file_limit().ok_or_else(|| io::Error::other("no open-file limit"))?;
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads a valid rlimit.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A task limit of a control group: its path in the hierarchy, `pids.max` and `pids.current`.
#[derive(Debug, PartialEq)]
pub struct TaskLimit {
    pub group: String,
    pub max: u64,
    pub current: u64,
}

/// The task limits (the pids controller's) of this process's control group and of each of its
/// parents that has one, with cgroup v2 or, where the pids controller is on a v1 hierarchy, v1.
pub fn task_limits() -> Vec<TaskLimit> {
    let Ok(me) = procfs::process::Process::myself() else {
        return Vec::new();
    };
    let (Ok(groups), Ok(mounts)) = (me.cgroups(), me.mountinfo()) else {
        return Vec::new();
    };
    let v1 = groups.0.iter().find(|g| g.controllers.iter().any(|c| c == "pids"));
    let group = v1.or_else(|| groups.0.iter().find(|g| g.hierarchy == 0));
    let mount = group.and_then(|group| {
        mounts.0.iter().find(|m| match group.hierarchy {
            0 => m.fs_type == "cgroup2",
            _ => m.fs_type == "cgroup" && m.super_options.contains_key("pids"),
        })
    });
    match (group, mount) {
        (Some(group), Some(mount)) => {
            let relative = group.pathname.strip_prefix(&mount.root).unwrap_or(&group.pathname);
            task_limits_in(&mount.mount_point, relative)
        }
        _ => Vec::new(),
    }
}

/// The task limits of control group `group` (a path such as `/system.slice/x.service`) and its
/// parents, in the hierarchy mounted at `root`.
pub fn task_limits_in(root: &Path, group: &str) -> Vec<TaskLimit> {
    let mut limits = Vec::new();
    let mut group = Path::new("/").join(group.trim_start_matches('/'));
    loop {
        let dir = root.join(group.strip_prefix("/").unwrap_or(&group));
        // "max" (no limit) does not parse, and then there is nothing to check.
        let number = |file| fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok();
        if let (Some(max), Some(current)) = (number("pids.max"), number("pids.current")) {
            limits.push(TaskLimit { group: group.display().to_string(), max, current });
        }
        if !group.pop() {
            return limits;
        }
    }
}

/// Threads of every process whose real user is `uid`: what `RLIMIT_NPROC` counts.
pub fn user_threads(uid: u32) -> u64 {
    let Ok(processes) = procfs::process::all_processes() else {
        return 0;
    };
    (processes.flatten())
        .filter_map(|process| process.status().ok())
        .filter(|status| status.ruid == uid)
        .map(|status| status.threads)
        .sum()
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

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

    /// The task limits of a control group and of every parent with one are read, up to the
    /// root; a group whose limit is "max" has none.
    #[test]
    fn task_limits_are_read_up_the_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let write = |dir: &str, max: &str, current: &str| {
            let dir = root.path().join(dir);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("pids.max"), format!("{max}\n")).unwrap();
            fs::write(dir.join("pids.current"), format!("{current}\n")).unwrap();
        };
        write("", "max", "900");
        write("user.slice", "12000", "800");
        write("user.slice/session.scope", "max", "40");
        write("user.slice/session.scope/app", "500", "3");
        let limits = task_limits_in(root.path(), "/user.slice/session.scope/app");
        let limit = |group: &str, max, current| TaskLimit { group: group.into(), max, current };
        assert_eq!(
            limits,
            [limit("/user.slice/session.scope/app", 500, 3), limit("/user.slice", 12000, 800)]
        );
    }
}

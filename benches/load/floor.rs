//! The floors: the simplest servers that could do the job, run by the benchmark, so that
//! poetry-serve is measured against what this machine can do at all in the same run: for
//! connections, a one-thread loop in this process ([`Floor`]); for slow clients, a
//! thread-per-client pacer in a process of its own ([`pacer`]).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A one-thread server that accepts, writes the whole of `content` with one `write_all`, and
/// closes: no pool, no pacing, no logging, no care at close.
pub struct Floor {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// CPU time the serving thread has used, in nanoseconds, updated after each connection.
    cpu_ns: Arc<AtomicU64>,
}

impl Floor {
    pub fn start(content: Arc<Vec<u8>>) -> Floor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the floor");
        let addr = listener.local_addr().expect("floor address");
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let (stopping, cpu) = (Arc::clone(&stop), Arc::clone(&cpu_ns));
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut stream) = stream {
                    let _ = stream.write_all(&content);
                } // closed here
                cpu.store(thread_cpu().as_nanos() as u64, Ordering::Relaxed);
            }
        });
        Floor { addr, stop, thread: Some(thread), cpu_ns }
    }

    /// CPU time the serving thread has used so far.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }
}

/// CPU time used by the calling thread.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes to a valid, exclusively borrowed timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr); // wake the accept
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The floor for the slow job: `pacer --port P --workers N --delay SECONDS --num-bytes B
/// POEM`, run as a process of its own (this benchmark's executable, started by
/// [`Served::pacer`](crate::procs::Served::pacer)) so that /proc measures it alone. N threads
/// with 64 KiB stacks each block in `accept()` on one listener with the kernel's largest
/// backlog; a thread that takes a client writes chunk k of the poem at start + k × delay
/// (absolute deadlines, so no drift), then shuts down its side and closes. Nothing else: no
/// queue, no log, no counters, no care for a client that sends. Prints
/// `floor listening on ADDR` once every thread is waiting.
///
/// Its threads are made with `pthread_create` rather than `std::thread`: std gives every
/// thread an alternate signal stack, two more memory maps a thread, and 19,000 such threads
/// would not fit in `vm.max_map_count` (65,530), where a C pacer's would.
pub fn pacer(args: &[String]) {
    let mut args = args.iter();
    let (mut port, mut workers, mut delay, mut chunk, mut poem) = (0u16, 1usize, 0.0, 10, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("pacer: a flag without its value");
        match arg.as_str() {
            "--port" => port = value().parse().expect("pacer --port"),
            "--workers" => workers = value().parse().expect("pacer --workers"),
            "--delay" => delay = value().parse().expect("pacer --delay"),
            "--num-bytes" => chunk = value().parse().expect("pacer --num-bytes"),
            path => poem = Some(std::fs::read(path).expect("pacer: read the poem")),
        }
    }
    let backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("pacer: socket");
    socket.set_reuse_address(true).expect("pacer: SO_REUSEADDR");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.bind(&addr.into()).expect("pacer: bind");
    socket.listen(backlog).expect("pacer: listen");
    let listener = TcpListener::from(socket);
    let addr = listener.local_addr().expect("pacer: address");
    let job: &'static Job = Box::leak(Box::new(Job {
        listener: listener.as_raw_fd(),
        poem: poem.expect("pacer: no poem named"),
        chunk: chunk.max(1),
        delay_ns: (delay * 1e9) as i64,
    }));
    // SAFETY: the attribute is initialised before use and destroyed after; every thread gets
    // a pointer to the leaked Job, which lives as long as the process.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        for started in 0..workers {
            let mut thread: libc::pthread_t = 0;
            let job = job as *const Job as *mut libc::c_void;
            let err = libc::pthread_create(&mut thread, &attr, serve_forever, job);
            if err != 0 {
                // The benchmark reads this as the would-be listening line and shows it.
                println!(
                    "floor: thread {} of {workers} did not start: {}",
                    started + 1,
                    std::io::Error::from_raw_os_error(err)
                );
                std::process::exit(1);
            }
        }
        libc::pthread_attr_destroy(&mut attr);
    }
    println!("floor listening on {addr}");
    std::io::stdout().flush().expect("pacer: stdout");
    // The threads serve until the benchmark kills the process.
    loop {
        thread::park();
    }
}

/// What every pacer thread serves.
struct Job {
    listener: std::os::fd::RawFd,
    poem: Vec<u8>,
    chunk: usize,
    delay_ns: i64,
}

/// A pacer thread: accept, write each chunk on its deadline, shut down, close, again.
extern "C" fn serve_forever(job: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `pacer` passes a pointer to a Job it leaked, which is never freed.
    let job = unsafe { &*(job as *const Job) };
    loop {
        // SAFETY: plain system calls on descriptors this thread owns, with buffers that
        // outlive each call.
        unsafe {
            let fd = libc::accept4(
                job.listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                // Out of descriptors: let a client end before trying again.
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EMFILE) {
                    libc::usleep(10_000);
                }
                continue;
            }
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut start: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut start);
            'poem: for (k, chunk) in job.poem.chunks(job.chunk).enumerate() {
                if k > 0 {
                    let due = after(start, job.delay_ns * k as i64);
                    while libc::clock_nanosleep(
                        libc::CLOCK_MONOTONIC,
                        libc::TIMER_ABSTIME,
                        &due,
                        std::ptr::null_mut(),
                    ) == libc::EINTR
                    {}
                }
                let mut sent = 0;
                while sent < chunk.len() {
                    let n = libc::send(
                        fd,
                        chunk[sent..].as_ptr() as *const libc::c_void,
                        chunk.len() - sent,
                        libc::MSG_NOSIGNAL,
                    );
                    if n < 0 {
                        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                            continue;
                        }
                        break 'poem;
                    }
                    sent += n as usize;
                }
            }
            libc::shutdown(fd, libc::SHUT_WR);
            libc::close(fd);
        }
    }
}

/// `start` plus `ns` nanoseconds.
fn after(start: libc::timespec, ns: i64) -> libc::timespec {
    let total = start.tv_nsec + ns;
    libc::timespec {
        tv_sec: start.tv_sec + (total / 1_000_000_000) as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    }
}

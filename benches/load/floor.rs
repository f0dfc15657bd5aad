//! The floors: the simplest servers that could do the job, run inside the benchmark, so that
//! poetry-serve is measured against what this machine can do at all in the same run.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
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

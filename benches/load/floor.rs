//! The floors: the simplest servers that could do the job, run inside the benchmark, so that
//! poetry-serve is measured against what this machine can do at all in the same run.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

/// A one-thread server that accepts, writes the whole of `content` with one `write_all`, and
/// closes: no pool, no pacing, no logging, no care at close.
pub struct Floor {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Floor {
    pub fn start(content: Arc<Vec<u8>>) -> Floor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the floor");
        let addr = listener.local_addr().expect("floor address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut stream) = stream {
                    let _ = stream.write_all(&content);
                }
            }
        });
        Floor { addr, stop, thread: Some(thread) }
    }
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

//! The fixed pool of worker threads, and the permits that let the accept loop take a
//! connection only when a worker is free for it.
//!
//! Every worker starts with the pool and lives as long as it does; a panic in a job is caught
//! and logged, and the worker waits for the next. Each worker has a channel of its own, and the
//! free workers' numbers wait on a stack: [`Pool::permit`] takes one (waiting while every worker
//! is busy, so that clients wait in the kernel's listen backlog and memory does not grow with
//! them), and [`Permit::hand`] gives that worker its job. The most recently freed worker is
//! taken first, so a lightly loaded server keeps using the few workers whose stacks are already
//! in memory.
//!
//! Shutdown goes through ownership: [`Pool::join`] drops every worker's sender, and each worker
//! finishes what it holds, sees its channel disconnect and returns.

use std::any::Any;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::error;

/// Stack size of each worker. Only touched pages cost memory, so this bounds address space
/// rather than what an idle worker costs; a worker's deepest path (a log line, a caught panic)
/// is far below it.
pub const WORKER_STACK: usize = 128 * 1024;

/// A fixed set of worker threads, each running `work(worker, job)` for the jobs it is handed.
pub struct Pool<T> {
    hands: Vec<SyncSender<T>>,
    free: Arc<Free>,
    threads: Vec<JoinHandle<()>>,
    /// Every worker holds a sender of this channel, so it disconnects when the last returns.
    returned: Mutex<Receiver<()>>,
}

/// The numbers of the workers with nothing to do, most recently freed last.
struct Free {
    stack: Mutex<(Vec<usize>, bool)>,
    freed: Condvar,
}

/// Closes a pool from any thread: see [`Pool::close`].
pub struct Closer(Arc<Free>);

impl Closer {
    pub fn close(&self) {
        self.0.close();
    }
}

/// A free worker, set aside for one job; dropped unused, it is free again.
pub struct Permit<'a, T> {
    pool: &'a Pool<T>,
    worker: Option<usize>,
}

impl<T: Send + 'static> Pool<T> {
    /// Starts `size` workers named `worker-N`, each running `work` on the jobs it is handed.
    pub fn new(
        size: NonZeroUsize,
        work: impl Fn(usize, T) + Send + Sync + 'static,
    ) -> io::Result<Pool<T>> {
        let size = size.get();
        let work = Arc::new(work);
        let free = Arc::new(Free {
            stack: Mutex::new(((0..size).rev().collect(), false)),
            freed: Condvar::new(),
        });
        let (returning, returned) = mpsc::channel::<()>();
        let mut pool = Pool {
            hands: Vec::with_capacity(size),
            free: Arc::clone(&free),
            threads: Vec::with_capacity(size),
            returned: Mutex::new(returned),
        };
        for worker in 0..size {
            let (hand, jobs) = mpsc::sync_channel::<T>(1);
            let (work, free, returning) = (Arc::clone(&work), Arc::clone(&free), returning.clone());
            let thread = thread::Builder::new()
                .name(format!("worker-{worker}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    let _returning = returning;
                    for job in jobs {
                        let ran = panic::catch_unwind(AssertUnwindSafe(|| work(worker, job)));
                        if let Err(panic) = ran {
                            let panic = panic_message(&*panic);
                            error!(panic, "a job panicked; its worker carries on");
                        }
                        free.put(worker);
                    }
                })?;
            // On error, dropping `pool` ends and joins the workers already started.
            pool.hands.push(hand);
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Waits for a free worker and sets it aside; `None` once the pool is [closed](Pool::close).
    pub fn permit(&self) -> Option<Permit<'_, T>> {
        let mut stack = self.free.lock();
        loop {
            if stack.1 {
                return None;
            }
            if let Some(worker) = stack.0.pop() {
                let worker = Some(worker);
                return Some(Permit { pool: self, worker });
            }
            stack = self.free.wait(stack);
        }
    }

    /// Gives no more permits, and wakes a wait for one.
    pub fn close(&self) {
        self.free.close();
    }

    /// What closes the pool from another thread.
    pub fn closer(&self) -> Closer {
        Closer(Arc::clone(&self.free))
    }

    /// Closes the pool, lets the workers finish their jobs and waits up to `limit` for them
    /// all to return. Returns false if some still run; then `cut` is called (it must make the
    /// jobs end) and the wait goes on up to `cut_wait`, after which what still runs is left to
    /// end with the process.
    pub fn join(mut self, limit: Duration, cut: impl FnOnce(), cut_wait: Duration) -> bool {
        self.close();
        self.hands.clear();
        if self.all_returned(limit) {
            return true; // Drop joins them at once
        }
        cut();
        if !self.all_returned(cut_wait) {
            self.threads.clear(); // detach: a dropped JoinHandle does not wait
        }
        false
    }

    fn all_returned(&self, limit: Duration) -> bool {
        // Nobody sends: only the disconnect, when the last worker returns, counts.
        let returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match returned.recv_timeout(limit) {
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
                Ok(()) => {}
            }
        }
    }
}

impl<T> Permit<'_, T> {
    /// Hands the worker its job.
    pub fn hand(mut self, job: T) {
        // Taken here once; the worker is free, so its one-slot channel is empty and open (the
        // pool lives while a permit borrows it).
        let worker = self.worker.take().expect("a permit is handed once");
        let _ = self.pool.hands[worker].try_send(job);
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        if let Some(worker) = self.worker {
            self.pool.free.put(worker);
        }
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        self.hands.clear();
        for thread in self.threads.drain(..) {
            // A worker never panics itself (jobs are caught), so join cannot fail.
            let _ = thread.join();
        }
    }
}

impl Free {
    fn lock(&self) -> MutexGuard<'_, (Vec<usize>, bool)> {
        // Nothing panics while it is held; the stack would still be whole.
        self.stack.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(
        &self,
        guard: MutexGuard<'a, (Vec<usize>, bool)>,
    ) -> MutexGuard<'a, (Vec<usize>, bool)> {
        self.freed.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().1 = true;
        self.freed.notify_all();
    }

    fn put(&self, worker: usize) {
        self.lock().0.push(worker);
        self.freed.notify_one();
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(not a string)"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A pool whose jobs are channels to report on: each worker sends its number and waits for
    /// the job's channel to close.
    fn pool(size: usize) -> Pool<(mpsc::Sender<usize>, mpsc::Receiver<()>)> {
        let work = |worker, (tell, hold): (mpsc::Sender<usize>, mpsc::Receiver<()>)| {
            let _ = tell.send(worker);
            let _ = hold.recv_timeout(LIMIT);
        };
        Pool::new(NonZeroUsize::new(size).unwrap(), work).unwrap()
    }

    /// A permit is a free worker: while every worker is busy none is given, a job that ends
    /// frees its worker for the next permit, and closing the pool ends a wait for one.
    #[test]
    fn permits_wait_for_a_free_worker() {
        let pool = pool(2);
        let (tell, told) = mpsc::channel();
        let mut holds = Vec::new();
        for _ in 0..2 {
            let (hold, release) = mpsc::channel();
            pool.permit().unwrap().hand((tell.clone(), release));
            holds.push(hold);
            told.recv_timeout(LIMIT).expect("the job runs");
        }
        thread::scope(|scope| {
            let waiting = scope.spawn(|| pool.permit().and_then(|p| p.worker));
            thread::sleep(Duration::from_millis(50));
            assert!(!waiting.is_finished(), "a permit while every worker is busy");
            drop(holds.pop()); // worker 1 was handed the second job, and is free again
            assert_eq!(waiting.join().unwrap(), Some(1));
            // The dropped permit freed worker 1 again: this one takes it.
            let held = pool.permit().expect("worker 1 is free");
            let closed = scope.spawn(|| pool.permit().is_none());
            thread::sleep(Duration::from_millis(50));
            pool.close();
            assert!(closed.join().unwrap(), "a wait for a permit ends at the close");
            drop(held);
        });
        drop(holds);
        assert!(pool.join(LIMIT, || {}, LIMIT));
    }

    /// A panicking job leaves its worker alive for the next one.
    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = Pool::new(NonZeroUsize::MIN, |_, job: Option<mpsc::Sender<()>>| {
            job.expect("deliberate test panic").send(()).unwrap();
        })
        .unwrap();
        pool.permit().unwrap().hand(None);
        let (done, ran) = mpsc::channel();
        pool.permit().unwrap().hand(Some(done));
        ran.recv_timeout(LIMIT).expect("the only worker lives on");
    }

    /// Joining lets running jobs finish within the limit; past it, the cut is called, and the
    /// join says the jobs did not end in time.
    #[test]
    fn join_waits_for_running_jobs_then_cuts() {
        let pool = pool(1);
        let (tell, told) = mpsc::channel();
        let (hold, release) = mpsc::channel::<()>();
        pool.permit().unwrap().hand((tell, release));
        told.recv_timeout(LIMIT).unwrap();
        let cut = move || drop(hold);
        assert!(!pool.join(Duration::from_millis(50), cut, LIMIT));
    }
}

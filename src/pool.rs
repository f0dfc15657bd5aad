//! The fixed pool of worker threads and the bounded queue that feeds it.
//!
//! All workers start with the pool and live as long as it does: a panic in a job is caught and
//! logged, and the worker takes the next job. The queue holds at most one job per worker, so
//! when every worker is busy and the queue is full, [`Pool::execute`] waits, the accept loop
//! stops accepting, and further clients wait in the kernel's listen backlog; memory does not
//! grow with the number of waiting clients.
//!
//! Shutdown goes through ownership: dropping the queue's sender lets each worker finish the
//! jobs already queued and then return, and dropping the pool joins them all.

use std::any::Any;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};
use tracing::error;

/// One unit of work: serving one connection.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of each worker. A worker's deepest path is a log line or a caught panic, far
/// below this; and since only touched pages cost memory, an idle worker costs about 10 KB of
/// resident memory whatever this says. It bounds address space: 10,000 workers reserve
/// 1.25 GiB of it, not the 20 GiB that std's 2 MiB default would.
pub const WORKER_STACK: usize = 128 * 1024;

/// A fixed set of worker threads.
#[derive(Debug)]
pub struct Pool {
    /// `None` once shutdown has begun; the workers return when it is dropped.
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Every worker holds a sender of this channel, so it disconnects when the last one ends.
    finished: Receiver<()>,
    busy: Arc<AtomicUsize>,
}

/// The job was not queued because the stop signal came first.
#[derive(Debug)]
pub struct Stopped;

impl Pool {
    /// Starts `size` workers named `worker-N`.
    pub fn new(size: NonZeroUsize) -> io::Result<Pool> {
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(size.get());
        let (finished_tx, finished) = crossbeam_channel::bounded(0);
        let busy = Arc::new(AtomicUsize::new(0));
        let workers = (0..size.get())
            .map(|id| {
                let (queue, finished_tx, busy) = (queue.clone(), finished_tx.clone(), busy.clone());
                thread::Builder::new()
                    .name(format!("worker-{id}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || work(queue, finished_tx, busy))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Pool {
            jobs: Some(jobs),
            workers,
            finished,
            busy,
        })
    }

    /// How many workers are running a job right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Relaxed)
    }

    /// Queues `job`, waiting while the queue is full, unless `stop` fires first (its sender is
    /// dropped), in which case the job is dropped unrun.
    pub fn execute(&self, job: Job, stop: &Receiver<()>) -> Result<(), Stopped> {
        // Present until `shutdown`, which takes the pool by value.
        let jobs = self
            .jobs
            .as_ref()
            .expect("the queue is open while the pool is shared");
        select! {
            send(jobs, job) -> sent => sent.map_err(|_| Stopped),
            recv(stop) -> _ => Err(Stopped),
        }
    }

    /// Closes the queue, lets the workers finish what they hold and what is queued, and waits
    /// for them until `grace` has passed. Returns how many jobs were still running then; their
    /// threads are left to be ended with the process.
    pub fn shutdown(mut self, grace: Duration) -> usize {
        drop(self.jobs.take());
        let deadline = Instant::now() + grace;
        match self.finished.recv_deadline(deadline) {
            Err(RecvTimeoutError::Disconnected) => 0, // every worker has returned; Drop joins
            Ok(()) | Err(RecvTimeoutError::Timeout) => {
                let running = self.busy();
                self.workers.clear(); // detach: a dropped JoinHandle does not wait
                running
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            // A worker never panics itself (jobs are caught), so join cannot fail.
            let _ = worker.join();
        }
    }
}

/// A worker's life: take the next job until the queue closes.
fn work(queue: Receiver<Job>, _finished: Sender<()>, busy: Arc<AtomicUsize>) {
    while let Ok(job) = queue.recv() {
        busy.fetch_add(1, Relaxed);
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(job)) {
            error!(
                panic = panic_message(&*panic),
                "a job panicked; its worker carries on"
            );
        }
        busy.fetch_sub(1, Relaxed);
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
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn pool(size: usize) -> Pool {
        Pool::new(NonZeroUsize::new(size).unwrap()).unwrap()
    }

    /// A stop channel that never fires.
    fn never() -> (Sender<()>, Receiver<()>) {
        crossbeam_channel::bounded(0)
    }

    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = pool(1);
        let (_keep, stop) = never();
        let (done_tx, done) = crossbeam_channel::unbounded();
        pool.execute(Box::new(|| panic!("deliberate test panic")), &stop)
            .unwrap();
        for n in 0..3 {
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || done_tx.send(n).unwrap()), &stop)
                .unwrap();
        }
        for n in 0..3 {
            assert_eq!(
                done.recv_timeout(LIMIT)
                    .expect("the only worker must live on"),
                n
            );
        }
    }

    #[test]
    fn execute_gives_up_when_stopped_while_the_queue_is_full() {
        let pool = pool(1);
        let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
        let (_keep, stop) = never();
        // One job occupies the worker, one fills the queue of capacity 1.
        for _ in 0..2 {
            let release = release.clone();
            pool.execute(
                Box::new(move || {
                    let _ = release.recv_timeout(LIMIT);
                }),
                &stop,
            )
            .unwrap();
        }
        let (stop_tx, stop) = never();
        drop(stop_tx);
        assert!(pool.execute(Box::new(|| ()), &stop).is_err());
        drop(release_tx);
    }

    #[test]
    fn shutdown_waits_for_running_jobs_within_the_grace() {
        let pool = pool(2);
        let (_keep, stop) = never();
        let (done_tx, done) = crossbeam_channel::unbounded();
        pool.execute(
            Box::new(move || {
                thread::sleep(Duration::from_millis(200));
                done_tx.send(()).unwrap();
            }),
            &stop,
        )
        .unwrap();
        assert_eq!(pool.shutdown(LIMIT), 0);
        done.try_recv()
            .expect("the job finished before shutdown returned");
    }

    #[test]
    fn shutdown_reports_jobs_still_running_when_the_grace_ends() {
        let pool = pool(2);
        let (_keep, stop) = never();
        let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
        pool.execute(
            Box::new(move || {
                let _ = release.recv_timeout(LIMIT);
            }),
            &stop,
        )
        .unwrap();
        // Wait until the job is picked up, so it counts as running.
        let started = Instant::now();
        while pool.busy() == 0 && started.elapsed() < LIMIT {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.shutdown(Duration::from_millis(50)), 1);
        drop(release_tx);
    }
}

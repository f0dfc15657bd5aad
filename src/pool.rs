//! The fixed pool of worker threads, each taking its own jobs from a shared [`Source`]: for the
//! server, a free worker accepts its next connection itself.
//!
//! Every worker starts with the pool and lives as long as it does; a panic in a job is caught
//! and logged, and the worker takes the next. A worker takes a job only when it is free, so when
//! every worker is busy, clients wait in the kernel's listen backlog and memory does not grow
//! with them: the worker is the permit.
//!
//! Shutdown goes through ownership: [`Pool::join`] and `Drop` close the source, and each worker
//! finishes what it holds, finds the source closed and returns.

use std::any::Any;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::error;

use crate::sys;

/// Stack size of each worker. Only touched pages cost memory, so this bounds address space
/// rather than what an idle worker costs; a worker's deepest path (a log line, a caught panic)
/// is far below it.
pub const WORKER_STACK: usize = 128 * 1024;

/// How late a worker may wake from a sleep (its timer slack; Linux's default is 50 µs): with
/// thousands of connections paced at once, timers due within this of each other expire together,
/// one wake-up of the processor for many. It costs pacing no more than this, and the crowd's CPU
/// per chunk a fifth: see docs/benchmarks.md, "Notes: where the time goes".
const WORKER_TIMER_SLACK: Duration = Duration::from_micros(250);

/// Where the workers take their jobs from.
pub trait Source: Send + Sync + 'static {
    type Job;

    /// Waits for the next job for `worker`; `None` once closed.
    fn take(&self, worker: usize) -> Option<Self::Job>;

    /// Ends every [`Source::take`], now and from then on; called more than once, it does
    /// nothing more.
    fn close(&self);
}

/// A fixed set of worker threads, each running `work(worker, job)` for the jobs it takes.
pub struct Pool<S: Source> {
    source: Arc<S>,
    threads: Vec<JoinHandle<()>>,
    /// Every worker holds a sender of this channel, so it disconnects when the last returns.
    returned: Mutex<Receiver<()>>,
}

impl<S: Source> Pool<S> {
    /// Starts `size` workers named `worker-N`, each taking jobs from `source` and running
    /// `work` on them. Each folds the signal stack std gave it into its guard page
    /// ([`sys::fold_signal_stack`]): three memory maps a worker instead of four.
    pub fn new(
        size: NonZeroUsize,
        source: Arc<S>,
        work: impl Fn(usize, S::Job) + Send + Sync + 'static,
    ) -> io::Result<Pool<S>> {
        let size = size.get();
        let work = Arc::new(work);
        let (returning, returned) = mpsc::channel::<()>();
        let mut pool = Pool {
            source: Arc::clone(&source),
            threads: Vec::with_capacity(size),
            returned: Mutex::new(returned),
        };
        for worker in 0..size {
            let (work, source, returning) =
                (Arc::clone(&work), Arc::clone(&source), returning.clone());
            let thread = thread::Builder::new()
                .name(format!("worker-{worker}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    let _returning = returning;
                    sys::fold_signal_stack();
                    sys::set_timer_slack(WORKER_TIMER_SLACK);
                    while let Some(job) = source.take(worker) {
                        let ran = panic::catch_unwind(AssertUnwindSafe(|| work(worker, job)));
                        if let Err(panic) = ran {
                            let panic = panic_message(&*panic);
                            error!(panic, "a job panicked; its worker carries on");
                        }
                    }
                })?;
            // On error, dropping `pool` closes the source and joins the workers already started.
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Closes the source, lets the workers finish their jobs and waits up to `limit` for them
    /// all to return. Returns false if some still run; then `cut` is called (it must make the
    /// jobs end) and the wait goes on up to `cut_wait`, after which what still runs is left to
    /// end with the process.
    pub fn join(mut self, limit: Duration, cut: impl FnOnce(), cut_wait: Duration) -> bool {
        self.source.close();
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

impl<S: Source> Drop for Pool<S> {
    fn drop(&mut self) {
        self.source.close();
        for thread in self.threads.drain(..) {
            // A worker never panics itself (jobs are caught), so join cannot fail.
            let _ = thread.join();
        }
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

    /// A source of jobs sent through a channel: each job is a channel to report on, and the
    /// worker sends its number and waits for the job's own channel to close.
    struct Jobs {
        jobs: Mutex<Option<mpsc::Receiver<Job>>>,
    }

    type Job = Option<(mpsc::Sender<usize>, mpsc::Receiver<()>)>;

    impl Source for Jobs {
        type Job = Job;

        fn take(&self, _: usize) -> Option<Job> {
            loop {
                // Locked for one short wait at a time, so that a close comes in between.
                let jobs = self.jobs.lock().unwrap();
                match jobs.as_ref()?.recv_timeout(Duration::from_millis(5)) {
                    Ok(job) => return Some(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                }
            }
        }

        fn close(&self) {
            *self.jobs.lock().unwrap() = None;
        }
    }

    fn work(worker: usize, job: Job) {
        let (tell, hold) = job.expect("deliberate test panic");
        let _ = tell.send(worker);
        let _ = hold.recv_timeout(LIMIT);
    }

    /// A pool of `size` workers taking jobs from the returned sender.
    fn pool(size: usize) -> (Pool<Jobs>, mpsc::Sender<Job>) {
        let (send, jobs) = mpsc::channel();
        let source = Arc::new(Jobs { jobs: Mutex::new(Some(jobs)) });
        (Pool::new(NonZeroUsize::new(size).unwrap(), source, work).unwrap(), send)
    }

    /// Only a free worker takes a job: with both busy, a third job waits until one is free.
    #[test]
    fn only_free_workers_take_jobs() {
        let (pool, jobs) = pool(2);
        let (tell, told) = mpsc::channel();
        let mut holds = Vec::new();
        for _ in 0..3 {
            let (hold, release) = mpsc::channel();
            jobs.send(Some((tell.clone(), release))).unwrap();
            holds.push(hold);
        }
        let mut busy = vec![told.recv_timeout(LIMIT).unwrap(), told.recv_timeout(LIMIT).unwrap()];
        assert!(told.recv_timeout(Duration::from_millis(50)).is_err(), "a third job ran");
        drop(holds.remove(0)); // the first job ends, and its worker takes the third
        let third = told.recv_timeout(LIMIT).expect("the third job runs");
        busy.sort();
        assert_eq!(busy, [0, 1]);
        assert!(busy.contains(&third));
        drop(holds);
        assert!(pool.join(LIMIT, || {}, LIMIT));
    }

    /// A panicking job leaves its worker alive for the next one.
    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let (pool, jobs) = pool(1);
        jobs.send(None).unwrap();
        let (tell, told) = mpsc::channel();
        let (hold, release) = mpsc::channel();
        jobs.send(Some((tell, release))).unwrap();
        told.recv_timeout(LIMIT).expect("the only worker lives on");
        drop(hold);
        drop(pool);
    }

    /// Workers run with their timer slack set, so that timers due together expire together.
    #[test]
    fn workers_sleep_with_the_timer_slack() {
        let (send, jobs) = mpsc::channel();
        let source = Arc::new(Jobs { jobs: Mutex::new(Some(jobs)) });
        let (tell, told) = mpsc::channel();
        let pool = Pool::new(NonZeroUsize::MIN, source, move |_, _: Job| {
            tell.send(sys::timer_slack().as_nanos()).unwrap();
        })
        .unwrap();
        send.send(None).unwrap();
        let slack = told.recv_timeout(LIMIT).expect("the job runs");
        assert_eq!(slack, WORKER_TIMER_SLACK.as_nanos());
        drop(pool);
    }

    /// Joining lets running jobs finish within the limit; past it, the cut is called, and the
    /// join says the jobs did not end in time.
    #[test]
    fn join_waits_for_running_jobs_then_cuts() {
        let (pool, jobs) = pool(1);
        let (tell, told) = mpsc::channel();
        let (hold, release) = mpsc::channel::<()>();
        jobs.send(Some((tell, release))).unwrap();
        told.recv_timeout(LIMIT).unwrap();
        let cut = move || drop(hold);
        assert!(!pool.join(Duration::from_millis(50), cut, LIMIT));
    }
}

//! The fixed pool of worker threads and the bounded queue that feeds it.
//!
//! All workers start with the pool and live as long as it does: a panic in a job is caught and
//! logged, and the worker takes the next job. The queue holds at most one job per worker, so
//! when every worker is busy and the queue is full, [`Pool::execute`] waits, the accept loop
//! stops accepting, and further clients wait in the kernel's listen backlog; memory does not
//! grow with the number of waiting clients.
//!
//! The queue is std's bounded channel with its receiver behind a mutex, as in the Rust Book's
//! thread pool: the accept loop's sends never take a lock, and of the idle workers only the
//! one holding the mutex waits on the channel while the rest sleep on the mutex. Queues that
//! measured worse (crossbeam's spinning receivers, a `Mutex<VecDeque>` with condition
//! variables) are in the CHANGELOG, Performance.
//!
//! Shutdown goes through ownership: [`Pool::drain`] (or dropping the pool) drops the sender,
//! the workers finish what they hold and what is queued, see the channel disconnect and
//! return, and are joined.

use std::any::Any;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::error;

use crate::progress;
use crate::shutdown::Shutdown;
use crate::sys;

/// One unit of work: serving one connection.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of each worker. A worker's deepest path is a log line or a caught panic, far
/// below this; and since only touched pages cost memory, what an idle worker costs does not
/// depend on it (the README's "Why 256 workers by default" has the figure). It bounds
/// address space, at a sixteenth of what std's 2 MiB default would reserve per worker.
pub const WORKER_STACK: usize = 128 * 1024;

/// While the queue is full (every worker busy, every slot taken), how often
/// [`Pool::execute`] looks for room again. Paced poems free workers seconds apart, so this
/// adds nothing a client could notice, and it lets a shutdown stop the wait promptly.
const FULL_QUEUE_POLL: Duration = Duration::from_millis(5);

/// After the cut, how long [`Pool::drain`] waits for the workers to end their connections
/// and log them. A cut connection ends at once, so this is only a bound.
pub const CUT_OFF_WAIT: Duration = Duration::from_secs(2);

/// A fixed set of worker threads and their queue.
pub struct Pool {
    /// `None` once the pool is draining.
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    shutdown: Shutdown,
    load: Arc<Load>,
    /// Every worker holds a sender of this channel, so it disconnects when the last returns.
    returned: Receiver<()>,
}

/// How busy the pool is, readable from anywhere (for the stats line).
#[derive(Debug, Default)]
pub struct Load {
    busy: AtomicUsize,
    queued: AtomicUsize,
}

impl Load {
    /// Workers running a job now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Jobs queued and not yet taken by a worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The job was not queued: shutdown has begun.
#[derive(Debug)]
pub struct Closed;

impl Pool {
    /// Starts `size` workers named `worker-N`, with a queue of `size` slots. Once `shutdown`
    /// begins, the pool takes no more jobs.
    pub fn new(size: NonZeroUsize, shutdown: Shutdown) -> io::Result<Pool> {
        let size = size.get();
        let (jobs, queue) = mpsc::sync_channel::<Job>(size);
        let queue = Arc::new(Mutex::new(queue));
        let (returning, returned) = mpsc::channel();
        let load = Arc::new(Load::default());
        let mut pool = Pool {
            jobs: Some(jobs),
            workers: Vec::with_capacity(size),
            shutdown,
            load: Arc::clone(&load),
            returned,
        };
        for id in 0..size {
            let (queue, returning, load) =
                (Arc::clone(&queue), returning.clone(), Arc::clone(&load));
            let worker = thread::Builder::new()
                .name(format!("worker-{id}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    progress::claim(id); // its connections show in slot `id` of the status page
                    work(&queue, &load, returning)
                })?;
            // On error, dropping `pool` ends and joins the workers already started.
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// How many workers are running a job right now.
    pub fn busy(&self) -> usize {
        self.load.busy()
    }

    /// A handle on the pool's load, for reporting.
    pub fn load(&self) -> Arc<Load> {
        Arc::clone(&self.load)
    }

    /// Queues `job`, waiting while the queue is full. Fails, dropping the job unrun, if
    /// shutdown has begun or begins first.
    ///
    /// A job waiting here counts as queued, so that every accepted connection is either
    /// queued, busy or ended in the figures.
    pub fn execute(&self, mut job: Job) -> Result<(), Closed> {
        // Present until `drain`, which takes the pool by value.
        let jobs = self
            .jobs
            .as_ref()
            .expect("the queue is open while the pool is shared");
        // Counted before the send, so a worker never takes a job not yet counted.
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        loop {
            if self.shutdown.has_begun() {
                break;
            }
            match jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    job = back;
                    thread::sleep(FULL_QUEUE_POLL);
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        self.load.queued.fetch_sub(1, Ordering::Relaxed);
        Err(Closed)
    }

    /// Takes no more jobs, lets the workers finish what they hold and what is queued, and
    /// waits for them until `grace` has passed. Then it cuts off what still runs (see
    /// [`Shutdown::cut_off`]), so that each connection ends and is logged, and waits up to
    /// [`CUT_OFF_WAIT`] for that. Returns how many jobs were still running when the grace
    /// ended; a worker that outlasts the wait is left to be ended with the process.
    pub fn drain(mut self, grace: Duration) -> usize {
        drop(self.jobs.take());
        if self.all_returned(grace) {
            return 0; // Drop joins them at once
        }
        let running = self.busy() + self.load.queued();
        self.shutdown.cut_off();
        if !self.all_returned(CUT_OFF_WAIT) {
            self.workers.clear(); // detach: a dropped JoinHandle does not wait
        }
        running
    }

    /// Waits up to `limit` for every worker to return.
    fn all_returned(&self, limit: Duration) -> bool {
        loop {
            match self.returned.recv_timeout(limit) {
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
                Ok(()) => {} // nobody sends; only the disconnect counts
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

/// A worker's life: take the next job until the queue is closed and empty.
fn work(queue: &Mutex<Receiver<Job>>, load: &Load, _returning: mpsc::Sender<()>) {
    yield_to_the_accept_loop();
    coalesce_wake_ups();
    loop {
        // The lock is held for this one statement only, never while a job runs. A panicking
        // job cannot poison it (jobs run outside it), so the unwrap cannot fail.
        let job = queue.lock().unwrap().recv();
        let Ok(job) = job else { return };
        load.busy.fetch_add(1, Ordering::Relaxed);
        load.queued.fetch_sub(1, Ordering::Relaxed);
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(job)) {
            error!(
                panic = panic_message(&*panic),
                "a job panicked; its worker carries on"
            );
        }
        load.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How far below the accept loop's CPU priority every worker runs, in nice steps.
pub const WORKER_NICENESS: i32 = 10;

/// Lowers the calling worker's CPU priority by [`WORKER_NICENESS`] (to nice 10 when the
/// server was started at the usual 0; never past 19, the lowest).
///
/// When thousands of clients connect at once, thousands of workers wake to send their first
/// chunk, and a fair scheduler gives the one accept thread a thousandth of the CPU: the listen
/// backlog overflows, and every dropped connect costs its client a one-second SYN retry.
/// Below the accept loop, workers cannot starve it; a worker has little to do per chunk, so on
/// an idle machine it loses nothing. How the value was chosen is in the CHANGELOG, Performance.
fn yield_to_the_accept_loop() {
    sys::lower_thread_priority(WORKER_NICENESS);
}

/// How late the kernel may wake a worker sleeping until its next chunk is due (its timer
/// slack; 50 µs by default).
pub const WORKER_TIMER_SLACK: Duration = Duration::from_millis(1);

/// Lets the kernel wake the calling worker up to [`WORKER_TIMER_SLACK`] late, so that the
/// timers of thousands of paced connections due at nearly the same moment expire together,
/// in fewer interrupts and wake-ups. A chunk a millisecond late is nothing beside a pause
/// between chunks; the CPU it saves per chunk is in the CHANGELOG, Performance.
fn coalesce_wake_ups() {
    sys::set_timer_slack(WORKER_TIMER_SLACK);
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
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A pool of `size` workers, and the shutdown that closes it.
    fn pool(size: usize) -> (Pool, Shutdown) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new(std::slice::from_ref(&listener)).unwrap();
        let pool = Pool::new(NonZeroUsize::new(size).unwrap(), shutdown.clone()).unwrap();
        (pool, shutdown)
    }

    /// Waits until `pool` reports `busy` running jobs.
    fn wait_busy(pool: &Pool, busy: usize) {
        let started = Instant::now();
        while pool.busy() != busy {
            assert!(started.elapsed() < LIMIT, "busy stayed at {}", pool.busy());
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A job that panics leaves its worker alive for the next jobs.
    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let (pool, _) = pool(1);
        let (done_tx, done) = mpsc::channel();
        pool.execute(Box::new(|| panic!("deliberate test panic")))
            .unwrap();
        for n in 0..3 {
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || done_tx.send(n).unwrap()))
                .unwrap();
        }
        for n in 0..3 {
            assert_eq!(
                done.recv_timeout(LIMIT)
                    .expect("the only worker must live on"),
                n
            );
        }
        wait_busy(&pool, 0);
    }

    /// `execute` waits while the queue is full, and gives up once shutdown begins.
    #[test]
    fn execute_waits_for_room_until_shutdown_begins() {
        let (pool, shutdown) = pool(1);
        let (release_tx, release) = mpsc::channel::<()>();
        let release = Arc::new(Mutex::new(release));
        // One job occupies the worker, one fills the queue of capacity 1.
        for _ in 0..2 {
            let release = Arc::clone(&release);
            pool.execute(Box::new(move || {
                let _ = release.lock().unwrap().recv_timeout(LIMIT);
            }))
            .unwrap();
        }
        wait_busy(&pool, 1);
        let (result_tx, result) = mpsc::channel();
        let blocked = thread::spawn(move || {
            result_tx
                .send(pool.execute(Box::new(|| ())).is_err())
                .unwrap();
            pool // dropped here, once the jobs are released, joining the worker
        });
        assert!(
            result.recv_timeout(Duration::from_millis(200)).is_err(),
            "execute must wait while the queue is full"
        );
        shutdown.begin();
        let refused = result
            .recv_timeout(LIMIT)
            .expect("execute must stop waiting once shutdown begins");
        assert!(refused, "a job offered during shutdown must be refused");
        drop(release_tx); // lets the jobs end, so dropping the pool can join its worker
        let (joined_tx, joined) = mpsc::channel();
        thread::spawn(move || joined_tx.send(blocked.join().is_ok()).unwrap());
        assert_eq!(joined.recv_timeout(LIMIT), Ok(true), "the pool must drop");
    }

    /// Draining lets running and queued jobs finish when they fit in the grace.
    #[test]
    fn drain_waits_for_running_and_queued_jobs_within_the_grace() {
        let (pool, _) = pool(1);
        let (done_tx, done) = mpsc::channel();
        for _ in 0..2 {
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || {
                thread::sleep(Duration::from_millis(100));
                done_tx.send(()).unwrap();
            }))
            .unwrap();
        }
        assert_eq!(pool.drain(LIMIT), 0);
        assert_eq!(
            done.try_iter().count(),
            2,
            "both jobs finished before drain returned"
        );
    }

    /// Draining gives up after the grace and says how many jobs were still running.
    #[test]
    fn drain_reports_jobs_still_running_when_the_grace_ends() {
        let (pool, _) = pool(2);
        let (release_tx, release) = mpsc::channel::<()>();
        pool.execute(Box::new(move || {
            let _ = release.recv_timeout(LIMIT);
        }))
        .unwrap();
        wait_busy(&pool, 1);
        assert_eq!(pool.drain(Duration::from_millis(50)), 1);
        drop(release_tx);
    }
}

//! The fixed pool of worker threads and the bounded queue that feeds it.
//!
//! All workers start with the pool and live as long as it does: a panic in a job is caught and
//! logged, and the worker takes the next job. The queue holds at most one job per worker, so
//! when every worker is busy and the queue is full, [`Pool::execute`] waits, the accept loop
//! stops accepting, and further clients wait in the kernel's listen backlog; memory does not
//! grow with the number of waiting clients.
//!
//! The queue is a `VecDeque` under a `Mutex` with `Condvar`s. An idle worker sleeps in the
//! kernel straight away; channel receivers (crossbeam's, and std's, which is a port of it)
//! first spin and call `sched_yield` in a loop, which cost about a sixth of the server's CPU
//! at 20,000 connections a second on two cores.
//!
//! Shutdown: [`Closer::close`] closes the queue. `execute` then refuses new jobs, the workers
//! finish what they hold and what is queued and return, and dropping the pool joins them.
//! [`Pool::shutdown`] does the same with a deadline.

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::error;

/// One unit of work: serving one connection.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of each worker. A worker's deepest path is a log line or a caught panic, far
/// below this; and since only touched pages cost memory, an idle worker costs about 10 KB of
/// resident memory whatever this says. It bounds address space: 10,000 workers reserve
/// 1.25 GiB of it, not the 20 GiB that std's 2 MiB default would.
pub const WORKER_STACK: usize = 128 * 1024;

/// A fixed set of worker threads and their queue.
pub struct Pool {
    queue: Arc<Queue>,
    workers: Vec<JoinHandle<()>>,
}

/// Closes a pool's queue from anywhere (the signal thread, say).
#[derive(Clone)]
pub struct Closer(Arc<Queue>);

/// The job was not queued: the queue is closed.
#[derive(Debug)]
pub struct Closed;

struct Queue {
    state: Mutex<State>,
    /// Signalled when a job is queued or the queue closes.
    job_ready: Condvar,
    /// Signalled when a job is taken or the queue closes.
    room_ready: Condvar,
    /// Signalled when the last worker returns.
    all_returned: Condvar,
    capacity: usize,
}

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Workers running a job.
    busy: usize,
    /// Workers not yet returned.
    alive: usize,
    /// Workers asleep waiting for a job, and callers of `execute` asleep waiting for room:
    /// a `Condvar` notification costs a system call, so it is made only when someone waits.
    idle: usize,
    blocked: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and every critical section below is panic-free, so the
        // mutex is never poisoned; if it were, the state would still be consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next job for a worker, or `None` once the queue is closed and empty. `finished`
    /// says whether this worker has just finished a job (so it is no longer busy).
    fn next(&self, finished: bool) -> Option<Job> {
        let mut state = self.lock();
        if finished {
            state.busy -= 1;
        }
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.busy += 1;
                let someone_blocked = state.blocked > 0;
                drop(state);
                if someone_blocked {
                    self.room_ready.notify_one();
                }
                return Some(job);
            }
            if state.closed {
                state.alive -= 1;
                if state.alive == 0 {
                    self.all_returned.notify_all();
                }
                return None;
            }
            state.idle += 1;
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
        self.room_ready.notify_all();
    }
}

impl Pool {
    /// Starts `size` workers named `worker-N`, with a queue of `size` slots.
    pub fn new(size: NonZeroUsize) -> io::Result<Pool> {
        let size = size.get();
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(size),
                closed: false,
                busy: 0,
                alive: size,
                idle: 0,
                blocked: 0,
            }),
            job_ready: Condvar::new(),
            room_ready: Condvar::new(),
            all_returned: Condvar::new(),
            capacity: size,
        });
        let mut pool = Pool {
            queue,
            workers: Vec::with_capacity(size),
        };
        for id in 0..size {
            let queue = Arc::clone(&pool.queue);
            let spawned = thread::Builder::new()
                .name(format!("worker-{id}"))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&queue));
            match spawned {
                Ok(worker) => pool.workers.push(worker),
                Err(err) => {
                    // The workers never started will never return: count them out before
                    // dropping the pool, which closes the queue and joins the rest.
                    pool.queue.lock().alive -= size - id;
                    return Err(err);
                }
            }
        }
        Ok(pool)
    }

    /// A handle that closes the queue, for whoever decides when to stop.
    pub fn closer(&self) -> Closer {
        Closer(Arc::clone(&self.queue))
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    /// How many workers are running a job right now.
    pub fn busy(&self) -> usize {
        self.queue.lock().busy
    }

    /// Queues `job`, waiting while the queue is full. Fails, dropping the job unrun, if the
    /// queue is or becomes closed first.
    pub fn execute(&self, job: Job) -> Result<(), Closed> {
        let queue = &*self.queue;
        let mut state = queue.lock();
        while state.jobs.len() >= queue.capacity && !state.closed {
            state.blocked += 1;
            state = queue
                .room_ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            state.blocked -= 1;
        }
        if state.closed {
            return Err(Closed);
        }
        state.jobs.push_back(job);
        let someone_idle = state.idle > 0;
        drop(state);
        if someone_idle {
            queue.job_ready.notify_one();
        }
        Ok(())
    }

    /// Closes the queue, lets the workers finish what they hold and what is queued, and waits
    /// for them until `grace` has passed. Returns how many jobs were still running then; their
    /// threads are left to be ended with the process.
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.queue.close();
        let deadline = Instant::now() + grace;
        let mut state = self.queue.lock();
        while state.alive > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let running = state.busy;
                drop(state);
                self.workers.clear(); // detach: a dropped JoinHandle does not wait
                return running;
            }
            state = self
                .queue
                .all_returned
                .wait_timeout(state, left)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
        0 // every worker has returned; Drop joins them at once
    }
}

impl Closer {
    /// Closes the queue: no new jobs; workers return once it is empty.
    pub fn close(&self) {
        self.0.close();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.queue.close();
        for worker in self.workers.drain(..) {
            // A worker never panics itself (jobs are caught), so join cannot fail.
            let _ = worker.join();
        }
    }
}

/// A worker's life: take the next job until the queue closes and empties.
fn work(queue: &Queue) {
    yield_to_the_accept_loop();
    let mut finished = false;
    while let Some(job) = queue.next(finished) {
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(job)) {
            error!(
                panic = panic_message(&*panic),
                "a job panicked; its worker carries on"
            );
        }
        finished = true;
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
/// Measured with 10,000 simultaneous clients on two cores (benches/load, `crowd`): at equal
/// priority and at nice 5, 600 to 1,800 connects were dropped and the slowest client took
/// 1.24× the poem's ideal time; at nice 10, none were dropped and it took 1.09×. Nice 19 did
/// no better there and cost a tenth of the connection rate, as workers lost the CPU to
/// clients on the same machine. A worker has little to do per chunk, so on an idle machine it
/// loses nothing; on a busy one, paced chunks yield a little to other work.
fn yield_to_the_accept_loop() {
    // On Linux the nice value belongs to the thread, and `who = 0` means the calling thread.
    // Failure (it cannot fail when lowering priority) would only leave the worker as it was.
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and setpriority have no memory-safety preconditions.
    unsafe {
        let inherited = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (inherited + WORKER_NICENESS).min(19));
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

    fn pool(size: usize) -> Pool {
        Pool::new(NonZeroUsize::new(size).unwrap()).unwrap()
    }

    /// Waits until `pool` reports `busy` running jobs.
    fn wait_busy(pool: &Pool, busy: usize) {
        let started = Instant::now();
        while pool.busy() != busy {
            assert!(started.elapsed() < LIMIT, "busy stayed at {}", pool.busy());
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = pool(1);
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

    #[test]
    fn execute_gives_up_when_closed_while_the_queue_is_full() {
        let pool = pool(1);
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
        let closer = pool.closer();
        let blocked = thread::spawn(move || pool.execute(Box::new(|| ())).is_err());
        thread::sleep(Duration::from_millis(50));
        closer.close();
        drop(release_tx); // lets the jobs end, so dropping the pool can join its worker
        assert!(
            blocked.join().unwrap(),
            "execute must fail once the queue is closed"
        );
    }

    #[test]
    fn shutdown_waits_for_running_and_queued_jobs_within_the_grace() {
        let pool = pool(1);
        let (done_tx, done) = mpsc::channel();
        for _ in 0..2 {
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || {
                thread::sleep(Duration::from_millis(100));
                done_tx.send(()).unwrap();
            }))
            .unwrap();
        }
        assert_eq!(pool.shutdown(LIMIT), 0);
        assert_eq!(
            done.try_iter().count(),
            2,
            "both jobs finished before shutdown returned"
        );
    }

    #[test]
    fn shutdown_reports_jobs_still_running_when_the_grace_ends() {
        let pool = pool(2);
        let (release_tx, release) = mpsc::channel::<()>();
        pool.execute(Box::new(move || {
            let _ = release.recv_timeout(LIMIT);
        }))
        .unwrap();
        wait_busy(&pool, 1);
        assert_eq!(pool.shutdown(Duration::from_millis(50)), 1);
        drop(release_tx);
    }
}

//! The pacing schedule: how big each chunk is and when it leaves.
//!
//! Chunk `k` is due at `start + k × delay`, counted from the start of the connection rather than
//! from the end of the previous write, so time spent writing never accumulates: 40 chunks at
//! 50 ms take 1.95 s however long each write took, and a write that ran late is followed by the
//! next chunk on time.
//!
//! With `--jitter`, each deadline after the first moves by a random amount within ± the
//! jitter, drawn afresh for each chunk around its own nominal deadline, so the pauses vary but
//! the poem still ends when it should: the error does not add up. With `--num-bytes-max`, each
//! chunk's size is drawn between `--num-bytes` and it, as toxiproxy's slicer does.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Chunk size and the delay between chunks. A zero delay means no pacing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    chunk: NonZeroUsize,
    delay: Duration,
    /// How far each deadline may move either way.
    jitter: Duration,
    /// The largest chunk, when chunk sizes vary; never below `chunk`.
    chunk_max: NonZeroUsize,
}

/// How many bytes one step hands the kernel when the poem is not paced: as much as one send
/// moves (see [`crate::poem::LARGE`]).
const UNPACED_BLOCK: usize = crate::poem::LARGE;

impl Pacing {
    /// A schedule of `chunk`-byte chunks, `delay` apart.
    pub fn new(chunk: NonZeroUsize, delay: Duration) -> Pacing {
        Pacing {
            chunk,
            delay,
            jitter: Duration::ZERO,
            chunk_max: chunk,
        }
    }

    /// The same schedule, each deadline moved by up to `jitter` either way, and chunk sizes
    /// drawn up to `chunk_max` (no smaller than the chunk size).
    pub fn varied(self, jitter: Duration, chunk_max: NonZeroUsize) -> Pacing {
        Pacing {
            jitter,
            chunk_max: chunk_max.max(self.chunk),
            ..self
        }
    }

    /// Whether deadlines or chunk sizes are drawn at random.
    pub fn varies(&self) -> bool {
        self.is_paced() && (!self.jitter.is_zero() || self.chunk_max > self.chunk)
    }

    /// The most bytes one step may carry.
    pub fn max_step(&self) -> usize {
        if self.is_paced() {
            self.chunk_max.get()
        } else {
            UNPACED_BLOCK
        }
    }

    /// Bytes per chunk, as given by `--num-bytes`.
    pub fn chunk(&self) -> NonZeroUsize {
        self.chunk
    }

    /// The pause between chunks, as given by `--delay`.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How far each deadline may move either way, as given by `--jitter`.
    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    /// The largest chunk, as given by `--num-bytes-max` (the chunk size when not given).
    pub fn chunk_max(&self) -> NonZeroUsize {
        self.chunk_max
    }

    /// Whether chunks are spaced out at all; with `--delay 0` they are not.
    pub fn is_paced(&self) -> bool {
        !self.delay.is_zero()
    }

    /// When step `k` (counting from 0) is due, for a connection that started at `start`.
    pub fn due(&self, start: Instant, k: u64) -> Instant {
        // `delay` is at most a year (see config), so even u32::MAX steps stay far inside
        // what Instant can hold.
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        start + self.delay.saturating_mul(k)
    }
}

/// One connection's way through the schedule: when each step is due, and how big it is.
pub struct Schedule {
    pacing: Pacing,
    start: Instant,
    step: u64,
    last_due: Instant,
    /// Draws the jitter and the chunk sizes; `None` when nothing varies.
    rng: Option<fastrand::Rng>,
}

impl Schedule {
    /// The schedule of a connection that started at `start`; `rng` draws what varies.
    pub fn new(pacing: Pacing, start: Instant, rng: Option<fastrand::Rng>) -> Schedule {
        Schedule {
            pacing,
            start,
            step: 0,
            last_due: start,
            rng: rng.filter(|_| pacing.varies()),
        }
    }

    /// When the next step is due and how many bytes it carries (at most).
    pub fn next_step(&mut self) -> (Instant, usize) {
        let k = self.step;
        self.step += 1;
        let pacing = self.pacing;
        if !pacing.is_paced() {
            return (self.start, UNPACED_BLOCK);
        }
        let nominal = pacing.due(self.start, k);
        let Some(rng) = self.rng.as_mut() else {
            return (nominal, pacing.chunk.get());
        };
        let size = rng.usize(pacing.chunk.get()..=pacing.chunk_max.get());
        // The first chunk leaves at once; later ones move around their own deadline, never
        // before the previous one.
        let jitter = pacing.jitter.as_nanos() as u64;
        let due = if k == 0 || jitter == 0 {
            nominal
        } else {
            let shift = Duration::from_nanos(rng.u64(0..=2 * jitter));
            let moved = (nominal + shift)
                .checked_sub(pacing.jitter)
                .unwrap_or(nominal);
            moved.max(self.start)
        };
        let due = due.max(self.last_due);
        self.last_due = due;
        (due, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(chunk: usize, delay_ms: u64) -> Pacing {
        Pacing::new(
            NonZeroUsize::new(chunk).unwrap(),
            Duration::from_millis(delay_ms),
        )
    }

    /// Chunk 0 is due the moment the connection starts.
    #[test]
    fn the_first_chunk_leaves_at_once() {
        let start = Instant::now();
        assert_eq!(pacing(10, 700).due(start, 0), start);
    }

    /// Chunk k is due k delays after the start: 40 chunks at 50 ms end at 1.95 s.
    #[test]
    fn chunk_k_is_due_k_delays_after_the_start() {
        let start = Instant::now();
        let p = pacing(10, 50);
        for k in 0..40 {
            assert_eq!(p.due(start, k), start + Duration::from_millis(50 * k));
        }
        // 40 chunks: the last leaves at 39 × 50 ms, and the connection closes right after.
        assert_eq!(p.due(start, 39) - start, Duration::from_millis(1950));
    }

    /// With no delay the poem goes out in large steps, whatever the chunk size.
    #[test]
    fn zero_delay_means_large_unpaced_steps() {
        let p = pacing(10, 0);
        assert!(!p.is_paced());
        assert_eq!(p.max_step(), UNPACED_BLOCK);
        assert!(pacing(10, 1).is_paced());
        assert_eq!(pacing(10, 1).max_step(), 10);
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    fn varied(jitter_ms: u64, max: usize) -> Pacing {
        Pacing::new(NonZeroUsize::new(10).unwrap(), Duration::from_millis(100)).varied(
            Duration::from_millis(jitter_ms),
            NonZeroUsize::new(max).unwrap(),
        )
    }

    /// Jittered deadlines stay within the jitter of their own nominal deadline, never go
    /// backwards, and do not drift: the hundredth is as close to its time as the first.
    #[test]
    fn jitter_moves_each_deadline_around_its_own_time() {
        let start = Instant::now();
        let mut schedule = Schedule::new(varied(30, 10), start, Some(fastrand::Rng::with_seed(3)));
        let mut previous = start;
        let mut moved = 0;
        for k in 0..100u32 {
            let (due, size) = schedule.next_step();
            assert_eq!(size, 10);
            let nominal = start + Duration::from_millis(100) * k;
            let off = if due > nominal {
                due - nominal
            } else {
                nominal - due
            };
            assert!(off <= Duration::from_millis(30), "chunk {k} off by {off:?}");
            assert!(due >= previous, "chunk {k} before the one before it");
            if off > Duration::from_millis(1) {
                moved += 1;
            }
            previous = due;
        }
        assert!(moved > 50, "only {moved} of 100 deadlines moved");
    }

    /// Chunk sizes are drawn within their bounds, and the same seed draws the same ones.
    #[test]
    fn chunk_sizes_vary_within_bounds_and_repeat_with_a_seed() {
        let sizes = |seed| -> Vec<usize> {
            let mut s = Schedule::new(
                varied(0, 40),
                Instant::now(),
                Some(fastrand::Rng::with_seed(seed)),
            );
            (0..50).map(|_| s.next_step().1).collect()
        };
        let first = sizes(9);
        assert!(first.iter().all(|n| (10..=40).contains(n)), "{first:?}");
        assert!(first.iter().any(|&n| n != first[0]), "{first:?}");
        assert_eq!(first, sizes(9));
        assert_ne!(first, sizes(10));
    }

    /// Without jitter or varying sizes the schedule is the plain one, with no generator.
    #[test]
    fn a_plain_schedule_draws_nothing() {
        let plain = Pacing::new(NonZeroUsize::new(10).unwrap(), Duration::from_millis(100));
        assert!(!plain.varies());
        let start = Instant::now();
        let mut s = Schedule::new(plain, start, Some(fastrand::Rng::with_seed(1)));
        assert!(s.rng.is_none());
        assert_eq!(s.next_step(), (start, 10));
        assert_eq!(s.next_step(), (start + Duration::from_millis(100), 10));
    }
}

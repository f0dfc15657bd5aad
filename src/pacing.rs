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
    /// Bytes per chunk (`--num-bytes`).
    pub chunk: NonZeroUsize,
    /// The pause between chunks (`--delay`); zero for none.
    pub delay: Duration,
    /// How far each deadline may move either way (`--jitter`); at most half the delay.
    pub jitter: Duration,
    /// The largest chunk, when chunk sizes vary (`--num-bytes-max`); never below `chunk`.
    pub chunk_max: NonZeroUsize,
}

/// How many bytes one step hands the kernel when the poem is not paced: as much as one send
/// moves.
const UNPACED_BLOCK: usize = crate::poem::LARGE;

impl Pacing {
    /// A schedule of `chunk`-byte chunks, `delay` apart, neither varied.
    pub fn new(chunk: NonZeroUsize, delay: Duration) -> Pacing {
        Pacing { chunk, delay, jitter: Duration::ZERO, chunk_max: chunk }
    }

    /// Whether deadlines or chunk sizes are drawn at random.
    pub fn varies(&self) -> bool {
        self.is_paced() && (!self.jitter.is_zero() || self.chunk_max > self.chunk)
    }

    /// The most bytes one step may carry.
    pub fn max_step(&self) -> usize {
        match self.is_paced() {
            true => self.chunk_max.get(),
            false => UNPACED_BLOCK,
        }
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
        Schedule { pacing, start, step: 0, last_due: start, rng: rng.filter(|_| pacing.varies()) }
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
            let moved = (nominal + shift).checked_sub(pacing.jitter).unwrap_or(nominal);
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
        Pacing::new(NonZeroUsize::new(chunk).unwrap(), Duration::from_millis(delay_ms))
    }

    fn varied(jitter_ms: u64, max: usize) -> Pacing {
        Pacing {
            jitter: Duration::from_millis(jitter_ms),
            chunk_max: NonZeroUsize::new(max).unwrap(),
            ..pacing(10, 100)
        }
    }

    /// Chunk k is due k delays after the start, the first at once: 40 chunks at 50 ms end at
    /// 1.95 s. With no delay the poem goes out in large steps, whatever the chunk size.
    #[test]
    fn chunk_k_is_due_k_delays_after_the_start() {
        let start = Instant::now();
        let p = pacing(10, 50);
        for k in 0..40 {
            assert_eq!(p.due(start, k), start + Duration::from_millis(50 * k));
        }
        assert_eq!(p.due(start, 39) - start, Duration::from_millis(1950));
        assert_eq!(pacing(10, 0).max_step(), UNPACED_BLOCK);
        assert_eq!(pacing(10, 1).max_step(), 10);
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
            let off = if due > nominal { due - nominal } else { nominal - due };
            assert!(off <= Duration::from_millis(30), "chunk {k} off by {off:?}");
            assert!(due >= previous, "chunk {k} before the one before it");
            if off > Duration::from_millis(1) {
                moved += 1;
            }
            previous = due;
        }
        assert!(moved > 50, "only {moved} of 100 deadlines moved");
    }

    /// Without jitter or varying sizes the schedule is the plain one, with no generator.
    #[test]
    fn a_plain_schedule_draws_nothing() {
        let plain = pacing(10, 100);
        assert!(!plain.varies());
        let start = Instant::now();
        let mut s = Schedule::new(plain, start, Some(fastrand::Rng::with_seed(1)));
        assert!(s.rng.is_none());
        assert_eq!(s.next_step(), (start, 10));
        assert_eq!(s.next_step(), (start + Duration::from_millis(100), 10));
    }
}

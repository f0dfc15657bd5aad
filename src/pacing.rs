//! The pacing schedule: how big each chunk is and when it leaves.
//!
//! Chunk `k` is due at `start + k × delay`, counted from the start of the connection rather than
//! from the end of the previous write, so time spent writing never accumulates: 40 chunks at
//! 50 ms take 1.95 s however long each write took, and a write that ran late is followed by the
//! next chunk on time.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Chunk size and the delay between chunks. A zero delay means no pacing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    chunk: NonZeroUsize,
    delay: Duration,
}

/// How many bytes one step hands the kernel when the poem is not paced: as much as one send
/// moves (see [`crate::poem::LARGE`]).
const UNPACED_BLOCK: usize = crate::poem::LARGE;

impl Pacing {
    /// A schedule of `chunk`-byte chunks, `delay` apart.
    pub fn new(chunk: NonZeroUsize, delay: Duration) -> Pacing {
        Pacing { chunk, delay }
    }

    /// Bytes per chunk, as given by `--num-bytes`.
    pub fn chunk(&self) -> NonZeroUsize {
        self.chunk
    }

    /// The pause between chunks, as given by `--delay`.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Whether chunks are spaced out at all; with `--delay 0` they are not.
    pub fn is_paced(&self) -> bool {
        !self.delay.is_zero()
    }

    /// How many bytes to send at each step: one chunk when paced, else a large block.
    pub fn step(&self) -> usize {
        if self.is_paced() {
            self.chunk.get()
        } else {
            UNPACED_BLOCK
        }
    }

    /// When step `k` (counting from 0) is due, for a connection that started at `start`.
    pub fn due(&self, start: Instant, k: u64) -> Instant {
        // `delay` is at most a year (see config), so even u32::MAX steps stay far inside
        // what Instant can hold.
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        start + self.delay.saturating_mul(k)
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
        assert_eq!(p.step(), UNPACED_BLOCK);
        assert!(pacing(10, 1).is_paced());
        assert_eq!(pacing(10, 1).step(), 10);
    }
}

//! What happens to each connection, as it happens, for whoever watches: the hook that the
//! status page's timeline and the `--trace` file hang on (see [`crate::ops`]).
//!
//! A watcher is called on the thread where the event happens (the worker that accepts and
//! serves the connection), so it must return at once: it records what it needs and leaves any
//! slow work (a file, a page) to a thread of its own. With no watcher, nothing here runs,
//! not even a clock read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

/// One moment of a connection's life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// Taken from the listen backlog by a free worker, after waiting there `waited` (held by
    /// `--accept-delay`, or waiting for a free worker).
    Accepted { peer: SocketAddr, waited: Duration },
    /// Taken by a worker, which serves it from now on.
    Taken { worker: usize },
    /// A chunk of `bytes` handed to the kernel, `late` after its deadline.
    Chunk { bytes: usize, late: Duration },
    /// The end, with the poem bytes handed to the kernel in all.
    Ended { outcome: Outcome, bytes: u64 },
}

/// Something that watches every connection. `id` is the connection's number in accept order,
/// from 0 (as in [`crate::View::id`]); `at` is when the event happened.
pub trait Watch: std::fmt::Debug + Send + Sync {
    fn event(&self, id: u64, at: Instant, event: Event);
}

/// Tells every watcher in `watchers` of `event`, which happened `at` (a time the caller has
/// read already, for its own counts).
pub(crate) fn tell(watchers: &[std::sync::Arc<dyn Watch>], id: u64, at: Instant, event: Event) {
    for watcher in watchers {
        // A watcher that panics loses its event, not the connection's count or its worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            watcher.event(id, at, event);
        }));
    }
}

//! Where each worker publishes what it is doing, for the status page: one [`Slot`] per worker
//! on a [`Board`], written by its worker alone and read by the page.
//!
//! The chunk path takes no lock: a chunk stores the bytes and chunks sent so far into two
//! atomics of the worker's own slot (each slot on cache lines of its own, so that workers
//! never contend for one). Who the client is and which poem it gets change once per
//! connection, under the slot's own mutex, which the page also takes to read them; so a row
//! never pairs one connection's client with another's progress.
//!
//! A worker learns its slot's number once, when the pool starts it ([`claim`]); a connection
//! served on any other thread (none is, but tests may) publishes nothing.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::poem::Poem;

thread_local! {
    /// The number of the worker running on this thread, if it is one.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the calling thread as worker `id`: the connections it serves show in slot `id`.
pub fn claim(id: usize) {
    WORKER.with(|worker| worker.set(Some(id)));
}

/// One slot per worker.
#[derive(Debug)]
pub struct Board {
    slots: Box<[Slot]>,
}

/// What one worker is doing. Aligned so that no two slots share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Slot {
    /// The connection being served, if any; set at its start and cleared at its end.
    client: Mutex<Option<Client>>,
    /// Poem bytes sent and chunks finished so far, on the connection shown.
    bytes: AtomicU64,
    chunks: AtomicU64,
}

/// Who a worker serves and what: set once or twice per connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client: the socket's peer, or the one a PROXY header names.
    pub peer: SocketAddr,
    /// The balancer it came through, behind `--proxy-protocol`.
    pub via: Option<SocketAddr>,
    /// The poem, once picked, and its size then.
    pub poem: Option<(Arc<Poem>, u64)>,
    /// When the worker took the connection; the poem's schedule counts from here.
    pub start: Instant,
}

/// One row of the board, read at one moment.
#[derive(Debug, Clone)]
pub struct Row {
    /// The worker's number (`worker-N` in the log).
    pub worker: usize,
    pub client: Client,
    pub bytes: u64,
    pub chunks: u64,
}

impl Board {
    /// A board of `workers` empty slots.
    pub fn new(workers: usize) -> Board {
        Board {
            slots: (0..workers).map(|_| Slot::default()).collect(),
        }
    }

    /// Shows a connection from `peer`, started at `start`, in the calling worker's slot until
    /// the returned handle drops. Off a worker thread, the handle shows nothing.
    pub fn show(&self, peer: SocketAddr, start: Instant) -> Shown<'_> {
        let slot = WORKER
            .with(Cell::get)
            .and_then(|worker| self.slots.get(worker));
        if let Some(slot) = slot {
            // Under the lock, so that a reader never sees the new client with the old counts.
            let mut client = lock(&slot.client);
            slot.bytes.store(0, Relaxed);
            slot.chunks.store(0, Relaxed);
            *client = Some(Client {
                peer,
                via: None,
                poem: None,
                start,
            });
        }
        Shown { slot }
    }

    /// Every busy slot, in worker order.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (worker, slot) in self.slots.iter().enumerate() {
            // The counts are read under the lock, so they belong to the client read with them.
            let client = lock(&slot.client);
            if let Some(client) = client.as_ref() {
                rows.push(Row {
                    worker,
                    client: client.clone(),
                    bytes: slot.bytes.load(Relaxed),
                    chunks: slot.chunks.load(Relaxed),
                });
            }
        }
        rows
    }
}

/// A connection shown in its worker's slot; dropping it empties the slot.
#[derive(Debug)]
pub struct Shown<'a> {
    slot: Option<&'a Slot>,
}

impl Shown<'_> {
    /// Names the client, the balancer it came through and the poem it gets, with the poem's
    /// size: once per connection, when they are known.
    pub fn serving(
        &self,
        peer: SocketAddr,
        via: Option<SocketAddr>,
        poem: Option<Arc<Poem>>,
        size: u64,
    ) {
        if let Some(slot) = self.slot
            && let Some(client) = lock(&slot.client).as_mut()
        {
            client.peer = peer;
            client.via = via;
            client.poem = poem.map(|poem| (poem, size));
        }
    }

    /// Publishes the bytes and chunks sent so far: two stores, no lock, once per chunk.
    pub fn sent(&self, bytes: u64, chunks: u64) {
        if let Some(slot) = self.slot {
            slot.bytes.store(bytes, Relaxed);
            slot.chunks.store(chunks, Relaxed);
        }
    }
}

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            *lock(&slot.client) = None;
        }
    }
}

/// Nothing panics while a slot's lock is held; if something did, the slot would still be whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's connection shows in its own slot while served, with what it published, and
    /// leaves it empty once it ends; a thread that is no worker shows nothing.
    #[test]
    fn a_worker_shows_its_connection_while_it_lasts() {
        let board = Board::new(4);
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let shown = board.show(peer, Instant::now());
                assert!(board.rows().is_empty(), "not a worker: nothing shown");
                shown.sent(5, 1);
            });
            scope.spawn(|| {
                claim(2);
                let shown = board.show(peer, Instant::now());
                shown.sent(30, 3);
                let rows = board.rows();
                assert_eq!(rows.len(), 1);
                assert_eq!((rows[0].worker, rows[0].bytes, rows[0].chunks), (2, 30, 3));
                assert_eq!(rows[0].client.peer, peer);
                drop(shown);
                assert!(board.rows().is_empty(), "the slot is emptied at the end");
                // The next connection starts from nothing.
                let _next = board.show(peer, Instant::now());
                assert_eq!(board.rows()[0].bytes, 0);
            });
        });
    }
}

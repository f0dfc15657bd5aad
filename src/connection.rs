//! One connection: the paced writer that streams the poem to a client, and the careful close
//! that makes sure the client keeps every byte.
//!
//! Whatever the client does (hang up, stall, send junk) ends only its own connection: every
//! failure here becomes an [`Outcome`] that is counted and logged, never an error that reaches
//! the worker or the server.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::collection::Collection;
use crate::outcome::Outcome;
use crate::pacing::Pacing;
use crate::poem::Poem;
use crate::stats::Stats;

/// After the last byte, how long to wait for the client to close its side, discarding whatever
/// it sends. Closing a socket with unread input makes the kernel send a reset, which can destroy
/// the end of the poem before the client reads it; waiting for the client's EOF avoids that,
/// and this bound keeps a client that never stops talking from holding the worker.
pub const LINGER: Duration = Duration::from_secs(2);

/// What every connection needs, shared by all workers.
pub struct Shared {
    /// The poems; each client gets one.
    pub poems: Collection,
    /// Chunk size and delay.
    pub pacing: Pacing,
    /// How long a write may make no progress before the client is dropped.
    pub write_timeout: Duration,
    /// Server-wide totals.
    pub stats: Stats,
}

/// How far a connection got.
#[derive(Debug, Default)]
struct Progress {
    bytes: u64,
    chunks: u64,
}

/// Streams the poem to one client, closes the connection, counts and logs how it went.
pub fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let start = Instant::now();
    let poem = shared.poems.pick();
    let mut progress = Progress::default();
    let outcome = stream_poem(&stream, &poem, shared, start, &mut progress);
    // After the whole poem, shut the write side so the client sees EOF right after the last
    // byte; if that fails, the client is already gone.
    let lingering = outcome.is_complete() && stream.shutdown(Shutdown::Write).is_ok();
    // Log before lingering: by the time the line is written the client has often closed its
    // side already, and the wait below returns at once.
    shared.stats.ended(&outcome);
    let error = match &outcome {
        Outcome::Failed(err) => Some(tracing::field::display(err)),
        _ => None,
    };
    info!(
        %peer,
        poem = %poem.path().display(),
        bytes = progress.bytes,
        chunks = progress.chunks,
        duration_ms = start.elapsed().as_millis() as u64,
        outcome = outcome.label(),
        error,
        "connection ended"
    );
    if lingering {
        drain_until_closed(&stream);
    }
    // Otherwise the stream is simply dropped: the client is gone or stalled, and a reset is
    // the right answer to it.
}

/// Sends the poem on the pacing schedule, as it was when the connection began (a file that is
/// truncated meanwhile ends the poem early).
fn stream_poem(
    stream: &TcpStream,
    poem: &Poem,
    shared: &Shared,
    start: Instant,
    progress: &mut Progress,
) -> Outcome {
    let len = match prepare(stream, poem, shared) {
        Ok(len) => len,
        Err(err) => return Outcome::from_error(err),
    };
    let step = shared.pacing.step() as u64;
    let mut offset = 0;
    while offset < len {
        if shared.pacing.is_paced() {
            sleep_until(shared.pacing.due(start, progress.chunks));
        }
        let end = len.min(offset + step);
        while offset < end {
            // `end - offset` is at most one step, which is a usize.
            let want = (end - offset) as usize;
            match poem.send(stream, &mut offset, want) {
                Ok(0) => {
                    debug!(
                        offset,
                        expected = len,
                        "poem file ended early: truncated while served?"
                    );
                    return Outcome::Complete;
                }
                Ok(sent) => {
                    progress.bytes += sent as u64;
                    shared.stats.sent(sent);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Outcome::from_error(err),
            }
        }
        progress.chunks += 1;
    }
    Outcome::Complete
}

/// Sets the socket up for streaming and returns how many bytes the poem has now.
fn prepare(stream: &TcpStream, poem: &Poem, shared: &Shared) -> io::Result<u64> {
    stream.set_write_timeout(Some(shared.write_timeout))?;
    // Nagle's algorithm would hold a small chunk back until the previous one is acknowledged;
    // a paced chunk must leave when it is due, as its own segment. (It is on by default, and
    // unpaced writes are large, so then it is left alone.)
    if shared.pacing.is_paced() {
        stream.set_nodelay(true)?;
    }
    poem.size()
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

/// Reads and throws away whatever the client sends (a netcat user typing, say) until it closes
/// its side or [`LINGER`] runs out, so that the socket is closed with no unread input and the
/// kernel has no reason to reset the connection under the end of the poem.
fn drain_until_closed(stream: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    // Small on purpose: it is on every worker's stack, and every stack page a worker touches
    // is resident memory times the number of workers (CHANGELOG, Performance).
    let mut discard = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut discard) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

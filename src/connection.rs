//! One connection: the paced writer that streams the poem to a client, and the careful close
//! that makes sure the client keeps every byte.
//!
//! Whatever the client does (hang up, stall, send junk) ends only its own connection: every
//! failure here becomes an [`Outcome`] that is counted and logged, never an error that reaches
//! the worker or the server.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tracing::{debug, info};

use crate::close;
use crate::faults::{Chance, Fault};
use crate::limit::{Admission, OverLimit};
use crate::outcome::Outcome;
use crate::pacing::Schedule;
use crate::poem::{Buffer, Poem};
use crate::progress::Shown;
use crate::proxy;
use crate::shared::Shared;

/// What the connection's log line tells.
struct Record {
    /// The client: the socket's peer, or the one a PROXY header names.
    peer: SocketAddr,
    /// The balancer the connection came through, with `--proxy-protocol`.
    via: Option<SocketAddr>,
    /// Whether a fault stopped the poem before its end.
    stopped_by_fault: bool,
    poem: Option<Arc<Poem>>,
    start: Instant,
    bytes: u64,
    chunks: u64,
}

/// Streams the poem to one client, connection number `id` in accept order, closes the
/// connection, counts and logs how it went.
///
/// `admission` is the connection's place under the per-source limit, taken by the accept loop;
/// with `--proxy-protocol` the client is known only once its header is read, so it is `None`
/// and the place is taken here.
pub fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    admission: Option<Admission>,
    chance: Chance,
    shared: &Shared,
) {
    // Declared after `stream`, so dropped before it: the socket is closed untracked.
    let _tracked = shared.shutdown.track(&stream);
    let mut record = Record::starting(peer);
    let shown = shared.board.show(peer, record.start);
    let admission = if shared.config.proxy_protocol {
        record.via = Some(peer);
        record.peer = match proxy::read_header(&stream, peer) {
            Ok(client) => client,
            Err(reason) => return record.end(Outcome::BadHeader(reason), shared),
        };
        match shared.limit.admit(record.peer.ip()) {
            Ok(admission) => admission,
            Err(OverLimit) => return reject(record.peer, shared),
        }
    } else {
        admission
    };
    let poem = shared.poems.pick(id);
    record.poem = Some(Arc::clone(&poem));
    let mut schedule = Schedule::new(shared.config.pacing, record.start, chance.rng);
    let limit = chance.fault.map(Fault::byte_limit);
    let mut outcome = stream_poem(
        &stream,
        &poem,
        shared,
        &mut record,
        &shown,
        &mut schedule,
        limit,
    );
    if !outcome.is_complete() && shared.shutdown.is_cut_off() {
        outcome = Outcome::CutOff; // whatever error the cut caused, the cut is why it ended
    }
    if let Some(fault) = chance.fault
        && outcome.is_complete()
        && record.stopped_by_fault
    {
        outcome = fault.play(&stream, shared.config.write_timeout);
    }
    // After the whole poem, shut the write side so the client sees EOF right after the last
    // byte; if that fails, the client is already gone. Whether anything is still in flight is
    // asked first: the FIN the shutdown queues would count as unacknowledged.
    let closes_cleanly = matches!(outcome, Outcome::Complete | Outcome::CutShort);
    let delivered = closes_cleanly && close::nothing_in_flight(&stream);
    // The source's place is given back before the client can see the end, so that a client
    // that reconnects as soon as it reads EOF is never refused for the connection it just
    // finished.
    drop(admission);
    let lingering = closes_cleanly && stream.shutdown(Shutdown::Write).is_ok();
    // Linger unless nothing is in flight, lest a reset destroy what the client has not yet
    // received; and say so if it still might.
    if lingering && !delivered && !close::close_without_loss(&stream) {
        outcome = Outcome::UncleanClose;
    }
    record.end(outcome, shared);
    // The stream is dropped here: if the client is gone or stalled, a reset is the right
    // answer to it (and after a reset fault, the zero linger sends one).
}

/// Plays `fault` on a connection the accept loop holds, before it takes a worker (the
/// `--refuse` fault), and counts and logs it.
pub fn play_at_accept(stream: TcpStream, peer: SocketAddr, fault: Fault, shared: &Shared) {
    let outcome = fault.play(&stream, shared.config.write_timeout);
    drop(stream);
    Record::starting(peer).end(outcome, shared);
}

/// Counts and logs a connection that was accepted but closed unserved, because shutdown began
/// while it waited for a worker.
pub fn closed_at_shutdown(peer: SocketAddr, shared: &Shared) {
    Record::starting(peer).end(Outcome::CutOff, shared);
}

/// Counts and logs a connection from `peer` turned away by the per-source limit. The caller
/// closes it, unserved.
pub fn reject(peer: SocketAddr, shared: &Shared) {
    shared.stats.ended(&Outcome::Rejected);
    shared.limit.rejected(peer.ip());
}

impl Record {
    /// The record of a connection from `peer` starting now.
    fn starting(peer: SocketAddr) -> Record {
        Record {
            peer,
            via: None,
            stopped_by_fault: false,
            poem: None,
            start: Instant::now(),
            bytes: 0,
            chunks: 0,
        }
    }

    /// Counts the connection's `outcome` and writes its one log line.
    fn end(&self, outcome: Outcome, shared: &Shared) {
        shared.stats.ended(&outcome);
        shared.stats.took(self.start.elapsed());
        let error = match &outcome {
            Outcome::Failed(err) => Some(err.to_string()),
            Outcome::BadHeader(reason) => Some(reason.clone()),
            _ => None,
        };
        info!(
            peer = %self.peer,
            via = self.via.map(tracing::field::display),
            poem = self.poem.as_ref().map(|p| tracing::field::display(p.path().display())),
            bytes = self.bytes,
            chunks = self.chunks,
            duration_ms = self.start.elapsed().as_millis() as u64,
            outcome = outcome.label(),
            error,
            "connection ended"
        );
    }
}

/// Sends the poem on the pacing schedule, as it was when the connection began (a file that is
/// truncated meanwhile ends the poem early).
/// `limit`, set by a fault, stops the poem after that many bytes.
fn stream_poem(
    stream: &TcpStream,
    poem: &Poem,
    shared: &Shared,
    record: &mut Record,
    shown: &Shown,
    schedule: &mut Schedule,
    limit: Option<u64>,
) -> Outcome {
    let mut len = match prepare(stream, poem, shared) {
        Ok(len) => len,
        Err(err) => return Outcome::from_error(err),
    };
    shown.serving(record.peer, record.via, record.poem.clone(), len);
    let paced = shared.config.pacing.is_paced();
    if let Some(limit) = limit.filter(|&limit| limit < len) {
        len = limit;
        record.stopped_by_fault = true;
    }
    let mut buffer = Buffer::for_steps(shared.config.pacing.max_step(), len);
    let mut offset = 0;
    while offset < len {
        // Unpaced, every step is due at once; either way, the cut ends the poem here.
        let (due, step) = schedule.next_step();
        if !shared.shutdown.sleep_until(due) {
            return Outcome::CutOff;
        }
        let end = len.min(offset + step as u64);
        while offset < end {
            // `end - offset` is at most one step, which is a usize.
            let want = (end - offset) as usize;
            match poem.send(stream, &mut offset, want, &mut buffer) {
                Ok(0) => {
                    debug!(
                        offset,
                        expected = len,
                        "poem file ended early: truncated while served?"
                    );
                    return Outcome::Complete;
                }
                Ok(sent) => {
                    record.bytes += sent as u64;
                    shared.stats.sent(sent);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Outcome::from_error(err),
            }
        }
        record.chunks += 1;
        if paced {
            shared
                .stats
                .late(Instant::now().saturating_duration_since(due));
        }
        shown.sent(record.bytes, record.chunks);
    }
    Outcome::Complete
}

/// Sets the socket up for streaming and returns how many bytes the poem has now.
fn prepare(stream: &TcpStream, poem: &Poem, shared: &Shared) -> io::Result<u64> {
    // Linux gives every accepted socket the options of its listener, where they were set once
    // (see `set_options`); elsewhere each connection sets them itself.
    #[cfg(not(target_os = "linux"))]
    set_options(
        SockRef::from(stream),
        shared.config.write_timeout,
        shared.config.pacing.is_paced(),
    )?;
    #[cfg(target_os = "linux")]
    let _ = (stream, shared);
    poem.size()
}

/// Sets the socket options every connection streams with: on a listening socket, whose
/// accepted sockets inherit them on Linux (a system call or three fewer per connection), or
/// on one connection.
pub fn set_options(socket: SockRef<'_>, write_timeout: Duration, paced: bool) -> io::Result<()> {
    socket.set_write_timeout(Some(write_timeout))?;
    // A client that vanishes without a reset (cable pulled, NAT entry dropped) leaves paced
    // chunks unacknowledged while they still fit the socket buffer, so the write timeout
    // never fires; this makes the kernel give up on it after the same time, instead of after
    // TCP's own retransmissions (about 15 minutes).
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(write_timeout))?;
    // Nagle's algorithm would hold a small chunk back until the previous one is acknowledged;
    // a paced chunk must leave when it is due, as its own segment. (It is on by default, and
    // unpaced writes are large, so then it is left alone.)
    if paced {
        socket.set_tcp_nodelay(true)?;
    }
    Ok(())
}

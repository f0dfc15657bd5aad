//! Closing a connection without loss, and the socket waits the faults share with it.
//!
//! Closing a socket that still holds unread input makes the kernel send a reset instead of a
//! FIN, and a reset discards whatever the client has not yet received: the end of the poem.
//! So after the last byte the write side is shut, what the client sends is read and thrown
//! away until it closes its side, and only then is the socket closed.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::sys;

/// Whether the client's kernel has acknowledged every byte sent and the client has sent
/// nothing unread: then the write side can be shut and the socket closed at once, with no
/// reset to destroy anything. A line the client sends after that draws a reset that comes
/// after the poem and its FIN; a client whose system throws away unread data on a reset
/// (Windows) and that has not yet read the end could still lose it, a case the linger would
/// only narrow, at a wake-up per connection.
pub fn nothing_in_flight(stream: &TcpStream) -> bool {
    sys::unacknowledged(stream) == Some(0) && sys::unread(stream) == Some(0)
}

/// The careful close, after the write side is shut: reads and throws away what the client
/// sends (a netcat user typing, say) until it closes its side or `linger` runs out, so that
/// the socket is closed with no unread input and the kernel has no reason to reset the
/// connection under the end of the poem. The bound keeps a client that never stops talking
/// from holding the worker.
///
/// Returns false if closing now may still cost the client bytes: it neither closed nor went
/// away within `linger`, and it has sent what was not read or not acknowledged all that was
/// sent (a client that keeps talking while it reads slowly).
pub fn close_without_loss(stream: &TcpStream, linger: Duration) -> bool {
    if discard_until_closed(stream, linger) {
        return true;
    }
    // One unacknowledged unit is the FIN itself, which loses nothing.
    sys::unread(stream) == Some(0) && sys::unacknowledged(stream).is_some_and(|n| n <= 1)
}

/// Reads and throws away what the client sends until it closes its side, fails, or `limit`
/// passes. Returns false if `limit` passed first.
pub fn discard_until_closed(stream: &TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // Small, as it is on the worker's stack: what a client sends is thrown away anyway.
    let mut discard = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match (&*stream).read(&mut discard) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Waits, up to `limit` and while `go_on` says so, until the client has acknowledged every
/// byte sent.
pub fn wait_until_delivered(stream: &TcpStream, limit: Duration, go_on: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while sys::unacknowledged(stream).is_some_and(|n| n > 0) && Instant::now() < deadline {
        if !go_on() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Makes closing `stream` send a reset (a zero linger) instead of a FIN.
pub fn reset_on_close(stream: &TcpStream) {
    // If it fails the close is an ordinary one, which the client sees as an early end.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

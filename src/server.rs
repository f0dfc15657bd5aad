//! The listener and the accept loop.
//!
//! The main thread accepts connections and hands each one to the worker pool. When every
//! worker is busy and the pool's queue is full, it waits instead of accepting, so clients wait
//! in the kernel's listen backlog; the backlog is set large so that a burst of thousands of
//! connects is queued there rather than left to SYN retries.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use crate::connection::{self, Context};
use crate::pool::Pool;

/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). std's `TcpListener::bind` asks for 128.
pub const BACKLOG: i32 = 4096;

/// How long to pause after `accept` fails for lack of resources (out of file descriptors,
/// say), so the loop does not spin while connections finish and free some.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr` and starts listening with [`BACKLOG`].
///
/// `SO_REUSEADDR` is set so that a restarted server can bind while old connections linger in
/// TIME_WAIT; it does not let two servers listen on one port. `reuse_port` sets
/// `SO_REUSEPORT`, which does: every process that sets it may listen on the port, and the
/// kernel spreads new connections among them. An unspecified IPv6 address (`::`) accepts
/// IPv4 clients too.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<TcpListener> {
    let fail = || format!("cannot listen on {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(fail)?;
    socket.set_reuse_address(true).with_context(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).with_context(fail)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false).with_context(fail)?;
    }
    socket.bind(&addr.into()).with_context(fail)?;
    socket.listen(BACKLOG).with_context(fail)?;
    Ok(socket.into())
}

/// Accepts connections and queues them for the pool until the pool is closed.
pub fn accept_loop(listener: &TcpListener, pool: &Pool, ctx: &Arc<Context>) {
    loop {
        let accepted = listener.accept();
        if pool.is_closed() {
            // Whatever woke us (the signal thread's wake-up connection, or a client that
            // arrived just then) is closed unserved.
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                accept_failed(&err);
                continue;
            }
        };
        // An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d; log it as a.b.c.d.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        ctx.stats.accepted();
        debug!(%peer, busy = pool.busy(), "accepted");
        let ctx = Arc::clone(ctx);
        let job = Box::new(move || connection::serve(stream, peer, &ctx));
        if pool.execute(job).is_err() {
            return;
        }
    }
}

/// Logs a failed `accept` and, if the machine is short of resources, pauses before the next.
fn accept_failed(err: &io::Error) {
    match err.kind() {
        // The client gave up before we got to it: nothing to do.
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted => {
            debug!(error = %err, "accept: client left before it was accepted");
        }
        _ => {
            warn!(error = %err, "accept failed; pausing before the next");
            thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

//! systemd integration, switched on by the environment systemd sets, as systemd daemons do:
//! with `NOTIFY_SOCKET`, readiness and status notifications (`Type=notify`); with
//! `LISTEN_FDS`, listening sockets handed over by socket activation. Without them nothing
//! here does anything.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::outcome::Outcome;
use crate::server::Handle;

/// How often the STATUS line systemd shows is brought up to date.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The listening sockets systemd passed (`LISTEN_FDS`, for this process's `LISTEN_PID`), if
/// it passed any. Fails if one of them is not a TCP socket, or is bound but not listening.
pub fn inherited_listeners() -> anyhow::Result<Option<Vec<TcpListener>>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        let listener = fds
            .take_tcp_listener(index)
            .with_context(|| format!("socket {index} from systemd (LISTEN_FDS)"))?
            .with_context(|| format!("socket {index} from systemd is not a TCP listener"))?;
        // A socket bound but never listened on would be taken, and every accept on it would
        // fail, for ever: refuse it now. systemd's own sockets always listen.
        let listening = socket2::SockRef::from(&listener)
            .is_listener()
            .with_context(|| format!("socket {index} from systemd (LISTEN_FDS)"))?;
        if !listening {
            let bound = listener
                .local_addr()
                .map_or_else(|_| "an address".to_string(), |addr| addr.to_string());
            anyhow::bail!(
                "socket {index} from systemd (LISTEN_FDS) is bound to {bound} but not listening"
            );
        }
        listeners.push(listener);
    }
    Ok(Some(listeners))
}

/// Tells systemd the server is ready, and what it is doing.
pub fn ready(status: &str) {
    let status = status.to_owned();
    queue(move || notify(&[NotifyState::Ready, NotifyState::Status(&status)]));
}

/// Tells systemd a reload has begun; [`ready`] ends it.
pub fn reloading() {
    // The time the reload began, not the time the note is sent.
    let began = NotifyState::monotonic_usec_now();
    queue(move || match began {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    });
}

/// Tells systemd the server is stopping.
pub fn stopping() {
    queue(|| notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]));
}

/// Keeps systemd's STATUS line up to date with the current counts, when systemd listens.
pub fn keep_status(handle: Handle) -> anyhow::Result<()> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            loop {
                thread::sleep(STATUS_EVERY);
                if handle.is_stopping() {
                    return;
                }
                let status = status(&handle);
                queue(move || notify(&[NotifyState::Status(&status)]));
            }
        })
        .context("cannot start the status thread")?;
    Ok(())
}

/// What the server is doing, in a line for `systemctl status`.
pub fn status(handle: &Handle) -> String {
    let tally = handle.counters().tally();
    format!(
        "{} streaming, {} queued; {} accepted, {} complete, {} aborted",
        tally.busy,
        tally.queued,
        tally.accepted,
        tally.ended(Outcome::Complete),
        tally.aborted()
    )
}

/// A notification waiting to be sent.
type Note = Box<dyn FnOnce() + Send>;

/// The notifications' queue, when systemd listens.
static NOTES: OnceLock<Option<SyncSender<Note>>> = OnceLock::new();

/// Notifications are sent by a thread of their own, in order: `send` on the notify socket
/// blocks while its reader is behind, and a notification is worth losing where a stop that
/// waits for one is not. Those that find the queue full are dropped.
fn queue(note: impl FnOnce() + Send + 'static) {
    let notes = NOTES.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (notes, queued) = mpsc::sync_channel::<Note>(16);
        let sending = move || queued.into_iter().for_each(|note| note());
        thread::Builder::new().name("systemd".into()).spawn(sending).ok()?;
        Some(notes)
    });
    if let Some(notes) = notes
        && notes.try_send(Box::new(note)).is_err()
    {
        debug!("systemd reads no notification: one dropped");
    }
}

/// Waits, up to `limit`, until the notifications queued so far are sent: the process is about
/// to end, and STOPPING=1 with it.
pub fn flush(limit: Duration) {
    let (sent, sending) = mpsc::channel();
    queue(move || {
        let _ = sent.send(());
    });
    let _ = sending.recv_timeout(limit);
}

/// Whether a failed notification has been warned of already.
static NOTIFY_FAILED: AtomicBool = AtomicBool::new(false);

fn notify(states: &[NotifyState]) {
    // Nothing to do when systemd does not listen; a failure only loses a notification. The
    // first says so at warn level (NOTIFY_SOCKET is set, so someone expects to hear); the
    // same failure every 5 s after it would only fill the log.
    if let Err(err) = sd_notify::notify(states) {
        if NOTIFY_FAILED.swap(true, Ordering::Relaxed) {
            debug!(error = %err, "cannot notify systemd");
        } else {
            let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
            warn!(
                socket = %socket.to_string_lossy(),
                error = %err,
                "cannot notify systemd through NOTIFY_SOCKET; later failures are logged at debug level"
            );
        }
    }
}

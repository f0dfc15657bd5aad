//! The HTTP listener behind `--metrics`: hyper's HTTP/1 on a single-threaded tokio runtime in
//! a thread of its own, bounded against whatever a client sends.
//!
//! Anyone who can reach the port can talk to it (every Prometheus in a cluster), so nothing a
//! client does may cost more than a bounded share of this one thread, and nothing here touches
//! a poem's path:
//! - at most [`Limits::connections`] at once, more waiting in the kernel's listen backlog,
//!   and at most [`Limits::per_source`] from one source (an IPv4 address or an IPv6 /64), so
//!   that one client cannot take every place and starve the health checks;
//! - a request's head must arrive within [`Limits::request_timeout`] and fit in [`MAX_HEAD`]
//!   bytes;
//! - a connection answers one request and closes: kept alive, a client that asks again and
//!   again would hold its place for as long as it liked;
//! - a body is read only where [`Limits::max_body`] allows one, and only up to it, within the
//!   request timeout; a larger one is refused unread, so no length a client announces is ever
//!   allocated;
//! - a connection lives at most twice the request timeout, however it behaves, then is told to
//!   close;
//! - a failed accept (out of descriptors, say) pauses the loop for [`ACCEPT_BACKOFF`], then it
//!   carries on.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::limit::Limit;
use crate::listener;

/// What one client of the listener may hold, and which Host names it answers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; the rest wait to be accepted.
    pub connections: usize,
    /// Connections one source may hold at once; one more is closed as soon as it is accepted.
    /// Prometheus and a probe need one or two.
    pub per_source: NonZeroU32,
    /// How long a client has to send a request's head; a connection lives at most twice this
    /// (the time to send a head, and as long again to take the answer), so that a client that
    /// asks and never reads cannot hold a place for good.
    pub request_timeout: Duration,
    /// Answers that take work (every path but the quick ones) made at once; the rest wait.
    pub slow_at_once: usize,
    /// Host names, beside IP addresses and `localhost`, that a request may name (see
    /// [`host_allowed`]).
    pub hosts: Vec<String>,
    /// The largest body read; 0 answers only GET and HEAD, and reads no body at all.
    pub max_body: usize,
}

impl Limits {
    /// The descriptors a listener under these limits may hold: a place each, and its runtime's
    /// own.
    pub fn descriptors(&self) -> u64 {
        self.connections as u64 + 8
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 256,
            per_source: NonZeroU32::new(8).expect("8"),
            request_timeout: Duration::from_secs(10),
            slow_at_once: 2,
            hosts: Vec::new(),
            max_body: 0,
        }
    }
}

/// The largest request head (request line and headers) read; a larger one gets 431.
const MAX_HEAD: usize = 8 * 1024;

/// Once a connection has lived its time, how long an answer under way may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long to pause after `accept` fails for lack of resources.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One answer: status, content type and body. Cloning it shares the body.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Answer {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, content_type: "text/plain; charset=utf-8", body: Bytes::from(body.into()) }
    }
}

/// A request, as a route sees it: its body is whole, and no longer than
/// [`Limits::max_body`].
pub struct Asked {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

/// What the listener answers: `route`, for a request. The `quick` paths, asked for with GET or
/// HEAD, are answered at once on the listener's thread; the others on a thread for blocking
/// work, at most [`Limits::slow_at_once`] at a time, so that a costly page asked for again and
/// again never keeps a quick one (a liveness probe's) waiting.
pub struct Routes {
    pub quick: &'static [&'static str],
    pub route: Box<dyn Fn(&Asked) -> Answer + Send + Sync>,
}

/// What every connection's service reads.
struct Service {
    routes: Routes,
    slow: Semaphore,
    limits: Limits,
}

/// Binds `addr` and answers requests with `route` on a thread of its own; returns the bound
/// address (port 0 picks one). Fails only before it listens.
pub fn serve(addr: SocketAddr, routes: Routes, limits: Limits) -> anyhow::Result<SocketAddr> {
    let fail = || format!("cannot listen for metrics on {addr}");
    // Bound as the poem port is, with its long listen backlog, for the clients that wait
    // while every place is taken.
    let backlog = listener::BACKLOG;
    let listener = listener::bind_one(addr, false, true, backlog).with_context(fail)?;
    listener.set_nonblocking(true).with_context(fail)?;
    let local = listener.local_addr().with_context(fail)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics listener's runtime")?;
    // Registered with the runtime's reactor here, so that a failure (out of memory for epoll)
    // is a start-up error, not a panic in the thread.
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener).with_context(fail)?
    };
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept_loop(listener, routes, limits)))
        .context("cannot start the metrics thread")?;
    Ok(local)
}

/// Accepts connections for ever, each served by a task of its own while a place is free.
async fn accept_loop(listener: TcpListener, routes: Routes, limits: Limits) {
    let places = Arc::new(Semaphore::new(limits.connections));
    let sources = Arc::new(Limit::new(Some(limits.per_source)));
    let slow = Semaphore::new(limits.slow_at_once);
    let service = Arc::new(Service { routes, slow, limits });
    loop {
        // A place first, then the connection: past the bound, clients wait in the kernel's
        // listen backlog, as they do for poems, and a burst of them is served in turn.
        let place =
            Arc::clone(&places).acquire_owned().await.expect("the semaphore is never closed");
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or memory: wait for some to be freed, then go on.
                warn!(error = %err, "metrics: accept failed; pausing before the next");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // The per-source limit of the poem port, with its own maximum.
        let Ok(held) = sources.admit(peer.ip()) else {
            debug!(%peer, "metrics: this source holds too many connections; closing a new one");
            continue; // `stream` and `place` are dropped here
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            connection(stream, service).await;
            drop((held, place));
        });
        // Let the connections accepted so far run before the next accept: a burst of clients
        // that reset at once then gives its places back as fast as it takes them.
        tokio::task::yield_now().await;
    }
}

/// Serves one connection until the client closes it, breaks a bound, or outlives twice
/// the request timeout.
async fn connection(stream: TcpStream, service: Arc<Service>) {
    let request_timeout = service.limits.request_timeout;
    let service = service_fn(move |request| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Infallible>(respond(request, service).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let ended = match tokio::time::timeout(2 * request_timeout, conn.as_mut()).await {
        Ok(ended) => ended,
        Err(_) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return, // dropped, and so closed
            }
        }
    };
    if let Err(err) = ended {
        debug!(error = %err, "metrics: connection ended with an error");
    }
}

/// The answer to one request. A body is read only if the listener takes bodies, and only up to
/// its bound: past it, or announced past it, the answer is 413 and hyper closes the connection
/// rather than read the rest.
async fn respond(request: Request<Incoming>, service: Arc<Service>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let answer = if service.limits.max_body == 0 && !matches!(method, Method::GET | Method::HEAD) {
        Answer::text(405, "only GET and HEAD\n")
    } else if matches!(method, Method::GET | Method::HEAD)
        && service.routes.quick.contains(&path.as_str())
    {
        (service.routes.route)(&Asked { method, path, body: Bytes::new() })
    } else if !host_allowed(&request, &service.limits.hosts) {
        Answer::text(421, "this Host is not one this listener answers to\n")
    } else {
        match body(request, &service).await {
            Ok(body) => {
                // The semaphore is never closed; the blocking task panics only if the route does.
                let _slot = service.slow.acquire().await;
                let service = Arc::clone(&service);
                let asked = Asked { method, path, body };
                let answer = tokio::task::spawn_blocking(move || (service.routes.route)(&asked));
                answer.await.unwrap_or_else(|_| Answer::text(500, "cannot make the page\n"))
            }
            Err(refused) => refused,
        }
    };
    let mut response = Response::new(Full::new(answer.body));
    // Every status a route gives is a valid one; a bad one would be a bug, shown as 500.
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    response
}

/// The request's whole body, read up to the listener's bound and within its request timeout;
/// or the answer that refuses it.
async fn body(request: Request<Incoming>, service: &Service) -> Result<Bytes, Answer> {
    if service.limits.max_body == 0 {
        return Ok(Bytes::new());
    }
    let too_large =
        || Answer::text(413, format!("a body is at most {} bytes\n", service.limits.max_body));
    let announced = request.headers().get(hyper::header::CONTENT_LENGTH);
    let announced = announced.and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > service.limits.max_body as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(request.into_body(), service.limits.max_body);
    match tokio::time::timeout(service.limits.request_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(Answer::text(400, "the body did not arrive whole\n")),
        Err(_) => Err(Answer::text(408, "the body took too long\n")),
    }
}

/// Whether the request's Host names this listener: an IP address, `localhost`, or one of the
/// `hosts` allowed; a Host that is not a name and a port, or a second Host, names nothing. A
/// web page that a browser on this machine loads from another name, and whose name is then
/// made to resolve to this listener's address (DNS rebinding), sends its own name, and is
/// refused: it cannot read client addresses and poem paths. A request without a Host
/// (HTTP/1.0) names nothing, and is answered.
fn host_allowed(request: &Request<Incoming>, hosts: &[String]) -> bool {
    let mut values = request.headers().get_all(hyper::header::HOST).iter();
    let host = match (values.next(), values.next()) {
        (None, _) => return true,
        (Some(host), None) => host,
        // Which of two a proxy in front would read is anyone's guess.
        (Some(_), Some(_)) => return false,
    };
    let Some(name) = host.to_str().ok().and_then(host_name) else {
        return false;
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// The name in a Host value: `name`, `name:port`, `[v6]` or `[v6]:port` (the port digits, or
/// none), a v6 address's zone left out; `None` for anything else (something after `]`, say).
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']')? {
            (v6, "") => (v6, ""),
            (v6, after) => (v6, after.strip_prefix(':')?),
        },
        None => host.split_once(':').unwrap_or((host, "")),
    };
    let name = name.split_once('%').map_or(name, |(address, _zone)| address);
    port.bytes().all(|b| b.is_ascii_digit()).then_some(name)
}

/// Asks the listener at `addr` for `/healthz`, as a container's health check does: succeeds on
/// a 200 within `timeout`, and says what went wrong otherwise.
pub fn probe(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let asked = || format!("no answer from http://{addr}/healthz");
    let mut stream = StdStream::connect_timeout(&addr, timeout).with_context(asked)?;
    stream.set_read_timeout(Some(timeout)).with_context(asked)?;
    stream.set_write_timeout(Some(timeout)).with_context(asked)?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).with_context(asked)?;
    // The status line is all that matters; the answer is a few bytes long.
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).with_context(asked)?;
    let answer = String::from_utf8_lossy(&answer[..read]);
    let status = answer.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 200"),
        "http://{addr}/healthz answered {status:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Host is a name and a port and nothing more; a v6 address's zone is left out.
    #[test]
    fn host_names() {
        for (host, name) in [
            ("127.0.0.1", Some("127.0.0.1")),
            ("localhost:9100", Some("localhost")),
            ("host:", Some("host")),
            ("[::1]", Some("::1")),
            ("[::1]:80", Some("::1")),
            ("[fe80::1%25eth0]:80", Some("fe80::1")),
            ("[::1]rebound.example", None),
            ("[::1]:x", None),
            ("127.0.0.1:80:90", None),
            ("[", None),
        ] {
            assert_eq!(host_name(host), name, "{host:?}");
        }
    }
}

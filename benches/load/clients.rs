//! The load generators: loopback clients that time what they receive.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

/// No single wait in a benchmark may take longer than this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// What a batch of fetches achieved.
#[derive(Debug)]
pub struct Batch {
    pub failed: usize,
    /// Fetches made (all of them, unless a time limit cut the batch short).
    pub done: usize,
    pub elapsed: Duration,
}

/// Reads `stream` to EOF and says whether exactly `expect` came.
fn read_exact_poem(stream: &mut TcpStream, buf: &mut [u8], expect: &[u8]) -> bool {
    let mut at = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return at == expect.len(),
            Ok(n) => {
                if expect.get(at..at + n) != Some(&buf[..n]) {
                    return false;
                }
                at += n;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Reads `stream` to EOF and returns how many bytes came.
fn read_all(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// `threads` clients, each looping connect → read to EOF → close, `total` fetches in all, or
/// as many as fit in `limit`. A fetch that fails or is not `expect` byte for byte counts as
/// failed.
pub fn fetches(
    addr: SocketAddr,
    threads: usize,
    total: usize,
    expect: &[u8],
    limit: Duration,
) -> Batch {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..threads {
            let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
            scope.spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while started.elapsed() < limit && next.fetch_add(1, Ordering::Relaxed) < total {
                    let exact = TcpStream::connect(addr).is_ok_and(|mut s| {
                        s.set_read_timeout(Some(LIMIT)).is_ok()
                            && read_exact_poem(&mut s, &mut buf, expect)
                    });
                    if !exact {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Batch {
        failed: failed.load(Ordering::Relaxed),
        done: next.load(Ordering::Relaxed).min(total),
        elapsed: started.elapsed(),
    }
}

/// One client reading everything; returns the bytes and the time from connect to EOF.
pub fn bulk(addr: SocketAddr) -> (usize, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).expect("connect for bulk");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let got = read_all(&mut stream, &mut buf).expect("bulk read");
    (got, started.elapsed())
}

/// What many slow clients saw.
#[derive(Debug)]
pub struct Crowd {
    /// Clients that did not get `expect` byte for byte and then EOF (or, with a line quota,
    /// that many lines).
    pub failed: usize,
    /// The slowest client, from its connect to its end.
    pub slowest: Duration,
    /// The longest wait from a connect to its first byte: time in the listen backlog and the
    /// queue, before a worker took the connection.
    pub first_byte: Duration,
    /// Newline characters received in all (endlessh sends one line per write).
    pub lines: usize,
    /// For each client, in the order they connected: when it connected, when each read
    /// brought bytes and the bytes so far, and when it ended; times are from the crowd's
    /// first connect.
    pub timelines: Vec<Timeline>,
}

impl Crowd {
    /// Each client's time from its connect to its end, for those served in full.
    pub fn times(&self) -> Vec<Duration> {
        self.timelines
            .iter()
            .filter(|t| t.served)
            .filter_map(|t| Some(t.end? - t.connect))
            .collect()
    }

    /// Each `chunk`-byte chunk's lateness, client-side: its arrival (when the client's
    /// kernel received it) minus (the client's connect + k × `delay`) for chunk k = 0, 1,
    /// ..., over the clients served in full, as (k, lateness).
    pub fn lateness(&self, chunk: usize, delay: Duration) -> Vec<(usize, Duration)> {
        let mut late = Vec::new();
        for client in self.timelines.iter().filter(|t| t.served) {
            let mut before = 0;
            for &(at, bytes) in &client.reads {
                // A read may complete several chunks: each arrived now.
                for k in before / chunk..bytes / chunk {
                    let due = client.connect + delay * k as u32;
                    late.push((k, at.saturating_sub(due)));
                }
                before = bytes;
            }
        }
        late
    }
}

/// What one client of a [`crowd`] saw, in time from the crowd's first connect.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub connect: Duration,
    /// (arrival, bytes received so far) for each read that brought bytes; the arrival is the
    /// time the kernel received the segment, not the later time the client got to read it.
    pub reads: Vec<(Duration, usize)>,
    /// When it ended: when its kernel received the FIN (or, without the kernel's time, when
    /// the client read EOF), an error, or its line quota.
    pub end: Option<Duration>,
    /// Whether it got what it should have (the poem byte for byte and EOF, or its lines).
    pub served: bool,
}

/// How many connects [`crowd`] issues between two looks at the sockets that are ready.
const CONNECT_BATCH: usize = 100;

/// Clients of a [`crowd`] per loopback source address (127.0.0.1, then .2, ...). Linux looks
/// for a free ephemeral port for each connect among the even ports of its range first (about
/// 14,000 here), and past that searches longer and longer: 19,000 connects from one address
/// took 5 s to issue instead of a fraction of a second. A few sources keep every search short.
const PER_SOURCE: usize = 5_000;

/// A non-blocking connect to `addr` from the loopback address `source`, the port left for
/// connect() to choose (IP_BIND_ADDRESS_NO_PORT), so that it is unique per source and
/// destination rather than reserved for the source alone; the socket asks the kernel for the
/// time each segment arrived (SO_TIMESTAMPNS), for [`recv_stamped`].
fn connect_from(addr: SocketAddr, source: std::net::Ipv4Addr) -> std::io::Result<MioStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a valid pointer for the length given.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let stamped = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if stamped != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(source.into(), 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    Ok(MioStream::from_std(socket.into()))
}

/// Reads what `stream` holds into `buf`, with the time the kernel received the last segment
/// read (SO_TIMESTAMPNS: the wall clock), when it gives one. A crowd's one client thread may
/// come to a socket many milliseconds after its bytes arrived; the kernel's time is when they
/// did.
fn recv_stamped(
    stream: &MioStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<std::time::SystemTime>)> {
    // Room for one control message holding a timespec, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    let mut iov =
        libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in msg refers to a live buffer of the length given.
    let n = unsafe { libc::recvmsg(std::os::fd::AsRawFd::as_raw_fd(stream), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled in, within its length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(
                    std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                );
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// Opens `count` connections at once from one thread (non-blocking, epoll), from one loopback
/// source address per 5,000 clients, and reads each to its end: EOF after exactly `expect`,
/// byte for byte, or, when `quota_lines` is set, until that many lines have come (for a peer
/// that never ends its stream), and then closes.
pub fn crowd(addr: SocketAddr, count: usize, expect: &[u8], quota_lines: Option<usize>) -> Crowd {
    crowd_watched(addr, count, expect, quota_lines, &AtomicUsize::new(0))
}

/// [`crowd`], keeping `held` at the number of clients that have had a first byte and not yet
/// ended, for a thread that samples what the server holds meanwhile.
pub fn crowd_watched(
    addr: SocketAddr,
    count: usize,
    expect: &[u8],
    quota_lines: Option<usize>,
    held: &AtomicUsize,
) -> Crowd {
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(4096);
    struct Client {
        stream: MioStream,
        bytes: usize,
        lines: usize,
        exact: bool,
    }
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(count);
    let (mut lines, mut open) = (0, 0);
    let mut first_byte = Duration::ZERO;
    let mut buf = vec![0u8; 4096];
    let (begun, begun_wall) = (Instant::now(), std::time::SystemTime::now());
    // When the kernel says a read's bytes arrived, as time since `begun`; the reading
    // thread's own clock when it does not say.
    let arrived = |stamp: Option<std::time::SystemTime>| {
        stamp.and_then(|s| s.duration_since(begun_wall).ok()).unwrap_or_else(|| begun.elapsed())
    };
    let mut timelines = Vec::with_capacity(count);
    let deadline = begun + LIMIT;
    let sources = count.div_ceil(PER_SOURCE).max(1);
    // Connects go out in small batches with a look at ready sockets in between, so that every
    // byte is read (and timed) when it arrives, as 10,000 separate clients would, not after
    // the last connect.
    while (clients.len() < count || open > 0) && Instant::now() < deadline {
        let batch = clients.len()..count.min(clients.len() + CONNECT_BATCH);
        for i in batch {
            timelines.push(Timeline { connect: begun.elapsed(), ..Timeline::default() });
            let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % sources) as u8);
            match connect_from(addr, source) {
                Ok(mut stream) => {
                    poll.registry()
                        .register(&mut stream, Token(i), Interest::READABLE)
                        .expect("register");
                    clients.push(Some(Client { stream, bytes: 0, lines: 0, exact: true }));
                    open += 1;
                }
                Err(_) => {
                    timelines[i].end = Some(begun.elapsed());
                    clients.push(None);
                }
            }
        }
        let wait = if clients.len() < count { Duration::ZERO } else { Duration::from_millis(100) };
        poll.poll(&mut events, Some(wait)).expect("poll");
        for event in events.iter() {
            let i = event.token().0;
            let slot = &mut clients[i];
            let Some(client) = slot.as_mut() else {
                continue;
            };
            let timeline = &mut timelines[i];
            let done = loop {
                match recv_stamped(&client.stream, &mut buf) {
                    Ok((0, stamp)) => {
                        timeline.end = Some(arrived(stamp));
                        break Some(match quota_lines {
                            Some(quota) => client.lines >= quota,
                            None => client.exact && client.bytes == expect.len(),
                        });
                    }
                    Ok((n, stamp)) => {
                        let at = arrived(stamp);
                        if client.bytes == 0 {
                            first_byte = first_byte.max(at - timeline.connect);
                            held.fetch_add(1, Ordering::Relaxed);
                        }
                        if quota_lines.is_none() {
                            let want = expect.get(client.bytes..client.bytes + n);
                            client.exact &= want == Some(&buf[..n]);
                        }
                        client.bytes += n;
                        timeline.reads.push((at, client.bytes));
                        client.lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                        if quota_lines.is_some_and(|q| client.lines >= q) {
                            break Some(true);
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break None,
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break Some(false),
                }
            };
            if let Some(good) = done {
                timeline.end.get_or_insert_with(|| begun.elapsed());
                timeline.served = good;
                lines += client.lines;
                if client.bytes > 0 {
                    held.fetch_sub(1, Ordering::Relaxed);
                }
                let mut client = slot.take().expect("checked above");
                let _ = poll.registry().deregister(&mut client.stream);
                open -= 1;
            }
        }
    }
    let slowest = timelines.iter().filter_map(|t| Some(t.end? - t.connect)).max().unwrap_or(LIMIT);
    let failed = timelines.iter().filter(|t| !t.served).count();
    Crowd { first_byte, failed, slowest: if open > 0 { LIMIT } else { slowest }, lines, timelines }
}

/// `clients` threads each fetch a paced poem of `chunks` chunks of `chunk` bytes, `delay`
/// apart, noting when each chunk arrived. Returns every chunk's lateness (arrival minus
/// connect time minus k × delay) and the slowest client's total time.
pub fn pacing(
    addr: SocketAddr,
    clients: usize,
    chunk: usize,
    chunks: usize,
    delay: Duration,
) -> (Vec<Duration>, Duration, usize) {
    let results: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
                    stream.set_read_timeout(Some(LIMIT)).ok()?;
                    let mut buf = [0u8; 4096];
                    let (mut total, mut late) = (0, Vec::with_capacity(chunks));
                    loop {
                        let n = stream.read(&mut buf).ok()?;
                        if n == 0 {
                            break;
                        }
                        let at = started.elapsed();
                        let before = total / chunk;
                        total += n;
                        // Every chunk completed by this read arrived now.
                        for k in before..total / chunk {
                            late.push(at.saturating_sub(delay * k as u32));
                        }
                    }
                    (total == chunk * chunks).then_some((late, started.elapsed()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("pacing client")).collect()
    });
    let failed = results.iter().filter(|r| r.is_none()).count();
    let mut lateness = Vec::new();
    let mut slowest = Duration::ZERO;
    for (late, total) in results.into_iter().flatten() {
        lateness.extend(late);
        slowest = slowest.max(total);
    }
    (lateness, slowest, failed)
}

/// Opens `count` connections from 127.0.0.1 and keeps them, reading nothing: a source that
/// holds many sockets idle.
pub fn hold(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect_timeout(&addr, LIMIT).expect("connect a held socket"))
        .collect()
}

/// Connects from 127.0.0.1 over and over until `stop`, reading each connection to its end
/// (a rejected one ends at once) or for at most 100 ms; returns how many connects it made.
pub fn churn(addr: SocketAddr, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut buf = [0u8; 1024];
    let mut connects = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, LIMIT) {
            connects += 1;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            while matches!(stream.read(&mut buf), Ok(1..)) {}
        }
    }
    connects
}

/// Connects from the loopback address `from` and returns the time to the first byte.
pub fn first_byte_from(addr: SocketAddr, from: std::net::IpAddr) -> Option<Duration> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
    let started = Instant::now();
    socket.connect_timeout(&addr.into(), LIMIT).ok()?;
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(LIMIT)).ok()?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).ok()?;
    Some(started.elapsed())
}

/// What a poller of the status page saw.
pub struct Polls {
    /// GETs answered with 200 and a whole JSON document (it ends with `}`).
    pub answered: usize,
    pub failed: usize,
    /// The longest one took.
    pub slowest: Duration,
}

/// GETs `path` from `addr` every `every` (each on a connection of its own, as a browser tab
/// or a script would) until `stop`, and counts the answers.
pub fn poll_http(
    addr: SocketAddr,
    path: &str,
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Polls {
    // The metrics port answers only a Host that names it (an address, say).
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut polls = Polls { answered: 0, failed: 0, slowest: Duration::ZERO };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, LIMIT)?;
            stream.set_read_timeout(Some(LIMIT))?;
            std::io::Write::write_all(&mut stream, request.as_bytes())?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        polls.slowest = polls.slowest.max(started.elapsed());
        match answer {
            Ok(text) if text.starts_with("HTTP/1.1 200") && text.trim_end().ends_with('}') => {
                polls.answered += 1
            }
            _ => polls.failed += 1,
        }
        next += every;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    polls
}

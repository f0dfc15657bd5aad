//! The PROXY protocol (`--proxy-protocol`): behind a load balancer that speaks it (HAProxy's
//! `send-proxy`/`send-proxy-v2`, nginx's `proxy_protocol on`), every connection begins with a
//! header naming the real client, and that client is the peer everywhere: in the logs and
//! for the per-source limit. Versions 1 (text) and 2 (binary) are both accepted; the `ppp`
//! crate parses them.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::{HeaderResult, PartialResult, v1, v2};

/// How long a connection has to send its whole header. A balancer sends it at once; this only
/// bounds what a client that is not a balancer can hold a worker for.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest header accepted: a version 2 header with a few KiB of TLVs. Version 1 headers
/// are at most 107 bytes.
const MAX_HEADER: usize = 4096;

/// Reads the PROXY header at the start of `stream`, which came from `balancer`, and returns
/// the client it names. A `LOCAL` (v2) or `UNKNOWN` (v1) header, which balancers send for
/// their own health checks, names no client: then the balancer itself is the peer. Anything
/// after the header is the client's own input, which the server ignores anyway.
///
/// Fails, with a reason for the log, on a header that is malformed, too long, cut short or not
/// complete within [`HEADER_TIMEOUT`].
pub fn read_header(stream: &TcpStream, balancer: SocketAddr) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut header = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        match HeaderResult::parse(&header) {
            parsed if parsed.is_complete() => return client(parsed, balancer),
            _ if header.len() >= MAX_HEADER => {
                return Err(format!("no complete PROXY header in {MAX_HEADER} bytes"));
            }
            _ => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(header.len()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|err| err.to_string())?;
        match (&*stream).read(&mut chunk) {
            Ok(0) if header.is_empty() => return Err("closed before any PROXY header".into()),
            Ok(0) => return Err("closed in the middle of the PROXY header".into()),
            Ok(n) => header.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out(header.len()));
            }
            Err(err) => return Err(format!("reading the PROXY header: {err}")),
        }
    }
}

fn timed_out(got: usize) -> String {
    format!(
        "no complete PROXY header within {}s ({got} bytes came)",
        HEADER_TIMEOUT.as_secs()
    )
}

/// The client named by a complete parse.
fn client(parsed: HeaderResult<'_>, balancer: SocketAddr) -> Result<SocketAddr, String> {
    let source = match parsed {
        HeaderResult::V1(Ok(header)) => match header.addresses {
            v1::Addresses::Tcp4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Tcp6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Unknown => balancer,
        },
        HeaderResult::V2(Ok(header)) => match (header.command, header.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
                SocketAddr::from((ip.source_address, ip.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
                SocketAddr::from((ip.source_address, ip.source_port))
            }
            // LOCAL, or an address family with no IP client (UNIX, unspecified).
            _ => balancer,
        },
        HeaderResult::V1(Err(err)) => return Err(format!("bad PROXY v1 header: {err}")),
        HeaderResult::V2(Err(err)) => return Err(format!("bad PROXY v2 header: {err}")),
    };
    // An IPv4 client given in IPv6 form is logged, and limited, as the IPv4 address it is.
    Ok(SocketAddr::new(source.ip().to_canonical(), source.port()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    /// Sends `bytes` (then keeps the connection open) and reads the header on the other end.
    fn read(bytes: &[u8]) -> Result<SocketAddr, String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(bytes).unwrap();
        let (served, balancer) = listener.accept().unwrap();
        read_header(&served, balancer)
    }

    /// A v1 header names the client, IPv4 or IPv6; what follows it does not matter.
    #[test]
    fn v1_headers_name_the_client() {
        let got = read(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\nhello");
        assert_eq!(got, Ok("203.0.113.9:51000".parse().unwrap()));
        let got = read(b"PROXY TCP6 2001:db8::9 ::1 51000 10000\r\n");
        assert_eq!(got, Ok("[2001:db8::9]:51000".parse().unwrap()));
    }

    /// A v1 UNKNOWN header leaves the balancer as the peer.
    #[test]
    fn v1_unknown_is_the_balancer() {
        let got = read(b"PROXY UNKNOWN\r\n").unwrap();
        assert!(got.ip().is_loopback(), "{got}");
    }

    /// Garbage is refused with a reason, without waiting for the timeout.
    #[test]
    fn garbage_is_refused_at_once() {
        let started = Instant::now();
        let err = read(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap_err();
        assert!(err.contains("bad PROXY"), "{err}");
        assert!(started.elapsed() < HEADER_TIMEOUT);
    }

    /// A header that stops halfway is refused after the timeout, saying so.
    #[test]
    fn a_partial_header_times_out() {
        let err = read(b"PROXY TCP4 203.0.113.9").unwrap_err();
        assert!(err.contains("within 5s"), "{err}");
    }
}

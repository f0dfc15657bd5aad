//! The PROXY protocol (`--proxy-protocol`): behind a load balancer that speaks it (HAProxy's
//! `send-proxy`/`send-proxy-v2`, nginx's `proxy_protocol on`), every connection begins with a
//! header naming the real client, and that client is the peer everywhere: in the logs and
//! for the per-source limit. Versions 1 (text) and 2 (binary) are both accepted; the `ppp`
//! crate parses them.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::{v1, v2};

/// The longest header accepted: a version 2 header with a few KiB of TLVs.
const MAX_HEADER: usize = 4096;

/// What a version 1 header begins with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest version 1 header, its CRLF included.
const V1_MAX: usize = 107;

/// What a version 2 header begins with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a version 2 header: the signature, version and command, family and
/// protocol, and the length of the rest.
const V2_FIXED: usize = 16;

/// Reads the PROXY header at the start of `stream`, which came from `balancer`, and returns
/// the client it names. A `LOCAL` (v2) or `UNKNOWN` (v1) header, which balancers send for
/// their own health checks, names no client: then the balancer itself is the peer. Anything
/// after the header is the client's own input, which the server ignores anyway.
///
/// The header may come in any number of pieces: it is parsed once it is whole (a v1 line up
/// to its LF, a v2 header up to the length it gives), so no split can be mistaken for a
/// malformed header. Fails, with a reason for the log that names what was wrong, on a header
/// that is malformed, too long, cut short or not complete within `timeout` (a balancer sends it
/// at once; this only bounds what a client that is not a balancer can hold a worker for).
pub fn read_header(
    stream: &TcpStream,
    balancer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + timeout;
    let mut header = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(client) = parse(&header, balancer)? {
            return Ok(client);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(header.len(), timeout));
        }
        stream.set_read_timeout(Some(left)).map_err(|err| err.to_string())?;
        match (&*stream).read(&mut chunk) {
            Ok(0) if header.is_empty() => return Err("closed before any PROXY header".into()),
            Ok(0) => return Err("closed in the middle of the PROXY header".into()),
            Ok(n) => header.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out(header.len(), timeout));
            }
            Err(err) => return Err(format!("reading the PROXY header: {err}")),
        }
    }
}

fn timed_out(got: usize, timeout: Duration) -> String {
    let timeout = humantime::format_duration(timeout);
    format!("no complete PROXY header within {timeout} ({got} bytes came)")
}

/// The client named by the header at the start of `bytes`, or `None` while the header may
/// still be whole once more bytes come.
fn parse(bytes: &[u8], balancer: SocketAddr) -> Result<Option<SocketAddr>, String> {
    let client = if begins(bytes, V2_SIGNATURE) {
        parse_v2(bytes, balancer)?
    } else if begins(bytes, V1_PREFIX) {
        parse_v1(bytes, balancer)?
    } else {
        return Err("bad PROXY header: it begins with neither 'PROXY ' (v1) nor the v2 \
                    signature"
            .into());
    };
    // An IPv4 client given in IPv6 form is logged, and limited, as the IPv4 address it is.
    Ok(client.map(|source| SocketAddr::new(source.ip().to_canonical(), source.port())))
}

/// Whether `bytes` and `prefix` agree as far as both go.
fn begins(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

/// A version 1 header: one text line, parsed once its LF has come.
fn parse_v1(bytes: &[u8], balancer: SocketAddr) -> Result<Option<SocketAddr>, String> {
    let bad = |why: &dyn std::fmt::Display| format!("bad PROXY v1 header: {why}");
    // Only the first V1_MAX bytes are looked at, so the verdict is the same however many
    // bytes past them one read brought.
    let Some(lf) = bytes.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        if bytes.len() >= V1_MAX {
            return Err(bad(&format_args!("no line end in its first {V1_MAX} bytes")));
        }
        return Ok(None);
    };
    if lf == 0 || bytes[lf - 1] != b'\r' {
        return Err(bad(&"the line ends in LF alone, not CRLF"));
    }
    let header = v1::Header::try_from(&bytes[..=lf]).map_err(|err| bad(&err))?;
    Ok(Some(match header.addresses {
        v1::Addresses::Tcp4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        v1::Addresses::Tcp6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        v1::Addresses::Unknown => balancer,
    }))
}

/// A version 2 header: binary, parsed as its fixed part comes and whole once the length that
/// part gives has come.
fn parse_v2(bytes: &[u8], balancer: SocketAddr) -> Result<Option<SocketAddr>, String> {
    use v2::ParseError;
    let header = match v2::Header::try_from(bytes) {
        Ok(header) => header,
        Err(ParseError::Incomplete(_)) => return Ok(None),
        Err(ParseError::Partial(_, length)) if V2_FIXED + length > MAX_HEADER => {
            return Err(format!(
                "bad PROXY v2 header: it gives {length} bytes of addresses and TLVs, more than \
                 the {} accepted",
                MAX_HEADER - V2_FIXED
            ));
        }
        Err(ParseError::Partial(..)) => return Ok(None),
        Err(err) => return Err(format!("bad PROXY v2 header: {}", v2_reason(&err))),
    };
    Ok(Some(match (header.command, header.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
            SocketAddr::from((ip.source_address, ip.source_port))
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
            SocketAddr::from((ip.source_address, ip.source_port))
        }
        // LOCAL, or an address family with no IP client (UNIX, unspecified).
        _ => balancer,
    }))
}

/// What was wrong with a version 2 header, in the header's own terms (ppp gives the version
/// and family as the masked byte: 0x30 for version 3).
fn v2_reason(err: &v2::ParseError) -> String {
    use v2::ParseError;
    match *err {
        ParseError::Version(byte) => format!("version {} (only version 2 exists)", byte >> 4),
        ParseError::Command(nibble) => {
            format!("command {nibble:#x} (neither LOCAL, 0x0, nor PROXY, 0x1)")
        }
        ParseError::AddressFamily(byte) => {
            format!("address family {:#x} (not UNSPEC, INET, INET6 or UNIX, 0x0 to 0x3)", byte >> 4)
        }
        ParseError::Protocol(nibble) => {
            format!("transport protocol {nibble:#x} (not UNSPEC, STREAM or DGRAM, 0x0 to 0x2)")
        }
        ParseError::InvalidAddresses(length, needed) => format!(
            "too short for its address family: {length} bytes of addresses, where the family \
             needs {needed}"
        ),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    /// Sends `bytes` (then keeps the connection open) and reads the header on the other end,
    /// waiting up to `timeout` for it.
    fn read_within(bytes: &[u8], timeout: Duration) -> Result<SocketAddr, String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(bytes).unwrap();
        let (served, balancer) = listener.accept().unwrap();
        read_header(&served, balancer, timeout)
    }

    /// Like [`read_within`], waiting longer than any test runs: a verdict is never a timeout.
    fn read(bytes: &[u8]) -> Result<SocketAddr, String> {
        read_within(bytes, Duration::from_secs(3600))
    }

    /// A v1 UNKNOWN header leaves the balancer as the peer.
    #[test]
    fn v1_unknown_is_the_balancer() {
        let got = read(b"PROXY UNKNOWN\r\n").unwrap();
        assert!(got.ip().is_loopback(), "{got}");
    }

    /// Garbage is refused with a reason as soon as it is read, not after the timeout (an hour).
    #[test]
    fn garbage_is_refused_at_once() {
        let err = read(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap_err();
        assert!(err.contains("bad PROXY"), "{err}");
    }

    /// A valid header cut anywhere is not yet a verdict: every part of it waits for more,
    /// and the whole names the client. A balancer's TCP stream may split it at any byte.
    #[test]
    fn a_header_cut_anywhere_waits_for_the_rest() {
        let balancer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\n".to_vec();
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0xc7, 0x38, 0x27, 0x10]);
        for header in [v1, v2] {
            for cut in 0..header.len() {
                assert_eq!(
                    parse(&header[..cut], balancer),
                    Ok(None),
                    "cut after {cut} bytes of {header:?}"
                );
            }
            let whole = parse(&header, balancer);
            assert_eq!(whole, Ok(Some("203.0.113.9:51000".parse().unwrap())));
        }
    }

    /// Mutated headers (seeded, so a failure repeats) never panic the parser, and the verdict
    /// on a header never depends on where it was cut: once some part of it gets a verdict,
    /// every longer part gets the same one.
    #[test]
    fn mutated_headers_get_one_verdict_wherever_cut() {
        let balancer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0xc7, 0x38, 0x27, 0x10]);
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat(); // 108 bytes
        let seeds: [&[u8]; 3] =
            [b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 10000\r\nhello", &v2, &long];
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..2000 {
            let mut header = seeds[rng.usize(..seeds.len())].to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..header.len());
                match rng.u8(..3) {
                    0 => header[at] = rng.u8(..),
                    1 => header.insert(at, b"\r\n 0:.\0\x7f"[rng.usize(..8)]),
                    _ => drop(header.remove(at)),
                }
            }
            let mut verdict = None;
            for cut in 0..=header.len() {
                let now = parse(&header[..cut], balancer);
                match (&verdict, now) {
                    (None, Ok(None)) => {}
                    (None, decided) => verdict = Some(decided),
                    (Some(first), now) => assert_eq!(first, &now, "{header:?} cut at {cut}"),
                }
            }
        }
    }

    /// A header that stops halfway is refused after the timeout, saying so.
    #[test]
    fn a_partial_header_times_out() {
        let err = read_within(b"PROXY TCP4 203.0.113.9", Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("within 200ms"), "{err}");
    }
}

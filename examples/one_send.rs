//! How much data can one send push at once? The tutorial's question, measured on loopback.
//!
//! Run with `cargo run --release --example one_send`. For a 64 MiB "poem" it prints what one
//! `write` call (Python's `socket.send`) returns on a blocking socket whose client reads, and on
//! one whose client does not (with a send timeout, as poetry-serve sets, and non-blocking), and
//! the socket buffer sizes that explain the figures.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const POEM: usize = 64 << 20;

fn main() -> std::io::Result<()> {
    let poem = vec![b'x'; POEM];
    println!("one write() of a {} MiB buffer into a loopback TCP socket:", POEM >> 20);

    // A client that reads everything: one blocking write call sends it all.
    let (server, client) = pair()?;
    let reader = thread::spawn(move || drain(client));
    let started = Instant::now();
    let sent = (&server).write(&poem)?;
    let took = started.elapsed();
    drop(server);
    let received = reader.join().expect("reader thread");
    println!(
        "  client reading, blocking socket:      returned {sent:>10} bytes after {took:.2?} \
         (client got {received})"
    );

    // A client that never reads: the call returns once the buffers are full.
    let (server, client) = pair()?;
    server.set_write_timeout(Some(Duration::from_secs(1)))?;
    let started = Instant::now();
    let sent = (&server).write(&poem)?;
    println!(
        "  client not reading, 1 s send timeout: returned {sent:>10} bytes after {:.2?}",
        started.elapsed()
    );
    report_buffers(&server, &client)?;
    drop(client);

    let (server, _client) = pair()?;
    server.set_nonblocking(true)?;
    let sent = (&server).write(&poem)?;
    let again = (&server).write(&poem).map_err(|e| e.kind());
    println!(
        "  client not reading, non-blocking:     returned {sent:>10} bytes; the next call: {again:?}"
    );
    Ok(())
}

/// A connected pair over loopback: (the server's end, the client's end).
fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((server, client))
}

fn drain(mut client: TcpStream) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match client.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return total,
        }
    }
}

/// Prints SO_SNDBUF / SO_RCVBUF as the kernel reports them, and the autotuning limits.
fn report_buffers(server: &TcpStream, client: &TcpStream) -> std::io::Result<()> {
    let sndbuf = socket2::SockRef::from(server).send_buffer_size()?;
    let rcvbuf = socket2::SockRef::from(client).recv_buffer_size()?;
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    let rmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap_or_default();
    println!("    after it: server SO_SNDBUF {sndbuf} bytes, client SO_RCVBUF {rcvbuf} bytes");
    println!("    tcp_wmem (min default max): {}", wmem.trim());
    println!("    tcp_rmem (min default max): {}", rmem.trim());
    Ok(())
}

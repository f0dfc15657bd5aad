//! poetry-serve's asynchronous twin: the same slow poetry server written the third way the
//! tutorial shows, on one event loop (tokio's) instead of a thread per client. It exists for
//! the lesson benchmark (`benches/run lesson`) and is not part of the installed program.
//!
//! Put it beside `src/connection.rs`: the paced writer is the same loop (chunk k due at
//! start + k × delay, then shut the write side and wait for the client's end, at most 2 s),
//! but each `.await` gives the thread back to the loop instead of blocking it, so one thread
//! holds thousands of clients, each costing a task (a few hundred bytes) and not a thread.
//! Unlike poetry-serve it keeps the poem in memory and has none of its operations (limits,
//! reloads, metrics, shutdown).
//!
//! `cargo run --release --example async_twin -- --port 10000 --num-bytes 10 --delay 0.7 POEM`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, sleep_until, timeout};

/// How long to wait for the client's end after the last byte, as poetry-serve does.
const LINGER: Duration = Duration::from_secs(2);

/// The flags that matter for the comparison, as poetry-serve spells them.
struct Flags {
    addr: SocketAddr,
    num_bytes: usize,
    delay: Duration,
    poem: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let flags = parse(std::env::args().skip(1));
    let poem: Arc<[u8]> = std::fs::read(&flags.poem)?.into();
    // The same backlog as poetry-serve's listener, so a burst of connects is queued alike.
    let socket = match flags.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(flags.addr)?;
    let listener = socket.listen(4096)?;
    println!("poetry-serve listening on {}", listener.local_addr()?);
    serve_forever(listener, poem, flags.num_bytes, flags.delay).await
}

/// Accepts clients for ever, each served by a task of its own.
async fn serve_forever(
    listener: TcpListener,
    poem: Arc<[u8]>,
    num_bytes: usize,
    delay: Duration,
) -> std::io::Result<()> {
    loop {
        let (client, _) = listener.accept().await?;
        let poem = Arc::clone(&poem);
        tokio::spawn(async move {
            // A client that hangs up ends its own task, nothing else.
            let _ = serve(client, &poem, num_bytes, delay).await;
        });
    }
}

/// Streams the poem on the deadline schedule, then closes without loss.
async fn serve(
    mut client: TcpStream,
    poem: &[u8],
    num_bytes: usize,
    delay: Duration,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let start = Instant::now();
    let step = if delay.is_zero() { poem.len().max(1) } else { num_bytes };
    for (k, chunk) in poem.chunks(step).enumerate() {
        sleep_until(start + delay * k as u32).await;
        client.write_all(chunk).await?;
    }
    client.shutdown().await?;
    // Read and discard until the client's end, so that the close sends no reset.
    let mut discard = [0u8; 512];
    let _ = timeout(LINGER, async {
        while client.read(&mut discard).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    Ok(())
}

/// `--port N --iface ADDR --num-bytes N --delay SECONDS POEM`, with poetry-serve's defaults.
fn parse(mut args: impl Iterator<Item = String>) -> Flags {
    let (mut port, mut iface) = (10000u16, "127.0.0.1".to_string());
    let (mut num_bytes, mut delay, mut poem) = (10usize, 0.7f64, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| usage("bad --port")),
            "--iface" => iface = value(),
            "--num-bytes" => {
                num_bytes = value().parse().unwrap_or_else(|_| usage("bad --num-bytes"))
            }
            "--delay" => delay = value().parse().unwrap_or_else(|_| usage("bad --delay")),
            _ if !arg.starts_with('-') => poem = Some(arg),
            _ => usage(&format!("unknown option {arg}")),
        }
    }
    Flags {
        addr: format!("{iface}:{port}").parse().unwrap_or_else(|_| usage("bad --iface")),
        num_bytes: num_bytes.max(1),
        delay: Duration::from_secs_f64(delay.max(0.0)),
        poem: poem.unwrap_or_else(|| usage("a POEM is needed")),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "async_twin: {problem}\nusage: async_twin [--port N] [--iface ADDR] [--num-bytes N] [--delay SECONDS] POEM"
    );
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Instant as StdInstant;

    use super::*;

    /// The twin serves a poem byte for byte, paced: 5 chunks at 100 ms take at least 0.4 s.
    #[test]
    fn serves_a_poem_exactly_and_paced() {
        let poem: Arc<[u8]> = (0..50u8).collect::<Vec<u8>>().into();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::clone(&poem);
        runtime.spawn(serve_forever(listener, served, 10, Duration::from_millis(100)));
        let started = StdInstant::now();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("the poem and a clean end");
        let took = started.elapsed();
        assert_eq!(got, &poem[..]);
        assert!(took >= Duration::from_millis(400), "too fast: {took:?}");
        assert!(took < Duration::from_secs(10), "too slow: {took:?}");
    }
}

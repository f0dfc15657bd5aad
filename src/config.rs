//! The command line and the validated [`Config`] built from it.
//!
//! Parsing happens in two stages: clap fills [`Cli`] with the flags as the user typed them, then
//! [`Cli::validate`] turns them into a [`Config`] whose types rule out bad values, so the rest
//! of the program never checks them again.

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::collection::Order;
use crate::pacing::Pacing;

/// The longest any option given in seconds may be: one year.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// Serve a poem slowly over TCP, a few bytes at a time, to every client that connects.
///
/// Each connection gets the whole file in chunks of --num-bytes bytes, one chunk every --delay
/// seconds, and is then closed. Try it with `nc localhost 10000`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// The poems to serve: files, or directories whose .txt files are served in name order.
    /// Any bytes, any size; a poem is read as it is served, never held in memory
    #[arg(value_name = "POEM", required = true)]
    pub poems: Vec<PathBuf>,

    /// How each connection's poem is chosen when there are several
    #[arg(long, value_enum, default_value_t = Order::Sequential)]
    pub order: Order,

    /// TCP port to listen on; 0 picks a free port (the listening line on stdout names it)
    #[arg(long, value_name = "PORT", default_value_t = 10000)]
    pub port: u16,

    /// Address to listen on: an IPv4 or IPv6 literal such as 127.0.0.1, ::1, 0.0.0.0 or ::
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub iface: String,

    /// Bytes per chunk, at least 1
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub num_bytes: usize,

    /// Seconds between chunks, a decimal number >= 0 such as 0.7 or 0.05. With 0 the poem goes
    /// out as fast as the client takes it, whatever --num-bytes says
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.7,
        allow_negative_numbers = true
    )]
    pub delay: f64,

    /// Worker threads, started at launch; each streams one poem at a time, so this is how many
    /// clients are served at once (others wait their turn). A paced poem holds its worker for
    /// minutes, and an idle worker costs about 10 KB of memory, so the default is generous
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub workers: usize,

    /// Drop a client that accepts no data for this many seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    pub write_timeout: f64,

    /// On SIGINT or SIGTERM, give poems already streaming this many seconds to finish before
    /// closing them; a second signal exits at once
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub shutdown_grace: f64,

    /// Set SO_REUSEPORT, so that several poetry-serve processes can listen on one port and
    /// share its connections
    #[arg(long)]
    pub reuse_port: bool,

    /// Most connections one source may hold at once, streaming or waiting; 0 means no limit.
    /// A source is an IPv4 address or an IPv6 /64. A connection over the limit is closed at
    /// once, unserved, and counted as rejected. Turn it on when serving the open Internet, so
    /// that one host cannot take every worker
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_per_source: u32,

    /// Expect every connection to begin with a PROXY protocol header (v1 or v2), as a load
    /// balancer sends it, and treat the client it names as the peer: in the logs and for
    /// --max-per-source. A connection without a valid header within 5 s is closed
    #[arg(long)]
    pub proxy_protocol: bool,

    /// Log lines as plain text, or as one JSON object per line for log shippers
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines (and the stats line) are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// Everything the server needs to know, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The poems' paths (files or directories), not yet opened: see
    /// [`crate::collection::Collection::open`].
    pub poems: Vec<PathBuf>,
    /// How each connection's poem is chosen.
    pub order: Order,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Chunk size and delay.
    pub pacing: Pacing,
    /// Size of the fixed worker pool.
    pub workers: NonZeroUsize,
    /// How long a write may make no progress before the client is dropped; never zero.
    pub write_timeout: Duration,
    /// How long shutdown waits for poems already streaming.
    pub shutdown_grace: Duration,
    /// Whether to set SO_REUSEPORT on the listener.
    pub reuse_port: bool,
    /// Most connections per source at once; `None` for no limit.
    pub max_per_source: Option<NonZeroU32>,
    /// Whether connections begin with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// How logs and the stats line are written.
    pub log_format: LogFormat,
}

impl Cli {
    /// Checks every flag and builds the [`Config`], or says which flag is wrong and why.
    pub fn validate(self) -> anyhow::Result<Config> {
        let ip: IpAddr = self.iface.parse().with_context(|| {
            format!(
                "invalid --iface '{}': not an IPv4 or IPv6 address (try 127.0.0.1 or ::1)",
                self.iface
            )
        })?;
        let Some(chunk) = NonZeroUsize::new(self.num_bytes) else {
            bail!("invalid --num-bytes 0: a chunk must hold at least 1 byte");
        };
        let Some(workers) = NonZeroUsize::new(self.workers) else {
            bail!("invalid --workers 0: the pool needs at least 1 worker");
        };
        let delay = seconds("--delay", self.delay)?;
        let write_timeout = seconds("--write-timeout", self.write_timeout)?;
        if write_timeout.is_zero() {
            bail!("invalid --write-timeout 0: it must be greater than 0");
        }
        Ok(Config {
            poems: self.poems,
            order: self.order,
            reuse_port: self.reuse_port,
            max_per_source: NonZeroU32::new(self.max_per_source),
            proxy_protocol: self.proxy_protocol,
            log_format: self.log_format,
            addr: SocketAddr::new(ip, self.port),
            pacing: Pacing::new(chunk, delay),
            workers,
            write_timeout,
            shutdown_grace: seconds("--shutdown-grace", self.shutdown_grace)?,
        })
    }
}

/// Turns a number of seconds typed by the user into a [`Duration`].
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || !(0.0..=MAX_SECONDS).contains(&value) {
        bail!("invalid {flag} {value}: it must be a number of seconds from 0 to {MAX_SECONDS}");
    }
    // The range check above leaves nothing try_from_secs_f64 could reject.
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let argv = ["poetry-serve"].iter().chain(args).chain(&["poem.txt"]);
        Cli::try_parse_from(argv)?.validate()
    }

    fn error(args: &[&str]) -> String {
        format!(
            "{:#}",
            parse(args).expect_err("these flags must be refused")
        )
    }

    /// With no flags, the defaults are the tutorial's (and the documented ones).
    #[test]
    fn defaults_match_the_tutorial() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.addr, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(config.pacing.chunk().get(), 10);
        assert_eq!(config.pacing.delay(), Duration::from_millis(700));
        assert_eq!(config.workers.get(), 256);
        assert_eq!(config.write_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    /// IPv6 addresses and fractional delays parse into the right types.
    #[test]
    fn ipv6_and_decimal_delays_are_accepted() {
        let config = parse(&["--iface", "::1", "--port", "0", "--delay", "0.05"]).unwrap();
        assert_eq!(config.addr, "[::1]:0".parse().unwrap());
        assert_eq!(config.pacing.delay(), Duration::from_millis(50));
        assert!(parse(&["--delay", "0"]).unwrap().pacing.delay().is_zero());
    }

    /// Every out-of-range value is refused, naming its flag.
    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(error(&["--iface", "localhost"]).contains("--iface 'localhost'"));
        assert!(error(&["--num-bytes", "0"]).contains("--num-bytes 0"));
        assert!(error(&["--workers", "0"]).contains("--workers 0"));
        assert!(error(&["--write-timeout", "0"]).contains("--write-timeout 0"));
        for delay in ["-1", "-0.5", "nan", "inf", "-inf", "1e300"] {
            let flag = format!("--delay={delay}");
            assert!(error(&[&flag]).contains("invalid --delay"), "{flag}");
        }
        assert!(error(&["--delay", "-1"]).contains("invalid --delay -1"));
        assert!(error(&["--shutdown-grace", "-1"]).contains("--shutdown-grace"));
    }

    /// Port numbers past 65535 never reach the server.
    #[test]
    fn ports_above_65535_are_refused_by_clap() {
        assert!(error(&["--port", "65536"]).contains("65536"));
    }
}

//! The validated [`Config`]: the second stage of reading the command line.
//!
//! [`crate::cli::Cli`] holds each option as typed, every value already checked on its own;
//! [`Config::from_cli`] resolves the addresses and checks the options against each other, so
//! the rest of the program works with types that rule out bad values and never checks them
//! again.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, LogFormat, Refused};
use crate::collection::Order;
use crate::faults::Faults;
use crate::pacing::Pacing;

/// Everything the server needs to know, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The poems' paths (files or directories), not yet opened: see
    /// [`crate::collection::Collection::open`].
    pub poems: Vec<PathBuf>,
    /// How each connection's poem is chosen.
    pub order: Order,
    /// Where to listen: every `--iface`, host names resolved, in order, without repeats.
    /// Never empty.
    pub listen: Vec<SocketAddr>,
    /// Chunk size and delay.
    pub pacing: Pacing,
    /// Size of the fixed worker pool.
    pub workers: NonZeroUsize,
    /// How long a write may make no progress before the client is dropped: from 1 ms to 24
    /// days, which the kernel holds as it is.
    pub write_timeout: Duration,
    /// How long shutdown waits for poems already streaming.
    pub shutdown_grace: Duration,
    /// Whether to set SO_REUSEPORT on the listener.
    pub reuse_port: bool,
    /// Most connections per source at once; `None` for no limit.
    pub max_per_source: Option<NonZeroU32>,
    /// Whether connections begin with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Where to serve metrics and health checks, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The fault played on purpose, if any, and the seed of every random draw.
    pub faults: Faults,
    /// How logs and the stats line are written.
    pub log_format: LogFormat,
}

impl Config {
    /// Resolves the addresses and checks the options against each other.
    pub fn from_cli(cli: Cli) -> Result<Config, Refused> {
        let mut listen = Vec::new();
        for iface in &cli.iface {
            for addr in resolve(iface, cli.port)? {
                if !listen.contains(&addr) {
                    listen.push(addr);
                }
            }
        }
        let (delay, jitter) = (cli.delay, cli.jitter);
        // The value parsers refused 0 for these.
        let chunk = NonZeroUsize::new(cli.num_bytes).expect("at least 1");
        let chunk_max = cli
            .num_bytes_max
            .map_or(chunk, |n| NonZeroUsize::new(n).expect("at least 1"));
        if chunk_max < chunk {
            let why = format!("must be at least --num-bytes ({chunk})");
            return Err(Refused::new("num-bytes-max", "<N>", chunk_max, why));
        }
        if delay.is_zero() && chunk_max > chunk {
            let why = "varies paced chunks: it needs a --delay above 0".into();
            return Err(Refused::new("num-bytes-max", "<N>", chunk_max, why));
        }
        // Chunk k leaves within `jitter` of k × delay: up to half the delay, no two deadlines
        // can swap, so every pause stays a pause.
        if !jitter.is_zero() && jitter > delay / 2 {
            let shown = humantime::format_duration(jitter);
            let why = match delay.is_zero() {
                true => "varies paced chunks: it needs a --delay above 0".into(),
                false => format!(
                    "must be at most half of --delay ({}), so that no two chunks swap",
                    humantime::format_duration(delay / 2)
                ),
            };
            return Err(Refused::new("jitter", "<DURATION>", shown, why));
        }
        let fault = cli.fault();
        Ok(Config {
            poems: cli.poems,
            order: cli.order,
            listen,
            pacing: Pacing::new(chunk, delay).varied(jitter, chunk_max),
            workers: NonZeroUsize::new(cli.workers).expect("at least 1"),
            write_timeout: cli.write_timeout,
            shutdown_grace: cli.shutdown_grace,
            reuse_port: cli.reuse_port,
            max_per_source: NonZeroU32::new(cli.max_per_source),
            proxy_protocol: cli.proxy_protocol,
            metrics: cli.metrics,
            faults: Faults {
                fault,
                rate: cli.fault_rate,
                seed: cli.seed,
            },
            log_format: cli.log_format,
        })
    }
}

/// The addresses `iface` stands for, with `port`: an IP address (IPv6 in brackets or not,
/// with a `%interface` scope or not), or a host name and every address it resolves to.
fn resolve(iface: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let bare = iface
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(iface);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Some((ip, scope)) = bare.split_once('%')
        && let Ok(ip) = ip.parse::<Ipv6Addr>()
    {
        let scope = scope_id(scope).map_err(|why| refused_iface(iface, why))?;
        return Ok(vec![SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))]);
    }
    let looks_like_a_name = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !looks_like_a_name {
        return Err(refused_iface(
            iface,
            "not an IP address or host name (try 127.0.0.1, ::1, localhost)".into(),
        ));
    }
    let mut found: Vec<SocketAddr> = Vec::new();
    let resolved = (bare, port)
        .to_socket_addrs()
        .map_err(|err| refused_iface(iface, format!("cannot resolve it: {err}")))?;
    for addr in resolved {
        if !found.contains(&addr) {
            found.push(addr);
        }
    }
    if found.is_empty() {
        return Err(refused_iface(iface, "it resolves to no address".into()));
    }
    Ok(found)
}

/// An IPv6 scope: an interface name (eth0) or its index.
fn scope_id(scope: &str) -> Result<u32, String> {
    if let Ok(index) = scope.parse() {
        return Ok(index);
    }
    crate::sys::interface_index(scope)
        .ok_or_else(|| format!("no network interface is called '{scope}'"))
}

fn refused_iface(iface: &str, why: String) -> Refused {
    Refused::new("iface", "<ADDR>", iface, why)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let argv = ["poetry-serve"].iter().chain(args).chain(&["poem.txt"]);
        Ok(Config::from_cli(Cli::try_parse_from(argv)?)?)
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
        assert_eq!(config.listen, ["127.0.0.1:10000".parse().unwrap()]);
        assert_eq!(config.pacing.chunk().get(), 10);
        assert_eq!(config.pacing.delay(), Duration::from_millis(700));
        assert_eq!(config.workers.get(), 256);
        assert_eq!(config.write_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    /// IPv6 addresses, with or without brackets, and fractional delays parse into the right
    /// types; so do the short options.
    #[test]
    fn addresses_and_decimal_delays_are_accepted() {
        let config = parse(&["--iface", "::1", "--port", "0", "--delay", "0.05"]).unwrap();
        assert_eq!(config.listen, ["[::1]:0".parse().unwrap()]);
        assert_eq!(config.pacing.delay(), Duration::from_millis(50));
        let config = parse(&["-i", "[::1]", "-p", "7", "-d", "0", "-n", "3", "-w", "2"]).unwrap();
        assert_eq!(config.listen, ["[::1]:7".parse().unwrap()]);
        assert!(config.pacing.delay().is_zero());
        assert_eq!((config.pacing.chunk().get(), config.workers.get()), (3, 2));
    }

    /// A host name is resolved at start-up to every address it has, and --iface repeats.
    #[test]
    fn host_names_resolve_and_iface_repeats() {
        let config = parse(&["--iface", "localhost", "--port", "5"]).unwrap();
        assert!(
            config
                .listen
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 5),
            "{:?}",
            config.listen
        );
        let config = parse(&["-i", "127.0.0.1", "-i", "::1", "-i", "127.0.0.1"]).unwrap();
        assert_eq!(
            config.listen,
            [
                "127.0.0.1:10000".parse().unwrap(),
                "[::1]:10000".parse().unwrap()
            ]
        );
    }

    /// An IPv6 scope names an interface, by name or index.
    #[test]
    fn ipv6_scopes_name_an_interface() {
        let config = parse(&["--iface", "fe80::1%lo"]).unwrap();
        let SocketAddr::V6(v6) = config.listen[0] else {
            panic!("not IPv6: {:?}", config.listen)
        };
        assert_eq!(v6.scope_id(), scope_id("lo").unwrap());
        assert!(error(&["--iface", "fe80::1%nosuchif0"]).contains("no network interface"));
        let err = error(&["--iface", "not an address"]);
        assert!(
            err.contains("invalid value 'not an address' for '--iface <ADDR>'"),
            "{err}"
        );
    }

    /// Faults take one at a time, with a share from 0 to 1; jitter and chunk sizes need
    /// pacing, and a largest chunk no smaller than the chunk.
    #[test]
    fn faults_and_variation_are_checked() {
        let config = parse(&["--reset-after", "7", "--fault-rate", "0.25", "--seed", "3"]).unwrap();
        assert_eq!(
            config.faults.fault,
            Some(crate::faults::Fault::ResetAfter(7))
        );
        assert_eq!((config.faults.rate, config.faults.seed), (0.25, Some(3)));
        assert!(error(&["--refuse", "--close-after", "3"]).contains("cannot be used with"));
        assert!(error(&["--fault-rate", "0.5"]).contains("required"));
        assert!(error(&["--refuse", "--fault-rate", "1.5"]).contains("from 0 to 1"));
        assert!(error(&["-n", "10", "--num-bytes-max", "5"]).contains("at least --num-bytes"));
        assert!(error(&["-d", "0", "--jitter", "5ms"]).contains("needs a --delay above 0"));
        let config = parse(&["--jitter", "50ms", "--num-bytes-max", "30"]).unwrap();
        // Up to half the delay (0.7 s by default), no two deadlines can swap.
        assert!(parse(&["--jitter", "350ms"]).is_ok());
        let err = error(&["--jitter", "351ms"]);
        assert!(
            err.contains("must be at most half of --delay (350ms)"),
            "{err}"
        );
        assert!(config.pacing.varies());
        assert!(!parse(&[]).unwrap().pacing.varies());
    }
}

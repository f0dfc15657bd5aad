//! The command line and the validated [`Config`] built from it.
//!
//! Parsing happens in two stages: clap fills [`Cli`] with the flags as the user typed them, then
//! [`Cli::validate`] turns them into a [`Config`] whose types rule out bad values, so the rest
//! of the program never checks them again.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::builder::BoolishValueParser;
use clap::{CommandFactory, Parser};

use crate::collection::Order;
use crate::faults::{Fault, Faults};
use crate::pacing::Pacing;

/// The values most duration options take: 0 or from 1 ns to one year.
const ANY_DURATION: Span = Span {
    zero: true,
    min: Duration::from_nanos(1),
    max: Duration::from_secs(365 * 24 * 3600),
    words: "0 or from 1ns to 1 year",
};

/// The values `--write-timeout` takes: what the kernel holds for both of the socket options it
/// becomes. `TCP_USER_TIMEOUT` counts whole milliseconds (0 would turn it off, and so would a
/// `SO_SNDTIMEO` under a microsecond) in an `int`, so it stops short of 2^31 ms, 24.8 days.
const WRITE_TIMEOUT: Span = Span {
    zero: false,
    min: Duration::from_millis(1),
    max: Duration::from_secs(24 * 24 * 3600),
    words: "from 1ms to 24 days",
};

/// How the range of a duration option is worded, for every error it can have.
const DURATION_EXAMPLES: &str = "such as 0.7, 500ms, 30s or 2m";

/// What `--help` ends with: what a daemon's help usually says beyond its flags.
const AFTER_LONG_HELP: &str = "\
Signals:
  SIGINT, SIGTERM  stop accepting; poems in flight get --shutdown-grace; exit 0
                   (a second signal exits at once)
  SIGHUP           reopen the poems (directories are scanned again)
  SIGUSR1          log the stats line, whatever the log level

Environment:
  RUST_LOG         log level on stderr: error, warn, info (default), debug, off
  POETRY_SERVE_*   each option, as [env: ...] above names it; the command line
                   wins; --iface takes a comma-separated list; a switch takes
                   1/0, true/false, yes/no or on/off

Exit status:
  0                stopped by a signal
  1                cannot start: a poem, the address, the thread limits
  2                bad command line
  128+N            a second signal N cut the shutdown short

Durations are seconds (0.7) or a number with a unit (500ms, 30s, 2m, 1h).";

/// Serve a poem slowly over TCP, a few bytes at a time, to every client.
///
/// Each connection gets the whole file in chunks of --num-bytes bytes, one chunk every --delay,
/// and is then closed. Try it with `nc -d localhost 10000`.
#[derive(Debug, Parser)]
#[command(
    version,
    max_term_width = 80,
    after_help = "Signals, RUST_LOG and exit status: see --help.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Poem files, or directories of .txt poems
    ///
    /// A directory's .txt files are served in name order. Any bytes, any size: a poem is read
    /// as it is served, never held in memory.
    #[arg(value_name = "POEM", required_unless_present = "generate")]
    pub poems: Vec<PathBuf>,

    /// How poems are picked
    ///
    /// With several poems, which one each new connection gets: sequential (the next one, in
    /// the order given, round and round) or random.
    #[arg(
        long,
        value_enum,
        default_value_t = Order::Sequential,
        hide_possible_values = true,
        env = "POETRY_SERVE_ORDER"
    )]
    pub order: Order,

    /// Port; 0 picks a free one
    ///
    /// The listening line on stdout names the port that was picked.
    #[arg(
        short,
        long,
        value_name = "PORT",
        default_value_t = 10000,
        allow_negative_numbers = true,
        value_parser = port,
        env = "POETRY_SERVE_PORT"
    )]
    pub port: u16,

    /// Address to listen on
    ///
    /// An IPv4 or IPv6 address (127.0.0.1, ::1 bracketed or not, 0.0.0.0, ::, a link-local address
    /// with its interface such as fe80::1%eth0), or a host name, resolved at start-up and
    /// listened on at every address it has (localhost: 127.0.0.1 and ::1). Repeat the option,
    /// or give a comma-separated list, to listen on several; each gets its own listening line.
    /// :: alone accepts IPv4 clients too.
    #[arg(
        short,
        long = "iface",
        value_name = "ADDR",
        default_value = "127.0.0.1",
        action = clap::ArgAction::Append,
        value_delimiter = ',',
        env = "POETRY_SERVE_IFACE"
    )]
    pub iface: Vec<String>,

    /// Bytes per chunk, at least 1
    #[arg(
        short,
        long,
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true,
        value_parser = at_least_one,
        env = "POETRY_SERVE_NUM_BYTES"
    )]
    pub num_bytes: usize,

    /// Pause between chunks
    ///
    /// Seconds (0.7, 0.05) or a number with a unit (500ms, 2s). With 0 the poem goes out as
    /// fast as the client takes it, whatever --num-bytes says.
    #[arg(
        short,
        long,
        value_name = "DURATION",
        default_value = "0.7",
        allow_hyphen_values = true,
        env = "POETRY_SERVE_DELAY"
    )]
    pub delay: String,

    /// Clients served at once
    ///
    /// Worker threads, started at launch; each streams one poem at a time, and other clients
    /// wait their turn. A paced poem holds its worker for minutes, and an idle worker costs
    /// about 10 KB of memory, so the default is generous.
    #[arg(
        short,
        long,
        value_name = "N",
        default_value_t = 256,
        allow_negative_numbers = true,
        value_parser = at_least_one,
        env = "POETRY_SERVE_WORKERS"
    )]
    pub workers: usize,

    /// Drop stalled clients after
    ///
    /// A client that accepts no data, or leaves what was sent unacknowledged (it has vanished),
    /// for this long is dropped. From 1ms to 24 days: the kernel's socket time-outs count
    /// milliseconds, and stop short of 25 days.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        allow_hyphen_values = true,
        env = "POETRY_SERVE_WRITE_TIMEOUT"
    )]
    pub write_timeout: String,

    /// Grace for poems in flight
    ///
    /// On SIGINT or SIGTERM, poems already streaming get this long to finish; then what is
    /// left is cut off. A second signal exits at once.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true,
        env = "POETRY_SERVE_SHUTDOWN_GRACE"
    )]
    pub shutdown_grace: String,

    /// Share the port with other processes
    ///
    /// Sets SO_REUSEPORT: several poetry-serve processes can listen on one port, and the
    /// kernel spreads new connections among them.
    #[arg(long, env = "POETRY_SERVE_REUSE_PORT", value_parser = BoolishValueParser::new())]
    pub reuse_port: bool,

    /// Cap on connections per source
    ///
    /// How many connections one source may hold at once, streaming or waiting; 0 means no
    /// limit.
    /// A source is an IPv4 address or an IPv6 /64. A connection over the limit is closed at
    /// once, unserved, and counted as rejected. Turn it on when serving the open Internet, so
    /// that one host cannot take every worker.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_parser = count,
        env = "POETRY_SERVE_MAX_PER_SOURCE"
    )]
    pub max_per_source: u32,

    /// Expect a PROXY header from a balancer
    ///
    /// Every connection must begin with a PROXY protocol header (v1 or v2), as a load
    /// balancer sends it, and the client it names is the peer: in the logs and for
    /// --max-per-source. A connection without a valid header within 5 s is closed. Only for a
    /// server reached through a balancer: a client could name any address.
    #[arg(long, env = "POETRY_SERVE_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: bool,

    /// Randomize deadlines by ± this
    ///
    /// Each chunk after the first leaves at a random moment within this much of its own
    /// deadline (uniformly), so the pauses vary and a client cannot count on them; the poem
    /// still ends on time, since the error does not add up. Needs --delay above 0.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0",
        allow_hyphen_values = true,
        env = "POETRY_SERVE_JITTER"
    )]
    pub jitter: String,

    /// Draw each chunk's size up to this many bytes
    ///
    /// Each chunk's size is drawn at random between --num-bytes and this (as toxiproxy's
    /// slicer does).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = at_least_one, env = "POETRY_SERVE_NUM_BYTES_MAX")]
    pub num_bytes_max: Option<usize>,

    /// Seed for jitter, chunk sizes and faults
    ///
    /// Makes every random draw repeatable: connection number n (in accept order) draws the
    /// same jitter, chunk sizes and fault in every run with this seed.
    #[arg(long, value_name = "N", env = "POETRY_SERVE_SEED")]
    pub seed: Option<u64>,

    /// Fault: send nothing after this many bytes
    ///
    /// After this many bytes of the poem, send nothing more: hold the connection until the
    /// client gives up or --write-timeout passes (outcome stalled).
    #[arg(
        long,
        value_name = "BYTES",
        group = "fault",
        env = "POETRY_SERVE_STALL_AFTER"
    )]
    pub stall_after: Option<u64>,

    /// Fault: close cleanly after this many bytes
    ///
    /// After this many bytes, close the connection cleanly, as if the poem ended there
    /// (outcome cut_short).
    #[arg(
        long,
        value_name = "BYTES",
        group = "fault",
        env = "POETRY_SERVE_CLOSE_AFTER"
    )]
    pub close_after: Option<u64>,

    /// Fault: reset after this many bytes
    ///
    /// Once the client has this many bytes, reset the connection (RST; outcome reset).
    #[arg(
        long,
        value_name = "BYTES",
        group = "fault",
        env = "POETRY_SERVE_RESET_AFTER"
    )]
    pub reset_after: Option<u64>,

    /// Fault: reset every connection at once
    ///
    /// Reset each connection as soon as it is accepted, sending nothing (outcome refused).
    #[arg(
        long,
        group = "fault",
        env = "POETRY_SERVE_REFUSE",
        value_parser = BoolishValueParser::new()
    )]
    pub refuse: bool,

    /// Share of connections faulted
    ///
    /// The share of connections, from 0 to 1, drawn at random (see --seed), that get the
    /// fault chosen; the others are served as usual. 1, the default, faults every one.
    #[arg(long, value_name = "P", default_value_t = 1.0, requires = "fault", value_parser = share, env = "POETRY_SERVE_FAULT_RATE")]
    pub fault_rate: f64,

    /// Serve Prometheus metrics and health checks
    ///
    /// Answer HTTP on this address (127.0.0.1:9100, say; port 0 picks a free one, and a line
    /// on stdout names it): GET /metrics in the Prometheus text format, /healthz (alive) and
    /// /readyz (accepting connections). Off by default. Keep it on loopback or a private
    /// network: it has no authentication.
    #[arg(long, value_name = "ADDR:PORT", value_parser = metrics_addr, env = "POETRY_SERVE_METRICS")]
    pub metrics: Option<SocketAddr>,

    /// Log as text or json
    ///
    /// Plain text (text), or one JSON object per line for log shippers (json).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        hide_possible_values = true,
        env = "POETRY_SERVE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Print a completion script or the man page
    ///
    /// A shell completion script (bash, zsh, fish, elvish, powershell) or the man page (man),
    /// on stdout. See the README for where to install them.
    #[arg(long, value_enum, value_name = "WHAT", hide_possible_values = true)]
    pub generate: Option<Generate>,
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

/// What `--generate` prints, all made from the same clap definition as `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page, in roff (`man -l` reads it).
    Man,
    /// Completion for bash.
    Bash,
    /// Completion for zsh.
    Zsh,
    /// Completion for fish.
    Fish,
    /// Completion for elvish.
    Elvish,
    /// Completion for PowerShell.
    Powershell,
}

impl Generate {
    /// Writes the man page or the completion script to `out`.
    pub fn write(self, out: &mut dyn Write) -> io::Result<()> {
        use clap_complete::Shell;
        let mut command = Cli::definition();
        let name = command.get_name().to_string();
        let shell = match self {
            Generate::Man => return clap_mangen::Man::new(command).render(out),
            Generate::Bash => Shell::Bash,
            Generate::Zsh => Shell::Zsh,
            Generate::Fish => Shell::Fish,
            Generate::Elvish => Shell::Elvish,
            Generate::Powershell => Shell::PowerShell,
        };
        clap_complete::generate(shell, &mut command, name, out);
        Ok(())
    }
}

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

impl Cli {
    /// The definition the parser, `--help` and the man page use: each option's variable is
    /// named in its long help only (`--help`), so that `-h` keeps one line per option.
    pub fn definition() -> clap::Command {
        Cli::command().mut_args(|arg| {
            let Some(env) = arg.get_env().map(|env| env.to_string_lossy().into_owned()) else {
                return arg;
            };
            let help = arg.get_long_help().or(arg.get_help());
            let help = help.map(ToString::to_string).unwrap_or_default();
            arg.hide_env(true)
                .long_help(format!("{help}\n\n[env: {env}]"))
        })
    }

    /// Checks every flag and builds the [`Config`], or says which flag is wrong and why.
    pub fn validate(self) -> anyhow::Result<Config> {
        let mut listen = Vec::new();
        for iface in &self.iface {
            for addr in resolve(iface, self.port)? {
                if !listen.contains(&addr) {
                    listen.push(addr);
                }
            }
        }
        let delay = duration("--delay", &self.delay, ANY_DURATION)?;
        let jitter = duration("--jitter", &self.jitter, ANY_DURATION)?;
        // The value parsers refused 0 for these.
        let chunk = NonZeroUsize::new(self.num_bytes).expect("at least 1");
        let chunk_max = self
            .num_bytes_max
            .map_or(chunk, |n| NonZeroUsize::new(n).expect("at least 1"));
        if chunk_max < chunk {
            bail!("invalid --num-bytes-max {chunk_max}: it must be at least --num-bytes ({chunk})");
        }
        if delay.is_zero() && (!jitter.is_zero() || chunk_max > chunk) {
            bail!("--jitter and --num-bytes-max vary paced chunks: they need a --delay above 0");
        }
        let fault = match (
            self.stall_after,
            self.close_after,
            self.reset_after,
            self.refuse,
        ) {
            (Some(n), _, _, _) => Some(Fault::StallAfter(n)),
            (_, Some(n), _, _) => Some(Fault::CloseAfter(n)),
            (_, _, Some(n), _) => Some(Fault::ResetAfter(n)),
            (_, _, _, true) => Some(Fault::Refuse),
            _ => None,
        };
        Ok(Config {
            poems: self.poems,
            order: self.order,
            listen,
            pacing: Pacing::new(chunk, delay).varied(jitter, chunk_max),
            workers: NonZeroUsize::new(self.workers).expect("at least 1"),
            write_timeout: duration("--write-timeout", &self.write_timeout, WRITE_TIMEOUT)?,
            shutdown_grace: duration("--shutdown-grace", &self.shutdown_grace, ANY_DURATION)?,
            reuse_port: self.reuse_port,
            max_per_source: NonZeroU32::new(self.max_per_source),
            proxy_protocol: self.proxy_protocol,
            metrics: self.metrics,
            faults: Faults {
                fault,
                rate: self.fault_rate,
                seed: self.seed,
            },
            log_format: self.log_format,
        })
    }
}

/// The addresses `iface` stands for, with `port`: an IP address (IPv6 in brackets or not,
/// with a `%interface` scope or not), or a host name and every address it resolves to.
fn resolve(iface: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
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
        let scope = scope_id(scope).with_context(|| format!("invalid --iface '{iface}'"))?;
        return Ok(vec![SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))]);
    }
    let looks_like_a_name = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !looks_like_a_name {
        bail!(
            "invalid --iface '{iface}': not an IP address or host name (try 127.0.0.1, ::1, \
             localhost)"
        );
    }
    let mut found: Vec<SocketAddr> = Vec::new();
    let resolved = (bare, port)
        .to_socket_addrs()
        .with_context(|| format!("invalid --iface '{iface}': cannot resolve it"))?;
    for addr in resolved {
        if !found.contains(&addr) {
            found.push(addr);
        }
    }
    if found.is_empty() {
        bail!("invalid --iface '{iface}': it resolves to no address");
    }
    Ok(found)
}

/// An IPv6 scope: an interface name (eth0) or its index.
fn scope_id(scope: &str) -> anyhow::Result<u32> {
    if let Ok(index) = scope.parse() {
        return Ok(index);
    }
    match crate::sys::interface_index(scope) {
        Some(index) => Ok(index),
        None => bail!("no network interface is called '{scope}'"),
    }
}

/// The values a duration option takes.
#[derive(Clone, Copy)]
struct Span {
    /// Whether 0 is allowed (it turns the option's effect off).
    zero: bool,
    /// The shortest value above 0.
    min: Duration,
    /// The longest value.
    max: Duration,
    /// The range, as every error of the option words it.
    words: &'static str,
}

/// Turns a duration typed by the user into a [`Duration`]: bare seconds as in the tutorial
/// (0.7), or a number with a unit (500ms, 2m). A value outside `span` is refused, one too small
/// to keep (under a nanosecond) included, rather than silently made zero or cut.
fn duration(flag: &str, text: &str, span: Span) -> anyhow::Result<Duration> {
    let refuse = || {
        anyhow::anyhow!(
            "invalid {flag} '{text}': must be {}, {DURATION_EXAMPLES}",
            span.words
        )
    };
    let parsed = match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=span.max.as_secs_f64()).contains(&secs) => {
            let kept = Duration::from_secs_f64(secs);
            // A positive number that rounds to zero would silently turn pacing off.
            if secs > 0.0 && kept.is_zero() {
                return Err(refuse());
            }
            kept
        }
        Ok(_) => return Err(refuse()),
        Err(_) => humantime::parse_duration(text.trim()).map_err(|_| refuse())?,
    };
    let allowed = match parsed.is_zero() {
        true => span.zero,
        false => (span.min..=span.max).contains(&parsed),
    };
    if !allowed {
        return Err(refuse());
    }
    Ok(parsed)
}

/// clap's parser for `--port`, with a message that says what a port is.
fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| "must be a port number from 0 to 65535 (0 picks a free one)".into())
}

/// clap's parser for `--metrics`: an address and a port.
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "must be an address and a port, such as 127.0.0.1:9100 or [::1]:0".into())
}

/// clap's parser for `--fault-rate`.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("must be a share from 0 to 1, such as 0.25".into()),
    }
}

/// clap's parser for counts that must be at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

/// clap's parser for `--max-per-source`.
fn count(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("must be a whole number from 0 (no limit) to {}", u32::MAX))
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
    }

    /// Durations take units, and bare seconds as in the tutorial.
    #[test]
    fn durations_take_units() {
        let config = parse(&[
            "-d",
            "500ms",
            "--write-timeout",
            "2m",
            "--shutdown-grace",
            "1.5",
        ]);
        let config = config.unwrap();
        assert_eq!(config.pacing.delay(), Duration::from_millis(500));
        assert_eq!(config.write_timeout, Duration::from_secs(120));
        assert_eq!(config.shutdown_grace, Duration::from_millis(1500));
    }

    /// Every out-of-range value is refused, naming its flag, with one wording per range.
    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(error(&["--iface", "not an address"]).contains("--iface 'not an address'"));
        for delay in [
            "-1",
            "-0.5",
            "nan",
            "inf",
            "-inf",
            "1e300",
            "1e-12",
            "2 fortnights",
        ] {
            let flag = format!("--delay={delay}");
            let err = error(&[&flag]);
            assert!(
                err.contains(&format!(
                    "invalid --delay '{delay}': must be 0 or from 1ns to 1 year"
                )),
                "{err}"
            );
        }
        for timeout in [
            "0",
            "0s",
            "400d",
            "999us",
            "1ns",
            "0.0009",
            "25d",
            "2073600.001",
        ] {
            let err = error(&["--write-timeout", timeout]);
            let range = format!("invalid --write-timeout '{timeout}': must be from 1ms to 24 days");
            assert!(err.contains(&range), "{err}");
        }
        for (timeout, kept) in [("1ms", 1), ("0.001", 1), ("24d", 24 * 24 * 3600 * 1000)] {
            let config = parse(&["--write-timeout", timeout]).unwrap();
            assert_eq!(
                config.write_timeout,
                Duration::from_millis(kept),
                "{timeout}"
            );
        }
        assert!(error(&["--shutdown-grace", "-1"]).contains("--shutdown-grace"));
    }

    /// Numbers out of range, negative ones included, are refused by the parser with a message
    /// that says what the flag takes.
    #[test]
    fn numbers_out_of_range_say_what_is_allowed() {
        for (flag, value, says) in [
            ("--port", "-1", "port number from 0 to 65535"),
            ("--port", "65536", "port number from 0 to 65535"),
            ("--num-bytes", "0", "at least 1"),
            ("--workers", "-3", "at least 1"),
            ("--max-per-source", "-1", "from 0 (no limit)"),
        ] {
            let err = error(&[flag, value]);
            assert!(
                err.contains(value) && err.contains(says),
                "{flag} {value}: {err}"
            );
        }
    }

    /// Faults take one at a time, with a share from 0 to 1; jitter and chunk sizes need
    /// pacing, and a largest chunk no smaller than the chunk.
    #[test]
    fn faults_and_variation_are_checked() {
        let config = parse(&["--reset-after", "7", "--fault-rate", "0.25", "--seed", "3"]).unwrap();
        assert_eq!(config.faults.fault, Some(Fault::ResetAfter(7)));
        assert_eq!((config.faults.rate, config.faults.seed), (0.25, Some(3)));
        assert!(error(&["--refuse", "--close-after", "3"]).contains("cannot be used with"));
        assert!(error(&["--fault-rate", "0.5"]).contains("required"));
        assert!(error(&["--refuse", "--fault-rate", "1.5"]).contains("from 0 to 1"));
        assert!(error(&["-n", "10", "--num-bytes-max", "5"]).contains("at least --num-bytes"));
        assert!(error(&["-d", "0", "--jitter", "5ms"]).contains("need a --delay above 0"));
        let config = parse(&["--jitter", "50ms", "--num-bytes-max", "30"]).unwrap();
        assert!(config.pacing.varies());
        assert!(!parse(&[]).unwrap().pacing.varies());
    }

    /// The completion scripts and the man page come from the same definition, and name the
    /// flags.
    #[test]
    fn completions_and_man_page_name_the_flags() {
        for what in [Generate::Man, Generate::Bash, Generate::Zsh, Generate::Fish] {
            let mut out = Vec::new();
            what.write(&mut out).unwrap();
            // roff escapes the hyphens: \-\-max\-per\-source.
            let text = String::from_utf8(out).unwrap().replace('\\', "");
            assert!(text.contains("max-per-source"), "{what:?}");
        }
    }
}

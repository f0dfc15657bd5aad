//! The command line: every option with its help, its environment variable and the parser
//! that refuses a bad value, grouped under the headings `--help` shows.
//!
//! This is the first of two stages (ripgrep's low-level arguments, fd's `cli.rs`): clap turns
//! the command line and the environment into a [`Cli`] of typed values, each refused in one
//! wording (`invalid value 'x' for '--port <PORT>': …`), and [`crate::config::Config`] then
//! checks the flags against each other.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::collection::Order;
use crate::faults::Fault;

/// The values most duration options take: 0 or from 1 ns to one year.
const ANY_DURATION: Span = Span {
    zero: true,
    min: Duration::from_nanos(1),
    // humantime's year, so that `1y` is a year.
    max: Duration::from_secs(31_557_600),
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
    override_usage = "poetry-serve [OPTIONS] <POEM>...\n       poetry-serve --generate <WHAT>",
    after_help = "Signals, RUST_LOG and exit status: see --help.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Poem files, or directories of .txt poems
    ///
    /// A directory's .txt files are served in name order. Any bytes, any size: a poem is read
    /// as it is served, never held in memory.
    #[arg(value_name = "POEM", required = true)]
    pub poems: Vec<PathBuf>,

    /// Port; 0 picks a free one
    ///
    /// The listening line on stdout names the port that was picked.
    #[arg(
        help_heading = "Listening",
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
    /// listened on at every address it resolves to. Repeat the option,
    /// or give a comma-separated list, to listen on several; each gets its own listening line.
    /// :: alone accepts IPv4 clients too.
    #[arg(
        help_heading = "Listening",
        short,
        long = "iface",
        value_name = "ADDR",
        default_value = "127.0.0.1",
        action = clap::ArgAction::Append,
        value_delimiter = ',',
        env = "POETRY_SERVE_IFACE"
    )]
    pub iface: Vec<String>,

    /// Share the port with other processes
    ///
    /// Sets SO_REUSEPORT: several poetry-serve processes can listen on one port, and the
    /// kernel spreads new connections among them.
    #[arg(
        help_heading = "Listening",
        long,
        env = "POETRY_SERVE_REUSE_PORT",
        value_parser = switch
    )]
    pub reuse_port: bool,

    /// Expect a PROXY header from a balancer
    ///
    /// Every connection must begin with a PROXY protocol header (v1 or v2), as a load
    /// balancer sends it, and the client it names is the peer: in the logs and for
    /// --max-per-source. A connection without a valid header within 5 s is closed. Only for a
    /// server reached through a balancer: a client could name any address.
    #[arg(
        help_heading = "Listening",
        long,
        env = "POETRY_SERVE_PROXY_PROTOCOL",
        value_parser = switch
    )]
    pub proxy_protocol: bool,

    /// Bytes per chunk, at least 1
    #[arg(
        help_heading = "Pacing",
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
        help_heading = "Pacing",
        short,
        long,
        value_name = "DURATION",
        default_value = "0.7",
        allow_hyphen_values = true,
        value_parser = any_duration,
        env = "POETRY_SERVE_DELAY"
    )]
    pub delay: Duration,

    /// How poems are picked
    ///
    /// With several poems, which one each new connection gets: sequential (the next one, in
    /// the order given, round and round) or random.
    #[arg(
        help_heading = "Pacing",
        long,
        value_enum,
        default_value_t = Order::Sequential,
        hide_possible_values = true,
        env = "POETRY_SERVE_ORDER"
    )]
    pub order: Order,

    /// Randomize deadlines by ± this
    ///
    /// Each chunk after the first leaves at a random moment within this much of its own
    /// deadline (uniformly), so the pauses vary and a client cannot count on them; the poem
    /// still ends on time, since the error does not add up. At most half of --delay, so that
    /// no two chunks swap and every pause stays a pause.
    #[arg(
        help_heading = "Pacing",
        long,
        value_name = "DURATION",
        default_value = "0",
        allow_hyphen_values = true,
        value_parser = any_duration,
        env = "POETRY_SERVE_JITTER"
    )]
    pub jitter: Duration,

    /// Draw each chunk's size up to this many bytes
    ///
    /// Each chunk's size is drawn at random between --num-bytes and this (as toxiproxy's
    /// slicer does).
    #[arg(
        help_heading = "Pacing",
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = at_least_one,
        env = "POETRY_SERVE_NUM_BYTES_MAX"
    )]
    pub num_bytes_max: Option<usize>,

    /// Clients served at once
    ///
    /// Worker threads, started at launch; each streams one poem at a time, and other clients
    /// wait their turn. A paced poem holds its worker for minutes, and an idle worker costs
    /// about 10 KB of memory, so the default is generous.
    #[arg(
        help_heading = "Limits",
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
        help_heading = "Limits",
        long,
        value_name = "DURATION",
        default_value = "30s",
        allow_hyphen_values = true,
        value_parser = write_timeout,
        env = "POETRY_SERVE_WRITE_TIMEOUT"
    )]
    pub write_timeout: Duration,

    /// Grace for poems in flight
    ///
    /// On SIGINT or SIGTERM, poems already streaming get this long to finish; then what is
    /// left is cut off. A second signal exits at once.
    #[arg(
        help_heading = "Limits",
        long,
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true,
        value_parser = any_duration,
        env = "POETRY_SERVE_SHUTDOWN_GRACE"
    )]
    pub shutdown_grace: Duration,

    /// Cap on connections per source
    ///
    /// How many connections one source may hold at once, streaming or waiting; 0 means no
    /// limit.
    /// A source is an IPv4 address or an IPv6 /64. A connection over the limit is closed at
    /// once, unserved, and counted as rejected. Turn it on when serving the open Internet, so
    /// that one host cannot take every worker.
    #[arg(
        help_heading = "Limits",
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_parser = count,
        env = "POETRY_SERVE_MAX_PER_SOURCE"
    )]
    pub max_per_source: u32,

    /// Fault: send nothing after this many bytes
    ///
    /// After this many bytes of the poem, send nothing more: hold the connection until the
    /// client gives up or --write-timeout passes (outcome stalled).
    #[arg(
        help_heading = "Faults",
        long,
        value_name = "BYTES",
        group = "fault",
        allow_negative_numbers = true,
        value_parser = bytes,
        env = "POETRY_SERVE_STALL_AFTER"
    )]
    pub stall_after: Option<u64>,

    /// Fault: close cleanly after this many bytes
    ///
    /// After this many bytes, close the connection cleanly, as if the poem ended there
    /// (outcome cut_short).
    #[arg(
        help_heading = "Faults",
        long,
        value_name = "BYTES",
        group = "fault",
        allow_negative_numbers = true,
        value_parser = bytes,
        env = "POETRY_SERVE_CLOSE_AFTER"
    )]
    pub close_after: Option<u64>,

    /// Fault: reset after this many bytes
    ///
    /// Once the client has this many bytes, reset the connection (RST; outcome reset).
    #[arg(
        help_heading = "Faults",
        long,
        value_name = "BYTES",
        group = "fault",
        allow_negative_numbers = true,
        value_parser = bytes,
        env = "POETRY_SERVE_RESET_AFTER"
    )]
    pub reset_after: Option<u64>,

    /// Fault: reset every connection at once
    ///
    /// Reset each connection as soon as it is accepted, sending nothing (outcome refused).
    #[arg(
        help_heading = "Faults",
        long,
        group = "fault",
        env = "POETRY_SERVE_REFUSE",
        value_parser = switch
    )]
    pub refuse: bool,

    /// Share of connections faulted
    ///
    /// The share of connections, from 0 to 1, drawn at random (see --seed), that get the
    /// fault chosen; the others are served as usual. 1, the default, faults every one.
    #[arg(
        help_heading = "Faults",
        long,
        value_name = "P",
        default_value_t = 1.0,
        requires = "fault",
        allow_negative_numbers = true,
        value_parser = share,
        env = "POETRY_SERVE_FAULT_RATE"
    )]
    pub fault_rate: f64,

    /// Seed that makes every random draw repeatable
    ///
    /// Makes every random draw repeatable: connection number n (in accept order) gets the
    /// same poem (with --order random), jitter, chunk sizes and fault in every run with this
    /// seed.
    #[arg(
        help_heading = "Faults",
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = seed,
        env = "POETRY_SERVE_SEED"
    )]
    pub seed: Option<u64>,

    /// Serve metrics, health checks and a live status page
    ///
    /// Answer HTTP on this address and port (127.0.0.1:9100 or localhost:9100, say: a host name is
    /// resolved at start-up, and its first address is used; port 0 picks a free one, and a line on
    /// stdout names it): GET /metrics in the Prometheus text format, /healthz (alive), /readyz
    /// (accepting connections), and / (a status page: every connection being served, with its
    /// client's address) with /status.json (the same as JSON). Off by default. Keep it on loopback
    /// or a private network: it has no authentication, and the page shows client addresses.
    #[arg(
        help_heading = "Operations",
        long,
        value_name = "ADDR:PORT",
        value_parser = metrics_addr,
        env = "POETRY_SERVE_METRICS"
    )]
    pub metrics: Option<SocketAddr>,

    /// Log as text or json
    ///
    /// Plain text (text), or one JSON object per line for log shippers (json).
    #[arg(
        help_heading = "Operations",
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
    #[arg(
        help_heading = "Operations",
        long,
        value_enum,
        value_name = "WHAT",
        hide_possible_values = true,
        exclusive = true
    )]
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

    /// Reads the command line and the environment. A bad value is refused in one line, which
    /// names the variable it came from if it came from one; anything else clap says (usage
    /// errors, `--help`, `--version`) is clap's to print.
    pub fn parse_args() -> Result<(Cli, Origins), Refusal> {
        let matches = match Cli::definition().try_get_matches() {
            Ok(matches) => matches,
            Err(err) if is_bad_value(&err) => {
                return Err(Refusal::BadValue(one_line(&err, refused_variable(&err))));
            }
            Err(err) => return Err(Refusal::Usage(err)),
        };
        let cli = Cli::from_arg_matches(&matches).map_err(Refusal::Usage)?;
        Ok((cli, Origins(matches)))
    }

    /// The fault asked for, if any: clap lets at most one of the fault options through.
    pub fn fault(&self) -> Option<Fault> {
        match (
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
        }
    }

    /// Whether the command line or the environment asks for JSON logs, read leniently: for
    /// the error line of a command line that was refused.
    pub fn wants_json_logs() -> bool {
        // Read by hand: clap stops at the first bad value, which may come before the format.
        // The last --log-format on the command line wins, then the variable.
        let mut args = std::env::args().skip(1);
        let mut typed = None;
        while let Some(arg) = args.next() {
            if arg == "--" {
                break;
            }
            if arg == "--log-format" {
                typed = args.next();
            } else if let Some(value) = arg.strip_prefix("--log-format=") {
                typed = Some(value.to_owned());
            }
        }
        let format = typed.or_else(|| std::env::var("POETRY_SERVE_LOG_FORMAT").ok());
        format.is_some_and(|format| format.eq_ignore_ascii_case("json"))
    }
}

/// Why the command line was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// A value no option takes: one line, without the `error: ` prefix.
    BadValue(String),
    /// A usage error, or `--help` or `--version`: clap prints it and picks the exit status.
    Usage(clap::Error),
}

/// Where each option's value came from: the command line, the environment or the default.
#[derive(Debug)]
pub struct Origins(ArgMatches);

impl Origins {
    /// The line for a value [`crate::config::Config::from_cli`] refused, naming the variable
    /// it came from as a refusal of clap's does.
    pub fn refusal(&self, refused: &Refused) -> String {
        in_variable(refused.to_string(), self.variable_of(refused.long))
    }

    /// The environment variable that set the option `--long`, if one did.
    fn variable_of(&self, long: &str) -> Option<String> {
        let command = Cli::definition();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))?;
        let id = arg.get_id().as_str();
        (self.0.value_source(id) == Some(ValueSource::EnvVariable))
            .then(|| arg.get_env())??
            .to_str()
            .map(str::to_owned)
    }
}

/// A value the command line's parsers took on its own but that does not fit with the others,
/// or names an address that does not resolve; worded as clap words a value it refuses.
#[derive(Debug)]
pub struct Refused {
    /// The option's long name, without the dashes.
    pub long: &'static str,
    line: String,
}

impl Refused {
    /// The refusal of `value` for `--long VALUE_NAME`, because `why`.
    pub fn new(
        long: &'static str,
        value_name: &str,
        value: impl std::fmt::Display,
        why: String,
    ) -> Self {
        let line = format!("invalid value '{value}' for '--{long} {value_name}': {why}");
        Refused { long, line }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for Refused {}

/// Whether clap refused a value: one our parsers refused, or not one of an enum's.
fn is_bad_value(err: &clap::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    )
}

/// clap's error for a refused value in one line: its first, with the possible values of an
/// enum (which clap puts on a line of their own) kept on it; `in $VARIABLE: ` before it when
/// the value came from one.
fn one_line(err: &clap::Error, variable: Option<String>) -> String {
    let text = err.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let values = lines
        .next()
        .map(str::trim)
        .filter(|line| line.starts_with("[possible"));
    let line = [Some(first), values]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    in_variable(line, variable)
}

/// `line`, with `in $VARIABLE: ` before it when the value it refuses came from one.
fn in_variable(line: String, variable: Option<String>) -> String {
    match variable {
        Some(name) => format!("in ${name}: {line}"),
        None => line,
    }
}

/// The variable holding the value one of clap's parsers refused, if the value came from one.
/// clap reads the command line first and a variable only for an option absent from it, so
/// the value was the variable's if the command line alone has nothing to refuse.
fn refused_variable(err: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let mut command = Cli::definition();
    command.build(); // an argument shows as in the error ("--port <PORT>") once built
    let arg = command
        .get_arguments()
        .find(|arg| arg.to_string() == *shown)?;
    let name = arg.get_env()?;
    std::env::var_os(name)?;
    let without_env = Cli::definition()
        .mut_args(|arg| arg.env(None))
        .try_get_matches();
    let on_command_line = matches!(&without_env, Err(err) if is_bad_value(err));
    (!on_command_line).then(|| name.to_string_lossy().into_owned())
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
fn duration(text: &str, span: Span) -> Result<Duration, String> {
    let refuse = || format!("must be {}, {DURATION_EXAMPLES}", span.words);
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
    allowed.then_some(parsed).ok_or_else(refuse)
}

/// clap's parser for most duration options.
fn any_duration(text: &str) -> Result<Duration, String> {
    duration(text, ANY_DURATION)
}

/// clap's parser for `--write-timeout`.
fn write_timeout(text: &str) -> Result<Duration, String> {
    duration(text, WRITE_TIMEOUT)
}

/// clap's parser for `--port`, with a message that says what a port is.
fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| "must be a port number from 0 to 65535 (0 picks a free one)".into())
}

/// clap's parser for `--metrics`: an address or a host name, and a port. A name is resolved
/// once, here, and the first address it resolves to is used.
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let refuse = || {
        "must be an address or host name and a port, such as 127.0.0.1:9100, \
        [::1]:0 or localhost:9100"
            .to_string()
    };
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut found = (host, port).to_socket_addrs().map_err(|_| refuse())?;
    found.next().ok_or_else(refuse)
}

/// clap's parser for the fault options' byte counts.
fn bytes(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("must be a whole number of bytes, from 0 to {}", u64::MAX))
}

/// clap's parser for `--seed`.
fn seed(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("must be a whole number from 0 to {}", u64::MAX))
}

/// clap's parser for the switches' values, which only a variable gives them.
fn switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be 1 or 0, true or false, yes or no, on or off".into()),
    }
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

impl Generate {
    /// Writes the man page or the completion script to `out`.
    pub fn write(self, out: &mut dyn Write) -> io::Result<()> {
        use clap_complete::Shell;
        let mut command = Cli::definition();
        let name = command.get_name().to_string();
        let shell = match self {
            Generate::Man => return man_page(command, out),
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

/// The man page: clap_mangen's title, name, description and options, with the synopsis and
/// the closing sections a man page reader looks for written here, in roff.
fn man_page(command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command);
    man.render_title(out)?;
    man.render_name_section(out)?;
    out.write_all(SYNOPSIS.as_bytes())?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    out.write_all(CLOSING_SECTIONS.as_bytes())?;
    man.render_version_section(out)
}

/// The man page's synopsis, as `-h` shows the usage: POEM is required.
const SYNOPSIS: &str = r#".SH SYNOPSIS
.B poetry\-serve
[\fIOPTIONS\fR] \fIPOEM\fR...
.br
.B poetry\-serve
\fB\-\-generate\fR \fIWHAT\fR
"#;

/// The man page's sections after the options.
const CLOSING_SECTIONS: &str = r#".SH SIGNALS
.TP
\fBSIGINT\fR, \fBSIGTERM\fR
Stop accepting; poems in flight get \fB\-\-shutdown\-grace\fR, then the stats line is
logged and the server exits 0. A second signal exits at once.
.TP
\fBSIGHUP\fR
Reopen the poems; directories are scanned again. Poems already streaming finish with the
text they started with; if a poem cannot be opened, the old set is kept.
.TP
\fBSIGUSR1\fR
Log the stats line, whatever the log level.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
The log level on standard error: error, warn, info (the default), debug or off.
.TP
\fBPOETRY_SERVE_\fR\fIOPTION\fR
Each option, as \fBPOETRY_SERVE_\fR and its long name in upper case with \- as _
(\fBPOETRY_SERVE_PORT\fR, \fBPOETRY_SERVE_NUM_BYTES\fR). The command line wins.
\fB\-\-iface\fR takes a comma\-separated list; a switch takes 1 or 0, true or false,
yes or no, on or off.
.TP
\fBNOTIFY_SOCKET\fR, \fBLISTEN_FDS\fR, \fBLISTEN_PID\fR
Set by systemd: readiness notifications, and listening sockets handed over by socket
activation, which replace \fB\-\-iface\fR and \fB\-\-port\fR.
.SH EXIT STATUS
.TP
.B 0
Stopped by a signal.
.TP
.B 1
Cannot start: a poem, the address, the thread limits.
.TP
.B 2
A bad command line.
.TP
.BI 128+ N
A second signal \fIN\fR cut the shutdown short.
.SH FILES
.TP
.I /usr/share/poetry\-serve/poems/
The poems shipped with the Debian package and the container image.
.SH EXAMPLES
.TP
.B poetry\-serve \-\-port 10000 poems/ecstasy.txt
Serve one poem, 10 bytes every 0.7 s, on 127.0.0.1:10000; fetch it with
\fBnc \-d localhost 10000\fR.
.TP
.B poetry\-serve \-\-delay 0.1 \-\-num\-bytes 7 poems/
Serve every .txt poem in a directory, in turn, faster.
.TP
.B poetry\-serve \-\-iface :: \-\-max\-per\-source 16 \-\-metrics 127.0.0.1:9100 poems/
A tarpit in the open: every address, at most 16 connections per source, metrics on
loopback.
.SH SEE ALSO
.BR nc (1),
.BR socat (1),
.BR systemd.socket (5),
.BR endlessh (1)
.PP
Dave Peticolas, \fIAn Introduction to Asynchronous Programming and Twisted\fR, part 1:
http://krondo.com/in\-which\-we\-begin\-at\-the\-beginning/
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let argv = ["poetry-serve"].iter().chain(args).chain(&["poem.txt"]);
        Cli::try_parse_from(argv)
    }

    fn error(args: &[&str]) -> String {
        parse(args)
            .expect_err("these flags must be refused")
            .to_string()
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
        let cli = config.unwrap();
        assert_eq!(cli.delay, Duration::from_millis(500));
        assert_eq!(cli.write_timeout, Duration::from_secs(120));
        assert_eq!(cli.shutdown_grace, Duration::from_millis(1500));
        // "Up to 1 year" takes a year as humantime spells it.
        assert!(parse(&["--shutdown-grace", "1y"]).is_ok());
        assert!(parse(&["--shutdown-grace", "1y 1s"]).is_err());
    }

    /// Every out-of-range value is refused, naming its flag, with one wording per range.
    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
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
                    "invalid value '{delay}' for '--delay <DURATION>': must be 0 or from 1ns to \
                     1 year"
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
            let range = format!(
                "invalid value '{timeout}' for '--write-timeout <DURATION>': must be from 1ms to \
                 24 days"
            );
            assert!(err.contains(&range), "{err}");
        }
        for (timeout, kept) in [("1ms", 1), ("0.001", 1), ("24d", 24 * 24 * 3600 * 1000)] {
            let cli = parse(&["--write-timeout", timeout]).unwrap();
            assert_eq!(cli.write_timeout, Duration::from_millis(kept), "{timeout}");
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

    /// --metrics takes an address or a host name with a port, as --iface takes a name.
    #[test]
    fn metrics_take_a_host_name() {
        let cli = parse(&["--metrics", "localhost:0"]).unwrap();
        assert!(cli.metrics.is_some_and(|addr| addr.ip().is_loopback()));
        assert!(error(&["--metrics", "nowhere"]).contains("localhost:9100"));
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

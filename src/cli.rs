//! The command line: every option with its help and its parser, grouped under the headings
//! `--help` shows, each with a `POETRY_SERVE_<OPTION>` variable named from it; what `--help`
//! ends with and the man page's closing sections, from one list; and the [`Config`] it makes.
//!
//! clap refuses a bad value with its own error, which [`refusal`] words in one line (and names
//! the variable the value came from, which [`crate::sourced`] records); [`Cli::config`] then checks
//! the options against each other through [`Config::check`], in the same wording.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, EnumValueParser, TypedValueParser};

use crate::sourced::sourced;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::collection::Order;
use crate::config::{Config, Invalid, WRITE_TIMEOUTS, any_duration, duration};
use crate::faults::{FaultFlags, Faults};
use crate::ops::{self, logging::LogFormat};
use crate::pacing::Pacing;
use crate::script::Script;

/// Serve a poem slowly over TCP, a few bytes at a time, to every client.
///
/// Each connection gets the whole file in chunks of --num-bytes bytes, one chunk every --delay,
/// and is then closed. Try it with `nc -d localhost 10000`.
#[derive(Debug, Parser)]
#[command(
    version,
    max_term_width = 80,
    override_usage = "poetry-serve [OPTIONS] <POEM>...\n       poetry-serve --generate <WHAT>",
    after_help = "Signals, variables and exit status: see --help.",
    after_long_help = HELP_NOTES
)]
pub struct Cli {
    /// Poem files, or directories of .txt poems
    ///
    /// A directory's .txt files are served in name order. Any bytes, any size: a poem is read
    /// as it is served, never held in memory. Its variable holds one path.
    #[arg(value_name = "POEM", required_unless_present_any = ["generate", "health_check"])]
    pub poems: Vec<PathBuf>,

    #[command(flatten)]
    pub listening: Listening,

    #[command(flatten)]
    pub pacing: PacingFlags,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub faults: FaultFlags,

    #[command(flatten)]
    pub chance: Chance,

    #[command(flatten)]
    pub operations: Operations,
}

/// Where and how to listen.
#[derive(Debug, Args)]
#[command(next_help_heading = "Listening")]
pub struct Listening {
    /// Port; 0 picks a free one
    ///
    /// The listening line on stdout names the port that was picked.
    #[arg(short, long, default_value_t = 10000, allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u16)))]
    pub port: u16,

    /// Address to listen on
    ///
    /// An IPv4 or IPv6 address (127.0.0.1, ::1 bracketed or not, 0.0.0.0, ::, a link-local
    /// address with its interface such as fe80::1%eth0), or a host name, resolved at start-up
    /// and listened on at every address it resolves to. Repeat the option, or give a
    /// comma-separated list, to listen on several; each gets its own listening line. :: alone
    /// accepts IPv4 clients too.
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1", value_delimiter = ',')]
    pub iface: Vec<String>,

    /// Share the port with other processes
    ///
    /// Sets SO_REUSEPORT: several poetry-serve processes can listen on one port, and the kernel
    /// spreads new connections among them.
    #[arg(long, value_parser = sourced(BoolishValueParser::new()))]
    pub reuse_port: bool,

    /// Expect a PROXY header from a balancer
    ///
    /// Every connection must begin with a PROXY protocol header (v1 or v2), as a load balancer
    /// sends it, and the client it names is the peer: in the logs and for --max-per-source. A
    /// connection without a valid header within --proxy-timeout is closed. Only for a
    /// server reached through a balancer: a client could name any address.
    #[arg(long, value_parser = sourced(BoolishValueParser::new()))]
    pub proxy_protocol: bool,

    /// Time a PROXY header may take
    ///
    /// With --proxy-protocol, how long a connection has to send its whole header; a balancer
    /// sends it at once, so this only bounds how long a client that is not one holds a worker.
    #[arg(long, value_name = "DURATION", default_value = "5s", allow_hyphen_values = true, value_parser = sourced(write_timeout))]
    pub proxy_timeout: Duration,

    /// Connections awaiting a header
    ///
    /// With --proxy-protocol, how many connections one peer (a balancer, or whoever connects)
    /// may hold while their header has not come; more are closed at once (bad_header). A
    /// balancer's connections wait only as long as its header takes to arrive; 0 means no
    /// limit.
    #[arg(long, value_name = "N", default_value_t = 32, allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u32)))]
    pub proxy_max_waiting: u32,
}

/// How the poem is paced.
#[derive(Debug, Args)]
#[command(next_help_heading = "Pacing")]
pub struct PacingFlags {
    /// Bytes per chunk, at least 1
    #[arg(short, long, value_name = "N", default_value = "10", allow_negative_numbers = true, value_parser = sourced(at_least_one))]
    pub num_bytes: NonZeroUsize,

    /// Pause between chunks
    ///
    /// Seconds (0.7, 0.05) or a number with a unit (500ms, 2s). With 0 the poem goes out as fast
    /// as the client takes it, whatever --num-bytes says.
    #[arg(short, long, value_name = "DURATION", default_value = "0.7", allow_hyphen_values = true, value_parser = sourced(any_duration))]
    pub delay: Duration,

    /// How poems are picked
    ///
    /// With several poems, which one each new connection gets: sequential (the next one, in the
    /// order given, round and round) or random.
    #[arg(long, default_value = "sequential", hide_possible_values = true, value_parser = sourced(EnumValueParser::<Order>::new()))]
    pub order: Order,

    /// Randomize deadlines by ± this
    ///
    /// Each chunk after the first leaves at a random moment within this much of its own
    /// deadline (uniformly), so the pauses vary and a client cannot count on them; the poem
    /// still ends on time, since the error does not add up. At most half of --delay, so that no
    /// two chunks swap and every pause stays a pause.
    #[arg(long, value_name = "DURATION", default_value = "0", allow_hyphen_values = true, value_parser = sourced(any_duration))]
    pub jitter: Duration,

    /// Draw each chunk's size up to this many bytes
    ///
    /// Each chunk's size is drawn at random between --num-bytes and this (as toxiproxy's slicer
    /// does).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = sourced(at_least_one))]
    pub num_bytes_max: Option<NonZeroUsize>,
}

/// What the server and each client may hold.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Clients served at once
    ///
    /// Worker threads, started at launch; each streams one poem at a time, and other clients
    /// wait their turn in the listen backlog. A paced poem holds its worker for minutes, and an
    /// idle worker costs about 10 KB of memory, so the default is generous.
    #[arg(short, long, value_name = "N", default_value = "256", allow_negative_numbers = true, value_parser = sourced(at_least_one))]
    pub workers: NonZeroUsize,

    /// Drop stalled clients after
    ///
    /// A client that accepts no data, or leaves what was sent unacknowledged (it has vanished),
    /// for this long is dropped. From 1ms to 24 days: the kernel's socket time-outs count
    /// milliseconds, and stop short of 25 days.
    #[arg(long, value_name = "DURATION", default_value = "30s", allow_hyphen_values = true, value_parser = sourced(write_timeout))]
    pub write_timeout: Duration,

    /// Grace for poems in flight
    ///
    /// On SIGINT or SIGTERM, poems already streaming get this long to finish; then what is left
    /// is cut off. A second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "10s", allow_hyphen_values = true, value_parser = sourced(any_duration))]
    pub shutdown_grace: Duration,

    /// Cap on connections per source
    ///
    /// How many connections one source may hold at once, streaming or waiting; 0 means no
    /// limit. A source is an IPv4 address or an IPv6 /64. A connection over the limit is closed
    /// at once, unserved, and counted as rejected. Turn it on when serving the open Internet, so
    /// that one host cannot take every worker.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u32)))]
    pub max_per_source: u32,
}

/// Which connections get the fault, and the seed of every random draw.
#[derive(Debug, Args)]
#[command(next_help_heading = "Faults")]
pub struct Chance {
    /// Share of connections faulted
    ///
    /// The share of connections, from 0 to 1, drawn at random (see --seed), that get the fault
    /// chosen; the others are served as usual. 1, the default, faults every one.
    #[arg(long, value_name = "P", default_value_t = 1.0, requires = "fault", allow_negative_numbers = true, value_parser = sourced(share))]
    pub fault_rate: f64,

    /// Seed that makes every random draw repeatable
    ///
    /// Connection number n (in accept order) gets the same poem (with --order random), jitter,
    /// chunk sizes and fault in every run with this seed.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = sourced(clap::value_parser!(u64)))]
    pub seed: Option<u64>,

    /// Faults by connection number, from a file
    ///
    /// The faults (and pacing) each connection gets, by its number in accept order: the
    /// first N reset, every third stalled, the rest served... Read and checked at start-up,
    /// each mistake a line. The schema: docs/testing.md.
    #[arg(id = "faults", long = "faults", value_name = "FILE", conflicts_with_all = ["fault", "fault_rate", "close_delay", "accept_delay"], value_parser = sourced(clap::builder::PathBufValueParser::new()))]
    pub script: Option<PathBuf>,

    /// Hold each new connection this long
    ///
    /// Each connection waits this long after its handshake before it is served: the worker
    /// that accepts it holds it for the rest of the time. The client's connect succeeds at once
    /// (the kernel completes the handshake), and its first byte comes no sooner than this. Each
    /// connection waits its own time, and holds a worker meanwhile.
    #[arg(long, value_name = "DURATION", default_value = "0", allow_hyphen_values = true, value_parser = sourced(any_duration))]
    pub accept_delay: Duration,

    /// Accept nothing: connects time out
    ///
    /// Listen with the smallest backlog and never accept: once the backlog is full (after
    /// the first connect, on Linux), further connects get no answer, and a client's connect
    /// times out. The fault a proxy cannot make, since the kernel accepts for it.
    #[arg(long, value_parser = sourced(BoolishValueParser::new()))]
    pub blackhole: bool,

    /// Hold each close this long
    ///
    /// After the last byte (of the poem, or where --close-after stops it), wait this long
    /// before the close: a slow close.
    #[arg(long, value_name = "DURATION", default_value = "0", allow_hyphen_values = true, value_parser = sourced(any_duration))]
    pub close_delay: Duration,
}

/// Running it as a service.
#[derive(Debug, Args)]
#[command(next_help_heading = "Operations")]
pub struct Operations {
    /// Serve metrics, health and a status page
    ///
    /// Answer HTTP on this address and port (127.0.0.1:9100 or localhost:9100, say: a host name
    /// is resolved at start-up, and its first address is used; port 0 picks a free one, and a
    /// line on stdout names it): GET /metrics in the Prometheus text format, /healthz (alive),
    /// /readyz (accepting connections), and / (a status page: a timeline of the last minute's
    /// connections, those being served, with their clients' addresses) with /status.json (the
    /// same as JSON), /timeline.svg and /timeline.json (the timeline alone). Off by default. Keep
    /// it on loopback or a private network: it has no authentication.
    #[arg(long, value_name = "ADDR:PORT", value_parser = sourced(host_and_port))]
    pub metrics: Option<SocketAddr>,

    /// A host name the HTTP ports answer to
    ///
    /// Beside IP addresses and localhost, a name the pages of --metrics and the API of
    /// --control may be asked for by (the Host of a request); repeat it for several. Other
    /// names get 421: a web page whose name is made to resolve to this address (DNS
    /// rebinding) can neither read the pages nor change the faults.
    #[arg(long, value_name = "NAME", value_delimiter = ',', value_parser = sourced(host_name))]
    pub metrics_host: Vec<String>,

    /// Serve the control API (loopback only)
    ///
    /// Answer a JSON API on this address and port (127.0.0.1:9200, say; port 0 picks a free
    /// one, and a line on stdout names it) that reads the faults and pacing in force (GET
    /// /faults), replaces them at once for every connection accepted from then on (PUT
    /// /faults, with a script as --faults takes, in JSON), and goes back to the start-up ones
    /// (DELETE /faults). Off by default. It has no authentication: whoever reaches it changes
    /// what every client gets, so it listens on loopback only, unless --control-anywhere.
    #[arg(long, value_name = "ADDR:PORT", value_parser = sourced(host_and_port))]
    pub control: Option<SocketAddr>,

    /// Let --control listen beyond loopback (DANGER)
    ///
    /// Let --control take an address that is not loopback. Anyone who can reach it can then
    /// stall, reset or refuse every client of this server, with no password: use it only on a
    /// network where every host is yours (a test rig's private network, say).
    #[arg(long, requires = "control", value_parser = sourced(BoolishValueParser::new()))]
    pub control_anywhere: bool,

    /// Write a trace of every connection to FILE
    ///
    /// Write each connection's life to FILE as Chrome Trace Event JSON, which ui.perfetto.dev
    /// and chrome://tracing open: a track per worker, with a slice per connection (its peer,
    /// outcome and bytes) and a mark per chunk (its size and lateness), and a track with each
    /// connection's accept and its wait in the backlog. FILE is created, or emptied, at
    /// start-up (a FIFO's reader must be there first), and closed as valid JSON when the server
    /// stops, unless writing it failed. Bounded: it stops growing at 1 GiB, and events that come
    /// faster than they can be written are dropped rather than delay a chunk; the log says how
    /// many at the end. See docs/trace.md.
    #[arg(long, value_name = "FILE", value_parser = sourced(clap::builder::PathBufValueParser::new()))]
    pub trace: Option<PathBuf>,

    /// Log as text or json
    ///
    /// Plain text (text), or one JSON object per line for log shippers (json).
    #[arg(long, value_name = "FORMAT", default_value = "text", hide_possible_values = true, value_parser = sourced(EnumValueParser::<LogFormat>::new()))]
    pub log_format: LogFormat,

    /// Print a completion script or the man page
    ///
    /// A shell completion script (bash, zsh, fish, elvish, powershell) or the man page (man), on
    /// stdout; every other option is ignored. docs/install.md says where to install them.
    #[arg(long, value_name = "WHAT", hide_possible_values = true)]
    pub generate: Option<Generate>,

    /// Check a server's /healthz, then exit
    ///
    /// Ask the --metrics listener at ADDR:PORT for /healthz, as a container's health check
    /// does: exit 0 on an answer of 200 within 2 s, 1 otherwise; every other option is ignored.
    #[arg(long, value_name = "ADDR:PORT", value_parser = sourced(host_and_port))]
    pub health_check: Option<SocketAddr>,
}

/// What `--generate` prints, all made from the same definition as `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// The id of `--log-format`.
const LOG_FORMAT: &str = "log_format";

/// The options that are actions rather than settings: they have no variable.
const ACTIONS: [&str; 4] = ["help", "version", "generate", "health_check"];

impl Cli {
    /// The definition the parser, `--help` and the man page use: every setting gets the
    /// variable `POETRY_SERVE_` and its name, named in its long help only (`--help`), so that
    /// `-h` keeps one line per option.
    pub fn definition() -> clap::Command {
        Cli::command().mut_args(|arg| {
            let id = arg.get_id().as_str();
            if ACTIONS.contains(&id) {
                return arg;
            }
            let var = format!("POETRY_SERVE_{}", id.to_uppercase());
            // A switch its variable sets off is absent: it conflicts with nothing.
            let off = || {
                let value = std::env::var_os(&var)?;
                let cmd = clap::Command::new("");
                BoolishValueParser::new().parse_ref(&cmd, None, &value).ok()
            };
            if matches!(arg.get_action(), clap::ArgAction::SetTrue) && off() == Some(false) {
                return arg;
            }
            let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string);
            let help = format!("{}\n\n[env: {var}]", help.unwrap_or_default());
            arg.env(var).hide_env(true).long_help(help)
        })
    }

    /// Reads the command line and the environment.
    pub fn read() -> Result<(Cli, ArgMatches), clap::Error> {
        let matches = Cli::definition().try_get_matches()?;
        Ok((Cli::from_arg_matches(&matches)?, matches))
    }

    /// Whether the command line that clap refused with `err` asks for JSON logs, so that the
    /// refusal is logged as JSON. clap stops at a bad value, which may come before the log
    /// format: so it reads the command line again, leniently, each refused option taking any
    /// value.
    pub fn wants_json(err: &clap::Error) -> bool {
        // A refused --log-format takes any value here, and is not JSON.
        let json =
            |m: ArgMatches| m.try_get_one(LOG_FORMAT).ok().flatten() == Some(&LogFormat::Json);
        let mut command = Cli::definition();
        let mut refused = err.get(ContextKind::InvalidArg).cloned();
        for _ in 0..command.get_arguments().count() {
            // An option as clap shows it in an error: `--port <PORT>`.
            let Some(ContextValue::String(shown)) = refused.take() else {
                break;
            };
            let long = shown.split(' ').next().and_then(|flag| flag.strip_prefix("--"));
            let arg = command.get_arguments().find(|arg| arg.get_long() == long);
            let Some(id) = arg.map(|arg| arg.get_id().clone()) else {
                break;
            };
            command = command.mut_arg(id, |arg| arg.value_parser(clap::value_parser!(OsString)));
            match command.clone().try_get_matches() {
                Ok(matches) => return json(matches),
                Err(err) if refusal(&err).is_some() => {
                    refused = err.get(ContextKind::InvalidArg).cloned();
                }
                // Another mistake (a missing poem, say): what was read up to it is all there is.
                Err(_) => break,
            }
        }
        command.ignore_errors(true).try_get_matches().is_ok_and(json)
    }

    /// The server's configuration, the addresses resolved and the options checked against each
    /// other; `matches` tells where each value came from. A refusal is one line.
    pub fn config(self, matches: &ArgMatches) -> Result<Config, String> {
        let word = |invalid: Invalid| in_variable(matches, invalid);
        let mut listen = Vec::new();
        for iface in &self.listening.iface {
            for addr in resolve(iface, self.listening.port).map_err(word)? {
                if !listen.contains(&addr) {
                    listen.push(addr);
                }
            }
        }
        let chunk = self.pacing.num_bytes;
        let mut config = Config {
            poems: self.poems,
            order: self.pacing.order,
            listen,
            reuse_port: self.listening.reuse_port,
            pacing: Pacing {
                chunk,
                delay: self.pacing.delay,
                jitter: self.pacing.jitter,
                chunk_max: self.pacing.num_bytes_max.unwrap_or(chunk),
            },
            workers: self.limits.workers,
            write_timeout: self.limits.write_timeout,
            shutdown_grace: self.limits.shutdown_grace,
            max_per_source: NonZeroU32::new(self.limits.max_per_source),
            proxy_protocol: self.listening.proxy_protocol,
            header_timeout: self.listening.proxy_timeout,
            proxy_max_waiting: NonZeroU32::new(self.listening.proxy_max_waiting),
            faults: Faults {
                fault: self.faults.faults().first().copied(),
                rate: self.chance.fault_rate,
                seed: self.chance.seed,
                close_delay: self.chance.close_delay,
                accept_delay: self.chance.accept_delay,
                rules: Vec::new(),
            },
            blackhole: self.chance.blackhole,
            ..Config::new(PathBuf::new())
        };
        // Read here, not as the command line is parsed: --generate and --health-check ignore
        // every other option, from the environment too.
        if let Some(path) = &self.chance.script {
            let shown = crate::poem::shown(path);
            let unread = |why| Invalid { option: "faults", value: shown.clone(), why };
            let script = Script::read(path).map_err(|why| word(unread(why)))?;
            let lines = |mistakes: Vec<String>| {
                mistakes
                    .iter()
                    .map(|line| format!("{shown}: {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let behaviour = script.behaviour(config.pacing).map_err(lines)?;
            config.pacing = behaviour.pacing;
            config.faults =
                Faults { seed: behaviour.faults.seed.or(config.faults.seed), ..behaviour.faults };
        }
        config.check().map_err(word)?;
        Ok(config)
    }
}

impl Cli {
    /// The listeners beside the poem port, or why one of them is refused (in `matches`' words:
    /// a value from a variable names it).
    pub fn options(&self, matches: &ArgMatches) -> Result<ops::Options, String> {
        let operations = &self.operations;
        if let Some(addr) = operations.control
            && !addr.ip().is_loopback()
            && !operations.control_anywhere
        {
            let why = "not a loopback address; whoever reaches it can fault every client (add \
                       --control-anywhere to allow it)";
            let invalid = Invalid { option: "control", value: addr.to_string(), why: why.into() };
            return Err(in_variable(matches, invalid));
        }
        Ok(ops::Options {
            metrics: operations.metrics,
            hosts: operations.metrics_host.clone(),
            control: operations.control,
            trace: operations.trace.clone(),
        })
    }
}

/// `invalid`, worded as clap words a bad value: the option with its placeholder
/// (`--jitter <DURATION>`), and the variable first when the value came from one.
fn in_variable(matches: &ArgMatches, invalid: Invalid) -> String {
    let mut command = Cli::definition();
    command.build();
    let arg = (command.get_arguments()).find(|arg| arg.get_long() == Some(invalid.option));
    let Some(arg) = arg else {
        return invalid.to_string();
    };
    let line = format!("invalid value '{}' for '{arg}': {}", invalid.value, invalid.why);
    match (matches.value_source(arg.get_id().as_str()), arg.get_env()) {
        (Some(ValueSource::EnvVariable), Some(var)) => format!("in ${}: {line}", var.display()),
        _ => line,
    }
}

/// A bad value in one line, from the error clap gave: `invalid value 'V' for '--flag <V>':
/// why`, the possible values after it, and the variable first when the value came from one.
/// `None` for every other error (usage, `--help`, `--version`), which clap prints itself.
pub fn refusal(err: &clap::Error) -> Option<String> {
    if !matches!(err.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => Some(texts.join(", ")),
        _ => None,
    };
    let mut line = format!(
        "invalid value '{}' for '{}'",
        context(ContextKind::InvalidValue).unwrap_or_default(),
        context(ContextKind::InvalidArg).unwrap_or_default()
    );
    if let Some(why) = std::error::Error::source(err) {
        line = format!("{line}: {why}");
    }
    if let Some(values) = context(ContextKind::ValidValue) {
        line = match values.is_empty() {
            // How clap's path parsers refuse an empty value: with no possible values.
            true => format!("{line}: must not be empty"),
            false => format!("{line} [possible values: {values}]"),
        };
    }
    Some(match context(ContextKind::Custom) {
        Some(var) => format!("in ${var}: {line}"),
        None => line,
    })
}

/// clap's parser for `--write-timeout`.
fn write_timeout(text: &str) -> Result<Duration, String> {
    duration(text, false, WRITE_TIMEOUTS, "from 1ms to 24 days")
}

/// clap's parser for counts of at least 1.
fn at_least_one(text: &str) -> Result<NonZeroUsize, String> {
    let n: i128 = text.parse().map_err(|err: std::num::ParseIntError| err.to_string())?;
    match usize::try_from(n).ok().and_then(NonZeroUsize::new) {
        Some(n) => Ok(n),
        None if n < 1 => Err("must be at least 1".to_string()),
        None => Err(format!("must be at most {}", usize::MAX)),
    }
}

/// clap's parser for `--fault-rate`.
fn share(text: &str) -> Result<f64, String> {
    let rate = text.parse::<f64>().unwrap_or(f64::NAN);
    crate::config::share(rate)
}

/// clap's parser for `--metrics-host`: a host name.
fn host_name(text: &str) -> Result<String, String> {
    let name =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    match name {
        true => Ok(text.to_string()),
        false => Err("must be a host name, such as poems.example.org".into()),
    }
}

/// clap's parser for `--metrics` and `--health-check`: an address or a host name, and a port.
/// A name is resolved once, here, and the first address it resolves to is used.
fn host_and_port(text: &str) -> Result<SocketAddr, String> {
    let refuse = || {
        "must be an address or host name and a port, such as 127.0.0.1:9100, [::1]:0 or \
         localhost:9100"
            .to_string()
    };
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut found = (host, port).to_socket_addrs().map_err(|_| refuse())?;
    found.next().ok_or_else(refuse)
}

/// The addresses `iface` stands for, with `port`: an IP address (IPv6 in brackets or not, with
/// a `%interface` scope or not), or a host name and every address it resolves to.
fn resolve(iface: &str, port: u16) -> Result<Vec<SocketAddr>, Invalid> {
    let refuse = |why: String| Invalid { option: "iface", value: iface.to_string(), why };
    let bare = iface.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Some((ip, scope)) = bare.split_once('%')
        && let Ok(ip) = ip.parse::<Ipv6Addr>()
    {
        let index = match scope.parse() {
            Ok(index) => index,
            Err(_) => crate::sys::interface_index(scope)
                .ok_or_else(|| refuse(format!("no network interface is called '{scope}'")))?,
        };
        return Ok(vec![SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index))]);
    }
    let a_name =
        !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !a_name {
        return Err(refuse(
            "not an IP address or host name (try 127.0.0.1, ::1, localhost)".into(),
        ));
    }
    let found = (bare, port)
        .to_socket_addrs()
        .map_err(|err| refuse(format!("cannot resolve it: {err}")))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.is_empty() {
        true => Err(refuse("it resolves to no address".into())),
        false => Ok(addrs),
    }
}

/// What `--help` ends with, as it shows it. The man page's sections after the options are
/// made from it and [`MAN_NOTES`] (see [`sections`]), so the two never say different things.
const HELP_NOTES: &str = "\
Signals:
  SIGINT, SIGTERM  stop accepting; poems in flight get --shutdown-grace, then
                   the stats line is logged; exit 0 (a second signal: at once)
  SIGHUP           reopen the poems (directories are scanned again); poems in
                   flight finish as they began; if one cannot be opened, the old
                   set stays
  SIGUSR1          log the stats line, whatever the log level

Environment:
  RUST_LOG         log level on stderr: error, warn, info (default), debug, off
  POETRY_SERVE_*   each option, as [env: ...] above names it (POETRY_SERVE_POEMS
                   holds one path); the command line wins; --iface takes a
                   comma-separated list; a switch takes 1/0, true/false, yes/no
                   or on/off
  NOTIFY_SOCKET, LISTEN_FDS
                   set by systemd: readiness notifications, and listening
                   sockets handed over, which replace --iface and --port

Exit status:
  0                stopped by a signal
  1                cannot start: a poem, the address, the thread limits
  2                bad command line
  128+N            a second signal N cut the shutdown short

Durations are seconds (0.7) or a number with a unit (500ms, 30s, 2m, 1h).";

/// The man page's last sections, in the form of [`HELP_NOTES`].
const MAN_NOTES: &str = "\
Files:
  /usr/share/poetry-serve/poems/
                   the poems shipped with the Debian package and the container
                   image

Examples:
  poetry-serve --port 10000 poems/ecstasy.txt
                   serve one poem, 10 bytes every 0.7 s, on 127.0.0.1:10000;
                   fetch it with nc -d localhost 10000
  poetry-serve --delay 0.1 --num-bytes 7 poems/
                   serve every .txt poem in a directory, in turn, faster
  poetry-serve --iface :: --max-per-source 16 --metrics 127.0.0.1:9100 poems/
                   a tarpit in the open: every address, at most 16 connections
                   per source, metrics on loopback

See also:
  nc(1), socat(1), systemd.socket(5), endlessh(1)
  An Introduction to Asynchronous Programming and Twisted
                   Dave Peticolas, part 1:
                   http://krondo.com/in-which-we-begin-at-the-beginning/";

/// The sections of `notes`: each a title (a line ending in `:`) and its items, a term (after
/// two spaces) and what it means (after more spaces, on its line or the next ones).
fn sections(notes: &str) -> Vec<(&str, Vec<(&str, String)>)> {
    let mut sections: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    for line in notes.lines() {
        match (line.strip_suffix(':'), line.strip_prefix("  "), sections.last_mut()) {
            (Some(title), _, _) if !line.starts_with(' ') => sections.push((title, Vec::new())),
            (_, Some(rest), Some((_, items))) if rest.starts_with(' ') => {
                if let Some((_, text)) = items.last_mut() {
                    *text = format!("{text} {}", rest.trim()).trim().to_string();
                }
            }
            (_, Some(rest), Some((_, items))) => {
                let (term, text) = rest.split_once("  ").unwrap_or((rest, ""));
                items.push((term, text.trim().to_string()));
            }
            _ => {}
        }
    }
    sections
}

impl Generate {
    /// Writes the man page or the completion script to `out`.
    pub fn write(self, out: &mut dyn Write) -> io::Result<()> {
        use clap_complete::Shell;
        let mut command = Cli::definition();
        let shell = match self {
            Generate::Man => return man_page(command, out),
            Generate::Bash => Shell::Bash,
            Generate::Zsh => Shell::Zsh,
            Generate::Fish => Shell::Fish,
            Generate::Elvish => Shell::Elvish,
            Generate::Powershell => Shell::PowerShell,
        };
        clap_complete::generate(shell, &mut command, "poetry-serve", out);
        Ok(())
    }
}

/// The man page: clap_mangen's title, name, description and options, with the synopsis as
/// `-h` shows the usage (POEM is required), and [`HELP_NOTES`] and [`MAN_NOTES`] after the
/// options.
fn man_page(command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command);
    man.render_title(out)?;
    man.render_name_section(out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"])
        .text([bold("poetry-serve"), roman(" [OPTIONS] "), italic("POEM"), roman("...")])
        .control("br", [])
        .text([bold("poetry-serve"), roman(" --generate "), italic("WHAT")]);
    roff.to_writer(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut roff = Roff::new();
    for (title, items) in sections(HELP_NOTES).into_iter().chain(sections(MAN_NOTES)) {
        roff.control("SH", [title.to_uppercase().as_str()]);
        for (term, meaning) in items {
            roff.control("TP", []).text([bold(term)]).text([roman(meaning)]);
        }
    }
    roff.to_writer(out)?;
    man.render_version_section(out)
}

//! The server's [`Config`]: everything it needs to know, in types that rule out most bad values,
//! with [`Config::check`] for the rules that tie options together. The command line builds one
//! (see [`crate::cli`]); so can a program that starts a server of its own.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::collection::Order;
use crate::faults::Faults;
use crate::pacing::Pacing;
use crate::watch::Watch;

/// Everything a server needs to know. [`Config::new`] gives the defaults, each field can be set,
/// and [`crate::Server::start`] checks the whole with [`Config::check`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Poem files, or directories of `.txt` poems; opened at start-up.
    pub poems: Vec<PathBuf>,
    /// How each connection's poem is chosen.
    pub order: Order,
    /// Where to listen; port 0 picks a free port. Never empty.
    pub listen: Vec<SocketAddr>,
    /// Whether to set `SO_REUSEPORT`, so that other processes can listen on the port.
    pub reuse_port: bool,
    /// Chunk size and delay.
    pub pacing: Pacing,
    /// Clients served at once: the size of the worker pool.
    pub workers: NonZeroUsize,
    /// How long a write may make no progress before the client is dropped: from 1 ms to 24
    /// days, which the kernel holds as it is.
    pub write_timeout: Duration,
    /// How long a stop waits for poems already streaming before it cuts them off.
    pub shutdown_grace: Duration,
    /// After the last byte, how long to wait for the client to close its side (see
    /// [`crate::close`]).
    pub linger: Duration,
    /// Most connections per source at once; `None` for no limit.
    pub max_per_source: Option<NonZeroU32>,
    /// Whether every connection begins with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// How long a connection has to send its whole PROXY header.
    pub header_timeout: Duration,
    /// The most connections one peer may hold waiting for their PROXY header; `None` for no
    /// limit. Behind a balancer every connection comes from it, but each waits only as long as
    /// the header takes to arrive.
    pub proxy_max_waiting: Option<NonZeroU32>,
    /// The fault played on purpose, if any, and the seed of every random draw.
    pub faults: Faults,
    /// Accept nothing, with the smallest backlog: once it is full, further connects get no
    /// answer, and a client's connect times out.
    pub blackhole: bool,
    /// Who watches every connection's life as it happens (see [`crate::watch`]); none by
    /// default, and then nothing is recorded.
    pub watchers: Vec<Arc<dyn Watch>>,
    /// Descriptors kept free for what the server does besides its clients (the listeners, a
    /// reload, the logs, and whatever a program adds: the metrics listener, say), checked with
    /// the workers against the open-file limit at start-up.
    pub reserved_descriptors: u64,
}

/// A value that does not fit with the others, worded as the command line words a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The option's long name, without the dashes (`jitter`).
    pub option: &'static str,
    /// The value, as the user would write it.
    pub value: String,
    /// Why it is refused.
    pub why: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Invalid { option, value, why } = self;
        write!(f, "invalid value '{value}' for '--{option}': {why}")
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    /// As a script's key says it: `jitter: must be at most half of --delay`.
    pub fn in_script(&self) -> String {
        format!("{}: {}", self.option, self.why)
    }
}

/// The longest duration most options take: a year, as humantime counts one.
pub const YEAR: Duration = Duration::from_secs(31_557_600);

/// The range of the write timeout: what the kernel holds for both socket options it becomes.
/// `TCP_USER_TIMEOUT` counts whole milliseconds in an `int`, so it stops short of 24.8 days.
pub const WRITE_TIMEOUTS: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(24 * 24 * 3600));

impl Config {
    /// The defaults, serving `poem` (a file or a directory) on 127.0.0.1, on a port picked
    /// free: 10 bytes every 0.7 s, as in the tutorial, to 256 clients at once.
    pub fn new(poem: impl Into<PathBuf>) -> Config {
        Config {
            poems: vec![poem.into()],
            order: Order::Sequential,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            reuse_port: false,
            pacing: Pacing::new(NonZeroUsize::new(10).expect("10"), Duration::from_millis(700)),
            workers: NonZeroUsize::new(256).expect("256"),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            max_per_source: None,
            proxy_protocol: false,
            header_timeout: Duration::from_secs(5),
            proxy_max_waiting: NonZeroU32::new(32),
            faults: Faults::default(),
            blackhole: false,
            reserved_descriptors: 64,
            watchers: Vec::new(),
        }
    }

    /// The pacing and faults it starts with.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour { pacing: self.pacing, faults: self.faults.clone() }
    }

    /// Checks the values against each other and against what the kernel can hold.
    pub fn check(&self) -> Result<(), Invalid> {
        let refuse =
            |option, value: String, why: &str| Err(Invalid { option, value, why: why.to_string() });
        self.behaviour().check()?;
        let (min, max) = WRITE_TIMEOUTS;
        if !(min..=max).contains(&self.write_timeout) {
            let shown = humantime::format_duration(self.write_timeout).to_string();
            return refuse("write-timeout", shown, "must be from 1ms to 24 days");
        }
        if self.listen.is_empty() {
            return refuse("iface", String::new(), "at least one address is needed");
        }
        Ok(())
    }
}

/// What connections get that can change while the server runs: the pacing and the faults.
/// A connection keeps what was in force when it was accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub pacing: Pacing,
    pub faults: Faults,
}

impl Behaviour {
    /// Checks the pacing's values against each other, and the faults'.
    pub fn check(&self) -> Result<(), Invalid> {
        let Pacing { chunk, delay, jitter, chunk_max } = self.pacing;
        let refuse = |option, value: String, why: String| Err(Invalid { option, value, why });
        let needs_delay = "varies paced chunks: it needs a --delay above 0".to_string();
        if chunk_max < chunk {
            let why = format!("must be at least --num-bytes ({chunk})");
            return refuse("num-bytes-max", chunk_max.to_string(), why);
        }
        if delay.is_zero() && chunk_max > chunk {
            return refuse("num-bytes-max", chunk_max.to_string(), needs_delay);
        }
        // Chunk k leaves within `jitter` of k × delay: up to half the delay, no two deadlines
        // can swap, so every pause stays a pause.
        if !jitter.is_zero() && jitter > delay / 2 {
            let why = match delay.is_zero() {
                true => needs_delay,
                false => format!(
                    "must be at most half of --delay ({}), so that no two chunks swap",
                    humantime::format_duration(delay / 2)
                ),
            };
            return refuse("jitter", humantime::format_duration(jitter).to_string(), why);
        }
        if delay > YEAR {
            let why = "must be at most a year".to_string();
            return refuse("delay", humantime::format_duration(delay).to_string(), why);
        }
        if let Err(why) = share(self.faults.rate) {
            return refuse("fault-rate", self.faults.rate.to_string(), why);
        }
        Ok(())
    }
}

/// Turns a duration typed by the user into a [`Duration`]: bare seconds as in the tutorial
/// (0.7), or a number with a unit (500ms, 2m). A value outside `min..=max` (or 0, where `zero`
/// allows it) is refused, one too small to keep (under a nanosecond) included, rather than
/// silently made zero or cut; `range` words what is allowed.
pub fn duration(
    text: &str,
    zero: bool,
    (min, max): (Duration, Duration),
    range: &str,
) -> Result<Duration, String> {
    let refuse = || format!("must be {range}, such as 0.7, 500ms, 30s or 2m");
    let parsed = match text.trim().parse::<f64>() {
        // `-0` too is refused, as every negative is.
        Ok(secs) if secs.is_sign_positive() && secs <= max.as_secs_f64() => {
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
        true => zero,
        false => (min..=max).contains(&parsed),
    };
    allowed.then_some(parsed).ok_or_else(refuse)
}

/// `rate` if it is a share, from 0 to 1 (`-0` is refused as every negative is).
pub fn share(rate: f64) -> Result<f64, String> {
    match (0.0..=1.0).contains(&rate) && rate.is_sign_positive() {
        true => Ok(rate),
        false => Err("must be a share from 0 to 1, such as 0.25".to_string()),
    }
}

/// A duration most options take: 0, or from 1ns to a year.
pub fn any_duration(text: &str) -> Result<Duration, String> {
    duration(text, true, (Duration::from_nanos(1), YEAR), "0 or from 1ns to 1 year")
}

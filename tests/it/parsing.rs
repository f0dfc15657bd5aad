//! The command line read in-process: defaults, values, variables' names in errors, checks
//! across options, and what the configuration and the outcomes promise to the rest.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::FromArgMatches;
use poetry_serve::cli::{self, Cli, Generate};
use poetry_serve::{Config, Fault, Faults, Outcome, Pacing};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    let argv = ["poetry-serve"].iter().chain(args).chain(&["poem.txt"]);
    Cli::from_arg_matches(&Cli::definition().try_get_matches_from(argv)?)
}

/// The refusal of `args` in one line.
fn refused(args: &[&str]) -> String {
    let err = parse(args).expect_err("refused");
    cli::refusal(&err).unwrap_or_else(|| err.to_string())
}

fn config(args: &[&str]) -> Result<Config, String> {
    let argv = ["poetry-serve"].iter().chain(args).chain(&["poem.txt"]);
    let matches = Cli::definition().try_get_matches_from(argv).map_err(|e| e.to_string())?;
    Cli::from_arg_matches(&matches).unwrap().config(&matches)
}

/// With no flags, the defaults are the tutorial's (and the documented ones).
#[test]
fn defaults_match_the_tutorial() {
    let got = config(&[]).unwrap();
    assert_eq!(got.listen, ["127.0.0.1:10000".parse().unwrap()]);
    assert_eq!(got.pacing.chunk.get(), 10);
    assert_eq!(got.pacing.delay, Duration::from_millis(700));
    assert_eq!(got.workers.get(), 256);
    assert_eq!(got.write_timeout, Duration::from_secs(30));
    assert_eq!(got.shutdown_grace, Duration::from_secs(10));
}

/// Durations take units, and bare seconds as in the tutorial; each range is worded once,
/// whatever end is missed.
#[test]
fn durations_take_units_within_their_range() {
    let cli = parse(&["-d", "500ms", "--write-timeout", "2m", "--shutdown-grace", "1.5"]).unwrap();
    assert_eq!(cli.pacing.delay, Duration::from_millis(500));
    assert_eq!(cli.limits.write_timeout, Duration::from_secs(120));
    assert_eq!(cli.limits.shutdown_grace, Duration::from_millis(1500));
    // "Up to 1 year" takes a year as humantime spells it.
    assert!(parse(&["--shutdown-grace", "1y"]).is_ok());
    for delay in ["-1", "-0", "-0.0", "nan", "inf", "1e300", "1e-12", "2 fortnights", "1y 1s"] {
        let err = refused(&[&format!("--delay={delay}")]);
        let says = format!(
            "invalid value '{delay}' for '--delay <DURATION>': must be 0 or from 1ns to 1 year"
        );
        assert!(err.starts_with(&says), "{err}");
    }
    for timeout in ["0", "400d", "999us", "0.0009", "25d", "2073600.001"] {
        let err = refused(&["--write-timeout", timeout]);
        assert!(err.contains("must be from 1ms to 24 days"), "{err}");
    }
    let cli = parse(&["--write-timeout", "24d"]).unwrap();
    assert_eq!(cli.limits.write_timeout, Duration::from_secs(24 * 24 * 3600));
}

/// Addresses with or without brackets and scopes, and host names, resolve into every address,
/// each once; what is neither is refused naming the flag.
#[test]
fn addresses_and_host_names_resolve() {
    let got = config(&["-i", "[::1]", "-p", "7", "-i", "127.0.0.1", "-i", "::1"]).unwrap();
    let expected: Vec<SocketAddr> =
        vec!["[::1]:7".parse().unwrap(), "127.0.0.1:7".parse().unwrap()];
    assert_eq!(got.listen, expected);
    let got = config(&["--iface", "localhost"]).unwrap();
    assert!(got.listen.iter().all(|a| a.ip().is_loopback()), "{:?}", got.listen);
    let got = config(&["--iface", "fe80::1%lo"]).unwrap();
    let SocketAddr::V6(v6) = got.listen[0] else { panic!("{:?}", got.listen) };
    assert_ne!(v6.scope_id(), 0, "lo's index");
    let err = config(&["--iface", "fe80::1%nosuchif0"]).unwrap_err();
    assert!(err.contains("no network interface"), "{err}");
    let err = config(&["--iface", "not an address"]).unwrap_err();
    assert!(err.starts_with("invalid value 'not an address' for '--iface <ADDR>'"), "{err}");
}

/// Faults take one at a time, and a rate needs one; options are checked against each other in
/// the command line's wording.
#[test]
fn faults_and_variation_are_checked() {
    let got = config(&["--reset-after", "7", "--fault-rate", "0.25", "--seed", "3"]).unwrap();
    let faults = got.faults;
    assert_eq!((faults.fault, faults.rate, faults.seed), (Some((Fault::Reset, 7)), 0.25, Some(3)));
    let err = parse(&["--refuse", "--close-after", "3"]).unwrap_err().to_string();
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(parse(&["--fault-rate", "0.5"]).unwrap_err().to_string().contains("required"));
    let err = refused(&["--refuse", "--fault-rate=-0.0"]);
    assert!(err.contains("invalid value '-0.0' for '--fault-rate <P>'"), "{err}");
    let err = config(&["--delay", "0.3", "--jitter", "1"]).unwrap_err();
    assert_eq!(
        err,
        "invalid value '1s' for '--jitter <DURATION>': must be at most half of --delay (150ms), \
         so that no two chunks swap"
    );
}

/// A configuration built by a program is checked as the command line's is: variation needs
/// pacing, a largest chunk no smaller than the chunk, and a jitter of at most half the delay;
/// each refusal names its option and the bound.
#[test]
fn a_configuration_is_checked_across_its_values() {
    let config = Config::new("poem.txt");
    assert_eq!(config.check(), Ok(()));
    let with = |pacing: Pacing| Config { pacing, ..config.clone() }.check();
    let n = |n| NonZeroUsize::new(n).unwrap();
    let p = config.pacing;
    let err = with(Pacing { chunk_max: n(5), ..p }).unwrap_err();
    let says = "invalid value '5' for '--num-bytes-max': must be at least --num-bytes (10)";
    assert_eq!(err.to_string(), says);
    let unpaced = Pacing { delay: Duration::ZERO, ..p };
    let err = with(Pacing { jitter: Duration::from_millis(5), ..unpaced }).unwrap_err();
    assert!(err.why.contains("needs a --delay above 0"), "{err}");
    assert!(with(Pacing { jitter: Duration::from_millis(350), ..p }).is_ok());
    let err = with(Pacing { jitter: Duration::from_millis(351), ..p }).unwrap_err();
    assert!(err.why.contains("at most half of --delay (350ms)"), "{err}");
    let timeout = Config { write_timeout: Duration::ZERO, ..config.clone() };
    assert_eq!(timeout.check().unwrap_err().option, "write-timeout");
}

/// Every outcome is listed once, at the place its counter is kept, with a label of its own; a
/// socket error sorts into the outcome a reader of the log expects.
#[test]
fn every_outcome_has_its_own_place_and_label() {
    let all: Vec<Outcome> = Outcome::all().collect();
    assert_eq!(all.len(), Outcome::COUNT);
    for (at, outcome) in all.iter().enumerate() {
        assert_eq!(outcome.index(), at, "{outcome:?}");
    }
    let mut labels: Vec<_> = all.iter().map(|o| o.label()).collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), Outcome::COUNT);
    let of = |kind| Outcome::of_error(&io::Error::from(kind)).label();
    assert_eq!(of(ErrorKind::BrokenPipe), "client_closed");
    assert_eq!(of(ErrorKind::WouldBlock), "timed_out");
    assert_eq!(of(ErrorKind::PermissionDenied), "error");
}

/// A rate of 0.3 faults about 30% of connections, the same ones with the same seed, and
/// another seed faults others.
#[test]
fn the_rate_picks_a_repeatable_share_of_connections() {
    let faults = |seed| Faults {
        fault: Some((Fault::Refuse, 0)),
        rate: 0.3,
        seed: Some(seed),
        ..Faults::default()
    };
    let picked = |seed| -> Vec<bool> {
        (0..1000).map(|id| faults(seed).plan(id, false).fault.is_some()).collect()
    };
    let first = picked(1);
    let count = first.iter().filter(|&&p| p).count();
    assert!((250..350).contains(&count), "{count} of 1000");
    assert_eq!(first, picked(1));
    assert_ne!(first, picked(2));
    assert!(Faults::default().plan(7, true).fault.is_none());
}

/// The completion scripts and the man page come from the same definition, and name the flags.
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

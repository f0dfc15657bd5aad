//! Faults scripted per connection, and changes to what connections get: one schema, read from
//! the `--faults` file (TOML) at start-up and from `--control`'s requests (JSON).
//!
//! ```toml
//! delay = "100ms"                     # the pacing, as its flags say it
//! fault = { stall-after = 50 }        # the faults, as theirs do
//! fault-rate = 0.5
//! seed = 42
//! accept-delay = "1s"                 # for every connection: a script has no per-number one
//!
//! [[connection]]                      # connections by number, from 1 in accept order
//! numbers = "1-2"                     # "3", "1-2", or "10-" (from 10 on)
//! fault = { reset-after = 0 }
//!
//! [[connection]]
//! numbers = "3-"
//! every = 3                           # 3, 6, 9...
//! close-delay = "2s"
//! ```
//!
//! The first `[[connection]]` that names a connection decides what it gets; the others get the
//! faults above. What a script leaves out of the pacing is as the command line says; what it
//! leaves out of the faults, nobody gets.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Behaviour, any_duration};
use crate::faults::{FaultFlags, Faults, Numbers, Rule};
use crate::pacing::Pacing;

/// A script, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Script {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_bytes: Option<NonZeroUsize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_bytes_max: Option<NonZeroUsize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_delay: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_delay: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection: Vec<Connections>,
}

/// What the connections a `[[connection]]` names get.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Connections {
    pub numbers: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_delay: Option<Time>,
}

/// A duration: seconds (`0.7`) or with a unit (`"500ms"`), as the flags take them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Time {
    Seconds(f64),
    Text(String),
}

impl Time {
    /// The duration, checked as the flags check theirs.
    fn duration(&self) -> Result<Duration, String> {
        match self {
            Time::Seconds(secs) => any_duration(&secs.to_string()),
            Time::Text(text) => any_duration(text),
        }
    }
}

impl Script {
    /// Reads the script in the TOML file at `path`; a mistake is one line, with the file and
    /// line it is on.
    pub fn read(path: &Path) -> Result<Script, String> {
        let shown = crate::poem::shown(path);
        let text = std::fs::read_to_string(path).map_err(|err| format!("{shown}: {err}"))?;
        toml::from_str(&text).map_err(|err| {
            let line = err.span().map_or(0, |span| text[..span.start].lines().count().max(1));
            format!("{shown}:{line}: {}", err.message().trim())
        })
    }

    /// What connections get under this script: `pacing` where it says nothing of the pacing,
    /// no fault where it says nothing of one. Every mistake is a line of the error.
    pub fn behaviour(&self, pacing: Pacing) -> Result<Behaviour, Vec<String>> {
        let mut mistakes = Vec::new();
        let mut time =
            |what: &str, time: &Option<Time>| check(what, time.as_ref()?.duration(), &mut mistakes);
        let delay = time("delay", &self.delay).unwrap_or(pacing.delay);
        let jitter = time("jitter", &self.jitter).unwrap_or(Duration::ZERO);
        let close_delay = time("close-delay", &self.close_delay).unwrap_or(Duration::ZERO);
        let accept_delay = time("accept-delay", &self.accept_delay).unwrap_or(Duration::ZERO);
        let chunk = self.num_bytes.unwrap_or(pacing.chunk);
        let chunk_max = self.num_bytes_max.unwrap_or(chunk);
        let fault = one_fault("fault", self.fault.as_ref(), &mut mistakes);
        let rules = (self.connection.iter().enumerate())
            .filter_map(|(at, rule)| rule.rule(at + 1, &mut mistakes))
            .collect();
        let faults = Faults {
            fault,
            rate: self.fault_rate.unwrap_or(1.0),
            seed: self.seed,
            close_delay,
            accept_delay,
            rules,
        };
        let behaviour = Behaviour { pacing: Pacing { chunk, delay, jitter, chunk_max }, faults };
        if let Err(invalid) = behaviour.check() {
            mistakes.push(invalid.in_script());
        }
        match mistakes.is_empty() {
            true => Ok(behaviour),
            false => Err(mistakes),
        }
    }

    /// The script that says `behaviour`.
    pub fn of(behaviour: &Behaviour) -> Script {
        let time =
            |duration: Duration| Some(Time::Text(humantime::format_duration(duration).to_string()));
        let (pacing, faults) = (&behaviour.pacing, &behaviour.faults);
        let flags = |fault| Some(FaultFlags::of(fault)).filter(|_| fault.is_some());
        let nonzero = |duration: Duration| time(duration).filter(|_| !duration.is_zero());
        Script {
            num_bytes: Some(pacing.chunk),
            num_bytes_max: Some(pacing.chunk_max),
            delay: time(pacing.delay),
            jitter: time(pacing.jitter),
            fault: flags(faults.fault),
            fault_rate: Some(faults.rate),
            seed: faults.seed,
            close_delay: nonzero(faults.close_delay),
            accept_delay: nonzero(faults.accept_delay),
            connection: (faults.rules.iter())
                .map(|rule| Connections {
                    numbers: match rule.numbers.last {
                        Some(last) => format!("{}-{last}", rule.numbers.first),
                        None => format!("{}-", rule.numbers.first),
                    },
                    every: Some(rule.numbers.every),
                    fault: flags(rule.fault),
                    close_delay: nonzero(rule.close_delay),
                })
                .collect(),
        }
    }
}

impl Connections {
    /// The rule, the `at`th of the script; or its mistakes, added to `mistakes`.
    fn rule(&self, at: usize, mistakes: &mut Vec<String>) -> Option<Rule> {
        let before = mistakes.len();
        let what = format!("connection {at}");
        let numbers = self.numbers.trim();
        let bound = |text: &str| text.trim().parse::<u64>().ok().filter(|&n| n >= 1);
        let (first, last) = match numbers.split_once('-') {
            Some((first, "")) => (bound(first), None),
            // A last that is no number from 1 (or overflows) makes the range no range.
            Some((first, last)) => {
                bound(last).map_or((None, None), |last| (bound(first), Some(last)))
            }
            None => (bound(numbers), bound(numbers)),
        };
        let every = self.every.unwrap_or(1);
        match (first, last) {
            (Some(first), Some(last)) if last < first => mistakes.push(format!(
                "{what}: numbers '{numbers}': the first is after the last (numbers count from 1)"
            )),
            (Some(_), _) => {}
            _ => mistakes.push(format!(
                "{what}: numbers '{numbers}' is not N, N-M or N-, with N and M from 1 \
                 (and below 2^64)"
            )),
        }
        if every == 0 {
            mistakes.push(format!("{what}: every must be at least 1"));
        }
        let fault = one_fault(&what, self.fault.as_ref(), mistakes);
        let close_delay = match &self.close_delay {
            None => Duration::ZERO,
            Some(time) => check(&what, time.duration(), mistakes)?,
        };
        (mistakes.len() == before).then(|| Rule {
            numbers: Numbers { first: first.unwrap_or(1), last, every },
            fault,
            close_delay,
        })
    }
}

/// The one fault `flags` name, if any; naming more is a mistake.
fn one_fault(
    what: &str,
    flags: Option<&FaultFlags>,
    mistakes: &mut Vec<String>,
) -> Option<(crate::faults::Fault, u64)> {
    let faults = flags.map(FaultFlags::faults).unwrap_or_default();
    if faults.len() > 1 {
        let named: Vec<&str> = faults.iter().map(|(fault, _)| fault.flag()).collect();
        mistakes.push(format!("{what}: one fault at a time, not {}", named.join(" and ")));
    }
    faults.first().copied()
}

/// `value`, or its mistake, said of `what`, added to `mistakes`.
fn check(
    what: &str,
    value: Result<Duration, String>,
    mistakes: &mut Vec<String>,
) -> Option<Duration> {
    value.map_err(|why| mistakes.push(format!("{what}: {why}"))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(toml: &str) -> Result<Behaviour, Vec<String>> {
        let script: Script = toml::from_str(toml).map_err(|err| vec![err.message().to_string()])?;
        let pacing = Pacing::new(NonZeroUsize::new(10).unwrap(), Duration::from_millis(700));
        script.behaviour(pacing)
    }

    /// A script says a fault for every connection and others for connections by number; what
    /// it leaves out of the pacing is the command line's, and it reads back as it was written.
    #[test]
    fn a_script_names_connections_and_reads_back() {
        let got = behaviour(
            "delay = \"100ms\"\nfault = { stall-after = 50 }\n\
             [[connection]]\nnumbers = \"1-2\"\nfault = { reset-after = 0 }\n\
             [[connection]]\nnumbers = \"3-\"\nevery = 3\nclose-delay = 2\n",
        )
        .unwrap();
        assert_eq!(got.pacing.delay, Duration::from_millis(100));
        assert_eq!(got.pacing.chunk.get(), 10);
        let plans: Vec<_> = (0..7).map(|id| got.faults.plan(id, false)).collect();
        let fault = |at: usize| plans[at].fault.map(|(fault, _)| fault.label());
        assert_eq!(
            [fault(0), fault(1), fault(2), fault(3)],
            [Some("reset"), Some("reset"), None, Some("stalled")]
        );
        assert_eq!(plans[2].close_delay, Duration::from_secs(2));
        assert_eq!(plans[5].close_delay, Duration::from_secs(2));
        assert_eq!(plans[4].close_delay, Duration::ZERO);
        let again = Script::of(&got).behaviour(got.pacing).unwrap();
        assert_eq!(again, got);
    }

    /// Each mistake is named, with the connection it is in.
    #[test]
    fn every_mistake_is_a_line() {
        let mistakes = behaviour(
            "jitter = \"1s\"\nfault = { stall-after = 1, refuse = true }\n\
             [[connection]]\nnumbers = \"5-2\"\n[[connection]]\nnumbers = \"x\"\nevery = 0\n",
        )
        .unwrap_err();
        assert_eq!(mistakes.len(), 5, "{mistakes:#?}");
        assert!(
            mistakes[0].contains("fault: one fault at a time, not stall-after and refuse"),
            "{mistakes:#?}"
        );
        assert!(mistakes[1].contains("connection 1: numbers '5-2': the first is after the last"));
        assert!(mistakes[2].contains("connection 2: numbers 'x' is not N, N-M or N-"));
        assert!(mistakes[3].contains("connection 2: every must be at least 1"));
        assert!(
            mistakes[4].contains("jitter: must be at most half of --delay (350ms)"),
            "{mistakes:#?}"
        );
        let unknown = behaviour("dealy = 1").unwrap_err();
        assert!(unknown[0].contains("unknown field `dealy`"), "{unknown:?}");
    }
}

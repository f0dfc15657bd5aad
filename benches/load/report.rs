//! The results table: a row per figure, with the floor or peer it is compared with and the
//! target it is judged by.

pub struct Row {
    scenario: String,
    ours: String,
    /// The floor or peer figure and our ratio to it, when there is one.
    versus: Option<(String, String)>,
    /// What the figure must reach and whether it did; `None` for a figure only reported.
    goal: Option<Goal>,
}

/// A target and whether it was met, both made from the same numbers so they cannot drift.
pub struct Goal {
    text: String,
    pass: bool,
}

impl Goal {
    /// A target in words and whether it was met.
    pub fn new(text: &str, pass: bool) -> Goal {
        Goal { text: text.into(), pass }
    }

    /// `value` must be at least `bound`; `unit` follows the bound in the text (`×`, say).
    pub fn at_least(value: f64, bound: f64, unit: &str) -> Goal {
        Goal { text: format!("≥ {}{unit}", short(bound)), pass: value >= bound }
    }

    /// `value` must be at most `bound`.
    pub fn at_most(value: f64, bound: f64, unit: &str) -> Goal {
        Goal { text: format!("≤ {}{unit}", short(bound)), pass: value <= bound }
    }

    /// A count that must be zero.
    pub fn zero(count: usize) -> Goal {
        Goal { text: "0".into(), pass: count == 0 }
    }

    /// A target that could not be judged because its peer was not measured: it counts as
    /// missed, so that a missing peer cannot pass for a met target.
    pub fn unmeasured(mut self) -> Goal {
        self.text += " (peer not measured)";
        self.pass = false;
        self
    }

    /// Also requires that no fetch failed.
    pub fn and_none_failed(mut self, failed: usize) -> Goal {
        self.text += ", 0 failed";
        self.pass &= failed == 0;
        self
    }
}

/// A bound as a person writes it: at most three decimals, no trailing zeros.
fn short(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Row {
    /// A figure of ours, reported without a target or a comparison.
    pub fn new(scenario: &str, ours: String) -> Row {
        Row { scenario: scenario.into(), ours, versus: None, goal: None }
    }

    /// Compares with a floor or peer: its figure, and our ratio to it.
    pub fn versus(mut self, other: String, ratio: String) -> Row {
        self.versus = Some((other, ratio));
        self
    }

    /// Sets the target the figure is judged by.
    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A count as people write it: 19,000.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The table in Markdown, a row per figure.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | poetry-serve | floor / peer | ratio | target | result |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let (other, ratio) = row.versus.clone().unwrap_or_default();
        let (target, result) = match &row.goal {
            Some(goal) => (goal.text.as_str(), if goal.pass { "met" } else { "not met" }),
            None => ("report", "-"),
        };
        out += &format!(
            "| {} | {} | {other} | {ratio} | {target} | {result} |\n",
            row.scenario, row.ours
        );
    }
    out
}

/// How many figures missed their target.
pub fn missed(rows: &[Row]) -> usize {
    rows.iter().filter(|r| r.goal.as_ref().is_some_and(|g| !g.pass)).count()
}

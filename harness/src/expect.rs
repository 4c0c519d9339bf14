//! Expectations: the window a spec, a configuration and an
//! implementation's own algorithm allow, with the formula written out, and
//! the non-timing requirements of a result (a status code, an echoed
//! payload, a negotiated value). The suite computes them; the judge
//! (`judge.rs`) compares an observation with them, allowing only the
//! measured error budget of that result — never a per-case widening.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How binding the requirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// MUST / algorithm of the implementation: outside the window is a fail.
    Must,
    /// SHOULD: outside the window is `non-strict`.
    Should,
    /// Either outcome is what the configuration allows (a false positive
    /// the settings predict, a race): reported, never a fail.
    Info,
}

/// What a result is expected to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// Lower bound of detection after the fault is in force (ms); `None` with
    /// `max_ms == None` means "not detected within the deadline".
    pub min_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// The formula with the configuration's values, e.g.
    /// `I + N×V − idle = 2000 + 3×1000 − 12 = 4988 ms`.
    pub formula: String,
    /// The spec (or library algorithm) the window comes from.
    pub spec: String,
    pub level: Level,
    /// What else the observation must show (status, payload, negotiated
    /// value), each judged at its own level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<Requirement>,
    /// A window of two alternatives with nothing between them: the
    /// detection falls in `min_ms..=gap.0` or in `gap.1..=max_ms` (a timer's
    /// wake or its next one, when which of the two the run cannot observe;
    /// no instant between is one the algorithm produces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<(u64, u64)>,
}

/// A non-timing requirement: the observed value of `what` must equal
/// `expected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub what: String,
    pub expected: String,
    /// Where it comes from.
    pub source: String,
    pub level: Level,
}

impl Expectation {
    pub fn window(min_ms: u64, max_ms: u64, formula: impl Into<String>, spec: impl Into<String>, level: Level) -> Self {
        Expectation { min_ms: Some(min_ms), max_ms: Some(max_ms.max(min_ms)), formula: formula.into(), spec: spec.into(), level, requirements: Vec::new(), gap: None }
    }

    /// One of two windows, `first` or `second` (each `(lo, hi)`, `first`
    /// earlier): one window with a gap, or a plain window where they meet.
    pub fn one_of(first: (u64, u64), second: (u64, u64), formula: impl Into<String>, spec: impl Into<String>, level: Level) -> Self {
        let mut e = Self::window(first.0.min(second.0), first.1.max(second.1), formula, spec, level);
        if first.1 < second.0 {
            e.gap = Some((first.1, second.0));
        }
        e
    }

    /// Whether `v` (ms) is in the window, `slack` ms either side of each part.
    pub fn contains(&self, v: i64, slack: i64) -> bool {
        let (Some(lo), Some(hi)) = (self.min_ms, self.max_ms) else { return false };
        let within = |a: u64, b: u64| v + slack >= a as i64 && v <= b as i64 + slack;
        match self.gap {
            Some((a, b)) => within(lo, a) || within(b, hi),
            None => within(lo, hi),
        }
    }

    /// Moved by `by` ms (a test's shifted window), gap included.
    pub fn shifted(mut self, by: i64) -> Self {
        let s = |v: u64| (v as i64 + by).max(0) as u64;
        self.min_ms = self.min_ms.map(s);
        self.max_ms = self.max_ms.map(s);
        self.gap = self.gap.map(|(a, b)| (s(a), s(b)));
        self
    }

    /// Nothing on this side can notice (keep-alive off, a frozen process):
    /// a detection would contradict the model, and fails.
    pub fn not_detected(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Expectation { min_ms: None, max_ms: None, formula: formula.into(), spec: spec.into(), level: Level::Must, requirements: Vec::new(), gap: None }
    }

    /// The connection must stay up (a live peer, a kept NAT mapping): a
    /// detection is a false positive, and fails.
    pub fn must_stay_up(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Self::not_detected(formula, spec)
    }

    /// Either outcome is what the configuration allows (the cases whose
    /// purpose is to predict a false positive, a race): reported, not judged.
    pub fn either(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Expectation { min_ms: None, max_ms: None, formula: formula.into(), spec: spec.into(), level: Level::Info, requirements: Vec::new(), gap: None }
    }

    /// A side that has nothing to judge here (the crashed server), with why.
    pub fn not_applicable(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Self::either(formula, spec)
    }

    /// This expectation, also requiring `what` to be observed as `expected`.
    pub fn requiring(mut self, what: impl Into<String>, expected: impl Into<String>, source: impl Into<String>, level: Level) -> Self {
        self.requirements.push(Requirement { what: what.into(), expected: expected.into(), source: source.into(), level });
        self
    }

    /// How wide the window is (ms), if there is one: both parts' widths
    /// when it has a gap.
    pub fn width_ms(&self) -> Option<u64> {
        let gap = self.gap.map_or(0, |(a, b)| b - a);
        self.min_ms.zip(self.max_ms).map(|(a, b)| b - a - gap)
    }

    pub fn expects_detection(&self) -> bool {
        self.max_ms.is_some()
    }

    /// How long a case may wait for this: 3× the upper bound (at least 2 s).
    pub fn deadline_ms(&self, fallback_ms: u64) -> u64 {
        self.max_ms.map(|m| (3 * m).max(2000)).unwrap_or(fallback_ms)
    }

    pub fn describe(&self) -> String {
        // Bounds that read the same (ms() rounds seconds to 10 ms) once.
        let part = |a: u64, b: u64| if ms(a) == ms(b) { ms(a) } else { format!("{}–{}", ms(a), ms(b)) };
        match (self.min_ms, self.max_ms, self.gap) {
            (Some(a), Some(b), Some((g0, g1))) => format!("{} or {}", part(a, g0), part(g1, b)),
            (Some(a), Some(b), None) => part(a, b),
            _ => "not detected".into(),
        }
    }
}

/// Milliseconds as people read them.
pub fn ms(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} s", v as f64 / 1000.0)
    } else if v >= 1000 {
        format!("{:.2} s", v as f64 / 1000.0)
    } else {
        format!("{v} ms")
    }
}

/// The outcome of one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    NonStrict,
    Informational,
    Unsupported,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [Verdict::Pass, Verdict::Fail, Verdict::NonStrict, Verdict::Informational, Verdict::Unsupported];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NonStrict => "non-strict",
            Verdict::Informational => "informational",
            Verdict::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The measured error terms of one result: the only allowance the judge
/// makes. Timer granularity is not here: it is in each formula.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Fault commit: from the request to the rule in force (the fault took
    /// effect somewhere in between; detection counts from its end).
    pub fault_commit_ms: u64,
    /// Observer resolution: for a side seen through sock_diag, the interval
    /// between the last dump that saw the socket open and the one that saw
    /// it closed (poll period + the dump's own time); for a library event,
    /// the millisecond its instant is truncated to.
    pub observer_ms: u64,
    /// Event timestamping: the worst lateness with which this machine woke
    /// a sleeping thread around the run (a probe thread measures it; see
    /// `wake.rs`) — how late an event can have been stamped.
    #[serde(default)]
    pub wake_ms: u64,
}

impl Budget {
    pub fn total_ms(&self) -> u64 {
        self.fault_commit_ms + self.observer_ms + self.wake_ms
    }

    pub fn describe(&self) -> String {
        format!("±{} ms (fault commit {} + observer {} + wake-up {})", self.total_ms(), self.fault_commit_ms, self.observer_ms, self.wake_ms)
    }
}

/// One requirement's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub what: String,
    pub expected: String,
    /// The observed value (`not observed` when the run did not show it).
    pub actual: String,
    pub verdict: Verdict,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lo: u64, hi: u64, level: Level) -> Expectation {
        Expectation::window(lo, hi, "f", "s", level)
    }

    #[test]
    fn deadline_is_three_times_the_upper_bound() {
        assert_eq!(w(0, 4000, Level::Must).deadline_ms(1), 12_000);
        assert_eq!(w(0, 100, Level::Must).deadline_ms(1), 2000);
        assert_eq!(Expectation::not_detected("", "").deadline_ms(7000), 7000);
    }
}

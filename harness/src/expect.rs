//! Expectations (the window a spec and a configuration allow) and verdicts.
//!
//! An expectation is computed from the configuration by the suite and carries
//! its formula as text, so a reader sees where the numbers come from. The
//! judge compares a measurement with it, allowing a fixed, stated measurement
//! tolerance (timer slack, scheduling, the observer's poll period) — never a
//! per-case widening.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Fixed allowance for measurement error, the same for every result.
pub const TOLERANCE_MS: u64 = 200;

/// How binding the requirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// MUST / algorithm of the implementation: outside the window is a fail.
    Must,
    /// SHOULD: outside the window is `non-strict`.
    Should,
    /// Reported for information: never a fail.
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
}

impl Expectation {
    pub fn window(min_ms: u64, max_ms: u64, formula: impl Into<String>, spec: impl Into<String>, level: Level) -> Self {
        Expectation { min_ms: Some(min_ms), max_ms: Some(max_ms.max(min_ms)), formula: formula.into(), spec: spec.into(), level }
    }

    pub fn not_detected(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Expectation { min_ms: None, max_ms: None, formula: formula.into(), spec: spec.into(), level: Level::Info }
    }

    /// The connection must stay up: a detection (a failure) is a `fail`.
    pub fn must_stay_up(formula: impl Into<String>, spec: impl Into<String>) -> Self {
        Expectation { min_ms: None, max_ms: None, formula: formula.into(), spec: spec.into(), level: Level::Must }
    }

    pub fn expects_detection(&self) -> bool {
        self.max_ms.is_some()
    }

    /// How long a case may wait for this: 3× the upper bound (at least 2 s).
    pub fn deadline_ms(&self, fallback_ms: u64) -> u64 {
        self.max_ms.map(|m| (3 * m).max(2000)).unwrap_or(fallback_ms)
    }

    pub fn describe(&self) -> String {
        if self.level == Level::Info && self.formula.starts_with("fault ") && self.formula.contains("does not apply") {
            return "—".into();
        }
        match (self.min_ms, self.max_ms) {
            (Some(a), Some(b)) if a == b => format!("{} (±{TOLERANCE_MS})", ms(a)),
            (Some(a), Some(b)) => format!("{}–{} (±{TOLERANCE_MS})", ms(a), ms(b)),
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

/// A verdict and the sentence that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub detail: String,
}

/// Judges a measurement (`Some(ms)` = detected that long after the fault was
/// in force; `None` = not detected by `deadline_ms`).
pub fn judge(exp: &Expectation, measured: Option<u64>, deadline_ms: u64) -> Judgement {
    let actual = match measured {
        Some(v) => format!("detected after {}", ms(v)),
        None => format!("not detected within {}", ms(deadline_ms)),
    };
    let (Some(lo), Some(hi)) = (exp.min_ms, exp.max_ms) else {
        let detail = match measured {
            None => format!("{actual}, as expected ({})", exp.formula),
            Some(_) => format!("{actual}, although {} was expected ({})", "no detection", exp.formula),
        };
        let verdict = match (exp.level, measured) {
            (Level::Must, None) => Verdict::Pass,
            (Level::Must, Some(_)) => Verdict::Fail,
            (Level::Should, None) => Verdict::Pass,
            (Level::Should, Some(_)) => Verdict::NonStrict,
            (Level::Info, _) => Verdict::Informational,
        };
        return Judgement { verdict, detail };
    };
    let inside = measured.map(|v| v + TOLERANCE_MS >= lo && v <= hi + TOLERANCE_MS).unwrap_or(false);
    let detail = format!("expected {}, {actual}", exp.describe());
    let verdict = match (inside, exp.level) {
        (_, Level::Info) => Verdict::Informational,
        (true, _) => Verdict::Pass,
        (false, Level::Must) => Verdict::Fail,
        (false, Level::Should) => Verdict::NonStrict,
    };
    Judgement { verdict, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lo: u64, hi: u64, level: Level) -> Expectation {
        Expectation::window(lo, hi, "f", "s", level)
    }

    #[test]
    fn inside_the_window_within_tolerance_passes() {
        assert_eq!(judge(&w(1000, 2000, Level::Must), Some(1500), 6000).verdict, Verdict::Pass);
        assert_eq!(judge(&w(1000, 2000, Level::Must), Some(2000 + TOLERANCE_MS), 6000).verdict, Verdict::Pass);
        assert_eq!(judge(&w(1000, 2000, Level::Must), Some(1000 - TOLERANCE_MS), 6000).verdict, Verdict::Pass);
    }

    #[test]
    fn outside_the_window_fails_with_expected_and_actual() {
        let j = judge(&w(1000, 2000, Level::Must), Some(2000 + TOLERANCE_MS + 1), 6000);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.detail.contains("expected 1.00 s–2.00 s") && j.detail.contains("detected after 2.20 s"), "{}", j.detail);
        assert_eq!(judge(&w(1000, 2000, Level::Must), Some(500), 6000).verdict, Verdict::Fail);
        let missed = judge(&w(1000, 2000, Level::Must), None, 6000);
        assert_eq!(missed.verdict, Verdict::Fail);
        assert!(missed.detail.contains("not detected within 6.00 s"));
    }

    #[test]
    fn should_level_is_non_strict_and_info_is_never_a_fail() {
        assert_eq!(judge(&w(1000, 2000, Level::Should), Some(9000), 9999).verdict, Verdict::NonStrict);
        assert_eq!(judge(&w(1000, 2000, Level::Info), None, 9999).verdict, Verdict::Informational);
        let nd = Expectation::not_detected("keep-alive off", "RFC 1122");
        assert_eq!(judge(&nd, None, 5000).verdict, Verdict::Informational);
        assert!(judge(&nd, Some(10), 5000).detail.contains("although"));
        let up = Expectation::must_stay_up("kept alive", "RFC 5382");
        assert_eq!(judge(&up, None, 5000).verdict, Verdict::Pass);
        assert_eq!(judge(&up, Some(10), 5000).verdict, Verdict::Fail);
    }

    #[test]
    fn deadline_is_three_times_the_upper_bound() {
        assert_eq!(w(0, 4000, Level::Must).deadline_ms(1), 12_000);
        assert_eq!(w(0, 100, Level::Must).deadline_ms(1), 2000);
        assert_eq!(Expectation::not_detected("", "").deadline_ms(7000), 7000);
    }
}

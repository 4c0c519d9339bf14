//! The judge: the one place that turns an expectation and an observation
//! into verdicts (Autobahn|Testsuite sets both of its verdicts in one place;
//! reporters only read them). Nothing else in kaspec assigns a verdict.
//!
//! Two axes per result:
//! - **detected in time**: the detection instant against the window, allowing
//!   only this result's measured error [`Budget`]; then every non-timing
//!   [`Requirement`](crate::expect::Requirement) against the observed facts;
//! - **released cleanly**: where the expectation promises a detection (a
//!   MUST window), the side must also have let go of its connection; a
//!   socket left ESTABLISHED or CLOSE-WAIT is a leak and fails.
//!
//! A detection earlier than the fault was even requested is not a verdict
//! but a harness error: the case did not run as designed.

use std::collections::BTreeMap;

pub use crate::expect::{Budget, CheckOutcome};
use crate::expect::{ms, Expectation, Level, Verdict};
use crate::report::Release;

/// What one side showed in one run.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Detection after the fault was in force (ms; negative: before it).
    pub detection_ms: Option<i64>,
    /// How long the side was watched after the fault.
    pub deadline_ms: u64,
    /// Observed values of the expectation's requirements, by `what`.
    pub facts: BTreeMap<String, String>,
    /// This side's end of the flow at the end of the case, where the axis
    /// applies (None: not observed, or the axis does not apply).
    pub release: Option<Release>,
    pub budget: Budget,
}

/// Both verdict axes of one result, with the sentences that explain them.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub detail: String,
    pub checks: Vec<CheckOutcome>,
    /// None where the axis does not apply (a live or frozen peer, a side
    /// that was not observed).
    pub release: Option<Verdict>,
    pub release_detail: Option<String>,
}

/// Judges one side. `Err` is a harness error (a detection before the fault
/// was requested), never a verdict.
pub fn judge(exp: &Expectation, obs: &Observation) -> Result<Judged, String> {
    let b = obs.budget.total_ms() as i64;
    if let Some(d) = obs.detection_ms {
        if d < -(obs.budget.fault_commit_ms as i64) {
            return Err(format!(
                "detected {} before the fault was requested ({} before it was in force): the case did not run as designed",
                ms((-d - obs.budget.fault_commit_ms as i64) as u64),
                ms(-d as u64)
            ));
        }
    }
    let actual = match obs.detection_ms {
        Some(v) if v < 0 => format!("detected {} ms before the fault was in force (within the fault's commit)", -v),
        Some(v) => format!("detected after {}", ms(v as u64)),
        None if obs.deadline_ms == 0 => "not detected".to_string(),
        None => format!("not detected within {}", ms(obs.deadline_ms)),
    };
    let (mut verdict, mut detail) = match (exp.min_ms, exp.max_ms) {
        (Some(_), Some(_)) => {
            let inside = obs.detection_ms.is_some_and(|v| exp.contains(v, b));
            let verdict = if inside { Verdict::Pass } else { outside(exp.level) };
            (verdict, format!("expected {} (budget ±{b} ms), {actual}", exp.describe()))
        }
        _ => match obs.detection_ms {
            None => (if exp.level == Level::Info { Verdict::Informational } else { Verdict::Pass }, format!("{actual}, as expected ({})", exp.formula)),
            Some(_) => (outside(exp.level), format!("{actual}, although no detection was expected ({})", exp.formula)),
        },
    };
    let mut checks = Vec::new();
    for r in &exp.requirements {
        let actual = obs.facts.get(&r.what).cloned();
        let v = match &actual {
            Some(a) if *a == r.expected => Verdict::Pass,
            _ => outside(r.level),
        };
        if v != Verdict::Pass {
            detail.push_str(&format!("; {}: expected {}, observed {} ({})", r.what, r.expected, actual.as_deref().unwrap_or("nothing"), r.source));
        }
        checks.push(CheckOutcome { what: r.what.clone(), expected: r.expected.clone(), actual: actual.unwrap_or_else(|| "not observed".into()), verdict: v });
        verdict = crate::report::worst(&[verdict, v]);
    }
    // A side that must detect must also let go of its connection; where no
    // detection is promised, a connection still open is what the model says.
    let promised = exp.level == Level::Must && exp.expects_detection();
    let (release, release_detail) = match &obs.release {
        None => (None, None),
        Some(r) if r.clean => (Some(Verdict::Pass), Some(format!("released: {}", r.detail))),
        Some(r) if promised => (Some(Verdict::Fail), Some(format!("leaked although the side had to detect and close: {}", r.detail))),
        Some(r) => (Some(Verdict::Informational), Some(format!("not released, as nothing on this side was to detect: {}", r.detail))),
    };
    Ok(Judged { verdict, detail, checks, release, release_detail })
}

/// A case × fault that does not run, with why: the only verdict not judged
/// from an observation.
pub fn unsupported(reason: impl Into<String>) -> Judged {
    Judged { verdict: Verdict::Unsupported, detail: reason.into(), checks: Vec::new(), release: None, release_detail: None }
}

fn outside(level: Level) -> Verdict {
    match level {
        Level::Must => Verdict::Fail,
        Level::Should => Verdict::NonStrict,
        Level::Info => Verdict::Informational,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lo: u64, hi: u64, level: Level) -> Expectation {
        Expectation::window(lo, hi, "f", "s", level)
    }

    fn at(d: i64) -> Observation {
        Observation { detection_ms: Some(d), deadline_ms: 6000, budget: Budget { fault_commit_ms: 4, observer_ms: 5, wake_ms: 1 }, ..Default::default() }
    }

    fn never() -> Observation {
        Observation { detection_ms: None, deadline_ms: 6000, budget: Budget { fault_commit_ms: 4, observer_ms: 5, wake_ms: 1 }, ..Default::default() }
    }

    fn v(exp: &Expectation, obs: &Observation) -> Verdict {
        judge(exp, obs).unwrap().verdict
    }

    #[test]
    fn a_window_of_two_wakes_fails_between_them() {
        // A timer's wake at 1000 or its next at 2000: nothing between.
        let e = Expectation::one_of((1000, 1000), (2000, 2000), "f", "s", Level::Must);
        assert_eq!(e.gap, Some((1000, 2000)));
        assert_eq!(e.describe(), "1.00 s or 2.00 s");
        assert_eq!(e.width_ms(), Some(0));
        for (d, want) in [(990, Verdict::Pass), (1010, Verdict::Pass), (1011, Verdict::Fail), (1500, Verdict::Fail), (1989, Verdict::Fail), (1990, Verdict::Pass), (2010, Verdict::Pass), (2011, Verdict::Fail)] {
            assert_eq!(v(&e, &at(d)), want, "{d} ms");
        }
        // Shifted (a test's window), the gap moves with it.
        assert_eq!(e.clone().shifted(50).gap, Some((1050, 2050)));
        // Parts that meet are one window.
        assert_eq!(Expectation::one_of((1000, 1500), (1400, 2000), "f", "s", Level::Must).gap, None);
    }

    #[test]
    fn a_window_allows_exactly_the_budget_on_each_side() {
        let e = w(1000, 2000, Level::Must);
        assert_eq!(v(&e, &at(1500)), Verdict::Pass);
        assert_eq!(v(&e, &at(990)), Verdict::Pass, "lower edge minus the 10 ms budget");
        assert_eq!(v(&e, &at(989)), Verdict::Fail, "one ms beyond");
        assert_eq!(v(&e, &at(2010)), Verdict::Pass, "upper edge plus the budget");
        assert_eq!(v(&e, &at(2011)), Verdict::Fail, "one ms beyond");
        assert_eq!(v(&e, &never()), Verdict::Fail, "a promised detection that never came");
        let j = judge(&e, &at(2011)).unwrap();
        assert!(j.detail.contains("expected 1.00 s–2.00 s (budget ±10 ms)") && j.detail.contains("detected after 2.01 s"), "{}", j.detail);
    }

    #[test]
    fn a_point_window_is_a_point_plus_the_budget() {
        let e = w(1700, 1700, Level::Must);
        assert_eq!(v(&e, &at(1690)), Verdict::Pass);
        assert_eq!(v(&e, &at(1710)), Verdict::Pass);
        assert_eq!(v(&e, &at(1689)), Verdict::Fail);
        assert_eq!(v(&e, &at(1711)), Verdict::Fail);
    }

    #[test]
    fn levels_decide_what_outside_means() {
        assert_eq!(v(&w(1000, 2000, Level::Should), &at(9000)), Verdict::NonStrict);
        assert_eq!(v(&w(1000, 2000, Level::Info), &at(9000)), Verdict::Informational);
        assert_eq!(v(&w(1000, 2000, Level::Info), &at(1500)), Verdict::Pass);
    }

    #[test]
    fn an_unexpected_detection_fails_unless_either_outcome_is_allowed() {
        let nothing = Expectation::not_detected("keep-alive off", "RFC 1122");
        assert_eq!(v(&nothing, &never()), Verdict::Pass);
        assert_eq!(v(&nothing, &at(10)), Verdict::Fail);
        let up = Expectation::must_stay_up("kept alive", "RFC 5382");
        assert_eq!(v(&up, &at(10)), Verdict::Fail);
        let either = Expectation::either("a false positive this path allows", "RFC 6298");
        assert_eq!(v(&either, &at(10)), Verdict::Informational);
        assert_eq!(v(&either, &never()), Verdict::Informational);
        assert!(judge(&nothing, &at(10)).unwrap().detail.contains("although no detection was expected"));
    }

    #[test]
    fn a_detection_before_the_fault_is_a_harness_error() {
        let e = w(0, 100, Level::Must);
        assert_eq!(v(&e, &at(-4)), Verdict::Pass, "within the fault's commit: it may already have been in force");
        let err = judge(&e, &at(-5)).unwrap_err();
        assert!(err.contains("before the fault was requested"), "{err}");
    }

    #[test]
    fn nothing_detected_with_no_deadline_never_says_within_0_ms() {
        let e = Expectation::not_detected("x", "s");
        let j = judge(&e, &Observation::default()).unwrap();
        assert!(!j.detail.contains("within 0"), "{}", j.detail);
    }

    #[test]
    fn requirements_fail_at_their_own_level() {
        let e = w(0, 100, Level::Must).requiring("gRPC status", "Unavailable", "statuscodes.md", Level::Must);
        let mut o = at(50);
        o.facts.insert("gRPC status".into(), "Unavailable".into());
        assert_eq!(v(&e, &o), Verdict::Pass);
        o.facts.insert("gRPC status".into(), "Unknown".into());
        let j = judge(&e, &o).unwrap();
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.detail.contains("gRPC status: expected Unavailable, observed Unknown"), "{}", j.detail);
        assert_eq!(v(&e, &at(50)), Verdict::Fail, "a requirement not observed fails");
        let soft = w(0, 100, Level::Must).requiring("x", "1", "s", Level::Should);
        assert_eq!(v(&soft, &at(50)), Verdict::NonStrict);
    }

    #[test]
    fn a_leak_fails_only_where_a_detection_was_promised() {
        let leak = Release::from_state(Some("ESTABLISHED"));
        let clean = Release::from_state(None);
        let mut o = at(1500);
        o.release = Some(leak.clone());
        assert_eq!(judge(&w(1000, 2000, Level::Must), &o).unwrap().release, Some(Verdict::Fail));
        assert_eq!(judge(&Expectation::not_detected("off", "s"), &o).unwrap().release, Some(Verdict::Informational));
        o.release = Some(clean);
        assert_eq!(judge(&w(1000, 2000, Level::Must), &o).unwrap().release, Some(Verdict::Pass));
        o.release = None;
        assert_eq!(judge(&w(1000, 2000, Level::Must), &o).unwrap().release, None);
        let close_wait = Release::from_state(Some("CLOSE_WAIT"));
        o.release = Some(close_wait);
        assert_eq!(judge(&w(1000, 2000, Level::Must), &o).unwrap().release, Some(Verdict::Fail));
    }

    #[test]
    fn unsupported_is_the_only_verdict_without_an_observation() {
        let j = unsupported("fault loss does not apply");
        assert_eq!((j.verdict, j.release), (Verdict::Unsupported, None));
    }
}

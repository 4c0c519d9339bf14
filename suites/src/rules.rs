//! The pieces of `kaspec validate`'s rules: a finding about a client
//! setting, its source, and the case × fault whose measurement confirms it.
//! Each protocol folder's `review.rs` states its rules with these; the
//! network rules every protocol shares (a keep-alive against a NAT, a
//! timeout against the round trip) are here once.

use std::time::Duration;

use kaspec_harness::expect::ms;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use serde::Serialize;

use crate::case::CaseDef;
use crate::config::Config;
use crate::network::NetworkProfile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warning,
    Info,
}

/// How a finding can be confirmed by measurement.
pub struct Check {
    pub case: &'static CaseDef,
    pub fault: FaultKind,
    /// Some(true) confirmed, Some(false) not confirmed, None no result to judge.
    pub confirmed: fn(&[CaseResult], &Config) -> Option<bool>,
    /// What confirmation means, for the report.
    pub means: &'static str,
}

pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub source: &'static str,
    /// Either a check, or why none can run here.
    pub check: Result<Check, String>,
}

fn client(results: &[CaseResult]) -> impl Iterator<Item = &CaseResult> {
    results.iter().filter(|r| r.side == "client")
}

pub fn none_detected(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| c.iter().all(|r| !r.detected))
}

pub fn told_too_many_pings(results: &[CaseResult], _: &Config) -> Option<bool> {
    (!results.is_empty()).then(|| {
        results.iter().any(|r| {
            r.detected
                && r.error
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase()
                    .replace('_', " ")
                    .contains("too many pings")
        })
    })
}

/// The connection broke behind the NAT: a side detected it, or data sent
/// after the idle period got no answer.
pub fn broke_behind_nat(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| {
        c.iter()
            .any(|r| r.detected || r.error.as_deref().unwrap_or_default().contains("no answer"))
    })
}
/// A client detection on a path whose peer is alive is a false positive.
pub fn false_detection(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| c.iter().any(|r| r.detected))
}

/// The finding of a keep-alive period `p` (of knob `key`) that is not below
/// the network's NAT idle timeout, if it is not; `check` is the NAT case
/// that measures it.
pub fn nat_finding(
    key: &str,
    period: Option<Duration>,
    net: Option<&NetworkProfile>,
    check: Check,
) -> Option<Finding> {
    let n = net?;
    let nat = n.nat_idle_timeout?;
    let p = period.filter(|p| *p >= nat)?;
    Some(Finding {
        rule: "keepalive-not-below-nat-timeout",
        severity: Severity::Warning,
        message: format!(
            "{key} = {} is not below the NAT idle timeout of `{}` ({}): the mapping expires before the next keep-alive and the connection breaks",
            ms(p.as_millis() as u64),
            n.name,
            ms(nat.as_millis() as u64)
        ),
        source: "RFC 5382 §5 (REQ-5); a keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout",
        check: Ok(check),
    })
}

/// The finding of a liveness timeout `t` (of knob `key`) that is not above
/// the network's round trip, if it is not; `case` shows the false positive
/// under `delay`.
pub fn round_trip_finding(
    key: &str,
    t: Duration,
    net: Option<&NetworkProfile>,
    case: &'static CaseDef,
) -> Option<Finding> {
    let n = net?;
    (!n.rtt.is_zero() && t <= n.rtt + n.jitter).then(|| Finding {
        rule: "timeout-below-round-trip",
        severity: Severity::Warning,
        message: format!(
            "{key} = {} is not above the round trip of `{}` ({} + {} jitter): healthy connections will be declared dead",
            ms(t.as_millis() as u64),
            n.name,
            ms(n.rtt.as_millis() as u64),
            ms(n.jitter.as_millis() as u64)
        ),
        source: "RFC 6298 §2 (a timer shorter than the round trip fires on a healthy path)",
        check: Ok(Check { case, fault: FaultKind::Delay, confirmed: false_detection, means: "the client declared a live server dead on a path with this round trip" }),
    })
}

/// For a protocol's review tests: the rule names `review` raises on a
/// configuration of `knobs` with `sets` (`key=value`) applied.
#[cfg(test)]
pub fn rules_raised(
    review: fn(&Config, Option<&NetworkProfile>) -> Vec<Finding>,
    knobs: &'static [&'static crate::config::Key],
    sets: &[&str],
    net: Option<&NetworkProfile>,
) -> Vec<&'static str> {
    let mut c = Config::new(knobs.iter().copied());
    for s in sets {
        c.set_pair(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    review(&c, net).into_iter().map(|f| f.rule).collect()
}

//! `kaspec validate`: review a client profile (and optionally the network it
//! runs on) rule by rule, each rule citing its source, then run the cases
//! that can confirm each finding with those very settings, and say per
//! finding whether the measurement confirmed it.

use std::fmt::Write as _;
use std::time::Duration;

use kaspec_harness::expect::ms;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use serde::Serialize;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::network::NetworkProfile;
use crate::registry;
use crate::rules::{Finding, Severity};

/// Runs longer than this are not started; the finding says so.
pub const MAX_RUN: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Confirmed,
    NotConfirmed,
    NotMeasured,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    pub source: String,
    pub outcome: Outcome,
    /// What was run and what it showed (or why nothing was run).
    pub evidence: String,
}

/// The static review: one finding per rule that applies, each protocol's
/// rules from its own folder (`review.rs`), in registry order.
pub fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    registry::PROTOCOLS
        .iter()
        .flat_map(|p| (p.review)(c, net))
        .collect()
}

/// Runs each finding's check (once per case × fault) and judges it.
pub fn confirm(
    ctx: &Ctx,
    findings: &[Finding],
    mut progress: impl FnMut(&str),
) -> kaspec_harness::Result<(Vec<Judged>, Vec<CaseResult>)> {
    let mut ran: Vec<(&str, FaultKind, Vec<CaseResult>)> = Vec::new();
    let mut judged = Vec::new();
    for f in findings {
        let (outcome, evidence) = match &f.check {
            Err(why) => (Outcome::NotMeasured, why.clone()),
            Ok(check) => {
                let def = check.case;
                let id = def.id;
                let budget = (def.budget)(ctx);
                if budget > MAX_RUN {
                    (
                        Outcome::NotMeasured,
                        format!("{} would take up to {}", id, ms(budget.as_millis() as u64)),
                    )
                } else {
                    if !ran.iter().any(|(c, fa, _)| *c == id && *fa == check.fault) {
                        progress(&format!(
                            "{} × {} (at most {})",
                            id,
                            check.fault,
                            ms(budget.as_millis() as u64)
                        ));
                        let r = (def.run)(ctx, def, check.fault)?;
                        ran.push((id, check.fault, r));
                    }
                    let results = &ran
                        .iter()
                        .find(|(c, fa, _)| *c == id && *fa == check.fault)
                        .expect("just ran")
                        .2;
                    let shown: Vec<String> = results
                        .iter()
                        .map(|r| {
                            format!(
                                "{} {}: {}",
                                r.side,
                                r.implementation.name,
                                r.detection_ms.map(ms).unwrap_or_else(|| format!(
                                    "not detected in {}",
                                    ms(r.deadline_ms)
                                ))
                            )
                        })
                        .collect();
                    match (check.confirmed)(results, &ctx.config) {
                        Some(true) => (
                            Outcome::Confirmed,
                            format!(
                                "{} × {}: {} ({})",
                                id,
                                check.fault,
                                check.means,
                                shown.join("; ")
                            ),
                        ),
                        Some(false) => (
                            Outcome::NotConfirmed,
                            format!(
                                "{} × {}: not the case — {}",
                                id,
                                check.fault,
                                shown.join("; ")
                            ),
                        ),
                        None => (
                            Outcome::NotMeasured,
                            format!("{} × {}: no result to judge", id, check.fault),
                        ),
                    }
                }
            }
        };
        judged.push(Judged {
            rule: f.rule.into(),
            severity: f.severity,
            message: f.message.clone(),
            source: f.source.into(),
            outcome,
            evidence,
        });
    }
    Ok((judged, ran.into_iter().flat_map(|(_, _, r)| r).collect()))
}

/// 1 when a warning was confirmed by measurement, else 0.
pub fn exit_code(judged: &[Judged]) -> i32 {
    if judged
        .iter()
        .any(|j| j.severity == Severity::Warning && matches!(j.outcome, Outcome::Confirmed))
    {
        1
    } else {
        0
    }
}

pub fn markdown(profile: &str, network: Option<&str>, judged: &[Judged]) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# kaspec validate `{profile}`{}\n",
        network.map(|n| format!(" on `{n}`")).unwrap_or_default()
    );
    if judged.is_empty() {
        let _ = writeln!(m, "No finding: every rule passed.");
    }
    for j in judged {
        let outcome = match j.outcome {
            Outcome::Confirmed => "**confirmed by measurement**",
            Outcome::NotConfirmed => "not confirmed by measurement",
            Outcome::NotMeasured => "not measured",
        };
        let sev = match j.severity {
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let _ = writeln!(
            m,
            "- [{sev}] `{}`: {}\n  - source: {}\n  - {outcome}: {}",
            j.rule, j.message, j.source, j.evidence
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(c: &Config, n: Option<&NetworkProfile>) -> Vec<&'static str> {
        review(c, n).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn the_defaults_only_draw_the_grpc_and_user_timeout_findings() {
        assert_eq!(
            rules(&Config::default(), None),
            vec!["tcp-user-timeout-off", "grpc-pings-too-often"]
        );
    }

    #[test]
    fn each_rule_fires_on_its_setting() {
        let mut c = Config::default();
        for s in [
            "tcp.keepalive=false",
            "mqtt.keep_alive=0s",
            "grpc.keepalive_while_idle=false",
            "grpc.keepalive_time=10m",
            "tcp.user_timeout=5s",
        ] {
            c.set_pair(s).unwrap();
        }
        assert_eq!(
            rules(&c, None),
            vec![
                "tcp-keepalive-off",
                "mqtt-keep-alive-off",
                "grpc-no-keepalive-while-idle"
            ]
        );
        let mut c = Config::default();
        c.set_pair("tcp.idle=2h").unwrap();
        assert!(rules(&c, None).contains(&"tcp-keepalive-2h-default"));
    }

    #[test]
    fn network_rules_compare_periods_and_timeouts_with_the_path() {
        let n = NetworkProfile::parse("name = \"n\"\nnat_idle_timeout = \"5s\"\nrtt = \"300ms\"\n")
            .unwrap();
        let mut c = Config::default();
        c.set_pair("mqtt.keep_alive=8s").unwrap();
        c.set_pair("websocket.pong_timeout=200ms").unwrap();
        let f = review(&c, Some(&n));
        let nat: Vec<_> = f
            .iter()
            .filter(|f| f.rule == "keepalive-not-below-nat-timeout")
            .collect();
        assert_eq!(nat.len(), 1);
        assert!(nat[0].message.contains("mqtt.keep_alive = 8.00 s"));
        assert!(f.iter().any(|f| f.rule == "timeout-below-round-trip"
            && f.message.contains("websocket.pong_timeout")));
    }
}

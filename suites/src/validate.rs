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

use crate::ctx::Ctx;
use crate::registry;
use crate::config::Config;
use crate::network::NetworkProfile;

/// Runs longer than this are not started; the finding says so.
pub const MAX_RUN: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warning,
    Info,
}

/// How a finding can be confirmed by measurement.
pub struct Check {
    pub case: &'static str,
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

fn client(results: &[CaseResult]) -> impl Iterator<Item = &CaseResult> {
    results.iter().filter(|r| r.side == "client")
}

fn none_detected(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| c.iter().all(|r| !r.detected))
}

fn told_too_many_pings(results: &[CaseResult], _: &Config) -> Option<bool> {
    (!results.is_empty()).then(|| {
        results.iter().any(|r| r.detected && r.error.as_deref().unwrap_or_default().to_lowercase().replace('_', " ").contains("too many pings"))
    })
}

fn no_h2_detection(results: &[CaseResult], c: &Config) -> Option<bool> {
    let bound = (c.grpc.keepalive_time + c.grpc.keepalive_timeout).as_millis() as u64 + kaspec_harness::expect::TOLERANCE_MS;
    let cl: Vec<_> = client(results).collect();
    (!cl.is_empty()).then(|| cl.iter().all(|r| r.detection_ms.map(|d| d > bound).unwrap_or(true)))
}

const NAT_NOT_YET: &str = "no nat-expiry case measures this key";

/// The connection broke behind the NAT: a side detected it, or data sent
/// after the idle period got no answer.
fn broke_behind_nat(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| c.iter().any(|r| r.detected || r.error.as_deref().unwrap_or_default().contains("no answer")))
}
/// A client detection on a path whose peer is alive is a false positive.
fn false_detection(results: &[CaseResult], _: &Config) -> Option<bool> {
    let c: Vec<_> = client(results).collect();
    (!c.is_empty()).then(|| c.iter().any(|r| r.detected))
}

/// The static review: one finding per rule that applies.
pub fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let mut f = Vec::new();
    if !c.tcp.keepalive {
        f.push(Finding {
            rule: "tcp-keepalive-off",
            severity: Severity::Warning,
            message: "tcp.keepalive = false: an idle connection whose peer or path dies is never detected by TCP".into(),
            source: "RFC 1122 §4.2.3.6 (keep-alives are off by default)",
            check: Ok(Check { case: "tcp/rfc1122-4.2.3.6/1", fault: FaultKind::Blackhole, confirmed: none_detected, means: "the client never detected the blackholed path" }),
        });
    } else if c.tcp.idle >= Duration::from_secs(7200) {
        f.push(Finding {
            rule: "tcp-keepalive-2h-default",
            severity: Severity::Warning,
            message: format!("tcp.idle = {} is at (or above) the 2-hour default: a dead path is found hours later", ms(c.tcp.idle.as_millis() as u64)),
            source: "RFC 1122 §4.2.3.6 (interval MUST default to no less than two hours)",
            check: Err("the keep-alive window is hours long; not run".into()),
        });
    }
    if c.tcp.user_timeout.is_zero() {
        f.push(Finding {
            rule: "tcp-user-timeout-off",
            severity: Severity::Warning,
            message: "tcp.user_timeout = 0: data sent on a dead path waits for the retransmission limit (tcp_retries2, ~15 min); keep-alive does not probe while data is in flight".into(),
            source: "RFC 5482 §3, RFC 9293 §3.8.3 (R2)",
            check: Ok(Check { case: "tcp/rfc5482-3/1", fault: FaultKind::Blackhole, confirmed: none_detected, means: "the client with unacknowledged data never detected the blackholed path" }),
        });
    }
    if c.mqtt.keep_alive.is_zero() {
        f.push(Finding {
            rule: "mqtt-keep-alive-off",
            severity: Severity::Warning,
            message: "mqtt.keep_alive = 0: no PINGREQ, so neither the client nor the broker can detect a dead peer".into(),
            source: "MQTT 3.1.1 §3.1.2.10 (a Keep Alive of zero turns the mechanism off)",
            check: Ok(Check { case: "mqtt/3.1.1-3.1.2.10/1", fault: FaultKind::Blackhole, confirmed: none_detected, means: "rumqttc never detected the blackholed broker" }),
        });
    }
    if c.grpc.keepalive_time < Duration::from_secs(300) {
        f.push(Finding {
            rule: "grpc-pings-too-often",
            severity: Severity::Warning,
            message: format!(
                "grpc.keepalive_time = {} is below the servers' default PERMIT_KEEPALIVE_TIME (5 min): servers that enforce it answer with GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"",
                ms(c.grpc.keepalive_time.as_millis() as u64)
            ),
            source: "gRFC A8 (server enforcement)",
            check: Ok(Check { case: "grpc/a8-ping-policy/1", fault: FaultKind::None, confirmed: told_too_many_pings, means: "a server answered \"too many pings\"" }),
        });
    }
    if !c.grpc.keepalive_while_idle {
        f.push(Finding {
            rule: "grpc-no-keepalive-while-idle",
            severity: Severity::Info,
            message: "grpc.keepalive_while_idle = false: idle channels are not pinged; a dead path is found by the first call (after KEEPALIVE_TIMEOUT) or by TCP keep-alive".into(),
            source: "gRFC A8 (KEEPALIVE_WITHOUT_CALLS)",
            check: Ok(Check { case: "grpc/a8-keepalive/1", fault: FaultKind::Blackhole, confirmed: no_h2_detection, means: "no HTTP/2 keep-alive detection within I + T on an idle channel" }),
        });
    }
    if let Some(n) = net {
        if let Some(nat) = n.nat_idle_timeout {
            let periods = [
                ("tcp.idle", c.tcp.keepalive.then_some(c.tcp.idle)),
                ("mqtt.keep_alive", (!c.mqtt.keep_alive.is_zero()).then_some(c.mqtt.keep_alive)),
                ("websocket.ping_interval", Some(c.websocket.ping_interval)),
                ("grpc.keepalive_time", c.grpc.keepalive_while_idle.then_some(c.grpc.keepalive_time)),
            ];
            for (key, period) in periods {
                if let Some(p) = period.filter(|p| *p >= nat) {
                    f.push(Finding {
                        rule: "keepalive-not-below-nat-timeout",
                        severity: Severity::Warning,
                        message: format!(
                            "{key} = {} is not below the NAT idle timeout of `{}` ({}): the mapping expires before the next keep-alive and the connection breaks",
                            ms(p.as_millis() as u64),
                            n.name,
                            ms(nat.as_millis() as u64)
                        ),
                        source: "RFC 5382 §5 (REQ-5); a keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout",
                        check: match key {
                            "tcp.idle" => Ok(Check { case: "tcp/rfc5382-5/1", fault: FaultKind::NatExpiry, confirmed: broke_behind_nat, means: "the connection broke behind a NAT with this timeout" }),
                            "mqtt.keep_alive" => Ok(Check { case: "mqtt/3.1.1-3.1.2.10/2", fault: FaultKind::NatExpiry, confirmed: broke_behind_nat, means: "the session broke behind a NAT with this timeout" }),
                            "grpc.keepalive_time" => Ok(Check { case: "grpc/a8-keepalive/3", fault: FaultKind::NatExpiry, confirmed: broke_behind_nat, means: "the channel broke behind a NAT with this timeout" }),
                            "websocket.ping_interval" => Ok(Check { case: "websocket/rfc6455-5.5.2/5", fault: FaultKind::NatExpiry, confirmed: broke_behind_nat, means: "the heartbeat declared the connection dead behind a NAT with this timeout" }),
                            _ => Err(NAT_NOT_YET.into()),
                        },
                    });
                }
            }
        }
        let timeouts = [("websocket.pong_timeout", c.websocket.pong_timeout), ("grpc.keepalive_timeout", c.grpc.keepalive_timeout)];
        for (key, t) in timeouts {
            if !n.rtt.is_zero() && t <= n.rtt + n.jitter {
                f.push(Finding {
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
                    check: Ok(match key {
                        "websocket.pong_timeout" => Check {
                            case: "websocket/rfc6455-5.5.2/6",
                            fault: FaultKind::Delay,
                            confirmed: false_detection,
                            means: "the client declared a live server dead on a path with this round trip",
                        },
                        _ => Check {
                            case: "grpc/a8-keepalive/1",
                            fault: FaultKind::Delay,
                            confirmed: false_detection,
                            means: "the client declared a live server dead on a path with this round trip",
                        },
                    }),
                });
            }
        }
    }
    f
}

/// Runs each finding's check (once per case × fault) and judges it.
pub fn confirm(ctx: &Ctx, findings: &[Finding], mut progress: impl FnMut(&str)) -> kaspec_harness::Result<(Vec<Judged>, Vec<CaseResult>)> {
    let mut ran: Vec<(&str, FaultKind, Vec<CaseResult>)> = Vec::new();
    let mut judged = Vec::new();
    for f in findings {
        let (outcome, evidence) = match &f.check {
            Err(why) => (Outcome::NotMeasured, why.clone()),
            Ok(check) => {
                let def = registry::all().into_iter().find(|c| c.id == check.case).expect("checks name real cases");
                let budget = (def.budget)(ctx);
                if budget > MAX_RUN {
                    (Outcome::NotMeasured, format!("{} would take up to {}", check.case, ms(budget.as_millis() as u64)))
                } else {
                    if !ran.iter().any(|(c, fa, _)| *c == check.case && *fa == check.fault) {
                        progress(&format!("{} × {} (at most {})", check.case, check.fault, ms(budget.as_millis() as u64)));
                        let r = (def.run)(ctx, def, check.fault)?;
                        ran.push((check.case, check.fault, r));
                    }
                    let results = &ran.iter().find(|(c, fa, _)| *c == check.case && *fa == check.fault).expect("just ran").2;
                    let shown: Vec<String> = results
                        .iter()
                        .map(|r| format!("{} {}: {}", r.side, r.implementation.name, r.detection_ms.map(ms).unwrap_or_else(|| format!("not detected in {}", ms(r.deadline_ms)))))
                        .collect();
                    match (check.confirmed)(results, &ctx.config) {
                        Some(true) => (Outcome::Confirmed, format!("{} × {}: {} ({})", check.case, check.fault, check.means, shown.join("; "))),
                        Some(false) => (Outcome::NotConfirmed, format!("{} × {}: not the case — {}", check.case, check.fault, shown.join("; "))),
                        None => (Outcome::NotMeasured, format!("{} × {}: no result to judge", check.case, check.fault)),
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
    if judged.iter().any(|j| j.severity == Severity::Warning && matches!(j.outcome, Outcome::Confirmed)) {
        1
    } else {
        0
    }
}

pub fn markdown(profile: &str, network: Option<&str>, judged: &[Judged]) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# kaspec validate `{profile}`{}\n", network.map(|n| format!(" on `{n}`")).unwrap_or_default());
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
        let _ = writeln!(m, "- [{sev}] `{}`: {}\n  - source: {}\n  - {outcome}: {}", j.rule, j.message, j.source, j.evidence);
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
        assert_eq!(rules(&Config::default(), None), vec!["tcp-user-timeout-off", "grpc-pings-too-often"]);
    }

    #[test]
    fn each_rule_fires_on_its_setting() {
        let mut c = Config::default();
        for s in ["tcp.keepalive=false", "mqtt.keep_alive=0s", "grpc.keepalive_while_idle=false", "grpc.keepalive_time=10m", "tcp.user_timeout=5s"] {
            c.set_pair(s).unwrap();
        }
        assert_eq!(rules(&c, None), vec!["tcp-keepalive-off", "mqtt-keep-alive-off", "grpc-no-keepalive-while-idle"]);
        let mut c = Config::default();
        c.set_pair("tcp.idle=2h").unwrap();
        assert!(rules(&c, None).contains(&"tcp-keepalive-2h-default"));
    }

    #[test]
    fn network_rules_compare_periods_and_timeouts_with_the_path() {
        let n = NetworkProfile::parse("name = \"n\"\nnat_idle_timeout = \"5s\"\nrtt = \"300ms\"\n").unwrap();
        let mut c = Config::default();
        c.set_pair("mqtt.keep_alive=8s").unwrap();
        c.set_pair("websocket.pong_timeout=200ms").unwrap();
        let f = review(&c, Some(&n));
        let nat: Vec<_> = f.iter().filter(|f| f.rule == "keepalive-not-below-nat-timeout").collect();
        assert_eq!(nat.len(), 1);
        assert!(nat[0].message.contains("mqtt.keep_alive = 8.00 s"));
        assert!(f.iter().any(|f| f.rule == "timeout-below-round-trip" && f.message.contains("websocket.pong_timeout")));
    }
}

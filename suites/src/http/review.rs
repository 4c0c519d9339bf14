//! `kaspec validate`'s rules for the `http.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use super::RACE;
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{Check, Finding, Severity};

/// The reuse race saw the pool hand out the connection (or a request fail
/// on it) at an idle time where the server may already be closing it (from
/// S − J − 1 ms on: `race.exposed`, counted by the case). Deterministic,
/// unlike a failure, which needs the request to land inside a window about
/// one round trip wide.
fn pool_exposed(results: &[CaseResult], _: &Config) -> Option<bool> {
    let counts: Vec<u64> = results
        .iter()
        .filter(|r| r.side == "client")
        .filter_map(|r| r.config.get("race.exposed")?.parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().any(|n| *n > 0))
}

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let k = super::knobs::HttpConfig::of(c);
    let rtt = net.map(|n| n.rtt).unwrap_or_default();
    let mut f = Vec::new();
    let s = k.server_keepalive_timeout;
    let p = k.pool_idle_timeout;
    if !s.is_zero() && (p.is_zero() || p + rtt > s) {
        f.push(Finding {
            rule: "http-pool-outlives-server-keepalive",
            severity: Severity::Warning,
            message: format!(
                "http.pool_idle_timeout = {} is not below the server's keep-alive timeout {} ms minus the round trip {} ms: a request sent as the server closes the idle connection fails (hyper IncompleteMessage, not retried once written)",
                if p.is_zero() { "never".to_string() } else { format!("{} ms", p.as_millis()) },
                s.as_millis(),
                rtt.as_millis()
            ),
            source: "RFC 9112 §9.5; hyper-util 0.1 client/legacy/client.rs send_request (retries only a request given back unsent)",
            check: Ok(Check { case: &RACE, fault: FaultKind::None, confirmed: pool_exposed, means: "the reuse race saw the pool hand out a connection at an idle time where the server may already be closing it (or a request fail on it)" }),
        });
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sets: &[&str]) -> Vec<&'static str> {
        crate::rules::rules_raised(review, &super::super::knobs::KNOBS, sets, None)
    }

    #[test]
    fn a_pool_that_outlives_the_servers_keepalive_is_flagged() {
        assert!(rules(&[]).is_empty(), "the defaults raise nothing");
        assert_eq!(
            rules(&["http.server_keepalive_timeout=75s"]),
            vec!["http-pool-outlives-server-keepalive"],
            "reqwest's 90 s against nginx's 75 s"
        );
        assert!(rules(&[
            "http.server_keepalive_timeout=75s",
            "http.pool_idle_timeout=60s"
        ])
        .is_empty());
    }
}

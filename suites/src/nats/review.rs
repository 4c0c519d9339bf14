//! `kaspec validate`'s rules for the `nats.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use super::expect::MAX_PENDING_PINGS;
use super::CLIENT_PINGS;
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{Check, Finding, Severity};

/// The client noticed the dead server.
fn client_detected(results: &[CaseResult], _: &Config) -> Option<bool> {
    results
        .iter()
        .find(|r| r.side == "client")
        .map(|r| r.detected)
}

pub(crate) fn review(c: &Config, _: Option<&NetworkProfile>) -> Vec<Finding> {
    let k = super::knobs::NatsConfig::of(c);
    let p = k.ping_interval;
    let mut f = Vec::new();
    if p >= std::time::Duration::from_secs(60) {
        let n = MAX_PENDING_PINGS + 1;
        f.push(Finding {
            rule: "nats-slow-dead-server-detection",
            severity: Severity::Warning,
            message: format!(
                "nats.ping_interval = {}s: async-nats declares a silent server dead only at the tick that makes {n} PINGs pending, {n} × ping_interval = {}s after it last heard from it; until then publishes go into a dead socket",
                p.as_secs(),
                n * p.as_secs()
            ),
            source: "async-nats 0.51 src/lib.rs ConnectionHandler (MAX_PENDING_PINGS = 2), ConnectOptions::ping_interval (60 s by default)",
            check: Ok(Check { case: &CLIENT_PINGS, fault: FaultKind::Blackhole, confirmed: client_detected, means: "async-nats disconnected at 3 × ping_interval on the blackholed path" }),
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
    fn a_long_ping_interval_is_flagged() {
        assert!(rules(&[]).is_empty(), "the defaults raise nothing");
        assert_eq!(
            rules(&["nats.ping_interval=60s"]),
            vec!["nats-slow-dead-server-detection"]
        );
        assert!(rules(&["nats.ping_interval=10s"]).is_empty());
    }
}

//! `kaspec validate`'s rules for the `redis.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use super::{IDLE_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{none_detected, Check, Finding, Severity};

/// The server closed the idle connection.
fn server_closed(results: &[CaseResult], _: &Config) -> Option<bool> {
    results
        .iter()
        .find(|r| r.side == "server")
        .map(|r| r.detected)
}

pub(crate) fn review(c: &Config, _: Option<&NetworkProfile>) -> Vec<Finding> {
    let k = super::knobs::RedisConfig::of(c);
    let r = &k;
    let mut f = Vec::new();
    if !r.server_timeout.is_zero() && !r.idle.is_zero() && r.idle > r.server_timeout {
        f.push(Finding {
            rule: "redis-idle-over-server-timeout",
            severity: Severity::Warning,
            message: format!(
                "redis.idle = {}s is longer than the server's timeout {}s: redis-server closes the idle connection (between T and T + 1 s after its last command) and the next command finds it closed",
                r.idle.as_secs(),
                r.server_timeout.as_secs()
            ),
            source: "redis.conf `timeout`; timeout.c clientsCronHandleTimeout (Redis 7.0)",
            check: Ok(Check { case: &IDLE_TIMEOUT, fault: FaultKind::None, confirmed: server_closed, means: "redis-server closed a connection idle longer than its timeout" }),
        });
    }
    if r.response_timeout.is_zero() {
        f.push(Finding {
            rule: "redis-no-response-timeout",
            severity: Severity::Warning,
            message: "redis.response_timeout = 0 and redis-rs sets no TCP keep-alive by default: a command on a dead path waits as long as the kernel retransmits (~15 min)".into(),
            source: "redis-rs 1.x AsyncConnectionConfig::set_response_timeout, io::tcp::TcpSettings (keep-alive off by default)",
            check: Ok(Check { case: &RESPONSE_TIMEOUT, fault: FaultKind::Blackhole, confirmed: none_detected, means: "redis-rs never failed the PING on the blackholed path" }),
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
    fn idle_over_the_servers_timeout_and_no_response_timeout_are_flagged() {
        assert!(rules(&[]).is_empty(), "the defaults raise nothing");
        assert_eq!(
            rules(&["redis.idle=60s", "redis.server_timeout=30s"]),
            vec!["redis-idle-over-server-timeout"]
        );
        assert!(rules(&["redis.idle=10s", "redis.server_timeout=30s"]).is_empty());
        assert!(
            rules(&["redis.idle=60s"]).is_empty(),
            "timeout 0: never closed"
        );
        assert_eq!(
            rules(&["redis.response_timeout=0s"]),
            vec!["redis-no-response-timeout"]
        );
    }
}

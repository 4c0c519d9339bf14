//! `kaspec validate`'s rules for the `mariadb.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use super::{QUERY_IN_FLIGHT, WAIT_TIMEOUT};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{none_detected, Check, Finding, Severity};

/// The client's query on the idle connection failed.
fn query_failed(results: &[CaseResult], _: &Config) -> Option<bool> {
    results
        .iter()
        .find(|r| r.side == "client")
        .map(|r| r.detected)
}

pub(crate) fn review(c: &Config, _: Option<&NetworkProfile>) -> Vec<Finding> {
    let m = &super::knobs::MariadbConfig::of(c);
    let mut f = Vec::new();
    if !m.idle.is_zero() && m.idle > m.server_wait_timeout {
        f.push(Finding {
            rule: "mariadb-idle-over-wait_timeout",
            severity: Severity::Warning,
            message: format!(
                "mariadb.idle = {}s is longer than the server's wait_timeout {}s: mariadbd closes the connection at wait_timeout after its last reply, and the next query on a kept mysql_async Conn fails (mysql_async's Pool discards such a connection at checkout: its TTL, conn_ttl or @@wait_timeout, and a readability check)",
                m.idle.as_secs(),
                m.server_wait_timeout.as_secs()
            ),
            source: "MariaDB wait_timeout (sql_parse.cc do_command); mysql_async 0.37 conn/pool/mod.rs (expired(), check())",
            check: Ok(Check { case: &WAIT_TIMEOUT, fault: FaultKind::None, confirmed: query_failed, means: "a query on a mysql_async Conn idle past the server's wait_timeout failed" }),
        });
    }
    // For a profile that describes its mysql_async client (a mariadb.url).
    if m.url.is_empty() {
        return f;
    }
    f.push(Finding {
        rule: "mariadb-no-query-timeout",
        severity: Severity::Warning,
        message: "mysql_async has no read timeout, and TCP keep-alive (mariadb.tcp_keepalive) does not probe while a query is unacknowledged: a query on a dead path waits as long as the kernel retransmits (tcp_retries2, ~15 min); bound it in the application (tokio::time::timeout)".into(),
        source: "mysql_async 0.37 Opts (no read/write timeout); RFC 9293 §3.8.3, Linux tcp_retries2",
        check: Ok(Check { case: &QUERY_IN_FLIGHT, fault: FaultKind::Blackhole, confirmed: none_detected, means: "mysql_async never failed the query on the blackholed path" }),
    });
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sets: &[&str]) -> Vec<&'static str> {
        crate::rules::rules_raised(review, &super::super::knobs::KNOBS, sets, None)
    }

    #[test]
    fn idle_over_wait_timeout_is_flagged_and_the_missing_query_timeout_for_a_url() {
        assert!(rules(&[]).is_empty(), "the defaults raise nothing");
        assert_eq!(
            rules(&["mariadb.idle=60s", "mariadb.server_wait_timeout=30s"]),
            vec!["mariadb-idle-over-wait_timeout"]
        );
        assert!(rules(&["mariadb.idle=10s", "mariadb.server_wait_timeout=30s"]).is_empty());
        assert_eq!(
            rules(&["mariadb.url=mysql://app@db/app?tcp_keepalive=10000"]),
            vec!["mariadb-no-query-timeout"]
        );
    }
}

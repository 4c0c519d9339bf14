//! `kaspec validate`'s rules for the `http.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use super::{DEAD_POOLED, RACE};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{none_detected, Check, Finding, Severity};

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

fn shown(d: std::time::Duration) -> String {
    if d.is_zero() {
        "never".into()
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Rule (a): nothing bounds a request written to a pooled connection whose
/// path died. Only TCP_USER_TIMEOUT (RFC 5482 §3: unacknowledged data) or
/// reqwest's total timeout end it; TCP keep-alive does not probe while the
/// request is unacknowledged (Linux net/ipv4/tcp_timer.c
/// tcp_keepalive_timer: `if (tp->packets_out || !tcp_write_queue_empty(sk))
/// goto resched;`), it only empties the pool of connections dead for
/// longer than I + N × V before the request. Without either the request
/// hangs until tcp_retries2 (15 retransmissions, ~924 s).
fn no_dead_path_bound(k: &super::knobs::HttpConfig) -> Option<Finding> {
    let unbounded = k.tcp.user_timeout.is_zero() && k.request_timeout.is_zero();
    unbounded.then(|| Finding {
        rule: "http-request-unbounded-on-dead-path",
        severity: Severity::Warning,
        message: format!(
            "neither http.tcp_user_timeout nor http.request_timeout is set{}: a request written to a pooled connection whose path died waits until TCP gives up (tcp_retries2, ~15 min)",
            if k.tcp.keepalive {
                format!(" (TCP keep-alive at {} s does not probe while the request is unacknowledged)", k.tcp.idle.as_secs())
            } else {
                ", nor TCP keep-alive".to_string()
            }
        ),
        source: "RFC 5482 §3 (TCP_USER_TIMEOUT); Linux tcp_timer.c tcp_keepalive_timer (no probe while data is in flight); reqwest ClientBuilder::timeout",
        check: Ok(Check { case: &DEAD_POOLED, fault: FaultKind::Blackhole, confirmed: none_detected, means: "the request on the blackholed pooled connection had not ended when the case gave up on it" }),
    })
}

/// Rule (b): the proxy's pool keeps an idle upstream connection longer
/// than the upstream server keeps it (minus the round trip): the reuse
/// race one level down. nginx drops a pooled connection only at its
/// upstream keepalive_timeout or on reading the server's FIN
/// (ngx_http_upstream_keepalive_module.c: `ngx_add_timer(c->read,
/// kp->conf->timeout)`, close handler `recv(.., MSG_PEEK)` = 0 → close), so
/// a request it writes while the FIN is in flight meets the close.
fn proxy_outlives_upstream(
    k: &super::knobs::HttpConfig,
    rtt: std::time::Duration,
) -> Option<Finding> {
    let (p, s) = (
        k.proxy_upstream_keepalive_timeout,
        k.upstream_keepalive_timeout,
    );
    (!p.is_zero() && !s.is_zero() && p + rtt > s).then(|| Finding {
        rule: "http-proxy-upstream-keepalive-outlives-upstream",
        severity: Severity::Warning,
        message: format!(
            "http.proxy_upstream_keepalive_timeout = {} is not below the upstream's keep-alive timeout {} minus the round trip {} ms: the proxy may write a request to an upstream connection the server is closing (nginx retries it once when proxy_next_upstream has `error`; HAProxy closes the client's connection)",
            shown(p),
            shown(s),
            rtt.as_millis()
        ),
        source: "RFC 9112 §9.5; nginx ngx_http_upstream_keepalive_module.c (keepalive_timeout, close on the server's FIN), ngx_http_upstream.c (a cached connection's error: one more try); HAProxy configuration.txt http-reuse",
        check: Ok(Check { case: &super::proxy::RACE_NGINX, fault: FaultKind::None, confirmed: pool_exposed, means: "the proxy reused its pooled upstream connection within one grid step (or the round trip) of the upstream's close, or a request failed" }),
    })
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
    f.extend(no_dead_path_bound(&k));
    f.extend(proxy_outlives_upstream(&k, rtt));
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

    #[test]
    fn a_request_nothing_bounds_on_a_dead_path_is_flagged() {
        let unbounded = vec!["http-request-unbounded-on-dead-path"];
        assert_eq!(rules(&["http.tcp_user_timeout=0s"]), unbounded);
        assert_eq!(
            rules(&["http.tcp_user_timeout=0s", "http.tcp_keepalive=0s"]),
            unbounded
        );
        assert!(rules(&["http.tcp_user_timeout=0s", "http.request_timeout=10s"]).is_empty());
    }

    #[test]
    fn a_proxy_pool_that_outlives_the_upstream_is_flagged() {
        let flagged = vec!["http-proxy-upstream-keepalive-outlives-upstream"];
        // nginx's default 60 s against Node.js's 5 s.
        let node = [
            "http.proxy_upstream_keepalive_timeout=60s",
            "http.upstream_keepalive_timeout=5s",
        ];
        assert_eq!(rules(&node), flagged);
        assert!(rules(&[
            "http.proxy_upstream_keepalive_timeout=4s",
            "http.upstream_keepalive_timeout=5s"
        ])
        .is_empty());
        assert!(rules(&["http.proxy_upstream_keepalive_timeout=60s"]).is_empty());
        // Below S, but not by the round trip.
        let n = NetworkProfile::parse("rtt = \"300ms\"").unwrap();
        let near = [
            "http.proxy_upstream_keepalive_timeout=4800ms",
            "http.upstream_keepalive_timeout=5s",
        ];
        assert!(rules(&near).is_empty());
        assert_eq!(
            crate::rules::rules_raised(review, &super::super::knobs::KNOBS, &near, Some(&n)),
            flagged
        );
    }
}

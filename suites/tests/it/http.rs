//! reqwest (hyper-util's pool) vs nginx, HAProxy and kaspec's hyper server
//! (fixtures/http/servers.toml: idle timeouts of 1 s): the idle close on
//! both ends and the next request, GOAWAY, the reuse race on a small grid,
//! a pooled connection whose path died.

use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

const IDLE: &str = "http/rfc9112-9.3/1";
const GOAWAY: &str = "http/rfc9113-6.8/goaway";
const RACE: &str = "http/rfc9112-9.3.1/race";
const DEAD: &str = "http/rfc5482-3/pooled";
const SERVERS: [&str; 3] = ["nginx", "haproxy", "kaspec-http (hyper)"];

#[test]
fn each_server_closes_an_idle_pooled_connection_at_its_timeout_and_the_next_request_succeeds() {
    let results = run(IDLE, FaultKind::None, &[]);
    assert_eq!(results.len(), 6);
    for s in SERVERS {
        for side_name in ["client", "server"] {
            let r = by(&results, side_name, s);
            assert_pass(r);
        }
        let c = by(&results, "client", s);
        assert!(
            c.checks
                .iter()
                .all(|k| k.verdict == kaspec_harness::expect::Verdict::Pass),
            "{}",
            show(c)
        );
        // reqwest 0.13's defaults, read back from the socket.
        assert!(
            c.config["http.socket"].contains("TCP_KEEPIDLE=15s"),
            "{}",
            show(c)
        );
    }
}

#[test]
fn goaway_at_the_idle_timeout_is_honoured_without_a_failed_request() {
    let results = run(GOAWAY, FaultKind::None, &[]);
    for s in ["nginx", "haproxy"] {
        assert_pass(by(&results, "server", s));
        assert_pass(by(&results, "client", s));
    }
    // hyper's HTTP/2 server has no idle timeout: the connection stays.
    assert_quiet(by(&results, "server", "kaspec-http (hyper)"));
    let c = by(&results, "client", "kaspec-http (hyper)");
    assert_quiet(c);
    assert!(
        c.checks
            .iter()
            .all(|k| k.verdict == kaspec_harness::expect::Verdict::Pass),
        "{}",
        show(c)
    );
}

#[test]
fn the_reuse_race_fails_requests_only_around_the_servers_close() {
    // 9 points, S − 20 … S + 20 ms: S − 5 ms is inside the close window
    // (from S − J − 1 = 995 ms at HZ=250).
    let sets = [
        "http.race_span=20ms",
        "http.race_step=5ms",
        "http.race_rounds=1",
    ];
    let results = run(RACE, FaultKind::None, &sets);
    assert_eq!(results.len(), 3);
    for s in SERVERS {
        let r = by(&results, "client", s);
        assert_quiet(r);
        let curve = r.curve.as_ref().expect("a curve");
        assert_eq!(curve.points.len(), 9);
        assert!(r.config["race.points"].contains("S+20ms"), "{}", show(r));
        // P = 90 s > S: the pool handed out the connection inside the close window.
        assert_ne!(r.config["race.exposed"], "0", "{}", show(r));
    }
}

#[test]
fn a_pool_expiring_before_the_server_never_fails_a_request() {
    let sets = [
        "http.race_span=20ms",
        "http.race_step=20ms",
        "http.race_rounds=1",
        "http.pool_idle_timeout=900ms",
    ];
    let results = run(RACE, FaultKind::None, &sets);
    for s in SERVERS {
        let r = by(&results, "client", s);
        assert_quiet(r);
        // Every request went out on a new connection: the pool had expired the old one.
        assert!(
            r.config["race.points"]
                .split(" | ")
                .all(|p| p.contains(": 0/") && p.contains(" 0 reused")),
            "{}",
            show(r)
        );
        assert_eq!(r.config["race.exposed"], "0", "{}", show(r));
    }
}

/// `kaspec validate`'s rule (a): with neither TCP_USER_TIMEOUT nor a
/// request timeout the request on the blackholed pooled connection is
/// still pending when the case gives up on it — confirmed by measurement.
#[test]
fn validate_confirms_a_request_nothing_bounds_on_a_dead_path() {
    let rule = "http-request-unbounded-on-dead-path";
    let (judged, results) = validate_rule(&["http.tcp_user_timeout=0s"], rule);
    assert!(
        matches!(judged.outcome, kaspec_suites::validate::Outcome::Confirmed),
        "{judged:?}"
    );
    for s in SERVERS {
        let r = by(&results, "client", s);
        assert!(!r.detected, "{}", show(r));
        assert!(
            error(r).is_empty() || error(r).contains("not ended"),
            "{}",
            show(r)
        );
    }
}

#[rstest]
#[case::user_timeout(FaultKind::Blackhole, &["http.tcp_user_timeout=1s", "http.tcp_keepalive=0s"])]
#[case::request_timeout(FaultKind::Blackhole, &["http.tcp_user_timeout=5s", "http.request_timeout=800ms"])]
#[case::reset(FaultKind::Reset, &["http.tcp_user_timeout=1s"])]
fn a_request_on_a_dead_pooled_connection_fails_at_the_first_of_its_timeouts(
    #[case] fault: FaultKind,
    #[case] sets: &[&str],
) {
    let results = run(DEAD, fault, sets);
    for s in SERVERS {
        assert_pass(by(&results, "client", s));
        assert_quiet(by(&results, "server", s));
    }
    // Validate's rule (a) measured on a bounded configuration: not the case.
    let unbounded = ["http.tcp_user_timeout=0s"];
    let rule = "http-request-unbounded-on-dead-path";
    assert_eq!(
        rule_confirmed_by(&unbounded, rule, &results),
        Some(false),
        "the requests ended: the rule's measurement must say so"
    );
}

#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::reset(FaultKind::Reset)]
fn hyper_pings_an_idle_http2_connection_and_closes_it_t_after_the_unanswered_ping(
    #[case] fault: FaultKind,
) {
    let sets = [
        "http.http2_keep_alive_interval=1s",
        "http.http2_keep_alive_timeout=500ms",
    ];
    let results = run("http/rfc9113-6.7/ping", fault, &sets);
    for s in SERVERS {
        assert_pass(by(&results, "client", s));
        assert_quiet(by(&results, "server", s));
    }
}

#[test]
fn without_while_idle_an_idle_http2_connection_is_never_pinged() {
    let sets = [
        "http.http2_keep_alive_interval=1s",
        "http.http2_keep_alive_timeout=500ms",
    ];
    let results = run(
        "http/rfc9113-6.7/ping-busy-only",
        FaultKind::Blackhole,
        &sets,
    );
    for s in SERVERS {
        assert_quiet(by(&results, "client", s));
    }
}

#[rstest]
#[case::below("http/rfc5382-5/nat-below", false)]
#[case::above("http/rfc5382-5/nat-above", true)]
fn through_a_nat_the_pool_idle_timeout_decides_whether_the_next_request_fails(
    #[case] id: &str,
    #[case] fails: bool,
) {
    let results = run_on(
        id,
        FaultKind::NatExpiry,
        &["http.tcp_user_timeout=1s"],
        Some(2),
    );
    for s in SERVERS {
        let c = by(&results, "client", s);
        if fails {
            assert_pass(c);
        } else {
            assert_not_detected(c, kaspec_harness::expect::Verdict::Pass);
        }
        assert_quiet(by(&results, "server", s));
    }
}

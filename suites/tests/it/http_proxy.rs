//! Issue 15's case 5 through a real proxy (nginx, HAProxy: Debian's) on the
//! proxy topology: reqwest → proxy → kaspec's hyper server, each level on
//! its own router. Short timings: a 1 s proxy read timeout.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

const NGINX: &str = "http/nginx-proxy_read_timeout/upstream";
const HAPROXY: &str = "http/haproxy-timeout-server/upstream";

/// A blackholed pooled upstream connection: the next request gets 504 at
/// request + the read timeout, and the proxy closes that connection then;
/// the upstream server hears nothing.
#[rstest]
#[case::nginx(NGINX, "nginx")]
#[case::haproxy(HAPROXY, "haproxy")]
fn a_silent_upstream_ends_the_next_request_with_504_at_the_read_timeout(
    #[case] id: &str,
    #[case] proxy: &str,
) {
    let results = run(id, FaultKind::Blackhole, &[]);
    assert_eq!(results.len(), 3);
    let client = side(&results, "client");
    assert_pass(client);
    assert_eq!(client.implementation.name, "reqwest");
    assert_eq!(client.peer.name, proxy);
    let p = side(&results, "proxy");
    assert_pass(p);
    assert_ne!(p.implementation.version, "unknown", "{}", show(p));
    assert_quiet(side(&results, "server"));
}

/// An RST on nginx's pooled upstream connection: one more try on a new
/// connection (ngx_http_upstream.c:4310), 200 at once.
#[test]
fn nginx_retries_a_reset_pooled_connection_on_a_new_one() {
    let results = run(NGINX, FaultKind::Reset, &[]);
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        client.checks.iter().all(|c| c.verdict == Verdict::Pass),
        "{}",
        show(client)
    );
    assert_pass(side(&results, "proxy"));
}

/// The verdict can fail: the same run judged against a window 50 ms later.
#[test]
fn a_shifted_window_fails_the_two_level_verdict() {
    let mut ctx = ctx(&[]);
    ctx.shift_window_ms = 50;
    let results = run_in(&ctx, NGINX, FaultKind::Blackhole);
    for s in ["client", "proxy"] {
        let r = side(&results, s);
        assert_eq!(r.verdict, Verdict::Fail, "{}", show(r));
        assert!(
            r.expected.formula.contains("shifted by +50 ms"),
            "{}",
            show(r)
        );
    }
}

/// An RST on HAProxy's reused server connection: the client's keep-alive
/// connection is closed without a response (http_ana.c abort_keep_alive);
/// reqwest does not retry a request it has sent: the request fails.
#[test]
fn haproxy_closes_the_client_connection_without_a_response_on_a_reset_upstream() {
    let results = run(HAPROXY, FaultKind::Reset, &[]);
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        error(client).contains("connection closed before message completed"),
        "{}",
        show(client)
    );
    assert_pass(side(&results, "proxy"));
}

const NGINX_CLIENT_SIDE: &str = "http/nginx-keepalive_timeout/proxy";
const HAPROXY_CLIENT_SIDE: &str = "http/haproxy-timeout-http-keep-alive/proxy";

/// The client's level cut on the client-side router: the proxy reaps the
/// idle client connection at its keep-alive timeout, the idle client
/// notices nothing, and the upstream level is untouched.
#[rstest]
#[case::nginx(NGINX_CLIENT_SIDE)]
#[case::haproxy(HAPROXY_CLIENT_SIDE)]
fn the_proxy_reaps_a_cut_idle_client_connection_at_its_keepalive_timeout(#[case] id: &str) {
    let results = run(id, FaultKind::Blackhole, &[]);
    assert_pass(side(&results, "proxy"));
    assert_quiet(side(&results, "client"));
    assert_quiet(side(&results, "server"));
}

/// The reuse race one level down: requests swept around the upstream's
/// idle timeout; through nginx none fails, and the pooled connection is
/// never reused after the upstream closed it.
#[rstest]
#[case::nginx("http/nginx-upstream-keepalive/race")]
#[case::haproxy("http/haproxy-http-reuse/race")]
fn the_reuse_race_one_level_down_is_counted(#[case] id: &str) {
    let results = run(id, FaultKind::None, &[]);
    for r in &results {
        assert!(
            r.checks
                .iter()
                .all(|c| c.verdict == Verdict::Pass || c.verdict == Verdict::Informational),
            "{}",
            show(r)
        );
        assert_ne!(r.verdict, Verdict::Fail, "{}", show(r));
    }
    // The failure curve, as a chart: 11 offsets, who failed, reused, retried.
    let client = side(&results, "client");
    let curve = client.curve.as_ref().expect("a chart");
    assert_eq!(curve.points.len(), 11, "{}", show(client));
    assert_eq!(curve.series.len(), 4);
    assert!(curve.svg().contains("<svg"));
    // nginx and HAProxy keep the pooled connection (10 s) up to the
    // upstream's close at 500 ms: reused at S − 10 ms.
    assert_ne!(client.config["race.exposed"], "0", "{}", show(client));
    // Who retried is known for every request that reached the proxy: it
    // logged each one. A request may fail before it does — the proxy's own
    // idle close of reqwest's connection to it can fall at the same instant
    // (HAProxy, S + 0: "connection closed before message completed", not in
    // its log) — so only failed requests may be missing from the log.
    let logged: Vec<u32> = client.config["race.logged"]
        .split(' ')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let failed: u32 = client
        .checks
        .iter()
        .find(|c| c.what == "failed requests")
        .map_or(0, |c| c.actual.parse().unwrap_or(0));
    assert_eq!(logged.len(), 2, "{}", show(client));
    assert_eq!(logged[1], 22, "{}", show(client));
    assert!(
        logged[0] <= logged[1] && logged[0] + failed >= logged[1],
        "only failed requests may be missing from the proxy's log: {}",
        show(client)
    );
}

const RACE_RULE: &str = "http-proxy-upstream-keepalive-outlives-upstream";

/// `kaspec validate`'s rule (b): nginx keeps an idle upstream connection
/// 10 s, the upstream closes at 500 ms: the race run with those settings
/// shows nginx reusing its pooled connection up to the upstream's close.
#[test]
fn validate_confirms_a_proxy_pool_outliving_the_upstream() {
    let sets = [
        "http.proxy_upstream_keepalive_timeout=10s",
        "http.upstream_keepalive_timeout=500ms",
    ];
    let (judged, results) = validate_rule(&sets, RACE_RULE);
    assert!(
        matches!(judged.outcome, kaspec_suites::validate::Outcome::Confirmed),
        "{judged:?}"
    );
    let client = side(&results, "client");
    assert_eq!(client.config["nginx.upstream.keepalive_timeout"], "10000ms");
}

/// The rule's measurement can say no: with nginx's upstream keep-alive at
/// 300 ms, below the upstream's 500 ms, the pool drops the connection
/// before the race's grid (S − 50 ms on): nothing reused, nothing failed.
#[test]
fn a_proxy_pool_expiring_before_the_upstream_is_not_exposed() {
    let sets = [
        "http.proxy_upstream_keepalive_timeout=300ms",
        "http.upstream_keepalive_timeout=500ms",
    ];
    assert!(kaspec_suites::validate::review(&config(&sets), None)
        .iter()
        .all(|f| f.rule != RACE_RULE));
    let results = run("http/nginx-upstream-keepalive/race", FaultKind::None, &sets);
    for r in &results {
        assert_ne!(r.verdict, Verdict::Fail, "{}", show(r));
    }
    let client = side(&results, "client");
    assert_eq!(client.config["race.exposed"], "0", "{}", show(client));
    let raising = [
        "http.proxy_upstream_keepalive_timeout=10s",
        "http.upstream_keepalive_timeout=500ms",
    ];
    assert_eq!(
        rule_confirmed_by(&raising, RACE_RULE, &results),
        Some(false)
    );
}

/// A middlebox on the upstream level (`--network`'s
/// middlebox_idle_timeout = 1 s, middlebox_at = upstream) forgets nginx's
/// pooled upstream flow before the upstream's own close (S = 1.2 s): every
/// request of the race (idle 1.15–1.25 s) is dropped on the way to the
/// upstream and nginx answers 504 at its read timeout — what the
/// expectation says once the profile is accounted for; without it, the
/// race's rule (none fails) would fail every request.
#[test]
fn a_middlebox_forgetting_the_pooled_upstream_flow_turns_the_race_into_504s() {
    let results = race_behind_middlebox(&["http.upstream_keepalive_timeout=1200ms"]);
    let client = side(&results, "client");
    assert_eq!(client.verdict, Verdict::Pass, "{}", show(client));
    let past = "requests past the middlebox's timeout that failed as it implies";
    let check = client
        .checks
        .iter()
        .find(|c| c.what == past)
        .unwrap_or_else(|| panic!("{}", show(client)));
    assert_eq!(check.verdict, Verdict::Pass, "{}", show(client));
    assert_eq!(check.actual, "11/11", "{}", show(client));
    assert!(client.config["network.middlebox"].contains("upstream"));
    // Every request failed: the race's own rule (none fails) alone would fail.
    assert!(shares(client).all(|y| y[0] == 1.0), "{}", show(client));
}

/// The fix, measured: nginx's upstream keepalive_timeout (900 ms) below
/// the middlebox's 1 s drops the pooled connection before the middlebox
/// forgets it; every request of the race goes out on a new connection and
/// succeeds — the expectation (no middlebox effect, none fails) holds.
#[test]
fn a_proxy_pool_expiring_before_the_middlebox_keeps_the_race_clean() {
    let results = race_behind_middlebox(&[
        "http.upstream_keepalive_timeout=1200ms",
        "http.proxy_upstream_keepalive_timeout=900ms",
    ]);
    let client = side(&results, "client");
    assert_eq!(client.verdict, Verdict::Pass, "{}", show(client));
    let failed = client.checks.iter().find(|c| c.what == "failed requests");
    assert_eq!(
        failed.map(|c| c.actual.as_str()),
        Some("0"),
        "{}",
        show(client)
    );
    assert!(
        shares(client).all(|y| y[0] == 0.0 && y[1] == 0.0),
        "{}",
        show(client)
    );
}

/// The nginx race, one round, with `sets`, behind a middlebox that forgets
/// upstream flows idle for 1 s.
fn race_behind_middlebox(sets: &[&str]) -> Vec<kaspec_harness::report::CaseResult> {
    let mut all = sets.to_vec();
    all.push("http.race_rounds=1");
    let mut ctx = ctx(&all);
    ctx.network = kaspec_suites::network::NetworkProfile::parse(
        "name = \"lb\"\nmiddlebox_idle_timeout = \"1s\"\nmiddlebox_at = \"upstream\"",
    )
    .unwrap();
    run_in(&ctx, "http/nginx-upstream-keepalive/race", FaultKind::None)
}

/// The race chart's shares per offset (failed, reused, retried by the proxy, by reqwest).
fn shares(r: &kaspec_harness::report::CaseResult) -> impl Iterator<Item = &Vec<f64>> {
    r.curve
        .as_ref()
        .expect("a chart")
        .points
        .iter()
        .map(|(_, y)| y)
}

//! redis-rs vs redis-server (Debian's): the server's `timeout` and
//! `tcp-keepalive` (fixtures/redis/kaspec.conf: 1 s each), redis-rs's
//! response timeout.

use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

const TIMEOUT: &str = "redis/redis.conf-timeout/1";
const KEEPALIVE: &str = "redis/redis.conf-tcp-keepalive/1";
const BLOCKED: &str = "redis/redis.conf-tcp-keepalive/2";
const CLIENT_KEEPALIVE: &str = "redis/redis-rs-keepalive/1";
const RESPONSE: &str = "redis/redis-rs-response_timeout/1";

#[test]
fn redis_timeout_closes_an_idle_client_and_redis_rs_notices_on_its_own() {
    let results = run(TIMEOUT, FaultKind::None, &[]);
    let server = side(&results, "server");
    assert_pass(server);
    assert_eq!(server.implementation.name, "redis-server");
    let client = side(&results, "client");
    assert_pass(client);
    assert!(error(client).contains("Disconnection"), "{}", show(client));
}

#[rstest]
#[case::blackhole(FaultKind::Blackhole, false)]
#[case::blackhole_up(FaultKind::BlackholeUp, true)]
#[case::blackhole_down(FaultKind::BlackholeDown, false)]
#[case::reset(FaultKind::Reset, false)]
fn redis_tcp_keepalive_reaps_a_silent_client(
    #[case] fault: FaultKind,
    #[case] client_learns: bool,
) {
    let results = run(KEEPALIVE, fault, &[]);
    let server = side(&results, "server");
    assert_pass(server);
    // The options Redis set, read back from its socket, are anet.c's.
    assert!(
        server
            .checks
            .iter()
            .all(|c| c.verdict == kaspec_harness::expect::Verdict::Pass),
        "{}",
        show(server)
    );
    let client = side(&results, "client");
    if client_learns {
        // The server's abort RST passes the one-way blackhole.
        assert_pass(client);
    } else {
        // redis-rs sets no keep-alive: an idle connection is never probed.
        assert_quiet(client);
    }
}

/// `timeout` (1 s) does not reap a client blocked in BLPOP: only the
/// keep-alive does, at its window (a close at `timeout` would be early).
#[rstest]
#[case::blackhole(FaultKind::Blackhole, false)]
#[case::blackhole_up(FaultKind::BlackholeUp, true)]
fn redis_a_blocked_client_is_reaped_by_keepalive_not_timeout(
    #[case] fault: FaultKind,
    #[case] client_learns: bool,
) {
    let results = run(BLOCKED, fault, &[]);
    let server = side(&results, "server");
    assert_pass(server);
    assert!(
        server.detection_ms.unwrap() > 2000,
        "not at `timeout`: {}",
        show(server)
    );
    let client = side(&results, "client");
    if client_learns {
        assert_pass(client);
    } else {
        assert_quiet(client);
    }
}

/// redis-rs with its own keep-alive (TcpSettings) notices a dead server
/// while idle, in Linux's window from the options read back.
#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::crash(FaultKind::Crash)]
#[case::reset(FaultKind::Reset)]
fn redis_rs_keepalive_notices_a_dead_server_while_idle(#[case] fault: FaultKind) {
    let results = run(CLIENT_KEEPALIVE, fault, &[]);
    let client = side(&results, "client");
    assert_pass(client);
    assert!(error(client).contains("Disconnection"), "{}", show(client));
}

#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::blackhole_down(FaultKind::BlackholeDown)]
#[case::reset(FaultKind::Reset)]
#[case::freeze(FaultKind::Freeze)]
fn redis_rs_response_timeout_fails_the_next_command(#[case] fault: FaultKind) {
    let results = run(RESPONSE, fault, &["redis.response_timeout=500ms"]);
    let client = side(&results, "client");
    assert_pass(client);
    if fault == FaultKind::Blackhole || fault == FaultKind::BlackholeDown {
        // Finding: a response timeout fails the command but keeps the
        // multiplexed connection ESTABLISHED; the release axis says so.
        assert!(error(client).contains("timeout: true"), "{}", show(client));
        assert_eq!(
            client.release_verdict,
            Some(kaspec_harness::expect::Verdict::Fail),
            "{}",
            show(client)
        );
    }
    assert_quiet(side(&results, "server"));
}

#[test]
fn redis_rs_without_a_response_timeout_waits() {
    let results = run(
        RESPONSE,
        FaultKind::Blackhole,
        &["redis.response_timeout=0s"],
    );
    assert_quiet(side(&results, "client"));
    assert_quiet(side(&results, "server"));
}

/// redis.conf's reason 2 for `tcp-keepalive`: below the NAT's idle timeout
/// the server's probes keep the mapping (the PING after 3 × N works); above
/// it the server reaps the client at its keep-alive death and the client's
/// PING times out.
#[test]
fn redis_tcp_keepalive_keeps_a_nat_mapping_only_below_its_timeout() {
    let results = run(
        "redis/redis.conf-tcp-keepalive/nat",
        FaultKind::NatExpiry,
        &[],
    );
    for r in &results {
        assert_not_detected(r, kaspec_harness::expect::Verdict::Pass);
    }
    let results = run(
        "redis/redis.conf-tcp-keepalive/nat-above",
        FaultKind::NatExpiry,
        &[],
    );
    assert_pass(side(&results, "server"));
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        error(client).contains("timed out") || error(client).contains("timeout: true"),
        "{}",
        show(client)
    );
}

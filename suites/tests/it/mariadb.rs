//! mysql_async vs MariaDB (Debian's mariadbd, started once per test and
//! shared by its cases, as in a run): the server's wait_timeout (2 s in
//! fixtures/mariadb/kaspec.cnf) with what the next query sees, a query on a
//! dead path, the server's TCP keep-alive (1 s / 1 s / 2) and mysql_async's
//! own tcp_keepalive. Needs root and mariadb-server.

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::common::*;

const WAIT: &str = "mariadb/wait_timeout/1";
const POOL: &str = "mariadb/wait_timeout/2";
const REAP: &str = "mariadb/wait_timeout/3";
const NAT: &str = "mariadb/mysql_async-tcp_keepalive/2";
const IN_FLIGHT: &str = "mariadb/query-in-flight/1";
const SERVER_KA: &str = "mariadb/tcp_keepalive_time/1";
const CLIENT_KA: &str = "mariadb/mysql_async-tcp_keepalive/1";

fn both(r: &[CaseResult]) -> (&CaseResult, &CaseResult) {
    (side(r, "client"), side(r, "server"))
}

#[test]
fn mariadb_wait_timeout_closes_the_idle_connection_and_the_next_query_fails() {
    let c = ctx(&[]);
    // Healthy path: mariadbd closes at last reply + 2 s, sending no error
    // packet; the next query (1 s later) meets the server's RST.
    let r = run_in(&c, WAIT, FaultKind::None);
    let (client, server) = both(&r);
    assert_pass(client);
    assert_pass(server);
    assert!(error(client).contains("os error 104"), "{}", show(client));
    assert!((1500..2100).contains(&server.detection_ms.unwrap()), "{}", show(server));
    assert_eq!((client.implementation.name.as_str(), server.implementation.name.as_str()), ("mysql_async", "mariadb"));
    assert!(server.implementation.version.starts_with("10.") || server.implementation.version.starts_with("11."), "{}", show(server));
    // The session's timeouts as the server applies them: wait_timeout, not interactive_timeout.
    assert!(client.config["mariadb.session"].contains("wait_timeout=2s interactive_timeout=30s"), "{}", show(client));
    // A blackholed client is reaped the same way; its query waits (no read timeout).
    let r = run_in(&c, REAP, FaultKind::Blackhole);
    assert_pass(side(&r, "server"));
    assert_quiet(side(&r, "client"));
    // The server's FIN passes blackhole-up: the query fails at once.
    let r = run_in(&c, REAP, FaultKind::BlackholeUp);
    assert_pass(side(&r, "client"));
    assert_pass(side(&r, "server"));
}

#[test]
fn mariadb_wait_timeout_under_reset_and_freeze() {
    let c = ctx(&[]);
    // Reset: the server's keep-alive probe (1 s) meets the RST before its wait_timeout.
    let r = run_in(&c, REAP, FaultKind::Reset);
    let (client, server) = both(&r);
    assert_pass(client);
    assert_pass(server);
    assert!(server.detection_ms.unwrap() < 1200, "{}", show(server));
    let r = run_in(&c, REAP, FaultKind::BlackholeDown);
    assert_quiet(side(&r, "client"));
    assert_pass(side(&r, "server"));
    let r = run_in(&c, REAP, FaultKind::Freeze);
    assert_quiet(side(&r, "client"));
    assert_quiet(side(&r, "server"));
}

#[test]
fn mariadb_query_in_flight_waits_and_the_server_keepalive_reaps() {
    let c = ctx(&[]);
    let r = run_in(&c, IN_FLIGHT, FaultKind::Blackhole);
    let (client, server) = both(&r);
    assert_quiet(client);
    assert_pass(server);
    let r = run_in(&c, IN_FLIGHT, FaultKind::Reset);
    assert_pass(side(&r, "client"));
    assert!(error(side(&r, "client")).contains("Connection reset by peer"), "{}", show(side(&r, "client")));
    // The server host dies without a FIN: the query waits like on a blackhole.
    let r = run_in(&c, IN_FLIGHT, FaultKind::Crash);
    assert_quiet(side(&r, "client"));
    assert_quiet(side(&r, "server"));
    let r = run_in(&c, SERVER_KA, FaultKind::Blackhole);
    let (client, server) = both(&r);
    assert_quiet(client);
    assert_pass(server);
    // The options mariadbd set on its socket, read back.
    assert!(server.config["server.socket"].contains("SO_KEEPALIVE=true TCP_KEEPIDLE=1s TCP_KEEPINTVL=1s TCP_KEEPCNT=2"), "{}", show(server));
    // The server's abort RST passes blackhole-up and reaches the client's kernel.
    let r = run_in(&c, SERVER_KA, FaultKind::BlackholeUp);
    assert_pass(side(&r, "client"));
    assert_pass(side(&r, "server"));
}

#[test]
fn mysql_async_tcp_keepalive_sets_only_the_idle_time() {
    let c = ctx(&["mariadb.url=mysql://app@db/app?tcp_keepalive=2000"]);
    let r = run_in(&c, CLIENT_KA, FaultKind::Blackhole);
    let (client, server) = both(&r);
    assert_pass(client);
    assert_pass(server);
    // TCP_KEEPIDLE from the URL; interval and count are the host's (this case's sysctls).
    assert!(client.config["mariadb.socket"].contains("SO_KEEPALIVE=true TCP_KEEPIDLE=2s TCP_KEEPINTVL=1s TCP_KEEPCNT=2"), "{}", show(client));
    assert_eq!(client.config["mariadb.tcp_keepalive"], "2000ms (mariadb.url)");
    assert!(error(client).contains("os error 110"), "the next query: {}", show(client));
    // A crashed server host: the client's keep-alive finds out as on a blackhole.
    let r = run_in(&c, CLIENT_KA, FaultKind::Crash);
    assert_pass(side(&r, "client"));
    let r = run_in(&c, CLIENT_KA, FaultKind::Reset);
    assert_pass(side(&r, "client"));
    assert!(side(&r, "client").detection_ms.unwrap() < 2300, "{}", show(side(&r, "client")));
}

/// What the pool's next checkout gave (the case's requirement, observed).
fn next_checkout(r: &CaseResult) -> &str {
    r.checks.iter().find(|c| c.what == "connection of the next checkout").map(|c| c.actual.as_str()).unwrap_or_else(|| panic!("no checkout check: {}", show(r)))
}

#[test]
fn mysql_async_pool_never_hands_out_a_closed_connection_it_can_see() {
    let mut c = ctx(&[]);
    // The default TTL is the server's wait_timeout (read at connect):
    // expired at the checkout, recycled; a new connection answers.
    for f in [FaultKind::BlackholeUp, FaultKind::BlackholeDown] {
        let r = run_in(&c, POOL, f);
        let (client, server) = both(&r);
        // No error reaches the application.
        assert_quiet(client);
        assert_pass(server);
        assert_eq!(next_checkout(client), "a new one", "{}", show(client));
    }
    // A TTL past the idle period: the FIN is in, the check drops it.
    set(&mut c, &["mariadb.url=mysql://app@db/app?conn_ttl=60"]);
    let r = run_in(&c, POOL, FaultKind::BlackholeUp);
    assert_quiet(side(&r, "client"));
    assert_eq!(next_checkout(side(&r, "client")), "a new one");
    // The FIN is lost: the check passes, the idle connection carries the
    // query into the dead path, and it waits.
    let r = run_in(&c, POOL, FaultKind::BlackholeDown);
    assert_quiet(side(&r, "client"));
    assert_eq!(next_checkout(side(&r, "client")), "the idle one");
    // The router's RST answers it.
    let r = run_in(&c, POOL, FaultKind::Reset);
    assert_pass(side(&r, "client"));
    assert_eq!(next_checkout(side(&r, "client")), "the idle one");
}

#[test]
fn mysql_async_tcp_keepalive_against_a_nat() {
    let mut c = ctx(&[]);
    c.network.nat_idle_timeout = Some(std::time::Duration::from_secs(4));
    // tcp_keepalive 2 s < N = 4 s: the probes keep the mapping.
    set(&mut c, &["mariadb.tcp_keepalive=2s"]);
    let r = run_in(&c, NAT, FaultKind::NatExpiry);
    assert_quiet(side(&r, "client"));
    // 5 s ≥ N: the first probe meets the forgotten mapping; the host's 1 s × 2 probes end it.
    set(&mut c, &["mariadb.tcp_keepalive=5s"]);
    let r = run_in(&c, NAT, FaultKind::NatExpiry);
    let client = side(&r, "client");
    assert_pass(client);
    assert!(error(client).contains("os error 110"), "{}", show(client));
    // The server (keep-alive at the kernel default here) never learns.
    assert_quiet(side(&r, "server"));
}


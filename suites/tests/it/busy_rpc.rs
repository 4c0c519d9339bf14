//! A busy connection for gRPC and PostgreSQL (issue 18 item 4): the client
//! calls (queries) every 100 ms and the path dies between two. With the
//! next call in flight Linux sends no keep-alive probe; what decides is
//! gRPC's PING (hyper: I after the last response, closed T later) and, for
//! PostgreSQL, TCP_USER_TIMEOUT. Each window is judged, and fails shifted.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::common::*;
use crate::situations::print;
use crate::verdicts::{unshifted_by, SHIFT_MS};

/// Each result passes, and the same observation fails against its window
/// moved later by its own width + 50 ms (for a narrow window, about the
/// verdicts pattern's 50 ms; a window spanning an unobserved phase is moved
/// past its end).
fn pass_and_fail_shifted(r: &CaseResult) {
    assert_pass(r);
    let width = (r.expected.max_ms.unwrap() - r.expected.min_ms.unwrap()) as i64;
    assert!((r.budget.total_ms() as i64) < SHIFT_MS, "{}", show(r));
    assert_eq!(
        unshifted_by(r, -(width + SHIFT_MS)),
        Verdict::Fail,
        "shifted by {}: {}",
        width + SHIFT_MS,
        show(r)
    );
}

#[test]
fn grpc_busy_channel_is_closed_by_the_ping_after_the_last_response() {
    let results = run("grpc/a8-keepalive/busy", FaultKind::Blackhole, &[]);
    print(&results);
    for server in ["kaspec-grpc", "python-grpcio"] {
        let c = by(&results, "client", server);
        pass_and_fail_shifted(c);
        assert!(error(c).contains("code: Unavailable"), "{}", show(c));
        pass_and_fail_shifted(by(&results, "server", server));
    }
}

// A busy tokio-postgres connection: with tcp_user_timeout U the client
// aborts U after the swallowed query's first RTO retransmission; without
// it, its keep-alive (on, 2 s + 3 × 1 s) never probes, and nothing ends
// the connection in the case's horizon (the ~15 min retransmission limit).
// Either way the backend, idle between queries, is reaped by its own
// keep-alive.
#[rstest::rstest]
#[case::user_timeout(&["postgres.tcp_user_timeout=1500ms"], true)]
#[case::keepalive_only(&[], false)]
fn postgres_busy_connection(#[case] sets: &[&str], #[case] detected: bool) {
    let results = run(
        "postgres/libpq-tcp_user_timeout/busy",
        FaultKind::Blackhole,
        sets,
    );
    print(&results);
    let c = side(&results, "client");
    if detected {
        pass_and_fail_shifted(c);
    } else {
        assert_quiet(c);
        assert!(
            c.expected.formula.contains("keep-alive does not probe"),
            "{}",
            show(c)
        );
    }
    pass_and_fail_shifted(side(&results, "server"));
}

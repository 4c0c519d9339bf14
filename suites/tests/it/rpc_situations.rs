//! The client's own situations for gRPC and PostgreSQL (issue 18 item 4):
//! a stalled client application (`client-stall`) and a client host
//! crashing without FIN (`client-crash`). Each server's detection is judged
//! against its own algorithm, the client reported; every verdict is shown
//! failing (a shifted window, or the other situation's expectation).

use kaspec_harness::expect::{Expectation, Level, Verdict};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::judge::{judge, Observation};
use kaspec_harness::report::CaseResult;
use rstest::rstest;

use crate::common::*;
use crate::situations::{assert_client_reported, print, shifted_server_windows_fail};
use crate::verdicts::{unshifted_by, SHIFT_MS};

// A stalled tonic application blocks its runtime's thread, where hyper's
// connection task runs (tonic spawns it): the server's PING goes
// unanswered although the client's kernel acknowledges it, so each
// server's keep-alive (last read + I + T) closes the connection, as it does
// for a crashed client.
#[rstest]
#[case::stall(FaultKind::ClientStall)]
#[case::crash(FaultKind::ClientCrash)]
fn grpc_servers_notice_a_stalled_or_crashed_client(#[case] fault: FaultKind) {
    let results = run("grpc/a8-keepalive/1", fault, &[]);
    print(&results);
    assert_client_reported(&results, fault);
    for server in ["kaspec-grpc", "python-grpcio"] {
        assert_pass(by(&results, "server", server));
    }
}

// Both servers' results of one run ("" matches every implementation).
#[test]
fn grpc_stall_shifted_server_windows_fail() {
    let r = shifted_server_windows_fail("grpc/a8-keepalive/1", "", FaultKind::ClientStall, &[]);
    print(&r);
    assert_eq!(r.iter().filter(|r| r.side == "server").count(), 2);
}

/// `r`'s observation judged against another expectation `e`.
fn judged_against(r: &CaseResult, e: &Expectation) -> Verdict {
    let obs = Observation {
        detection_ms: r.detection_ms.map(|d| d as i64),
        deadline_ms: r.deadline_ms,
        budget: r.budget,
        ..Default::default()
    };
    judge(e, &obs).unwrap().verdict
}

// PostgreSQL's server side is its kernel's keep-alive (tcp_keepalives_*),
// and, while a query runs, client_connection_check_interval, which sees
// only what that kernel knows. A stalled client's kernel answers every
// probe: the server MUST NOT close by its horizon (3 × the window in which
// it reaps a crashed client). A crashed client is reaped in that window.
// Each verdict fails against the other situation's expectation, and the
// crash's against its window moved past its own end by 50 ms.
#[rstest]
#[case::idle("postgres/libpq-keepalives/1")]
#[case::query_running("postgres/pg15-20.3-client_connection_check_interval/1")]
fn postgres_server_reaps_a_crashed_client_not_a_stalled_one(#[case] id: &str) {
    let stall = run(id, FaultKind::ClientStall, &[]);
    print(&stall);
    assert_client_reported(&stall, FaultKind::ClientStall);
    let crash = run(id, FaultKind::ClientCrash, &[]);
    print(&crash);
    assert_client_reported(&crash, FaultKind::ClientCrash);
    let (s, c) = (side(&stall, "server"), side(&crash, "server"));
    assert_quiet(s);
    assert_eq!(s.expected.level, Level::Must, "{}", show(s));
    assert_pass(c);
    let hi = c.expected.max_ms.unwrap();
    assert!(s.deadline_ms >= 3 * hi, "horizon: {}", show(s));
    assert_eq!(judged_against(s, &c.expected), Verdict::Fail, "{}", show(s));
    assert_eq!(judged_against(c, &s.expected), Verdict::Fail, "{}", show(c));
    let width = (hi - c.expected.min_ms.unwrap()) as i64;
    assert!((c.budget.total_ms() as i64) < SHIFT_MS, "{}", show(c));
    assert_eq!(
        unshifted_by(c, -(width + SHIFT_MS)),
        Verdict::Fail,
        "{}",
        show(c)
    );
}

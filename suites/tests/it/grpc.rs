//! tonic HTTP/2 keep-alive vs our tonic server and Python grpcio (gRFC A8,
//! RFC 9113 §6.7), idle, with a call, the ping policy, through a NAT.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

#[rstest]
#[case::i1s_t1s(&[], FaultKind::Blackhole)]
#[case::i600ms_t400ms(&["grpc.keepalive_time=600ms", "grpc.keepalive_timeout=400ms"], FaultKind::Blackhole)]
#[case::reset(&[], FaultKind::Reset)]
#[case::freeze(&[], FaultKind::Freeze)]
fn grpc_idle_keepalive_detects_a_dead_server(#[case] sets: &[&str], #[case] fault: FaultKind) {
    let results = run("grpc/a8-keepalive/1", fault, sets);
    assert_eq!(results.len(), 4);
    for server in ["kaspec-grpc", "python-grpcio"] {
        let c = by(&results, "client", server);
        assert_pass(c);
        let s = by(&results, "server", server);
        if fault == FaultKind::Freeze {
            assert_quiet(s);
        } else {
            assert_pass(s);
        }
    }
}

#[test]
fn grpc_idle_channel_without_while_idle_is_not_probed() {
    // No HTTP/2 PING while idle; with TCP keep-alive off nothing ends it...
    let results = run(
        "grpc/a8-keepalive/1",
        FaultKind::Blackhole,
        &["grpc.keepalive_while_idle=false", "tcp.keepalive=false"],
    );
    for server in ["kaspec-grpc", "python-grpcio"] {
        assert_quiet(by(&results, "client", server));
    }
    // ...with it on, TCP keep-alive does, in its own window.
    let results = run(
        "grpc/a8-keepalive/1",
        FaultKind::Blackhole,
        &[
            "grpc.keepalive_while_idle=false",
            "tcp.idle=1s",
            "tcp.count=1",
        ],
    );
    for server in ["kaspec-grpc", "python-grpcio"] {
        let c = by(&results, "client", server);
        assert_pass(c);
        assert!(c.expected.formula.contains("TCP keep-alive"), "{}", show(c));
    }
}

#[rstest]
#[case(FaultKind::Blackhole)]
#[case(FaultKind::Reset)]
fn grpc_call_on_an_unprobed_connection_fails_t_after_it_starts(#[case] fault: FaultKind) {
    let results = run("grpc/a8-keepalive/2", fault, &[]);
    for server in ["kaspec-grpc", "python-grpcio"] {
        let c = by(&results, "client", server);
        let v = c.detection_ms.expect("the call failed");
        let (lo, hi) = (c.expected.min_ms.unwrap(), c.expected.max_ms.unwrap());
        assert!(
            v + c.allowance_ms() >= lo && v <= hi + c.allowance_ms(),
            "{}",
            show(c)
        );
        // UNAVAILABLE, or tonic's documented Unknown on a reset connection.
        let unavailable = c
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("code: Unavailable");
        assert!(
            unavailable && c.verdict == Verdict::Pass
                || !unavailable && c.known_deviation.is_some(),
            "{}",
            show(c)
        );
    }
}

#[test]
fn grpc_ping_policy_grpcio_enforces_tonic_does_not() {
    let results = run("grpc/a8-ping-policy/1", FaultKind::None, &[]);
    let grpcio = results
        .iter()
        .find(|r| r.implementation.name == "python-grpcio")
        .unwrap();
    assert_pass(grpcio);
    assert!(
        grpcio
            .error
            .as_deref()
            .unwrap_or_default()
            .to_lowercase()
            .contains("too many pings"),
        "{}",
        show(grpcio)
    );
    let tonic = results
        .iter()
        .find(|r| r.implementation.name.starts_with("kaspec-grpc"))
        .unwrap();
    assert!(!tonic.detected, "{}", show(tonic));
    assert_eq!(
        tonic.verdict,
        Verdict::NonStrict,
        "a SHOULD the server does not follow: {}",
        show(tonic)
    );
}

#[rstest]
#[case::kept_by_pings(&["grpc.keepalive_time=1s", "tcp.keepalive=false"], true)]
#[case::kept_by_tcp_keepalive(&["grpc.keepalive_time=5s", "tcp.idle=2s"], true)]
#[case::broken(&["grpc.keepalive_time=5s", "tcp.keepalive=false"], false)]
fn nat_grpc_keepalive_against_the_nat_timeout(#[case] sets: &[&str], #[case] kept: bool) {
    let r = run_on("grpc/a8-keepalive/3", FaultKind::NatExpiry, sets, Some(4));
    assert_kept_or_detected(&r, kept);
}

//! kaspec's heartbeat over tokio-tungstenite vs our server and Python
//! `websockets` (RFC 6455 §5.5.2/§5.5.3), on dead, frozen, slow and NATed paths.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

#[test]
fn websocket_pong_echoes_the_ping_payload_on_both_servers() {
    let results = run("websocket/rfc6455-5.5.2/1", FaultKind::None, &[]);
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_pass(r);
        let check = r
            .checks
            .iter()
            .find(|c| c.what == "Pong payload (hex)")
            .unwrap_or_else(|| panic!("{}", show(r)));
        assert_eq!(
            (check.verdict, &check.actual),
            (Verdict::Pass, &check.expected),
            "{}",
            show(r)
        );
    }
    assert!(results
        .iter()
        .any(|r| r.implementation.name == "python-websockets"));
}

#[rstest]
#[case::p1s_t1s(&[], FaultKind::Blackhole)]
#[case::p500ms_t700ms(&["websocket.ping_interval=500ms", "websocket.pong_timeout=700ms"], FaultKind::Blackhole)]
#[case::reset(&[], FaultKind::Reset)]
fn websocket_heartbeats_detect_a_dead_path_on_both_sides(
    #[case] sets: &[&str],
    #[case] fault: FaultKind,
) {
    let results = run("websocket/rfc6455-5.5.2/2", fault, sets);
    assert_eq!(results.len(), 4, "client and server, against two servers");
    for r in &results {
        assert_pass(r);
    }
    for server in ["kaspec-ws", "python-websockets"] {
        let c = by(&results, "client", server);
        if fault == FaultKind::Blackhole {
            assert!(
                c.error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("nothing received for P + T"),
                "{}",
                show(c)
            );
        }
    }
}

#[test]
fn websocket_frozen_server_is_seen_by_the_heartbeat_although_tcp_stays_up() {
    let results = run("websocket/rfc6455-5.5.2/3", FaultKind::Freeze, &[]);
    for server in ["kaspec-ws", "python-websockets"] {
        let c = by(&results, "client", server);
        assert_pass(c);
        assert_quiet(by(&results, "server", server));
    }
}

#[test]
fn websocket_pong_timeout_below_the_round_trip_is_a_false_positive() {
    let r = run("websocket/rfc6455-5.5.2/4", FaultKind::Delay, &[]);
    assert_eq!(r.len(), 1);
    assert_pass(&r[0]);
    assert!(
        r[0].engine.contains("round trip +300 ms"),
        "{}",
        show(&r[0])
    );
}

#[rstest]
#[case::t200ms_false_positive("200ms", FaultKind::Delay, true)]
#[case::t1s_holds("1s", FaultKind::Delay, false)]
#[case::t1s_lossy_holds("1s", FaultKind::Loss, false)]
fn websocket_own_heartbeat_on_the_profile_path(
    #[case] t: &str,
    #[case] fault: FaultKind,
    #[case] false_positive: bool,
) {
    let set = format!("websocket.pong_timeout={t}");
    let r = run(
        "websocket/rfc6455-5.5.2/6",
        fault,
        &["websocket.ping_interval=1s", &set],
    );
    assert_kept_or_detected(&r, !false_positive);
}

#[rstest]
#[case::delay(FaultKind::Delay)]
#[case::loss(FaultKind::Loss)]
fn websocket_sane_heartbeats_survive_a_slow_or_lossy_path(#[case] fault: FaultKind) {
    // Default settings (T = 1 s) against the default impairments (300 ms; 2% loss).
    let r = run("websocket/rfc6455-5.5.2/2", fault, &[]);
    assert_eq!(r.len(), 4);
    for x in &r {
        assert!(!x.detected, "a live peer was declared dead: {}", show(x));
        assert_eq!(x.verdict, Verdict::Pass, "{}", show(x));
    }
}

#[rstest]
#[case::kept("1s", true)]
#[case::broken("5s", false)]
fn nat_websocket_ping_interval_against_the_nat_timeout(#[case] p: &str, #[case] kept: bool) {
    let set = format!("websocket.ping_interval={p}");
    let r = run_on(
        "websocket/rfc6455-5.5.2/5",
        FaultKind::NatExpiry,
        &[&set],
        Some(4),
    );
    assert_kept_or_detected(&r, kept);
}

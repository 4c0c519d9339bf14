//! The client's own situations (issue 18 item 4): the client application
//! stalls (`client-stall`: it stops polling; its runtime and kernel stay
//! up) or its host crashes without FIN (`client-crash`, the mirror of
//! `crash`). The client is reported, not judged; the server side is judged
//! against its own algorithm, and each verdict is shown failing against its
//! window shifted later.

use kaspec_harness::expect::{Level, Verdict};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use rstest::rstest;

use crate::common::*;
use crate::verdicts::{unshifted, unshifted_by, SHIFT_MS};

/// The client of a client situation: reported with why, never judged.
pub fn assert_client_reported(results: &[CaseResult], fault: FaultKind) {
    for c in results.iter().filter(|r| r.side == "client") {
        assert_eq!(c.expected.level, Level::Info, "{}", show(c));
        assert!(
            c.expected.formula.contains(match fault {
                FaultKind::ClientStall => "stalled",
                _ => "crashed",
            }),
            "{}",
            show(c)
        );
        if fault == FaultKind::ClientCrash {
            assert!(!c.detected, "a crashed client detects nothing: {}", show(c));
        }
    }
}

#[rstest]
#[case::stall(FaultKind::ClientStall)]
#[case::crash(FaultKind::ClientCrash)]
fn mqtt_broker_disconnects_a_stalled_or_crashed_client(#[case] fault: FaultKind) {
    let results = run("mqtt/3.1.1-3.1.2.10/1", fault, &["mqtt.keep_alive=2s"]);
    print(&results);
    assert_client_reported(&results, fault);
    // Mosquitto hears no PINGREQ after the stall (the client's kernel still
    // acknowledges, but rumqttc is not polled): judged against
    // [MQTT-3.1.2-24] from the last PINGREQ, with its documented deviation.
    let broker = side(&results, "server");
    eprintln!(
        "{fault}: {:?} {:?} {:?} {}",
        broker.detection_ms,
        broker.expected.describe(),
        broker.verdict,
        broker.expected.formula
    );
    assert!(broker.detected, "{}", show(broker));
    assert!(
        broker.verdict == Verdict::Pass
            || (broker.verdict == Verdict::Fail && broker.known_deviation.is_some()),
        "{}",
        show(broker)
    );
    let rel = broker.release.as_ref().expect("release observed");
    assert!(rel.clean, "{}", show(broker));
}

/// The results of `server` in `id` under `fault`, judged against their windows
/// shifted later by [`SHIFT_MS`]: each fails, and the same observation
/// passes against the computed window (the `verdicts` pattern).
pub fn shifted_server_windows_fail(
    id: &str,
    server: &str,
    fault: FaultKind,
    sets: &[&str],
) -> Vec<CaseResult> {
    let mut ctx = ctx(sets);
    ctx.shift_window_ms = SHIFT_MS;
    let results = run_in(&ctx, id, fault);
    for r in results
        .iter()
        .filter(|r| r.side == "server" && r.implementation.name.contains(server))
    {
        assert!(
            (r.budget.total_ms() as i64) < SHIFT_MS,
            "budget at or over the shift: {}",
            show(r)
        );
        assert_eq!(r.verdict, Verdict::Fail, "shifted: {}", show(r));
        assert_eq!(unshifted(r), Verdict::Pass, "unshifted: {}", show(r));
    }
    results
}

pub fn print(results: &[CaseResult]) {
    for r in results {
        eprintln!(
            "{} {} {} vs {}: {:?} ms, expected {} ({:?}): {}",
            r.fault,
            r.side,
            r.implementation.name,
            r.peer.name,
            r.detection_ms,
            r.expected.describe(),
            r.verdict,
            r.expected.formula
        );
    }
}

// Each WebSocket server's heartbeat (kaspec's: silence for P + T after the
// client's last frame; Python websockets': its Ping unanswered for T)
// notices a stalled client, whose kernel acknowledges the server's Ping
// but whose application never reads it, so no Pong is sent.
#[rstest]
#[case::stall(FaultKind::ClientStall)]
#[case::crash(FaultKind::ClientCrash)]
fn websocket_servers_notice_a_stalled_or_crashed_client(#[case] fault: FaultKind) {
    let results = run("websocket/rfc6455-5.5.2/2", fault, &[]);
    print(&results);
    assert_client_reported(&results, fault);
    for s in results.iter().filter(|r| r.side == "server") {
        assert!(s.detected, "{}", show(s));
    }
    // kaspec's server is judged sharp here. Python websockets' close came
    // 5-9 ms after its window in loaded runs (once 180 ms, under a stall),
    // under client-crash as under client-stall: not yet explained, so not
    // asserted; its verdict stays in the report.
    assert_pass(by(&results, "server", "kaspec-ws"));
}

#[test]
fn websocket_stall_shifted_server_windows_fail() {
    let r = shifted_server_windows_fail(
        "websocket/rfc6455-5.5.2/2",
        "kaspec-ws",
        FaultKind::ClientStall,
        &[],
    );
    print(&r);
    by(&r, "server", "kaspec-ws");
}

// RabbitMQ's heartbeat receiver (rabbit_heartbeat: a wake every T, a close
// at the second wake without bytes) reaps a crashed lapin client as it does
// on a dead path. Its window spans both wakes when the last byte came within
// PHASE_SLACK_MS of one (amqp/mod.rs), so the same run is judged against its
// window shifted 50 ms towards the edge the detection is nearer to: it fails.
#[test]
fn amqp_broker_reaps_a_crashed_client() {
    let mut ctx = ctx(&["amqp.heartbeat=2s"]);
    let id = "amqp/0-9-1-4.2.7/1";
    let results = run_in(&ctx, id, FaultKind::ClientCrash);
    print(&results);
    assert_client_reported(&results, FaultKind::ClientCrash);
    let broker = side(&results, "server");
    assert!(broker.detected, "{}", show(broker));
    assert_pass(broker);
    let (lo, hi) = (
        broker.expected.min_ms.unwrap() as i64,
        broker.expected.max_ms.unwrap() as i64,
    );
    let at = broker.detection_ms.unwrap() as i64;
    let shift = if at - lo > hi - at {
        -SHIFT_MS
    } else {
        SHIFT_MS
    };
    ctx.shift_window_ms = shift;
    let shifted = run_in(&ctx, id, FaultKind::ClientCrash);
    print(&shifted);
    let broker = side(&shifted, "server");
    assert!(
        (broker.budget.total_ms() as i64) < SHIFT_MS,
        "{}",
        show(broker)
    );
    assert_eq!(
        broker.verdict,
        Verdict::Fail,
        "shifted by {shift}: {}",
        show(broker)
    );
    assert_eq!(
        unshifted_by(broker, shift),
        Verdict::Pass,
        "unshifted: {}",
        show(broker)
    );
}

// A lapin application that blocks its (current-thread) runtime stops
// lapin's heartbeats: their timer is a task on that runtime, not on the
// "lapin-io-loop" thread, so RabbitMQ reaps it as it reaps a dead path.
#[test]
fn amqp_stalled_client() {
    let results = run(
        "amqp/0-9-1-4.2.7/1",
        FaultKind::ClientStall,
        &["amqp.heartbeat=2s"],
    );
    print(&results);
    assert_client_reported(&results, FaultKind::ClientStall);
    assert_pass(side(&results, "server"));
}

//! The busy connection (issue 18 item 4): the path dies while the client
//! application sends and receives steadily. Both sides are judged against
//! their implementation's algorithm, anchored on the traffic the run saw;
//! each sharp verdict is shown failing against its window shifted later.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use rstest::rstest;

use crate::common::*;
use crate::situations::print;
use crate::verdicts::{unshifted_by, SHIFT_MS};

/// A pass, or a fail its documented deviation explains.
fn pass_or_known(r: &CaseResult) {
    assert!(r.detected, "{}", show(r));
    assert!(
        r.verdict == Verdict::Pass || (r.verdict == Verdict::Fail && r.known_deviation.is_some()),
        "{}",
        show(r)
    );
}

/// The `side` results of `implementation` pass, and the same observation
/// fails against its window shifted by [`SHIFT_MS`] towards the edge the
/// detection is nearer to (a wide window, e.g. a server's read bounded by
/// the echo that came back, holds a detection near either edge).
fn shifted_fails(results: &[CaseResult], side: &str, implementation: &str) {
    for r in results
        .iter()
        .filter(|r| r.side == side && r.implementation.name.contains(implementation))
    {
        assert_pass(r);
        assert!(
            (r.budget.total_ms() as i64) < SHIFT_MS,
            "budget at or over the shift: {}",
            show(r)
        );
        let (lo, hi) = (
            r.expected.min_ms.unwrap() as i64,
            r.expected.max_ms.unwrap() as i64,
        );
        let at = r.detection_ms.unwrap() as i64;
        // unshifted_by(r, s) judges against the window moved by −s.
        let shift = if at - lo > hi - at {
            SHIFT_MS
        } else {
            -SHIFT_MS
        };
        assert_eq!(
            unshifted_by(r, shift),
            Verdict::Fail,
            "window moved by {}: {}",
            -shift,
            show(r)
        );
    }
}

// rumqttc pings every K whatever the traffic and only a PINGRESP answers
// it: under blackhole it fails 2K after its last PINGREQ, as when idle;
// under reset its next PUBLISH (≤ 100 ms) meets the RST. Mosquitto restarts
// its 1.5 × K at every packet: it hears the last PUBLISH, not a PINGREQ.
#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::reset(FaultKind::Reset)]
fn mqtt_busy_client_and_broker(#[case] fault: FaultKind) {
    let results = run("mqtt/3.1.1-3.1.2.10/busy", fault, &["mqtt.keep_alive=2s"]);
    print(&results);
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        client.timeline.iter().any(|e| e.what.contains("echo")),
        "{}",
        show(client)
    );
    pass_or_known(side(&results, "server"));
    // Under reset the window runs from 0 (a delayed ACK may go first) to
    // the message Nagle may hold until a tail-loss probe: sharp under
    // blackhole only.
    if fault == FaultKind::Blackhole {
        shifted_fails(&results, "client", "rumqttc");
    }
}

// kaspec's heartbeat (client and kaspec-ws) restarts its P + T silence at
// every frame read, an echo included: both sides' windows run from the last
// message, not from the last Ping. Python websockets' keepalive ignores the
// traffic: its window runs from its own last Ping, as when idle. Under
// reset the client's next text (≤ 100 ms) meets the RST, not its next Ping.
#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::reset(FaultKind::Reset)]
fn websocket_busy_both_sides(#[case] fault: FaultKind) {
    let results = run("websocket/rfc6455-5.5.2/busy", fault, &[]);
    print(&results);
    for c in results.iter().filter(|r| r.side == "client") {
        assert_pass(c);
        assert!(
            c.timeline.iter().any(|e| e.what.contains("echo")),
            "{}",
            show(c)
        );
    }
    for s in results.iter().filter(|r| r.side == "server") {
        assert!(s.detected, "{}", show(s));
    }
    assert_pass(by(&results, "server", "kaspec-ws"));
    // Under reset each window runs from 0 (a delayed ACK, or the server's
    // retransmission of its last echo, may meet the RST first) to the
    // client's next message (or, Nagle, its tail-loss probe) or the server's
    // next Ping: 50 ms from an edge only when the detection is there; the
    // blackhole windows are sharp.
    if fault == FaultKind::Blackhole {
        shifted_fails(&results, "client", "kaspec");
        shifted_fails(&results, "server", "kaspec-ws");
    }
}

// lapin's heartbeat wakes H/2 after its last write, so its publishes
// postpone the wakes at which it checks what it read: the window is its
// wake chain replayed over the writes the tap saw. RabbitMQ's receiver
// ticks every T whatever the traffic; under reset its sender's first
// heartbeat after the last delivery meets the RST.
#[rstest]
#[case::blackhole(FaultKind::Blackhole)]
#[case::reset(FaultKind::Reset)]
fn amqp_busy_both_sides(#[case] fault: FaultKind) {
    let results = run("amqp/0-9-1-4.2.7/busy", fault, &["amqp.heartbeat=2s"]);
    print(&results);
    for r in &results {
        for e in &r.timeline {
            eprintln!("  {:>6} {}", e.t_ms, e.what);
        }
    }
    assert_pass(side(&results, "client"));
    assert_pass(side(&results, "server"));
    if fault == FaultKind::Blackhole {
        shifted_fails(&results, "client", "lapin");
    }
    shifted_fails(&results, "server", "rabbitmq");
}

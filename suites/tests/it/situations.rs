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

/// The client of a client situation: reported with why, never judged.
fn assert_client_reported(results: &[CaseResult], fault: FaultKind) {
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

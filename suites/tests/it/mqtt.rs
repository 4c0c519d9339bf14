//! rumqttc vs Mosquitto Keep Alive (MQTT 3.1.1 §3.1.2.10), idle and through a NAT.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

#[rstest]
#[case::keep_alive_2s(2)]
#[case::keep_alive_3s(3)]
fn mqtt_blackhole_client_and_broker_detect(#[case] k: u64) {
    let set = format!("mqtt.keep_alive={k}s");
    let results = run("mqtt/3.1.1-3.1.2.10/1", FaultKind::Blackhole, &[&set]);
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("AwaitPingResp"),
        "{}",
        show(client)
    );
    // rumqttc's window, independent of phase: (K, 2K] after the fault.
    let v = client.detection_ms.unwrap();
    assert!(
        v + client.allowance_ms() > k * 1000 && v <= 2 * k * 1000 + client.allowance_ms(),
        "{}",
        show(client)
    );

    // The broker is judged against [MQTT-3.1.2-24]; Mosquitto's documented
    // deviation explains a late disconnect only within what it documents.
    let broker = side(&results, "server");
    assert!(
        broker.detected,
        "the broker must disconnect a silent client: {}",
        show(broker)
    );
    assert_eq!(broker.implementation.name, "mosquitto");
    assert!(
        broker.verdict == Verdict::Pass
            || (broker.verdict == Verdict::Fail && broker.known_deviation.is_some()),
        "{}",
        show(broker)
    );
    // Second axis: the broker closed its end (the client's is not judged:
    // kaspec's client drops the event loop once rumqttc failed).
    let rel = broker
        .release
        .as_ref()
        .unwrap_or_else(|| panic!("release observed: {}", show(broker)));
    assert!(rel.clean, "{}", show(broker));
}

#[test]
fn mqtt_reset_is_seen_on_the_next_ping() {
    let results = run(
        "mqtt/3.1.1-3.1.2.10/1",
        FaultKind::Reset,
        &["mqtt.keep_alive=2s"],
    );
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("ConnectionReset"),
        "{}",
        show(client)
    );
}

#[test]
fn mqtt_one_way_blackhole_broker_hears_pings_until_the_client_gives_up() {
    let results = run(
        "mqtt/3.1.1-3.1.2.10/1",
        FaultKind::BlackholeDown,
        &["mqtt.keep_alive=2s"],
    );
    let client = side(&results, "client");
    assert_pass(client);
    // The client's FIN is stuck behind its unacknowledged PINGREQ: the broker
    // only learns through its own keep-alive, counted from that PINGREQ,
    // which came after the fault — so it acts after the client.
    let broker = side(&results, "server");
    assert!(broker.detected, "{}", show(broker));
    assert!(
        broker.detection_ms.unwrap() > client.detection_ms.unwrap(),
        "{}",
        show(broker)
    );
    assert!(
        broker.verdict == Verdict::Pass
            || (broker.verdict == Verdict::Fail && broker.known_deviation.is_some()),
        "{}",
        show(broker)
    );
}

#[test]
fn mqtt_frozen_broker_is_detected_by_the_missing_pingresp() {
    let results = run(
        "mqtt/3.1.1-3.1.2.10/1",
        FaultKind::Freeze,
        &["mqtt.keep_alive=2s"],
    );
    let client = side(&results, "client");
    assert_pass(client);
    assert_eq!(client.engine, "SIGSTOP");
    assert_quiet(side(&results, "server"));
}

#[rstest]
#[case::kept(2, true)]
#[case::broken(4, false)]
fn nat_mqtt_keep_alive_against_the_nat_timeout(#[case] k: u64, #[case] kept: bool) {
    let set = format!("mqtt.keep_alive={k}s");
    let results = run_on(
        "mqtt/3.1.1-3.1.2.10/2",
        FaultKind::NatExpiry,
        &[&set],
        Some(3),
    );
    let client = side(&results, "client");
    let broker = side(&results, "server");
    if kept {
        assert_eq!(client.verdict, Verdict::Pass, "{}", show(client));
        assert!(!client.detected && !broker.detected, "{}", show(broker));
    } else {
        assert_pass(client);
        assert!(broker.detected, "{}", show(broker));
        assert!(
            broker.verdict == Verdict::Pass || broker.known_deviation.is_some(),
            "{}",
            show(broker)
        );
    }
}

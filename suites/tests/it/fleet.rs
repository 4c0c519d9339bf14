//! Fleets (issue 17): a few hundred idle connections through one router,
//! cut at once; every connection on both sides judged against its own
//! window, folded into one result per side with the distribution.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::common::*;

/// Every connection detected, each inside its own window (the fleet's
/// verdict is its worst connection's), the resources measured.
fn assert_fleet_passes(r: &CaseResult, n: usize) {
    let f = r
        .fleet
        .as_ref()
        .unwrap_or_else(|| panic!("no fleet section: {}", show(r)));
    assert_eq!(
        (f.connections, f.detected, f.outside),
        (n, n, 0),
        "{}",
        show(r)
    );
    assert_eq!(r.verdict, Verdict::Pass, "{}", show(r));
    assert!(
        f.all_gone_ms.is_some() && f.p50_ms <= f.p99_ms && f.p99_ms <= f.max_ms,
        "{}",
        show(r)
    );
    assert_eq!(
        f.histogram
            .iter()
            .map(|b| b.within + b.outside)
            .sum::<usize>(),
        n
    );
    assert!(
        f.resources.kaspec_hwm_kb.is_some()
            && f.resources.server_pss_kb.iter().all(Option::is_some),
        "{:?}",
        f.resources
    );
}

#[test]
fn tcp_fleet_every_connection_dies_in_its_own_window_on_both_ends() {
    let results = run(
        "tcp/rfc1122-4.2.3.6/fleet",
        FaultKind::Blackhole,
        &[
            "fleet.connections=200",
            "tcp.idle=1s",
            "tcp.interval=1s",
            "tcp.count=1",
        ],
    );
    assert_fleet_passes(side(&results, "client"), 200);
    assert_fleet_passes(side(&results, "server"), 200);
}

#[test]
fn mqtt_fleet_the_broker_reaps_every_session_and_each_client_fails_at_its_tick() {
    let results = run(
        "mqtt/3.1.1-3.1.2.10/fleet",
        FaultKind::Blackhole,
        &["fleet.connections=200", "mqtt.keep_alive=1s"],
    );
    assert_fleet_passes(side(&results, "client"), 200);
    // Mosquitto reaps every session, late by its documented deviation at
    // most (its keep-alive check runs when its main loop wakes): each
    // connection outside its window must be explained, none unexplained.
    let broker = side(&results, "server");
    let f = broker.fleet.as_ref().expect("fleet section");
    assert_eq!((f.connections, f.detected), (200, 200), "{}", show(broker));
    assert_eq!(
        f.outside,
        f.explained,
        "an unexplained session: {}",
        show(broker)
    );
    assert!(!broker.fails(), "{}", show(broker));
}

/// The fleet verdict can fail: each client connection's window (a point:
/// the tick after the unanswered PINGREQ) shifted 50 ms later puts every
/// connection outside it, and the fleet fails with all of them counted.
#[test]
fn mqtt_fleet_with_a_shifted_window_fails_every_connection() {
    let mut ctx = ctx(&["fleet.connections=200", "mqtt.keep_alive=1s"]);
    ctx.shift_window_ms = 50;
    let results = run_in(&ctx, "mqtt/3.1.1-3.1.2.10/fleet", FaultKind::Blackhole);
    let client = side(&results, "client");
    let f = client.fleet.as_ref().expect("fleet section");
    assert!(
        (client.budget.total_ms() as i64) < 50,
        "budget at or over the shift: {}",
        show(client)
    );
    assert_eq!(
        (client.verdict, f.outside, f.explained),
        (Verdict::Fail, 200, 0),
        "{}",
        show(client)
    );
    assert!(
        client.fails() && client.expected.formula.contains("shifted by +50 ms"),
        "{}",
        show(client)
    );
}

#[test]
fn postgres_fleet_the_server_reaps_every_backend_and_each_client_fails_its_connection() {
    let results = run(
        "postgres/pg15-20.3-tcp_keepalives/fleet",
        FaultKind::Blackhole,
        &[
            "fleet.connections=200",
            "postgres.keepalives_idle=1s",
            "postgres.keepalives_interval=1s",
            "postgres.keepalives_retries=1",
        ],
    );
    assert_fleet_passes(side(&results, "client"), 200);
    assert_fleet_passes(side(&results, "server"), 200);
}

//! External clients (`--client FILE`, `kaspec_suites::external`): adapter
//! files good and bad (one-line errors naming the file and key), and each
//! shipped adapter of `fixtures/clients/` measured against the real server
//! with short timings, observed through its socket (sock_diag) and through
//! its stdout lines; its verdict fails when its window is shifted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_suites::external::{Adapter, Observe};
use kaspec_suites::registry;

use crate::common::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn shipped(name: &str) -> Adapter {
    let config = registry::config();
    Adapter::load(
        &fixtures().join("clients").join(name),
        &registry::external_protocols(),
        &config,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `text` as an adapter file: its one-line error.
fn refused(text: &str) -> String {
    let config = registry::config();
    let e = Adapter::parse(
        text,
        Path::new("my-app.toml"),
        &registry::external_protocols(),
        &config,
    )
    .expect_err("must be refused");
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

const GOOD: &str = r#"
name = "my-app"
version = "1.0"
protocol = "mqtt"
command = ["{dir}/my-app", "{host}", "{port}", "{mqtt.keep_alive:ms}"]
observe = ["lines"]
[expect]
kind = "heartbeat"
dead_after = "{mqtt.keep_alive}"
poll = "100ms"
"#;

#[test]
fn a_good_adapter_file_resolves_its_placeholders() {
    let config = config(&["mqtt.keep_alive=3s"]);
    let a = Adapter::parse(
        GOOD,
        Path::new("apps/my-app.toml"),
        &registry::external_protocols(),
        &config,
    )
    .unwrap();
    assert_eq!(a.observe, vec![Observe::Lines]);
    let server = "10.0.0.2:1883".parse().unwrap();
    assert_eq!(
        a.argv(server, &config).unwrap(),
        ["apps/my-app", "10.0.0.2", "1883", "3000"]
    );
    let e = a.expect(&config).unwrap();
    assert_eq!(
        e.algorithm,
        kaspec_suites::external::adapter::Algorithm::Heartbeat {
            dead_after: std::time::Duration::from_secs(3),
            poll: std::time::Duration::from_millis(100)
        }
    );
    // The shipped ones load too.
    for f in ["paho-mqtt.toml", "pika.toml"] {
        shipped(f);
    }
}

#[test]
fn bad_adapter_files_are_refused_in_one_line_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("name = \"x\"\nprotocol = \"mqtt\"", "`command` is missing"),
        ("name = \"x\"\nprotocol = \"smtp\"\ncommand = [\"a\"]", "`protocol` = \"smtp\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = []", "`command` = []"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\", \"{mqtt.keepalive}\"]", "unknown placeholder `{mqtt.keepalive}`"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\", \"{host\"]", "an unclosed"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\nobserve = [\"stdout\"]", "`observe` = \"stdout\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\ncolour = 1", "unknown key `colour`"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"magic\"", "`expect.kind` = \"magic\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"ping-timeout\"\ninterval = \"2s\"", "`expect.timeout` is missing"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"heartbeat\"\ndead_after = \"soon\"", "`expect.dead_after` = \"soon\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"heartbeat\"\ndead_after = \"{host}\"", "only known in `command`"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"tcp-keepalive\"\nidle = \"1s\"\ninterval = \"1s\"\ncount = 0", "`expect.count` = 0"),
        ("name = \"x\nprotocol", "not TOML"),
        ("name = \"x\"\nprotocol = \"amqp\"\ncommand = [\"a\"]\n[expect]\nkind = \"check-period\"\nperiod = \"2s / 0\"", "`expect.period` = \"2s / 0\""),
        ("name = \"x\"\nprotocol = \"amqp\"\ncommand = [\"a\"]\n[expect]\nkind = \"check-period\"\nperiod = \"7s\"", "needs `observe` to include \"lines\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"ping-timeout\"\ninterval = \"2s\"\ntimeout = \"2s\"\nclock = \"hours\"", "`expect.clock` = \"hours\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[expect]\nkind = \"ping-timeout\"\ninterval = \"2s\"\ntimeout = \"2s\"\nanchor = \"pong\"", "`expect.anchor` needs `observe` to include \"lines\""),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[minimum]\n\"mqtt.keepalive\" = \"5s\"", "`minimum.mqtt.keepalive`: not a duration knob"),
        ("name = \"x\"\nprotocol = \"mqtt\"\ncommand = [\"a\"]\n[minimum]\n\"mqtt.keep_alive\" = \"soon\"", "`minimum.mqtt.keep_alive` = \"soon\""),
        ("name = \"x\"\nprotocol = \"postgres\"\ncommand = [\"a\"]\n[expect]\nkind = \"tcp-keepalive\"\nidle = \"1s\"\ninterval = \"1s\"\ncount = 2\nenabled = \"maybe\"", "`expect.enabled` = \"maybe\""),
        ("name = \"x\"\nprotocol = \"grpc\"\ncommand = [\"a\"]\n[expect]\nkind = \"ping-timeout\"\ninterval = \"{grpc.keepalive_time}\"\ntimeout = \"1s\"\nuser_timeout = \"{grpc.keepalive_timeot}\"", "unknown placeholder `{grpc.keepalive_timeot}`"),
        ("name = \"x\"\nprotocol = \"grpc\"\ncommand = [\"a\"]\n[expect]\nkind = \"heartbeat\"\ndead_after = \"1s\"\nuser_timeout = \"1s\"", "unknown key `expect.user_timeout` for kind heartbeat"),
    ];
    for (text, want) in cases {
        let e = refused(text);
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let missing = Adapter::load(
        Path::new("/nonexistent/app.toml"),
        &["mqtt"],
        &registry::config(),
    )
    .unwrap_err();
    assert!(
        missing.starts_with("client adapter /nonexistent/app.toml: cannot read it"),
        "{missing}"
    );
}

/// The MQTT idle case with `adapter` as its client at Keep Alive 2 s.
fn mqtt_with(
    adapter: Adapter,
    fault: FaultKind,
    shift: i64,
) -> Vec<kaspec_harness::report::CaseResult> {
    mqtt_at("2s", adapter, fault, shift)
}

/// A shifted window's client verdict: fail.
fn assert_client_fails(shifted: &[kaspec_harness::report::CaseResult]) {
    let c = side(shifted, "client");
    assert_eq!(c.verdict, Verdict::Fail, "{}", show(c));
}

#[test]
fn paho_mqtt_is_judged_by_its_socket_against_its_algorithm() {
    let results = mqtt_with(shipped("paho-mqtt.toml"), FaultKind::Blackhole, 0);
    let c = side(&results, "client");
    assert_eq!(c.implementation.name, "paho-mqtt", "{}", show(c));
    assert_pass(c);
    assert!(
        c.timeline
            .iter()
            .any(|e| e.what.contains("client says: connected")),
        "{}",
        show(c)
    );
}

#[test]
fn paho_mqtt_is_judged_by_its_lines_and_a_shifted_window_fails() {
    let mut a = shipped("paho-mqtt.toml");
    a.observe = vec![Observe::Lines];
    let results = mqtt_with(a.clone(), FaultKind::Blackhole, 0);
    assert_pass(side(&results, "client"));
    let shifted = mqtt_with(a, FaultKind::Blackhole, 50);
    assert_client_fails(&shifted);
}

#[test]
fn paho_mqtt_meets_a_reset_at_its_next_ping() {
    let results = mqtt_with(shipped("paho-mqtt.toml"), FaultKind::Reset, 0);
    assert_pass(side(&results, "client"));
}

fn example() -> Adapter {
    let config = registry::config();
    Adapter::load(
        &fixtures().join("examples/my-mqtt-app.toml"),
        &registry::external_protocols(),
        &config,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_example_application_is_measured_through_its_socket_and_its_lines() {
    for observe in [Observe::Socket, Observe::Lines] {
        let mut a = example();
        a.observe = vec![observe];
        let results = mqtt_with(a, FaultKind::Blackhole, 0);
        let c = side(&results, "client");
        assert_eq!(c.implementation.name, "my-mqtt-app", "{}", show(c));
        assert_pass(c);
    }
}

#[test]
fn pika_gives_up_one_check_period_after_the_first_silent_check() {
    let mut ctx = ctx(&["amqp.heartbeat=2s"]);
    ctx.client = Some(Arc::new(shipped("pika.toml")));
    let results = run_in(&ctx, "amqp/0-9-1-4.2.7/1", FaultKind::Blackhole);
    let c = side(&results, "client");
    assert_eq!(c.implementation.name, "pika", "{}", show(c));
    assert_pass(c);
    // The broker's receiver is judged as with lapin.
    assert_pass(side(&results, "server"));
}

#[test]
fn pika_meets_a_reset_at_its_next_heartbeat() {
    let mut ctx = ctx(&["amqp.heartbeat=2s"]);
    ctx.client = Some(Arc::new(shipped("pika.toml")));
    let results = run_in(&ctx, "amqp/0-9-1-4.2.7/1", FaultKind::Reset);
    assert_pass(side(&results, "client"));
}

/// The MQTT idle case with `adapter` as its client at Keep Alive `k`.
fn mqtt_at(
    k: &str,
    adapter: Adapter,
    fault: FaultKind,
    shift: i64,
) -> Vec<kaspec_harness::report::CaseResult> {
    let mut ctx = ctx(&[&format!("mqtt.keep_alive={k}")]);
    ctx.client = Some(Arc::new(adapter));
    ctx.shift_window_ms = shift;
    run_in(&ctx, "mqtt/3.1.1-3.1.2.10/1", fault)
}

#[test]
fn mosquitto_sub_closes_on_its_whole_second_and_a_shifted_window_fails() {
    let a = shipped("mosquitto_sub.toml");
    assert!(a.fits(&config(&["mqtt.keep_alive=2s"])).is_err());
    let results = mqtt_at("5s", a.clone(), FaultKind::Blackhole, 0);
    let c = side(&results, "client");
    assert_eq!(c.implementation.name, "mosquitto_sub", "{}", show(c));
    assert_pass(c);
    // 50 ms earlier: its ten 1 s waits, late by load, never reach back into
    // it (a later shift can meet a loaded run's lateness).
    let shifted = mqtt_at("5s", a, FaultKind::Blackhole, -50);
    assert_client_fails(&shifted);
}

#[test]
fn mosquitto_sub_meets_a_reset_at_its_next_ping() {
    let results = mqtt_at("5s", shipped("mosquitto_sub.toml"), FaultKind::Reset, 0);
    assert_pass(side(&results, "client"));
}

/// The PostgreSQL idle case with psycopg2 as its client under `sets`.
fn psycopg2_with(
    sets: &[&str],
    fault: FaultKind,
    shift: i64,
) -> Vec<kaspec_harness::report::CaseResult> {
    let mut ctx = ctx(sets);
    ctx.client = Some(Arc::new(shipped("psycopg2.toml")));
    ctx.shift_window_ms = shift;
    run_in(&ctx, "postgres/libpq-keepalives/1", fault)
}

const PG_KEEPALIVE: &[&str] = &[
    "postgres.keepalives_idle=2s",
    "postgres.keepalives_interval=1s",
    "postgres.keepalives_retries=2",
];

#[test]
fn psycopg2_is_aborted_by_libpqs_keepalive_and_a_shifted_window_fails() {
    let results = psycopg2_with(PG_KEEPALIVE, FaultKind::Blackhole, 0);
    let c = side(&results, "client");
    assert_eq!(c.implementation.name, "psycopg2", "{}", show(c));
    assert_pass(c);
    // The backend's own keep-alive (the fixture's 2 s / 1 s / 3).
    assert_pass(side(&results, "server"));
    // Shifted past the window's width (the keep-alive timer's wheel
    // rounding, about 120 ms at HZ=250).
    let shifted = psycopg2_with(PG_KEEPALIVE, FaultKind::Blackhole, 200);
    assert_client_fails(&shifted);
}

#[test]
fn psycopg2_meets_a_reset_at_its_first_probe_and_honours_tcp_user_timeout() {
    let results = psycopg2_with(PG_KEEPALIVE, FaultKind::Reset, 0);
    assert_pass(side(&results, "client"));
    let mut sets = PG_KEEPALIVE.to_vec();
    sets.push("postgres.tcp_user_timeout=2500ms");
    let results = psycopg2_with(&sets, FaultKind::Blackhole, 0);
    assert_pass(side(&results, "client"));
}

/// The WebSocket heartbeat case with the `websockets` client under `fault`.
fn websockets_with(fault: FaultKind, shift: i64) -> Vec<kaspec_harness::report::CaseResult> {
    let mut ctx = ctx(&["websocket.ping_interval=1s", "websocket.pong_timeout=1s"]);
    ctx.client = Some(Arc::new(shipped("websockets.toml")));
    ctx.shift_window_ms = shift;
    run_in(&ctx, "websocket/rfc6455-5.5.2/2", fault)
}

#[test]
fn websockets_gives_up_after_its_pong_timeout_and_releases_after_close_timeout() {
    let results = websockets_with(FaultKind::Blackhole, 0);
    let c = side(&results, "client");
    assert_eq!(
        c.implementation.name,
        "python-websockets-client",
        "{}",
        show(c)
    );
    assert_pass(c);
    assert_pass(side(&results, "server"));
    // 50 ms earlier: its timers, late by load, never reach back into it.
    let shifted = websockets_with(FaultKind::Blackhole, -50);
    assert_client_fails(&shifted);
}

#[test]
fn websockets_meets_a_reset_at_its_next_ping() {
    let results = websockets_with(FaultKind::Reset, 0);
    assert_pass(side(&results, "client"));
    assert_pass(side(&results, "server"));
}

/// The client's own situations with a program kaspec cannot reach into
/// (issue 18 item 4): `client-stall` stops the whole program (SIGSTOP to
/// its process group), `client-crash` kills it behind the blackhole. The
/// program is reported, not judged; our WebSocket server, whose Ping the
/// stopped client's kernel acknowledges but nobody answers, is judged
/// against its heartbeat window (silence for P + T after the client's last
/// frame), and fails it shifted 50 ms later.
#[test]
fn a_stopped_or_killed_program_is_reaped_by_the_servers_heartbeat() {
    for fault in [FaultKind::ClientStall, FaultKind::ClientCrash] {
        let results = websockets_with(fault, 0);
        let c = side(&results, "client");
        assert_eq!(
            c.expected.level,
            kaspec_harness::expect::Level::Info,
            "{}",
            show(c)
        );
        assert!(
            !c.detected || fault == FaultKind::ClientStall,
            "{}",
            show(c)
        );
        let s = side(&results, "server");
        assert!(s.detected, "{fault}: {}", show(s));
        assert_pass(s);
    }
    let shifted = websockets_with(FaultKind::ClientStall, crate::verdicts::SHIFT_MS);
    let s = side(&shifted, "server");
    assert_eq!(s.verdict, Verdict::Fail, "shifted: {}", show(s));
    assert_eq!(
        crate::verdicts::unshifted(s),
        Verdict::Pass,
        "unshifted: {}",
        show(s)
    );
}

/// The gRPC idle case with grpcio as its client (K = T = 1 s), against
/// both gRPC servers (kaspec's tonic server and grpcio's).
fn grpcio_with(fault: FaultKind, shift: i64) -> Vec<kaspec_harness::report::CaseResult> {
    let mut ctx = ctx(&["grpc.keepalive_time=1s", "grpc.keepalive_timeout=1s"]);
    ctx.client = Some(Arc::new(shipped("grpcio.toml")));
    ctx.shift_window_ms = shift;
    run_in(&ctx, "grpc/a8-keepalive/1", fault)
}

/// Each result of `side`: one per server.
fn each<'a>(
    results: &'a [kaspec_harness::report::CaseResult],
    side: &'a str,
) -> impl Iterator<Item = &'a kaspec_harness::report::CaseResult> {
    let n = results.iter().filter(|r| r.side == side).count();
    assert_eq!(n, 2, "one {side} result per server: {results:?}");
    results.iter().filter(move |r| r.side == side)
}

#[test]
fn grpcio_closes_k_plus_t_after_its_last_read_against_both_servers() {
    let results = grpcio_with(FaultKind::Blackhole, 0);
    for c in each(&results, "client") {
        assert_eq!(c.implementation.name, "grpcio", "{}", show(c));
        // Against kaspec's tonic server (its PINGs on its own schedule), a
        // PING arriving as the fault goes in leaves grpcio's PING ACK in the
        // dead path: the kernel's TCP_USER_TIMEOUT (= T) then closes it
        // first, and the window says so (`user_timeout`).
        assert_pass(c);
    }
    for s in each(&results, "server") {
        assert_pass(s);
    }
}

#[test]
fn grpcio_shifted_by_its_window_width_fails() {
    // 100 ms earlier: past the width of its watchdog's window (about
    // 14 ms) and of the kernel's abort (about 60 ms at HZ=250: the RTO
    // timers' wheel rounding), and its timers, late by load, never reach
    // back into it.
    let shifted = grpcio_with(FaultKind::Blackhole, -100);
    for c in each(&shifted, "client") {
        assert_eq!(c.verdict, Verdict::Fail, "{}", show(c));
    }
}

#[test]
fn grpcio_meets_a_reset_at_its_next_ping() {
    let results = grpcio_with(FaultKind::Reset, 0);
    for r in results.iter() {
        assert_pass(r);
    }
}

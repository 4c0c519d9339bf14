//! TCP keep-alive, keep-alive off, TCP_USER_TIMEOUT (RFC 1122 §4.2.3.6, RFC 5482)
//! under every fault of the nftables engine; half-open after a crash; the NAT case.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

#[rstest]
#[case::idle_1_interval_1_count_2(&["tcp.idle=1s", "tcp.interval=1s", "tcp.count=2"], FaultKind::Blackhole)]
#[case::idle_2_interval_1_count_1_up(&["tcp.idle=2s", "tcp.interval=1s", "tcp.count=1"], FaultKind::BlackholeUp)]
#[case::idle_1_interval_2_count_2_down(&["tcp.idle=1s", "tcp.interval=2s", "tcp.count=2"], FaultKind::BlackholeDown)]
#[case::user_timeout_overrides_count(&["tcp.idle=1s", "tcp.interval=1s", "tcp.count=9", "tcp.user_timeout=2500ms"], FaultKind::Blackhole)]
#[case::reset_on_first_probe(&["tcp.idle=2s"], FaultKind::Reset)]
fn tcp_idle_keepalive_detects_a_dead_path_in_its_window(
    #[case] sets: &[&str],
    #[case] fault: FaultKind,
) {
    let results = run("tcp/rfc1122-4.2.3.6/1", fault, sets);
    let client = side(&results, "client");
    assert_pass(client);
    let server = side(&results, "server");
    if fault == FaultKind::BlackholeDown {
        // The client's abort RST still reaches the server: it learns then.
        assert_pass(server);
        let (c, s) = (
            client.detection_ms.unwrap() as i64,
            server.detection_ms.unwrap() as i64,
        );
        assert!((s - c).abs() <= 100, "server {s} ms vs client {c} ms");
    } else {
        assert_quiet(server);
    }
    assert_eq!(client.engine, "nftables");
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains(if fault == FaultKind::Reset {
                "ConnectionReset"
            } else {
                "TimedOut"
            }),
        "{}",
        show(client)
    );
}

#[rstest]
#[case(FaultKind::Blackhole)]
#[case(FaultKind::Reset)]
// The client's own clean close at its deadline must not pass for the
// server's detection through a one-way blackhole.
#[case(FaultKind::BlackholeDown)]
fn tcp_without_keepalive_nothing_notices(#[case] fault: FaultKind) {
    let results = run(
        "tcp/rfc1122-4.2.3.6/2",
        fault,
        &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=1"],
    );
    assert_quiet(side(&results, "client"));
    assert_quiet(side(&results, "server"));
    assert!(side(&results, "client").deadline_ms >= 3000);
    // Second axis: nobody ended the session; the server's end is leaked.
    let rel = side(&results, "server")
        .release
        .as_ref()
        .expect("server release observed");
    if fault != FaultKind::Freeze && fault != FaultKind::Crash {
        assert!(!rel.clean && rel.state == "ESTABLISHED", "{rel:?}");
    }
}

#[rstest]
#[case::user_timeout_1500ms(&["tcp.user_timeout=1500ms"], FaultKind::Blackhole)]
#[case::user_timeout_3s_down(&["tcp.user_timeout=3s"], FaultKind::BlackholeDown)]
#[case::reset_is_immediate(&["tcp.user_timeout=1500ms"], FaultKind::Reset)]
fn tcp_data_in_flight_dies_at_the_user_timeout(#[case] sets: &[&str], #[case] fault: FaultKind) {
    let results = run("tcp/rfc5482-3/1", fault, sets);
    let client = side(&results, "client");
    assert_pass(client);
    if fault == FaultKind::Reset {
        assert!(client.detection_ms.unwrap() < 100, "{}", show(client));
    }
}

#[test]
fn tcp_data_in_flight_without_user_timeout_is_not_saved_by_keepalive() {
    // Keep-alive would declare an idle connection dead after 1 + 1×1 s; with
    // data in flight it never probes, and without U nothing ends it soon.
    let results = run(
        "tcp/rfc5482-3/1",
        FaultKind::Blackhole,
        &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=1"],
    );
    assert_quiet(side(&results, "client"));
}

#[test]
fn tcp_half_open_after_a_crash_ends_with_rst_at_the_next_probe() {
    let r = run(
        "tcp/rfc9293-3.5.2/1",
        FaultKind::Crash,
        &["tcp.idle=2s", "tcp.interval=1s", "tcp.count=3"],
    );
    let c = side(&r, "client");
    assert_pass(c);
    // The RST comes at the second probe (I + V), well before the dead-path give-up (I + N×V).
    assert!(c.detection_ms.unwrap() < 4000, "{}", show(c));
    assert!(
        c.error.as_deref().unwrap_or_default().contains("reset"),
        "{}",
        show(c)
    );
}

#[test]
fn tcp_keepalive_cannot_see_a_frozen_server() {
    // The kernel of the frozen server answers every probe: no detection, by design.
    let results = run(
        "tcp/rfc1122-4.2.3.6/1",
        FaultKind::Freeze,
        &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=1"],
    );
    let client = side(&results, "client");
    assert_quiet(client);
    assert!(
        client.expected.formula.contains("cannot detect"),
        "{}",
        show(client)
    );
}

#[test]
fn nat_tcp_keepalive_below_the_timeout_keeps_the_connection_usable() {
    let results = run_on(
        "tcp/rfc5382-5/1",
        FaultKind::NatExpiry,
        &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=2"],
        Some(3),
    );
    let client = side(&results, "client");
    assert_eq!(client.verdict, Verdict::Pass, "{}", show(client));
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("still answers"),
        "{}",
        show(client)
    );
}

#[test]
fn nat_tcp_keepalive_above_the_timeout_breaks_and_is_noticed() {
    // I = 4 s > N = 3 s (I = N races the expiry: reported, not judged).
    let results = run_on(
        "tcp/rfc5382-5/1",
        FaultKind::NatExpiry,
        &["tcp.idle=4s", "tcp.interval=1s", "tcp.count=1"],
        Some(3),
    );
    let client = side(&results, "client");
    assert_pass(client);
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("TimedOut"),
        "{}",
        show(client)
    );
    assert_quiet(side(&results, "server"));
}

#[test]
fn nat_tcp_keepalive_equal_to_the_timeout_is_reported_not_judged() {
    let results = run_on(
        "tcp/rfc5382-5/1",
        FaultKind::NatExpiry,
        &["tcp.idle=3s", "tcp.interval=1s", "tcp.count=1"],
        Some(3),
    );
    let client = side(&results, "client");
    assert_eq!(client.verdict, Verdict::Informational, "{}", show(client));
    assert!(
        client.expected.formula.contains("races"),
        "{}",
        show(client)
    );
}

#[test]
fn nat_tcp_without_keepalive_breaks_silently() {
    let results = run_on(
        "tcp/rfc5382-5/1",
        FaultKind::NatExpiry,
        &["tcp.keepalive=false"],
        Some(2),
    );
    let client = side(&results, "client");
    assert_quiet(client);
    assert!(
        client
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no answer"),
        "the NAT dropped the later data: {}",
        show(client)
    );
}

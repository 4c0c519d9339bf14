//! What several protocols share: a crash without FIN looks like a dead
//! path; sane keep-alives survive a slow or lossy path.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use rstest::rstest;

use crate::common::*;

#[rstest]
#[case::tcp("tcp/rfc1122-4.2.3.6/1", &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=2"])]
#[case::mqtt("mqtt/3.1.1-3.1.2.10/1", &["mqtt.keep_alive=2s"])]
fn crash_without_fin_looks_like_a_dead_path(#[case] id: &str, #[case] sets: &[&str]) {
    let results = run(id, FaultKind::Crash, sets);
    let client = side(&results, "client");
    assert_pass(client);
    assert_eq!(client.engine, "nftables + SIGKILL");
    let server = side(&results, "server");
    assert_quiet(server);
    assert!(
        server
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("killed"),
        "{}",
        show(server)
    );
}

#[rstest]
#[case::tcp_loss("tcp/rfc1122-4.2.3.6/1", FaultKind::Loss, &["tcp.idle=1s", "tcp.interval=1s", "tcp.count=3"])]
#[case::mqtt_delay("mqtt/3.1.1-3.1.2.10/1", FaultKind::Delay, &["mqtt.keep_alive=2s"])]
#[case::grpc_loss("grpc/a8-keepalive/1", FaultKind::Loss, &[])]
fn sane_keepalives_survive_a_slow_or_lossy_path(
    #[case] id: &str,
    #[case] fault: FaultKind,
    #[case] sets: &[&str],
) {
    for x in run(id, fault, sets) {
        assert!(!x.detected, "a live peer was declared dead: {}", show(&x));
        assert!(
            matches!(x.verdict, Verdict::Pass | Verdict::Informational),
            "{}",
            show(&x)
        );
        if x.side == "client" {
            assert_eq!(
                x.verdict,
                Verdict::Pass,
                "the client's settings are sane for this path: {}",
                show(&x)
            );
        }
    }
}

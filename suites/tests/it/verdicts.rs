//! Every verdict can fail: for each protocol a real run is judged against
//! its window shifted 50 ms later (the test-only `Ctx::shift_window_ms`),
//! and the result that would pass against the computed window fails. The
//! same observation, judged against the unshifted window, passes: the
//! budget (≤ 25 ms here) is what separates them, not a tolerance.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::judge::{judge, Observation};
use kaspec_harness::report::CaseResult;
use rstest::rstest;

use crate::common::*;

pub const SHIFT_MS: i64 = 50;

/// The same observation, judged against the window the run computed.
pub fn unshifted(r: &CaseResult) -> Verdict {
    unshifted_by(r, SHIFT_MS)
}

/// [`unshifted`] for a window shifted by `shift` ms (negative: earlier).
pub fn unshifted_by(r: &CaseResult, shift: i64) -> Verdict {
    // The window moved back, its gap too; its requirements were judged
    // with the run's facts already.
    let mut exp = r.expected.clone().shifted(-shift);
    exp.requirements.clear();
    let obs = Observation {
        detection_ms: r.detection_ms.map(|d| d as i64),
        deadline_ms: r.deadline_ms,
        budget: r.budget,
        ..Default::default()
    };
    judge(&exp, &obs).unwrap().verdict
}

#[rstest]
// Per protocol a case whose window is narrow (a point, or a few ms): a TCP
// keep-alive window is as wide as the timer wheel's rounding (its phase is
// not observable), so TCP and PostgreSQL show it with a case whose window is
// not (data sent into a reset path; idle_session_timeout).
#[case::tcp("tcp/rfc5482-3/1", FaultKind::Reset, &["tcp.user_timeout=1500ms"])]
#[case::mqtt("mqtt/3.1.1-3.1.2.10/1", FaultKind::Blackhole, &["mqtt.keep_alive=2s"])]
#[case::websocket("websocket/rfc6455-5.5.2/2", FaultKind::Blackhole, &[])]
#[case::grpc("grpc/a8-keepalive/1", FaultKind::Blackhole, &[])]
#[case::postgres("postgres/pg15-20.11-idle_session_timeout/1", FaultKind::None, &[])]
#[case::amqp("amqp/0-9-1-4.2.7/1", FaultKind::Blackhole, &[])]
#[case::redis("redis/redis-rs-response_timeout/1", FaultKind::Blackhole, &[])]
#[case::nats("nats/async-nats-ping_interval/1", FaultKind::Blackhole, &["nats.ping_interval=500ms"])]
#[case::ssh("ssh/openssh-ServerAliveInterval/1", FaultKind::Blackhole, &[])]
#[case::ssh_russh("ssh/russh-keepalive/1", FaultKind::Blackhole, &[])]
#[case::mariadb("mariadb/wait_timeout/1", FaultKind::None, &[])]
#[case::http("http/rfc5482-3/pooled", FaultKind::Blackhole, &["http.tcp_user_timeout=5s", "http.request_timeout=800ms"])]
fn a_window_shifted_by_50_ms_turns_the_clients_pass_into_a_fail(
    #[case] id: &str,
    #[case] fault: FaultKind,
    #[case] sets: &[&str],
) {
    let mut ctx = ctx(sets);
    ctx.shift_window_ms = SHIFT_MS;
    let results = run_in(&ctx, id, fault);
    // Every client result of the run (one per server measured).
    for r in results.iter().filter(|r| r.side == "client") {
        // The shift must exceed the budget for the verdict to turn (the
        // budget is measured; on this machine it is a few ms).
        assert!(
            (r.budget.total_ms() as i64) < SHIFT_MS,
            "budget at or over the shift: {}",
            show(r)
        );
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "shifted by {SHIFT_MS} ms: {}",
            show(r)
        );
        assert!(
            r.expected.formula.contains("shifted by +50 ms"),
            "{}",
            show(r)
        );
        assert_eq!(
            unshifted(r),
            Verdict::Pass,
            "the same observation against the computed window: {}",
            show(r)
        );
    }
}

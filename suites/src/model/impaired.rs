//! The impaired-path model: a live peer behind a slow or lossy path, seen
//! by a liveness check that waits a bounded time for an answer.

use std::time::Duration;

use kaspec_harness::expect::Expectation;

use super::ms_of;

/// Linux's minimum retransmission timeout (TCP_RTO_MIN).
pub const RTO_MIN: Duration = Duration::from_millis(200);

/// The expectation for a side whose liveness check waits `timeout` for an
/// answer (or for traffic) while the path is impaired but the peer is alive.
///
/// The check survives the path when `timeout` exceeds the longest round
/// trip (rtt + jitter) plus, on a lossy path, what two consecutive losses of
/// one segment cost TCP (RTO + 2 × RTO with RTO ≈ RTT + RTO_MIN): then a
/// detection is a false positive and fails. Otherwise a false detection is
/// what the configuration allows on this path: reported, not failed.
pub fn impaired_expectation(
    what: &str,
    timeout: Duration,
    imp: &kaspec_harness::fault::impair::Impairment,
    spec: &str,
) -> Expectation {
    let rtt = ms_of(imp.max_rtt());
    // Two losses of one segment: retransmitted after RTO ≈ RTT + RTO_MIN, then
    // after twice that (backoff): 3 × RTO more before the answer can come.
    let loss_cost = if imp.loss_percent > 0.0 {
        3 * (rtt + ms_of(RTO_MIN))
    } else {
        0
    };
    let need = rtt + loss_cost;
    let t = ms_of(timeout);
    let path = imp.describe();
    let needs = if loss_cost > 0 {
        format!("round trip {rtt} ms + two retransmissions of one segment 3 × (RTT + RTO_MIN) = {loss_cost} ms: {need} ms")
    } else {
        format!("the longest round trip {rtt} ms")
    };
    if t > need {
        Expectation::must_stay_up(
            format!("path: {path}; the peer is alive; {what} {t} ms > {needs}: no detection allowed (a detection is a false positive)"),
            spec,
        )
    } else {
        Expectation::either(
            format!("path: {path}; the peer is alive; {what} {t} ms ≤ {needs}: this configuration allows a false detection on this path"),
            spec,
        )
    }
}

/// How long a case watches a healthy connection on an impaired path.
pub fn impaired_watch_ms(
    longest_window: Duration,
    imp: &kaspec_harness::fault::impair::Impairment,
) -> u64 {
    (3 * ms_of(longest_window + imp.max_rtt())).max(5_000)
}

//! Both sides' windows: the client's from rumqttc's own algorithm (see the
//! folder's doc), the broker's from the spec sentence [MQTT-3.1.2-24].

use super::*;

/// Client-side expectation: `since_ping_ms` = t0 − the last PINGREQ.
pub fn client_expectation(k: Duration, fault: FaultKind, since_ping_ms: u64) -> Expectation {
    let k = ms_of(k);
    if k == 0 {
        return Expectation::not_detected(
            "Keep Alive 0: rumqttc never pings",
            "MQTT 3.1.1 §3.1.2.10",
        );
    }
    let spec = "MQTT 3.1.1 §3.1.2.10 + rumqttc keep-alive algorithm";
    if fault == FaultKind::Reset {
        return next_send_meets_rst(
            "the next PINGREQ (K after the last)",
            -(since_ping_ms as i64),
            k as i64,
            Before::Nothing,
            spec,
            Level::Must,
        );
    }
    let d = (2 * k).saturating_sub(since_ping_ms);
    // rumqttc's tick is a tokio timer: tokio rounds a deadline up to its
    // next 1 ms wheel tick ("Sleep operates at millisecond granularity"),
    // and t0 − last PINGREQ is read in whole ms (truncated): + up to 2 ms.
    Expectation::window(
        d,
        d + 2,
        format!("AwaitPingResp at the tick after the unanswered PINGREQ: 2K − (t0 − last PINGREQ) = 2×{k} − {since_ping_ms} = {d} ms (within (K, 2K]), + up to 2 ms (tokio's millisecond timer, the truncated anchor)"),
        spec,
        Level::Must,
    )
}

/// Server-side expectation. `last_heard_ms` is when the broker last received
/// a packet from the client, relative to t0 (negative: before the fault).
pub fn server_expectation(k: Duration, fault: FaultKind, last_heard_ms: i64) -> Expectation {
    let k = ms_of(k) as i64;
    if k == 0 {
        return Expectation::not_detected(
            "Keep Alive 0: the server has no keep-alive duty",
            "MQTT 3.1.1 §3.1.2.10",
        );
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the broker process is frozen", "MQTT 3.1.1 §3.1.2.10");
    }
    let why = if fault == FaultKind::BlackholeDown {
        "PINGREQs still reach the broker until the client gives up; the client's FIN then waits behind its \
         unacknowledged PINGREQ (cwnd 1 after an RTO), so the broker last hears the client's last PINGREQ"
    } else {
        "the broker last hears the client's last PINGREQ before the fault"
    };
    let lo = (last_heard_ms + k).max(0) as u64;
    let hi = (last_heard_ms + 3 * k / 2).max(0) as u64;
    Expectation::window(
        lo,
        hi,
        format!("{why}; disconnect after 1.5 × K of silence, not before K: last heard {last_heard_ms:+} ms + [{k}, {}] ms", 3 * k / 2),
        "MQTT 3.1.1 §3.1.2.10 [MQTT-3.1.2-24]",
        Level::Must,
    )
}

/// The busy client's expectation (case `BUSY`): `since_ping_ms` = t0 − the
/// last PINGREQ, `last_publish_ms` = the last PUBLISH sent before t0
/// (relative to t0, ≤ 0), publishes every `period`.
///
/// rumqttc pings "irrespective of network activity" (rumqttc 0.24
/// src/eventloop.rs:241, the keep-alive branch of `select`: the timer is
/// reset only when it fires), and only a PINGRESP clears `await_pingresp`
/// (src/state.rs:325; a PUBLISH received does not, src/state.rs:410 and
/// its test `outgoing_ping_handle_should_throw_errors_for_no_pingresp`).
/// So the traffic changes nothing under `blackhole`: the idle formula. Under
/// `reset` the first segment after the fault is the next PUBLISH, not the
/// next PINGREQ: the router answers it with RST and the read fails.
pub fn busy_client_expectation(
    k: Duration,
    fault: FaultKind,
    since_ping_ms: u64,
    last_publish_ms: i64,
    period: Duration,
) -> Expectation {
    if fault != FaultKind::Reset || k.is_zero() {
        return client_expectation(k, fault, since_ping_ms);
    }
    let next_ping = (ms_of(k) as i64 - since_ping_ms as i64).max(0);
    let last_segment = last_publish_ms.max(-(since_ping_ms as i64));
    crate::model::periodic::next_message_meets_rst(
        "PUBLISH",
        last_publish_ms,
        ms_of(period) as i64,
        last_segment,
        &format!("not the next PINGREQ, {next_ping} ms after the fault"),
        "MQTT 3.1.1 §3.1.2.10 + rumqttc keep-alive algorithm, RFC 9293 §3.5.3",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_window_is_two_periods_after_the_last_ping() {
        let e = client_expectation(Duration::from_secs(2), FaultKind::Blackhole, 1000);
        assert_eq!((e.min_ms, e.max_ms), (Some(3000), Some(3002)));
        let r = client_expectation(Duration::from_secs(2), FaultKind::Reset, 1000);
        assert_eq!(r.max_ms, Some(1000));
        assert!(!client_expectation(Duration::ZERO, FaultKind::Blackhole, 0).expects_detection());
    }

    #[test]
    fn busy_client_meets_the_rst_at_its_next_publish_and_pings_as_idle() {
        let k = Duration::from_secs(2);
        let p = Duration::from_millis(100);
        let r = busy_client_expectation(k, FaultKind::Reset, 1000, -50, p);
        assert_eq!(r.min_ms, Some(0));
        // Nagle may hold it behind the last PUBLISH until its tail-loss probe.
        let held = 150 + crate::model::linux::jiffy_ms() + 2;
        assert_eq!(r.max_ms, Some(held));
        let b = busy_client_expectation(k, FaultKind::Blackhole, 1000, -50, p);
        assert_eq!((b.min_ms, b.max_ms), (Some(3000), Some(3002)));
    }

    #[test]
    fn server_window_is_one_and_a_half_keep_alives_of_silence() {
        let e = server_expectation(Duration::from_secs(4), FaultKind::Blackhole, -2000);
        assert_eq!((e.min_ms, e.max_ms), (Some(2000), Some(4000)));
        assert_eq!(e.level, Level::Must);
        // One-way: the broker still heard a PINGREQ 2 s after the fault.
        let down = server_expectation(Duration::from_secs(4), FaultKind::BlackholeDown, 2000);
        assert_eq!(
            (down.min_ms, down.max_ms, down.level),
            (Some(6000), Some(8000), Level::Must)
        );
    }
}

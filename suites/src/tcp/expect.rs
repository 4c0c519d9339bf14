//! Both sides' windows for the TCP cases, from the configuration and what
//! the run observed (idle time before the fault, the send, the retransmission state).

use super::*;

/// Client-side expectation for the idle cases, from the configuration and the
/// measured idle time before the fault (`idle_ms` = t0 − last segment received).
pub(crate) fn idle_expectation(
    t: &TcpConfig,
    fault: FaultKind,
    idle_ms: u64,
    spec: &str,
) -> Expectation {
    if !t.keepalive {
        return Expectation::not_detected(
            "keep-alive off: an idle connection is never probed",
            spec,
        );
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected(FROZEN_KERNEL_ANSWERS, spec);
    }
    match fault {
        FaultKind::Reset => rst_at_first_probe(t, idle_ms, ""),
        _ => {
            let death = keepalive_death(t);
            let d = death.ms.saturating_sub(idle_ms);
            Expectation::window(
                d,
                d + death.slack_ms,
                format!(
                    "{}, − idle before the fault {idle_ms} ms = {d} ms, + up to {} ms timer-wheel rounding ({})",
                    death.formula,
                    death.slack_ms,
                    linux::hz_text()
                ),
                spec,
                Level::Must,
            )
        }
    }
}

/// Server-side expectation: our echo server enables no keep-alive and has
/// nothing to send, so it learns only what reaches it from the client.
pub(crate) fn server_expectation_idle(
    t: &TcpConfig,
    fault: FaultKind,
    idle_ms: u64,
) -> Expectation {
    let spec = "RFC 1122 §4.2.3.6 (the server side has keep-alive off)";
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the server process is frozen", spec);
    }
    if fault == FaultKind::BlackholeDown && t.keepalive {
        // The client's stack aborts with an RST, and client->server still passes.
        let death = keepalive_death(t);
        let d = death.ms.saturating_sub(idle_ms);
        return Expectation::window(
            d,
            d + death.slack_ms,
            format!("the client's abort RST passes the one-way blackhole: {} − idle {idle_ms} = {d} ms (+ up to {} ms)", death.formula, death.slack_ms),
            spec,
            Level::Must,
        );
    }
    Expectation::not_detected(
        "server keep-alive off and nothing to send: the server never learns",
        spec,
    )
}

/// Both sides' expectations for a plan: `idle_ms` = t0 − last segment
/// received, `sent_ms` = when the client sent after t0.
pub(crate) fn expectations(
    plan: &Plan,
    case: &CaseDef,
    fault: FaultKind,
    idle_ms: u64,
    sent_ms: Option<u64>,
    retrans: Option<&linux::RetransState>,
) -> (Expectation, Expectation) {
    match plan.after {
        After::Idle => (
            idle_expectation(&plan.tcp, fault, idle_ms, case.spec),
            server_expectation_idle(&plan.tcp, fault, idle_ms),
        ),
        After::Send => (
            send_expectation(&plan.tcp, fault, sent_ms.unwrap_or(0), retrans),
            Expectation::not_detected(
                "the server has nothing in flight and keep-alive off: it never learns",
                "RFC 5482 §3",
            ),
        ),
    }
}

/// Half-open after a crash: probes go out at I, I + V, ... after the last
/// segment; the path returns at `heal_ms` after t0 to a host that forgot the
/// flow; the first probe after that is answered with RST.
pub fn half_open_expectation(t: &TcpConfig, idle_ms: u64, heal_ms: u64) -> Expectation {
    let (i, v) = (ms_of(t.idle), ms_of(t.interval));
    let since_last = heal_ms + idle_ms;
    let k = if since_last < i {
        0
    } else {
        (since_last - i) / v + 1
    };
    let probe = (i + k * v).saturating_sub(idle_ms);
    let death = keepalive_death(t);
    let spec = "RFC 9293 §3.5.2 (half-open connections), §3.5.3";
    if probe + idle_ms >= death.ms {
        return Expectation::not_detected(
            format!(
                "the keep-alive gives up ({}) before its next probe can meet the returned path",
                death.formula
            ),
            spec,
        );
    }
    let slack = linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0) + k * linux::wheel_slack_ms(v);
    Expectation::window(
        probe,
        probe + slack,
        format!(
            "the path returns at +{heal_ms} ms to a host that forgot the flow; probe {} after the last segment (I + {k}×V − idle = {i} + {k}×{v} − {idle_ms} = {probe} ms) is answered with RST (+ up to {slack} ms timer-wheel rounding); on a dead path it would have been {}",
            k + 1,
            death.formula
        ),
        spec,
        Level::Must,
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn keepalive_on_a_lossy_path_needs_two_probes_and_n_times_v() {
        use kaspec_harness::fault::impair::Impairment;
        let t = |n: u32| TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            count: n,
            user_timeout: Duration::ZERO,
        };
        let lossy = Impairment {
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_percent: 2.0,
            seed: 1,
        };
        assert_eq!(
            keepalive_on_impaired_path(&t(1), &lossy, "client", "s").level,
            Level::Info,
            "N = 1: one loss kills it"
        );
        assert_eq!(
            keepalive_on_impaired_path(&t(3), &lossy, "client", "s").level,
            Level::Must
        );
        let slow = Impairment {
            rtt: Duration::from_millis(2500),
            ..lossy
        };
        let slow = Impairment {
            loss_percent: 0.0,
            ..slow
        };
        // N × V = 3 s > 2.5 s: must stay up; N × V = 2 s: allowed to fail.
        assert_eq!(
            keepalive_on_impaired_path(&t(3), &slow, "client", "s").level,
            Level::Must
        );
        assert_eq!(
            keepalive_on_impaired_path(&t(2), &slow, "client", "s").level,
            Level::Info
        );
    }

    use super::*;

    fn tcp(i: u64, v: u64, n: u32, u_ms: u64) -> TcpConfig {
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(i),
            interval: Duration::from_secs(v),
            count: n,
            user_timeout: Duration::from_millis(u_ms),
        }
    }

    #[test]
    fn keepalive_window_is_idle_plus_count_intervals() {
        assert_eq!(keepalive_death(&tcp(2, 1, 3, 0)).ms, 5000);
        assert_eq!(keepalive_death(&tcp(7200, 75, 9, 0)).ms, 7_875_000);
        // Slack: one wheel rounding per timer, never zero, and well below a period.
        let d = keepalive_death(&tcp(2, 1, 3, 0));
        assert!(d.slack_ms > 0 && d.slack_ms < 1000, "{d:?}");
    }

    #[test]
    fn user_timeout_overrides_count_at_the_next_timer_firing() {
        // Firings at 2, 3, 4, 5 s after the last segment; U = 3.5 s -> 4 s.
        assert_eq!(keepalive_death(&tcp(2, 1, 9, 3500)).ms, 4000);
        // U shorter than I: the first probe must still go out, death at I + V.
        assert_eq!(keepalive_death(&tcp(5, 2, 9, 1000)).ms, 7000);
    }

    #[test]
    fn expectations_move_with_the_configuration() {
        let e = idle_expectation(&tcp(2, 1, 3, 0), FaultKind::Blackhole, 100, "s");
        let slack = keepalive_death(&tcp(2, 1, 3, 0)).slack_ms;
        assert_eq!((e.min_ms, e.max_ms), (Some(4900), Some(4900 + slack)));
        let r = idle_expectation(&tcp(2, 1, 3, 0), FaultKind::Reset, 100, "s");
        assert_eq!(r.min_ms, Some(1900));
        let off = idle_expectation(
            &TcpConfig {
                keepalive: false,
                ..tcp(2, 1, 3, 0)
            },
            FaultKind::Blackhole,
            0,
            "s",
        );
        assert!(!off.expects_detection());
        let state = linux::RetransState {
            rto_us: 204_000,
            srtt_us: 40,
            rto_min_us: 200_000,
            tlp: true,
        };
        // 3 + (min(80 µs + 200 ms, 204 ms) = 201 ms PTO + 204 ms RTO) + 2500.
        assert_eq!(
            send_expectation(&tcp(2, 1, 3, 2500), FaultKind::Blackhole, 3, Some(&state)).min_ms,
            Some(3 + 201 + 204 + 2500)
        );
        let no_tlp = linux::RetransState {
            tlp: false,
            ..state
        };
        assert_eq!(
            send_expectation(&tcp(2, 1, 3, 2500), FaultKind::Blackhole, 3, Some(&no_tlp)).min_ms,
            Some(3 + 204 + 2500)
        );
        assert!(
            !send_expectation(&tcp(2, 1, 3, 0), FaultKind::Blackhole, 3, None).expects_detection()
        );
    }
}

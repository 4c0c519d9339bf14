//! The windows: a server's idle close after its last response, the reuse
//! race's failure window, and a request on a dead pooled connection.

use super::*;

/// The dead-path case sends its request this long after the fault.
pub const REQUEST_AFTER_MS: u64 = 500;

/// When a server with idle timeout S closes, in ms after the anchor (the
/// client's last data received, TCP_INFO `last_data_recv`): S after the
/// server wrote its last response. The anchor is jiffy-grained (± one
/// jiffy J) and follows the server's write by the path's one-way time
/// (< 1 ms on the testbed's veths: − 1 ms); the servers' timers are
/// millisecond timers armed from a cached clock (nginx `ngx_add_timer` on
/// `ngx_current_msec`, HAProxy `tick_add(now_ms, …)`, tokio's wheel for
/// hyper): + up to 2 ms, and + 1 ms for the close to be written.
pub fn close_bounds(s_ms: u64) -> (u64, u64, String) {
    let j = linux::jiffy_ms();
    let (lo, hi) = (s_ms.saturating_sub(j + 1), s_ms + j + 3);
    (
        lo,
        hi,
        format!("S = {s_ms} ms after the last response, − J − 1 ms (jiffy-grained anchor J = {j} ms, the response's one-way time), + J + 3 ms (anchor, the server's ms timer from a cached clock, the close's write)"),
    )
}

/// One side's window for the server's idle close (the IDLE and GOAWAY cases).
pub fn close_expectation(s: &Running, who: &str, spec: &str) -> Expectation {
    let (lo, hi, f) = close_bounds(ms_of(s.idle_timeout));
    Expectation::window(
        lo,
        hi,
        format!(
            "{who}: {} {}: {f}",
            s.implementation.name,
            s.kind.idle_setting()
        ),
        spec,
        Level::Must,
    )
}

/// The reuse race's rule (RFC 9112 §9.5 and hyper-util's retry): with
/// pool_idle_timeout P at most S − rtt, hyper-util's pool expires the
/// connection before the server closes it and no request may fail; else a
/// request may fail only when it is written while the server's close is
/// under way, i.e. sent at an idle time inside the close's window
/// ([`close_bounds`]), and none outside it.
pub fn race_expectation(
    c: &HttpConfig,
    s_ms: u64,
    rtt_ms: u64,
    spec: &str,
) -> (Expectation, Option<(u64, u64)>) {
    let p = ms_of(c.pool_idle_timeout);
    if p != 0 && p + rtt_ms <= s_ms {
        return (
            Expectation::not_detected(
                format!("pool_idle_timeout P = {p} ms ≤ S − rtt = {s_ms} − {rtt_ms} ms: hyper-util's pool never hands out a connection the server may be closing; no request may fail"),
                spec,
            ),
            None,
        );
    }
    let (lo, hi, f) = close_bounds(s_ms);
    (
        Expectation::not_detected(
            format!("pool_idle_timeout P = {} ≥ S − rtt: a request may fail only when sent at an idle time in [{lo}, {hi}] ms ({f}); none outside it",
                if p == 0 { "never".to_string() } else { format!("{p} ms") }),
            spec,
        ),
        Some((lo, hi)),
    )
}

/// A request sent `sent_ms` after the fault on a pooled connection whose
/// path is dead: it fails at the earlier of reqwest's total timeout R
/// (a tokio timer: + up to 2 ms) and TCP_USER_TIMEOUT U counted from the
/// first unacknowledged retransmission ([`crate::model::tcp::send_expectation`],
/// with the options read back from the socket). TCP keep-alive does not
/// probe while data is unacknowledged (Linux tcp_keepalive_timer: `if
/// (tp->packets_out || !tcp_write_queue_empty(sk)) goto resched`).
pub fn dead_expectation(
    c: &HttpConfig,
    tcp: &TcpConfig,
    fault: FaultKind,
    sent_ms: u64,
    spec: &str,
) -> Expectation {
    if fault == FaultKind::Reset {
        return Expectation::window(
            sent_ms,
            sent_ms + 2,
            format!("the request at +{sent_ms} ms is answered by the router's RST: it fails at once (+ 2 ms: hyper's read, reqwest's error)"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    let user = crate::model::tcp::send_expectation(tcp, fault, sent_ms, None);
    let r = ms_of(c.request_timeout);
    if r == 0 {
        return user;
    }
    let (lo, hi) = (sent_ms + r, sent_ms + r + 2);
    if user.min_ms.is_some_and(|u| u < lo) {
        return user;
    }
    Expectation::window(
        lo,
        hi,
        format!("request sent at +{sent_ms} ms + reqwest's timeout R = {r} ms = {lo} ms, + up to 2 ms (tokio's ms timer, the instant's truncation){}",
            user.min_ms.map(|u| format!("; TCP_USER_TIMEOUT would end it at {u} ms")).unwrap_or_default()),
        spec,
        Level::Must,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: u64, r: u64, u: u64) -> HttpConfig {
        let mut c = HttpConfig::of(&crate::config::Config::new(knobs::KNOBS));
        c.pool_idle_timeout = Duration::from_millis(p);
        c.request_timeout = Duration::from_millis(r);
        c.tcp.user_timeout = Duration::from_millis(u);
        c
    }

    #[test]
    fn the_race_is_safe_only_below_s_minus_the_round_trip() {
        assert!(race_expectation(&cfg(900, 0, 0), 1000, 1, "s").1.is_none());
        let (_, w) = race_expectation(&cfg(1000, 0, 0), 1000, 1, "s");
        let (lo, hi) = w.unwrap();
        assert!(lo < 1000 && hi > 1000 && hi - lo < 20);
        assert!(
            race_expectation(&cfg(0, 0, 0), 1000, 1, "s").1.is_some(),
            "P = never"
        );
    }

    #[test]
    fn a_dead_pooled_request_ends_at_the_first_of_r_and_u() {
        let c = cfg(0, 800, 1500);
        let e = dead_expectation(&c, &c.tcp, FaultKind::Blackhole, 500, "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(1300), Some(1302)));
        let c = cfg(0, 5000, 1000);
        let e = dead_expectation(&c, &c.tcp, FaultKind::Blackhole, 500, "s");
        assert!(
            e.min_ms.unwrap() > 1500 && e.min_ms.unwrap() < 2000,
            "{e:?}"
        );
        let r = dead_expectation(&c, &c.tcp, FaultKind::Reset, 500, "s");
        assert_eq!((r.min_ms, r.max_ms), (Some(500), Some(502)));
        let n = cfg(0, 0, 0);
        assert!(!dead_expectation(&n, &n.tcp, FaultKind::Blackhole, 500, "s").expects_detection());
    }
}

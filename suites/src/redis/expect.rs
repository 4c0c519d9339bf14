//! The windows: redis-server's `timeout` from its own arithmetic
//! (timeout.c, server.c), its `tcp-keepalive` from Linux keep-alive with the
//! options it set ([`crate::model::tcp`]), and redis-rs's response timeout.

use super::*;

/// The PING of the response-timeout case goes out this long after the fault.
pub const COMMAND_AFTER_MS: u64 = 1000;

/// When redis-server frees a client whose last command it read at wall
/// clock `last_wall_ms` (ms since the epoch): (lo, hi, formula), in ms after
/// that command. None when `timeout` is 0.
///
/// Redis 7.0: `c->lastinteraction = server.unixtime` on the command's read
/// and its reply's write (networking.c) — whole seconds of the cached clock,
/// which serverCron refreshes every 1000/hz ms, so it is floor(wall − up to
/// one period). `clientsCronHandleTimeout` (timeout.c) frees the client
/// when `now_ms/1000 − lastinteraction > timeout`, i.e. at the first
/// clientsCron once the wall clock reaches lastinteraction + (T + 1) s;
/// clientsCron visits every client on each serverCron call (fewer than 5
/// clients), every 1000/hz ms.
pub fn timeout_close(s: &ServerSettings, last_wall_ms: u64) -> Option<(u64, u64, String)> {
    let t = s.timeout.as_secs();
    if t == 0 {
        return None;
    }
    let period = 1000 / s.hz.max(1);
    let li_min = last_wall_ms.saturating_sub(period) / 1000 * 1000;
    let li_max = last_wall_ms / 1000 * 1000;
    let lo = (li_min + (t + 1) * 1000).saturating_sub(last_wall_ms);
    let hi = (li_max + (t + 1) * 1000 + period).saturating_sub(last_wall_ms);
    let frac = last_wall_ms % 1000;
    Some((
        lo,
        hi,
        format!(
            "last command at wall second + {frac} ms; freed at the first clientsCron (every 1000/hz = {period} ms) with now/1000 − lastinteraction > T = {t} s, \
             lastinteraction = floor(wall − [0, {period}] ms): [{lo}, {hi}] ms after the command"
        ),
    ))
}

/// The `timeout` case's window for one side, after t0 (`since_ms` = t0 − the last command).
pub fn timeout_expectation(
    s: &ServerSettings,
    last_wall_ms: u64,
    since_ms: u64,
    who: &str,
    spec: &str,
) -> Expectation {
    match timeout_close(s, last_wall_ms) {
        None => Expectation::not_detected(
            format!("{who}: timeout 0: idle clients are never closed"),
            spec,
        ),
        Some((lo, hi, f)) => Expectation::window(
            lo.saturating_sub(since_ms),
            hi.saturating_sub(since_ms),
            format!("{who}: {f}; − {since_ms} ms from the command to t0"),
            spec,
            Level::Must,
        ),
    }
}

/// redis-rs's detection of a command on a dead path: the command goes out
/// at `sent_ms` after t0; without a reply it fails at the response timeout R
/// (a tokio timer: + up to 1 ms rounding, + 1 ms the instant's truncation);
/// an RST answers it at once.
pub fn response_expectation(
    response_timeout: Duration,
    fault: FaultKind,
    sent_ms: u64,
    spec: &str,
) -> Expectation {
    let r = ms_of(response_timeout);
    if fault == FaultKind::Reset {
        return Expectation::window(
            sent_ms,
            sent_ms + 1,
            format!("the PING at +{sent_ms} ms is answered by the router's RST: the driver's read fails at once (+ 1 ms)"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    if r == 0 {
        return Expectation::not_detected(
            "redis.response_timeout = 0 and no TCP keep-alive: the PING waits for its reply as long as the kernel retransmits (tcp_retries2, ~15 min)",
            spec,
        );
    }
    Expectation::window(
        sent_ms + r,
        sent_ms + r + 2,
        format!("PING sent at +{sent_ms} ms + response timeout R = {r} ms = {} ms, + up to 2 ms (tokio's millisecond timer, the instant's truncation)", sent_ms + r),
        spec,
        Level::Must,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(t: u64, hz: u64) -> ServerSettings {
        ServerSettings {
            timeout: Duration::from_secs(t),
            tcp_keepalive: Duration::ZERO,
            hz,
        }
    }

    #[test]
    fn timeout_counts_whole_seconds_and_the_cron_period() {
        // Half past a second: lastinteraction is that second; freed at the
        // first cron from second + T + 1.
        let (lo, hi, _) = timeout_close(&settings(1, 10), 10_500).unwrap();
        assert_eq!((lo, hi), (1500, 1600));
        let (lo, hi, _) = timeout_close(&settings(3, 10), 20_500).unwrap();
        assert_eq!((lo, hi), (3500, 3600));
        // Just past a second boundary the cached clock may still say the one before.
        let (lo, hi, _) = timeout_close(&settings(1, 10), 10_050).unwrap();
        assert_eq!((lo, hi), (950, 2050));
        // hz 100: a 10 ms cron period.
        let (lo, hi, _) = timeout_close(&settings(1, 100), 10_500).unwrap();
        assert_eq!((lo, hi), (1500, 1510));
        assert!(timeout_close(&settings(0, 10), 10_500).is_none());
        let e = timeout_expectation(&settings(1, 10), 10_500, 300, "server", "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(1200), Some(1300)));
        assert!(
            !timeout_expectation(&settings(0, 10), 10_500, 300, "server", "s").expects_detection()
        );
    }

    #[test]
    fn response_timeout_from_the_send() {
        let e = response_expectation(Duration::from_millis(500), FaultKind::Blackhole, 1000, "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(1500), Some(1502)));
        let r = response_expectation(Duration::from_millis(500), FaultKind::Reset, 1000, "s");
        assert_eq!((r.min_ms, r.max_ms), (Some(1000), Some(1001)));
        assert!(
            !response_expectation(Duration::ZERO, FaultKind::Blackhole, 1000, "s")
                .expects_detection()
        );
    }

    #[test]
    fn the_server_keepalive_window_is_linuxs_with_anets_options() {
        // tcp-keepalive 1: idle 1 s, interval max(1/3, 1) = 1 s, 3 probes: 4 s after the last segment.
        let k = settings(0, 10).with(&[("tcp-keepalive", 1)]).keepalive();
        let w = keepalive_window(&k, 300, None, FaultKind::Blackhole, "server", "s");
        assert_eq!(w.min_ms, Some(4000 - 300));
        let r = keepalive_window(&k, 300, None, FaultKind::Reset, "server", "s");
        assert_eq!(r.min_ms, Some(700));
    }
}

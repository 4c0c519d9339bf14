//! The client window of an external client, from the algorithm its adapter
//! declares, anchored on what the run observed: the last data its socket
//! received before the fault (TCP_INFO `last_data_recv` in the client
//! host, jiffy-counted: ±1 jiffy).

use std::time::Duration;

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::FaultKind;

use crate::config::adapter::{Algorithm, Expect};
use crate::config::TcpConfig;
use crate::model::linux::{self, jiffy_ms};
use crate::model::ms_of;

/// The client's window after the fault in force; `since_recv_ms` = t0 −
/// the last data the client received, `connected_ms` its `connected` line
/// (relative to t0, before it: negative), `line_lag_ms` how much earlier
/// than their arrival the lines' events may have been ([`LINE_LAG_MS`] +
/// the wake-up lateness measured as they arrived), `t0_mono_ms` t0 on
/// CLOCK_MONOTONIC (a whole-seconds clock's phase).
pub fn client_window(
    e: &Expect,
    fault: FaultKind,
    since_recv_ms: u64,
    connected_ms: Option<i64>,
    line_lag_ms: u64,
    t0_mono_ms: u64,
) -> Expectation {
    let spec = e.source.as_str();
    let j = jiffy_ms();
    // The anchor is jiffy-counted (±1 jiffy); the client's own timers are
    // at best millisecond-grained (+2 ms: a deadline rounded up to the next
    // tick, the truncated anchor).
    let grain = format!("± {j} ms (TCP_INFO's jiffy-counted anchor), + 2 ms (millisecond timers)");
    match (&e.algorithm, fault) {
        (Algorithm::None, _) => Expectation::either(
            "the adapter declares no detection algorithm: informational",
            spec,
        ),
        (Algorithm::PingTimeout { enabled: false, .. }, _) => Expectation::not_detected(
            "ping-timeout with enabled = false: it sends no ping on an idle connection, so nothing it sends meets the fault",
            spec,
        ),
        (_, f) if !matches!(f, FaultKind::Blackhole | FaultKind::Reset) => Expectation::either(
            format!("fault {f}: external clients are judged under blackhole and reset only"),
            spec,
        ),
        (
            Algorithm::PingTimeout {
                interval,
                timeout,
                poll,
                whole_seconds: true,
                ..
            },
            f,
        ) => seconds_clock(
            [ms_of(*interval), ms_of(*timeout), ms_of(*poll)],
            f,
            since_recv_ms,
            t0_mono_ms,
            spec,
        ),
        (
            Algorithm::PingTimeout {
                interval,
                timeout,
                poll,
                ..
            },
            f,
        ) => {
            // A ping once K has passed since it last heard the peer, given
            // up T after that ping. With a poll period P the timers are
            // checked by a loop that waits P at a time and wakes early on
            // arrivals, so its wake-ups are counted from the last data
            // received: the ping goes at ⌈K/P⌉·P, the check that gives up
            // ⌈T/P⌉·P later; each wait may overrun by up to 1 ms (the
            // interpreter's turn and the kernel's timer slack).
            let (k, t, p) = (ms_of(*interval), ms_of(*timeout), ms_of(*poll));
            let up = |x: u64| if p == 0 { x } else { x.div_ceil(p) * p };
            let (ping, give_up) = (up(k), up(t));
            // Each wait may end late by the kernel's poll slack (fs/select.c
            // select_estimate_accuracy: wait / 1000): with a loop of P,
            // that per wait; with exact timers (P = 0), per timer, K then
            // T (a 10 s timer may end 10 ms late), and 1 ms more each: a
            // millisecond-grained timer rounds its wait up (Python's
            // selectors: `math.ceil(timeout * 1e3) * 1e-3`).
            let slack = linux::poll_slack_ms;
            let rounds = match (p, f) {
                (0, FaultKind::Reset) => slack(k) + 1,
                (0, _) => slack(k) + slack(t) + 2,
                (_, FaultKind::Reset) => ping / p * slack(p),
                _ => (ping / p + give_up / p) * slack(p),
            };
            let (point, what) = if f == FaultKind::Reset {
                (
                    ping,
                    format!("the next ping meets the RST: ⌈K/P⌉·P = ⌈{k}/{p}⌉·{p} = {ping} ms"),
                )
            } else {
                (ping + give_up, format!("a ping at ⌈K/P⌉·P, given up ⌈T/P⌉·P after it: ⌈{k}/{p}⌉·{p} + ⌈{t}/{p}⌉·{p} = {ping} + {give_up} ms"))
            };
            // Anchored on a line (its own Pong): the event was up to
            // LINE_LAG_MS before the line's arrival, never after it.
            let (below, above, from, grain) = match &e.anchor_line {
                Some(l) => (line_lag_ms, 0, format!("its last `{l}` line"), format!("− up to {line_lag_ms} ms (the line arrives after the event: the pipe and the reader's wake-up, measured), + 2 ms (millisecond timers)")),
                None => (j, j, "the last data received".to_string(), grain),
            };
            let lo = point.saturating_sub(since_recv_ms + below);
            let hi = (point + rounds + above + 2).saturating_sub(since_recv_ms);
            Expectation::window(lo, hi, format!("{what} after {from}, − (t0 − it) {since_recv_ms} ms, + up to {rounds} ms (each wait's poll slack: wait / 1000, at least 1 ms; + 1 ms per exact timer), {grain}"), spec, Level::Must)
        }
        (Algorithm::Heartbeat { dead_after, poll }, FaultKind::Reset) => {
            let (d, p) = (ms_of(*dead_after), ms_of(*poll));
            Expectation::window(0, (d + p + j + 2).saturating_sub(since_recv_ms), format!("a heartbeat sent before D of silence meets the RST: by D − (t0 − last received) = {d} − {since_recv_ms} ms, + poll {p} ms, {grain}"), spec, Level::Must)
        }
        (Algorithm::Heartbeat { dead_after, poll }, _) => {
            let (d, p) = (ms_of(*dead_after), ms_of(*poll));
            let lo = d.saturating_sub(since_recv_ms + j);
            let hi = (d + p + j + 2).saturating_sub(since_recv_ms);
            Expectation::window(lo, hi, format!("dead after D without data: D − (t0 − last received) = {d} − {since_recv_ms} ms, + up to poll {p} ms, {grain}"), spec, Level::Must)
        }
        (Algorithm::CheckPeriod { period, send_every }, f) => {
            let Some(c) = connected_ms else {
                return Expectation::either("check-period: no `connected` line, so the checks' phase is unknown: informational", spec);
            };
            match (f, send_every) {
                (FaultKind::Reset, Some(s)) => next_send(ms_of(*s) as i64, c, line_lag_ms as i64, spec),
                _ => check_period(ms_of(*period) as i64, (c, line_lag_ms as i64), -(since_recv_ms as i64), f, spec),
            }
        }
        (
            Algorithm::TcpKeepalive {
                enabled,
                idle,
                interval,
                count,
                user_timeout,
            },
            f,
        ) => {
            let t = TcpConfig {
                keepalive: *enabled,
                idle: *idle,
                interval: *interval,
                count: *count,
                user_timeout: *user_timeout,
            };
            let mut e =
                crate::model::tcp::keepalive_window(&t, since_recv_ms, None, f, "client", spec);
            // The idle time is the jiffy-counted anchor's.
            if let (Some(lo), Some(hi)) = (e.min_ms, e.max_ms) {
                e.min_ms = Some(lo.saturating_sub(j));
                e.max_ms = Some(hi + j);
                e.formula = format!("{}, ± {j} ms (TCP_INFO's jiffy-counted idle)", e.formula);
            }
            e
        }
    }
}

/// A ping-timeout client whose deadlines are whole seconds of
/// CLOCK_MONOTONIC — libmosquitto 2.0.11: `mosquitto_time()` is
/// `tp.tv_sec` (lib/time_mosq.c:46-47); `mosquitto__check_keepalive`
/// pings when `now >= next_msg_out || now - last_msg_in >= keepalive`
/// and, a ping unanswered (`ping_t` set), closes at the same test
/// (lib/util_mosq.c:94-109), after setting `next_msg_out = now +
/// keepalive` at the ping (l. 103); it runs after every `pselect()` of
/// `mosquitto_loop`, whose timeout is `poll` (1000 ms for loop_forever's
/// -1, lib/loop.c:111-119) and which an arriving packet ends early.
/// So from the last data received, at x on CLOCK_MONOTONIC, the checks run
/// at x + n·P (+ up to 1 ms per wait): the ping at the first whose second
/// is at least the previous ping's second + K (that ping left just before
/// x: its answer is x), the close (blackhole) at the first whose second
/// is at least the ping's + T; under reset the ping meets the RST. Where x
/// lies within its grain (± 1 jiffy: TCP_INFO's anchor) and each wait's
/// overrun (0 or 1 ms) and the previous ping's lead on x (0–2 ms: the
/// round trip) change the seconds a check falls in, every such case is in
/// the window: `[k, t, p]` in ms.
fn seconds_clock(
    [k, t, p]: [u64; 3],
    fault: FaultKind,
    since_recv_ms: u64,
    t0_mono_ms: u64,
    spec: &str,
) -> Expectation {
    let j = jiffy_ms();
    let p = p.max(1);
    let x_obs = t0_mono_ms.saturating_sub(since_recv_ms);
    let sec = |ms: u64| ms / 1000;
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    let mut cases = 0;
    for x in x_obs.saturating_sub(j)..=x_obs + j {
        for over in [0, 1] {
            for lead in [0, 2] {
                let check = |n: u64| x + n * (p + over);
                let first_at = |from: u64, second: u64| {
                    (from + 1..from + 1 + 4 * (k + t) / p + 8).find(|n| sec(check(*n)) >= second)
                };
                let Some(ping) = first_at(0, sec(x.saturating_sub(lead)) + k / 1000) else {
                    continue;
                };
                let end = if fault == FaultKind::Reset {
                    Some(ping)
                } else {
                    first_at(ping, sec(check(ping)) + t / 1000)
                };
                if let Some(n) = end {
                    let at = check(n).saturating_sub(t0_mono_ms);
                    lo = lo.min(at);
                    hi = hi.max(at);
                    cases += 1;
                }
            }
        }
    }
    if cases == 0 {
        return Expectation::either("whole-seconds clock: no check reaches the deadline", spec);
    }
    let what = if fault == FaultKind::Reset {
        "the ping (the first check in the second ≥ the previous ping's + K) meets the RST"
    } else {
        "a ping at the first check in the second ≥ the previous ping's + K, the close at the first check in the second ≥ the ping's + T"
    };
    Expectation::window(
        lo,
        hi + 2,
        format!("whole seconds of CLOCK_MONOTONIC, K = {k} ms, T = {t} ms, checks every P = {p} ms from the last data received (t0 − {since_recv_ms} ms, at {x_obs} ms on CLOCK_MONOTONIC, ± {j} ms: TCP_INFO's jiffy-counted anchor): {what}; + 0–1 ms per wait and a 0–2 ms round trip before the anchor, every case counted; + 2 ms (millisecond timers)"),
        spec,
        Level::Must,
    )
}

/// A check every `p` ms from `c` (its `connected` line, ms from t0) that
/// gives up when the whole period before it received nothing; `a` = the
/// last data received (ms from t0). It gives up at the check after the
/// first check at or after `a`. Which side of a check `a` falls is not
/// observable within the anchors' grain (1 jiffy for `a`, 2 ms for the
/// line's arrival): a check that close gives either. The checks re-arm
/// after they run (a chain of timers): + 1 ms of drift per period.
fn check_period(p: i64, (c, lag): (i64, i64), a: i64, fault: FaultKind, spec: &str) -> Expectation {
    if p <= 0 {
        return Expectation::either("check-period 0: no checks", spec);
    }
    let slack = jiffy_ms() as i64 + 2;
    // The checks fall on c' + k·p, c' up to `lag` before the line's
    // arrival c: the first at or after `a` is at least first(a − slack) −
    // lag, at most first(a + slack + lag).
    let first = |x: i64| crate::model::periodic::first_after(c, p, x);
    let (lo_tick, hi_tick) = (first(a - slack), first(a + slack + lag));
    let drift = |tick: i64| (tick + p - c) / p;
    let reset = if fault == FaultKind::Reset {
        " (under reset too: a heartbeat that meets the RST may end it sooner, so from 0)"
    } else {
        ""
    };
    // That check's give-up or the next one's, nothing between (under
    // reset, anything from 0).
    let ms = |v: i64| v.max(0) as u64;
    let part = |tick: i64| (ms(tick + p - lag), ms(tick + p + drift(tick)));
    let (first_part, second_part) = if fault == FaultKind::Reset {
        ((0, 0), (0, ms(hi_tick + p + drift(hi_tick))))
    } else {
        (part(lo_tick), part(hi_tick))
    };
    Expectation::one_of(
        first_part,
        second_part,
        format!("checks every P = {p} ms from the `connected` line at {c:+} ms (− up to {lag} ms: the line's lag, measured); last data received at {a:+} ms; the first check at or after it at {lo_tick:+}{} ms, given up at the next: {}{} ms, + {} ms (the re-armed timer's drift){reset}",
            if hi_tick != lo_tick { format!(" or {hi_tick:+} (within {slack} ms of a check: either)") } else { String::new() },
            lo_tick + p,
            if hi_tick != lo_tick { format!(" or {}", hi_tick + p) } else { String::new() },
            drift(hi_tick)),
        spec,
        Level::Must,
    )
}

/// Under reset, a heartbeat every `s` ms from `c` (the `connected` line, ms
/// from t0): the first after the fault meets the RST; one within the
/// line's grain (2 ms) of t0 may be either side of it; + 1 ms of drift per
/// re-armed timer.
fn next_send(s: i64, c: i64, lag: i64, spec: &str) -> Expectation {
    if s <= 0 {
        return Expectation::either("send_every 0: no heartbeats", spec);
    }
    // The sends fall on c' + k·s, c' up to `lag` before the line's arrival.
    let first = |x: i64| crate::model::periodic::first_after(c, s, x);
    let (lo, hi) = (first(-2), first(2 + lag));
    let drift = |at: i64| (at - c) / s;
    let part = |at: i64| ((at - lag).max(0) as u64, (at + drift(at)).max(0) as u64);
    // That heartbeat or the next, nothing between.
    Expectation::one_of(
        part(lo),
        part(hi),
        format!("a heartbeat every S = {s} ms from the `connected` line at {c:+} ms (− up to {lag} ms: the line's lag, measured): the first after the fault, at {lo:+} ms{}, meets the RST, + {} ms (the re-armed timer's drift)",
            if hi != lo { format!(" or {hi:+} (within 2 ms of it)") } else { String::new() },
            drift(hi)),
        spec,
        Level::Must,
    )
}

/// Under blackhole, a client that sets TCP_USER_TIMEOUT U on its socket
/// (`user_timeout`) and has data in flight after the fault — `in_flight` =
/// (unacknowledged segments, when it last sent data in ms from t0: its
/// TCP_INFO, read shortly after the fault, ± 1 jiffy), e.g. its answer to
/// data that arrived just before the fault, or data whose ACK the fault
/// dropped — is aborted by its kernel U after the first retransmission of
/// that data (`model::tcp::send_expectation`: Linux counts U from
/// `retrans_stamp`). When that comes before its own timers' window, it is
/// the window; when the two overlap, their union.
pub fn unacked_first(
    e: &Expect,
    fault: FaultKind,
    own: Expectation,
    in_flight: Option<(u32, i64)>,
) -> Expectation {
    let Algorithm::PingTimeout { user_timeout, .. } = &e.algorithm else {
        return own;
    };
    let Some((n, sent)) = in_flight.filter(|(n, _)| *n > 0) else {
        return own;
    };
    if fault != FaultKind::Blackhole || user_timeout.is_zero() {
        return own;
    }
    let tcp = TcpConfig {
        keepalive: false,
        idle: Duration::ZERO,
        interval: Duration::ZERO,
        count: 0,
        user_timeout: *user_timeout,
    };
    let k = crate::model::tcp::send_expectation(&tcp, fault, sent.max(0) as u64, None);
    let (Some(lo), Some(hi)) = (k.min_ms, k.max_ms) else {
        return own;
    };
    let (before, j) = (sent.min(0).unsigned_abs(), jiffy_ms());
    let (lo, hi) = (
        lo.saturating_sub(before + j),
        (hi + j).saturating_sub(before),
    );
    let why = format!("{n} segment(s) unacknowledged after the fault, its data last sent at {sent:+} ms (TCP_INFO, ± {j} ms): the kernel's TCP_USER_TIMEOUT aborts it: {}", k.formula);
    // Its own timers detect nothing (no ping): the kernel's abort alone.
    let (Some(own_lo), Some(own_hi)) = (own.min_ms, own.max_ms) else {
        return Expectation::window(lo, hi, why, e.source.as_str(), Level::Must);
    };
    if lo >= own_lo {
        return own;
    }
    if hi < own_lo {
        return Expectation::window(lo, hi, why, e.source.as_str(), Level::Must);
    }
    Expectation::window(
        lo,
        hi.max(own_hi),
        format!("{why}; or its own timers, whichever first: {}", own.formula),
        e.source.as_str(),
        Level::Must,
    )
}

/// When, after the fault, what a client has in flight is read for
/// [`unacked_first`]: late enough for its answer to data that arrived just
/// before the fault to have left, before its own next ping (at `offset`).
pub fn in_flight_read_after(offset: Duration) -> Duration {
    (offset / 2).min(Duration::from_millis(50))
}

/// Where, after the last data the client received, the fault goes so it
/// lands halfway through the client's quiet period.
pub fn fault_offset(e: &Expect) -> Duration {
    match &e.algorithm {
        Algorithm::PingTimeout { interval, .. } => *interval / 2,
        Algorithm::Heartbeat { dead_after, .. } => {
            (*dead_after / 4).min(Duration::from_millis(500))
        }
        Algorithm::CheckPeriod { .. } => Duration::from_millis(500),
        Algorithm::TcpKeepalive { .. } | Algorithm::None => Duration::from_millis(200),
    }
}

/// How late a line arrives after the event it reports: the program's write
/// to its stdout pipe and kaspec's reader thread waking (measured well
/// under 1 ms here; 2 ms allows a loaded 2-core machine).
pub const LINE_LAG_MS: u64 = 2;

/// How long the client is given to notice after the fault, when its
/// window does not say (informational): 10 s.
pub const UNDECLARED_WATCH_MS: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(k: u64, p: u64) -> Expect {
        Expect {
            algorithm: Algorithm::PingTimeout {
                interval: Duration::from_secs(k),
                timeout: Duration::from_secs(k),
                poll: Duration::from_millis(p),
                whole_seconds: false,
                user_timeout: Duration::ZERO,
                enabled: true,
            },
            source: "test".into(),
            anchor_line: None,
        }
    }

    #[test]
    fn ping_timeout_window_is_two_periods_after_the_last_data() {
        let j = jiffy_ms();
        let e = client_window(
            &ping(2, 1000),
            FaultKind::Blackhole,
            1000,
            None,
            LINE_LAG_MS,
            0,
        );
        assert_eq!((e.min_ms, e.max_ms), (Some(3000 - j), Some(3006 + j)));
        // K = T = 2 s checked every 1.5 s: the ping at 3 s, given up at 6 s.
        let odd = client_window(
            &ping(2, 1500),
            FaultKind::Blackhole,
            1000,
            None,
            LINE_LAG_MS,
            0,
        );
        assert_eq!(odd.min_ms, Some(5000 - j));
        // Exact timers: the 2 s timer's poll slack, 2 ms, and its ms rounding.
        let r = client_window(&ping(2, 0), FaultKind::Reset, 1000, None, LINE_LAG_MS, 0);
        assert_eq!((r.min_ms, r.max_ms), (Some(1000 - j), Some(1005 + j)));
        let r = client_window(&ping(2, 1000), FaultKind::Reset, 1000, None, LINE_LAG_MS, 0);
        assert_eq!((r.min_ms, r.max_ms), (Some(1000 - j), Some(1004 + j)));
        let mut off = ping(2, 1000);
        if let Algorithm::PingTimeout { enabled, .. } = &mut off.algorithm {
            *enabled = false;
        }
        assert!(
            !client_window(&off, FaultKind::Blackhole, 1000, None, LINE_LAG_MS, 0)
                .expects_detection()
        );
        let none = Expect {
            algorithm: Algorithm::None,
            source: "x".into(),
            anchor_line: None,
        };
        assert!(
            !client_window(&none, FaultKind::Blackhole, 0, None, LINE_LAG_MS, 0)
                .expects_detection()
        );
    }

    #[test]
    fn data_in_flight_under_a_user_timeout_is_aborted_by_the_kernel_first() {
        let j = jiffy_ms();
        let mut e = ping(1, 0);
        let own = client_window(&e, FaultKind::Blackhole, 0, None, LINE_LAG_MS, 0);
        // No TCP_USER_TIMEOUT declared, nothing in flight: its own timers.
        assert_eq!(
            unacked_first(&e, FaultKind::Blackhole, own.clone(), Some((1, 0))),
            own
        );
        if let Algorithm::PingTimeout { user_timeout, .. } = &mut e.algorithm {
            *user_timeout = Duration::from_secs(1);
        }
        assert_eq!(
            unacked_first(&e, FaultKind::Blackhole, own.clone(), Some((0, 0))),
            own
        );
        assert_eq!(
            unacked_first(&e, FaultKind::Reset, own.clone(), Some((1, 0))),
            own
        );
        // Its answer sent 2 ms after the fault: 2 + 200 (PTO) + 200 (RTO)
        // + 1000 ms, before the watchdog at 2000 ms.
        let k = unacked_first(&e, FaultKind::Blackhole, own.clone(), Some((1, 2)));
        assert_eq!(k.min_ms, Some(1402 - j));
        assert!(k.max_ms.unwrap() < own.min_ms.unwrap(), "{k:?}");
        // Sent 3 ms before it: the same, 3 ms earlier.
        let b = unacked_first(&e, FaultKind::Blackhole, own, Some((1, -3)));
        assert_eq!(b.min_ms, Some(1397 - j));
    }

    #[test]
    fn a_whole_seconds_clock_moves_the_ping_to_its_second() {
        let j = jiffy_ms();
        let mut e = ping(2, 1000);
        if let Algorithm::PingTimeout { whole_seconds, .. } = &mut e.algorithm {
            *whole_seconds = true;
        }
        // Last data at 100.300 s, the fault 1 s later: the ping at 102.300,
        // the close at 104.300 (3000 ms after t0), + 0–1 ms per wait.
        let w = client_window(&e, FaultKind::Blackhole, 1000, None, LINE_LAG_MS, 101_300);
        assert_eq!((w.min_ms, w.max_ms), (Some(3000 - j), Some(3004 + j + 2)));
        // Reset: the ping meets the RST at 102.300.
        let r = client_window(&e, FaultKind::Reset, 1000, None, LINE_LAG_MS, 101_300);
        assert_eq!((r.min_ms, r.max_ms), (Some(1000 - j), Some(1002 + j + 2)));
        // Last data at 100.999 s (± 1 jiffy): an anchor at 101.000 after a
        // ping sent in second 100 pings at the first check, 102.000, and
        // closes at 104.000: 2001 ms after t0, a whole second early.
        let w = client_window(&e, FaultKind::Blackhole, 1000, None, LINE_LAG_MS, 101_999);
        assert_eq!(w.min_ms, Some(2001));
        assert!(w.max_ms.unwrap() >= 3000, "{w:?}");
    }

    #[test]
    fn check_period_gives_up_one_period_after_the_first_check_past_the_last_data() {
        let e = Expect {
            algorithm: Algorithm::CheckPeriod {
                period: Duration::from_secs(7),
                send_every: Some(Duration::from_secs(1)),
            },
            source: "test".into(),
            anchor_line: None,
        };
        // Checks at −5000 + 7000 n: at 2000 (the first after −800), given
        // up at 9000 (− the line's lag, + the drift of two re-armed timers).
        let w = client_window(&e, FaultKind::Blackhole, 800, Some(-5000), LINE_LAG_MS, 0);
        assert_eq!((w.min_ms, w.max_ms), (Some(8998), Some(9002)));
        // A line that came 10 ms late (a loaded machine, measured): 10 ms earlier.
        let late = client_window(&e, FaultKind::Blackhole, 800, Some(-5000), 10, 0);
        assert_eq!((late.min_ms, late.max_ms), (Some(8990), Some(9002)));
        // Last data 1 ms before a check: that check or the next.
        let w = client_window(
            &e,
            FaultKind::Blackhole,
            3001,
            Some(-10_000),
            LINE_LAG_MS,
            0,
        );
        assert_eq!((w.min_ms, w.max_ms), (Some(3998), Some(11_003)));
        assert_eq!(
            w.gap,
            Some((4002, 10_998)),
            "that check's give-up or the next's"
        );
        assert!(
            !client_window(&e, FaultKind::Blackhole, 800, None, LINE_LAG_MS, 0).expects_detection()
        );
        // Reset: the next heartbeat (every second from −1501) at 499.
        let r = client_window(&e, FaultKind::Reset, 800, Some(-1501), LINE_LAG_MS, 0);
        assert_eq!((r.min_ms, r.max_ms), (Some(497), Some(501)));
    }
}

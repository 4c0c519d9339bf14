//! A side that sends on a period (a heartbeat, a PINGREQ, a Ping): under
//! `reset` it learns at the first segment it sends after the fault, which the
//! router answers with RST (RFC 9293 §3.5.3) — at the latest its next
//! periodic send.

use kaspec_harness::expect::{Expectation, Level};

/// The first `anchor + k × period` strictly after `x` (any whole k: the
/// anchor is itself a send).
pub fn first_after(anchor: i64, period: i64, x: i64) -> i64 {
    anchor + ((x - anchor).div_euclid(period) + 1) * period
}

/// When to let the path fail, at least `min_ms` after `now_ms`, so that it
/// falls as far as possible from every periodic send of peers whose timers
/// all started at `origin` (ms; a send every `periods[i]` after it): a send
/// within the fault's commit interval may or may not pass, which would make
/// the anchor of the peer's window ambiguous. Searched over one period of
/// the shortest timer (no later than that), 1 ms steps.
pub fn quiet_moment(origin_ms: i64, periods: &[i64], now_ms: i64, min_ms: i64) -> i64 {
    let from = now_ms + min_ms;
    let span = periods
        .iter()
        .copied()
        .filter(|p| *p > 0)
        .min()
        .unwrap_or(1);
    let gap = |x: i64| {
        periods
            .iter()
            .filter(|p| **p > 0)
            .map(|p| {
                let r = (x - origin_ms).rem_euclid(*p);
                r.min(p - r)
            })
            .min()
            .unwrap_or(i64::MAX)
    };
    (from..from + span)
        .max_by_key(|x| (gap(*x), -x))
        .unwrap_or(from)
}

/// What may meet the RST before the next periodic send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Before {
    /// Nothing: the side sends nothing else (the window is a point).
    Nothing,
    /// A delayed ACK or a retransmission of a frame sent just before the
    /// fault may come first (the window starts at 0).
    AckOrRetransmission,
}

/// Under `reset`: `who`'s next send, every `period` ms after its last at
/// `last_send` ms (relative to the fault, ≤ 0), meets the RST.
pub fn next_send_meets_rst(
    who: &str,
    last_send: i64,
    period: i64,
    before: Before,
    spec: &str,
    level: Level,
) -> Expectation {
    let d = first_after(last_send, period, 0).max(0) as u64;
    let (lo, note) = match before {
        Before::Nothing => (d, String::new()),
        Before::AckOrRetransmission => (
            0,
            "; a delayed ACK or retransmission may come first".to_string(),
        ),
    };
    Expectation::window(
        lo,
        d,
        format!("the first segment it sends is answered by RST: {who}, every {period} ms after its last at {last_send:+} ms, at {d} ms{note}"),
        spec,
        level,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quiet_moment_is_furthest_from_every_tick() {
        // Ticks at 1000, 2000, … and 1500, 3000, …: 250 ms from both at 1250.
        assert_eq!(quiet_moment(0, &[1000, 1500], 900, 20), 1250);
        // One timer: halfway between its ticks.
        assert_eq!(quiet_moment(0, &[500], 2010, 20), 2250);
    }

    #[test]
    fn the_next_send_after_the_fault() {
        assert_eq!(first_after(-300, 1000, 0), 700);
        assert_eq!(
            first_after(-1000, 1000, 0),
            1000,
            "a send exactly at the fault is before it"
        );
        assert_eq!(first_after(-2500, 1000, 0), 500);
        let e = next_send_meets_rst(
            "its next Ping",
            -300,
            1000,
            Before::AckOrRetransmission,
            "s",
            Level::Must,
        );
        assert_eq!((e.min_ms, e.max_ms), (Some(0), Some(700)));
        let e = next_send_meets_rst(
            "the next PINGREQ",
            -300,
            1000,
            Before::Nothing,
            "s",
            Level::Should,
        );
        assert_eq!(
            (e.min_ms, e.max_ms, e.level),
            (Some(700), Some(700), Level::Should)
        );
    }
}

/// Under `reset`, a busy application's next message (a tokio interval every
/// `period` ms, its last at `last_send` ms, ≤ 0) is the first segment it
/// sends after the fault, answered by RST (RFC 9293 §3.5.3), unless its
/// kernel's delayed ACK of the last message it read goes first (the window
/// starts at 0: Linux delays that ACK by an adaptive 40–200 ms, `ato`), or
/// unless Nagle's algorithm holds the message (no TCP_NODELAY) behind its
/// last segment (`last_segment` ms, ≤ 0) when the peer's ACK of that one
/// died at the router: the message then waits for that segment's tail-loss
/// probe (net/ipv4/tcp_output.c `tcp_schedule_loss_probe`: PTO = 2·srtt +
/// rto_min, 200 ms on this sub-millisecond path), + one jiffy of timer
/// rounding. `instead` says what an idle side would have sent first. The
/// message goes out by d + 1 ms (tokio's millisecond ticks), + 1 ms for the
/// read that meets the RST to wake.
pub fn next_message_meets_rst(
    what: &str,
    last_send: i64,
    period: i64,
    last_segment: i64,
    instead: &str,
    spec: &str,
) -> Expectation {
    let d = first_after(last_send, period, 0).max(0) as u64;
    let rto_min = crate::model::impaired::RTO_MIN.as_millis() as i64;
    let jiffy = crate::model::linux::jiffy_ms() as i64;
    let held = (last_segment + rto_min + jiffy + 2).max(0) as u64;
    Expectation::window(
        0,
        (d + 2).max(held),
        format!("the first segment it sends is answered by RST: the next {what} (every {period} ms, the last at {last_send:+} ms) at {d} ms, + 2 ms (tokio's millisecond ticks, the read's wake-up); before it the delayed ACK of the last message read; or, if the peer's ACK of its last segment ({last_segment:+} ms) died at the router, Nagle holds the {what} until that segment's tail-loss probe: {last_segment} + {rto_min} (PTO = 2·srtt + rto_min) + {jiffy} (a jiffy) + 2 = {held} ms; {instead}"),
        spec,
        Level::Must,
    )
}

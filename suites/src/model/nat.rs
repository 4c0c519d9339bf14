//! A NAT that forgets idle flows (RFC 5382 §5, REQ-5: a NAT's
//! established-TCP idle timeout; real ones use 30 s to a few minutes). The
//! router of a NAT testbed is a real masquerading NAT with a conntrack
//! timeout policy of N (`--network FILE`'s `nat_idle_timeout`, 4 s when no
//! network is given); a flow idle for N is forgotten and its later packets
//! are dropped, as a real NAT drops them.
//!
//! The rule users rely on: a keep-alive keeps the mapping only if its period
//! is below N. Below, the connection is still usable after an idle period of
//! several times N; at or above, it breaks — and each protocol's NAT case
//! measures how long until each side notices. t0 (the fault in force) is the
//! mapping's expiry: N after the last packet of the flow.

use std::time::Duration;

use kaspec_harness::expect::{Expectation, Level};

use super::ms_of;
use crate::config::TcpConfig;
use crate::ctx::Ctx;

/// How close (ms) a keep-alive period and N may be before the race between
/// the keep-alive and the mapping's expiry is reported, not judged: the NAT's
/// timeout is kept in jiffies and checked when a packet arrives, and the
/// keep-alive timers run a little late and drift by a few ms per period.
pub const NAT_RACE_MS: u64 = 100;

/// The expectation when `period` (what refreshes the mapping) is within
/// [`NAT_RACE_MS`] of N: either outcome can happen.
pub fn nat_race(what: &str, period: Duration, nat: Duration, spec: &str) -> Option<Expectation> {
    let (p, n) = (ms_of(period), ms_of(nat));
    (p.abs_diff(n) <= NAT_RACE_MS).then(|| {
        Expectation::either(
            format!("{what} = {p} ms is within {NAT_RACE_MS} ms of N = {n} ms: it races the mapping's expiry; either outcome can happen"),
            spec,
        )
    })
}

/// The NAT idle timeout when no network profile gives one.
pub const DEFAULT_NAT_IDLE: Duration = Duration::from_secs(4);
/// The NAT cases' spec reference.
pub const SPEC: &str = "RFC 5382 §5 (REQ-5: NAT idle timeout for established TCP)";

/// The NAT idle timeout of this run.
pub fn nat_idle(ctx: &Ctx) -> Duration {
    ctx.network.nat_idle_timeout.unwrap_or(DEFAULT_NAT_IDLE)
}

/// Whether TCP keep-alive keeps the mapping: a probe goes out every I of
/// idleness and its answer refreshes the mapping, so only I < N holds it.
pub fn tcp_kept(t: &TcpConfig, nat: Duration) -> bool {
    t.keepalive && t.idle < nat
}

/// The client's expectation, detection counted from the mapping's expiry.
pub fn tcp_client_expectation(t: &TcpConfig, nat: Duration) -> Expectation {
    let n = ms_of(nat);
    if let Some(race) = t
        .keepalive
        .then(|| nat_race("tcp.idle", t.idle, nat, SPEC))
        .flatten()
    {
        return race;
    }
    if tcp_kept(t, nat) {
        return Expectation::must_stay_up(
            format!("keep-alive every I = {} ms < N = {n} ms refreshes the mapping: the connection is usable after 3 × N of idleness", ms_of(t.idle)),
            SPEC,
        );
    }
    if !t.keepalive {
        return Expectation::not_detected(
            format!("keep-alive off: the mapping is forgotten after N = {n} ms and nothing notices; data sent later is dropped"),
            SPEC,
        );
    }
    let death = super::tcp::keepalive_death(t);
    let d = death.ms.saturating_sub(n);
    Expectation::window(
        d,
        d + death.slack_ms,
        format!(
            "I = {} ms ≥ N = {n} ms: the first probe meets the forgotten mapping and is dropped; dead at {} after the last segment, − N = {d} ms (+ up to {} ms timer-wheel rounding)",
            ms_of(t.idle),
            death.formula,
            death.slack_ms
        ),
        SPEC,
        Level::Must,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(i: u64, v: u64, n: u32) -> TcpConfig {
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(i),
            interval: Duration::from_secs(v),
            count: n,
            user_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn the_threshold_is_the_keepalive_period_against_the_nat_timeout() {
        let nat = Duration::from_secs(4);
        assert!(tcp_kept(&tcp(2, 1, 3), nat));
        assert!(!tcp_kept(&tcp(4, 1, 3), nat));
        assert_eq!(
            tcp_client_expectation(&tcp(2, 1, 3), nat).level,
            Level::Must
        );
        assert!(!tcp_client_expectation(&tcp(2, 1, 3), nat).expects_detection());
        // I = 5 s ≥ N: dead at 5 + 2×1 = 7 s after the last segment, 3 s after the expiry.
        assert_eq!(
            tcp_client_expectation(&tcp(5, 1, 2), nat).min_ms,
            Some(3000)
        );
        // A period equal to N races the expiry: reported, not judged.
        let race = tcp_client_expectation(&tcp(4, 1, 3), nat);
        assert!(
            !race.expects_detection() && race.level == Level::Info,
            "{race:?}"
        );
    }
}

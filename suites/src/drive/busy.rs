//! The busy connection's workload (issue 18 item 4): the client application
//! sends a message every period and reads each one back (MQTT's publish
//! through its own subscription, WebSocket's echoed text, AMQP's consumed
//! publish), bounded in count and so in time.

use std::time::{Duration, Instant};

/// The busy cases' message period.
pub const ECHO_PERIOD: Duration = Duration::from_millis(100);

/// At most `count` messages, one every `period` (the first at once).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub period: Duration,
    pub count: u32,
}

impl Workload {
    /// A message every [`ECHO_PERIOD`], no more than `budget` (the case's
    /// longest run) has periods.
    pub fn within(budget: Duration) -> Workload {
        Workload {
            period: ECHO_PERIOD,
            count: (budget.as_millis() / ECHO_PERIOD.as_millis()) as u32,
        }
    }

    /// As [`within`](Self::within), with a period of 100 to 149 ms chosen
    /// so that a timer restarted by each message (lapin's heartbeat wakes
    /// H/2 after its last write) falls as far as possible from the next
    /// message: with 100 ms and H/2 = 1 s it would wake in the same
    /// millisecond as a message, and which of the two came first is not
    /// observable.
    pub fn off_timer(budget: Duration, timer: Duration) -> Workload {
        let t = timer.as_millis() as u64;
        let period = (100..150u64)
            .max_by_key(|p| {
                let r = t % p;
                (r.min(p - r), u64::MAX - p)
            })
            .unwrap_or(100);
        let period = Duration::from_millis(period);
        Workload {
            period,
            count: (budget.as_millis() / period.as_millis()) as u32,
        }
    }

    /// A tokio interval of this workload from `origin`: message i is due at
    /// origin + i × period. Call inside a runtime.
    pub fn ticker(&self, origin: Instant) -> tokio::time::Interval {
        tokio::time::interval_at(origin.into(), self.period)
    }
}

/// When to let the path fail: the first instant at or after `near` halfway
/// between two messages of a workload started at `origin` (no message is in
/// flight when the rule commits).
pub fn between_messages(origin: Instant, period: Duration, near: Instant) -> Instant {
    let p = period.as_micros() as i64;
    let since = near.saturating_duration_since(origin).as_micros() as i64;
    let k = (since - p / 2 + p - 1).div_euclid(p).max(0);
    origin + Duration::from_micros((k * p + p / 2) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_restarted_by_each_message_lands_between_two() {
        let w = Workload::off_timer(Duration::from_secs(10), Duration::from_secs(1));
        let (p, t) = (w.period.as_millis() as u64, 1000u64);
        assert!((t % p).min(p - t % p) >= 40, "{p}");
        assert_eq!(w.count as u64, 10_000 / p);
    }

    #[test]
    fn the_fault_falls_halfway_between_two_messages_not_before_near() {
        let o = Instant::now();
        let p = Duration::from_millis(100);
        let ms = |t: Instant| (t - o).as_millis();
        assert_eq!(
            ms(between_messages(o, p, o + Duration::from_millis(10))),
            50
        );
        assert_eq!(
            ms(between_messages(o, p, o + Duration::from_millis(70))),
            150
        );
        assert_eq!(
            ms(between_messages(o, p, o + Duration::from_millis(150))),
            150
        );
    }
}

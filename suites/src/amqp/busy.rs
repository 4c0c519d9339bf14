//! The busy connection (case `BUSY`): lapin's heartbeat wakes follow its
//! publishes, and the broker's first heartbeat after its last delivery.

use super::*;

/// lapin's heartbeat wakes on a busy connection (case `BUSY`), in ms from
/// the fault: from a wake at `wake` (a heartbeat it wrote), each wake sleeps
/// until its last write + H/2 (lapin 4.12 src/heartbeat.rs:132-140:
/// `timeout.checked_sub(self.last_write.elapsed())`; every socket write
/// updates `last_write`, src/io_loop.rs:469), writing a heartbeat only when
/// nothing was written for H/2. `writes`: lapin's writes (the tap's, in
/// order). Returns the earliest and the latest first wake after `after`
/// (lapin's check, src/heartbeat.rs:122: nothing read for more than 2H):
/// a write or the threshold within [`PHASE_SLACK_MS`] of a wake branches.
pub(crate) fn busy_lapin_wake(wake: i64, writes: &[i64], h2: i64, after: i64) -> (i64, i64) {
    let mut chains = vec![wake];
    let mut found: Vec<i64> = Vec::new();
    for _ in 0..64 {
        let mut next = Vec::new();
        for w in chains {
            if w > after - PHASE_SLACK_MS {
                found.push(w);
                if w > after + PHASE_SLACK_MS {
                    continue;
                }
            }
            // The last write lapin had seen at this wake: either side of it
            // when one falls within the slack; its own heartbeat when it had
            // written nothing for H/2.
            let last = |lim: i64| writes.iter().copied().filter(|x| *x <= lim).next_back();
            for l in [last(w - PHASE_SLACK_MS), last(w + PHASE_SLACK_MS)] {
                let l = l.filter(|l| w - l < h2).unwrap_or(w);
                next.push(l + h2);
            }
        }
        next.sort_unstable();
        next.dedup();
        chains = next;
        if chains.is_empty() {
            break;
        }
    }
    (
        found.iter().copied().min().unwrap_or(after),
        found.iter().copied().max().unwrap_or(after),
    )
}

/// The busy client's window (case `BUSY`): `last_read` (ms from the fault),
/// lapin's wake `(lo, hi)` from [`busy_lapin_wake`], `last_write` its last
/// write before the fault; `period` the publishes'.
pub fn busy_client_expectation(
    h_s: u16,
    fault: FaultKind,
    last_read: i64,
    wake: (i64, i64),
    last_publish: i64,
    period: i64,
) -> Expectation {
    if h_s == 0 {
        return client_expectation(h_s, fault, last_read, last_publish);
    }
    let spec = "AMQP 0-9-1 §4.2.7 + lapin heartbeat algorithm";
    let h = h_s as i64 * 1000;
    if fault == FaultKind::Reset {
        return crate::model::periodic::next_message_meets_rst(
            "basic.publish",
            last_publish,
            period,
            last_publish,
            "not lapin's next heartbeat, which the traffic postpones",
            spec,
        );
    }
    let (lo, hi) = wake;
    // tokio rounds each sleep up to its next millisecond: + up to 2 ms.
    // That wake or the other, nothing between.
    let (lo, hi) = (lo.max(0), hi.max(0));
    Expectation::one_of(
        (lo as u64, lo as u64 + 2),
        (hi as u64, hi as u64 + 2),
        format!(
            "MissingHeartbeatError at lapin's first wake with nothing read for more than 2H: last read {last_read:+} ms + 2 × {h} ms = {} ms; \
             its wakes follow its writes (each H/2 = {} ms after the last write it saw: the publishes, every {period} ms, postpone them, and it writes no heartbeat), \
             replayed over the writes the tap saw: wake at {lo}{} ms, + up to 2 ms (tokio's millisecond sleeps)",
            last_read + 2 * h,
            h / 2,
            if hi != lo { format!(" or {hi} (a write or the threshold within {PHASE_SLACK_MS} ms of a wake)") } else { String::new() }
        ),
        spec,
        Level::Must,
    )
}

/// The broker under `reset` on a busy connection: its heartbeat sender
/// (every T/2, in phase with the receiver tick `tick`) sends a heartbeat
/// only at a wake with nothing sent since the previous one
/// (rabbit_heartbeat:heartbeater/3 compares send_oct), so the first after
/// its last delivery (`last_sent`, ms from the fault) is one wake later.
pub fn busy_server_reset(t_s: u16, tick: i64, last_sent: i64) -> Expectation {
    let spec = "AMQP 0-9-1 §4.2.7 + RabbitMQ rabbit_heartbeat";
    if t_s == 0 {
        return Expectation::not_detected(
            "heartbeat 0 negotiated: RabbitMQ sends no heartbeat",
            spec,
        );
    }
    let t2 = t_s as i64 * 500;
    let (lo, hi) = next_ticks(tick, t2, last_sent);
    let at = |w: i64| (w + t2).max(0) as u64;
    Expectation::one_of(
        (at(lo), at(lo)),
        (at(hi), at(hi)),
        format!(
            "the broker's first heartbeat after its last delivery ({last_sent:+} ms) meets the RST: its sender wakes every T/2 = {t2} ms (a receiver tick at {tick:+} ms) and sends at the second wake after it, the first with nothing sent since: {lo}{} + {t2} ms",
            if hi != lo { format!(" or {hi}") } else { String::new() }
        ),
        spec,
        Level::Must,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_lapin_wakes_follow_its_writes() {
        // Writes every 130 ms: each wake comes H/2 after the last write.
        let writes: Vec<i64> = (0..100).map(|i| i * 130 + 30).collect();
        // A wake at 0, H/2 = 1000: the last write seen is 940 → 1940 →
        // (1850) 2850 → (2800) 3800.
        assert_eq!(busy_lapin_wake(0, &writes, 1000, 2500), (2850, 2850));
        // Writes stop at 1980: the wake H/2 after it finds nothing newer,
        // writes a heartbeat and sleeps H/2.
        let few: Vec<i64> = writes.iter().copied().filter(|w| *w < 2000).collect();
        assert_eq!(busy_lapin_wake(0, &few, 1000, 3500), (3980, 3980));
        // A write within the slack of a wake: either.
        assert_eq!(busy_lapin_wake(0, &[1000], 1000, 1500), (2000, 2000));
        assert_eq!(busy_lapin_wake(0, &[998], 1000, 1500), (1998, 2000));
        let r = busy_server_reset(2, 0, -50);
        assert_eq!((r.min_ms, r.max_ms), (Some(1000), Some(1000)));
    }
}

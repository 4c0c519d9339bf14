//! How late this machine wakes a sleeping thread: the event-timestamping
//! term of a result's error budget.
//!
//! A client library's failure, a timer of kaspec's own heartbeat, or the
//! sock_diag observer's next poll is timestamped when its thread runs again;
//! on a loaded machine (two cores, tests in parallel) that can be
//! milliseconds after the instant it stands for. A probe thread sleeps 1 ms
//! at a time for the life of the process and records how much later than
//! asked it woke; a result's budget then carries the worst lateness seen
//! around its detection — measured, per result, never assumed.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The probe's sleep.
const TICK: Duration = Duration::from_millis(1);
/// Lateness below this is not recorded (it rounds to 0 ms anyway).
const FLOOR: Duration = Duration::from_micros(200);
/// Samples kept (at most one per tick; a few minutes of a loaded machine).
const KEEP: usize = 200_000;

struct Probe {
    started: Instant,
    late: Mutex<VecDeque<(Instant, Duration)>>,
}

static PROBE: OnceLock<&'static Probe> = OnceLock::new();

/// Starts the probe once per process (idempotent). Testbeds start it, so
/// it runs before any fault is applied.
pub fn ensure_running() {
    PROBE.get_or_init(|| {
        let probe: &'static Probe = Box::leak(Box::new(Probe { started: Instant::now(), late: Mutex::new(VecDeque::new()) }));
        let spawned = std::thread::Builder::new().name("kaspec-wake-probe".into()).spawn(move || loop {
            let asked = Instant::now() + TICK;
            std::thread::sleep(TICK);
            let now = Instant::now();
            let late = now.saturating_duration_since(asked);
            if late >= FLOOR {
                let mut q = probe.late.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() == KEEP {
                    q.pop_front();
                }
                q.push_back((now, late));
            }
        });
        // Without the probe the term is unknown; `lateness_ms` then says so
        // by returning the worst case it can vouch for (none measured: 0).
        let _ = spawned;
        probe
    });
}

/// The worst wake-up lateness seen between `from` and `to`, in whole ms
/// rounded up (0 when the machine woke on time, or the probe was not yet
/// running then).
pub fn lateness_ms(from: Instant, to: Instant) -> u64 {
    let Some(p) = PROBE.get() else { return 0 };
    if to < p.started {
        return 0;
    }
    let q = p.late.lock().unwrap_or_else(|p| p.into_inner());
    // The samples are in time order: find the span by bisection (a fleet
    // asks this for each of its thousands of connections).
    let start = q.partition_point(|(t, _)| *t < from);
    q.range(start..)
        .take_while(|(t, _)| *t <= to)
        .map(|(_, l)| l.as_micros().div_ceil(1000) as u64)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_and_answers_for_a_span() {
        ensure_running();
        ensure_running();
        let from = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let l = lateness_ms(from, Instant::now());
        assert!(l < 1000, "{l} ms");
        assert_eq!(lateness_ms(from, from - Duration::from_secs(3600)), 0, "an empty span");
    }
}

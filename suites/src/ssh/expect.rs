//! The windows, each from the implementation's own source, anchored on the
//! last data the detecting side read (sock_diag's `tcpi_last_data_recv`, a
//! jiffy of resolution) — OpenSSH's clocks are whole seconds of
//! CLOCK_BOOTTIME (misc.c `monotime()` returns `ts.tv_sec`), so the phase
//! of that clock at the last read is part of the formula.
//!
//! - ssh 9.2, clientloop.c: `client_process_net_input` →
//!   `schedule_server_alive_check`: `server_alive_time = monotime() +
//!   ServerAliveInterval`; `client_wait_until_can_do_something` polls until
//!   that absolute second (`ptimeout_deadline_monotime`) and then calls
//!   `server_alive_check`: `if (ssh_packet_inc_alive_timeouts(ssh) >
//!   options.server_alive_count_max) { logit("Timeout, server %s not
//!   responding."); cleanup_exit(255); }`, else sends keepalive@openssh.com
//!   and re-schedules from `monotime()`. Any packet read resets the count
//!   (packet.c `ssh_packet_read_poll_seqnr`). Exit: ⌊L⌋ + (CountMax + 1) × I.
//! - sshd 9.2, serverloop.c `wait_until_can_do_something`: ppoll with a
//!   *relative* timeout of ClientAliveInterval; after it, `if (ret == 0 &&
//!   now > last_client_time + options.client_alive_interval)` →
//!   `client_alive_check` (count > ClientAliveCountMax → "Timeout, client
//!   not responding", exit), `last_client_time = now`; input sets
//!   `last_client_time = now`. With whole seconds and `>`, a timeout that
//!   ends exactly I after ⌊L⌋ is not "due": a probe goes out every second
//!   timeout — every 2 I. Fixed upstream by 9d7193a83 ("correct math for
//!   ClientAliveInterval that caused the probes to be sent less frequently
//!   than configured", `>` → `>=`, OpenSSH 9.5). [`sshd_exit`] simulates
//!   the loop for either comparison.
//! - russh 0.65, client/mod.rs `run` and server/session.rs `run`: a tokio
//!   `sleep(keepalive_interval)` reset to now + I after every iteration that
//!   read a packet or fired; each firing `alive_timeouts += 1`, and `if
//!   keepalive_max != 0 && alive_timeouts > keepalive_max` →
//!   `Error::KeepaliveTimeout`, else send keepalive@openssh.com; any packet
//!   read sets `alive_timeouts = 0`. Exit: L + (keepalive_max + 1) × I.
//!   `inactivity_timeout`: a second sleep, reset after every iteration but
//!   the keepalive firings — a packet read (the peer's keep-alive requests
//!   included) resets it.

use super::*;

/// A window in ms after t0 and its formula.
pub struct Window {
    pub lo: u64,
    pub hi: u64,
    pub formula: String,
}

impl Window {
    pub fn expectation(self, who: &str, spec: &str) -> Expectation {
        Expectation::window(
            self.lo,
            self.hi,
            format!("{who}: {}", self.formula),
            spec,
            Level::Must,
        )
    }
}

/// The last read as the kernel stamps it: up to a jiffy (and the dump's
/// millisecond) before the process read it, up to 1 ms after.
const READ_EARLY_MS: u64 = 5;
const READ_LATE_MS: u64 = 1;
/// ppoll/poll waking after its timeout, per wake (hrtimer slack, 50 µs, and
/// scheduling), at most.
const POLL_LATE_MS: f64 = 1.0;
/// From the decision to the observed end: ssh's exit reaped by kaspec, or
/// sshd's exit closing the socket (sock_diag sees it at its next dump).
const EXIT_MS: u64 = 6;
/// tokio's millisecond timer wheel (each firing up to 1 ms late, re-armed
/// from its end) and the session task's work, per firing.
const TOKIO_FIRING_MS: u64 = 1;
/// RTT of the testbed's veth path, for an RST answering a probe.
const RTT_MS: u64 = 1;

/// CLOCK_BOOTTIME (OpenSSH's `monotime`) at an instant, in seconds.
pub fn boot_secs(at: Instant) -> f64 {
    crate::model::linux::clock_secs(libc::CLOCK_BOOTTIME, at)
}

/// ssh's exit after its last read at `l` (boot seconds): the alive checks
/// fall on whole seconds ⌊L⌋ + k × I; the (CountMax + 1)-th exits. Under an
/// RST, the first check after t0 (`t0` boot seconds) sends a request and the
/// RST ends it. Returns the boot second of the end.
pub fn ssh_client_end(l: f64, i: u64, m: u64, rst_at: Option<f64>) -> f64 {
    let first = l.floor() + i as f64;
    match rst_at {
        Some(t0) => {
            let k = ((t0 - first) / i as f64).ceil().max(0.0);
            (first + k * i as f64).min(first + (m as f64) * i as f64)
        }
        None => first + (m as f64) * i as f64,
    }
}

/// sshd's exit after its last read at `l` (boot seconds), simulating
/// serverloop.c's loop with each ppoll `late` seconds late: `fixed` = the
/// `>=` comparison of 9.5 and later, else 9.2's `>`. Under an RST (t0 in
/// boot seconds) the first probe after t0 ends it.
pub fn sshd_exit(l: f64, i: u64, m: u64, late: f64, fixed: bool, rst_at: Option<f64>) -> f64 {
    let i_f = i as f64;
    let (mut last, mut t, mut n) = (l.floor(), l, 0u64);
    loop {
        t += i_f + late;
        let now = t.floor();
        let due = if fixed {
            now >= last + i_f
        } else {
            now > last + i_f
        };
        if due {
            n += 1;
            if n > m || rst_at.is_some_and(|t0| t > t0) {
                return t;
            }
            last = now;
        }
    }
}

/// Whether an OpenSSH version (`9.2p1`) has the fixed ClientAlive math (9.5+).
pub fn sshd_fixed(version: &str) -> bool {
    let mut it = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u64>().ok());
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (9, 5)
}

/// ms after t0 of a boot-second instant.
fn after(t0_boot: f64, at: f64) -> i64 {
    ((at - t0_boot) * 1000.0).round() as i64
}

/// ssh's last read on CLOCK_BOOTTIME (seconds): its whole second when
/// known exactly, else a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    Second(f64),
    Range(f64, f64),
}

/// The ssh client's window: `anchor` = its last read (its DEBUG3 trace,
/// see client.rs `ssh_anchor`), else `last` (TCP_INFO); t0 the fault.
pub fn ssh_client_window(
    anchor: Option<Anchor>,
    last: Instant,
    t0: Instant,
    i: u64,
    m: u64,
    reset: bool,
) -> Window {
    let t0b = boot_secs(t0);
    let (l_lo, l_hi, lb, how_read) = match anchor {
        Some(Anchor::Second(s)) => (
            s,
            s,
            s,
            "the reply to its alive request sent at that whole second (DEBUG3 trace)",
        ),
        Some(Anchor::Range(a, b)) => (a, b, b, "its DEBUG3 trace, − 2 ms"),
        None => {
            let b = boot_secs(last);
            (
                b - READ_EARLY_MS as f64 / 1000.0,
                b + READ_LATE_MS as f64 / 1000.0,
                b,
                "TCP_INFO, ± a jiffy",
            )
        }
    };
    let rst = reset.then_some(t0b);
    let lo_end = ssh_client_end(l_lo, i, m, rst);
    let hi_end = ssh_client_end(l_hi, i, m, rst);
    let extra = if reset { RTT_MS } else { 0 } + EXIT_MS;
    let (lo, hi) = (
        after(t0b, lo_end).max(0) as u64,
        after(t0b, hi_end).max(0) as u64 + extra,
    );
    let how = if reset {
        "the first alive check after t0 sends keepalive@openssh.com and the router's RST ends it"
            .to_string()
    } else {
        format!(
            "the ({})-th alive check exits (count > ServerAliveCountMax = {m})",
            m + 1
        )
    };
    Window {
        lo,
        hi,
        formula: format!(
            "last read at boot second {lb:.3} (CLOCK_BOOTTIME; {how_read}); checks at ⌊L⌋ + k × ServerAliveInterval = {:.0} + k × {i} s; {how}: at boot second {hi_end:.0}, {} ms after t0 (boot {t0b:.3}), + {extra} ms (exit, reaped)",
            lb.floor(),
            after(t0b, hi_end)
        ),
    }
}

/// sshd's window: `last` its last read, t0 the fault; `woke_late_ms` the
/// wake-up lateness the harness's probe measured over the run: sshd's loop
/// re-arms each ppoll from its wake, so a loaded machine's lateness adds up
/// once per timeout (the larger of it and [`POLL_LATE_MS`] per wake).
pub fn sshd_window(
    last: Instant,
    t0: Instant,
    s: &SshdSettings,
    fixed: bool,
    reset: bool,
    woke_late_ms: u64,
) -> Window {
    let poll_late_ms = POLL_LATE_MS.max(woke_late_ms as f64);
    let (i, m) = (s.client_alive_interval, s.client_alive_count_max);
    let t0b = boot_secs(t0);
    let lb = boot_secs(last);
    let rst = reset.then_some(t0b);
    let ends: Vec<f64> = [
        lb - READ_EARLY_MS as f64 / 1000.0,
        lb + READ_LATE_MS as f64 / 1000.0,
    ]
    .into_iter()
    .flat_map(|l| {
        [
            sshd_exit(l, i, m, 0.0, fixed, rst),
            sshd_exit(l, i, m, poll_late_ms / 1000.0, fixed, rst),
        ]
    })
    .collect();
    let lo_end = ends.iter().copied().fold(f64::MAX, f64::min);
    let hi_end = ends.iter().copied().fold(f64::MIN, f64::max);
    let extra = if reset { RTT_MS } else { 0 } + EXIT_MS;
    let cmp = if fixed {
        "now >= last + I (9.5+)"
    } else {
        "now > last + I (9.2: a timeout ending exactly I after ⌊last⌋ is not due, so probes go every 2 I)"
    };
    let how = if reset {
        "the first probe after t0 meets the router's RST".to_string()
    } else {
        format!(
            "the ({})-th probe exits (count > ClientAliveCountMax = {m})",
            m + 1
        )
    };
    Window {
        lo: after(t0b, lo_end).max(0) as u64,
        hi: after(t0b, hi_end).max(0) as u64 + extra,
        formula: format!(
            "last read at boot second {lb:.3} (±{READ_EARLY_MS} ms); ppoll timeouts of ClientAliveInterval = {i} s (each up to {poll_late_ms} ms late: {POLL_LATE_MS} ms or the wake-up lateness kaspec's probe measured over the run, this machine's lateness standing in for sshd's), a probe when {cmp}; {how}: {}..{} ms after t0, + {extra} ms (exit, socket closed)",
            after(t0b, lo_end),
            after(t0b, hi_end)
        ),
    }
}

/// russh's window (client or server): `idle_ms` = t0 − its last read.
pub fn russh_window(interval: Duration, max: u64, idle_ms: u64, reset: bool) -> Window {
    let i = ms_of(interval);
    if reset {
        let k = idle_ms / i.max(1) + 1;
        let at = (k * i).saturating_sub(idle_ms);
        return Window {
            lo: at,
            hi: at + k * TOKIO_FIRING_MS + RTT_MS + EXIT_MS,
            formula: format!("the first keepalive firing after t0 (the {k}-th after the last read, {idle_ms} ms before t0; every {i} ms) sends keepalive@openssh.com and the router's RST ends the session: {at} ms, + {} ms", k * TOKIO_FIRING_MS + RTT_MS + EXIT_MS),
        };
    }
    let n = max + 1;
    let late = n * TOKIO_FIRING_MS + EXIT_MS;
    Window {
        lo: (n * i).saturating_sub(idle_ms + READ_LATE_MS),
        hi: (n * i + late + READ_EARLY_MS).saturating_sub(idle_ms),
        formula: format!(
            "keepalive timer reset by the last read; firings 1..{max} send keepalive@openssh.com, the {n}-th finds alive_timeouts {n} > keepalive_max {max}: {n} × {i} ms − {idle_ms} ms idle before t0, + {late} ms (tokio's timer wheel per firing, the close)"
        ),
    }
}

/// russh's inactivity_timeout with a silent peer: T after the last read.
pub fn russh_inactivity_window(t: Duration, idle_ms: u64) -> Window {
    let t = ms_of(t);
    Window {
        lo: t.saturating_sub(idle_ms + READ_LATE_MS),
        hi: (t + TOKIO_FIRING_MS + EXIT_MS + READ_EARLY_MS).saturating_sub(idle_ms),
        formula: format!("inactivity timer reset by the last iteration (the last read): inactivity_timeout = {t} ms − {idle_ms} ms idle before t0, + {} ms", TOKIO_FIRING_MS + EXIT_MS),
    }
}

/// How long a case waits for a side: its window's upper bound and 3 s more.
pub fn deadline(hi_ms: u64) -> u64 {
    hi_ms + 3000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_exits_at_the_count_max_plus_one_th_whole_second_check() {
        // Last read at 100.3 s: checks at 101, 102; the 3rd (103) exits.
        assert_eq!(ssh_client_end(100.3, 1, 2, None), 103.0);
        assert_eq!(ssh_client_end(100.999, 15, 3, None), 160.0);
        // An RST: the first check after t0.
        assert_eq!(ssh_client_end(100.3, 1, 2, Some(101.5)), 102.0);
        assert_eq!(ssh_client_end(100.3, 1, 2, Some(100.5)), 101.0);
    }

    #[test]
    fn sshd_9_2_probes_every_second_interval() {
        // 9.2: probes at L + 2, + 4, the third (L + 6) exits.
        let e = sshd_exit(100.3, 1, 2, 0.0, false, None);
        assert!((e - 106.3).abs() < 1e-9, "{e}");
        // Fixed (9.5+): every interval, exit at L + 3.
        let e = sshd_exit(100.3, 1, 2, 0.0, true, None);
        assert!((e - 103.3).abs() < 1e-9, "{e}");
        // 9.2 with the read just before a second boundary: the first wake
        // crosses it and probes; then every 2 I.
        let e = sshd_exit(100.9995, 1, 2, 0.001, false, None);
        assert!((e - (100.9995 + 5.0 + 0.005)).abs() < 1e-6, "{e}");
        // The documented example: 15 s × 3 ≈ 45 s; 9.2 takes 120 s.
        let e = sshd_exit(0.5, 15, 3, 0.0, false, None);
        assert!((e - 120.5).abs() < 1e-9, "{e}");
        // An RST: the first probe after t0.
        let e = sshd_exit(100.3, 1, 2, 0.0, false, Some(101.0));
        assert!((e - 102.3).abs() < 1e-9, "{e}");
        assert!(!sshd_fixed("9.2p1") && sshd_fixed("9.6p1") && sshd_fixed("10.0p2"));
    }

    #[test]
    fn russh_ends_at_keepalive_max_plus_one_firings() {
        let w = russh_window(Duration::from_secs(1), 2, 400, false);
        assert_eq!((w.lo, w.hi), (2599, 2600 + 3 + EXIT_MS + READ_EARLY_MS));
        let r = russh_window(Duration::from_secs(1), 2, 1400, true);
        assert_eq!(r.lo, 600);
        let t = russh_inactivity_window(Duration::from_secs(3), 200);
        assert_eq!(t.lo, 2799);
    }
}

//! What the Linux kernel adds to a timer: the timer wheel (kernel/time/timer.c)
//! rounds every timer up to the granularity of the wheel level its timeout
//! falls in — 1 jiffy below 63 jiffies, then ×8 per level (8, 64, 512, ...
//! jiffies). A keep-alive timer of 60 s at HZ=250 can fire up to 2 s late.
//! The TCP expectations add this bound to their upper limit, with the
//! arithmetic in the formula, rather than hiding it in a tolerance.

use std::io::Read;
use std::sync::OnceLock;

/// CONFIG_HZ of the running kernel, if the kernel config can be read.
pub fn kernel_hz() -> Option<u64> {
    static HZ: OnceLock<Option<u64>> = OnceLock::new();
    *HZ.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let text = std::fs::read_to_string(format!("/boot/config-{}", release.trim()))
            .ok()
            .or_else(|| {
                let f = std::fs::File::open("/proc/config.gz").ok()?;
                let mut s = String::new();
                flate2::read::GzDecoder::new(f)
                    .read_to_string(&mut s)
                    .ok()?;
                Some(s)
            })?;
        text.lines()
            .find_map(|l| l.strip_prefix("CONFIG_HZ="))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The most a timer of `timeout_ms` can fire late at `hz`, in ms: the
/// granularity of its wheel level plus one tick.
pub fn wheel_slack_ms_at(timeout_ms: u64, hz: u64) -> u64 {
    let jiffies = timeout_ms * hz / 1000;
    let mut level = 0u32;
    // Level n (n >= 1) starts at 63 << 3(n-1) jiffies.
    while level < 8 && jiffies >= (63u64 << (3 * level)) {
        level += 1;
    }
    let gran = 1u64 << (3 * level);
    ((gran + 1) * 1000).div_ceil(hz)
}

/// [`wheel_slack_ms_at`] at this kernel's HZ, or the worst common HZ if unknown.
pub fn wheel_slack_ms(timeout_ms: u64) -> u64 {
    match kernel_hz() {
        Some(hz) => wheel_slack_ms_at(timeout_ms, hz),
        None => [100, 250, 300, 1000]
            .iter()
            .map(|hz| wheel_slack_ms_at(timeout_ms, *hz))
            .max()
            .unwrap_or(0),
    }
}

/// "HZ=250" or "HZ unknown" for formulas.
pub fn hz_text() -> String {
    kernel_hz()
        .map(|h| format!("HZ={h}"))
        .unwrap_or_else(|| "HZ unknown, worst case".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_grows_by_eight_per_level() {
        // 2 s at HZ=250 = 500 jiffies: level 1 (63..503), 8 jiffies = 32 ms (+1 tick).
        assert_eq!(wheel_slack_ms_at(2000, 250), 36);
        // 100 ms = 25 jiffies: level 0, 1 jiffy (+1 tick).
        assert_eq!(wheel_slack_ms_at(100, 250), 8);
        // 60 s = 15000 jiffies: level 3 (4032..32255), 512 jiffies = 2.048 s (+1 tick).
        assert_eq!(wheel_slack_ms_at(60_000, 250), 2052);
        // 2 s at HZ=1000 = 2000 jiffies: level 2, 64 ms (+1 tick).
        assert_eq!(wheel_slack_ms_at(2000, 1000), 65);
    }
}

/// What the kernel's retransmission machinery looks like on one socket, read
/// from TCP_INFO and the namespace's sysctls just before data is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransState {
    /// Current retransmission timeout (tcpi_rto), µs.
    pub rto_us: u64,
    /// Smoothed RTT (tcpi_rtt), µs.
    pub srtt_us: u64,
    /// net.ipv4.tcp_rto_min_us (200 ms unless tuned).
    pub rto_min_us: u64,
    /// net.ipv4.tcp_early_retrans >= 3: tail loss probes are on.
    pub tlp: bool,
}

impl RetransState {
    /// Reads the state of socket `fd`; sysctls from the calling thread's namespace.
    pub fn read(fd: std::os::fd::RawFd) -> std::io::Result<RetransState> {
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RetransState::from_info(
            info.tcpi_rto as u64,
            info.tcpi_rtt as u64,
        ))
    }

    /// The state of a socket whose `tcpi_rto` and `tcpi_rtt` (µs) were read
    /// elsewhere (another process's, through sock_diag); sysctls from the
    /// calling thread's namespace.
    pub fn from_info(rto_us: u64, srtt_us: u64) -> RetransState {
        let sysctl = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        RetransState {
            rto_us,
            srtt_us,
            rto_min_us: sysctl("tcp_rto_min_us").unwrap_or(200_000),
            tlp: sysctl("tcp_early_retrans").map(|v| v >= 3).unwrap_or(true),
        }
    }

    /// When the first RTO retransmission of a lone segment happens after it
    /// is sent, in ms: the tail loss probe (net/ipv4/tcp_output.c,
    /// `tcp_schedule_loss_probe`: PTO = 2·srtt + rto_min with one segment
    /// out, capped by the RTO) is not an RTO retransmission, then the RTO
    /// timer fires. TCP_USER_TIMEOUT counts from this first RTO
    /// retransmission (`retrans_stamp`, set in `tcp_retransmit_skb`).
    pub fn first_retransmission_ms(&self) -> (u64, String) {
        let rto = self.rto_us.div_ceil(1000);
        if self.tlp {
            let pto = (2 * self.srtt_us + self.rto_min_us)
                .min(self.rto_us)
                .div_ceil(1000);
            (
                pto + rto,
                format!("PTO + RTO = min(2·srtt + rto_min, RTO) + RTO = {pto} + {rto} ms"),
            )
        } else {
            (rto, format!("RTO = {rto} ms (tail loss probes off)"))
        }
    }
}

/// One jiffy in ms (rounded up): the granularity of the kernel's own
/// timestamps (conntrack timeouts, tcp_info's "last received" times).
pub fn jiffy_ms() -> u64 {
    kernel_hz().map(|hz| 1000u64.div_ceil(hz)).unwrap_or(10)
}

/// Linux's delayed-ACK bounds (include/net/tcp.h: `TCP_DELACK_MIN (HZ/25)`,
/// `TCP_DELACK_MAX (HZ/5)`): 40 and 200 ms.
pub const DELACK_MIN_MS: u64 = 40;
pub const DELACK_MAX_MS: u64 = 200;

/// When a side that received data `idle_ms` before the fault (and sent
/// nothing since) may still send its delayed ACK of it, in ms after the
/// fault: None once the longest delay has passed. Under `reset` that ACK is
/// the first segment to meet the RST.
pub fn pending_delayed_ack(idle_ms: u64) -> Option<(u64, u64)> {
    (idle_ms < DELACK_MAX_MS).then(|| {
        (
            DELACK_MIN_MS.saturating_sub(idle_ms),
            DELACK_MAX_MS - idle_ms,
        )
    })
}

#[cfg(test)]
mod delack_tests {
    #[test]
    fn an_ack_is_pending_only_within_the_longest_delay() {
        assert_eq!(super::pending_delayed_ack(10), Some((30, 190)));
        assert_eq!(super::pending_delayed_ack(60), Some((0, 140)));
        assert_eq!(super::pending_delayed_ack(200), None);
    }
}

/// `clock` (CLOCK_MONOTONIC, CLOCK_BOOTTIME) at an instant, in seconds:
/// what a program reading that clock saw then (a library whose timers
/// compare whole seconds of it falls on its second boundaries).
pub fn clock_secs(clock: libc::clockid_t, at: std::time::Instant) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let now = std::time::Instant::now();
    // SAFETY: a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let b = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    if at <= now {
        b - (now - at).as_secs_f64()
    } else {
        b + (at - now).as_secs_f64()
    }
}

/// How late the kernel may end a `select`/`poll`/`epoll_wait` of `wait_ms`
/// for a task of nice 0: fs/select.c `select_estimate_accuracy()` gives
/// the hrtimer a slack of the timeout / 1000 (`__estimate_accuracy`:
/// `divfactor = 1000`, 500 for a niced task; at most 100 ms), at least the
/// task's timer slack (50 µs). A 1 s loop wait may end 1 ms late, a 10 s
/// one 10 ms late. Rounded up to whole ms, at least 1 (the wake-up itself).
pub fn poll_slack_ms(wait_ms: u64) -> u64 {
    wait_ms.div_ceil(1000).clamp(1, 100)
}

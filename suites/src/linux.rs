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
        let text = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok().or_else(|| {
            let f = std::fs::File::open("/proc/config.gz").ok()?;
            let mut s = String::new();
            flate2::read::GzDecoder::new(f).read_to_string(&mut s).ok()?;
            Some(s)
        })?;
        text.lines().find_map(|l| l.strip_prefix("CONFIG_HZ=")).and_then(|v| v.trim().parse().ok())
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
        None => [100, 250, 300, 1000].iter().map(|hz| wheel_slack_ms_at(timeout_ms, *hz)).max().unwrap_or(0),
    }
}

/// "HZ=250" or "HZ unknown" for formulas.
pub fn hz_text() -> String {
    kernel_hz().map(|h| format!("HZ={h}")).unwrap_or_else(|| "HZ unknown, worst case".into())
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

//! Shared timing rules: what more than one protocol's expectations are made
//! of. Each rule cites where it comes from (kernel source, spec sentence).
//!
//! - [`tcp`]: Linux TCP keep-alive and its abort (I + N×V, TCP_USER_TIMEOUT).
//! - [`linux`]: the kernel's timer-wheel granularity and retransmission state.
//! - [`periodic`]: a side that sends every P: when its next send meets an RST.
//! - [`impaired`]: a live peer on a slow or lossy path.
//! - [`nat`]: a NAT that forgets idle flows.
//! - [`h2ping`]: hyper's HTTP/2 PING keep-alive (tonic, reqwest).

use std::time::{Duration, Instant};

pub mod h2ping;
pub mod impaired;
pub mod linux;
pub mod nat;
pub mod periodic;
pub mod tcp;

/// Milliseconds from `t0` to `t` (negative if before).
pub fn rel_ms(t0: Instant, t: Instant) -> i64 {
    if t >= t0 {
        (t - t0).as_millis() as i64
    } else {
        -((t0 - t).as_millis() as i64)
    }
}

/// `d` in whole milliseconds.
pub fn ms_of(d: Duration) -> u64 {
    d.as_millis() as u64
}

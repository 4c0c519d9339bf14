//! hyper's HTTP/2 keep-alive, the client of tonic (gRPC) and reqwest
//! (HTTP/2). hyper 1.x src/proto/h2/ping.rs: the timer is scheduled at the
//! last read + I (`KeepAlive::schedule`; any frame read updates
//! `last_read_at` in `record_data` / `record_non_data`), the PING goes out
//! when it fires (`maybe_ping`, unless `!while_idle && is_idle`), and the
//! connection is closed T after it without an ACK (`maybe_timeout`).

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::FaultKind;

use super::linux;

/// When an idle connection with while_idle on is closed after the fault,
/// `idle_ms` = t0 − the last data it received (the kernel's TCP_INFO,
/// jiffy-grained: ± one jiffy J); each of the two tokio timers may wake up
/// to 1 ms late. Under reset the PING itself meets the RST.
pub fn window(i: u64, t: u64, idle_ms: u64, fault: FaultKind, spec: &str) -> Expectation {
    let j = linux::jiffy_ms();
    let ping = i.saturating_sub(idle_ms);
    if fault == FaultKind::Reset {
        return Expectation::window(
            ping.saturating_sub(j),
            ping + j + 1,
            format!("the PING at the last read + I is answered by RST: I − idle = {i} − {idle_ms} = {ping} ms, ± J = {j} ms (jiffy-grained idle), + 1 ms timer"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    let d = ping + t;
    Expectation::window(
        d.saturating_sub(j),
        d + j + 2,
        format!("hyper: PING at the last read + I, closed T after it: I + T − idle = {i} + {t} − {idle_ms} = {d} ms, ± J = {j} ms (jiffy-grained idle), + 2 ms (two timers)"),
        spec,
        Level::Must,
    )
}

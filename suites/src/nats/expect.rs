//! The windows: nats-server's stale-connection close from its ping timer
//! (processPingTimer, server/client.go, 2.9) and async-nats's disconnect
//! from its pending-ping count (src/lib.rs ConnectionHandler, 0.51), each
//! anchored on the last data the detecting side read (sock_diag's
//! `tcpi_last_data_recv`).

use super::*;

/// async-nats `MAX_PENDING_PINGS` (src/lib.rs): a tick that makes this many
/// + 1 pings pending disconnects.
pub const MAX_PENDING_PINGS: u64 = 2;

/// The client waits this long after connecting before it is ready (on top
/// of the case's own settling), so the server's RTT ping and the first
/// steady PING/PONG are behind it.
pub const SETTLE_MS: u64 = 300;

/// nats-server 2.9 `setFirstPingTimer` (server/client.go, const.go
/// `firstClientPingInterval` = 2 s): a client's first ping-timer firing comes
/// after min(ping_interval, 2 s) plus a random offset of up to 20 %, and —
/// the RTT not yet measured (`needRTT`) — always sends a PING, whatever
/// `ping_interval` is. The latest it can come after the connect.
pub fn first_firing_max_ms(s: &ServerSettings) -> u64 {
    ms_of(s.ping_interval).min(2000) * 6 / 5
}

/// How long the client waits after connecting before the fault may come:
/// past the server's first firing (its RTT PING, which would otherwise
/// reach the client after t0 under a one-way fault and reset async-nats's
/// interval), plus, when the server pings for the case, one more interval
/// so that its steady PING/PONG has begun.
pub fn settle_ms(s: &ServerSettings, server_pings: bool) -> u64 {
    SETTLE_MS
        + first_firing_max_ms(s)
        + if server_pings {
            ms_of(s.ping_interval)
        } else {
            0
        }
}

/// Sub-millisecond on the testbed's veth links: the server's PING leaves at
/// the firing, its PONG is read up to this much later.
const RTT_MS: u64 = 1;
/// Each firing re-arms the next one (`time.AfterFunc(I)` at its end), so
/// the Go runtime timer's lateness and the firing's own work add up, firing
/// after firing: up to this much each.
const GO_FIRING_MS: u64 = 1;
/// The close after the last firing: the -ERR, closeConnection, the socket.
const GO_CLOSE_MS: u64 = 2;
/// The single firing of the RST case.
const GO_TIMER_MS: u64 = GO_FIRING_MS + GO_CLOSE_MS;
/// tokio's millisecond timer wheel (a tick up to 1 ms late, each of 3) and
/// the event callback's task.
const TOKIO_MS: u64 = 4;

/// When nats-server closes a client that stopped answering, in ms after the
/// last PONG it read: the firing that sent the PING it answered was RTT
/// before; the next ping_max firings each send a PING (`c.ping.out` 1 ..
/// ping_max; a PONG touches neither `c.last` nor `c.ping.last`, so no
/// firing is skipped), the (ping_max + 1)-th finds `c.ping.out + 1 >
/// ping_max` and closes: (ping_max + 1) × I − RTT.
pub fn stale_close(s: &ServerSettings) -> (u64, u64, String) {
    let i = ms_of(s.ping_interval);
    let n = s.ping_max + 1;
    let late = n * GO_FIRING_MS + GO_CLOSE_MS;
    (
        (n * i).saturating_sub(RTT_MS),
        n * i + late,
        format!(
            "the last PONG read answered a firing RTT (≤ {RTT_MS} ms) before; the firings after it send ping_max = {} PINGs and the ({n})-th closes: (ping_max + 1) × ping_interval = {n} × {i} ms, − RTT, + {late} ms (each re-armed firing up to {GO_FIRING_MS} ms late, the close {GO_CLOSE_MS} ms)",
            s.ping_max
        ),
    )
}

/// The server's window in the stale case after t0 (`idle_ms` = t0 − the
/// last data it read).
pub fn stale_expectation(
    s: &ServerSettings,
    fault: FaultKind,
    idle_ms: u64,
    who: &str,
    spec: &str,
) -> Expectation {
    let i = ms_of(s.ping_interval).max(1);
    if fault == FaultKind::Reset {
        // The first firing after t0 sends a PING; the router answers it with an RST.
        let k = idle_ms / i + 1;
        let at = (k * i).saturating_sub(idle_ms);
        return Expectation::window(
            at.saturating_sub(RTT_MS),
            at + GO_TIMER_MS,
            format!("{who}: the first firing after t0 (the {k}-th after the last PONG, {idle_ms} ms before t0; every {i} ms) sends a PING, answered by the router's RST: {at} ms, − RTT, + {GO_TIMER_MS} ms"),
            "RFC 9293 §3.5.3 (reset processing); nats-server processPingTimer",
            Level::Must,
        );
    }
    let (lo, hi, f) = stale_close(s);
    Expectation::window(
        lo.saturating_sub(idle_ms),
        hi.saturating_sub(idle_ms),
        format!("{who}: {f}; − {idle_ms} ms from the last PONG read to t0"),
        spec,
        Level::Must,
    )
}

/// When async-nats disconnects, in ms after the last operation it read
/// from the server (which reset its interval): ticks at P and 2P send PINGs
/// (pending 1, 2), the tick at 3P makes 3 > MAX_PENDING_PINGS: 3 × P. With
/// an RST answering its first PING (at P), at once.
pub fn client_disconnect(ping_interval: Duration, fault: FaultKind) -> (u64, u64, String) {
    let p = ms_of(ping_interval);
    if fault == FaultKind::Reset {
        return (p, p + TOKIO_MS, format!("the tick at ping_interval = {p} ms after the last operation read sends a PING, answered by the router's RST: the read fails at once (+ {TOKIO_MS} ms)"));
    }
    let n = MAX_PENDING_PINGS + 1;
    (
        n * p,
        n * p + TOKIO_MS,
        format!("interval reset by the last operation read; ticks at 1..{MAX_PENDING_PINGS} × P send PINGs, the {n}-th makes {n} > MAX_PENDING_PINGS ({MAX_PENDING_PINGS}) pending: {n} × {p} ms, + {TOKIO_MS} ms (tokio's timer wheel, the event callback)"),
    )
}

pub fn client_expectation(
    ping_interval: Duration,
    fault: FaultKind,
    idle_ms: u64,
    spec: &str,
) -> Expectation {
    let (lo, hi, f) = client_disconnect(ping_interval, fault);
    // The anchor is the kernel's last receive (TCP_INFO), jiffy-counted:
    // ± 1 jiffy.
    let j = crate::model::linux::jiffy_ms();
    let (mut lo, hi) = (
        lo.saturating_sub(idle_ms + j),
        (hi + j).saturating_sub(idle_ms),
    );
    let mut f = format!("client: {f}; − {idle_ms} ms from the last data read to t0, ± {j} ms (that read is the kernel's TCP_INFO last receive, jiffy-counted)");
    // Its delayed ACK of that last read may still be due after t0: under
    // reset it is the first segment to meet the RST.
    if let (FaultKind::Reset, Some((a, b))) =
        (fault, crate::model::linux::pending_delayed_ack(idle_ms))
    {
        lo = lo.min(a);
        f += &format!("; or earlier, its delayed ACK of that read ({} to {} ms after it, Linux TCP_DELACK_MIN..MAX): {a} to {b} ms", crate::model::linux::DELACK_MIN_MS, crate::model::linux::DELACK_MAX_MS);
    }
    Expectation::window(lo, hi, f, spec, Level::Must)
}

/// How long the stale case waits for the server: (ping_max + 2) × I + 2 s.
pub fn stale_deadline_ms(s: &ServerSettings) -> u64 {
    (s.ping_max + 2) * ms_of(s.ping_interval) + 2000
}

/// How long the client cases wait: 4 × P + 2 s.
pub fn client_deadline_ms(ping_interval: Duration) -> u64 {
    (MAX_PENDING_PINGS + 2) * ms_of(ping_interval) + 2000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(i_ms: u64, max: u64) -> ServerSettings {
        ServerSettings {
            ping_interval: Duration::from_millis(i_ms),
            ping_max: max,
        }
    }

    #[test]
    fn the_server_closes_at_ping_max_plus_one_firings_after_the_last_pong() {
        let (lo, hi, _) = stale_close(&settings(1000, 2));
        assert_eq!((lo, hi), (2999, 3005));
        let (lo, hi, _) = stale_close(&settings(2000, 3));
        assert_eq!((lo, hi), (7999, 8006));
        let e = stale_expectation(&settings(1000, 2), FaultKind::Blackhole, 400, "server", "s");
        assert_eq!((e.min_ms, e.max_ms), (Some(2599), Some(2605)));
        // An RST: the first firing after t0.
        let r = stale_expectation(&settings(1000, 2), FaultKind::Reset, 400, "server", "s");
        assert_eq!((r.min_ms, r.max_ms), (Some(599), Some(603)));
        let r = stale_expectation(&settings(1000, 2), FaultKind::Reset, 1400, "server", "s");
        assert_eq!((r.min_ms, r.max_ms), (Some(599), Some(603)));
    }

    #[test]
    fn async_nats_disconnects_at_the_third_tick() {
        let (lo, hi, _) = client_disconnect(Duration::from_secs(1), FaultKind::Blackhole);
        assert_eq!((lo, hi), (3000, 3004));
        let (lo, _, _) = client_disconnect(Duration::from_millis(500), FaultKind::Freeze);
        assert_eq!(lo, 1500);
        let (lo, hi, _) = client_disconnect(Duration::from_secs(1), FaultKind::Reset);
        assert_eq!((lo, hi), (1000, 1004));
        let e = client_expectation(Duration::from_secs(1), FaultKind::Blackhole, 250, "s");
        let j = crate::model::linux::jiffy_ms();
        assert_eq!((e.min_ms, e.max_ms), (Some(2750 - j), Some(2754 + j)));
        assert_eq!(client_deadline_ms(Duration::from_secs(1)), 6000);
        assert_eq!(stale_deadline_ms(&settings(1000, 2)), 6000);
    }

    #[test]
    fn the_first_firing_is_capped_at_two_seconds_plus_a_fifth() {
        assert_eq!(first_firing_max_ms(&settings(1000, 2)), 1200);
        assert_eq!(first_firing_max_ms(&settings(3_600_000, 2)), 2400);
        assert_eq!(settle_ms(&settings(1000, 2), true), SETTLE_MS + 2200);
        assert_eq!(settle_ms(&settings(3_600_000, 2), false), SETTLE_MS + 2400);
    }
}

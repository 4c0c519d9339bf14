//! Each side's window: hyper's keep-alive rule for the client (a PING at the
//! last read + I, the close T later), each server's own keep-alive, the call's
//! failure, and the ping policy.

use super::*;

/// Client, idle connection (case 1). `idle_ms` = t0 − the last segment the
/// client received. Without while_idle no HTTP/2 PING goes out, and only the
/// TCP knobs (`tcp.*`, which tonic sets on its socket) can end the connection.
pub fn idle_client_expectation(
    g: &GrpcConfig,
    tcp: &TcpConfig,
    fault: FaultKind,
    idle_ms: u64,
) -> Expectation {
    let (i, t) = (ms_of(g.keepalive_time), ms_of(g.keepalive_timeout));
    if !g.keepalive_while_idle {
        if !tcp.keepalive {
            return Expectation::not_detected("keepalive_while_idle = false and TCP keep-alive off: an idle connection is never probed", SPEC_A8);
        }
        if fault == FaultKind::Freeze {
            return Expectation::not_detected(
                "keepalive_while_idle = false: no HTTP/2 PING; the frozen server's kernel answers TCP keep-alive probes",
                SPEC_A8,
            );
        }
        if fault == FaultKind::Reset {
            let e = crate::model::tcp::rst_at_first_probe(
                tcp,
                idle_ms,
                "keepalive_while_idle = false: no HTTP/2 PING while idle; TCP keep-alive (tcp.*): ",
            );
            return Expectation {
                spec: "gRFC A8 (KEEPALIVE_WITHOUT_CALLS), RFC 9293 §3.5.3".into(),
                ..e
            };
        }
        let (lo, hi, f) = crate::model::tcp::death_after_idle(tcp, idle_ms);
        return Expectation::window(
            lo,
            hi,
            format!("keepalive_while_idle = false: no HTTP/2 PING while idle; TCP keep-alive (tcp.*): {f}"),
            "gRFC A8 (KEEPALIVE_WITHOUT_CALLS), RFC 1122 §4.2.3.6",
            Level::Must,
        );
    }
    crate::model::h2ping::window(i, t, idle_ms, fault, SPEC_A8)
}

/// Client, busy connection (case `busy`: a unary call every 100 ms, the
/// path failing between two). hyper 1.x src/proto/h2/ping.rs: every frame
/// read moves `last_read_at` (`record_data` l. 202, `record_non_data`
/// l. 236); the PING timer is armed at last_read_at + I (`schedule`,
/// l. 455) and re-armed when a read came while it waited (`maybe_ping`,
/// l. 467), so it fires I after the last response. The call in flight makes
/// the connection busy, so the PING goes out whatever while_idle says
/// (l. 472), and T later without an ACK `maybe_timeout` (l. 486) closes the
/// connection, failing that call. TCP keep-alive never probes with data in
/// flight (Linux tcp_keepalive_timer: `packets_out` → re-arm) and tonic sets
/// no TCP_USER_TIMEOUT: the PING alone decides. `idle_ms` = t0 − the last
/// data the client received (TCP_INFO): the same window as an idle
/// connection's, anchored on the last response.
pub fn busy_client_expectation(g: &GrpcConfig, fault: FaultKind, idle_ms: u64) -> Expectation {
    let e = crate::model::h2ping::window(
        ms_of(g.keepalive_time),
        ms_of(g.keepalive_timeout),
        idle_ms,
        fault,
        SPEC_A8,
    );
    Expectation {
        formula: format!(
            "a call in flight (the connection is busy; while_idle does not matter): {}",
            e.formula
        ),
        ..e
    }
}

/// A server's own keep-alive on an idle connection (cases 1 and 2).
/// `idle_ms` = t0 − the last data the server received (its kernel's
/// TCP_INFO), when it could be read: both servers ping I after their last
/// read and close T after an unanswered PING — hyper's rule
/// (src/proto/h2/ping.rs) for kaspec's tonic server, and grpc-core's
/// keep-alive (its timer restarts on incoming data) for grpcio, which the
/// measurements agree with. Without `idle_ms` the phase of the server's
/// timer is not observed and the window spans it: (T, I + T].
pub fn server_expectation(
    k: &ServerKeepalive,
    fault: FaultKind,
    idle_ms: Option<u64>,
) -> Expectation {
    let (i, t) = (ms_of(k.time), ms_of(k.timeout));
    let j = linux::jiffy_ms();
    match (fault, idle_ms) {
        (FaultKind::Freeze, _) => Expectation::not_detected("the server process is frozen: it detects nothing", SPEC_A8),
        (FaultKind::Reset, Some(idle)) => {
            let ping = i.saturating_sub(idle);
            Expectation::window(
                ping.saturating_sub(j),
                ping + j + 1,
                format!("the server's PING at its last read + I is answered by RST: I − idle = {i} − {idle} = {ping} ms, ± J = {j} ms (jiffy-grained idle), + 1 ms timer"),
                "RFC 9293 §3.5.3 (reset processing)",
                Level::Must,
            )
        }
        (FaultKind::Reset, None) => Expectation::window(
            0,
            i,
            format!("the server's next PING (at most its keepalive_time {i} ms after the last read, a phase not observed here) is answered by RST: (0, {i}]"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        ),
        (_, Some(idle)) => {
            let d = (i + t).saturating_sub(idle);
            Expectation::window(
                d.saturating_sub(j),
                d + j + 2,
                format!("the server's PING at its last read + I, closed T after it: I + T − idle = {i} + {t} − {idle} = {d} ms, ± J = {j} ms (jiffy-grained idle), + 2 ms (two timers)"),
                SPEC_A8,
                Level::Must,
            )
        }
        (_, None) => Expectation::window(
            t,
            i + t,
            format!("the server's PING (its timer's phase not observed here), unanswered for its keepalive_timeout: (T, I + T] = ({t}, {}] ms", i + t),
            SPEC_A8,
            Level::Must,
        ),
    }
}

/// A server's own keep-alive on a busy connection (case `busy`). kaspec's
/// tonic server: hyper's rule, anchored on its last read, as when idle.
/// grpcio (Debian's 1.51.1): every read re-arms its keepalive timer at
/// now + I (chttp2_transport.cc: "Keepalive ping cancelled. Resetting
/// timer."), but its BDP estimator also sends PINGs on its own schedule
/// (`next_bdp_ping_timer`, an inter-ping delay it grows while the estimate
/// holds), and grpc-core sets TCP_USER_TIMEOUT = keepalive_timeout on every
/// socket once keepalive is on (socket_utils_common_posix.cc: "TCP_USER_TIMEOUT
/// will be used thereafter"). So the first PING it sends after t0 decides,
/// read from its trace log (`ping`: ms after t0, what for): a keepalive PING
/// is closed by the watchdog T after it (`start_keepalive_ping_locked` arms
/// `keepalive_watchdog_timer`); a BDP PING, never acknowledged, by the
/// kernel at U = T after its first RTO retransmission — before the keepalive
/// PING, which the BDP ping's start pushed to its send + I. That RTO is the
/// server socket's own (`retrans`, its TCP_INFO at t0): its srtt counts the
/// client's delayed ACKs, tens of ms. Without a PING in the log the phase
/// is not observed: (T, I + T].
pub fn busy_server_expectation(
    which: GrpcServer,
    k: &ServerKeepalive,
    fault: FaultKind,
    idle_ms: Option<u64>,
    ping: Option<(f64, PingFor)>,
    retrans: Option<&linux::RetransState>,
) -> Expectation {
    let t = ms_of(k.timeout);
    match (which, ping) {
        (GrpcServer::Kaspec, _) => server_expectation(k, fault, idle_ms),
        (GrpcServer::PythonGrpcio, Some((b, PingFor::Keepalive))) => {
            let (lo, hi) = (b.floor() as u64 + t, b.ceil() as u64 + t + 2);
            Expectation::window(
                lo,
                hi,
                format!("grpcio's keepalive PING at +{b:.1} ms (its log), its watchdog T = {t} ms later: [{lo}, {hi}] ms (+ 2 ms: the timer's tick, the log's stamp)"),
                SPEC_A8,
                Level::Must,
            )
        }
        (GrpcServer::PythonGrpcio, Some((b, PingFor::Bdp))) => {
            let u = TcpConfig {
                keepalive: false,
                idle: Duration::ZERO,
                interval: Duration::ZERO,
                count: 0,
                user_timeout: k.timeout,
            };
            let e = crate::model::tcp::send_expectation(&u, fault, b.floor() as u64, retrans);
            Expectation {
                formula: format!("grpcio's BDP PING at +{b:.1} ms (its log) is never acknowledged; grpc-core's TCP_USER_TIMEOUT = keepalive_timeout ends the socket (its keepalive PING, pushed to the BDP ping + I, comes later): {}", e.formula),
                ..e
            }
        }
        (GrpcServer::PythonGrpcio, None) => {
            let e = server_expectation(k, fault, None);
            Expectation {
                formula: format!("no PING after t0 in grpcio's log: {}", e.formula),
                ..e
            }
        }
    }
}

/// Client, call started `call_ms` after the fault on an unprobed idle
/// connection (case 2). `call_ms` is the call's instant truncated to whole
/// ms (+ up to 1 ms). hyper (src/proto/h2/ping.rs): the call ends the idle
/// state, `maybe_schedule` arms the keep-alive sleep at the last read + I —
/// already past, so it fires at the timer's next 1 ms tick — and
/// `maybe_ping` sends the PING and re-arms the sleep at now + T, which tokio
/// rounds up to its next tick: + up to 2 ms for the two timers.
pub fn call_expectation(g: &GrpcConfig, fault: FaultKind, call_ms: u64) -> Expectation {
    let t = ms_of(g.keepalive_timeout);
    if fault == FaultKind::Reset {
        return Expectation::window(
            call_ms,
            call_ms + 1,
            format!("the call's first frames (+{call_ms} ms, truncated: + 1 ms) are answered by RST: immediate"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    let d = call_ms + t;
    Expectation::window(
        d,
        d + 3,
        format!("the call (+{call_ms} ms, at least I after the last read) triggers a PING at the next timer tick; no ACK within T: {call_ms} + {t} = {d} ms, + 2 ms (hyper's two tokio timers, each rounded up to a 1 ms tick) + 1 ms (the call's instant truncated)"),
        SPEC_A8,
        Level::Must,
    )
}

/// grpc-core's ping abuse policy (ping_abuse_policy.cc): the first PING sets
/// the clock; each later one sooner than allowed is a strike; GOAWAY when
/// strikes exceed max_ping_strikes (2): at the 4th PING, 3 intervals after
/// the first. With a call open the client pings I after each read: PINGs at
/// I, 2I, 3I, 4I after the last message.
pub fn policy_expectation(g: &GrpcConfig, server: GrpcServer) -> Expectation {
    let i = ms_of(g.keepalive_time);
    let _ = server;
    // hyper schedules each PING I after its last read, and the PING ACK is
    // a read: each cycle lands a timer wake (≤ 1 ms), a round trip and the
    // ACK's processing (≤ 2 ms) later than k × I, and the GOAWAY takes the
    // server's reaction and a round trip (≤ 5 ms) — phases neither hyper nor
    // grpc-core expose.
    let drift = 4 * 3 + 5;
    Expectation::window(
        3 * i,
        4 * i + drift,
        format!(
            "PINGs every I = {i} ms after the last read (each ACK a read); strikes from the 2nd PING, GOAWAY when strikes > 2: at the 3rd–4th PING, [3I, 4I] = [{}, {}] ms, + up to {drift} ms (4 cycles × (timer wake + round trip + ACK) + the GOAWAY's way back; not observable outside hyper and grpc-core)",
            3 * i,
            4 * i
        ),
        "gRFC A8 (server enforcement)",
        Level::Should,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn g(i: u64, t: u64, idle: bool) -> GrpcConfig {
        GrpcConfig {
            keepalive_time: Duration::from_millis(i),
            keepalive_timeout: Duration::from_millis(t),
            keepalive_while_idle: idle,
        }
    }

    #[test]
    fn idle_window_is_the_last_read_plus_i_plus_t() {
        let tcp = crate::config::TcpConfig::of(&Config::new(crate::config::socket::KNOBS));
        let j = linux::jiffy_ms();
        // hyper: PING at the last read + I, closed T later: 1000 + 500 − 300.
        let e = idle_client_expectation(&g(1000, 500, true), &tcp, FaultKind::Blackhole, 300);
        assert_eq!((e.min_ms, e.max_ms), (Some(1200 - j), Some(1200 + j + 2)));
        let r = idle_client_expectation(&g(1000, 500, true), &tcp, FaultKind::Reset, 300);
        assert_eq!((r.min_ms, r.max_ms), (Some(700 - j), Some(700 + j + 1)));
        // Without while_idle only TCP keep-alive (2 s + 3 × 1 s) ends it.
        let e = idle_client_expectation(&g(1000, 500, false), &tcp, FaultKind::Blackhole, 300);
        assert_eq!(e.min_ms, Some(5000 - 300));
        let off = TcpConfig {
            keepalive: false,
            ..tcp
        };
        assert!(
            !idle_client_expectation(&g(1000, 500, false), &off, FaultKind::Blackhole, 300)
                .expects_detection()
        );
        assert_eq!(
            call_expectation(&g(1000, 500, false), FaultKind::Blackhole, 1000).max_ms,
            Some(1503)
        );
        assert_eq!(
            call_expectation(&g(1000, 500, false), FaultKind::Reset, 1000).max_ms,
            Some(1001)
        );
    }

    #[test]
    fn the_shipped_server_settings_parse() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        for s in SERVERS {
            assert!(s.keepalive(&fixtures).unwrap().time > Duration::ZERO);
        }
    }
}

//! Each side's window, from its own algorithm, anchored on the events the
//! client saw (last frame received, last Ping sent).

use super::*;

/// tokio rounds a sleep's deadline up to its next 1 ms wheel tick ("Sleep
/// operates at millisecond granularity", tokio::time::sleep docs).
pub(crate) const TOKIO_TICK_MS: u64 = 1;

/// The client's window. `last_rx` = its last frame received before the fault,
/// `last_ping` = its last Ping sent before the fault, both relative to t0 (ms, ≤ 0).
pub fn client_expectation(
    w: &WebSocketConfig,
    fault: FaultKind,
    last_rx: i64,
    last_ping: i64,
) -> Expectation {
    let (p, t) = (ms_of(w.ping_interval) as i64, ms_of(w.pong_timeout) as i64);
    if fault == FaultKind::Reset {
        return next_send_meets_rst(
            "its next Ping",
            last_ping,
            p,
            Before::AckOrRetransmission,
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    let d = (last_rx + p + t).max(0) as u64;
    // kaspec's heartbeat sleeps until last_rx + P + T (client.rs); tokio
    // rounds that deadline up to its next 1 ms tick: + up to 1 ms.
    Expectation::window(
        d,
        d + TOKIO_TICK_MS,
        format!("nothing received for P + T after the last frame ({last_rx:+} ms): {last_rx} + {p} + {t} = {d} ms (within (T, P + T]), + up to {TOKIO_TICK_MS} ms (tokio's timer tick)"),
        SPEC_PING,
        Level::Must,
    )
}

/// A busy client under `reset` (case `BUSY`): its next text message, every
/// `period` after its last at `last_text` (vs t0, ms), is the first segment
/// after the fault; its Pings (every P from the same origin, client.rs) do
/// not wait for the traffic, but come later.
pub fn busy_client_reset(
    w: &WebSocketConfig,
    last_text: i64,
    period: i64,
    last_ping: i64,
    last_segment: i64,
) -> Expectation {
    let p = ms_of(w.ping_interval) as i64;
    let next_ping = crate::model::periodic::first_after(last_ping, p, 0);
    crate::model::periodic::next_message_meets_rst(
        "text message",
        last_text,
        period,
        last_segment,
        &format!("an idle client would learn at its next Ping, at {next_ping} ms"),
        "RFC 9293 §3.5.3 (reset processing)",
    )
}

/// A server's window. `last_heard` = when the server read the client's last
/// frame, as the client bounds it: (sent, answered) — sent then, and read
/// by the time the Pong to that frame (or to a later client Ping) came back,
/// since the server reads frames in order; `(sent, sent)` when nothing
/// answered it. `last_server_ping` = its own last Ping before the fault
/// (all vs t0, ms).
pub fn server_expectation(
    server: WsServer,
    hb: &Heartbeat,
    fault: FaultKind,
    last_heard: (i64, i64),
    last_server_ping: i64,
) -> Expectation {
    let (p, t) = (
        ms_of(hb.ping_interval) as i64,
        ms_of(hb.pong_timeout) as i64,
    );
    if fault == FaultKind::Freeze {
        return Expectation::not_detected(
            "the server process is frozen: it detects nothing",
            SPEC_PING,
        );
    }
    if fault == FaultKind::Reset {
        return next_send_meets_rst(
            "its next Ping",
            last_server_ping,
            p,
            Before::AckOrRetransmission,
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    // kaspec's server sleeps until its last read + P + T (peers/websocket.rs):
    // + up to 1 ms, tokio's tick; asyncio's timers have no such grain.
    let (sent, read_by) = last_heard;
    let (d, late, how) = match server {
        WsServer::Kaspec => {
            let read = if read_by > sent {
                format!(
                    "read between its sending ({sent:+} ms) and the Pong that answered it ({read_by:+} ms): + up to {} ms",
                    read_by - sent
                )
            } else {
                format!("{sent:+} ms")
            };
            (
                (sent + p + t).max(0) as u64,
                TOKIO_TICK_MS + (read_by - sent).max(0) as u64,
                format!("nothing received for P + T after the client's last frame ({read}): {sent} + {p} + {t}"),
            )
        }
        WsServer::PythonWebsockets => (
            (last_server_ping + p + t).max(0) as u64,
            0,
            format!("sleep P after its last Ping ({last_server_ping:+} ms), Ping, wait T for the Pong: {last_server_ping} + {p} + {t}"),
        ),
    };
    let grain = if server == WsServer::Kaspec {
        format!(", + up to {TOKIO_TICK_MS} ms (tokio's timer tick)")
    } else {
        String::new()
    };
    Expectation::window(
        d,
        d + late,
        format!("{how} = {d} ms{grain}"),
        SPEC_PING,
        Level::Must,
    )
}

/// The client's expectation when only its own Pings make traffic and the
/// path becomes `imp` at t0, `last_rx` (≤ 0) being its last frame before.
pub fn own_heartbeat_expectation(
    w: &WebSocketConfig,
    imp: &kaspec_harness::fault::impair::Impairment,
    last_rx: i64,
) -> Expectation {
    let (p, t) = (ms_of(w.ping_interval) as i64, ms_of(w.pong_timeout) as i64);
    let (lo, hi) = (ms_of(imp.min_rtt()) as i64, ms_of(imp.max_rtt()) as i64);
    if lo > t {
        let d = (last_rx + p + t).max(0) as u64;
        return Expectation::window(
            d,
            d,
            format!(
                "false positive: the next Pong comes a round trip of at least {lo} ms after its Ping, later than T = {t} ms: \
                 declared dead at last frame ({last_rx:+} ms) + P + T = {last_rx} + {p} + {t} = {d} ms, although the server is alive"
            ),
            SPEC_PING,
            Level::Must,
        );
    }
    let e = impaired_expectation("the pong timeout T =", w.pong_timeout, imp, SPEC_PING);
    if e.level == Level::Must || hi <= t {
        return e;
    }
    Expectation::either(format!("the round trip ({lo}–{hi} ms) straddles T = {t} ms: a false detection may or may not come"), SPEC_PING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: u64, t: u64) -> WebSocketConfig {
        WebSocketConfig {
            ping_interval: Duration::from_millis(p),
            pong_timeout: Duration::from_millis(t),
        }
    }

    #[test]
    fn client_window_is_p_plus_t_after_the_last_frame() {
        let e = client_expectation(&w(1000, 1000), FaultKind::Blackhole, -400, -500);
        assert_eq!((e.min_ms, e.max_ms), (Some(1600), Some(1601)));
        // Reset: at the latest the next Ping, P after the last one.
        let r = client_expectation(&w(1000, 1000), FaultKind::Reset, -400, -500);
        assert_eq!((r.min_ms, r.max_ms), (Some(0), Some(500)));
    }

    #[test]
    fn each_server_is_judged_by_its_own_algorithm() {
        let hb = Heartbeat {
            ping_interval: Duration::from_millis(1500),
            pong_timeout: Duration::from_millis(1000),
        };
        // Ours: from the client's last frame.
        assert_eq!(
            server_expectation(
                WsServer::Kaspec,
                &hb,
                FaultKind::Blackhole,
                (-300, -300),
                -900
            )
            .max_ms,
            Some(2201)
        );
        // Read late: the Pong to the client's last Ping came 50 ms after it.
        let late = server_expectation(
            WsServer::Kaspec,
            &hb,
            FaultKind::Blackhole,
            (-300, -250),
            -900,
        );
        assert_eq!((late.min_ms, late.max_ms), (Some(2200), Some(2251)));
        // Python websockets: from its own last Ping.
        assert_eq!(
            server_expectation(
                WsServer::PythonWebsockets,
                &hb,
                FaultKind::Blackhole,
                (-300, -300),
                -900
            )
            .max_ms,
            Some(1600)
        );
        assert!(
            !server_expectation(WsServer::Kaspec, &hb, FaultKind::Freeze, (0, 0), 0)
                .expects_detection()
        );
    }

    #[test]
    fn the_shipped_server_settings_parse() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        for s in SERVERS {
            let hb = s.heartbeat(&fixtures).unwrap();
            assert!(hb.ping_interval > Duration::ZERO && hb.pong_timeout > Duration::ZERO);
        }
    }
}

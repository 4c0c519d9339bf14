//! Keep-alive against a NAT that forgets idle flows (RFC 5382 §5, REQ-5: a
//! NAT's established-TCP idle timeout; real ones use 30 s to a few minutes).
//! The router of this testbed is a real masquerading NAT with a conntrack
//! timeout policy of N (`--network FILE`'s `nat_idle_timeout`, 4 s when no
//! network is given); a flow idle for N is forgotten and its later packets
//! are dropped, as a real NAT drops them.
//!
//! The rule users rely on: a keep-alive keeps the mapping only if its period
//! is below N. Below, the connection is still usable after an idle period of
//! several times N; at or above, it breaks — and the cases measure how long
//! until each side notices. t0 (the fault in force) is the mapping's expiry:
//! N after the last packet of the flow.

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::observe::SocketWatch;
use kaspec_harness::report::CaseResult;
use kaspec_harness::server::Server;
use kaspec_harness::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::case::{ms_of, rel_ms, CaseDef, Ctx, RunFacts, Side};
use crate::config::TcpConfig;

/// How close (ms) a keep-alive period and N may be before the race between
/// the keep-alive and the mapping's expiry is reported, not judged: the NAT's
/// timeout is kept in jiffies and checked when a packet arrives, and the
/// keep-alive timers run a little late and drift by a few ms per period.
pub const NAT_RACE_MS: u64 = 100;

/// The expectation when `period` (what refreshes the mapping) is within
/// [`NAT_RACE_MS`] of N: either outcome can happen.
pub fn nat_race(what: &str, period: Duration, nat: Duration, spec: &str) -> Option<Expectation> {
    let (p, n) = (ms_of(period), ms_of(nat));
    (p.abs_diff(n) <= NAT_RACE_MS).then(|| {
        Expectation::not_detected(
            format!("{what} = {p} ms is within {NAT_RACE_MS} ms of N = {n} ms: it races the mapping's expiry; either outcome can happen"),
            spec,
        )
    })
}

/// The NAT idle timeout when no network profile gives one.
pub const DEFAULT_NAT_IDLE: Duration = Duration::from_secs(4);
const SPEC: &str = "RFC 5382 §5 (REQ-5: NAT idle timeout for established TCP)";

pub static CASES: [CaseDef; 3] = [
    CaseDef {
        id: "tcp/rfc5382-5/1",
        protocol: "tcp",
        spec: "RFC 5382 §5, RFC 1122 §4.2.3.6",
        description: "Idle TCP connection through a NAT that forgets idle flows after N: keep-alive below N keeps it usable; at or above N it breaks, and the keep-alive notices.",
        requirement: "A keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        run: run_tcp,
        budget: budget_tcp,
    },
    CaseDef {
        id: "mqtt/3.1.1-3.1.2.10/2",
        protocol: "mqtt",
        spec: "MQTT 3.1.1 §3.1.2.10, RFC 5382 §5",
        description: "Idle MQTT client through a NAT that forgets idle flows after N: Keep Alive below N keeps the session; at or above N the PINGREQ is dropped and both sides must notice.",
        requirement: "Keep Alive below the NAT idle timeout keeps the connection; otherwise the client misses a PINGRESP and the broker disconnects the client it no longer hears [MQTT-3.1.2-24]",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        run: run_mqtt,
        budget: budget_mqtt,
    },
    CaseDef {
        id: "websocket/rfc6455-5.5.2/5",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2, RFC 5382 §5",
        description: "Idle WebSocket client pinging every P through a NAT that forgets idle flows after N (the server sends no pings): P below N keeps the connection; at or above N the Ping is dropped and the heartbeat notices.",
        requirement: "A client heartbeat keeps a NAT mapping only when its period is below the NAT's idle timeout; when it does not, the pattern declares the peer dead P + T after the last frame",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        run: run_websocket,
        budget: budget_websocket,
    },
];

fn budget_websocket(ctx: &Ctx) -> Duration {
    let w = ctx.config.websocket;
    Duration::from_secs(10) + 3 * nat_idle(ctx) + 3 * (w.ping_interval + w.pong_timeout)
}

pub fn nat_idle(ctx: &Ctx) -> Duration {
    ctx.network.nat_idle_timeout.unwrap_or(DEFAULT_NAT_IDLE)
}

fn budget_tcp(ctx: &Ctx) -> Duration {
    let (d, nat) = (crate::tcp::keepalive_death(&ctx.config.tcp), nat_idle(ctx));
    Duration::from_secs(10) + (3 * nat).max(Duration::from_millis(d.ms + d.slack_ms) + nat + Duration::from_secs(1))
}

fn budget_mqtt(ctx: &Ctx) -> Duration {
    Duration::from_secs(20) + 3 * nat_idle(ctx) + 6 * ctx.config.mqtt.keep_alive
}

// --- TCP -----------------------------------------------------------------------

/// Whether TCP keep-alive keeps the mapping: a probe goes out every I of
/// idleness and its answer refreshes the mapping, so only I < N holds it.
pub fn tcp_kept(t: &TcpConfig, nat: Duration) -> bool {
    t.keepalive && t.idle < nat
}

/// The client's expectation, detection counted from the mapping's expiry.
pub fn tcp_client_expectation(t: &TcpConfig, nat: Duration) -> Expectation {
    let n = ms_of(nat);
    if let Some(race) = t.keepalive.then(|| nat_race("tcp.idle", t.idle, nat, SPEC)).flatten() {
        return race;
    }
    if tcp_kept(t, nat) {
        return Expectation::must_stay_up(
            format!("keep-alive every I = {} ms < N = {n} ms refreshes the mapping: the connection is usable after 3 × N of idleness", ms_of(t.idle)),
            SPEC,
        );
    }
    if !t.keepalive {
        return Expectation::not_detected(
            format!("keep-alive off: the mapping is forgotten after N = {n} ms and nothing notices; data sent later is dropped"),
            SPEC,
        );
    }
    let death = crate::tcp::keepalive_death(t);
    let d = death.ms.saturating_sub(n);
    Expectation::window(
        d,
        d + death.slack_ms,
        format!(
            "I = {} ms ≥ N = {n} ms: the first probe meets the forgotten mapping and is dropped; dead at {} after the last segment, − N = {d} ms (+ up to {} ms timer-wheel rounding)",
            ms_of(t.idle),
            death.formula,
            death.slack_ms
        ),
        SPEC,
        Level::Must,
    )
}

struct TcpEnd {
    failed_at: Option<Instant>,
    error: Option<String>,
    /// The echo sent after the idle period: Some(true) answered.
    echo: Option<(Instant, bool)>,
}

fn tcp_client(server: SocketAddrV4, tcp: TcpConfig, ready: mpsc::Sender<std::io::Result<(SocketAddrV4, Instant)>>, go: mpsc::Receiver<Instant>) -> TcpEnd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let mut end = TcpEnd { failed_at: None, error: None, echo: None };
    let setup = rt.block_on(crate::tcp::connect_and_exchange(server, &tcp));
    let mut stream = match setup {
        Ok((s, local, last)) => {
            let _ = ready.send(Ok((local, last)));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return end;
        }
    };
    let Ok(echo_at) = go.recv() else { return end };
    rt.block_on(async {
        let mut buf = [0u8; 64];
        // Idle until the echo, watching for the stack to give up.
        match tokio::time::timeout_at(echo_at.into(), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => {
                end.failed_at = Some(Instant::now());
                end.error = Some("read: end of stream".into());
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                end.failed_at = Some(Instant::now());
                end.error = Some(format!("read: std::io::Error {{ kind: {:?} }}: {e}", e.kind()));
                return;
            }
        }
        let sent = Instant::now();
        let answered = stream.write_all(b"still there?\n").await.is_ok()
            && matches!(tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await, Ok(Ok(n)) if n > 0);
        end.echo = Some((sent, answered));
    });
    end
}

fn run_tcp(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = nat_idle(ctx);
    let tcp = ctx.config.tcp;
    let tb = ctx.testbed_with_nat("kaspec-tcp", nat)?;
    let addr = crate::tcp::server_addr(&tb);
    let _server = crate::tcp::start_server(ctx, &tb)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let client_thread = tb.client.spawn_thread("kaspec-nat-client", move || tcp_client(addr, tcp, ready_tx, go_rx))?;
    let (local, last) = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| Error::Other("tcp client did not connect within 10 s".into()))?
        .map_err(|e| Error::io(format!("tcp client connecting to {addr} through the NAT"), e))?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    let t0 = last + nat;
    let client_exp = tcp_client_expectation(&tcp, nat);
    // Idle for 3 × N, or past the keep-alive's death when that comes later.
    let wait_ms = (3 * ms_of(nat)).max(client_exp.max_ms.map(|m| m + ms_of(nat) + 1000).unwrap_or(0));
    let echo_at = last + Duration::from_millis(wait_ms);
    go_tx.send(echo_at).map_err(|_| Error::Other("tcp client thread ended early".into()))?;
    // Watch the server until the echo: after it the client closes, and that
    // clean close is not the server's detection.
    let server_closed = watch.wait(echo_at - Duration::from_millis(100))?;
    let end = client_thread.join()?;

    let mut timeline = vec![(last, "last segment of the flow".to_string())];
    let (detected_at, error) = match (end.failed_at, end.echo) {
        (Some(t), _) => (Some(t), end.error),
        (None, Some((t, true))) => {
            timeline.push((t, "echo after the idle period answered".into()));
            (None, Some(format!("after {} of idleness the connection still answers", kaspec_harness::expect::ms(wait_ms))))
        }
        (None, Some((t, false))) => {
            timeline.push((t, "echo after the idle period unanswered".into()));
            // The stack did not detect anything; the connection is broken all the same.
            let broken = format!("after {} of idleness an echo got no answer in 2 s: the NAT dropped it", kaspec_harness::expect::ms(wait_ms));
            if client_exp.level == Level::Must && !client_exp.expects_detection() {
                (Some(t), Some(broken))
            } else {
                (None, Some(broken))
            }
        }
        (None, None) => (None, None),
    };
    let mut config = ctx.config.effective("tcp.");
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    let deadline_ms = rel_ms(t0, echo_at + Duration::from_secs(2)).max(0) as u64;
    let release = crate::case::Releases { client: None, ..crate::case::releases(&tb, local, addr) };
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release };
    Ok(facts.both_sides(
        crate::tcp::implementation(),
        crate::tcp::server_implementation(),
        Side { expected: client_exp, detected_at, error, deadline_ms },
        Side::from_socket(
            Expectation::not_detected("server keep-alive off; whatever the client sends after the expiry dies at the NAT", SPEC),
            server_closed,
            deadline_ms,
            "server",
        ),
        &ctx.deviations,
    ))
}

// --- MQTT ----------------------------------------------------------------------

/// rumqttc pings every K whatever the traffic; the mapping survives if K < N.
pub fn mqtt_kept(k: Duration, nat: Duration) -> bool {
    !k.is_zero() && k < nat
}

pub fn mqtt_expectations(k: Duration, nat: Duration) -> (Expectation, Expectation) {
    let (k_ms, n) = (ms_of(k), ms_of(nat));
    let spec = "MQTT 3.1.1 §3.1.2.10, RFC 5382 §5";
    if k.is_zero() {
        let e = || Expectation::not_detected(format!("Keep Alive 0: nothing refreshes the mapping; it is forgotten after N = {n} ms and neither side notices"), spec);
        return (e(), e());
    }
    if let Some(race) = nat_race("Keep Alive K", k, nat, spec) {
        return (race.clone(), race);
    }
    if mqtt_kept(k, nat) {
        let e = || Expectation::must_stay_up(format!("a PINGREQ every K = {k_ms} ms < N = {n} ms refreshes the mapping: the session survives 3 × N"), spec);
        return (e(), e());
    }
    // t0 = CONNACK + N; the first PINGREQ (K after it) is dropped.
    let c = (2 * k_ms).saturating_sub(n);
    let client = Expectation::window(
        c,
        c,
        format!("K = {k_ms} ms ≥ N = {n} ms: the first PINGREQ (K after CONNACK) meets the forgotten mapping; AwaitPingResp at 2K after CONNACK, − N: 2×{k_ms} − {n} = {c} ms"),
        "MQTT 3.1.1 §3.1.2.10 + rumqttc keep-alive algorithm",
        Level::Should,
    );
    let (lo, hi) = (k_ms.saturating_sub(n), (3 * k_ms / 2).saturating_sub(n));
    let server = Expectation::window(
        lo,
        hi,
        format!("the broker last heard the CONNECT: disconnect after 1.5 × K of silence, not before K: [K, 1.5K] − N = [{lo}, {hi}] ms"),
        "MQTT 3.1.1 §3.1.2.10 [MQTT-3.1.2-24]",
        Level::Must,
    );
    (client, server)
}

fn run_mqtt(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = nat_idle(ctx);
    let k = ctx.config.mqtt.keep_alive;
    let program = crate::mqtt::broker_program(ctx)?;
    let broker_impl = crate::mqtt::broker_implementation(&program);
    let tb = ctx.testbed_with_nat("mosquitto", nat)?;
    let (_broker, addr) = crate::mqtt::start_broker(ctx, &tb, program)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let id = format!("kaspec-{}", tb.tag);
    let client_thread = tb.client.spawn_thread("kaspec-mqtt-client", move || crate::mqtt::client(addr, id, k, true, ready_tx, stop_rx))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(10) + 3 * k)
        .map_err(|_| Error::Other("mqtt client thread did not report".into()))?
        .map_err(Error::Other)?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    let t0 = ready.last_out + nat;
    let (client_exp, server_exp) = mqtt_expectations(k, nat);
    let quiet_ms = 3 * ms_of(nat);
    let client_deadline_ms = client_exp.deadline_ms(quiet_ms);
    let server_deadline_ms = server_exp.deadline_ms(quiet_ms) + crate::deviations::late_allowance_ms(&ctx.deviations, case.id, "server", &broker_impl.name);
    // The client is stopped (and closes) only after the broker was watched,
    // or its clean close would look like the broker's detection.
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms.max(client_deadline_ms)))?;
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(client_deadline_ms)));
    let mut end = client_thread.join()?.ok_or_else(|| Error::Other("mqtt client ended without a result".into()))?;
    if end.failed_at.is_some_and(|t| t > t0 + Duration::from_millis(client_deadline_ms)) {
        end.failed_at = None;
        end.error = end.error.map(|e| format!("after the client's deadline: {e}"));
    }
    let mut timeline = end.events;
    timeline.push((ready.last_out, "last packet before the mapping expired (CONNACK)".into()));
    let mut config = ctx.config.effective("mqtt.");
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    let release = crate::case::Releases { client: None, ..crate::case::releases(&tb, ready.local, addr) };
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release };
    Ok(facts.both_sides(
        crate::mqtt::client_implementation(),
        broker_impl,
        Side { expected: client_exp, detected_at: end.failed_at, error: end.error, deadline_ms: client_deadline_ms },
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.deviations,
    ))
}

// --- WebSocket -------------------------------------------------------------------

/// The client's Ping every P is the only traffic: the mapping survives if P < N.
pub fn websocket_expectation(w: &crate::config::WebSocketConfig, nat: Duration) -> Expectation {
    let (p, t, n) = (ms_of(w.ping_interval), ms_of(w.pong_timeout), ms_of(nat));
    let spec = "RFC 6455 §5.5.2 (heartbeat pattern), RFC 5382 §5";
    if let Some(race) = nat_race("P", w.ping_interval, nat, spec) {
        return race;
    }
    if w.ping_interval < nat {
        return Expectation::must_stay_up(format!("a Ping every P = {p} ms < N = {n} ms refreshes the mapping: the connection survives 3 × N"), spec);
    }
    // t0 = last frame + N; the next Ping (P after the last) is dropped; dead
    // at last frame + P + T.
    let d = (p + t).saturating_sub(n);
    Expectation::window(
        d,
        d,
        format!("P = {p} ms ≥ N = {n} ms: the mapping expires N after the last Pong; the next Ping is dropped; dead at last frame + P + T, − N: {p} + {t} − {n} = {d} ms"),
        spec,
        Level::Must,
    )
}

fn run_websocket(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    use crate::websocket::{heartbeat_client, last_before, Ev, ReadyAfter, WsServer, QUIET};
    let nat = nat_idle(ctx);
    let w = ctx.config.websocket;
    let tb = ctx.testbed_with_nat("kaspec-ws-quiet", nat)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(crate::websocket::PORT));
    let _server = Server::start(&tb, &WsServer::Kaspec.spec(ctx, addr, QUIET)?)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_thread = tb.client.spawn_thread("kaspec-ws-client", move || heartbeat_client(addr, w, ReadyAfter::Connected, ready_tx, stop_rx))?;
    ready_rx
        .recv_timeout(Duration::from_secs(10) + 3 * w.ping_interval)
        .map_err(|_| Error::Other("websocket client thread did not report".into()))?
        .map_err(|e| Error::Other(format!("websocket client through the NAT: {e}")))?;
    let expected = websocket_expectation(&w, nat);
    // Watch 3 × N, or past the heartbeat's verdict when that comes later.
    let watch_ms = (3 * ms_of(nat)).max(expected.max_ms.map(|m| m + ms_of(nat) + 1000).unwrap_or(0));
    let started = Instant::now();
    let _ = stop_tx.send(Some(started + Duration::from_millis(watch_ms)));
    let end = client_thread.join()?;
    // t0: N after the flow's last packet before the break (the last frame the
    // client received before it failed, or before the end of the watch).
    let until = end.failed_at.unwrap_or(started + Duration::from_millis(watch_ms));
    let last = last_before(&end.events, until, &[Ev::Connected, Ev::PongReceived, Ev::ServerPing, Ev::Frame]).unwrap_or(started);
    let t0 = last + nat;
    let mut timeline: Vec<(Instant, String)> = end.events.iter().map(|(t, e)| (*t, e.text().to_string())).collect();
    timeline.push((last, "last frame received before the mapping expired".into()));
    let mut config = ctx.config.effective("websocket.");
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    config.insert("server.ping_interval".into(), "off (3600s)".into());
    let deadline_ms = rel_ms(t0, started + Duration::from_millis(watch_ms)).max(0) as u64;
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release: Default::default() };
    Ok(facts.client_only(
        crate::websocket::client_implementation(),
        WsServer::Kaspec.implementation(),
        Side { expected, detected_at: end.failed_at, error: end.error, deadline_ms },
        &ctx.deviations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(i: u64, v: u64, n: u32) -> TcpConfig {
        TcpConfig { keepalive: true, idle: Duration::from_secs(i), interval: Duration::from_secs(v), count: n, user_timeout: Duration::ZERO }
    }

    #[test]
    fn the_threshold_is_the_keepalive_period_against_the_nat_timeout() {
        let nat = Duration::from_secs(4);
        assert!(tcp_kept(&tcp(2, 1, 3), nat));
        assert!(!tcp_kept(&tcp(4, 1, 3), nat));
        assert_eq!(tcp_client_expectation(&tcp(2, 1, 3), nat).level, Level::Must);
        assert!(!tcp_client_expectation(&tcp(2, 1, 3), nat).expects_detection());
        // I = 5 s ≥ N: dead at 5 + 2×1 = 7 s after the last segment, 3 s after the expiry.
        assert_eq!(tcp_client_expectation(&tcp(5, 1, 2), nat).min_ms, Some(3000));
        assert!(mqtt_kept(Duration::from_secs(2), nat) && !mqtt_kept(Duration::from_secs(5), nat));
        let (c, s) = mqtt_expectations(Duration::from_secs(5), nat);
        assert_eq!((c.min_ms, s.min_ms, s.max_ms), (Some(6000), Some(1000), Some(3500)));
        // A period equal to N races the expiry: reported, not judged.
        let race = tcp_client_expectation(&tcp(4, 1, 3), nat);
        assert!(!race.expects_detection() && race.level == Level::Info, "{race:?}");
        assert_eq!(mqtt_expectations(Duration::from_secs(4), nat).0.level, Level::Info);
    }
}

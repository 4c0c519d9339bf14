//! WebSocket heartbeats (RFC 6455 §5.5.2 Ping, §5.5.3 Pong): a
//! tokio-tungstenite client with the usual pattern — ping every P, declare
//! the peer dead when nothing was received for P + T — against two servers
//! that nobody confuses: our tokio-tungstenite server (`kaspec serve
//! websocket`, the same pattern with its own P/T) and Python's `websockets`
//! (Debian's python3-websockets), whose keepalive loop sleeps P, pings, and
//! waits T for the Pong. Server settings: `fixtures/websocket/servers.toml`.
//!
//! The RFC defines no timeout: P and T are the application's. Each side is
//! judged against its own algorithm, anchored on the events the client sees
//! (RTT here is far below a millisecond, so "sent" and "received" coincide).

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level, Verdict};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};
use tokio_tungstenite::tungstenite::Message;

use crate::case::{CaseDef, Docker, Protocol};
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{ms_of, rel_ms};
use crate::model::impaired::{impaired_expectation, impaired_watch_ms};
use crate::model::periodic::{next_send_meets_rst, Before};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::config::WebSocketConfig;
use crate::peers::python as servers;

mod nat;

use nat::*;

pub const PORT: u16 = 8080;
const SPEC_PING: &str = "RFC 6455 §5.5.2, §5.5.3";

pub static PROTOCOL: Protocol = Protocol {
    name: "websocket",
    cases: &CASES,
    prerequisites: || crate::peers::python::python_module("websockets", "python3-websockets"),
};

/// The compose services of the WebSocket cases on the docker testbed: our
/// server with the [kaspec] heartbeat of fixtures/websocket/servers.toml, and
/// with none (QUIET).
const WS: Docker = Docker::Service { service: "kaspec-ws", implementation: "kaspec-ws (tokio-tungstenite)" };
const WS_QUIET: Docker = Docker::Service { service: "kaspec-ws-quiet", implementation: "kaspec-ws (tokio-tungstenite)" };

/// RFC 6455 §5.5.2 and §5.5.3.
const PING_PONG: &str = "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response, unless it already received a Close frame. [...] A Pong frame sent in response to a Ping frame must have identical \"Application data\" as found in the message body of the Ping frame being replied to.";
/// RFC 6455 §5.5.2: the RFC defines no timeout; the heartbeat pattern's P
/// and T are the application's.
const KEEPALIVE: &str = "NOTE: A Ping frame may serve either as a keepalive or as a means to verify that the remote endpoint is still responsive.";

pub static CASES: [CaseDef; 6] = [
    CaseDef {
        id: "websocket/rfc6455-5.5.2/1",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2, §5.5.3",
        quote: PING_PONG,
        description: "The client sends a Ping with a payload; the server must answer with a Pong carrying the same payload.",
        requirement: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response [...] A Pong frame sent in response to a Ping frame must have identical \"Application data\"",
        faults: &[],
        fixed_fault: Some(FaultKind::None),
        docker: WS,
        run: run_pong_echo,
        budget: |_| Duration::from_secs(10),
    },
    CaseDef {
        id: "websocket/rfc6455-5.5.2/2",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2 (heartbeat pattern: ping every P, dead after P + T of silence)",
        quote: KEEPALIVE,
        description: "Idle connection with heartbeats both ways; the path fails: each side's heartbeat declares the peer dead in its own window.",
        requirement: "A Ping may serve as a keepalive; with the ping-every-P / silence-for-P+T pattern an idle dead peer is detected in (T, P + T]",
        faults: &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Crash, FaultKind::Delay, FaultKind::Loss],
        fixed_fault: None,
        docker: WS,
        run: run_heartbeat,
        budget,
    },
    CaseDef {
        id: "websocket/rfc6455-5.5.2/3",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2 (heartbeat pattern)",
        quote: KEEPALIVE,
        description: "The server process is frozen (SIGSTOP): TCP stays up, its kernel answers, but no Pong comes; the client's heartbeat must notice.",
        requirement: "An application-level heartbeat detects a hung peer that TCP keep-alive cannot see",
        faults: &[FaultKind::Freeze],
        fixed_fault: Some(FaultKind::Freeze),
        docker: WS,
        run: run_heartbeat,
        budget,
    },
    CaseDef {
        id: "websocket/rfc6455-5.5.2/4",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2 (heartbeat pattern) on a slow path",
        quote: KEEPALIVE,
        description: "False positive: a pong timeout of 200 ms on a path whose round trip becomes 300 ms; the server is alive and answers every Ping.",
        requirement: "A heartbeat timeout must exceed the path's round trip; T = 200 ms < RTT = 300 ms declares a live peer dead at the first Ping after the path slows",
        faults: &[FaultKind::Delay],
        fixed_fault: Some(FaultKind::Delay),
        docker: WS_QUIET,
        run: run_false_positive,
        budget: |ctx| Duration::from_secs(8) + 3 * (ctx.config.websocket.ping_interval + FALSE_POSITIVE_T),
    },
    CaseDef {
        id: "websocket/rfc6455-5.5.2/6",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2 (heartbeat pattern) on the network profile's path",
        quote: KEEPALIVE,
        description: "The client's own heartbeat (P and T from the configuration) against a server that sends no Pings, on a path that becomes as slow or lossy as the network profile (--network): does T hold on that path?",
        requirement: "A pong timeout above the path's round trip (and TCP's retransmissions on a lossy path) never declares a live server dead; one below it does at the first Ping",
        faults: &[FaultKind::Delay, FaultKind::Loss],
        fixed_fault: None,
        docker: WS_QUIET,
        run: run_own_heartbeat_on_impaired_path,
        budget: |ctx| {
            let w = ctx.config.websocket;
            Duration::from_secs(8) + Duration::from_millis(crate::model::impaired::impaired_watch_ms(w.ping_interval + w.pong_timeout, &ctx.impairments().1))
        },
    },
    // RFC 6455 §5.5.2 through a NAT (RFC 5382 §5): only a heartbeat below
    // the NAT's idle timeout keeps the mapping.
    CaseDef {
        id: "websocket/rfc6455-5.5.2/5",
        protocol: "websocket",
        spec: "RFC 6455 §5.5.2, RFC 5382 §5",
        quote: KEEPALIVE,
        description: "Idle WebSocket client pinging every P through a NAT that forgets idle flows after N (the server sends no pings): P below N keeps the connection; at or above N the Ping is dropped and the heartbeat notices.",
        requirement: "A client heartbeat keeps a NAT mapping only when its period is below the NAT's idle timeout; when it does not, the pattern declares the peer dead P + T after the last frame",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        docker: WS_QUIET,
        run: run_nat,
        budget: nat_budget,
    },
];

/// The false-positive case's pong timeout and path.
const FALSE_POSITIVE_T: Duration = Duration::from_millis(200);
const FALSE_POSITIVE_RTT: Duration = Duration::from_millis(300);

fn budget(ctx: &Ctx) -> Duration {
    let w = ctx.config.websocket;
    // set-up (one ping round, one server ping), then 3× the longest window, per server.
    2 * (Duration::from_secs(4) + 3 * (w.ping_interval + w.pong_timeout).max(Duration::from_secs(3)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

/// Our server sending no Pings (in practice: one an hour), as
/// docker-compose.yml's kaspec-ws-quiet runs it.
pub const QUIET: Heartbeat = Heartbeat { ping_interval: Duration::from_secs(3600), pong_timeout: Duration::from_secs(3600) };

/// The servers under test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WsServer {
    /// Our tokio-tungstenite server: closes after P + T without a frame.
    Kaspec,
    /// Python `websockets`: sleeps P, pings, waits T for the Pong.
    PythonWebsockets,
}

pub const SERVERS: [WsServer; 2] = [WsServer::Kaspec, WsServer::PythonWebsockets];

/// The servers a run measures: all here, ours only on the docker testbed
/// (docker-compose.yml's kaspec-ws and kaspec-ws-quiet).
fn measured(ctx: &Ctx) -> impl Iterator<Item = WsServer> {
    let docker = ctx.docker.is_some();
    SERVERS.into_iter().filter(move |s| !docker || *s == WsServer::Kaspec)
}

impl WsServer {
    pub fn heartbeat(self, fixtures: &Path) -> Result<Heartbeat> {
        let section = match self {
            WsServer::Kaspec => "kaspec",
            WsServer::PythonWebsockets => "python-websockets",
        };
        let d = servers::durations(&servers_file(fixtures), section, &["ping_interval", "pong_timeout"])?;
        Ok(Heartbeat { ping_interval: d[0], pong_timeout: d[1] })
    }

    pub fn implementation(self) -> Implementation {
        match self {
            WsServer::Kaspec => Implementation::new("kaspec-ws (tokio-tungstenite)", env!("KASPEC_VERSION_TOKIO_TUNGSTENITE")),
            WsServer::PythonWebsockets => Implementation::new("python-websockets", servers::python_version("websockets")),
        }
    }

    pub(crate) fn spec(self, ctx: &Ctx, addr: SocketAddrV4, hb: Heartbeat) -> Result<ServerSpec> {
        let (name, program, args) = match self {
            WsServer::Kaspec => {
                let mut args = ctx.serve.args.clone();
                args.extend([
                    "websocket".into(),
                    "--listen".into(),
                    addr.to_string(),
                    "--ping-interval".into(),
                    format!("{}ms", ms_of(hb.ping_interval)),
                    "--pong-timeout".into(),
                    format!("{}ms", ms_of(hb.pong_timeout)),
                ]);
                ("kaspec-ws", ctx.serve.program.clone(), args)
            }
            WsServer::PythonWebsockets => {
                let python = require_program(servers::PYTHON, "python3")?;
                servers::python_module("websockets", "python3-websockets")?;
                let script = ctx.fixtures.join("websocket/ws_server.py");
                (
                    "python-websockets",
                    python,
                    vec![
                        script.display().to_string(),
                        addr.ip().to_string(),
                        addr.port().to_string(),
                        format!("{}", hb.ping_interval.as_secs_f64()),
                        format!("{}", hb.pong_timeout.as_secs_f64()),
                    ],
                )
            }
        };
        // docker-compose.yml's kaspec-ws runs the [kaspec] heartbeat of
        // fixtures/websocket/servers.toml, kaspec-ws-quiet the QUIET one.
        let container = (self == WsServer::Kaspec).then(|| ContainerCheck {
            service: if hb == QUIET { "kaspec-ws-quiet" } else { "kaspec-ws" }.into(),
            args: vec!["--ping-interval".into(), format!("{}ms", ms_of(hb.ping_interval)), "--pong-timeout".into(), format!("{}ms", ms_of(hb.pong_timeout))],
            ..Default::default()
        });
        Ok(ServerSpec { name: name.into(), program, args, addr, ready_within: Duration::from_secs(10), container, ..Default::default() })
    }
}

pub fn client_implementation() -> Implementation {
    Implementation::new("tokio-tungstenite", env!("KASPEC_VERSION_TOKIO_TUNGSTENITE"))
}

// --- expectations ------------------------------------------------------------

/// The client's window. `last_rx` = its last frame received before the fault,
/// `last_ping` = its last Ping sent before the fault, both relative to t0 (ms, ≤ 0).
pub fn client_expectation(w: &WebSocketConfig, fault: FaultKind, last_rx: i64, last_ping: i64) -> Expectation {
    let (p, t) = (ms_of(w.ping_interval) as i64, ms_of(w.pong_timeout) as i64);
    if fault == FaultKind::Reset {
        return next_send_meets_rst("its next Ping", last_ping, p, Before::AckOrRetransmission, "RFC 9293 §3.5.3 (reset processing)", Level::Must);
    }
    let d = (last_rx + p + t).max(0) as u64;
    Expectation::window(
        d,
        d,
        format!("nothing received for P + T after the last frame ({last_rx:+} ms): {last_rx} + {p} + {t} = {d} ms (within (T, P + T])"),
        SPEC_PING,
        Level::Must,
    )
}

/// A server's window. `last_heard` = the client's last frame that reached it,
/// `last_server_ping` = its own last Ping before the fault (both vs t0, ms).
pub fn server_expectation(server: WsServer, hb: &Heartbeat, fault: FaultKind, last_heard: i64, last_server_ping: i64) -> Expectation {
    let (p, t) = (ms_of(hb.ping_interval) as i64, ms_of(hb.pong_timeout) as i64);
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the server process is frozen: it detects nothing", SPEC_PING);
    }
    if fault == FaultKind::Reset {
        return next_send_meets_rst("its next Ping", last_server_ping, p, Before::AckOrRetransmission, "RFC 9293 §3.5.3 (reset processing)", Level::Must);
    }
    let (d, how) = match server {
        WsServer::Kaspec => ((last_heard + p + t).max(0) as u64, format!("nothing received for P + T after the client's last frame ({last_heard:+} ms): {last_heard} + {p} + {t}")),
        WsServer::PythonWebsockets => (
            (last_server_ping + p + t).max(0) as u64,
            format!("sleep P after its last Ping ({last_server_ping:+} ms), Ping, wait T for the Pong: {last_server_ping} + {p} + {t}"),
        ),
    };
    Expectation::window(d, d, format!("{how} = {d} ms"), SPEC_PING, Level::Must)
}

// --- the client ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    Connected,
    PingSent,
    PongReceived,
    ServerPing,
    Frame,
}

impl Ev {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Ev::Connected => "opening handshake done",
            Ev::PingSent => "client Ping sent",
            Ev::PongReceived => "Pong received",
            Ev::ServerPing => "server Ping received (Pong sent)",
            Ev::Frame => "frame received",
        }
    }
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
    pub events: Vec<(Instant, Ev)>,
}

/// Connects, runs the heartbeat; reports ready once a Pong and a server Ping
/// were seen; runs until its heartbeat or a read fails, or `stop_at`.
/// When the heartbeat client reports ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadyAfter {
    /// A Pong and a Ping from the server (both directions' heartbeats run).
    PongAndServerPing,
    /// A Pong (the server does not ping).
    Pong,
    /// The opening handshake (the first Ping may never be answered).
    Connected,
}

pub(crate) fn heartbeat_client(
    server: SocketAddrV4,
    w: WebSocketConfig,
    ready_after: ReadyAfter,
    ready: mpsc::Sender<std::result::Result<SocketAddrV4, String>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mut events: Vec<(Instant, Ev)> = Vec::new();
        let fail = |events: Vec<(Instant, Ev)>, e: String| ClientEnd { failed_at: Some(Instant::now()), error: Some(e), events };
        let url = format!("ws://{server}/");
        let ws = match tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                let _ = ready.send(Err(format!("connecting to {url}: {e}")));
                return ClientEnd { failed_at: None, error: None, events };
            }
            Err(_) => {
                let _ = ready.send(Err(format!("connecting to {url}: no answer in 5 s")));
                return ClientEnd { failed_at: None, error: None, events };
            }
        };
        let (mut tx, mut rx) = ws.split();
        let mut ready = Some(ready);
        let setup_deadline = Instant::now() + Duration::from_secs(5) + 2 * w.ping_interval;
        let mut stop_at = stop_at;
        let mut ticker = tokio::time::interval_at((Instant::now() + w.ping_interval).into(), w.ping_interval);
        let mut last_rx = Instant::now();
        events.push((last_rx, Ev::Connected));
        loop {
            let seen = |e: Ev| events.iter().any(|(_, x)| *x == e);
            if ready.is_some() && match ready_after {
                ReadyAfter::PongAndServerPing => seen(Ev::PongReceived) && seen(Ev::ServerPing),
                ReadyAfter::Pong => seen(Ev::PongReceived),
                ReadyAfter::Connected => true,
            } {
                let r = ready.take().expect("checked");
                let _ = r.send(local_end_towards(server).map_err(|e| e.to_string()));
            }
            let limit = match (&ready, *stop_at.borrow()) {
                (Some(_), _) => setup_deadline,
                (None, Some(t)) => t,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                m = rx.next() => {
                    let now = Instant::now();
                    match m {
                        Some(Ok(msg)) => {
                            last_rx = now;
                            let ev = match msg {
                                Message::Pong(_) => Ev::PongReceived,
                                Message::Ping(_) => {
                                    // tungstenite queued the Pong; send it now.
                                    if let Err(e) = tx.flush().await {
                                        return fail(events, format!("tungstenite::Error::{e:?}: {e}"));
                                    }
                                    Ev::ServerPing
                                }
                                Message::Close(frame) => {
                                    return fail(events, format!("server sent Close: {frame:?}"));
                                }
                                _ => Ev::Frame,
                            };
                            events.push((now, ev));
                        }
                        Some(Err(e)) => return fail(events, format!("tungstenite::Error::{e:?}: {e}")),
                        None => return fail(events, "the stream ended (connection closed)".into()),
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = tx.send(Message::Ping(b"kaspec".to_vec().into())).await {
                        return fail(events, format!("sending Ping: tungstenite::Error::{e:?}: {e}"));
                    }
                    events.push((Instant::now(), Ev::PingSent));
                }
                _ = tokio::time::sleep_until((last_rx + w.ping_interval + w.pong_timeout).into()) => {
                    let p = ms_of(w.ping_interval) + ms_of(w.pong_timeout);
                    return fail(events, format!("heartbeat: nothing received for P + T = {p} ms"));
                }
                _ = tokio::time::sleep_until(limit.into()) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err("no Pong and server Ping within the set-up time".into()));
                    }
                    return ClientEnd { failed_at: None, error: None, events };
                }
                changed = stop_at.changed() => {
                    if changed.is_err() {
                        // The run went away: stop instead of spinning on a closed channel.
                        return ClientEnd { failed_at: None, error: None, events };
                    }
                }
            }
        }
    })
}

// --- cases -------------------------------------------------------------------

pub(crate) fn last_before(events: &[(Instant, Ev)], before: Instant, kinds: &[Ev]) -> Option<Instant> {
    events.iter().filter(|(t, e)| *t < before && kinds.contains(e)).map(|(t, _)| *t).last()
}

fn run_heartbeat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for server in measured(ctx) {
        out.extend(heartbeat_against(ctx, case, fault, server)?);
    }
    Ok(out)
}

fn heartbeat_against(ctx: &Ctx, case: &CaseDef, fault: FaultKind, which: WsServer) -> Result<Vec<CaseResult>> {
    let hb = which.heartbeat(&ctx.fixtures)?;
    let w = ctx.config.websocket;
    let tb = ctx.testbed_for("kaspec-ws")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, hb)?)?;
    let server_impl = which.implementation();

    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_thread = tb.client.spawn_thread("kaspec-ws-client", move || heartbeat_client(addr, w, ReadyAfter::PongAndServerPing, ready_tx, stop_rx))?;
    let local = ready_rx
        .recv_timeout(Duration::from_secs(10) + 3 * w.ping_interval.max(hb.ping_interval))
        .map_err(|_| Error::Other("websocket client thread did not report".into()))?
        .map_err(|e| Error::Other(format!("websocket client against {}: {e}", server_impl.name)))?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    // Let the path fail halfway through the client's ping period.
    std::thread::sleep(w.ping_interval / 2);
    let applied = tb.apply_fault(fault, &Flow { client: local, server: addr }, Some(server.pid()))?;
    let t0 = applied.in_force_at;

    // Nominal windows (as if every anchor were at t0) give the deadlines; a
    // live peer on an impaired path is watched for a while.
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        // Both watched equally long: the client's own close at its deadline
        // must not look like the server's detection.
        Some(i) => {
            let watch = impaired_watch_ms((w.ping_interval + w.pong_timeout).max(hb.ping_interval + hb.pong_timeout), i);
            (watch, watch)
        }
        None => (
            client_expectation(&w, fault, 0, 0).deadline_ms(10_000),
            server_expectation(which, &hb, fault, 0, 0).deadline_ms(3 * ms_of(hb.ping_interval + hb.pong_timeout).max(3000)),
        ),
    };
    // On a live path the client is stopped (and closes) only after the
    // server's watch ended: its close is not the server's detection.
    let stop_ms = if imp.is_some() { client_deadline_ms.max(server_deadline_ms) + 500 } else { client_deadline_ms };
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(stop_ms)));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let mut end = client_thread.join()?;
    if end.failed_at.is_some_and(|t| t > t0 + Duration::from_millis(client_deadline_ms)) {
        end.failed_at = None;
        end.error = end.error.map(|e| format!("after the client's deadline: {e}"));
    }

    let rel = |t: Option<Instant>| t.map(|t| rel_ms(t0, t)).unwrap_or(0);
    let last_rx = rel(last_before(&end.events, t0, &[Ev::PongReceived, Ev::ServerPing, Ev::Frame]));
    let last_ping = rel(last_before(&end.events, t0, &[Ev::PingSent]));
    let last_heard = rel(last_before(&end.events, t0, &[Ev::PingSent, Ev::ServerPing]));
    let last_server_ping = rel(last_before(&end.events, t0, &[Ev::ServerPing]));
    let mut timeline: Vec<(Instant, String)> = end.events.iter().map(|(t, e)| (*t, e.text().to_string())).collect();
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let mut config = ctx.config.effective("websocket.");
    config.insert("server.ping_interval".into(), format!("{}ms", ms_of(hb.ping_interval)));
    config.insert("server.pong_timeout".into(), format!("{}ms", ms_of(hb.pong_timeout)));
    let release = crate::outcome::Releases { client: None, ..crate::outcome::releases(&tb, local, addr) };
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release };
    let (client_expected, server_expected) = match &imp {
        // The silence limit is P + T while frames come every P: T is the slack for a slower path.
        Some(i) => (
            impaired_expectation("the slack beyond the ping period, pong timeout T =", w.pong_timeout, i, SPEC_PING),
            impaired_expectation("the server's pong timeout T =", hb.pong_timeout, i, SPEC_PING),
        ),
        None => (client_expectation(&w, fault, last_rx, last_ping), server_expectation(which, &hb, fault, last_heard, last_server_ping)),
    };
    Ok(facts.both_sides(
        client_implementation(),
        server_impl,
        Side { expected: client_expected, detected_at: end.failed_at, error: end.error, deadline_ms: client_deadline_ms },
        Side::from_socket(
            server_expected,
            server_closed,
            server_deadline_ms,
            "server",
        ),
        &ctx.deviations,
    ))
}

/// The client pings every P (its configured value) with T = 200 ms; our
/// server does not ping (so only Pongs reach the client). Halfway through a
/// ping period the round trip becomes 300 ms: the next Pong comes 300 ms
/// after its Ping, 100 ms after the client's silence limit L + P + T.
fn run_false_positive(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let w = WebSocketConfig { ping_interval: ctx.config.websocket.ping_interval, pong_timeout: FALSE_POSITIVE_T };
    let imp = kaspec_harness::impair::Impairment { rtt: FALSE_POSITIVE_RTT, jitter: Duration::ZERO, loss_percent: 0.0, seed: 1 };
    quiet_server_on_impaired_path(ctx, case, fault, w, imp, true)
}

fn run_own_heartbeat_on_impaired_path(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let imp = ctx.impairment(fault).ok_or_else(|| Error::Other(format!("{}: takes delay or loss, not {fault}", case.id)))?;
    quiet_server_on_impaired_path(ctx, case, fault, ctx.config.websocket, imp, false)
}

/// The client's expectation when only its own Pings make traffic and the
/// path becomes `imp` at t0, `last_rx` (≤ 0) being its last frame before.
pub fn own_heartbeat_expectation(w: &WebSocketConfig, imp: &kaspec_harness::impair::Impairment, last_rx: i64) -> Expectation {
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
    Expectation::not_detected(format!("the round trip ({lo}–{hi} ms) straddles T = {t} ms: a false detection may or may not come"), SPEC_PING)
}

/// Our server sends no Pings, so only the Pongs to the client's own Pings
/// reach the client. Halfway through a ping period the path becomes `imp`.
fn quiet_server_on_impaired_path(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    w: WebSocketConfig,
    imp: kaspec_harness::impair::Impairment,
    fixed: bool,
) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for("kaspec-ws-quiet")?;
    tb.set_impairments(imp, imp);
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let _server = Server::start(&tb, &WsServer::Kaspec.spec(ctx, addr, QUIET)?)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_thread = tb.client.spawn_thread("kaspec-ws-client", move || heartbeat_client(addr, w, ReadyAfter::Pong, ready_tx, stop_rx))?;
    let local = ready_rx
        .recv_timeout(Duration::from_secs(10) + 3 * w.ping_interval)
        .map_err(|_| Error::Other("websocket client thread did not report".into()))?
        .map_err(|e| Error::Other(format!("websocket client: {e}")))?;
    std::thread::sleep(w.ping_interval / 2);
    let applied = tb.apply_fault(fault, &Flow { client: local, server: addr }, None)?;
    let t0 = applied.in_force_at;
    let deadline_ms = if fixed { 3 * ms_of(w.ping_interval + w.pong_timeout + imp.rtt).max(2000) } else { impaired_watch_ms(w.ping_interval + w.pong_timeout, &imp) };
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadline_ms)));
    let end = client_thread.join()?;
    let rel = |t: Option<Instant>| t.map(|t| rel_ms(t0, t)).unwrap_or(0);
    let last_rx = rel(last_before(&end.events, t0, &[Ev::PongReceived, Ev::ServerPing, Ev::Frame]));
    let expected = own_heartbeat_expectation(&w, &imp, last_rx);
    let mut timeline: Vec<(Instant, String)> = end.events.iter().map(|(t, e)| (*t, e.text().to_string())).collect();
    timeline.push((t0, format!("path now: {}", imp.describe())));
    let mut config = ctx.config.effective("websocket.");
    if fixed {
        config.insert("websocket.pong_timeout".into(), format!("{}ms (fixed by this case)", ms_of(w.pong_timeout)));
    }
    config.insert("path".into(), imp.describe());
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release: Default::default() };
    Ok(facts.client_only(
        client_implementation(),
        WsServer::Kaspec.implementation(),
        Side { expected, detected_at: end.failed_at, error: end.error, deadline_ms },
        &ctx.deviations,
    ))
}

/// §5.5.2/§5.5.3: send one Ping with a payload, wait for its Pong (answering
/// anything else on the way), and compare the payloads.
fn ping_once(server: SocketAddrV4, payload: Vec<u8>, wait: Duration) -> std::result::Result<(Duration, Vec<u8>), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let url = format!("ws://{server}/");
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&url))
            .await
            .map_err(|_| format!("connecting to {url}: no answer in 5 s"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        let sent = Instant::now();
        ws.send(Message::Ping(payload.into())).await.map_err(|e| format!("sending Ping: {e}"))?;
        loop {
            match tokio::time::timeout_at((sent + wait).into(), ws.next()).await {
                Err(_) => return Err(format!("no Pong within {} ms", wait.as_millis())),
                Ok(Some(Ok(Message::Pong(p)))) => {
                    let rtt = sent.elapsed();
                    let _ = ws.close(None).await;
                    return Ok((rtt, p.to_vec()));
                }
                Ok(Some(Ok(Message::Ping(_)))) => ws.flush().await.map_err(|e| e.to_string())?,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(format!("tungstenite::Error::{e:?}: {e}")),
                Ok(None) => return Err("the stream ended before the Pong".into()),
            }
        }
    })
}

fn run_pong_echo(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let wait = ctx.config.websocket.pong_timeout;
    for which in measured(ctx) {
        let hb = which.heartbeat(&ctx.fixtures)?;
        let tb = ctx.testbed_for("kaspec-ws")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let _server = Server::start(&tb, &which.spec(ctx, addr, hb)?)?;
        // Binary, non-UTF-8, up to the 125-byte control-frame limit (§5.5).
        let payload: Vec<u8> = format!("kaspec-{}-", tb.tag).into_bytes().into_iter().chain([0u8, 1, 0x7f, 0x80, 0xfe, 0xff]).collect();
        let sent = payload.clone();
        let started = Instant::now();
        let outcome = tb.client.run(move || ping_once(addr, sent, wait))?;
        let t = ms_of(wait);
        let expected = Expectation::window(0, t, format!("a Pong with the same payload within the client's pong timeout T = {t} ms"), case.spec, Level::Must);
        let facts = RunFacts {
            case,
            fault,
            engine: "none".into(),
            config: ctx.config.effective("websocket."),
            t0: started,
            timeline: Vec::new(),
            release: Default::default(),
        };
        let (detected_at, error, echoed) = match &outcome {
            Ok((rtt, p)) => (Some(started + *rtt), None, Some(p.clone())),
            Err(e) => (None, Some(e.clone()), None),
        };
        let mut r = facts.result(
            SideOutcome {
                side: "server",
                implementation: which.implementation(),
                peer: client_implementation(),
                expected,
                detected_at,
                error,
                deadline_ms: t,
            },
            &ctx.deviations,
        );
        if let Some(p) = echoed {
            if p != payload {
                r.verdict = Verdict::Fail;
                r.verdict_detail = format!("Pong payload {p:02x?} differs from the Ping's {payload:02x?}");
            } else {
                r.verdict_detail = format!("{} ({} payload bytes echoed)", r.verdict_detail, p.len());
            }
        }
        out.push(r);
    }
    Ok(out)
}

// --- our server --------------------------------------------------------------

/// Our tokio-tungstenite server: echoes data frames, answers Pings, pings
/// every P and closes a connection that sent nothing for P + T.
pub fn serve(listen: SocketAddrV4, p: Duration, t: Duration) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("kaspec-ws listening on {listen} (P = {} ms, T = {} ms)", p.as_millis(), t.as_millis());
        loop {
            let (conn, peer) = listener.accept().await?;
            tokio::spawn(async move {
                let why = match tokio_tungstenite::accept_async(conn).await {
                    Ok(ws) => connection(ws, p, t).await,
                    Err(e) => format!("handshake: {e}"),
                };
                println!("closed {peer}: {why}");
            });
        }
    })
}

async fn connection(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, p: Duration, t: Duration) -> String {
    let (mut tx, mut rx) = ws.split();
    let mut ticker = tokio::time::interval_at((Instant::now() + p).into(), p);
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(msg)) => {
                    last_rx = Instant::now();
                    let r = match msg {
                        Message::Text(_) | Message::Binary(_) => tx.send(msg).await,
                        Message::Ping(_) => tx.flush().await,
                        Message::Close(_) => return "client sent Close".into(),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        return format!("write: {e}");
                    }
                }
                Some(Err(e)) => return format!("read: {e}"),
                None => return "end of stream".into(),
            },
            _ = ticker.tick() => {
                if let Err(e) = tx.send(Message::Ping(b"kaspec-server".to_vec().into())).await {
                    return format!("sending Ping: {e}");
                }
            }
            _ = tokio::time::sleep_until((last_rx + p + t).into()) => {
                return format!("heartbeat: nothing received for P + T = {} ms", (p + t).as_millis());
            }
        }
    }
}

/// Fixture path helper for callers that check prerequisites up front.
pub fn servers_file(fixtures: &Path) -> PathBuf {
    fixtures.join("websocket/servers.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: u64, t: u64) -> WebSocketConfig {
        WebSocketConfig { ping_interval: Duration::from_millis(p), pong_timeout: Duration::from_millis(t) }
    }

    #[test]
    fn client_window_is_p_plus_t_after_the_last_frame() {
        let e = client_expectation(&w(1000, 1000), FaultKind::Blackhole, -400, -500);
        assert_eq!((e.min_ms, e.max_ms), (Some(1600), Some(1600)));
        // Reset: at the latest the next Ping, P after the last one.
        let r = client_expectation(&w(1000, 1000), FaultKind::Reset, -400, -500);
        assert_eq!((r.min_ms, r.max_ms), (Some(0), Some(500)));
    }

    #[test]
    fn each_server_is_judged_by_its_own_algorithm() {
        let hb = Heartbeat { ping_interval: Duration::from_millis(1500), pong_timeout: Duration::from_millis(1000) };
        // Ours: from the client's last frame.
        assert_eq!(server_expectation(WsServer::Kaspec, &hb, FaultKind::Blackhole, -300, -900).max_ms, Some(2200));
        // Python websockets: from its own last Ping.
        assert_eq!(server_expectation(WsServer::PythonWebsockets, &hb, FaultKind::Blackhole, -300, -900).max_ms, Some(1600));
        assert!(!server_expectation(WsServer::Kaspec, &hb, FaultKind::Freeze, 0, 0).expects_detection());
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

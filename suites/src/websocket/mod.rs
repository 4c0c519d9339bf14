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
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};
use tokio_tungstenite::tungstenite::Message;

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;
use crate::drive;
use crate::drive::busy::Workload;
use crate::model::impaired::{impaired_expectation, impaired_watch_ms};
use crate::model::periodic::{next_send_meets_rst, Before};
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::peers::python as servers;
use crate::protocol::Protocol;
use knobs::WebSocketConfig;

mod client;
mod expect;
mod external;
pub mod knobs;
mod nat;
mod review;
mod run;
mod server;

use client::*;
use expect::*;
use nat::*;
use run::*;
pub use server::*;

pub const PORT: u16 = 8080;
const SPEC_PING: &str = "RFC 6455 §5.5.2, §5.5.3";

pub static PROTOCOL: Protocol = Protocol {
    name: "websocket",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || crate::peers::python::python_module("websockets", "python3-websockets"),
    review: review::review,
    external: &[HEARTBEAT.id],
};

/// The compose services of the WebSocket cases on the docker testbed: our
/// server with the [kaspec] heartbeat of fixtures/websocket/servers.toml, and
/// with none (QUIET).
const WS: Docker = Docker::Service {
    service: "kaspec-ws",
    implementation: "kaspec-ws (tokio-tungstenite)",
};
const WS_QUIET: Docker = Docker::Service {
    service: "kaspec-ws-quiet",
    implementation: "kaspec-ws (tokio-tungstenite)",
};

/// RFC 6455 §5.5.2 and §5.5.3.
const PING_PONG: &str = "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response, unless it already received a Close frame. [...] A Pong frame sent in response to a Ping frame must have identical \"Application data\" as found in the message body of the Ping frame being replied to.";
/// RFC 6455 §5.5.2: the RFC defines no timeout; the heartbeat pattern's P
/// and T are the application's.
const KEEPALIVE: &str = "NOTE: A Ping frame may serve either as a keepalive or as a means to verify that the remote endpoint is still responsive.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 7] = [
    &PONG_ECHO,
    &HEARTBEAT,
    &BUSY,
    &FROZEN_SERVER,
    &FALSE_POSITIVE,
    &OWN_HEARTBEAT_ON_IMPAIRED_PATH,
    &NAT,
];

pub static PONG_ECHO: CaseDef = CaseDef {
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
};

pub static HEARTBEAT: CaseDef = CaseDef {
    id: "websocket/rfc6455-5.5.2/2",
    protocol: "websocket",
    spec: "RFC 6455 §5.5.2 (heartbeat pattern: ping every P, dead after P + T of silence)",
    quote: KEEPALIVE,
    description: "Idle connection with heartbeats both ways; the path fails: each side's heartbeat declares the peer dead in its own window.",
    requirement: "A Ping may serve as a keepalive; with the ping-every-P / silence-for-P+T pattern an idle dead peer is detected in (T, P + T]",
    faults: &[
        FaultKind::Blackhole,
        FaultKind::Reset,
        FaultKind::Crash,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::ClientStall,
        FaultKind::ClientCrash,
    ],
    fixed_fault: None,
    docker: WS,
    run: run_heartbeat,
    budget,
};

// The heartbeat pattern on a busy connection: every frame read restarts the
// P + T silence limit (kaspec's client.rs and peers/websocket.rs), while
// Python websockets' keepalive_ping sleeps P, pings and waits T whatever
// the traffic (websockets 10.4 legacy/protocol.py:1259-1284).
pub static BUSY: CaseDef = CaseDef {
    id: "websocket/rfc6455-5.5.2/busy",
    protocol: "websocket",
    spec: "RFC 6455 §5.5.2 (heartbeat pattern: ping every P, dead after P + T of silence)",
    quote: KEEPALIVE,
    description: "Busy connection with heartbeats both ways: the client sends a text message every 100 ms, which the server echoes, when the path fails: each side's heartbeat declares the peer dead in its own window, anchored on the last message.",
    requirement: "A silence limit (P + T) runs from the last frame, an echoed message included; a Ping timer (Python websockets) ignores the traffic; under reset the next message meets the RST",
    faults: &[FaultKind::Blackhole, FaultKind::Reset],
    fixed_fault: None,
    docker: WS,
    run: run_busy,
    budget,
};

pub static FROZEN_SERVER: CaseDef = CaseDef {
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
};

pub static FALSE_POSITIVE: CaseDef = CaseDef {
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
    budget: |ctx| Duration::from_secs(8) + 3 * (knobs::WebSocketConfig::of(&ctx.config).ping_interval + FALSE_POSITIVE_T),
};

pub static OWN_HEARTBEAT_ON_IMPAIRED_PATH: CaseDef = CaseDef {
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
        let w = knobs::WebSocketConfig::of(&ctx.config);
        Duration::from_secs(8) + Duration::from_millis(crate::model::impaired::impaired_watch_ms(w.ping_interval + w.pong_timeout, &ctx.impairments().1))
    },
};

// RFC 6455 §5.5.2 through a NAT (RFC 5382 §5): only a heartbeat below
// the NAT's idle timeout keeps the mapping.
pub static NAT: CaseDef = CaseDef {
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
};

/// The false-positive case's pong timeout and path.
const FALSE_POSITIVE_T: Duration = Duration::from_millis(200);
const FALSE_POSITIVE_RTT: Duration = Duration::from_millis(300);

fn budget(ctx: &Ctx) -> Duration {
    let w = knobs::WebSocketConfig::of(&ctx.config);
    // set-up (one ping round, one server ping), then 3× the longest window, per server.
    2 * (Duration::from_secs(4)
        + 3 * (w.ping_interval + w.pong_timeout).max(Duration::from_secs(3)))
}

pub fn client_implementation() -> Implementation {
    // tokio-tungstenite has no heartbeat: the ping loop and the silence
    // timeout are kaspec's own (client.rs), run over its WebSocket.
    Implementation::new(
        "kaspec heartbeat over tokio-tungstenite",
        format!(
            "kaspec {} / tokio-tungstenite {}",
            env!("CARGO_PKG_VERSION"),
            env!("KASPEC_VERSION_TOKIO_TUNGSTENITE")
        ),
    )
}

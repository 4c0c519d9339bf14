//! gRPC keep-alive (gRFC A8; HTTP/2 PING, RFC 9113 §6.7): a tonic client
//! with `grpc.keepalive_time` (I), `grpc.keepalive_timeout` (T) and
//! `grpc.keepalive_while_idle`, plus the TCP knobs, against our tonic server
//! (`kaspec serve grpc`) and Python grpcio (Debian's python3-grpcio), both
//! serving `kaspec.Echo` from fixtures/grpc/kaspec.proto.
//!
//! hyper's keep-alive (src/proto/h2/ping.rs), which both tonic ends use:
//! a PING is scheduled I after the last frame read; if its ACK does not come
//! within T the connection is closed. An idle connection is pinged only with
//! while_idle. So a blackholed idle connection is declared dead in (T, I + T]
//! after the fault, and a call started on an unprobed connection fails T after
//! the PING it triggers.

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::Result;

use crate::case::{CaseDef, Docker};
use crate::config::TcpConfig;
use crate::ctx::Ctx;
use crate::drive;
use crate::model::impaired::{impaired_expectation, impaired_watch_ms};
use crate::model::linux;
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::peers::python as servers;
use crate::protocol::Protocol;
use knobs::GrpcConfig;

use crate::peers::grpc::proto::echo_client::EchoClient;
use crate::peers::grpc::proto::Text;

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

pub const PORT: u16 = 50051;
const SPEC_A8: &str = "gRFC A8 (client keepalive), RFC 9113 §6.7";
/// Idle time between the last response and the fault (see `detection`).
const QUIET_BEFORE_FAULT: Duration = Duration::from_millis(300);

const DETECTION_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::Reset,
    FaultKind::Freeze,
    FaultKind::Crash,
];
const IDLE_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::Reset,
    FaultKind::Freeze,
    FaultKind::Crash,
    FaultKind::Delay,
    FaultKind::Loss,
    FaultKind::ClientStall,
    FaultKind::ClientCrash,
];
/// When the busy client's path fails: after ten calls, 60 ms after the
/// tenth (its response is read within a ms; the client's delayed ACK of
/// it, at most max(srtt, TCP_DELACK_MIN = 40 ms) on this path, is out),
/// 40 ms before the next.
const BUSY_FAULT_AFTER: Duration = Duration::from_millis(10 * 100 + 60);

pub static PROTOCOL: Protocol = Protocol {
    name: "grpc",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || crate::peers::python::python_module("grpc", "python3-grpcio"),
    review: review::review,
    external: &[IDLE.id],
};

/// The compose services of the gRPC cases on the docker testbed: our tonic
/// server with the keep-alive of fixtures/grpc/servers.toml, and with tonic's
/// defaults.
const GRPC: Docker = Docker::Service {
    service: "kaspec-grpc",
    implementation: "kaspec-grpc (tonic)",
};
const GRPC_DEFAULTS: Docker = Docker::Service {
    service: "kaspec-grpc-defaults",
    implementation: "kaspec-grpc (tonic)",
};

/// RFC 9113 §6.7, which gRFC A8's keepalive relies on.
const PING_ACK: &str = "Receivers of a PING frame that does not include an ACK flag MUST send a PING frame with the ACK flag set in response, with an identical frame payload.";
/// gRFC A8 (client-side keepalive), KEEPALIVE_WITHOUT_CALLS.
const WITHOUT_CALLS: &str = "KEEPALIVE_WITHOUT_CALLS: whether keepalive pings are sent when there are no outstanding calls (default false). [gRFC A8]";
/// gRFC A8, server enforcement.
const TOO_MANY_PINGS: &str = "Servers must respond with GOAWAY ENHANCE_YOUR_CALM with debug data \"too_many_pings\" when receiving pings more frequently than PERMIT_KEEPALIVE_TIME allows, after too many strikes. [gRFC A8]";
/// gRPC's keepalive guide, on what an unanswered keepalive PING does.
const A8_CLOSE: &str = "gRPC sends http2 pings on the transport to detect if the connection is down. If the ping is not acknowledged by the other side within a certain period, the connection will be closed. [gRPC keepalive guide, gRFC A8]";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 5] = [&IDLE, &CALL_AFTER_IDLE, &BUSY, &PING_POLICY, &NAT];

pub static IDLE: CaseDef = CaseDef {
    id: "grpc/a8-keepalive/1",
    protocol: "grpc",
    spec: "gRFC A8, RFC 9113 §6.7",
    quote: PING_ACK,
    description: "Idle channel with keepalive_while_idle; the path fails: the client's PING goes unanswered and the connection is closed; the server's own keep-alive closes its end too.",
    requirement: "A PING MUST be answered with a PING ACK (RFC 9113 §6.7); a client whose keepalive PING is not acknowledged within KEEPALIVE_TIMEOUT closes the connection and fails calls with UNAVAILABLE (gRFC A8)",
    faults: IDLE_FAULTS,
    fixed_fault: None,
    docker: GRPC,
    run: run_idle,
    budget,
};

pub static CALL_AFTER_IDLE: CaseDef = CaseDef {
    id: "grpc/a8-keepalive/2",
    protocol: "grpc",
    spec: "gRFC A8 (KEEPALIVE_WITHOUT_CALLS = false)",
    quote: WITHOUT_CALLS,
    description: "Idle channel without keepalive_while_idle: the dead path is not probed while idle; a call started I after the fault triggers a PING and fails T later.",
    requirement: "Without KEEPALIVE_WITHOUT_CALLS no PING is sent while there are no calls; with a call in flight the keepalive PING bounds the wait to about KEEPALIVE_TIMEOUT",
    faults: DETECTION_FAULTS,
    fixed_fault: None,
    docker: GRPC,
    run: run_call_after_idle,
    budget,
};

pub static BUSY: CaseDef = CaseDef {
    id: "grpc/a8-keepalive/busy",
    protocol: "grpc",
    spec: "gRFC A8, RFC 9113 §6.7",
    quote: A8_CLOSE,
    description: "A busy channel: a unary call every 100 ms; the path fails between two calls. The next call is never answered; TCP keep-alive cannot probe with it in flight, so the client's PING (I after the last response) unacknowledged for T closes the connection and fails the call. Each server closes its end: tonic's by its keep-alive PING, grpcio's by its TCP_USER_TIMEOUT (its keepalive_timeout) on a BDP PING, read from its trace log.",
    requirement: "A keepalive PING not acknowledged within KEEPALIVE_TIMEOUT closes the connection and fails the calls in flight with UNAVAILABLE (gRFC A8); with calls in flight the PING goes out whatever KEEPALIVE_WITHOUT_CALLS says",
    faults: &[FaultKind::Blackhole],
    fixed_fault: None,
    docker: GRPC,
    run: run_busy,
    budget,
};

pub static PING_POLICY: CaseDef = CaseDef {
    id: "grpc/a8-ping-policy/1",
    protocol: "grpc",
    spec: "gRFC A8 (server enforcement)",
    quote: TOO_MANY_PINGS,
    description: "A client pinging every keepalive_time against servers with their default ping policy: is it told GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"?",
    requirement: "Servers SHOULD answer pings more frequent than PERMIT_KEEPALIVE_TIME (default 5 min) with GOAWAY ENHANCE_YOUR_CALM (\"too_many_pings\") after max_ping_strikes (2)",
    faults: &[],
    fixed_fault: Some(FaultKind::None),
    docker: GRPC_DEFAULTS,
    run: run_ping_policy,
    budget,
};

pub static NAT: CaseDef = CaseDef {
    id: "grpc/a8-keepalive/3",
    protocol: "grpc",
    spec: "gRFC A8, RFC 5382 §5",
    quote: A8_CLOSE,
    description: "Idle channel through a NAT that forgets idle flows after N (the server sends no keep-alive): the client's PINGs every I (and its TCP keep-alive) keep the mapping when either period is below N; otherwise the next PING is dropped and the client declares the connection dead.",
    requirement: "A keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout; an unacknowledged PING closes the connection KEEPALIVE_TIMEOUT after it is sent",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: GRPC_DEFAULTS,
    run: run_nat,
    budget: |ctx| Duration::from_secs(10) + 3 * crate::model::nat::nat_idle(ctx) + 3 * (knobs::GrpcConfig::of(&ctx.config).keepalive_time + knobs::GrpcConfig::of(&ctx.config).keepalive_timeout),
};

fn budget(ctx: &Ctx) -> Duration {
    let g = knobs::GrpcConfig::of(&ctx.config);
    2 * (Duration::from_secs(4)
        + 3 * (2 * g.keepalive_time + g.keepalive_timeout).max(Duration::from_secs(4)))
}

pub fn client_implementation() -> Implementation {
    Implementation::new("tonic", env!("KASPEC_VERSION_TONIC"))
}

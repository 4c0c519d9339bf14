//! NATS: async-nats against a real nats-server from the distribution's
//! packages (2.9), started per case in the server host with a throw-away
//! copy of `fixtures/nats/kaspec.conf` (+ `listen` and the case's overrides).
//!
//! nats-server 2.9 `processPingTimer` (server/client.go; its debug strings
//! "Delaying PING due to client activity", "Delaying PING due to remote
//! ping" and "Stale Client Connection - Closing" are in the 2.9.10 binary):
//! the timer fires every `ping_interval` I (`setPingTimer`:
//! `time.AfterFunc(I)`, re-armed at the end of each firing). At a firing,
//! if the client sent a message or subscription (`c.last`) or a PING
//! (`c.ping.last`) less than I ago — and the RTT is measured — nothing is
//! done; otherwise, if `c.ping.out + 1 > ping_max` the client gets
//! `-ERR 'Stale Connection'` and is closed, else a PING goes out and
//! `c.ping.out` grows. A PONG resets `c.ping.out` to 0 and touches neither
//! `c.last` nor `c.ping.last`: a client that only answers PINGs is pinged at
//! every firing. The first firing (`setFirstPingTimer`) comes after
//! min(I, 2 s) + up to 20 % at random and, the RTT not measured yet, always
//! sends a PING — even with a 1 h `ping_interval` (see
//! [`expect::settle_ms`]).
//!
//! async-nats 0.51 (src/lib.rs `ConnectionHandler`): a tokio `interval` of
//! `ping_interval` P (MissedTickBehavior::Delay), reset by every operation
//! read from the server (`handle_server_op`: `ping_interval.reset()`); each
//! tick adds one to `pending_pings` and, if it is then above
//! `MAX_PENDING_PINGS` (2), disconnects (`ExitReason::Disconnected`),
//! otherwise sends a PING; a PONG subtracts one. The disconnection is
//! reported as `Event::Disconnected` — the client's own detection here —
//! and the handler goes on reconnecting.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{last_data_recv_at, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;

mod client;
mod expect;
pub mod knobs;
mod review;
mod run;
mod server;

use client::*;
use expect::*;
use run::*;
use server::*;

pub const PORT: u16 = 4222;

pub static PROTOCOL: Protocol = Protocol {
    name: "nats",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || require_program("nats-server", "nats-server").map(drop),
    review: review::review,
    external: &[],
};

/// The compose services of the NATS cases on the docker testbed: the
/// fixture's server, and the same with its ping timer at 1 h.
const NATS: Docker = Docker::Service {
    service: "nats",
    implementation: "nats-server",
};
const NATS_QUIET: Docker = Docker::Service {
    service: "nats-quiet",
    implementation: "nats-server",
};

/// NATS server configuration reference, `ping_interval` and `ping_max`
/// (docs.nats.io/reference/config).
const SERVER_QUOTE: &str = "ping_interval: Duration at which pings are sent to clients, leaf nodes and routes. In the presence of client traffic, such as messages or client side pings, the server will not send pings. [...] ping_max: After how many unanswered pings the server will allow before closing the connection.";
/// async-nats 0.51 docs, `ConnectOptions::ping_interval`.
const CLIENT_QUOTE: &str = "Sets how often Client sends PING message to the server.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 3] = [&STALE, &CLIENT_PINGS, &FROZEN];

pub static STALE: CaseDef = CaseDef {
    id: "nats/nats-server-ping_max/1",
    protocol: "nats",
    spec: "nats-server 2.9 `ping_interval`, `ping_max`; server/client.go processPingTimer",
    quote: SERVER_QUOTE,
    description: "A silent async-nats client (its own ping_interval 1 h for this case, so only the server pings) behind a failed path: nats-server's ping timer closes it as a \"Stale Connection\" after ping_max unanswered PINGs.",
    requirement: "The server closes the client at the (ping_max + 1)-th firing of its ping timer after the last PONG it read: (ping_max + 1) × ping_interval after it; the client learns only if the -ERR and FIN reach it",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: NATS,
    run: run_stale,
    budget,
};

pub static CLIENT_PINGS: CaseDef = CaseDef {
    id: "nats/async-nats-ping_interval/1",
    protocol: "nats",
    spec: "async-nats 0.51 ConnectOptions::ping_interval; src/lib.rs ConnectionHandler (MAX_PENDING_PINGS = 2)",
    quote: CLIENT_QUOTE,
    description: "An idle async-nats connection pinging every nats.ping_interval behind a failed path (the server's ping_interval 1 h for this case, so only the client pings): it disconnects at the tick that would make a third PING outstanding.",
    requirement: "The client disconnects 3 × ping_interval after the last operation it read from the server (MAX_PENDING_PINGS + 1 ticks); on an RST, at its next PING",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: NATS_QUIET,
    run: run_client_pings,
    budget,
};

pub static FROZEN: CaseDef = CaseDef {
    id: "nats/async-nats-frozen-server/1",
    protocol: "nats",
    spec: "async-nats 0.51 ConnectOptions::ping_interval; src/lib.rs ConnectionHandler (MAX_PENDING_PINGS = 2)",
    quote: CLIENT_QUOTE,
    description: "A frozen nats-server (SIGSTOP: its kernel keeps the TCP connection up and ACKs the client's PINGs): only async-nats's PINGs can tell; the frozen server closes nothing.",
    requirement: "The client disconnects 3 × ping_interval after the last operation it read from the server, TCP staying up",
    faults: &[FaultKind::Freeze],
    fixed_fault: Some(FaultKind::Freeze),
    docker: NATS_QUIET,
    run: run_client_pings,
    budget,
};

pub fn client_implementation() -> Implementation {
    Implementation::new("async-nats", env!("KASPEC_VERSION_ASYNC_NATS"))
}

fn budget(ctx: &Ctx) -> Duration {
    let s = ServerSettings::load(&ctx.fixtures)
        .map(|s| stale_deadline_ms(&s))
        .unwrap_or(10_000);
    let c = client_deadline_ms(knobs::NatsConfig::of(&ctx.config).ping_interval);
    Duration::from_millis(2 * (s.max(c) + 3 * SETTLE_MS) + 6000)
}

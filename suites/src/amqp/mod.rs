//! AMQP 0-9-1 heartbeats: lapin against a real RabbitMQ (Debian's
//! `rabbitmq-server`), started once per run in the shared testbed
//! ([`crate::shared`]) from `fixtures/rabbitmq/`, with a throw-away data
//! directory. Every case opens its own connection and faults only its flow.
//!
//! The spec: Connection.Tune proposes the server's `heartbeat` (seconds, 0 =
//! the server wants none), Connection.Tune-Ok answers the client's; peers
//! negotiate limits "to the lowest agreed value" (§2.3.3). Heartbeat frames
//! go on channel 0, any octet counts as a sign of life, and a peer that
//! receives nothing for two heartbeat intervals or longer should close the
//! connection without the Close handshake (§4.2.7).
//!
//! lapin 4.12 (src/channel.rs `tune_connection_configuration`,
//! src/heartbeat.rs), from which the client window is derived: it takes the
//! server's value when it asks for 0 (so it cannot turn heartbeats off
//! against a broker that proposes them), else the lower of the two. It wakes
//! H/2 after its last write, writes a heartbeat if it wrote nothing since,
//! and at each wake fails with `MissingHeartbeatError` once nothing has been
//! read for more than 2H: detection at the first wake after last read + 2H,
//! within (2H, 2.5H] of the last byte read.
//!
//! RabbitMQ 3.10 (rabbit_reader.erl `tune_ok`, rabbit_heartbeat.erl): uses
//! the client's Tune-Ok value for both directions, unvalidated. At Tune-Ok it
//! starts a sender that wakes every T/2 and sends a heartbeat when it sent
//! nothing since the last wake, and a receiver that wakes every T and closes
//! the connection at the second consecutive wake without a received byte:
//! detection at the first receiver tick after the last byte received + 2T,
//! within (2T, 3T] of it. Both heartbeaters start together, so every second
//! heartbeat the broker sends marks a receiver tick.
//!
//! What the client reads and writes is observed by wrapping lapin's socket
//! (an async-rs reactor whose TCP streams record each read and write with its
//! time and the AMQP frames in it): last byte read, heartbeats written, the
//! Tune and Tune-Ok on the wire. The wrapper keeps the socket open (no FIN)
//! after lapin gives up until the case has watched the broker, so that the
//! broker's detection is its own heartbeat check and not lapin's close.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_rs::traits::Reactor;
use async_rs::{Runtime, Tokio};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::StreamExt;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::SocketWatch;
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;
use crate::drive;
use crate::drive::busy::{between_messages, Workload};
use crate::model::periodic::{first_after, next_send_meets_rst, Before};
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::protocol::Protocol;
use crate::shared::Started;

/// RabbitMQ's start script, run directly (not /usr/sbin/rabbitmq-server,
/// which switches to the rabbitmq user and the machine's own data).
mod broker;
mod busy;
mod client;
mod expect;
mod external;
pub mod knobs;
mod nat;
mod negotiation;
mod run;
mod tap;

pub use broker::*;
pub use busy::*;
use client::*;
pub use expect::*;
use external::*;
pub use nat::*;
pub use negotiation::*;
use run::*;
pub use tap::*;

pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// The package that provides them.
pub const PACKAGE: &str = "rabbitmq-server";
/// RabbitMQ's own default `heartbeat` when the configuration sets none.
pub const DEFAULT_SERVER_HEARTBEAT: u16 = 60;
/// How close (ms) a timer wake and the instant it is compared with may be
/// before either side of it is possible: tokio's and the BEAM's timers wake
/// up to a millisecond or two late, and the tap stamps a read when lapin's
/// poll returns. Only then does a window hold two wakes — the phase is
/// observed at full resolution (the tap), so otherwise it is one point.
pub const PHASE_SLACK_MS: i64 = 5;

const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_IMPAIR_AND_CLIENT;

pub static PROTOCOL: Protocol = Protocol {
    name: "amqp",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: require_rabbitmq,
    review: |_, _| Vec::new(),
    external: &[IDLE.id],
};

/// The compose service of the AMQP cases on the docker testbed.
const RABBITMQ: Docker = Docker::Service {
    service: "rabbitmq",
    implementation: "rabbitmq",
};

/// AMQP 0-9-1, Connection.Tune / Tune-Ok `heartbeat` (the negotiation of §2.3.3).
const TUNE: &str = "heartbeat: The delay, in seconds, of the connection heartbeat that the server wants. Zero means the server does not want a heartbeat. [Connection.Tune; Tune-Ok: the delay ... that the client wants]";
/// AMQP 0-9-1 §4.2.7.
const HEARTBEAT: &str = "If a peer detects no incoming traffic (i.e. received octets) for two heartbeat intervals or longer, it should close the connection without following the Connection.Close/Close-Ok handshaking, and log an error.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 5] = [&NEGOTIATION_MAIN, &NEGOTIATION_HB0, &IDLE, &BUSY, &NAT];

pub static NEGOTIATION_MAIN: CaseDef = CaseDef {
    id: "amqp/0-9-1-2.3.3/1",
    protocol: "amqp",
    spec: "AMQP 0-9-1 §2.3.3, Connection.Tune/Tune-Ok",
    quote: TUNE,
    description: "Heartbeat negotiation against the broker's configured heartbeat S (fixtures/rabbitmq/rabbitmq.conf): lapin asks for nothing, 0, less than S, more than S and amqp.heartbeat; what does each end use?",
    requirement: "Both peers use the lowest agreed value (§2.3.3), the value the client sends in Tune-Ok; lapin's rule: 0 or unset takes the server's, else min(request, S)",
    faults: &[],
    fixed_fault: Some(FaultKind::None),
    docker: Docker::NotHere("reads the broker's side with rabbitmqctl on the server host, which kaspec does not run inside the container"),
    run: run_negotiation_main,
    budget: negotiation_budget,
};

pub static NEGOTIATION_HB0: CaseDef = CaseDef {
    id: "amqp/0-9-1-2.3.3/2",
    protocol: "amqp",
    spec: "AMQP 0-9-1 §2.3.3, Connection.Tune/Tune-Ok",
    quote: TUNE,
    description: "Heartbeat negotiation against a broker that proposes heartbeat 0 (fixtures/rabbitmq/rabbitmq-hb0.conf): the client's request decides.",
    requirement: "A server proposing 0 wants no heartbeat; the client's Tune-Ok value is used by both ends (0 = none)",
    faults: &[],
    fixed_fault: Some(FaultKind::None),
    docker: Docker::NotHere("needs a second broker that proposes heartbeat 0 (fixtures/rabbitmq/rabbitmq-hb0.conf); the compose stack has one"),
    run: run_negotiation_hb0,
    budget: negotiation_budget,
};

pub static IDLE: CaseDef = CaseDef {
    id: "amqp/0-9-1-4.2.7/1",
    protocol: "amqp",
    spec: "AMQP 0-9-1 §4.2.7",
    quote: HEARTBEAT,
    description: "Idle connection with negotiated heartbeat H; the path fails between two heartbeats: lapin stops hearing the broker, the broker stops hearing lapin.",
    requirement: "A peer that receives nothing for two heartbeat intervals or longer should close the connection (§4.2.7); windows from lapin's (2H, 2.5H] and RabbitMQ's (2T, 3T] algorithms after the last byte received",
    faults: IDLE_FAULTS,
    fixed_fault: None,
    docker: RABBITMQ,
    run: run_idle,
    budget: idle_budget,
};

// §4.2.7 on a busy connection: any octet counts as a sign of life. lapin's
// heartbeat wakes H/2 after its last write (src/heartbeat.rs:132), so its
// publishes postpone the wakes at which it checks the reads; RabbitMQ's
// receiver ticks every T whatever the traffic (rabbit_heartbeat).
pub static BUSY: CaseDef = CaseDef {
    id: "amqp/0-9-1-4.2.7/busy",
    protocol: "amqp",
    spec: "AMQP 0-9-1 §4.2.7",
    quote: HEARTBEAT,
    description: "Busy connection with negotiated heartbeat H: lapin publishes to its own queue every 100-149 ms and consumes each message back when the path fails between two publishes: lapin stops hearing the broker while it goes on writing, the broker stops hearing lapin.",
    requirement: "A peer that receives nothing for two heartbeat intervals or longer should close the connection (§4.2.7); lapin checks at wakes its writes postpone (each H/2 after its last write), RabbitMQ at its receiver's ticks (every T) after the last byte received",
    faults: &[FaultKind::Blackhole, FaultKind::Reset],
    fixed_fault: None,
    docker: RABBITMQ,
    run: run_busy,
    budget: idle_budget,
};

pub static NAT: CaseDef = CaseDef {
    id: "amqp/0-9-1-4.2.7/2",
    protocol: "amqp",
    spec: "AMQP 0-9-1 §4.2.7, RFC 5382 §5",
    quote: HEARTBEAT,
    description: "Idle AMQP connection through a NAT that forgets idle flows after N: heartbeats (each side sends one every H/2 when idle) keep the mapping when H/2 < N; otherwise the mapping expires, the next heartbeats are dropped, and both lapin and RabbitMQ declare the connection dead.",
    requirement: "Heartbeats keep a NAT mapping only when their period H/2 is below the NAT's idle timeout; otherwise each peer must close the connection after two heartbeat intervals of silence (§4.2.7): lapin at its first wake after last read + 2H, RabbitMQ at its first receiver tick after last byte + 2T",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: RABBITMQ,
    run: run_nat,
    budget: nat_budget,
};

fn negotiation_budget(_ctx: &Ctx) -> Duration {
    // A node start (~6 s) and a handful of connections.
    Duration::from_secs(20)
}

fn idle_budget(ctx: &Ctx) -> Duration {
    let h = effective_heartbeat(
        request_of(ctx),
        server_heartbeat(&ctx.fixtures, &MAIN).unwrap_or(DEFAULT_SERVER_HEARTBEAT),
    );
    let h = Duration::from_secs(h.max(2) as u64);
    // connect, steady state, half a period, then 3 × the broker's 3T.
    Duration::from_secs(5) + 2 * h + 9 * h
}

pub fn client_implementation() -> Implementation {
    Implementation::new("lapin", env!("KASPEC_VERSION_LAPIN"))
}

/// The installed RabbitMQ's version, from its library directory
/// (`/usr/lib/rabbitmq/lib/rabbitmq_server-X.Y.Z`).
pub fn broker_implementation() -> Implementation {
    let version = std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("rabbitmq_server-")
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("rabbitmq", version)
}

/// RabbitMQ and epmd are installed (the error names the package).
pub fn require_rabbitmq() -> Result<()> {
    if !Path::new(RABBITMQ_SERVER).is_file() || epmd_program().is_none() {
        return Err(Error::Capability(format!(
            "RabbitMQ not found ({RABBITMQ_SERVER} and Erlang's epmd under /usr/lib/erlang/erts-*/bin) \
             (apt-get install {PACKAGE}, or run fixtures/bootstrap.sh)"
        )));
    }
    Ok(())
}

fn request_of(ctx: &Ctx) -> u16 {
    knobs::AmqpConfig::of(&ctx.config)
        .heartbeat
        .as_secs()
        .min(u16::MAX as u64) as u16
}

//! MQTT 3.1.1 Keep Alive (§3.1.2.10): rumqttc against a real Mosquitto in the
//! server host, configured from `fixtures/mosquitto/kaspec.conf`.
//!
//! rumqttc 0.24's algorithm (src/eventloop.rs `select`, src/state.rs
//! `outgoing_ping`), from which the client window is derived: a timer fires
//! every K from CONNACK, whatever the traffic; each firing sends PINGREQ,
//! unless the previous PINGREQ is still unanswered, in which case the event
//! loop fails with `StateError::AwaitPingResp`. So a path that dies after the
//! PINGREQ at t_p is detected at t_p + 2K, i.e. in (K, 2K] after the fault.
//!
//! The server side is judged against the spec, whatever this broker does:
//! "If the Keep Alive value is non-zero and the Server does not receive a
//! Control Packet from the Client within one and a half times the Keep Alive
//! time period, it MUST disconnect the Network Connection to the Client as if
//! the network had failed" [MQTT-3.1.2-24].

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet};

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;
use crate::drive;
use crate::drive::busy::{between_messages, Workload};
use crate::model::periodic::{next_send_meets_rst, Before};
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;

mod busy;
mod client;
mod expect;
mod external;
mod fleet;
pub mod knobs;
mod nat;
mod review;
mod run;
mod server;

use busy::*;
use client::*;
use expect::*;
use external::*;
use fleet::*;
use nat::*;
use run::*;
use server::*;

pub const PORT: u16 = 1883;

pub static PROTOCOL: Protocol = Protocol {
    name: "mqtt",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || require_program("mosquitto", "mosquitto").map(drop),
    review: review::review,
    external: &[IDLE.id],
};

/// The compose service of the MQTT cases on the docker testbed.
const MOSQUITTO: Docker = Docker::Service {
    service: "mosquitto",
    implementation: "mosquitto",
};

/// MQTT 3.1.1 §3.1.2.10 [MQTT-3.1.2-24], the broker side of both cases.
const MUST_DISCONNECT: &str = "If the Keep Alive value is non-zero and the Server does not receive a Control Packet from the Client within one and a half times the Keep Alive time period, it MUST disconnect the Network Connection to the Client as if the network had failed. [MQTT-3.1.2-24] If a Client does not receive a PINGRESP Packet within a reasonable amount of time after it has sent a PINGREQ, it SHOULD close the Network Connection to the Server.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 4] = [&IDLE, &BUSY, &NAT, &FLEET];

// MQTT 3.1.1 §3.1.2.10: "... the Server ... MUST disconnect the Network
// Connection to the Client as if the network had failed" [MQTT-3.1.2-24];
// the client "SHOULD close the Network Connection" without a PINGRESP.
pub static IDLE: CaseDef = CaseDef {
    id: "mqtt/3.1.1-3.1.2.10/1",
    protocol: "mqtt",
    spec: "MQTT 3.1.1 §3.1.2.10",
    quote: MUST_DISCONNECT,
    description: "Idle client with Keep Alive K; the path fails halfway between two PINGREQs: the client misses a PINGRESP, the broker stops hearing the client.",
    requirement: "Client: close when PINGRESP does not come in a reasonable time (SHOULD; window from rumqttc's algorithm). Server: disconnect a client not heard from for 1.5 × K [MQTT-3.1.2-24] (MUST)",
    faults: &FaultKind::INSTANT_IMPAIR_AND_CLIENT,
    fixed_fault: None,
    docker: MOSQUITTO,
    run: run_idle,
    budget,
};

// The same sentence on a busy connection: every packet the broker reads
// restarts its 1.5 × K (mosquitto's packet__read, lib/packet_mosq.c), while
// rumqttc pings every K whatever the traffic (src/eventloop.rs:241).
pub static BUSY: CaseDef = CaseDef {
    id: "mqtt/3.1.1-3.1.2.10/busy",
    protocol: "mqtt",
    spec: "MQTT 3.1.1 §3.1.2.10",
    quote: MUST_DISCONNECT,
    description: "Busy client with Keep Alive K: it publishes (QoS 0) on its own topic every 100 ms and receives each publish back through its subscription when the path fails, halfway between two PINGREQs and between two publishes.",
    requirement: "Client: rumqttc pings every K whatever the traffic and fails at the tick after an unanswered PINGREQ (blackhole), or at its next PUBLISH met by RST (reset). Server: disconnect 1.5 × K after the client's last packet, its last PUBLISH [MQTT-3.1.2-24] (MUST)",
    faults: &[FaultKind::Blackhole, FaultKind::Reset],
    fixed_fault: None,
    docker: MOSQUITTO,
    run: run_busy,
    budget,
};

// The same sentence through a NAT (RFC 5382 §5): Keep Alive below the
// NAT's idle timeout keeps the session; at or above, both sides notice.
pub static NAT: CaseDef = CaseDef {
    id: "mqtt/3.1.1-3.1.2.10/2",
    protocol: "mqtt",
    spec: "MQTT 3.1.1 §3.1.2.10, RFC 5382 §5",
    quote: MUST_DISCONNECT,
    description: "Idle MQTT client through a NAT that forgets idle flows after N: Keep Alive below N keeps the session; at or above N the PINGREQ is dropped and both sides must notice.",
    requirement: "Keep Alive below the NAT idle timeout keeps the connection; otherwise the client misses a PINGRESP and the broker disconnects the client it no longer hears [MQTT-3.1.2-24]",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: MOSQUITTO,
    run: run_nat,
    budget: nat_budget,
};

// The same sentence for N sessions at once: the broker must disconnect
// every client it no longer hears within 1.5 × K of that client's silence.
pub static FLEET: CaseDef = CaseDef {
    id: "mqtt/3.1.1-3.1.2.10/fleet",
    protocol: "mqtt",
    spec: "MQTT 3.1.1 §3.1.2.10",
    quote: MUST_DISCONNECT,
    description: "A fleet of fleet.connections idle MQTT sessions with Keep Alive K (a minimal client per connection, rumqttc's ping algorithm), cut at once by one blackhole: the broker must reap every one.",
    requirement: "Server: disconnect each client not heard from for 1.5 × K [MQTT-3.1.2-24] (MUST), every one of N at once. Client: each connection fails at the tick after its unanswered PINGREQ",
    faults: &[FaultKind::Blackhole],
    fixed_fault: Some(FaultKind::Blackhole),
    docker: Docker::NotHere("a fleet reads the broker's memory from /proc and raises the file limit it inherits; it runs on the netns testbed"),
    run: run_fleet,
    budget: fleet_budget,
};

fn budget(ctx: &Ctx) -> Duration {
    let k = knobs::MqttConfig::of(&ctx.config)
        .keep_alive
        .max(Duration::from_secs(2));
    // connect, one ping cycle, half a period of idle, then 3 × 2K.
    Duration::from_secs(3) + k + k / 2 + 6 * k
}

pub fn client_implementation() -> Implementation {
    Implementation::new("rumqttc", env!("KASPEC_VERSION_RUMQTTC"))
}

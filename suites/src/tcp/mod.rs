//! TCP keep-alive (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4) and TCP_USER_TIMEOUT
//! (RFC 5482) on a client socket configured through socket2, against our own
//! echo server (`kaspec serve tcp`) in the server host.
//!
//! Linux, as the expectations model it (net/ipv4/tcp_timer.c,
//! `tcp_keepalive_timer`): the first probe goes out I after the last segment
//! received, then one every V; when the timer fires with N probes
//! unanswered the connection is aborted (ETIMEDOUT). With TCP_USER_TIMEOUT U
//! set, N is ignored: the abort happens at the first firing where the time
//! since the last segment received is at least U. With unacknowledged data
//! in flight keep-alive never probes; only U (or the ~15 min retransmission
//! limit) ends the connection, and the RTO is clamped so that it ends at U.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::SocketWatch;
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};
use socket2::{Domain, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::case::{CaseDef, Docker};
use crate::config::TcpConfig;
use crate::ctx::Ctx;
use crate::drive;
use crate::model::linux;
use crate::model::tcp::{
    keepalive_death, keepalive_on_impaired_path, rst_at_first_probe, send_expectation,
};
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;

mod client;
mod expect;
mod fleet;
mod nat;
mod review;
mod run;

use client::*;
use expect::*;
use fleet::*;
use nat::*;
use run::*;

pub const PORT: u16 = 7000;

/// Why TCP alone cannot see a frozen peer (PROTOCOLS.md, TCP).
const FROZEN_KERNEL_ANSWERS: &str =
    "the frozen server's kernel still answers keep-alive probes: TCP keep-alive cannot detect a hung application (expected non-detection)";

const ALL_FAULTS: &[FaultKind] = &FaultKind::INSTANT;
/// The idle keep-alive case also takes a slow or lossy path with a live peer.
const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_AND_IMPAIR;

/// The compose service of every TCP case on the docker testbed.
const ECHO: Docker = Docker::Service {
    service: "kaspec-tcp",
    implementation: "kaspec-tcp-echo",
};

pub static PROTOCOL: Protocol = Protocol {
    name: "tcp",
    cases: &CASES,
    knobs: &crate::config::socket::KNOBS,
    prerequisites: || Ok(()),
    review: review::review,
    external: &[],
};

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 6] = [
    &IDLE_KEEPALIVE,
    &IDLE_NO_KEEPALIVE,
    &DATA_IN_FLIGHT,
    &HALF_OPEN,
    &NAT,
    &FLEET,
];

// RFC 1122 §4.2.3.6: "An implementation MUST NOT interpret failure to
// respond to any specific probe as a dead connection."
pub static IDLE_KEEPALIVE: CaseDef = CaseDef {
    id: "tcp/rfc1122-4.2.3.6/1",
    protocol: "tcp",
    spec: "RFC 1122 §4.2.3.6, RFC 9293 §3.8.4",
    quote: "An implementation MUST NOT interpret failure to respond to any specific probe as a dead connection.",
    description: "Idle connection with keep-alive on; the path fails: the client's stack probes and declares the peer dead.",
    requirement: "Keep-alive probes an idle connection; one unanswered probe MUST NOT mean death; Linux aborts after I + N×V (or at U with TCP_USER_TIMEOUT)",
    faults: IDLE_FAULTS,
    fixed_fault: None,
    docker: ECHO,
    run: run_idle_keepalive,
    budget,
};

// RFC 1122 §4.2.3.6: "If keep-alives are included, the application MUST
// be able to turn them on or off for each TCP connection, and they MUST
// default to off."
pub static IDLE_NO_KEEPALIVE: CaseDef = CaseDef {
    id: "tcp/rfc1122-4.2.3.6/2",
    protocol: "tcp",
    spec: "RFC 1122 §4.2.3.6",
    quote: "If keep-alives are included, the application MUST be able to turn them on or off for each TCP connection, and they MUST default to off.",
    description: "Idle connection with keep-alive off (every socket's default); the path fails: nothing notices (a detection would fail).",
    requirement: "Keep-alive is off by default; an idle connection without it is never checked",
    faults: ALL_FAULTS,
    fixed_fault: None,
    docker: ECHO,
    run: run_idle_no_keepalive,
    budget,
};

// RFC 5482 §1: the user timeout "specifies the maximum amount of time
// that transmitted data may remain unacknowledged before TCP will
// forcefully close the corresponding connection."
pub static DATA_IN_FLIGHT: CaseDef = CaseDef {
    id: "tcp/rfc5482-3/1",
    protocol: "tcp",
    spec: "RFC 5482 §3, RFC 9293 §3.8.3",
    quote: "[The user timeout] specifies the maximum amount of time that transmitted data may remain unacknowledged before TCP will forcefully close the corresponding connection. (RFC 5482 §1)",
    description: "The path fails, then the client sends: data in flight is never acknowledged; TCP_USER_TIMEOUT ends the connection.",
    requirement: "Unacknowledged data older than the user timeout aborts the connection; keep-alive does not probe while data is in flight",
    faults: ALL_FAULTS,
    fixed_fault: None,
    docker: ECHO,
    run: run_data_in_flight,
    budget,
};

// RFC 9293 §3.5.2: "If the connection does not exist (CLOSED), then a
// reset is sent in response to any incoming segment except another reset."
pub static HALF_OPEN: CaseDef = CaseDef {
    id: "tcp/rfc9293-3.5.2/1",
    protocol: "tcp",
    spec: "RFC 9293 §3.5.2, §3.5.3",
    quote: "If the connection does not exist (CLOSED), then a reset is sent in response to any incoming segment except another reset.",
    description: "Half-open: the server host crashes without FIN (blackhole, SIGKILL), forgets the connection (its sockets destroyed, as after a reboot), and the path returns halfway between two keep-alive probes: the next probe meets an RST.",
    requirement: "A segment for a connection the peer no longer has is answered with RST, which aborts the survivor's half-open connection at its next probe rather than at the keep-alive's give-up",
    faults: &[FaultKind::Crash],
    fixed_fault: Some(FaultKind::Crash),
    docker: Docker::NotHere("a crash kills the server and destroys its sockets; kaspec does not kill containers compose owns (it would have to restart them)"),
    run: run_half_open,
    budget,
};

// RFC 5382 §5 (REQ-5): "If a NAT cannot determine whether the endpoints
// of a TCP connection are active, it MAY abandon the session if it has
// been idle for some time."
pub static NAT: CaseDef = CaseDef {
    id: "tcp/rfc5382-5/1",
    protocol: "tcp",
    spec: "RFC 5382 §5, RFC 1122 §4.2.3.6",
    quote: "If a NAT cannot determine whether the endpoints of a TCP connection are active, it MAY abandon the session if it has been idle for some time.",
    description: "Idle TCP connection through a NAT that forgets idle flows after N: keep-alive below N keeps it usable; at or above N it breaks, and the keep-alive notices.",
    requirement: "A keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: ECHO,
    run: run_nat,
    budget: nat_budget,
};

// The keep-alive sentence again, for N connections at once: every one of
// them, on both ends, must die by its own stack's window.
pub static FLEET: CaseDef = CaseDef {
    id: "tcp/rfc1122-4.2.3.6/fleet",
    protocol: "tcp",
    spec: "RFC 1122 §4.2.3.6, RFC 9293 §3.8.4",
    quote: "An implementation MUST NOT interpret failure to respond to any specific probe as a dead connection.",
    description: "A fleet of fleet.connections idle connections with keep-alive on both ends (client and our echo server), cut at once by one blackhole: every connection's two stacks probe and abort it.",
    requirement: "Each end of each connection aborts I + N×V after its own last received segment; the server holds no dead connection after the last window",
    faults: &[FaultKind::Blackhole],
    fixed_fault: Some(FaultKind::Blackhole),
    docker: Docker::NotHere("a fleet's server runs with keep-alive options and its memory is read from /proc; it runs on the netns testbed"),
    run: run_fleet,
    budget: fleet_budget,
};

/// How long one run of a TCP case may take: set-up, then three times the
/// keep-alive window (the longest wait of any TCP case), plus the user timeout.
fn budget(ctx: &Ctx) -> Duration {
    let tcp = TcpConfig::of(&ctx.config);
    let d = keepalive_death(&tcp);
    Duration::from_millis(3 * (d.ms + d.slack_ms).max(ms_of(tcp.user_timeout)) + 3000)
}

/// The deadline of a case whose expectation is "not detected": 1.5× the
/// keep-alive window this configuration would give, at least 3 s.
fn quiet_deadline_ms(t: &TcpConfig) -> u64 {
    let d = keepalive_death(&TcpConfig {
        keepalive: true,
        user_timeout: Duration::ZERO,
        ..*t
    });
    (d.ms * 3 / 2).max(3000)
}

pub fn implementation() -> Implementation {
    Implementation::new(
        "linux-tcp/socket2",
        format!("{} (socket2 {})", kernel(), env!("KASPEC_VERSION_SOCKET2")),
    )
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("linux {}", s.trim()))
        .unwrap_or_else(|_| "linux".into())
}

pub fn server_implementation() -> Implementation {
    Implementation::new("kaspec-tcp-echo", env!("CARGO_PKG_VERSION"))
}

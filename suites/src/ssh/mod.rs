//! SSH: OpenSSH's `ssh` (Debian's openssh-client 9.2, a child process in
//! the client host) and russh's client against Debian's sshd (9.2, started
//! per case with a throw-away configuration, host key and authorized key)
//! and kaspec's russh server (`kaspec serve ssh`). SSH's RFCs have no
//! keep-alive; both implementations send `keepalive@openssh.com` global
//! requests with want-reply and count the unanswered ones. Each window is
//! derived from the implementation's source — see [`expect`].

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
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
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;
use options::convtime;

mod cases;
mod client;
pub mod knobs;
mod options;
pub use options::parse_ssh_options;
mod expect;
mod review;
mod run;
mod server;

use cases::*;
use client::*;
use expect::*;
use run::*;
use server::*;

pub const PORT: u16 = 22;
const SSH: &str = "ssh";
const SSHD: &str = "sshd";
const SSH_KEYGEN: &str = "ssh-keygen";

pub static PROTOCOL: Protocol = Protocol {
    name: "ssh",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || {
        require_program(SSHD, "openssh-server")?;
        require_program(SSH, "openssh-client").map(drop)
    },
    review: review::review,
    external: &[],
};

/// The compose services of the SSH cases on the docker testbed (see
/// [`server::service`]).
const SSHD_SERVICE: Docker = Docker::Service {
    service: "sshd",
    implementation: "openssh-sshd",
};
const SSHD_SILENT: Docker = Docker::Service {
    service: "sshd-silent",
    implementation: "openssh-sshd",
};
const KASPEC_SSH: Docker = Docker::Service {
    service: "kaspec-ssh",
    implementation: "kaspec-ssh (russh)",
};

/// ssh_config(5), OpenSSH 9.2.
const SERVER_ALIVE: &str = "ServerAliveCountMax: Sets the number of server alive messages (see below) which may be sent without ssh(1) receiving any messages back from the server. If this threshold is reached while server alive messages are being sent, ssh will disconnect from the server, terminating the session. [...] If, for example, ServerAliveInterval is set to 15 and ServerAliveCountMax is left at the default, if the server becomes unresponsive, ssh will disconnect after approximately 45 seconds.";
/// sshd_config(5), OpenSSH 9.2.
const CLIENT_ALIVE: &str = "ClientAliveInterval: Sets a timeout interval in seconds after which if no data has been received from the client, sshd(8) will send a message through the encrypted channel to request a response from the client. [...] If ClientAliveInterval is set to 15, and ClientAliveCountMax is left at the default, unresponsive SSH clients will be disconnected after approximately 45 seconds.";
/// russh 0.65 docs, client::Config / server::Config.
const RUSSH_KEEPALIVE: &str = "keepalive_interval: If nothing is received from the server for this amount of time, send a keepalive message. keepalive_max: If this many keepalives have been sent without reply, close the connection.";
const RUSSH_INACTIVITY: &str =
    "inactivity_timeout: Time after which the connection is garbage-collected.";
/// ssh_config(5), TCPKeepAlive.
const TCP_KEEPALIVE: &str = "TCPKeepAlive: Specifies whether the system should send TCP keepalive messages to the other side. If they are sent, death of the connection or crash of one of the machines will be properly noticed.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 8] = [
    &OPENSSH_CLIENT,
    &SSHD_SERVER,
    &RUSSH_CLIENT,
    &RUSSH_SERVER,
    &INACTIVITY_KEPT,
    &INACTIVITY_SILENT,
    &NAT,
    &TCP_ONLY,
];

const CLIENT_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::BlackholeUp,
    FaultKind::BlackholeDown,
    FaultKind::Reset,
    FaultKind::Freeze,
    FaultKind::Crash,
];
/// The server detects: freeze stops the client's process (ssh), crash does not apply.
const SERVER_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::BlackholeUp,
    FaultKind::BlackholeDown,
    FaultKind::Reset,
    FaultKind::Freeze,
];

pub static OPENSSH_CLIENT: CaseDef = CaseDef {
    id: "ssh/openssh-ServerAliveInterval/1",
    protocol: "ssh",
    spec: "OpenSSH 9.2 ssh_config(5) ServerAliveInterval, ServerAliveCountMax; clientloop.c server_alive_check",
    quote: SERVER_ALIVE,
    description: "An idle `ssh -N` session (ssh.* knobs) to a silent sshd (ClientAliveInterval 0) behind a failed path: ssh's alive checks, on whole seconds of CLOCK_BOOTTIME, end it with \"Timeout, server … not responding.\"; freeze stops sshd's session process (its kernel still ACKs).",
    requirement: "ssh exits at ⌊last read⌋ + (ServerAliveCountMax + 1) × ServerAliveInterval (whole seconds); on an RST, at its first check after t0",
    faults: CLIENT_FAULTS,
    fixed_fault: None,
    docker: SSHD_SILENT,
    run: run_openssh_client,
    budget,
};

pub static SSHD_SERVER: CaseDef = CaseDef {
    id: "ssh/openssh-ClientAliveInterval/1",
    protocol: "ssh",
    spec: "OpenSSH 9.2 sshd_config(5) ClientAliveInterval, ClientAliveCountMax; serverloop.c client_alive_check",
    quote: CLIENT_ALIVE,
    description: "sshd (fixtures/ssh/sshd_config) with a silent `ssh -N` client (ServerAliveInterval 0, TCPKeepAlive no) behind a failed path: sshd's client-alive probes end the session; freeze stops the ssh process (its kernel still ACKs).",
    requirement: "sshd exits when a probe finds ClientAliveCountMax unanswered; 9.2's loop probes every second ppoll timeout (2 × ClientAliveInterval), 9.5+ every interval",
    faults: SERVER_FAULTS,
    fixed_fault: None,
    docker: SSHD_SERVICE,
    run: run_sshd_server,
    budget,
};

pub static RUSSH_CLIENT: CaseDef = CaseDef {
    id: "ssh/russh-keepalive/1",
    protocol: "ssh",
    spec: "russh 0.65 client::Config keepalive_interval, keepalive_max; src/client/mod.rs",
    quote: RUSSH_KEEPALIVE,
    description: "An idle russh client session (ssh.keepalive_interval, ssh.keepalive_max; inactivity_timeout None) to a silent sshd behind a failed path: russh ends it with KeepaliveTimeout.",
    requirement: "russh ends the session (keepalive_max + 1) × keepalive_interval after its last read; on an RST, at its first keepalive after t0",
    faults: CLIENT_FAULTS,
    fixed_fault: None,
    docker: SSHD_SILENT,
    run: run_russh_client,
    budget,
};

pub static RUSSH_SERVER: CaseDef = CaseDef {
    id: "ssh/russh-server-keepalive/1",
    protocol: "ssh",
    spec: "russh 0.65 server::Config keepalive_interval, keepalive_max; src/server/session.rs",
    quote: RUSSH_KEEPALIVE,
    description: "kaspec's russh server (fixtures/ssh/russh-server.conf) with a silent `ssh -N` client behind a failed path: the server ends the session with KeepaliveTimeout; freeze stops the ssh process.",
    requirement: "The russh server closes (keepalive_max + 1) × keepalive_interval after its last read; on an RST, at its first keepalive after t0",
    faults: SERVER_FAULTS,
    fixed_fault: None,
    docker: KASPEC_SSH,
    run: run_russh_server,
    budget,
};

pub static INACTIVITY_KEPT: CaseDef = CaseDef {
    id: "ssh/russh-inactivity_timeout/1",
    protocol: "ssh",
    spec: "russh 0.65 client::Config inactivity_timeout; src/client/mod.rs",
    quote: RUSSH_INACTIVITY,
    description: "A russh client with ssh.inactivity_timeout (its own keep-alive off) to sshd whose client-alive probes arrive more often than that, on a healthy path: does the peer's keep-alive traffic keep the \"inactive\" session?",
    requirement: "Every packet read restarts russh's inactivity timer: with the peer's probes arriving more often than inactivity_timeout the session stays up (3 × inactivity_timeout watched)",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: SSHD_SERVICE,
    run: run_inactivity_kept,
    budget,
};

pub static INACTIVITY_SILENT: CaseDef = CaseDef {
    id: "ssh/russh-inactivity_timeout/2",
    protocol: "ssh",
    spec: "russh 0.65 client::Config inactivity_timeout; src/client/mod.rs",
    quote: RUSSH_INACTIVITY,
    description: "The same russh client to a silent sshd (ClientAliveInterval 0) on a healthy path: the session ends inactivity_timeout after the last exchange, and sshd sees the close.",
    requirement: "russh ends the session with InactivityTimeout at inactivity_timeout after its last read; sshd closes when the client's FIN arrives",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: SSHD_SILENT,
    run: run_inactivity_silent,
    budget,
};

pub static NAT: CaseDef = CaseDef {
    id: "ssh/openssh-ServerAliveInterval/2",
    protocol: "ssh",
    spec: "OpenSSH 9.2 ServerAliveInterval, clientloop.c; RFC 5382 §5",
    quote: SERVER_ALIVE,
    description: "An idle `ssh -N` session to a silent sshd through a NAT that forgets idle flows after N: ServerAliveInterval below N keeps the mapping; at or above, the alive requests meet the forgotten mapping and ssh gives up.",
    requirement: "ServerAliveInterval < N (by more than ssh's whole-second phase) keeps the session for 3 × N; ≥ N + 1 s: ssh exits at ⌊last read⌋ + (ServerAliveCountMax + 1) × ServerAliveInterval",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: SSHD_SILENT,
    run: run_nat,
    budget: nat_budget,
};

pub static TCP_ONLY: CaseDef = CaseDef {
    id: "ssh/openssh-TCPKeepAlive/1",
    protocol: "ssh",
    spec: "OpenSSH 9.2 TCPKeepAlive (ssh and sshd: SO_KEEPALIVE); Linux tcp_keepalive_time/intvl/probes",
    quote: TCP_KEEPALIVE,
    description: "`ssh -N` and sshd with TCPKeepAlive yes and no alive messages on either side; each host's net.ipv4.tcp_keepalive_* set from tcp.idle, tcp.interval, tcp.count: only the kernels' probes can tell.",
    requirement: "Each side's read fails at I + N × V after the last segment it received (RFC 1122 §4.2.3.6 as Linux implements it); on an RST, at the first probe",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: Docker::NotHere("sets the TCP keep-alive sysctls of the server's network namespace, which on the docker testbed is the container's, and runs sshd with TCPKeepAlive yes, which no compose service does"),
    run: run_tcp_only,
    budget,
};

pub fn russh_implementation() -> Implementation {
    Implementation::new("russh", env!("KASPEC_VERSION_RUSSH"))
}

pub fn openssh_client_implementation() -> Implementation {
    Implementation::new("openssh-ssh", openssh_version(SSH))
}

fn budget(ctx: &Ctx) -> Duration {
    let c = &knobs::SshConfig::of(&ctx.config);
    let ssh = (c.server_alive_count_max + 1) * c.server_alive_interval.as_secs() * 1000;
    let russh = (c.keepalive_max + 1) * ms_of(c.keepalive_interval);
    let sshd = SshdSettings::load(&ctx.fixtures)
        .map(|s| 2 * (s.client_alive_count_max + 1) * s.client_alive_interval * 1000)
        .unwrap_or(10_000);
    let t = crate::model::tcp::keepalive_death(&crate::config::TcpConfig::of(&ctx.config)).ms;
    Duration::from_millis(
        ssh.max(russh)
            .max(sshd)
            .max(3 * ms_of(c.inactivity_timeout))
            .max(t)
            + 12_000,
    )
}

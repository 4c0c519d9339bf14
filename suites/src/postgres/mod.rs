//! PostgreSQL: tokio-postgres against a real PostgreSQL from the
//! distribution's packages, started once per run (see [`crate::shared`]) in
//! the server host with a throw-away data directory (`/tmp/kaspec-TAG-postgres`,
//! initdb'd as the `postgres` user) and the settings of
//! `fixtures/postgres/kaspec.conf`. Every case opens its own connection and
//! faults only that flow; server settings a case must isolate are set for its
//! own session (`options='-c ...'`; all of them are per-session GUCs).
//!
//! tokio-postgres sets the socket options TCP keep-alive and TCP_USER_TIMEOUT
//! of its own `Config` (connect_socket.rs), PostgreSQL those of its
//! `tcp_keepalives_*` / `tcp_user_timeout` on every client connection; the
//! windows are Linux's ([`crate::model::tcp::keepalive_death`]), counted from each
//! side's last received segment as its TCP_INFO says just before the fault.
//!
//! The crash fault SIGKILLs the postmaster: its backends notice the
//! postmaster's death (WL_EXIT_ON_PM_DEATH in every wait, pg_sleep's too) and
//! exit at once, so the whole server side is gone, as with a dead host; their
//! FIN dies at the router. The freeze fault SIGSTOPs the connection's own
//! backend (stopping the postmaster would freeze nothing a connection uses).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{last_recv_at, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker};
use crate::config::TcpConfig;
use crate::ctx::Ctx;
use crate::drive;
use crate::model::linux;
use crate::model::tcp::{death_after_idle, keepalive_window};
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;
use crate::shared::Started;
use knobs::PostgresConfig;

mod cases;
mod client;
mod conninfo;
mod external;
mod fleet;
pub mod knobs;
pub use conninfo::parse_conninfo;
mod nat;
mod run;
mod server;

use cases::*;
use client::*;
use fleet::*;
use nat::*;
use run::*;
pub use server::*;

pub const PORT: u16 = 5432;

const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_IMPAIR_AND_CLIENT;

pub static PROTOCOL: Protocol = Protocol {
    name: "postgres",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || postgres_binary().map(drop),
    review: |_, _| Vec::new(),
    external: &[IDLE.id],
};

/// The compose service of the PostgreSQL cases on the docker testbed.
const PG: Docker = Docker::Service {
    service: "postgres",
    implementation: "postgresql",
};

/// PostgreSQL 15 §34.1.2 (libpq connection parameters).
const LIBPQ_KEEPALIVES: &str = "keepalives: Controls whether client-side TCP keepalives are used. [...] keepalives_idle: Controls the number of seconds of inactivity after which TCP should send a keepalive message to the server.";
const LIBPQ_USER_TIMEOUT: &str = "tcp_user_timeout: Controls the number of milliseconds that transmitted data may remain unacknowledged before a connection is forcibly closed.";
/// PostgreSQL 15 §20.3.1 (server settings).
const SERVER_KEEPALIVES: &str = "tcp_keepalives_idle: Specifies the amount of time with no network activity after which the operating system should send a TCP keepalive message to the client.";
const CHECK_INTERVAL_QUOTE: &str = "client_connection_check_interval: Sets the time interval between optional checks that the client is still connected, while running queries. The check is performed by polling the socket, and allows long running queries to be aborted sooner if the kernel reports that the connection is closed.";
/// PostgreSQL 15 §20.11.1.
const IDLE_SESSION: &str = "idle_session_timeout: Terminate any session that has been idle (that is, waiting for a client query), but not within an open transaction, for longer than the specified amount of time.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 8] = [
    &IDLE,
    &QUERY_IN_FLIGHT,
    &BUSY,
    &SERVER_KEEPALIVE,
    &IDLE_SESSION_TIMEOUT,
    &CHECK_INTERVAL,
    &NAT,
    &FLEET,
];

pub static IDLE: CaseDef = CaseDef {
    id: "postgres/libpq-keepalives/1",
    protocol: "postgres",
    spec: "PostgreSQL 15 §34.1.2 (keepalives*), RFC 1122 §4.2.3.6",
    quote: LIBPQ_KEEPALIVES,
    description: "Idle tokio-postgres connection; the path fails: the client's keep-alive fails the Connection future, the server's keep-alive ends the backend's socket.",
    requirement: "Each side's TCP keep-alive declares the idle connection dead at I + N×V (or at U with TCP_USER_TIMEOUT) after its last received segment; tokio-postgres's Connection then resolves with an error",
    faults: IDLE_FAULTS,
    run: run_idle,
    budget,
    fixed_fault: None,
    docker: PG,
};

pub static QUERY_IN_FLIGHT: CaseDef = CaseDef {
    id: "postgres/libpq-tcp_user_timeout/1",
    protocol: "postgres",
    spec: "PostgreSQL 15 §34.1.2 (tcp_user_timeout), RFC 5482 §3",
    quote: LIBPQ_USER_TIMEOUT,
    description: "The path fails, then the client sends a query: it is never acknowledged; tokio-postgres's tcp_user_timeout ends the connection.",
    requirement: "Unacknowledged data older than the user timeout aborts the connection; keep-alive does not probe while the query is in flight",
    faults: &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Freeze, FaultKind::Crash],
    run: run_query_in_flight,
    budget,
    fixed_fault: None,
    docker: PG,
};

/// When the busy client's path fails: 60 ms after its eleventh query (the
/// answer comes within a ms; the client's delayed ACK of it, at most
/// max(srtt, TCP_DELACK_MIN = 40 ms) on this path (tcp_send_delayed_ack),
/// is out, so the backend holds nothing unacknowledged), 40 ms before the
/// next.
const BUSY_FAULT_AFTER: Duration = Duration::from_millis(10 * 100 + 60);

pub static BUSY: CaseDef = CaseDef {
    id: "postgres/libpq-tcp_user_timeout/busy",
    protocol: "postgres",
    spec: "PostgreSQL 15 §34.1.2 (tcp_user_timeout), RFC 5482 §3, RFC 1122 §4.2.3.6",
    quote: LIBPQ_USER_TIMEOUT,
    description: "A busy connection: a query (SELECT 1) every 100 ms; the path fails between two. The next query is never acknowledged, so the client's keep-alive cannot probe: only tcp_user_timeout (else the ~15 min retransmission limit) ends the connection. The backend, idle between queries with nothing unacknowledged, is reaped by its keep-alive.",
    requirement: "Unacknowledged data older than the user timeout aborts the connection; keep-alive does not probe while data is in flight (RFC 1122 §4.2.3.6: only when no data is outstanding); an idle side's keep-alive declares the peer dead at I + N×V after its last received segment",
    faults: &[FaultKind::Blackhole],
    run: run_busy,
    budget,
    fixed_fault: None,
    docker: PG,
};

pub static SERVER_KEEPALIVE: CaseDef = CaseDef {
    id: "postgres/pg15-20.3-tcp_keepalives/1",
    protocol: "postgres",
    spec: "PostgreSQL 15 §20.3.1 (tcp_keepalives_idle/interval/count), RFC 1122 §4.2.3.6",
    quote: SERVER_KEEPALIVES,
    description: "A client without keep-alive goes idle and its path fails: only the server's tcp_keepalives_* reap the connection.",
    requirement: "The server's keep-alive declares a silent client dead at tcp_keepalives_idle + count × interval after the last segment it received",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::Delay, FaultKind::Loss],
    run: run_server_keepalive,
    budget,
    fixed_fault: None,
    docker: PG,
};

// The server's keep-alive sentence for N connections at once: a fleet of
// clients vanishes, and every backend must be reaped by its own window.
pub static FLEET: CaseDef = CaseDef {
    id: "postgres/pg15-20.3-tcp_keepalives/fleet",
    protocol: "postgres",
    spec: "PostgreSQL 15 §20.3.1 (tcp_keepalives_*), §34.1.2 (keepalives*), RFC 1122 §4.2.3.6",
    quote: SERVER_KEEPALIVES,
    description: "A fleet of fleet.connections idle tokio-postgres connections (a server of its own, a backend each), cut at once by one blackhole: the server's keep-alive must reap every backend, each client's must fail its connection.",
    requirement: "Each end of each connection aborts I + N×V after its own last received segment; the server holds no dead backend after the last window",
    faults: &[FaultKind::Blackhole],
    fixed_fault: Some(FaultKind::Blackhole),
    docker: Docker::NotHere("a fleet starts a server of its own sized for it (max_connections) and reads its processes' memory from /proc; it runs on the netns testbed"),
    run: run_fleet,
    budget: fleet_budget,
};

pub static IDLE_SESSION_TIMEOUT: CaseDef = CaseDef {
    id: "postgres/pg15-20.11-idle_session_timeout/1",
    protocol: "postgres",
    spec: "PostgreSQL 15 §20.11.1 (idle_session_timeout)",
    quote: IDLE_SESSION,
    description: "A healthy idle session: the server ends it at idle_session_timeout (FATAL 57P05, then close).",
    requirement: "A session idle (outside a transaction) longer than idle_session_timeout is terminated",
    faults: &[FaultKind::None],
    run: run_idle_session_timeout,
    budget,
    fixed_fault: Some(FaultKind::None),
    docker: PG,
};

pub static CHECK_INTERVAL: CaseDef = CaseDef {
    id: "postgres/pg15-20.3-client_connection_check_interval/1",
    protocol: "postgres",
    spec: "PostgreSQL 15 §20.3.1 (client_connection_check_interval)",
    quote: CHECK_INTERVAL_QUOTE,
    description: "A long query (pg_sleep) runs and the client's path fails: the backend is cancelled only once its TCP has declared the connection dead, within one check interval.",
    requirement: "While a query runs, the backend checks the socket every client_connection_check_interval and aborts the query once the kernel reports the connection closed",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::ClientStall, FaultKind::ClientCrash],
    run: run_check_interval,
    budget,
    fixed_fault: None,
    docker: PG,
};

pub static NAT: CaseDef = CaseDef {
    id: "postgres/libpq-keepalives/2",
    protocol: "postgres",
    spec: "PostgreSQL 15 §34.1.2 (keepalives*), RFC 5382 §5",
    quote: LIBPQ_KEEPALIVES,
    description: "Idle tokio-postgres connection through a NAT that forgets idle flows after N (the server's keep-alive left at the kernel default for this session): the client's keep-alive below N keeps the connection; at or above N it breaks, and the client's keep-alive notices.",
    requirement: "A keep-alive keeps a NAT mapping only when its period (keepalives_idle) is below the NAT's idle timeout",
    faults: &[FaultKind::NatExpiry],
    run: run_nat,
    budget: |ctx| {
        let d = crate::model::tcp::keepalive_death(&knobs::PostgresConfig::of(&ctx.config).tcp());
        Duration::from_secs(12) + 3 * crate::model::nat::nat_idle(ctx) + Duration::from_millis(d.ms + d.slack_ms)
    },
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: PG,
};

pub fn client_implementation() -> Implementation {
    Implementation::new("tokio-postgres", env!("KASPEC_VERSION_TOKIO_POSTGRES"))
}

fn budget(ctx: &Ctx) -> Duration {
    let c = crate::model::tcp::keepalive_death(&knobs::PostgresConfig::of(&ctx.config).tcp());
    let s = ServerSettings::load(&ctx.fixtures)
        .map(|s| crate::model::tcp::keepalive_death(&s.tcp).ms + ms_of(s.check_interval))
        .unwrap_or(10_000);
    Duration::from_millis(
        3 * c
            .ms
            .max(s)
            .max(ms_of(knobs::PostgresConfig::of(&ctx.config).tcp_user_timeout) + 1000)
            + 5000,
    )
}

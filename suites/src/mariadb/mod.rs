//! MariaDB: mysql_async against a real mariadbd from the distribution's
//! packages, started once per run (see [`crate::shared`]) in the server
//! host with a throw-away data directory and the settings of
//! `fixtures/mariadb/kaspec.cnf`. Every case opens its own connection and
//! faults only that flow; a case that must isolate a server setting sets it
//! for its own session (`SET SESSION wait_timeout`).
//!
//! MariaDB 10.11 (the windows' source):
//! - `wait_timeout` W: between commands the connection's thread reads the
//!   next one with a read timeout of W (sql_parse.cc `do_command`:
//!   `my_net_set_read_timeout(net, thd->get_net_wait_timeout())`; vio
//!   waits in poll() with W × 1000 ms), so it closes the connection at its
//!   last reply + W, whatever the path does. `interactive_timeout` replaces
//!   W only for a client that sets CLIENT_INTERACTIVE, which mysql_async
//!   does not.
//! - `tcp_keepalive_time` / `_interval` / `_probes` (MariaDB ≥ 10.3.3): set
//!   on every client socket with SO_KEEPALIVE (sql_connect.cc); the case
//!   reads them back from the server's socket (pidfd_getfd) and judges with
//!   what it found.
//!
//! mysql_async 0.37: `tcp_keepalive` (io/mod.rs `connect_tcp`:
//! `set_tcp_keepalive(&TcpKeepalive::new().with_time(duration))`) sets
//! SO_KEEPALIVE and TCP_KEEPIDLE only: the probe interval and count are the
//! client host's `net.ipv4.tcp_keepalive_intvl` / `_probes`. It has no read
//! or write timeout: a query on a dead path waits as long as the kernel
//! retransmits. An idle `Conn` does not read its socket.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
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
use crate::model::tcp::keepalive_window;
use crate::model::{ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;
use crate::shared::Started;
use knobs::MariadbConfig;

mod client;
pub mod knobs;
mod url;
pub use url::parse_mysql_url;
mod expect;
mod nat;
mod review;
mod run;
mod server;

use client::*;
use expect::*;
use nat::*;
use run::*;
pub use server::*;

pub const PORT: u16 = 3306;

pub static PROTOCOL: Protocol = Protocol {
    name: "mariadb",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || mariadbd().map(drop),
    review: review::review,
    external: &[],
};

/// The compose service of the MariaDB cases on the docker testbed.
const MARIADB: Docker = Docker::Service {
    service: "mariadb",
    implementation: "mariadb",
};

/// MariaDB Server System Variables (mariadb.com/kb).
const WAIT_TIMEOUT_QUOTE: &str = "wait_timeout: Time in seconds that the server waits for a connection to become active before closing it.";
const TCP_KEEPALIVE_QUOTE: &str = "tcp_keepalive_time: Timeout, in seconds, with no activity until the first TCP keep-alive packet is sent. If set to 0, the system dependent default is used.";
/// mysql_async 0.37 docs, `Opts::conn_ttl`.
const POOL_QUOTE: &str = "Pool will close a connection if time since last IO exceeds this number of seconds (defaults to `wait_timeout`).";
/// mysql_async 0.37 docs, `Opts::tcp_keepalive`.
const CLIENT_KEEPALIVE_QUOTE: &str = "TCP keep alive time for mysql connection. Can be defined using `tcp_keepalive` connection url parameter.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 7] = [
    &WAIT_TIMEOUT,
    &POOL,
    &REAP,
    &QUERY_IN_FLIGHT,
    &SERVER_KEEPALIVE,
    &CLIENT_KEEPALIVE,
    &NAT,
];

pub static WAIT_TIMEOUT: CaseDef = CaseDef {
    id: "mariadb/wait_timeout/1",
    protocol: "mariadb",
    spec: "MariaDB 10.11 wait_timeout; sql_parse.cc do_command (read timeout = wait_timeout)",
    quote: WAIT_TIMEOUT_QUOTE,
    description: "A healthy mysql_async Conn goes idle after one SELECT 1: the server closes it at wait_timeout after its reply; the application's next query, 1 s after that, shows what the client sees.",
    requirement: "The server closes a connection idle for wait_timeout (its read of the next command times out); a query on the closed connection then fails at once",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: MARIADB,
    run: run_wait_timeout,
    budget,
};

pub static REAP: CaseDef = CaseDef {
    id: "mariadb/wait_timeout/3",
    protocol: "mariadb",
    spec: "MariaDB 10.11 wait_timeout; sql_parse.cc do_command (read timeout = wait_timeout)",
    quote: WAIT_TIMEOUT_QUOTE,
    description: "The same idle Conn behind a failed path: the server reaps it at wait_timeout whatever the path does (or earlier, where its keep-alive meets an RST; never while frozen); the next query, 1 s after the close, fails where the server's FIN or the router's RST reaches the client and waits where the path swallows it.",
    requirement: "The server closes a connection idle for wait_timeout whatever the path does; a query on it fails at once only where something reaches the client",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::Freeze],
    fixed_fault: None,
    docker: MARIADB,
    run: run_wait_timeout,
    budget,
};

pub static POOL: CaseDef = CaseDef {
    id: "mariadb/wait_timeout/2",
    protocol: "mariadb",
    spec: "MariaDB 10.11 wait_timeout; mysql_async 0.37 Pool (conn/pool/mod.rs: expired(), check())",
    quote: POOL_QUOTE,
    description: "The same idle period through a mysql_async Pool of one connection, the path failed: the connection goes back to the pool after its SELECT 1, the server closes it at wait_timeout, and the next checkout 1 s later gets a new connection when the old one expired (TTL: conn_ttl, else the server's wait_timeout) or shows the server's FIN; only a connection that passes both carries the query.",
    requirement: "The server closes the pooled connection at wait_timeout; the pool does not hand out a connection idle past its TTL or one whose FIN is in",
    faults: &[FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: MARIADB,
    run: run_pool,
    budget,
};

pub static QUERY_IN_FLIGHT: CaseDef = CaseDef {
    id: "mariadb/query-in-flight/1",
    protocol: "mariadb",
    spec: "mysql_async 0.37 (no read timeout); RFC 9293 §3.8.3; MariaDB 10.11 tcp_keepalive_*",
    quote: CLIENT_KEEPALIVE_QUOTE,
    description: "The path fails, then the client sends a query (its session wait_timeout raised out of the way): mysql_async has no read timeout and keep-alive does not probe while the query is unacknowledged, so the client waits; the server, which never gets the query, reaps the idle connection with its keep-alive.",
    requirement: "A query on a dead path fails only on an RST; the server's keep-alive declares the silent client dead at tcp_keepalive_time + probes × interval after the last segment it received",
    faults: &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Freeze, FaultKind::Crash],
    fixed_fault: None,
    docker: MARIADB,
    run: run_query_in_flight,
    budget,
};

pub static SERVER_KEEPALIVE: CaseDef = CaseDef {
    id: "mariadb/tcp_keepalive_time/1",
    protocol: "mariadb",
    spec: "MariaDB 10.11 tcp_keepalive_time/_interval/_probes; RFC 1122 §4.2.3.6",
    quote: TCP_KEEPALIVE_QUOTE,
    description: "An idle mysql_async client without keep-alive behind a failed path (its session wait_timeout raised out of the way): only the server's TCP keep-alive reaps the connection.",
    requirement: "The server's socket, with the keep-alive options mariadbd set (read back), dies at TCP_KEEPIDLE + TCP_KEEPCNT × TCP_KEEPINTVL after the last segment it received",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: MARIADB,
    run: run_server_keepalive,
    budget,
};

pub static CLIENT_KEEPALIVE: CaseDef = CaseDef {
    id: "mariadb/mysql_async-tcp_keepalive/1",
    protocol: "mariadb",
    spec: "mysql_async 0.37 Opts::tcp_keepalive (io/mod.rs connect_tcp); RFC 1122 §4.2.3.6",
    quote: CLIENT_KEEPALIVE_QUOTE,
    description: "An idle mysql_async Conn with mariadb.tcp_keepalive behind a failed path: mysql_async sets only TCP_KEEPIDLE, so the probes follow the client host's tcp_keepalive_intvl/_probes (set to 1 s and 2 for this case, read back); the kernel kills the socket, and the next query shows the error.",
    requirement: "The client's socket, with TCP_KEEPIDLE = tcp_keepalive and the host's interval and count, dies at TCP_KEEPIDLE + count × interval after its last received segment",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::Reset, FaultKind::Crash],
    fixed_fault: None,
    docker: MARIADB,
    run: run_client_keepalive,
    budget,
};

pub static NAT: CaseDef = CaseDef {
    id: "mariadb/mysql_async-tcp_keepalive/2",
    protocol: "mariadb",
    spec: "mysql_async 0.37 Opts::tcp_keepalive; RFC 5382 §5",
    quote: CLIENT_KEEPALIVE_QUOTE,
    description: "An idle mysql_async Conn through a NAT that forgets idle flows after N (the server's keep-alive at the kernel's 2 h, its wait_timeout out of the way; the client host's probe interval 1 s, 2 probes): mariadb.tcp_keepalive below N keeps the connection; at or above N it breaks, and the client's keep-alive notices.",
    requirement: "A keep-alive keeps a NAT mapping only when its idle time (TCP_KEEPIDLE = tcp_keepalive) is below the NAT's idle timeout",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: Docker::NotHere("its server runs with tcp_keepalive_time 0 (the kernel's 2 h), the compose service with the fixture's 1 s"),
    run: run_nat,
    budget: |ctx| {
        let k = ms_of(knobs::MariadbConfig::of(&ctx.config).tcp_keepalive) + 2 * CLIENT_PROBE_INTERVAL_S * 1000;
        Duration::from_secs(15) + 3 * crate::model::nat::nat_idle(ctx) + Duration::from_millis(k)
    },
};

pub fn client_implementation() -> Implementation {
    Implementation::new("mysql_async", env!("KASPEC_VERSION_MYSQL_ASYNC"))
}

fn budget(ctx: &Ctx) -> Duration {
    let s = ServerSettings::load(&ctx.fixtures)
        .map(|s| ms_of(s.wait_timeout).max(crate::model::tcp::keepalive_death(&s.keepalive()).ms))
        .unwrap_or(10_000);
    let c = ms_of(knobs::MariadbConfig::of(&ctx.config).tcp_keepalive)
        + 2 * CLIENT_PROBE_INTERVAL_S * 1000;
    Duration::from_millis(3 * (s + 1000).max(c) + 8000)
}

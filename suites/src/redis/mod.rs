//! Redis: redis-rs's multiplexed async connection against a real
//! redis-server from the distribution's packages, started per case in the
//! server host with a throw-away directory and the settings of
//! `fixtures/redis/kaspec.conf` (plus the settings a case must isolate, on
//! its command line).
//!
//! redis-server 7.0 (the windows' source, read from its code):
//! - `timeout` T: `clientsCronHandleTimeout` (timeout.c) frees a client when
//!   `now/1000 − c->lastinteraction > T`, whole seconds on both sides
//!   (`lastinteraction` is the cached `server.unixtime` of its last read or
//!   write), and `clientsCron` visits every client on each `serverCron` call
//!   while there are fewer than CLIENTS_CRON_MIN_ITERATIONS (5) clients:
//!   every 1000/hz ms.
//! - `tcp-keepalive` K: `anetKeepAlive` (anet.c) sets SO_KEEPALIVE,
//!   TCP_KEEPIDLE = K, TCP_KEEPINTVL = K/3 (at least 1), TCP_KEEPCNT = 3 on
//!   every accepted client; the case reads them back from the server's
//!   socket (pidfd_getfd) and judges with what it found.
//!
//! redis-rs 1.x: the multiplexed connection's driver task always polls the
//! socket's read side (aio/multiplexed_connection.rs `poll_read`); on EOF or
//! a read error it fails the requests in flight and, on a RESP3 connection,
//! hands a `PushKind::Disconnection` to the push sender — that push is the
//! client's own detection here. Each command has a response timeout
//! (`AsyncConnectionConfig::set_response_timeout`, 500 ms by default); TCP
//! keep-alive is off unless `TcpSettings::set_keepalive` is given.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

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

mod client;
mod expect;
pub mod knobs;
mod nat;
mod review;
mod run;
mod server;

use client::*;
use expect::*;
use nat::*;
use run::*;
use server::*;

pub const PORT: u16 = 6379;

pub static PROTOCOL: Protocol = Protocol {
    name: "redis",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: || require_program("redis-server", "redis-server").map(drop),
    review: review::review,
    external: &[],
};

/// The compose services of the Redis cases on the docker testbed (see
/// [`server::service`]): the fixture's server, the same with `timeout 0`,
/// and with `timeout 0` and `tcp-keepalive 0`.
const REDIS: Docker = Docker::Service {
    service: "redis",
    implementation: "redis-server",
};
const REDIS_NO_TIMEOUT: Docker = Docker::Service {
    service: "redis-no-timeout",
    implementation: "redis-server",
};
const REDIS_QUIET: Docker = Docker::Service {
    service: "redis-quiet",
    implementation: "redis-server",
};

/// redis.conf (Redis 7.0), the `timeout` and `tcp-keepalive` entries.
const TIMEOUT_QUOTE: &str =
    "Close the connection after a client is idle for N seconds (0 to disable)";
const TCP_KEEPALIVE_QUOTE: &str = "If non-zero, use SO_KEEPALIVE to send TCP ACKs to clients in absence of communication. This is useful for two reasons: 1) Detect dead peers. [...] On Linux, the specified value (in seconds) is the period used to send ACKs. Note that to close the connection the double of the time is needed.";
/// redis-rs 1.x docs, `TcpSettings::set_keepalive`; RFC 1122 §4.2.3.6.
const KEEPALIVE_QUOTE: &str = "Set parameters configuring TCP keepalive probes for this socket. [RFC 1122: Keep-alive packets MUST only be sent when no data or acknowledgement packets have been received for the connection within an interval.]";
/// redis-rs 1.x docs, `AsyncConnectionConfig::set_response_timeout`.
const RESPONSE_TIMEOUT_QUOTE: &str = "The new connection will time out operations after `response_timeout` has passed. Set `None` if you don't want requests to time out.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 7] = [
    &IDLE_TIMEOUT,
    &SERVER_KEEPALIVE,
    &BLOCKED,
    &CLIENT_KEEPALIVE,
    &RESPONSE_TIMEOUT,
    &NAT_BELOW,
    &NAT_ABOVE,
];

pub static IDLE_TIMEOUT: CaseDef = CaseDef {
    id: "redis/redis.conf-timeout/1",
    protocol: "redis",
    spec: "redis.conf (Redis 7.0) `timeout`; timeout.c clientsCronHandleTimeout",
    quote: TIMEOUT_QUOTE,
    description: "A healthy redis-rs connection goes idle after one PING: the server closes it at `timeout` (whole seconds, checked every 1000/hz ms); redis-rs's driver reads the EOF and reports the disconnection on its own.",
    requirement: "The server frees a client once the whole seconds since its last command exceed `timeout`, at the next clientsCron; the client learns from the EOF",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: REDIS,
    run: run_idle_timeout,
    budget,
};

pub static SERVER_KEEPALIVE: CaseDef = CaseDef {
    id: "redis/redis.conf-tcp-keepalive/1",
    protocol: "redis",
    spec: "redis.conf (Redis 7.0) `tcp-keepalive`; anet.c anetKeepAlive; RFC 1122 §4.2.3.6",
    quote: TCP_KEEPALIVE_QUOTE,
    description: "An idle redis-rs client (no keep-alive: the crate's default) behind a failed path: only the server's tcp-keepalive reaps the connection (`timeout` 0 for this case).",
    requirement: "The server's socket, with the keep-alive options Redis set (read back), dies at TCP_KEEPIDLE + 3 × TCP_KEEPINTVL after the last segment it received; the idle client learns only from an RST that reaches it",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
    fixed_fault: None,
    docker: REDIS_NO_TIMEOUT,
    run: run_server_keepalive,
    budget,
};

pub static BLOCKED: CaseDef = CaseDef {
    id: "redis/redis.conf-tcp-keepalive/2",
    protocol: "redis",
    spec: "redis.conf (Redis 7.0) `timeout`, `tcp-keepalive`; timeout.c clientsCronHandleTimeout (`/* No timeout for BLPOP */`); anet.c anetKeepAlive",
    quote: TCP_KEEPALIVE_QUOTE,
    description: "A redis-rs client blocked in `BLPOP kaspec:never 0` vanishes behind a failed path. `timeout` is 1 s, but Redis exempts blocked clients from it: only `tcp-keepalive` reaps the connection (and releases the blocked key's waiter). The client (response timeout off: a blocking command waits) notices nothing.",
    requirement: "The server does not close a blocked client at `timeout`; its socket, with the keep-alive options Redis set (read back), dies at TCP_KEEPIDLE + 3 × TCP_KEEPINTVL after the last segment it received",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::Reset],
    fixed_fault: None,
    docker: REDIS,
    run: run_blocked,
    budget,
};

pub static CLIENT_KEEPALIVE: CaseDef = CaseDef {
    id: "redis/redis-rs-keepalive/1",
    protocol: "redis",
    spec: "redis-rs 1.x TcpSettings::set_keepalive (io/tcp.rs stream_with_settings); RFC 1122 §4.2.3.6",
    quote: KEEPALIVE_QUOTE,
    description: "An idle redis-rs connection with its own TCP keep-alive (`redis.keepalive*`, on for this case: redis-rs's default is off) whose server is gone; the server has `timeout` 0 and `tcp-keepalive` 0, so only the client's probes can notice. The driver's read fails and it reports the disconnection.",
    requirement: "The client socket, with the options redis-rs set from TcpSettings (read back), dies at TCP_KEEPIDLE + TCP_KEEPCNT × TCP_KEEPINTVL after the last segment it received; the driver turns the read error into PushKind::Disconnection",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::Crash],
    fixed_fault: None,
    docker: REDIS_QUIET,
    run: run_client_keepalive,
    budget,
};

pub static RESPONSE_TIMEOUT: CaseDef = CaseDef {
    id: "redis/redis-rs-response_timeout/1",
    protocol: "redis",
    spec: "redis-rs 1.x AsyncConnectionConfig::set_response_timeout",
    quote: RESPONSE_TIMEOUT_QUOTE,
    description: "An idle redis-rs connection (the crate's defaults: no TCP keep-alive) whose server is gone: it notices nothing while idle; its next command (a PING 1 s after the fault) fails at the response timeout, or at once on an RST. The server has `timeout` 0 and `tcp-keepalive` 0.",
    requirement: "A command without a reply fails after redis.response_timeout; an idle connection without keep-alive is never probed",
    faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::Freeze],
    fixed_fault: None,
    docker: REDIS_QUIET,
    run: run_response_timeout,
    budget,
};

pub fn client_implementation() -> Implementation {
    Implementation::new("redis-rs", env!("KASPEC_VERSION_REDIS"))
}

fn budget(ctx: &Ctx) -> Duration {
    let s = ServerSettings::load(&ctx.fixtures)
        .map(|s| ms_of(s.timeout).max(crate::model::tcp::keepalive_death(&s.keepalive()).ms))
        .unwrap_or(10_000);
    Duration::from_millis(
        3 * (s + 1000)
            .max(COMMAND_AFTER_MS + ms_of(knobs::RedisConfig::of(&ctx.config).response_timeout))
            + 6000,
    )
}

pub static NAT_BELOW: CaseDef = CaseDef {
    id: "redis/redis.conf-tcp-keepalive/nat",
    protocol: "redis",
    spec: "redis.conf (Redis 7.0) `tcp-keepalive` (reason 2); RFC 5382 §5",
    quote: TCP_KEEPALIVE_QUOTE,
    description: "An idle redis-rs client (no keep-alive of its own) through a NAT that forgets idle flows after N; the server's `tcp-keepalive` K (the fixture's 1 s) < N is the only traffic. Its probes and the client's ACKs refresh the mapping: a PING 2 × N after the expiry still gets its reply.",
    requirement: "With TCP_KEEPIDLE = K < N the server's probes keep the mapping: neither side loses the connection",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: REDIS_NO_TIMEOUT,
    run: run_nat_below,
    budget: nat_budget,
};

pub static NAT_ABOVE: CaseDef = CaseDef {
    id: "redis/redis.conf-tcp-keepalive/nat-above",
    protocol: "redis",
    spec: "redis.conf (Redis 7.0) `tcp-keepalive` (reason 2); RFC 5382 §5",
    quote: TCP_KEEPALIVE_QUOTE,
    description: "The same with `tcp-keepalive` K = N + 1 s: the mapping is forgotten before the first probe. The server's probes are dropped and it reaps the client at its keep-alive death; the client's PING 2 × N after the expiry fails at its response timeout.",
    requirement: "With K ≥ N the server dies at K + 3 × max(K/3, 1) after its last segment; the client's next command fails at the response timeout",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: Docker::NotHere("its server's tcp-keepalive is the network profile's NAT timeout + 1 s, a per-run setting no compose service has"),
    run: run_nat_above,
    budget: nat_budget,
};

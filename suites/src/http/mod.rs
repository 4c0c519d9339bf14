//! HTTP keep-alive: reqwest 0.13 (hyper-util's legacy client pool over
//! hyper 1.x), HTTP/1.1 and HTTP/2 with prior knowledge, against nginx and
//! HAProxy (Debian's packages, started per case with fixtures/http/) and
//! kaspec's own hyper server (`kaspec serve http`).
//!
//! What the windows come from (read from the sources, cited where used):
//! - the server's idle timeout S (nginx `keepalive_timeout`, HAProxy
//!   `timeout http-keep-alive`, hyper's `header_read_timeout`) runs from
//!   the end of the last response; the server then closes (FIN, or GOAWAY
//!   and FIN on HTTP/2);
//! - hyper-util's pool (client/legacy/client.rs `send_request`, lines
//!   247–268) retries a request only when the connection gave it back
//!   unsent (`err.take_message()`, line 327) on a reused connection; a
//!   request written to a connection the server has just closed fails with
//!   hyper's IncompleteMessage ("connection closed before message
//!   completed");
//! - reqwest's socket options (src/async_impl/client.rs lines 302–308, 924–928)
//!   are read back from the socket with getsockopt.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
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
use crate::config::TcpConfig;
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{linux, ms_of, rel_ms};
use crate::outcome::{RunFacts, Side};
use crate::protocol::Protocol;

pub mod client;
mod expect;
pub mod knobs;
mod nat;
mod ping;
pub mod proxy;
mod retries;
mod review;
mod run;
pub mod server;

use client::*;
use expect::*;
use knobs::HttpConfig;
use nat::*;
use ping::*;
use run::*;
use server::*;

pub const H1_PORT: u16 = 80;
pub const H2_PORT: u16 = 81;

pub static PROTOCOL: Protocol = Protocol {
    name: "http",
    cases: &CASES,
    knobs: &knobs::KNOBS,
    prerequisites: proxy::prerequisites,
    review: review::review,
    external: &[],
};

/// On the docker testbed: docker-compose.yml's HTTP servers, each
/// checked to run what S is computed from (server.rs `adopt`). The cases
/// that measure the server's idle timeout run against the services with
/// servers.toml's S ...
const FIXTURE_SERVICES: Docker = Docker::Services(&[
    ("nginx", "nginx"),
    ("haproxy", "haproxy"),
    ("kaspec-http", "kaspec-http (hyper)"),
]);
/// ... the cases that isolate the client against those with `[long]`.
const LONG_SERVICES: Docker = Docker::Services(&[
    ("nginx-long", "nginx"),
    ("haproxy-long", "haproxy"),
    ("kaspec-http-long", "kaspec-http (hyper)"),
]);

/// RFC 9112 §9.3 and §9.3.1 / §9.5.
const PERSISTENCE_QUOTE: &str = "A client that supports persistent connections MAY \"pipeline\" its requests [...] A server [...] SHOULD send a \"close\" connection option [...] Connections can be closed at any time, with or without intention. Implementations ought to anticipate the need to recover from asynchronous close events. [§9.3.1: A user agent MUST NOT automatically retry a request with a non-idempotent method unless it has some means to know that the request semantics are actually idempotent] [§9.5: A client, server, or proxy MAY close the transport connection at any time. For example, a client might have started to send a new request at the same time that the server has decided to close the \"idle\" connection.]";
/// RFC 9113 §6.7 and §6.8.
const PING_QUOTE: &str = "The PING frame (type=0x06) is a mechanism for measuring a minimal round-trip time from the sender, as well as determining whether an idle connection is still functional. [§6.8: The GOAWAY frame is used to initiate shutdown of a connection [...] Once the GOAWAY is sent, the sender will ignore frames sent on streams initiated by the receiver if the stream has an identifier higher than the included last stream identifier.]";
/// RFC 5482 §3, and reqwest's docs.
const USER_TIMEOUT_QUOTE: &str = "The USER TIMEOUT option [...] specifies the maximum amount of time that transmitted data may remain unacknowledged before TCP will forcefully close the corresponding connection. [reqwest ClientBuilder::timeout: Enables a total request timeout. The timeout is applied from when the request starts connecting until the response body has finished.]";

/// RFC 5382 §5 (REQ-5).
const NAT_QUOTE: &str = "If a NAT cannot determine whether the endpoints of a TCP connection are active, it MAY abandon the session if it has been idle for some time. In such cases, the value of the \"established connection idle-timeout\" MUST NOT be less than 2 hours 4 minutes.";

/// Every case of this protocol, in report order.
pub static CASES: [&CaseDef; 14] = [
    &IDLE,
    &GOAWAY,
    &RACE,
    &DEAD_POOLED,
    &PING,
    &PING_BUSY_ONLY,
    &NAT_BELOW,
    &NAT_ABOVE,
    // Two keep-alive levels, through a proxy (the proxy topology).
    proxy::CASES[0],
    proxy::CASES[1],
    proxy::CASES[2],
    proxy::CASES[3],
    proxy::CASES[4],
    proxy::CASES[5],
];

pub static IDLE: CaseDef = CaseDef {
    id: "http/rfc9112-9.3/1",
    protocol: "http",
    spec: "RFC 9112 §9.3, §9.5; nginx keepalive_timeout, HAProxy timeout http-keep-alive, hyper header_read_timeout",
    quote: PERSISTENCE_QUOTE,
    description: "A reqwest HTTP/1.1 connection goes idle in the pool after one request (pool_idle_timeout off for the case): each server closes it at its idle timeout S after the response; hyper reads the FIN and drops the pooled connection; a request S + 500 ms after the response goes out on a new connection without error.",
    requirement: "The server closes at S after its last response (± the anchor's jiffy, + its ms timer); the client's pool closes its end on the FIN; the next request succeeds on a new connection",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: FIXTURE_SERVICES,
    run: run_idle,
    budget: budget_idle,
};

pub static GOAWAY: CaseDef = CaseDef {
    id: "http/rfc9113-6.8/goaway",
    protocol: "http",
    spec: "RFC 9113 §6.8; nginx keepalive_timeout (HTTP/2), HAProxy timeout client",
    quote: PING_QUOTE,
    description: "The same over HTTP/2 with prior knowledge: nginx and HAProxy send GOAWAY and close at their idle timeout S; hyper drops the connection; the next request goes out on a new connection without error. kaspec's hyper server has no HTTP/2 idle timeout (hyper 1.x: none) and keeps it.",
    requirement: "GOAWAY and close at S after the last response; honoured by the client without a failed request",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: FIXTURE_SERVICES,
    run: run_goaway,
    budget: budget_idle,
};

pub static RACE: CaseDef = CaseDef {
    id: "http/rfc9112-9.3.1/race",
    protocol: "http",
    spec: "RFC 9112 §9.3.1, §9.5; hyper-util 0.1 client/legacy/client.rs send_request (retry of unsent requests)",
    quote: PERSISTENCE_QUOTE,
    description: "The reuse race: a request on a pooled HTTP/1.1 connection sent at S + d after the previous response, d on a grid from −http.race_span to +http.race_span (http.race_step), http.race_rounds times: each one's outcome (reused, new connection, failed with its error kinds); the failure rate as a curve.",
    requirement: "With pool_idle_timeout ≤ S − the round trip no request fails; otherwise a request may fail only when sent while the server's close is in flight (S ± the anchor's jiffy and timer grain); hyper-util retries only a request the connection gave back unsent",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: FIXTURE_SERVICES,
    run: run_race,
    budget: budget_race,
};

pub static DEAD_POOLED: CaseDef = CaseDef {
    id: "http/rfc5482-3/pooled",
    protocol: "http",
    spec: "RFC 5482 §3 (TCP_USER_TIMEOUT); reqwest ClientBuilder::timeout, tcp_user_timeout, tcp_keepalive",
    quote: USER_TIMEOUT_QUOTE,
    description: "A pooled HTTP/1.1 connection whose path fails while it is idle (the server keeps it: its idle timeout is [long]); the next request, 500 ms after the fault, fails after http.request_timeout or http.tcp_user_timeout, whichever comes first (TCP keep-alive does not probe while the request is unacknowledged); under reset at once.",
    requirement: "The request fails at min(send + request_timeout, send + first retransmission + TCP_USER_TIMEOUT); at once on an RST",
    faults: &[FaultKind::Blackhole, FaultKind::Reset],
    fixed_fault: None,
    docker: LONG_SERVICES,
    run: run_dead_pooled,
    budget: budget_dead,
};

pub static PING: CaseDef = CaseDef {
    id: "http/rfc9113-6.7/ping",
    protocol: "http",
    spec: "RFC 9113 §6.7; hyper 1.x src/proto/h2/ping.rs (reqwest http2_keep_alive_*)",
    quote: PING_QUOTE,
    description: "An idle HTTP/2 reqwest connection with http2_keep_alive_interval I, timeout T and while_idle on (for this case) whose path fails: hyper PINGs at its last read + I and closes T later; under reset the PING meets the RST. The servers keep the connection ([long]).",
    requirement: "The client closes at the last read + I + T (hyper's rule); at the PING under reset",
    faults: &[FaultKind::Blackhole, FaultKind::Reset],
    fixed_fault: None,
    docker: LONG_SERVICES,
    run: run_ping,
    budget: budget_ping,
};

pub static PING_BUSY_ONLY: CaseDef = CaseDef {
    id: "http/rfc9113-6.7/ping-busy-only",
    protocol: "http",
    spec: "RFC 9113 §6.7; hyper 1.x src/proto/h2/ping.rs `maybe_ping` (while_idle)",
    quote: PING_QUOTE,
    description: "The same with while_idle off (reqwest's default): no stream is open, so hyper sends no PING and the idle connection on the dead path is not noticed.",
    requirement: "Without while_idle an idle HTTP/2 connection is never pinged",
    faults: &[FaultKind::Blackhole],
    fixed_fault: None,
    docker: LONG_SERVICES,
    run: run_ping_busy_only,
    budget: budget_ping,
};

pub static NAT_BELOW: CaseDef = CaseDef {
    id: "http/rfc5382-5/nat-below",
    protocol: "http",
    spec: "RFC 5382 §5; hyper-util 0.1 client/legacy/pool.rs (expired idle connections are not checked out)",
    quote: NAT_QUOTE,
    description: "Through a NAT that forgets idle flows after N, pool_idle_timeout N/2 (TCP keep-alive off): the pool drops the connection before the mapping is forgotten; a request 2 × N after the last response goes out on a new connection and succeeds.",
    requirement: "With P < N no request meets a forgotten mapping",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: LONG_SERVICES,
    run: run_nat_below,
    budget: budget_nat,
};

pub static NAT_ABOVE: CaseDef = CaseDef {
    id: "http/rfc5382-5/nat-above",
    protocol: "http",
    spec: "RFC 5382 §5; RFC 5482 §3; reqwest ClientBuilder::timeout",
    quote: NAT_QUOTE,
    description: "The same with pool_idle_timeout 3 × N: the request 2 × N after the last response goes out on the pooled connection whose mapping is gone and fails at http.request_timeout or http.tcp_user_timeout, whichever comes first.",
    requirement: "With P > N the next request fails at min(R, first retransmission + U)",
    faults: &[FaultKind::NatExpiry],
    fixed_fault: Some(FaultKind::NatExpiry),
    docker: LONG_SERVICES,
    run: run_nat_above,
    budget: budget_nat,
};

pub fn client_implementation() -> Implementation {
    Implementation::new(
        "reqwest",
        format!(
            "{} (hyper {}, hyper-util {})",
            env!("KASPEC_VERSION_REQWEST"),
            env!("KASPEC_VERSION_HYPER"),
            env!("KASPEC_VERSION_HYPER_UTIL")
        ),
    )
}

fn fixture_idle(ctx: &Ctx) -> u64 {
    SERVERS
        .iter()
        .filter_map(|s| s.idle_timeout(&ctx.fixtures, Idle::Fixture).ok())
        .map(ms_of)
        .max()
        .unwrap_or(1000)
}

fn budget_idle(ctx: &Ctx) -> Duration {
    Duration::from_millis(3 * (fixture_idle(ctx) + 3000) + 5000)
}

fn budget_race(ctx: &Ctx) -> Duration {
    let c = HttpConfig::of(&ctx.config);
    let points = 2 * ms_of(c.race_span) / ms_of(c.race_step).max(1) + 1;
    let one = fixture_idle(ctx) + ms_of(c.race_span) + 200;
    Duration::from_millis(3 * (points * c.race_rounds * one + 3000) + 5000)
}

fn budget_dead(ctx: &Ctx) -> Duration {
    let c = HttpConfig::of(&ctx.config);
    let first = [c.request_timeout, c.tcp.user_timeout]
        .into_iter()
        .filter(|d| !d.is_zero())
        .map(ms_of)
        .min()
        .unwrap_or(5000);
    Duration::from_millis(3 * (REQUEST_AFTER_MS + first + 2000) + 5000)
}

fn budget_ping(ctx: &Ctx) -> Duration {
    let c = HttpConfig::of(&ctx.config);
    Duration::from_millis(3 * (3 * (ms_of(c.h2_interval) + ms_of(c.h2_timeout)) + 3000) + 5000)
}

fn budget_nat(ctx: &Ctx) -> Duration {
    let n = ms_of(crate::model::nat::nat_idle(ctx));
    Duration::from_millis(3 * (3 * n + ms_of(budget_dead(ctx))) + 5000)
}

//! HTTP through a proxy: issue 15's case 5, the two keep-alive levels.
//! The proxy topology (harness `testbed::PROXY`): client ── router ── proxy
//! ── upstream-router ── server, so each level has its own path to cut.
//! The client is reqwest (HTTP/1.1, its pool kept), the proxy nginx or
//! HAProxy (Debian's packages, started per case from
//! `fixtures/http/proxy/`), the upstream kaspec's own hyper server.
//!
//! - `server.rs`: the proxies (their settings, rendered configuration,
//!   versions) and the ports;
//! - `client.rs`: reqwest on a thread in the client host;
//! - `expect.rs`: the windows, from the proxy's configuration and its source;
//! - `run.rs`: how a case runs, three sides judged.

use std::time::Duration;

use kaspec_harness::caps::require_program;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;

pub mod client;
pub mod client_side;
pub mod expect;
pub mod middlebox;
pub mod race;
pub mod run;
pub mod server;

use server::{ProxyKind, ProxySettings};

const NOT_ON_DOCKER: Docker =
    Docker::NotHere("the proxy topology is built on the netns testbed only");

/// RFC 9110 §15.6.5 (504) and §15.6.3 (502).
const GATEWAY_QUOTE: &str = "The 504 (Gateway Timeout) status code indicates that the server, while acting as a gateway or proxy, did not receive a timely response from an upstream server it needed to access in order to complete the request.";

const UPSTREAM_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::BlackholeUp,
    FaultKind::Reset,
];

/// The proxy cases, in report order.
pub static CASES: [&CaseDef; 6] = [
    &CLIENT_SIDE_NGINX,
    &CLIENT_SIDE_HAPROXY,
    &UPSTREAM_DIES_NGINX,
    &UPSTREAM_DIES_HAPROXY,
    &RACE_NGINX,
    &RACE_HAPROXY,
];

/// RFC 9112 §9.5.
const IDLE_QUOTE: &str = "A client, server, or proxy MAY close the transport connection at any time. For example, a client might have started to send a new request at the same time that the server has decided to close the \"idle\" connection.";

const CLIENT_FAULTS: &[FaultKind] = &[
    FaultKind::Blackhole,
    FaultKind::BlackholeDown,
    FaultKind::Reset,
];

pub static CLIENT_SIDE_NGINX: CaseDef = CaseDef {
    id: "http/nginx-keepalive_timeout/proxy",
    protocol: "http",
    spec: "RFC 9112 §9.5; nginx 1.22 ngx_http_request.c ngx_http_set_keepalive (keepalive_timeout)",
    quote: IDLE_QUOTE,
    description: "Two levels: reqwest → nginx → kaspec's hyper server. After one request the client's pooled connection to nginx idles; the client-side router cuts that flow only. nginx reaps it at keepalive_timeout after the response; the idle client (no TCP keep-alive) notices nothing; nginx's pooled upstream connection, on the other router, stays up.",
    requirement: "The proxy closes an idle client connection at response + keepalive_timeout whatever the path; a fault on the client's level does not touch the upstream level",
    faults: CLIENT_FAULTS,
    fixed_fault: None,
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| client_side::run_client_side_dies(ctx, case, fault, ProxyKind::Nginx),
    budget: |_| expect::budget(&ProxySettings::short(ProxyKind::Nginx)),
};

pub static CLIENT_SIDE_HAPROXY: CaseDef = CaseDef {
    id: "http/haproxy-timeout-http-keep-alive/proxy",
    protocol: "http",
    spec: "RFC 9112 §9.5; HAProxy 2.6 configuration.txt (timeout http-keep-alive)",
    quote: IDLE_QUOTE,
    description: "Two levels: reqwest → HAProxy → kaspec's hyper server. After one request the client's pooled connection to HAProxy idles; the client-side router cuts that flow only. HAProxy reaps it at timeout http-keep-alive after the response; the idle client notices nothing; the upstream level stays up.",
    requirement: "The proxy closes an idle client connection at response + timeout http-keep-alive whatever the path; a fault on the client's level does not touch the upstream level",
    faults: CLIENT_FAULTS,
    fixed_fault: None,
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| client_side::run_client_side_dies(ctx, case, fault, ProxyKind::Haproxy),
    budget: |_| expect::budget(&ProxySettings::short(ProxyKind::Haproxy)),
};

pub static UPSTREAM_DIES_NGINX: CaseDef = CaseDef {
    id: "http/nginx-proxy_read_timeout/upstream",
    protocol: "http",
    spec: "RFC 9110 §15.6.5; nginx 1.22 ngx_http_upstream.c (proxy_read_timeout, proxy_next_upstream), ngx_http_upstream_keepalive_module.c",
    quote: GATEWAY_QUOTE,
    description: "Two levels: reqwest → nginx (upstream keepalive pool) → kaspec's hyper server. After one request nginx holds an idle upstream connection; the upstream router cuts that flow only, and the client sends its next request. Blackhole: nginx writes it to the pooled connection and answers 504 at proxy_read_timeout. Reset: the RST on a cached connection earns one more try (proxy_next_upstream error), on a new connection: 200 at once.",
    requirement: "A silent upstream ends the request with 504 at request + proxy_read_timeout, the pooled connection closed then; an RST on a pooled connection is retried on a new one without an error reaching the client",
    faults: UPSTREAM_FAULTS,
    fixed_fault: None,
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| run_upstream(ctx, case, fault, ProxyKind::Nginx),
    budget: |_| expect::budget(&ProxySettings::short(ProxyKind::Nginx)),
};

pub static UPSTREAM_DIES_HAPROXY: CaseDef = CaseDef {
    id: "http/haproxy-timeout-server/upstream",
    protocol: "http",
    spec: "RFC 9110 §15.6.5; HAProxy 2.6 configuration.txt (timeout server, http-reuse)",
    quote: GATEWAY_QUOTE,
    description: "Two levels: reqwest → HAProxy (http-reuse always) → kaspec's hyper server. After one request HAProxy holds an idle server connection; the upstream router cuts that flow only, and the client sends its next request through it. Blackhole: 504 at timeout server. Reset: a read error on a request that is not the client connection's first makes HAProxy close the client's connection without a response (http_ana.c abort_keep_alive), at once.",
    requirement: "A silent upstream ends the request with 504 at request + timeout server, the reused connection closed then; an RST on it closes the client's connection without a response at once",
    faults: UPSTREAM_FAULTS,
    fixed_fault: None,
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| run_upstream(ctx, case, fault, ProxyKind::Haproxy),
    budget: |_| expect::budget(&ProxySettings::short(ProxyKind::Haproxy)),
};

/// RFC 9112 §9.3.1.
const RETRY_QUOTE: &str = "A proxy MUST NOT automatically retry non-idempotent requests. A user agent MUST NOT automatically retry a request on a non-idempotent method unless it has some means to know that the request semantics are actually idempotent";

fn race_budget(ctx: &Ctx) -> Duration {
    let per = race::timings(ctx).0 + Duration::from_millis(150);
    // A request past a middlebox's timeout waits up to reqwest's 3 s.
    let per = per
        + ctx
            .network
            .middlebox
            .map_or(Duration::ZERO, |_| Duration::from_secs(3));
    per * (race::OFFSETS_MS.len() as u64 * race::rounds(ctx)) as u32 + Duration::from_secs(5)
}

pub static RACE_NGINX: CaseDef = CaseDef {
    id: "http/nginx-upstream-keepalive/race",
    protocol: "http",
    spec: "RFC 9112 §9.3.1, §9.5; nginx 1.22 ngx_http_upstream_keepalive_module.c, ngx_http_upstream.c (proxy_next_upstream)",
    quote: RETRY_QUOTE,
    description: "The reuse race one level down: kaspec's hyper upstream closes idle connections at S = http.upstream_keepalive_timeout (header_read_timeout; 500 ms when not stated), shorter than nginx's upstream keepalive_timeout (http.proxy_upstream_keepalive_timeout; 10 s when not stated). GETs at S + d, d from −50 to +50 ms, two rounds: nginx drops a pooled connection as soon as its FIN arrives and retries a closed cached one on a new connection, so none fails. The failure curve is a chart; which requests nginx retried comes from its access log ($upstream_status), reqwest's from hyper-util's trace event.",
    requirement: "No GET through the proxy fails around the upstream's idle timeout; the pooled connection is reused before S and never after it",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| race::run_race(ctx, case, fault, ProxyKind::Nginx),
    budget: race_budget,
};

pub static RACE_HAPROXY: CaseDef = CaseDef {
    id: "http/haproxy-http-reuse/race",
    protocol: "http",
    spec: "RFC 9112 §9.3.1, §9.5; HAProxy 2.6 configuration.txt (http-reuse, timeout server)",
    quote: RETRY_QUOTE,
    description: "The reuse race one level down through HAProxy (http-reuse always): the upstream closes idle connections at S = http.upstream_keepalive_timeout (500 ms when not stated); GETs at S + d, d from −50 to +50 ms, two rounds; failures counted per offset and drawn as a chart (informational: HAProxy answers a read error on a reused connection by closing the client's, which reqwest does not retry); HAProxy's retries from its log (%rc), reqwest's from hyper-util's trace event.",
    requirement: "The pooled connection is reused before S and never after it; failures around S are counted",
    faults: &[FaultKind::None],
    fixed_fault: Some(FaultKind::None),
    docker: NOT_ON_DOCKER,
    run: |ctx, case, fault| race::run_race(ctx, case, fault, ProxyKind::Haproxy),
    budget: race_budget,
};

fn run_upstream(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    kind: ProxyKind,
) -> kaspec_harness::Result<Vec<CaseResult>> {
    run::run_upstream_dies(ctx, case, fault, kind)
}

/// The proxies and the upstream server are installed.
pub fn prerequisites() -> kaspec_harness::Result<()> {
    require_program("nginx", "nginx")?;
    require_program("haproxy", "haproxy").map(drop)
}

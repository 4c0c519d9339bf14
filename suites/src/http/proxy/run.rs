//! How a two-level case runs: the proxy topology (client ── router ── proxy
//! ── upstream-router ── server), kaspec's upstream server, the proxy, the
//! reqwest client; one request through both levels so the proxy pools an
//! idle upstream connection; the fault on one router, matching one level's
//! flow; then what each side shows.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use kaspec_harness::fault::{AppliedFault, FaultKind, Flow};
use kaspec_harness::observe::{SocketClosed, SocketWatch};
use kaspec_harness::report::CaseResult;
use kaspec_harness::testbed::{Testbed, PROXY, PROXY_HOST, UPSTREAM_ROUTER};
use kaspec_harness::{Error, Result};

use super::client::{client_implementation, Client, Reply};
use super::expect::{Windows, CLOSED_WITHOUT_RESPONSE};
use super::server::{Proxy, ProxyKind, ProxySettings, UPSTREAM_PORT};
use crate::case::CaseDef;
use crate::ctx::Ctx;
use crate::outcome::{commit_ms, RunFacts, Side};
use crate::peers::http_upstream::{self, Upstream};

/// Everything of one two-level run, alive until dropped (client first).
pub struct Bed {
    pub client: Client,
    pub proxy: Proxy,
    pub upstream: Upstream,
    pub tb: Testbed,
}

impl Bed {
    pub fn start(
        ctx: &Ctx,
        settings: ProxySettings,
        upstream_idle: Option<Duration>,
    ) -> Result<Bed> {
        let tb = Testbed::with_topology(&ctx.run_dir, &PROXY)?;
        super::middlebox::install(&tb, ctx.network.middlebox)?;
        let addr = SocketAddrV4::new(tb.server.addr, UPSTREAM_PORT);
        let upstream = Upstream::start(&tb.server, addr, upstream_idle)?;
        let proxy = Proxy::start(&ctx.fixtures, &tb, settings, addr)?;
        let http = crate::http::knobs::HttpConfig::of(&ctx.config);
        let client = Client::start(&tb.client, proxy.addr, &http)?;
        Ok(Bed {
            client,
            proxy,
            upstream,
            tb,
        })
    }

    /// A bed with the short settings of `kind` after one request through
    /// both levels: the client's connection to the proxy and the proxy's
    /// upstream connection (from the returned port) both pooled and idle.
    pub fn pooled(ctx: &Ctx, kind: ProxyKind) -> Result<(Bed, ProxySettings, Reply, u16)> {
        let settings = ProxySettings::short(kind);
        let bed = Bed::start(ctx, settings, None)?;
        let (first, port) = bed.get_ok()?;
        // Let the proxy put the connection back in its pool.
        std::thread::sleep(Duration::from_millis(200));
        Ok((bed, settings, first, port))
    }

    /// The proxy's end of its upstream connection from `port`.
    pub fn upstream_flow(&self, port: u16) -> Flow {
        let ip = self
            .tb
            .addr_towards(PROXY_HOST, UPSTREAM_ROUTER)
            .expect("the proxy topology");
        Flow {
            client: SocketAddrV4::new(ip, port),
            server: self.upstream.addr,
        }
    }

    /// One GET that must succeed (the set-up's requests).
    pub fn get_ok(&self) -> Result<(Reply, u16)> {
        let r = self.client.get(Duration::from_secs(5))?;
        let port = r.upstream_port().ok_or_else(|| {
            Error::Other(format!(
                "set-up request through {} failed: {}",
                self.proxy.implementation,
                r.describe()
            ))
        })?;
        Ok((r, port))
    }
}

/// Case 5(b): the upstream path dies while the proxy holds an idle upstream
/// connection; the client's next request goes through it.
pub fn run_upstream_dies(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    kind: ProxyKind,
) -> Result<Vec<CaseResult>> {
    let (bed, settings, first, port) = Bed::pooled(ctx, kind)?;
    let flow = bed.upstream_flow(port);
    let proxy_host = bed.tb.proxy().expect("the proxy topology").clone();
    let proxy_watch = SocketWatch::start(&proxy_host, flow.client, flow.server)?;
    let server_watch = SocketWatch::start(&bed.tb.server, flow.server, flow.client)?;
    let applied = bed.tb.apply_fault_at(UPSTREAM_ROUTER, fault, &flow, None)?;
    let t0 = applied.in_force_at;
    let w = Windows::new(settings, fault);
    let reply = bed
        .client
        .get(Duration::from_millis(w.client_deadline_ms))?;
    let proxy_closed = proxy_watch.wait(t0 + Duration::from_millis(w.client_deadline_ms))?;
    let server_closed = server_watch.wait(Instant::now() + Duration::from_millis(300))?;
    let sent_ms = crate::model::rel_ms(t0, reply.sent).max(0) as u64;
    let (client_exp, proxy_exp, server_exp) = w.upstream_dies(sent_ms, port);
    let client = Side::library(
        client_exp,
        Some(reply.done),
        reply.outcome.clone().err(),
        w.client_deadline_ms,
    )
    .with_fact("status", status_fact(&reply))
    .with_fact(
        "upstream connection",
        match reply.upstream_port() {
            Some(p) if p == port => "the pooled one".to_string(),
            Some(_) => "a new one".to_string(),
            None => "none".to_string(),
        },
    );
    let proxy = Side::from_socket(
        proxy_exp,
        proxy_closed.clone(),
        w.client_deadline_ms,
        "the proxy's upstream",
    );
    let server = Side::from_socket(
        server_exp,
        server_closed.clone(),
        w.client_deadline_ms,
        "the upstream server's",
    );
    let mut timeline = vec![
        (
            first.done,
            format!("first request through both levels: {}", first.describe()),
        ),
        (reply.sent, "client sent its next request".to_string()),
        (
            reply.done,
            format!("the request ended: {}", reply.describe()),
        ),
    ];
    push_closed(
        &mut timeline,
        &proxy_closed,
        "proxy's pooled upstream socket",
    );
    push_closed(&mut timeline, &server_closed, "upstream server's socket");
    let facts = facts(ctx, case, fault, &applied, settings, timeline);
    let results = three_sides(&facts, &bed, [client, proxy, server], ctx)?;
    drop(bed);
    Ok(results)
}

/// The `status` fact: the status code, or how the request failed.
pub fn status_fact(reply: &Reply) -> String {
    match (&reply.outcome, reply.status()) {
        (_, Some(s)) => s.to_string(),
        (Err(e), None) if e.contains("connection closed before message completed") => {
            CLOSED_WITHOUT_RESPONSE.into()
        }
        (Err(e), None) => format!("none: {e}"),
        _ => "none".into(),
    }
}

pub fn push_closed(
    timeline: &mut Vec<(Instant, String)>,
    closed: &Option<SocketClosed>,
    what: &str,
) {
    if let Some(c) = closed {
        timeline.push((c.at, format!("{what} {}", c.state)));
    }
}

/// What a run shares between its sides: the proxy's settings join the
/// client's configuration.
pub fn facts<'a>(
    ctx: &Ctx,
    case: &'a CaseDef,
    fault: FaultKind,
    applied: &AppliedFault,
    s: ProxySettings,
    timeline: Vec<(Instant, String)>,
) -> RunFacts<'a> {
    let mut config: BTreeMap<String, String> = ctx.config.effective("http.");
    config.extend(s.report());
    config.insert("fault.router".into(), UPSTREAM_ROUTER.into());
    config.insert("reqwest.pool_idle_timeout".into(), "none".into());
    if let Some(m) = ctx.network.middlebox {
        config.insert(
            "network.middlebox".into(),
            format!(
                "{} s idle timeout on the {} level",
                m.idle.as_secs(),
                m.level_name()
            ),
        );
    }
    RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: commit_ms(applied),
        config,
        t0: applied.in_force_at,
        timeline,
        release: Default::default(),
    }
}

/// The client's, the proxy's and the upstream server's results.
pub fn three_sides(
    facts: &RunFacts<'_>,
    bed: &Bed,
    sides: [Side; 3],
    ctx: &Ctx,
) -> Result<Vec<CaseResult>> {
    let upstream =
        kaspec_harness::report::Implementation::new(http_upstream::NAME, http_upstream::version());
    let proxy = bed.proxy.implementation.clone();
    let peers = [
        (client_implementation(), proxy.clone()),
        (proxy, upstream.clone()),
        (upstream, bed.proxy.implementation.clone()),
    ];
    let names = ["client", "proxy", "server"];
    let mut out = Vec::new();
    for ((s, (implementation, peer)), side) in sides.into_iter().zip(peers).zip(names) {
        out.push(facts.result(
            facts.outcome(side, implementation, peer, s, None),
            &ctx.judging(),
        )?);
    }
    Ok(out)
}

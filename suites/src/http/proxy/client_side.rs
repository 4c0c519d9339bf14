//! Case 5(a): the client's side of the proxy dies. After one request the
//! client's pooled connection to the proxy idles; the client-side router
//! cuts that flow. The proxy reaps the connection at its client-side
//! keep-alive timeout (nothing else probes it); the idle client, without
//! TCP keep-alive (reqwest's default), notices nothing — and the upstream
//! level, on the other router, is untouched: the proxy's pooled upstream
//! connection stays up.

use std::time::Duration;

use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::CaseResult;
use kaspec_harness::testbed::ROUTER;
use kaspec_harness::Result;

use super::expect::Windows;
use super::run::{facts, push_closed, three_sides, Bed};
use super::server::ProxyKind;
use crate::case::CaseDef;
use crate::ctx::Ctx;
use crate::model::{ms_of, rel_ms};
use crate::outcome::Side;

pub fn run_client_side_dies(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    kind: ProxyKind,
) -> Result<Vec<CaseResult>> {
    let (bed, settings, first, port) = Bed::pooled(ctx, kind)?;
    let proxy_addr = bed.proxy.addr;
    let local = bed.tb.client.run(move || local_end_towards(proxy_addr))??;
    let flow = Flow {
        client: local,
        server: proxy_addr,
    };
    let up = bed.upstream_flow(port);
    let proxy_host = bed.tb.proxy().expect("the proxy topology").clone();
    let proxy_watch = SocketWatch::start(&proxy_host, proxy_addr, local)?;
    let client_watch = SocketWatch::start(&bed.tb.client, local, proxy_addr)?;
    let upstream_watch = SocketWatch::start(&bed.tb.server, up.server, up.client)?;
    let applied = bed.tb.apply_fault_at(ROUTER, fault, &flow, None)?;
    let t0 = applied.in_force_at;
    let w = Windows::new(settings, fault);
    // The anchor: the first response reached the client just after the
    // proxy armed its keep-alive timer.
    let since_response = rel_ms(first.done, t0).max(0) as u64;
    let deadline_ms = ms_of(settings.keepalive_timeout) + 2000;
    let deadline = t0 + Duration::from_millis(deadline_ms);
    let proxy_closed = proxy_watch.wait(deadline)?;
    let client_closed =
        client_watch.wait(std::time::Instant::now() + Duration::from_millis(300))?;
    let upstream_closed =
        upstream_watch.wait(std::time::Instant::now() + Duration::from_millis(100))?;
    let (client_exp, proxy_exp, server_exp) = w.client_side_dies(since_response);
    let client = Side::from_socket(
        client_exp,
        client_closed.clone(),
        deadline_ms,
        "the client's pooled",
    );
    let proxy = Side::from_socket(
        proxy_exp,
        proxy_closed.clone(),
        deadline_ms,
        "the proxy's client-side",
    );
    let server = Side::from_socket(
        server_exp,
        upstream_closed.clone(),
        deadline_ms,
        "the upstream server's",
    );
    let mut timeline = vec![(
        first.done,
        format!("client got the first response: {}", first.describe()),
    )];
    push_closed(&mut timeline, &proxy_closed, "proxy's client-side socket");
    push_closed(&mut timeline, &client_closed, "client's pooled socket");
    push_closed(
        &mut timeline,
        &upstream_closed,
        "upstream server's socket of the proxy's pooled connection",
    );
    let mut facts = facts(ctx, case, fault, &applied, settings, timeline);
    facts.config.insert("fault.router".into(), ROUTER.into());
    let results = three_sides(&facts, &bed, [client, proxy, server], ctx)?;
    drop(bed);
    Ok(results)
}

//! Case 5(c): the reuse race one level down. The upstream server's idle
//! timeout S (hyper's `header_read_timeout`) is shorter than the proxy's
//! upstream keep-alive, so the proxy's pooled connection is closed by the
//! server while the proxy still holds it. Requests are swept around S:
//! each round sends one request (the proxy pools its upstream connection),
//! waits S + d for d on a grid from −50 to +50 ms, and sends the next; the
//! body says which upstream connection served it (its source port).
//!
//! What the proxy's source predicts: nginx's keep-alive module reads an
//! idle pooled connection's FIN at once and drops it from the pool
//! (ngx_http_upstream_keepalive_module.c:422 close handler, `recv(..,
//! MSG_PEEK)` = 0 → close), and a request that meets a closed cached
//! connection is tried again on a new one (ngx_http_upstream.c:4310–4312,
//! with `proxy_next_upstream error`): no request fails. Before S the
//! pooled connection is reused, after S (+ the server's timer grain) a new
//! one serves.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::report::CaseResult;
use kaspec_harness::testbed::ROUTER;
use kaspec_harness::Result;

use super::client::Reply;
use super::run::{facts, Bed};
use super::server::{ProxyKind, ProxySettings};
use crate::case::CaseDef;
use crate::ctx::Ctx;
use crate::model::ms_of;
use crate::outcome::Side;

/// The upstream server's idle timeout in the race.
pub const UPSTREAM_IDLE: Duration = Duration::from_millis(500);
/// The grid around it: −50 … +50 ms in 10 ms steps.
pub const OFFSETS_MS: [i64; 11] = [-50, -40, -30, -20, -10, 0, 10, 20, 30, 40, 50];
/// Rounds over the grid.
pub const ROUNDS: usize = 2;
/// Past S by this much the pooled connection must be gone: hyper's tokio
/// timer (+2 ms: the deadline rounded up to the next ms tick and the
/// truncated anchor) and the FIN reaching the proxy (+1 ms).
pub const GONE_AFTER_MS: i64 = 3;

/// One request of the sweep.
pub struct Shot {
    pub offset_ms: i64,
    pub reply: Reply,
    /// Served by the connection the round's first request pooled.
    pub reused: bool,
}

pub fn run_race(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    kind: ProxyKind,
) -> Result<Vec<CaseResult>> {
    let settings = ProxySettings::short(kind);
    let bed = Bed::start(ctx, settings, Some(UPSTREAM_IDLE))?;
    let applied = bed.tb.apply_fault_at(
        ROUTER,
        FaultKind::None,
        &Flow {
            client: SocketAddrV4::new(bed.tb.client.addr, 0),
            server: bed.proxy.addr,
        },
        None,
    )?;
    let s = ms_of(UPSTREAM_IDLE) as i64;
    let mut shots = Vec::new();
    for _ in 0..ROUNDS {
        for d in OFFSETS_MS {
            let (first, port) = bed.get_ok()?;
            let at = first.done + Duration::from_millis((s + d) as u64);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let reply = bed.client.get(Duration::from_secs(3))?;
            let reused = reply.upstream_port() == Some(port);
            shots.push(Shot {
                offset_ms: d,
                reply,
                reused,
            });
        }
    }
    let failed: Vec<&Shot> = shots
        .iter()
        .filter(|x| x.reply.status() != Some(200))
        .collect();
    let late_reuse = shots
        .iter()
        .filter(|x| x.reused && x.offset_ms >= GONE_AFTER_MS)
        .count();
    let curve = curve(&shots);
    let src = "nginx 1.22.1 ngx_http_upstream_keepalive_module.c:422 (a pooled connection's FIN closes it at once), ngx_http_upstream.c:4310–4312 (an error on a cached connection: one more try)";
    let client_exp = Expectation::not_detected(
        format!("{} requests at S + d, S = {s} ms, d ∈ [−50, +50] ms: none may fail (the proxy retries a closed pooled connection on a new one)", shots.len()),
        src,
    )
    .requiring("failed requests", "0", src, if kind == ProxyKind::Nginx { Level::Must } else { Level::Info });
    let proxy_exp = Expectation::either(format!("the pooled connection reused before S, a new one from S + {GONE_AFTER_MS} ms (hyper's timer grain and the FIN's transit)"), src)
        .requiring("reused after S", "0", src, Level::Must);
    let client = Side {
        error: failed.first().map(|x| x.reply.describe()),
        ..Side::library(client_exp, None, None, 0)
    }
    .with_fact("failed requests", failed.len().to_string())
    .with_fact("failures by offset", curve.clone());
    let proxy =
        Side::library(proxy_exp, None, None, 0).with_fact("reused after S", late_reuse.to_string());
    let mut timeline: Vec<(Instant, String)> = shots
        .iter()
        .map(|x| {
            (
                x.reply.done,
                format!(
                    "S{:+} ms: {}{}",
                    x.offset_ms,
                    x.reply.describe(),
                    if x.reused {
                        ", pooled connection reused"
                    } else {
                        ""
                    }
                ),
            )
        })
        .collect();
    timeline.truncate(40);
    let mut facts = facts(ctx, case, fault, &applied, settings, timeline);
    facts
        .config
        .insert("upstream.header_read_timeout".into(), format!("{s}ms"));
    facts.config.insert("fault.router".into(), "none".into());
    let upstream = kaspec_harness::report::Implementation::new(
        crate::peers::http_upstream::NAME,
        crate::peers::http_upstream::version(),
    );
    let mut out = Vec::new();
    for (side, s, implementation, peer) in [
        (
            "client",
            client,
            super::client::client_implementation(),
            bed.proxy.implementation.clone(),
        ),
        ("proxy", proxy, bed.proxy.implementation.clone(), upstream),
    ] {
        out.push(facts.result(
            facts.outcome(side, implementation, peer, s, None),
            &ctx.judging(),
        )?);
    }
    drop(bed);
    Ok(out)
}

/// `d: failed/sent` per offset, the failure curve as text.
pub fn curve(shots: &[Shot]) -> String {
    OFFSETS_MS
        .iter()
        .map(|d| {
            let at: Vec<&Shot> = shots.iter().filter(|x| x.offset_ms == *d).collect();
            let failed = at.iter().filter(|x| x.reply.status() != Some(200)).count();
            let reused = at.iter().filter(|x| x.reused).count();
            format!("{d:+}: {failed}/{} failed, {reused} reused", at.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

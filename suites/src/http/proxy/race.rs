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
use kaspec_harness::report::curve::Curve;
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

/// The upstream server's idle timeout in the race when none is stated.
pub const UPSTREAM_IDLE: Duration = Duration::from_millis(500);
/// The proxy's upstream keep-alive when none is stated: far above S.
pub const PROXY_KEEPALIVE: Duration = Duration::from_secs(10);
/// A reuse this close to S (the grid's step) or closer counts as exposed:
/// the pool kept the connection up to the upstream's close, so on a path
/// whose round trip is a step or more a request sent then meets the close.
pub const EXPOSED_WITHIN_MS: i64 = 10;
/// The grid around it: −50 … +50 ms in 10 ms steps.
pub const OFFSETS_MS: [i64; 11] = [-50, -40, -30, -20, -10, 0, 10, 20, 30, 40, 50];
/// Rounds over the grid: `http.race_rounds`, at most this many.
pub const ROUNDS: u64 = 2;

/// The rounds of a run.
pub fn rounds(ctx: &Ctx) -> u64 {
    crate::http::knobs::HttpConfig::of(&ctx.config)
        .race_rounds
        .min(ROUNDS)
}
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
    /// The proxy's tries on the upstream for it (its access log; 0: not logged).
    pub tries: u32,
}

impl Shot {
    fn failed(&self) -> bool {
        self.reply.status() != Some(200)
    }
}

/// The race's S and the proxy's upstream keep-alive, from the knobs.
pub fn timings(ctx: &Ctx) -> (Duration, Duration) {
    let c = crate::http::knobs::HttpConfig::of(&ctx.config);
    let or = |d: Duration, default| if d.is_zero() { default } else { d };
    (
        or(c.upstream_keepalive_timeout, UPSTREAM_IDLE),
        or(c.proxy_upstream_keepalive_timeout, PROXY_KEEPALIVE),
    )
}

pub fn run_race(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    kind: ProxyKind,
) -> Result<Vec<CaseResult>> {
    let (upstream_idle, keepalive) = timings(ctx);
    let settings = ProxySettings {
        upstream_keepalive_timeout: keepalive,
        ..ProxySettings::short(kind)
    };
    let bed = Bed::start(ctx, settings, Some(upstream_idle))?;
    let applied = bed.tb.apply_fault_at(
        ROUTER,
        FaultKind::None,
        &Flow {
            client: SocketAddrV4::new(bed.tb.client.addr, 0),
            server: bed.proxy.addr,
        },
        None,
    )?;
    let s = ms_of(upstream_idle) as i64;
    let mut shots = Vec::new();
    for _ in 0..rounds(ctx) {
        for d in OFFSETS_MS {
            let (first, port) = bed.get_ok()?;
            let at = first.done + Duration::from_millis((s + d).max(0) as u64);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let path = format!("/race/{}", shots.len());
            let reply = bed.client.get_path(&path, Duration::from_secs(3))?;
            let reused = reply.upstream_port() == Some(port);
            shots.push(Shot {
                offset_ms: d,
                reply,
                reused,
                tries: 0,
            });
        }
    }
    for (path, tries) in bed.proxy.upstream_tries() {
        let i = path
            .strip_prefix("/race/")
            .and_then(|i| i.parse::<usize>().ok());
        if let Some(x) = i.and_then(|i| shots.get_mut(i)) {
            x.tries = tries;
        }
    }
    // nginx's pool drops an idle upstream connection at its upstream
    // keepalive_timeout; HAProxy keeps it until the server closes it.
    let upstream_pool = (kind == ProxyKind::Nginx).then(|| ms_of(keepalive) as i64);
    let effect = super::middlebox::effect(
        ctx.network.middlebox,
        s,
        upstream_pool,
        ms_of(settings.keepalive_timeout) as i64,
    );
    let before_middlebox = |x: &Shot| effect.is_none_or(|e| s + x.offset_ms < e.lo);
    let failed: Vec<&Shot> = shots
        .iter()
        .filter(|x| x.failed() && before_middlebox(x))
        .collect();
    let rtt = ms_of(ctx.network.rtt) as i64;
    let exposed = shots
        .iter()
        .filter(|x| x.offset_ms >= -EXPOSED_WITHIN_MS.max(rtt) && (x.reused || x.failed()))
        .count();
    let proxy_retried = shots.iter().filter(|x| x.tries > 1).count();
    let client_retried = shots.iter().filter(|x| x.reply.retried > 0).count();
    let late_reuse = shots
        .iter()
        .filter(|x| x.reused && x.offset_ms >= GONE_AFTER_MS)
        .count();
    let curve = curve(&shots);
    let chart = chart(&shots, s, kind);
    let src = "nginx 1.22.1 ngx_http_upstream_keepalive_module.c:422 (a pooled connection's FIN closes it at once), ngx_http_upstream.c:4310–4312 (an error on a cached connection: one more try)";
    let client_exp = Expectation::not_detected(
        format!("{} requests at S + d, S = {s} ms, d ∈ [−50, +50] ms: none may fail (the proxy retries a closed pooled connection on a new one)", shots.len()),
        src,
    )
    .requiring("failed requests", "0", src, if kind == ProxyKind::Nginx { Level::Must } else { Level::Info });
    let proxy_exp = Expectation::either(format!("the pooled connection reused before S, a new one from S + {GONE_AFTER_MS} ms (hyper's timer grain and the FIN's transit)"), src)
        .requiring("reused after S", "0", src, Level::Must);
    let mut client_exp = client_exp;
    let mut past_fact = None;
    if let Some(e) = effect {
        let past: Vec<&Shot> = shots.iter().filter(|x| s + x.offset_ms > e.hi).collect();
        let as_expected = past
            .iter()
            .filter(|x| e.failed_as_expected(&x.reply))
            .count();
        let what = "requests past the middlebox's timeout that failed as it implies";
        client_exp = client_exp.requiring(
            what,
            format!("{n}/{n}", n = past.len()),
            "RFC 5382 §5 (a middlebox forgets an idle flow); nginx ngx_http_upstream.c:2367/4319, HAProxy timeout server (504); reqwest ClientBuilder::timeout",
            Level::Must,
        );
        client_exp.formula = format!("{}; {}", client_exp.formula, e.formula());
        past_fact = Some((what, format!("{as_expected}/{}", past.len())));
    }
    let client = Side {
        error: failed.first().map(|x| x.reply.describe()),
        ..Side::library(client_exp, None, None, 0)
    }
    .with_fact("failed requests", failed.len().to_string())
    .with_fact("failures by offset", curve.clone())
    .with_fact("requests reqwest retried", client_retried.to_string());
    let client = match past_fact {
        Some((what, v)) => client.with_fact(what, v),
        None => client,
    };
    let proxy = Side::library(proxy_exp, None, None, 0)
        .with_fact("reused after S", late_reuse.to_string())
        .with_fact("requests the proxy retried", proxy_retried.to_string());
    let mut timeline: Vec<(Instant, String)> = shots
        .iter()
        .map(|x| {
            (
                x.reply.done,
                format!(
                    "S{:+} ms: {}{}{}",
                    x.offset_ms,
                    x.reply.describe(),
                    if x.reused {
                        ", pooled connection reused"
                    } else {
                        ""
                    },
                    retries(x)
                ),
            )
        })
        .collect();
    timeline.truncate(40);
    let mut facts = facts(ctx, case, fault, &applied, settings, timeline);
    facts
        .config
        .insert("upstream.header_read_timeout".into(), format!("{s}ms"));
    facts
        .config
        .insert("race.exposed".into(), exposed.to_string());
    facts.config.insert("race.points".into(), curve.clone());
    let logged = shots.iter().filter(|x| x.tries > 0).count();
    facts.config.insert(
        "race.logged".into(),
        format!("{logged}/{} in the proxy's log", shots.len()),
    );
    facts.config.insert(
        "race.retried".into(),
        format!(
            "{proxy_retried} by {}, {client_retried} by reqwest",
            kind.name()
        ),
    );
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
        let mut r = facts.result(
            facts.outcome(side, implementation, peer, s, None),
            &ctx.judging(),
        )?;
        if side == "client" {
            r.curve = Some(chart.clone());
        }
        out.push(r);
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
            let failed = at.iter().filter(|x| x.failed()).count();
            let reused = at.iter().filter(|x| x.reused).count();
            let proxy = at.iter().filter(|x| x.tries > 1).count();
            let client = at.iter().filter(|x| x.reply.retried > 0).count();
            format!(
                "{d:+}: {failed}/{} failed, {reused} reused, {proxy} retried by the proxy, {client} by reqwest",
                at.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Who retried a request, for the timeline.
fn retries(x: &Shot) -> String {
    let mut s = String::new();
    if x.tries > 1 {
        s.push_str(&format!(", the proxy tried the upstream {} times", x.tries));
    }
    if x.reply.retried > 0 {
        s.push_str(&format!(", reqwest retried it {}×", x.reply.retried));
    }
    s
}

/// The failure curve as a chart (the HTML report draws it): per offset the
/// share of requests that failed, reused the pooled upstream connection, or
/// were retried by the proxy or by reqwest; shaded the upstream's close
/// window [S − 1, S + GONE_AFTER_MS] (its ms timer, the FIN's transit).
pub fn chart(shots: &[Shot], s_ms: i64, kind: ProxyKind) -> Curve {
    let groups: Vec<(i64, Vec<&Shot>)> = OFFSETS_MS
        .iter()
        .map(|d| {
            (
                s_ms + d,
                shots.iter().filter(|x| x.offset_ms == *d).collect(),
            )
        })
        .collect();
    let retried_by_proxy = format!("retried by {}", kind.name());
    Curve::of_shares(
        format!("reuse race through {} around the upstream's S = {s_ms} ms (shaded: the upstream's close)", kind.name()),
        "time since the previous response (ms)",
        &[
            ("failed", &|x: &Shot| x.failed()),
            ("reused the pooled upstream connection", &|x: &Shot| x.reused),
            (retried_by_proxy.as_str(), &|x: &Shot| x.tries > 1),
            ("retried by reqwest", &|x: &Shot| x.reply.retried > 0),
        ],
        &groups,
        Some((s_ms - 1, s_ms + GONE_AFTER_MS)),
    )
}

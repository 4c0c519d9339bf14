//! The WebSocket NAT case: a client heartbeat through a NAT that forgets
//! idle flows after N (see [`crate::model::nat`]).

use super::*;
use crate::model::nat::{nat_idle, nat_race};

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    let w = super::knobs::WebSocketConfig::of(&ctx.config);
    Duration::from_secs(10) + 3 * nat_idle(ctx) + 3 * (w.ping_interval + w.pong_timeout)
}

/// The client's Ping every P is the only traffic: the mapping survives if P < N.
pub(crate) fn websocket_expectation(
    w: &super::knobs::WebSocketConfig,
    nat: Duration,
) -> Expectation {
    let (p, t, n) = (ms_of(w.ping_interval), ms_of(w.pong_timeout), ms_of(nat));
    let spec = "RFC 6455 §5.5.2 (heartbeat pattern), RFC 5382 §5";
    if let Some(race) = nat_race("P", w.ping_interval, nat, spec) {
        return race;
    }
    if w.ping_interval < nat {
        return Expectation::must_stay_up(format!("a Ping every P = {p} ms < N = {n} ms refreshes the mapping: the connection survives 3 × N"), spec);
    }
    // t0 = last frame + N; the next Ping (P after the last) is dropped; dead
    // at last frame + P + T.
    let d = (p + t).saturating_sub(n);
    // kaspec's heartbeat sleeps until last frame + P + T: + up to 1 ms (tokio's tick).
    Expectation::window(
        d,
        d + 1,
        format!("P = {p} ms ≥ N = {n} ms: the mapping expires N after the last Pong; the next Ping is dropped; dead at last frame + P + T, − N: {p} + {t} − {n} = {d} ms, + up to 1 ms (tokio's timer tick)"),
        spec,
        Level::Must,
    )
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    use {heartbeat_client, last_before, Ev, ReadyAfter, WsServer, QUIET};
    let nat = nat_idle(ctx);
    let w = super::knobs::WebSocketConfig::of(&ctx.config);
    let tb = ctx.testbed_with_nat("kaspec-ws-quiet", nat)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let _server = Server::start(&tb, &WsServer::Kaspec.spec(ctx, addr, QUIET)?)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (client_thread, _) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-ws-client",
        "websocket client",
        Duration::from_secs(10) + 3 * w.ping_interval,
        "websocket client through the NAT",
        move |ready_tx| {
            heartbeat_client(
                addr,
                w,
                None,
                ReadyAfter::Connected,
                ready_tx,
                stop_rx,
                never_stalls(),
            )
        },
    )?;
    let expected = websocket_expectation(&w, nat);
    // Watch 3 × N, or past the heartbeat's verdict when that comes later.
    let watch_ms =
        (3 * ms_of(nat)).max(expected.max_ms.map(|m| m + ms_of(nat) + 1000).unwrap_or(0));
    let started = Instant::now();
    let _ = stop_tx.send(Some(started + Duration::from_millis(watch_ms)));
    let end = client_thread.join()?;
    // t0: N after the flow's last packet before the break (the last frame the
    // client received before it failed, or before the end of the watch).
    let until = end
        .failed_at
        .unwrap_or(started + Duration::from_millis(watch_ms));
    let last = last_before(
        &end.events,
        until,
        &[Ev::Connected, Ev::PongReceived, Ev::ServerPing, Ev::Frame],
    )
    .unwrap_or(started);
    let t0 = last + nat;
    let mut timeline: Vec<(Instant, String)> = end
        .events
        .iter()
        .map(|(t, e)| (*t, e.text().to_string()))
        .collect();
    timeline.push((
        last,
        "last frame received before the mapping expired".into(),
    ));
    let mut config = ctx.config.effective("websocket.");
    config.insert("server.ping_interval".into(), "off (3600s)".into());
    let deadline_ms = rel_ms(t0, started + Duration::from_millis(watch_ms)).max(0) as u64;
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, Default::default());
    facts.client_only(
        client_implementation(),
        WsServer::Kaspec.implementation(),
        Side::library(expected, end.failed_at, end.error, deadline_ms),
        &ctx.judging(),
    )
}

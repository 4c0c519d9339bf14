//! The gRPC NAT case: an idle channel through a NAT that forgets idle flows
//! after N (see [`crate::model::nat`]).

use super::*;

/// Client through a NAT with idle timeout `nat`: what refreshes the mapping
/// (HTTP/2 PINGs every I with while_idle; TCP keep-alive probes every
/// tcp.idle) and, when nothing does, the first detection counted from the
/// mapping's expiry (N after the last segment).
pub fn nat_expectation(g: &GrpcConfig, tcp: &TcpConfig, nat: Duration) -> Expectation {
    let spec = "gRFC A8, RFC 5382 §5";
    let n = ms_of(nat);
    let h2 = g.keepalive_while_idle && !g.keepalive_time.is_zero();
    let (i, t) = (ms_of(g.keepalive_time), ms_of(g.keepalive_timeout));
    // The refresh that comes first decides; within the race band either outcome can happen.
    let first = [
        (h2, "keepalive_time I", g.keepalive_time),
        (tcp.keepalive, "tcp.idle", tcp.idle),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .min_by_key(|(_, _, p)| *p);
    if let Some(race) =
        first.and_then(|(_, what, p)| crate::model::nat::nat_race(what, p, nat, spec))
    {
        return race;
    }
    if (h2 && g.keepalive_time < nat) || (tcp.keepalive && tcp.idle < nat) {
        let by = if h2 && g.keepalive_time < nat {
            format!("a PING every I = {i} ms")
        } else {
            format!(
                "a TCP keep-alive probe every tcp.idle = {} ms",
                ms_of(tcp.idle)
            )
        };
        return Expectation::must_stay_up(
            format!("{by} < N = {n} ms refreshes the mapping: the channel survives 3 × N"),
            spec,
        );
    }
    // Once the PING is out (unacknowledged data), Linux sends no keep-alive
    // probe: TCP keep-alive decides only if it gives up before the PING goes.
    let death = crate::model::tcp::keepalive_death(tcp);
    let tcp_first = tcp.keepalive && (!h2 || death.ms < i);
    if tcp_first {
        let d = death.ms.saturating_sub(n);
        let how = format!(
            "TCP keep-alive gives up before any PING: {} − N = {d} ms (+ up to {} ms)",
            death.formula, death.slack_ms
        );
        return Expectation::window(
            d,
            d + death.slack_ms,
            format!("nothing refreshes the mapping (periods ≥ N = {n} ms): {how}"),
            spec,
            Level::Must,
        );
    }
    if h2 {
        let d = (i + t).saturating_sub(n);
        // hyper's two tokio timers (the PING, the timeout; model::h2ping): + up to 2 ms.
        let how = format!("the PING I after the last segment is dropped; closed T later: I + T − N = {i} + {t} − {n} = {d} ms, + up to 2 ms (two tokio timers)");
        return Expectation::window(
            d,
            d + 2,
            format!("nothing refreshes the mapping (periods ≥ N = {n} ms): {how}"),
            spec,
            Level::Must,
        );
    }
    Expectation::not_detected(
        format!(
            "no keep-alive at all: the mapping is forgotten after N = {n} ms and nothing notices"
        ),
        spec,
    )
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let (g, tcp) = (
        super::knobs::GrpcConfig::of(&ctx.config),
        crate::config::TcpConfig::of(&ctx.config),
    );
    let tb = ctx.testbed_with_nat("kaspec-grpc-defaults", nat)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let which = GrpcServer::Kaspec;
    let _server = Server::start(&tb, &which.spec(ctx, addr, Mode::Defaults)?)?;
    let (_go_tx, go_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (client_thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-grpc-client",
        "grpc client",
        Duration::from_secs(15),
        "grpc client through the NAT",
        move |ready_tx| {
            client(
                addr,
                g,
                tcp,
                Plan::Idle,
                ready_tx,
                go_rx,
                stop_rx,
                no_halt(),
            )
        },
    )?;
    let client_watch = SocketWatch::start(&tb.client, ready.local, addr)?;
    let expected = nat_expectation(&g, &tcp, nat);
    let watch_ms =
        (3 * ms_of(nat)).max(expected.max_ms.map(|m| m + ms_of(nat) + 1000).unwrap_or(0));
    let until = ready.last_read + Duration::from_millis(watch_ms);
    let client_closed = client_watch.wait(until)?;
    let _ = stop_tx.send(Some(Instant::now()));
    let end = client_thread.join()?;
    // t0: the mapping expires N after the flow's last segment. While PINGs
    // kept it, the last segment is recent; when nothing did, it is the last
    // response the client read.
    let t0 = ready.last_read + nat;
    let mut timeline = vec![(
        ready.last_read,
        "last response read by the client".to_string(),
    )];
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    let error = client_closed.as_ref().map(|c| {
        format!(
            "client closed the connection (socket {}); {}",
            c.state,
            end.probe.clone().unwrap_or_default()
        )
    });
    let mut config = config_of(ctx, &g);
    config.insert("server.keepalive".into(), "off (defaults)".into());
    let deadline_ms = rel_ms(t0, until).max(0) as u64;
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, Default::default());
    facts.client_only(
        client_implementation(),
        which.implementation(),
        Side::observed(
            expected,
            client_closed.as_ref(),
            error.or(end.probe),
            deadline_ms,
        ),
        &ctx.judging(),
    )
}

//! How the gRPC cases run: a server under test, the client, the fault, both
//! sides watched.

use super::*;

pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) case: &'a CaseDef,
    pub(crate) fault: FaultKind,
    pub(crate) which: GrpcServer,
    pub(crate) g: GrpcConfig,
    pub(crate) plan: Plan,
}

pub(crate) fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for which in measured(ctx) {
        out.extend(detection(Run { ctx, case, fault, which, g: ctx.config.grpc, plan: Plan::Idle })?);
    }
    Ok(out)
}

pub(crate) fn run_call_after_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let g = GrpcConfig { keepalive_while_idle: false, ..ctx.config.grpc };
    for which in measured(ctx) {
        out.extend(detection(Run { ctx, case, fault, which, g, plan: Plan::CallLater })?);
    }
    Ok(out)
}

pub(crate) fn config_of(ctx: &Ctx, g: &GrpcConfig) -> std::collections::BTreeMap<String, String> {
    let mut config = ctx.config.effective("grpc.");
    config.insert("grpc.keepalive_while_idle".into(), g.keepalive_while_idle.to_string());
    config.extend(ctx.config.effective("tcp.").into_iter().filter(|(k, _)| k != "tcp.user_timeout"));
    config
}

pub(crate) fn detection(r: Run<'_>) -> Result<Vec<CaseResult>> {
    let Run { ctx, case, fault, which, g, plan } = r;
    let k = which.keepalive(&ctx.fixtures)?;
    let tcp = ctx.config.tcp;
    let tb = ctx.testbed_for("kaspec-grpc")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, Mode::Keepalive(k))?)?;
    let server_impl = which.implementation();

    let (go_tx, go_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (client_thread, ready) =
        drive::client::start_or_fail(&tb.client, "kaspec-grpc-client", "grpc client", Duration::from_secs(15), &format!("grpc client against {}", server_impl.name), move |ready_tx| client(addr, g, tcp, plan, ready_tx, go_rx, stop_rx))?;
    let client_watch = SocketWatch::start(&tb.client, ready.local, addr)?;
    let server_watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    // Let the connection go quiet first: the ACK of the first response may
    // still be held back by delayed ACK (up to 200 ms), and under `reset` it
    // would be the first segment to meet the RST, not the call or the PING.
    if let Some(wait) = (ready.last_read + QUIET_BEFORE_FAULT).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let applied = tb.apply_fault(fault, &Flow { client: ready.local, server: addr }, Some(server.pid()))?;
    let t0 = applied.in_force_at;

    // The call of case 2 starts I after the fault: past any PING the idle
    // connection could have had scheduled, so the call's PING goes out at once.
    let call_ms = ms_of(g.keepalive_time);
    let client_nominal = match plan {
        Plan::CallLater => call_expectation(&g, fault, call_ms),
        _ => idle_client_expectation(&g, &tcp, fault, ms_of(QUIET_BEFORE_FAULT)),
    };
    let quiet = 3 * ms_of(2 * g.keepalive_time + g.keepalive_timeout).max(1000);
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        // A live server on a slow or lossy path: both watched equally long.
        Some(i) => {
            let watch = impaired_watch_ms((g.keepalive_time + g.keepalive_timeout).max(k.time + k.timeout), i);
            (watch, watch)
        }
        None => (client_nominal.deadline_ms(quiet), server_expectation(&k, fault).deadline_ms(quiet)),
    };
    let _ = go_tx.send(Some(t0 + Duration::from_millis(call_ms)));
    // The client closes its connection when stopped: only after both watches ended.
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(client_deadline_ms.max(server_deadline_ms) + 500)));
    let server_closed = server_watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let client_closed = client_watch.wait(t0 + Duration::from_millis(client_deadline_ms))?;
    let end = client_thread.join()?;

    let mut timeline = vec![(ready.last_read, "last response read by the client".to_string())];
    if let Some(t) = end.call_started {
        timeline.push((t, "call started".into()));
    }
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let (client_exp, detected_at, error) = match plan {
        _ if imp.is_some() => {
            let i = imp.as_ref().expect("checked");
            let error = client_closed.as_ref().map(|c| format!("client closed the connection (socket {}); {}", c.state, end.probe.clone().unwrap_or_default()));
            (impaired_expectation("keepalive_timeout T =", g.keepalive_timeout, i, SPEC_A8), client_closed.as_ref().map(|c| c.at), error.or(end.probe))
        }
        Plan::CallLater => {
            let call = end.call_started.map(|t| rel_ms(t0, t).max(0) as u64).unwrap_or(call_ms);
            (call_expectation(&g, fault, call), end.failed_at, end.error)
        }
        _ => {
            let error = client_closed.as_ref().map(|c| format!("client closed the connection (socket {}); {}", c.state, end.probe.clone().unwrap_or_default()));
            let idle_ms = rel_ms(ready.last_read, t0).max(0) as u64;
            (idle_client_expectation(&g, &tcp, fault, idle_ms), client_closed.as_ref().map(|c| c.at), error.or(end.probe))
        }
    };
    let unavailable = error.as_deref().map(|e| e.contains("code: Unavailable")).unwrap_or(false);
    let mut config = config_of(ctx, &g);
    config.insert("server.keepalive_time".into(), format!("{}ms", ms_of(k.time)));
    config.insert("server.keepalive_timeout".into(), format!("{}ms", ms_of(k.timeout)));
    let release = crate::outcome::Releases { client: None, ..crate::outcome::releases(&tb, ready.local, addr) };
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release };
    let mut results = facts.both_sides(
        client_implementation(),
        server_impl,
        Side { expected: client_exp, detected_at, error, deadline_ms: client_deadline_ms },
        Side::from_socket(
            match &imp {
                Some(i) => impaired_expectation("the server's keepalive_timeout =", k.timeout, i, SPEC_A8),
                None => server_expectation(&k, fault),
            },
            server_closed,
            server_deadline_ms,
            "server",
        ),
        &ctx.deviations,
    );
    let client_result = &mut results[0];
    // The second axis of a failed call: its status code. gRPC's status-code
    // table: a connection that breaks after data was sent fails the call with
    // UNAVAILABLE.
    if matches!(plan, Plan::CallLater) && client_result.detected && !unavailable && client_result.verdict == Verdict::Pass {
        client_result.verdict = Verdict::Fail;
        client_result.verdict_detail =
            format!("{}, but with another status than UNAVAILABLE (connection broken after data was sent)", client_result.verdict_detail);
        client_result.known_deviation = crate::deviations::explain(
            &ctx.deviations,
            case.id,
            "client",
            &client_result.implementation.name,
            &client_result.expected,
            client_result.detection_ms,
        );
    }
    Ok(results)
}

pub(crate) fn run_ping_policy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let g = GrpcConfig { keepalive_while_idle: true, ..ctx.config.grpc };
    let tcp = ctx.config.tcp;
    let mut out = Vec::new();
    for which in measured(ctx) {
        let tb = ctx.testbed_for("kaspec-grpc-defaults")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let _server = Server::start(&tb, &which.spec(ctx, addr, Mode::Defaults)?)?;
        let (_go_tx, go_rx) = tokio::sync::watch::channel(None);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
        let (client_thread, ready) =
            drive::client::start_or_fail(&tb.client, "kaspec-grpc-client", "grpc client", Duration::from_secs(15), &format!("grpc client against {}", which.implementation().name), move |ready_tx| client(addr, g, tcp, Plan::Stream, ready_tx, go_rx, stop_rx))?;
        let t0 = ready.last_read;
        let expected = policy_expectation(&g, which);
        let deadline_ms = expected.deadline_ms(10_000);
        let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadline_ms)));
        let end = client_thread.join()?;
        let facts = RunFacts { case, fault, engine: "none".into(), config: config_of(ctx, &g), t0, timeline: Vec::new(), release: Default::default() };
        // GOAWAY debug data "too_many_pings"; grpc-core also puts "Too many
        // pings" in the status of the calls it ends.
        let told = end.error.as_deref().map(|e| e.to_lowercase().replace('_', " ").contains("too many pings")).unwrap_or(false);
        let mut r = facts.result(
            SideOutcome {
                side: "server",
                implementation: which.implementation(),
                peer: client_implementation(),
                expected,
                detected_at: end.failed_at,
                error: end.error.clone(),
                deadline_ms,
            },
            &ctx.deviations,
        );
        match (end.failed_at, told) {
            (None, _) => {
                r.verdict_detail = format!("{}: the server does not enforce a ping policy", r.verdict_detail);
            }
            (Some(_), false) => {
                r.verdict = Verdict::Fail;
                r.verdict_detail = format!("{}, but the stream ended without GOAWAY \"too_many_pings\"", r.verdict_detail);
            }
            (Some(_), true) => {
                r.verdict_detail = format!("{}: GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"", r.verdict_detail);
            }
        }
        out.push(r);
    }
    Ok(out)
}

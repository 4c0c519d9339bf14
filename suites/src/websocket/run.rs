//! How the WebSocket cases run: the servers under test, the client, the
//! fault, both sides watched.

use super::*;

pub(crate) fn run_heartbeat(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    if let Some(adapter) = &ctx.client {
        return super::external::run_heartbeat_external(ctx, case, fault, adapter);
    }
    let mut out = Vec::new();
    for server in measured(ctx) {
        out.extend(heartbeat_against(ctx, case, fault, server, None)?);
    }
    Ok(out)
}

/// The busy case: the heartbeat case with a text message every 100 ms
/// (bounded by the case's budget) echoed by each server.
pub(crate) fn run_busy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let echo = Workload::within((case.budget)(ctx));
    let mut out = Vec::new();
    for server in measured(ctx) {
        out.extend(heartbeat_against(ctx, case, fault, server, Some(echo))?);
    }
    Ok(out)
}

pub(crate) fn heartbeat_against(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    which: WsServer,
    echo: Option<Workload>,
) -> Result<Vec<CaseResult>> {
    let hb = which.heartbeat(&ctx.fixtures)?;
    let w = super::knobs::WebSocketConfig::of(&ctx.config);
    let tb = ctx.testbed_for("kaspec-ws")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, hb)?)?;
    let server_impl = which.implementation();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (stall_tx, stall_rx) = tokio::sync::watch::channel(false);
    let (client_thread, (local, origin)) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-ws-client",
        "websocket client",
        Duration::from_secs(10) + 3 * w.ping_interval.max(hb.ping_interval),
        &format!("websocket client against {}", server_impl.name),
        move |ready_tx| {
            heartbeat_client(
                addr,
                w,
                echo,
                ReadyAfter::PongAndServerPing,
                ready_tx,
                stop_rx,
                stall_rx,
            )
        },
    )?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    // Let the path fail where neither side's Ping (nor a busy client's
    // text) is due (the timers start at the connection; kaspec-ws's at its
    // accept, within a ms of it): a frame sent while the rule is being
    // committed may or may not pass.
    let now = Instant::now();
    let at = crate::model::periodic::quiet_moment(
        0,
        &[
            ms_of(w.ping_interval) as i64,
            ms_of(hb.ping_interval) as i64,
            echo.map_or(0, |e| ms_of(e.period) as i64),
        ],
        rel_ms(origin, now),
        20,
    );
    std::thread::sleep(
        (origin + Duration::from_millis(at.max(0) as u64)).saturating_duration_since(now),
    );
    if fault == FaultKind::ClientStall {
        let _ = stall_tx.send(true);
    }
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(server.pid()),
    )?;
    if fault == FaultKind::ClientCrash {
        // The client host is gone: its connection is dropped behind the blackhole.
        let _ = stop_tx.send(Some(Instant::now()));
    }
    let t0 = applied.in_force_at;

    // Nominal windows (as if every anchor were at t0) give the deadlines; a
    // live peer on an impaired path is watched for a while.
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        // Both watched equally long: the client's own close at its deadline
        // must not look like the server's detection.
        Some(i) => {
            let watch = impaired_watch_ms(
                (w.ping_interval + w.pong_timeout).max(hb.ping_interval + hb.pong_timeout),
                i,
            );
            (watch, watch)
        }
        None => (
            client_expectation(&w, fault, 0, 0).deadline_ms(10_000),
            server_expectation(which, &hb, fault, (0, 0), 0)
                .deadline_ms(3 * ms_of(hb.ping_interval + hb.pong_timeout).max(3000)),
        ),
    };
    // On a live path the client is stopped (and closes) only after the
    // server's watch ended: its close is not the server's detection.
    let stop_ms = if imp.is_some() {
        client_deadline_ms.max(server_deadline_ms) + 500
    } else {
        client_deadline_ms
    };
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(stop_ms)));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let mut end = client_thread.join()?;
    drive::client::not_after(
        &mut end.failed_at,
        &mut end.error,
        t0 + Duration::from_millis(client_deadline_ms),
    );

    let rel = |t: Option<Instant>| t.map(|t| rel_ms(t0, t)).unwrap_or(0);
    let last_rx = rel(last_before(
        &end.events,
        t0,
        &[
            Ev::PongReceived,
            Ev::ServerPing,
            Ev::Frame,
            Ev::EchoReceived,
        ],
    ));
    let last_ping = rel(last_before(&end.events, t0, &[Ev::PingSent]));
    let last_heard = rel(last_before(
        &end.events,
        t0,
        &[Ev::PingSent, Ev::ServerPing],
    ));
    let last_server_ping = rel(last_before(&end.events, t0, &[Ev::ServerPing]));
    let last_heard = (
        last_heard,
        read_by(&end.events, t0).map_or(last_heard, |t| rel_ms(t0, t)),
    );
    // A busy client's last frame is usually its last text, read by the
    // server by the time its echo came back (compared as instants: a Pong
    // and a text can go out in the same millisecond).
    let last_frame = last_before(&end.events, t0, &[Ev::PingSent, Ev::ServerPing]);
    let last_heard = match last_text(&end.events, t0) {
        Some((sent, echoed)) if last_frame.is_none_or(|f| sent > f) => {
            (rel_ms(t0, sent), rel_ms(t0, echoed))
        }
        _ => last_heard,
    };
    let texts = |before: bool| {
        end.events
            .iter()
            .filter(|(t, e)| *e == Ev::EchoReceived && (*t < t0) == before)
            .count()
    };
    let echoes = format!("{} before the fault, {} after", texts(true), texts(false));
    // A busy client's traffic: the last text and echo before the fault and
    // the first text after it stay in the timeline, not every one.
    let traffic = |e: &Ev| matches!(e, Ev::TextSent | Ev::EchoReceived);
    let kept = |t: &Instant, e: &Ev| {
        !traffic(e)
            || last_before(&end.events, t0, &[*e]) == Some(*t)
            || (*e == Ev::TextSent
                && end
                    .events
                    .iter()
                    .find(|(u, x)| *u >= t0 && *x == *e)
                    .map(|x| x.0)
                    == Some(*t))
    };
    let mut timeline: Vec<(Instant, String)> = end
        .events
        .iter()
        .filter(|(t, e)| kept(t, e))
        .map(|(t, e)| (*t, e.text().to_string()))
        .collect();
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let mut config = ctx.config.effective("websocket.");
    config.insert(
        "server.ping_interval".into(),
        format!("{}ms", ms_of(hb.ping_interval)),
    );
    config.insert(
        "server.pong_timeout".into(),
        format!("{}ms", ms_of(hb.pong_timeout)),
    );
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(&tb, local, addr)
    };
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config,
        t0,
        timeline,
        release,
    };
    let (client_expected, server_expected) = match &imp {
        // The silence limit is P + T while frames come every P: T is the slack for a slower path.
        Some(i) => (
            impaired_expectation(
                "the slack beyond the ping period, pong timeout T =",
                w.pong_timeout,
                i,
                SPEC_PING,
            ),
            impaired_expectation(
                "the server's pong timeout T =",
                hb.pong_timeout,
                i,
                SPEC_PING,
            ),
        ),
        None => (
            match (echo, last_before(&end.events, t0, &[Ev::TextSent])) {
                (Some(e), Some(text)) if fault == FaultKind::Reset => {
                    busy_client_reset(
                        &w,
                        rel_ms(t0, text),
                        ms_of(e.period) as i64,
                        last_ping,
                        // Its last segment: a text, a Ping or a Pong.
                        rel(last_before(
                            &end.events,
                            t0,
                            &[Ev::TextSent, Ev::PingSent, Ev::ServerPing],
                        )),
                    )
                }
                _ => client_expectation(&w, fault, last_rx, last_ping),
            },
            server_expectation(which, &hb, fault, last_heard, last_server_ping),
        ),
    };
    // The server's own lateness, where it logs one.
    let server_wake = match which {
        WsServer::Kaspec => timer_lateness_ms(&server.log, tb.seen_by_server(local)),
        // Its asyncio loop's own lateness (fixtures/websocket/ws_server.py).
        WsServer::PythonWebsockets if server_closed.is_some() => {
            let seen = tb.seen_by_server(local);
            crate::peers::logged_wake_ms(
                &server.log,
                0,
                &format!("closed ('{}', {}):", seen.ip(), seen.port()),
            )
        }
        WsServer::PythonWebsockets => None,
    };
    let client_side = Side::library(
        client_expected,
        end.failed_at,
        end.error,
        client_deadline_ms,
    );
    facts.both_sides(
        client_implementation(),
        server_impl,
        match echo {
            Some(_) => client_side.with_fact("echoes received", echoes),
            None => client_side,
        },
        Side::from_socket(server_expected, server_closed, server_deadline_ms, "server")
            .with_process_wake(server_wake),
        &ctx.judging(),
    )
}

/// The client pings every P (its configured value) with T = 200 ms; our
/// server does not ping (so only Pongs reach the client). Halfway through a
/// ping period the round trip becomes 300 ms: the next Pong comes 300 ms
/// after its Ping, 100 ms after the client's silence limit L + P + T.
pub(crate) fn run_false_positive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let w = WebSocketConfig {
        ping_interval: super::knobs::WebSocketConfig::of(&ctx.config).ping_interval,
        pong_timeout: FALSE_POSITIVE_T,
    };
    let imp = kaspec_harness::fault::impair::Impairment {
        rtt: FALSE_POSITIVE_RTT,
        jitter: Duration::ZERO,
        loss_percent: 0.0,
        seed: 1,
    };
    quiet_server_on_impaired_path(ctx, case, fault, w, imp, true)
}

pub(crate) fn run_own_heartbeat_on_impaired_path(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let imp = ctx
        .impairment(fault)
        .ok_or_else(|| Error::Other(format!("{}: takes delay or loss, not {fault}", case.id)))?;
    quiet_server_on_impaired_path(
        ctx,
        case,
        fault,
        super::knobs::WebSocketConfig::of(&ctx.config),
        imp,
        false,
    )
}

/// Our server sends no Pings, so only the Pongs to the client's own Pings
/// reach the client. Halfway through a ping period the path becomes `imp`.
pub(crate) fn quiet_server_on_impaired_path(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    w: WebSocketConfig,
    imp: kaspec_harness::fault::impair::Impairment,
    fixed: bool,
) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for("kaspec-ws-quiet")?;
    tb.set_impairments(imp, imp);
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let _server = Server::start(&tb, &WsServer::Kaspec.spec(ctx, addr, QUIET)?)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (client_thread, (local, _)) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-ws-client",
        "websocket client",
        Duration::from_secs(10) + 3 * w.ping_interval,
        "websocket client",
        move |ready_tx| {
            heartbeat_client(
                addr,
                w,
                None,
                ReadyAfter::Pong,
                ready_tx,
                stop_rx,
                never_stalls(),
            )
        },
    )?;
    std::thread::sleep(w.ping_interval / 2);
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        None,
    )?;
    let t0 = applied.in_force_at;
    let deadline_ms = if fixed {
        3 * ms_of(w.ping_interval + w.pong_timeout + imp.rtt).max(2000)
    } else {
        impaired_watch_ms(w.ping_interval + w.pong_timeout, &imp)
    };
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadline_ms)));
    let end = client_thread.join()?;
    let rel = |t: Option<Instant>| t.map(|t| rel_ms(t0, t)).unwrap_or(0);
    let last_rx = rel(last_before(
        &end.events,
        t0,
        &[Ev::PongReceived, Ev::ServerPing, Ev::Frame],
    ));
    let expected = own_heartbeat_expectation(&w, &imp, last_rx);
    let mut timeline: Vec<(Instant, String)> = end
        .events
        .iter()
        .map(|(t, e)| (*t, e.text().to_string()))
        .collect();
    timeline.push((t0, format!("path now: {}", imp.describe())));
    let mut config = ctx.config.effective("websocket.");
    if fixed {
        config.insert(
            "websocket.pong_timeout".into(),
            format!("{}ms (fixed by this case)", ms_of(w.pong_timeout)),
        );
    }
    config.insert("path".into(), imp.describe());
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config,
        t0,
        timeline,
        release: Default::default(),
    };
    facts.client_only(
        client_implementation(),
        WsServer::Kaspec.implementation(),
        Side::library(expected, end.failed_at, end.error, deadline_ms),
        &ctx.judging(),
    )
}

/// The requirement the Pong is judged by.
const PAYLOAD: &str = "Pong payload (hex)";

/// §5.5.2/§5.5.3: send one Ping with a payload, wait for its Pong (answering
/// anything else on the way), and compare the payloads.
pub(crate) fn ping_once(
    server: SocketAddrV4,
    payload: Vec<u8>,
    wait: Duration,
) -> std::result::Result<(Duration, Vec<u8>), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let url = format!("ws://{server}/");
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        .map_err(|_| format!("connecting to {url}: no answer in 5 s"))?
        .map_err(|e| format!("connecting to {url}: {e}"))?;
        let sent = Instant::now();
        ws.send(Message::Ping(payload.into()))
            .await
            .map_err(|e| format!("sending Ping: {e}"))?;
        loop {
            match tokio::time::timeout_at((sent + wait).into(), ws.next()).await {
                Err(_) => return Err(format!("no Pong within {} ms", wait.as_millis())),
                Ok(Some(Ok(Message::Pong(p)))) => {
                    let rtt = sent.elapsed();
                    let _ = ws.close(None).await;
                    return Ok((rtt, p.to_vec()));
                }
                Ok(Some(Ok(Message::Ping(_)))) => ws.flush().await.map_err(|e| e.to_string())?,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(format!("tungstenite::Error::{e:?}: {e}")),
                Ok(None) => return Err("the stream ended before the Pong".into()),
            }
        }
    })
}

pub(crate) fn run_pong_echo(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let wait = super::knobs::WebSocketConfig::of(&ctx.config).pong_timeout;
    for which in measured(ctx) {
        let hb = which.heartbeat(&ctx.fixtures)?;
        let tb = ctx.testbed_for("kaspec-ws")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let _server = Server::start(&tb, &which.spec(ctx, addr, hb)?)?;
        // Binary, non-UTF-8, up to the 125-byte control-frame limit (§5.5).
        let payload: Vec<u8> = format!("kaspec-{}-", tb.tag)
            .into_bytes()
            .into_iter()
            .chain([0u8, 1, 0x7f, 0x80, 0xfe, 0xff])
            .collect();
        let sent = payload.clone();
        let started = Instant::now();
        let outcome = tb.client.run(move || ping_once(addr, sent, wait))?;
        let t = ms_of(wait);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let expected = Expectation::window(
            0,
            t,
            format!("a Pong with the same payload within the client's pong timeout T = {t} ms"),
            case.spec,
            Level::Must,
        )
        .requiring(
            PAYLOAD,
            hex(&payload),
            "RFC 6455 §5.5.3 (identical \"Application data\")",
            Level::Must,
        );
        let facts = RunFacts {
            case,
            fault,
            engine: "none".into(),
            commit_ms: 0,
            config: ctx.config.effective("websocket."),
            t0: started,
            timeline: Vec::new(),
            release: Default::default(),
        };
        let (detected_at, error, echoed) = match &outcome {
            Ok((rtt, p)) => (Some(started + *rtt), None, Some(p.clone())),
            Err(e) => (None, Some(e.clone()), None),
        };
        let r = facts.result(
            SideOutcome {
                side: "server",
                implementation: which.implementation(),
                peer: client_implementation(),
                expected,
                detected_at,
                error,
                deadline_ms: t,
                observer_ms: crate::outcome::LIBRARY_EVENT_MS,
                facts: echoed
                    .iter()
                    .map(|p| (PAYLOAD.to_string(), hex(p)))
                    .collect(),
                release: None,
                process_wake_ms: 0,
            },
            &ctx.judging(),
        )?;
        out.push(r);
    }
    Ok(out)
}

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
    if let Some(adapter) = &ctx.client {
        return super::external::run_idle_external(ctx, case, fault, adapter);
    }
    against_each(ctx, case, fault, GrpcConfig::of(&ctx.config), Plan::Idle)
}

pub(crate) fn run_call_after_idle(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let g = GrpcConfig {
        keepalive_while_idle: false,
        ..GrpcConfig::of(&ctx.config)
    };
    against_each(ctx, case, fault, g, Plan::CallLater)
}

/// Case `busy`: calls every [`BUSY_PERIOD`] until the path fails.
pub(crate) fn run_busy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    against_each(ctx, case, fault, GrpcConfig::of(&ctx.config), Plan::Busy)
}

/// [`detection`] against each server measured.
fn against_each(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    g: GrpcConfig,
    plan: Plan,
) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for which in measured(ctx) {
        out.extend(detection(Run {
            ctx,
            case,
            fault,
            which,
            g,
            plan,
        })?);
    }
    Ok(out)
}

pub(crate) fn config_of(ctx: &Ctx, g: &GrpcConfig) -> std::collections::BTreeMap<String, String> {
    let mut config = ctx.config.effective("grpc.");
    config.insert(
        "grpc.keepalive_while_idle".into(),
        g.keepalive_while_idle.to_string(),
    );
    config.extend(
        ctx.config
            .effective("tcp.")
            .into_iter()
            .filter(|(k, _)| k != "tcp.user_timeout"),
    );
    config
}

pub(crate) fn detection(r: Run<'_>) -> Result<Vec<CaseResult>> {
    let Run {
        ctx,
        case,
        fault,
        which,
        g,
        plan,
    } = r;
    let k = which.keepalive(&ctx.fixtures)?;
    let tcp = crate::config::TcpConfig::of(&ctx.config);
    let tb = ctx.testbed_for("kaspec-grpc")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, Mode::Keepalive(k))?)?;
    let server_impl = which.implementation();

    let (go_tx, go_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (halt_tx, halt_rx) = halt_channel();
    let stalled = halt_rx.stalled.clone();
    let (client_thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-grpc-client",
        "grpc client",
        Duration::from_secs(15),
        &format!("grpc client against {}", server_impl.name),
        move |ready_tx| client(addr, g, tcp, plan, ready_tx, go_rx, stop_rx, halt_rx),
    )?;
    let client_watch = SocketWatch::start(&tb.client, ready.local, addr)?;
    let server_watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    // Let the connection go quiet first: the ACK of the first response may
    // still be held back by delayed ACK (up to 200 ms), and under `reset` it
    // would be the first segment to meet the RST, not the call or the PING.
    // A busy client calls on a grid: the path fails between two calls.
    let fault_at = match plan {
        Plan::Busy => ready.last_read + BUSY_FAULT_AFTER,
        _ => ready.last_read + QUIET_BEFORE_FAULT,
    };
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    if fault == FaultKind::ClientStall {
        let _ = halt_tx.send(Halt::Stall);
        wait_stalled(&stalled)?;
    }
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: ready.local,
            server: addr,
        },
        Some(server.pid()),
    )?;
    if fault == FaultKind::ClientCrash {
        // The client host is gone: its connection is dropped behind the blackhole.
        let _ = halt_tx.send(Halt::Crash);
    }
    let t0 = applied.in_force_at;
    // The client's last data received, from its kernel (TCP_INFO through
    // sock_diag, jiffy-grained): hyper schedules its PING at its last read +
    // I, so this anchors the window. The app's own timestamp of the response
    // comes a few ms later than hyper's read.
    let client_idle_ms = kaspec_harness::observe::last_data_recv_at(&tb.client, ready.local, addr)?
        .map(|at| rel_ms(at, t0).max(0) as u64);
    // The same for the server's end (its own keep-alive anchors there); a
    // crashed server has no socket left to ask.
    let server_idle_ms = match fault {
        FaultKind::Crash => None,
        _ => kaspec_harness::observe::last_data_recv_at(
            &tb.server,
            addr,
            tb.seen_by_server(ready.local),
        )?,
    }
    .map(|at| rel_ms(at, t0).max(0) as u64);

    // Busy: the server socket's RTO and srtt at t0 (sock_diag, read in its
    // namespace), for grpcio's TCP_USER_TIMEOUT (see busy_server_expectation).
    let server_retrans = match (plan, which) {
        (Plan::Busy, GrpcServer::PythonGrpcio) => {
            let (local, remote) = (addr, tb.seen_by_server(ready.local));
            tb.server
                .run(move || -> Result<Option<linux::RetransState>> {
                    Ok(kaspec_harness::observe::SockDiag::new()?
                        .rto_rtt(local, remote)?
                        .map(|(rto, rtt)| linux::RetransState::from_info(rto as u64, rtt as u64)))
                })??
        }
        _ => None,
    };
    // The call of case 2 starts I after the fault: past any PING the idle
    // connection could have had scheduled, so the call's PING goes out at once.
    let call_ms = ms_of(g.keepalive_time);
    let client_nominal = match plan {
        Plan::CallLater => call_expectation(&g, fault, call_ms),
        Plan::Busy => busy_client_expectation(&g, fault, 0),
        _ => idle_client_expectation(&g, &tcp, fault, ms_of(QUIET_BEFORE_FAULT)),
    };
    let quiet = 3 * ms_of(2 * g.keepalive_time + g.keepalive_timeout).max(1000);
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        // A live server on a slow or lossy path: both watched equally long.
        Some(i) => {
            let watch = impaired_watch_ms(
                (g.keepalive_time + g.keepalive_timeout).max(k.time + k.timeout),
                i,
            );
            (watch, watch)
        }
        None => (
            client_nominal.deadline_ms(quiet),
            server_expectation(&k, fault, None).deadline_ms(quiet),
        ),
    };
    let _ = go_tx.send(Some(t0 + Duration::from_millis(call_ms)));
    // The client closes its connection when stopped: only after both watches ended.
    let _ = stop_tx.send(Some(
        t0 + Duration::from_millis(client_deadline_ms.max(server_deadline_ms) + 500),
    ));
    let server_closed = server_watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let client_closed = client_watch.wait(t0 + Duration::from_millis(client_deadline_ms))?;
    if fault.on_client() {
        // Both watched: a stalled client may go on now.
        let _ = stop_tx.send(Some(Instant::now()));
    }
    let end = client_thread.join()?;

    let mut timeline = vec![(
        ready.last_read,
        "last response read by the client".to_string(),
    )];
    if let Some(t) = end.call_started {
        timeline.push((t, "call started".into()));
    }
    if let Some(t) = end.stalled_at {
        timeline.push((
            t,
            "client application stalled (its runtime's thread blocked)".into(),
        ));
    }
    if let Some(t) = end.reads.iter().filter(|t| **t < t0).last() {
        timeline.push((
            *t,
            format!(
                "last response read before the fault ({} calls answered)",
                end.reads.len()
            ),
        ));
    }
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let client = match plan {
        // Reported, not judged (outcome::client_in_situation): a stalled
        // client's socket leaves ESTABLISHED only on the server's FIN, which
        // its kernel takes; a crashed client's close is the crash.
        _ if fault.on_client() => Side::library(client_nominal, None, None, client_deadline_ms),
        Plan::Busy => {
            let idle_ms =
                client_idle_ms.unwrap_or_else(|| rel_ms(ready.last_read, t0).max(0) as u64);
            failed_call(
                busy_client_expectation(&g, fault, idle_ms),
                end.failed_at,
                end.error,
                client_deadline_ms,
            )
        }
        _ if imp.is_some() => {
            let i = imp.as_ref().expect("checked");
            let error = client_closed.as_ref().map(|c| {
                format!(
                    "client closed the connection (socket {}); {}",
                    c.state,
                    end.probe.clone().unwrap_or_default()
                )
            });
            Side::observed(
                impaired_expectation("keepalive_timeout T =", g.keepalive_timeout, i, SPEC_A8),
                client_closed.as_ref(),
                error.or(end.probe),
                client_deadline_ms,
            )
        }
        Plan::CallLater => {
            let call = end
                .call_started
                .map(|t| rel_ms(t0, t).max(0) as u64)
                .unwrap_or(call_ms);
            failed_call(
                call_expectation(&g, fault, call),
                end.failed_at,
                end.error,
                client_deadline_ms,
            )
        }
        _ => {
            let error = client_closed.as_ref().map(|c| {
                format!(
                    "client closed the connection (socket {}); {}",
                    c.state,
                    end.probe.clone().unwrap_or_default()
                )
            });
            let idle_ms =
                client_idle_ms.unwrap_or_else(|| rel_ms(ready.last_read, t0).max(0) as u64);
            Side::observed(
                idle_client_expectation(&g, &tcp, fault, idle_ms),
                client_closed.as_ref(),
                error.or(end.probe),
                client_deadline_ms,
            )
        }
    };
    // grpcio's first PING after t0, from its trace log (case busy).
    let grpcio_ping = match (plan, which) {
        (Plan::Busy, GrpcServer::PythonGrpcio) => grpcio_first_ping(
            &server.log_tail(100_000),
            tb.seen_by_server(ready.local),
            t0,
        ),
        _ => None,
    };
    if let Some((ms, kind)) = grpcio_ping {
        timeline.push((
            t0 + Duration::from_secs_f64(ms / 1000.0),
            format!("grpcio sent a PING ({kind:?}; its log)"),
        ));
    }
    let mut config = config_of(ctx, &g);
    if let Plan::Busy = plan {
        config.insert(
            "client.call_period".into(),
            format!("{}ms", ms_of(BUSY_PERIOD)),
        );
    }
    config.insert(
        "server.keepalive_time".into(),
        format!("{}ms", ms_of(k.time)),
    );
    config.insert(
        "server.keepalive_timeout".into(),
        format!("{}ms", ms_of(k.timeout)),
    );
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(&tb, ready.local, addr)
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
    facts.both_sides(
        client_implementation(),
        server_impl,
        client,
        Side::from_socket(
            match &imp {
                Some(i) => {
                    impaired_expectation("the server's keepalive_timeout =", k.timeout, i, SPEC_A8)
                }
                None if matches!(plan, Plan::Busy) => busy_server_expectation(
                    which,
                    &k,
                    fault,
                    server_idle_ms,
                    grpcio_ping,
                    server_retrans.as_ref(),
                ),
                None => server_expectation(&k, fault, server_idle_ms),
            },
            server_closed,
            server_deadline_ms,
            "server",
        ),
        &ctx.judging(),
    )
}

/// Waits (up to 2 s) until the client application says its stall is in
/// force, so that t0 comes after it.
fn wait_stalled(stalled: &std::sync::OnceLock<Instant>) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(2);
    while stalled.get().is_none() {
        if Instant::now() > until {
            return Err(kaspec_harness::Error::Other(
                "the grpc client did not stall within 2 s of being told to".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// A client side whose detection is its call's failure: UNAVAILABLE is
/// required where a failure is expected (gRPC's status-code table: a
/// connection that breaks after data was sent), the status observed.
fn failed_call(
    exp: Expectation,
    failed_at: Option<Instant>,
    error: Option<String>,
    deadline_ms: u64,
) -> Side {
    let exp = if exp.expects_detection() {
        exp.requiring(
            STATUS,
            "Unavailable",
            "gRPC doc/statuscodes.md (connection broken after data was sent)",
            Level::Must,
        )
    } else {
        exp
    };
    let status = error.as_deref().and_then(status_code);
    let side = Side::library(exp, failed_at, error, deadline_ms);
    match status {
        Some(s) => side.with_fact(STATUS, s),
        None => side,
    }
}

/// The requirement a failed call's status is judged by.
const STATUS: &str = "gRPC status of the failed call";

/// The status code in a tonic error as the client reports it
/// (`tonic::Status { code: Unknown }: ...` → `Unknown`).
pub(crate) fn status_code(error: &str) -> Option<String> {
    let rest = &error[error.find("code: ")? + "code: ".len()..];
    let code: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!code.is_empty()).then_some(code)
}

pub(crate) fn run_ping_policy(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let g = GrpcConfig {
        keepalive_while_idle: true,
        ..super::knobs::GrpcConfig::of(&ctx.config)
    };
    let tcp = crate::config::TcpConfig::of(&ctx.config);
    let mut out = Vec::new();
    for which in measured(ctx) {
        let tb = ctx.testbed_for("kaspec-grpc-defaults")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let _server = Server::start(&tb, &which.spec(ctx, addr, Mode::Defaults)?)?;
        let (_go_tx, go_rx) = tokio::sync::watch::channel(None);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
        let (client_thread, ready) = drive::client::start_or_fail(
            &tb.client,
            "kaspec-grpc-client",
            "grpc client",
            Duration::from_secs(15),
            &format!("grpc client against {}", which.implementation().name),
            move |ready_tx| {
                client(
                    addr,
                    g,
                    tcp,
                    Plan::Stream,
                    ready_tx,
                    go_rx,
                    stop_rx,
                    no_halt(),
                )
            },
        )?;
        let t0 = ready.last_read;
        let expected = policy_expectation(&g, which);
        let deadline_ms = expected.deadline_ms(10_000);
        let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadline_ms)));
        let end = client_thread.join()?;
        let facts = RunFacts {
            case,
            fault,
            engine: "none".into(),
            commit_ms: 0,
            config: config_of(ctx, &g),
            t0,
            timeline: Vec::new(),
            release: Default::default(),
        };
        // GOAWAY debug data "too_many_pings"; grpc-core also puts "Too many
        // pings" in the status of the calls it ends. A server that ends the
        // stream must say why (gRFC A8).
        let told = end
            .error
            .as_deref()
            .map(|e| {
                e.to_lowercase()
                    .replace('_', " ")
                    .contains("too many pings")
            })
            .unwrap_or(false);
        const WHY: &str = "why the server ended the stream";
        // Only a stream the server ended has a why to check.
        let expected = if end.failed_at.is_some() {
            expected.requiring(
                WHY,
                "GOAWAY too_many_pings",
                "gRFC A8 (server enforcement)",
                Level::Must,
            )
        } else {
            expected
        };
        let mut facts_seen = std::collections::BTreeMap::new();
        if end.failed_at.is_some() {
            facts_seen.insert(
                WHY.to_string(),
                if told {
                    "GOAWAY too_many_pings".to_string()
                } else {
                    "another error".to_string()
                },
            );
        }
        let r = facts.result(
            SideOutcome {
                side: "server",
                implementation: which.implementation(),
                peer: client_implementation(),
                expected,
                detected_at: end.failed_at,
                error: end.error.clone(),
                deadline_ms,
                observer_ms: crate::outcome::LIBRARY_EVENT_MS,
                facts: facts_seen,
                release: None,
                process_wake_ms: 0,
            },
            &ctx.judging(),
        )?;
        out.push(r);
    }
    Ok(out)
}

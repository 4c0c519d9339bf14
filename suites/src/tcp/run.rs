//! How a TCP case runs: the echo server, the client thread, the fault, both sides watched.

use super::*;

pub(crate) struct Plan {
    pub(crate) tcp: TcpConfig,
    pub(crate) after: After,
    /// Half-open: after the crash, the server host forgets the flow and the
    /// path returns this long after the fault.
    pub(crate) heal_after: Option<Duration>,
}

/// Our TCP echo server on `tb` (docker-compose.yml's kaspec-tcp on the
/// docker testbed).
pub(crate) fn start_server(ctx: &Ctx, tb: &Testbed) -> Result<Server> {
    let addr = server_addr(tb);
    let mut args = ctx.serve.args.clone();
    args.extend(["tcp".into(), "--listen".into(), addr.to_string()]);
    Server::start(
        tb,
        &ServerSpec {
            name: "kaspec-tcp".into(),
            program: ctx.serve.program.clone(),
            args,
            addr,
            ready_within: Duration::from_secs(5),
            container: Some(ContainerCheck {
                service: "kaspec-tcp".into(),
                args: vec!["serve".into(), "tcp".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

pub(crate) fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    plan: Plan,
) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for("kaspec-tcp")?;
    let addr = server_addr(&tb);
    let server = start_server(ctx, &tb)?;

    // Each side waits as long as its own nominal expectation says (idle time
    // 0, send at t0): 3× the upper bound, or the quiet deadline if nothing
    // should happen on that side.
    let quiet = quiet_deadline_ms(&plan.tcp);
    let (nominal_client, nominal_server) = expectations(&plan, case, fault, 0, None, None);
    let imp = ctx.impairment(fault).filter(|_| plan.tcp.keepalive);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        Some(i) => {
            let watch = crate::model::impaired::impaired_watch_ms(
                Duration::from_millis(keepalive_death(&plan.tcp).ms),
                i,
            );
            (watch, watch)
        }
        None => (
            nominal_client.deadline_ms(quiet),
            nominal_server.deadline_ms(quiet),
        ),
    };

    let (go_tx, go_rx) = mpsc::channel();
    let (tcp, after) = (plan.tcp, plan.after);
    let (client_thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-tcp-client",
        "tcp client",
        Duration::from_secs(10),
        &format!("tcp client connecting to {addr}"),
        move |ready_tx| client(addr, tcp, after, ready_tx, go_rx),
    )?;

    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: ready.local,
            server: addr,
        },
        Some(server.pid()),
    )?;
    let t0 = applied.in_force_at;
    // On a live path the client closes only after the server's watch ended.
    let client_until = client_deadline_ms + if imp.is_some() { 500 } else { 0 };
    go_tx
        .send(t0 + Duration::from_millis(client_until))
        .map_err(|_| Error::Other("tcp client thread ended early".into()))?;
    let mut healed_at = None;
    if let Some(h) = plan.heal_after {
        tb.forget_on_server(&Flow {
            client: ready.local,
            server: addr,
        })?;
        if let Some(wait) = (t0 + h).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        healed_at = Some(tb.heal()?);
    }
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let end = client_thread.join()?;

    let idle_ms = rel_ms(ready.last_rx, t0).max(0) as u64;
    let sent_ms = end.sent_at.map(|t| rel_ms(t0, t).max(0) as u64);
    let (mut client_exp, mut server_exp) =
        expectations(&plan, case, fault, idle_ms, sent_ms, end.retrans.as_ref());
    if let Some(h) = healed_at {
        client_exp = half_open_expectation(&plan.tcp, idle_ms, rel_ms(t0, h).max(0) as u64);
    }
    if let Some(i) = &imp {
        // Each probe is answered (or retried) within V; N unanswered probes in a row are death.
        client_exp = keepalive_on_impaired_path(&plan.tcp, i, "client", case.spec);
        server_exp = Expectation::not_detected(
            "the server has keep-alive off and nothing to send: nothing on that side can time out",
            case.spec,
        );
    }
    let mut config = ctx.config.effective("tcp.");
    config.insert("tcp.keepalive".into(), plan.tcp.keepalive.to_string());
    let mut timeline = vec![(
        ready.last_rx,
        "last segment received by the client".to_string(),
    )];
    if let Some(t) = end.sent_at {
        let state = end
            .retrans
            .map(|r| format!(" (rto {} ms, srtt {} µs)", r.rto_us / 1000, r.srtt_us))
            .unwrap_or_default();
        timeline.push((t, format!("client sent data{state}")));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    if let Some(h) = healed_at {
        timeline.push((t0, "server host forgot the flow (SOCK_DESTROY)".into()));
        timeline.push((h, "path returns (half-open)".into()));
    }
    let release = crate::outcome::releases(&tb, ready.local, addr);
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
        implementation(),
        server_implementation(),
        Side::library(client_exp, end.failed_at, end.error, client_deadline_ms),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "server"),
        &ctx.judging(),
    )
}

pub(crate) fn run_idle_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run(
        ctx,
        case,
        fault,
        Plan {
            tcp: ctx.config.tcp,
            after: After::Idle,
            heal_after: None,
        },
    )
}

pub(crate) fn run_idle_no_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run(
        ctx,
        case,
        fault,
        Plan {
            tcp: TcpConfig {
                keepalive: false,
                ..ctx.config.tcp
            },
            after: After::Idle,
            heal_after: None,
        },
    )
}

/// When the path returns after a crash: after the first keep-alive probe
/// was lost, halfway to the second.
pub(crate) fn half_open_heal(t: &TcpConfig) -> Duration {
    t.idle + t.interval / 2
}

pub(crate) fn run_half_open(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let t = ctx.config.tcp;
    if !t.keepalive || (t.count < 2 && t.user_timeout.is_zero()) {
        return Err(Error::Other(format!(
            "{}: needs tcp.keepalive = true and tcp.count ≥ 2 (a second probe to meet the RST); got keepalive = {}, count = {}",
            case.id, t.keepalive, t.count
        )));
    }
    run(
        ctx,
        case,
        fault,
        Plan {
            tcp: t,
            after: After::Idle,
            heal_after: Some(half_open_heal(&t)),
        },
    )
}

pub(crate) fn run_data_in_flight(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run(
        ctx,
        case,
        fault,
        Plan {
            tcp: ctx.config.tcp,
            after: After::Send,
            heal_after: None,
        },
    )
}

//! One Redis connection under a fault, both sides watched: redis-server
//! started for the case, the redis-rs client thread, the server's socket
//! (sock_diag) and the options Redis set on it, the deadlines.

use super::*;

pub(crate) struct Run {
    pub(crate) fault: FaultKind,
    pub(crate) t0: Instant,
    pub(crate) ready: Ready,
    pub(crate) end: ClientEnd,
    pub(crate) server_closed: Option<kaspec_harness::observe::SocketClosed>,
    /// ms before t0 since each side last received a segment, and since the last command.
    pub(crate) client_idle: u64,
    pub(crate) server_idle: u64,
    pub(crate) since_cmd: u64,
    /// The keep-alive options on the server's socket, read back.
    pub(crate) server_tcp: TcpConfig,
    pub(crate) settings: ServerSettings,
    pub(crate) client_deadline_ms: u64,
    pub(crate) server_deadline_ms: u64,
}

/// Runs one connection under `fault` against a redis-server with the
/// fixture's settings and `overrides`; `deadlines` gives (client, server)
/// deadlines in ms after t0, `judge` both sides from what was measured.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    overrides: &[(&str, u64)],
    plan: Plan,
    deadlines: impl Fn(&ServerSettings, &TcpConfig) -> (u64, u64),
    judge: impl Fn(&Run) -> (Side, Side),
) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for(service(overrides).unwrap_or("redis"))?;
    let server = start_server(ctx, &tb, overrides)?;
    let addr = server.addr;
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
        done_rx,
    } = start_client(&tb, &server, plan)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    let (server_tcp, server_opts) = server_sockopts(server.pid(), addr, seen)?;
    let server_last_rx = last_recv_at(&tb.server, addr, seen)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the server's end of {local} <-> {addr}"
        ))
    })?;
    let (client_deadline_ms, server_deadline_ms) = deadlines(&server.settings, &server_tcp);
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(server.pid()),
    )?;
    let t0 = applied.in_force_at;
    let _ = go_tx.send(t0 + Duration::from_millis(client_deadline_ms));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    // The snapshot once the client is done too (a crashed server's socket
    // is gone at once, while the client has yet to notice: not a leak).
    let _ = done_rx.recv_timeout(
        (t0 + Duration::from_millis(client_deadline_ms + 1000))
            .saturating_duration_since(Instant::now()),
    );
    let release = crate::outcome::releases(&tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let r = Run {
        fault,
        t0,
        client_idle: rel_ms(ready.last_rx, t0).max(0) as u64,
        server_idle: rel_ms(server_last_rx, t0).max(0) as u64,
        since_cmd: rel_ms(ready.last_cmd, t0).max(0) as u64,
        ready,
        end,
        server_closed,
        server_tcp,
        settings: server.settings,
        client_deadline_ms,
        server_deadline_ms,
    };
    let (client, server_side) = judge(&r);
    let mut timeline = vec![
        (
            r.ready.last_cmd,
            "client sent its last command before the idle period (a PING; a BLPOP in the blocked case)".to_string(),
        ),
        (
            r.ready.last_rx,
            "client's last segment received (TCP_INFO)".to_string(),
        ),
        (
            server_last_rx,
            "server's last segment received (TCP_INFO)".to_string(),
        ),
    ];
    if let Some(t) = r.end.command_sent {
        timeline.push((t, "client sent a PING".to_string()));
    }
    if let Some((t, res)) = &r.end.command_end {
        timeline.push((
            *t,
            format!(
                "the PING ended: {}",
                res.as_ref()
                    .map(|v| format!("reply {v}"))
                    .unwrap_or_else(|e| e.clone())
            ),
        ));
    }
    if let Some(t) = r.end.disconnected_at {
        timeline.push((t, "redis-rs PushKind::Disconnection".to_string()));
    }
    if let Some(c) = &r.server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let mut config = ctx.config.effective("redis.");
    config.insert("redis.socket".into(), sockopts_text(&r.ready.tcp));
    config.insert("server.socket".into(), server_opts);
    config.extend(r.settings.report());
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
    let results = facts.both_sides(
        client_implementation(),
        server.implementation.clone(),
        client,
        server_side,
        &ctx.judging(),
    )?;
    drop(server);
    Ok(results)
}

/// The client's measured side: its detection (see [`ClientEnd::detection`]),
/// not counted after its own deadline.
fn client_side(r: &Run, expected: Expectation) -> Side {
    let (mut at, mut error) = r.end.detection();
    drive::client::not_after(
        &mut at,
        &mut error,
        r.t0 + Duration::from_millis(r.client_deadline_ms),
    );
    Side::library(expected, at, error, r.client_deadline_ms)
}

/// 1.5× the server's keep-alive death (or 3 s), the watch for a quiet side.
fn quiet_ms(server: &TcpConfig) -> u64 {
    let d = crate::model::tcp::keepalive_death(&TcpConfig {
        keepalive: true,
        ..*server
    });
    ((d.ms + d.slack_ms) * 3 / 2).max(3000)
}

pub(crate) fn run_idle_timeout(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let plan = Plan {
        response_timeout: super::knobs::RedisConfig::of(&ctx.config).response_timeout,
        align_last_command: true,
        block: false,
        tcp: super::knobs::RedisConfig::of(&ctx.config).tcp,
        after: After::Idle,
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        &[],
        plan,
        |s, _| {
            let hi = (s.timeout.as_secs() + 1) * 1000 + 1000 / s.hz.max(1);
            let d = if s.timeout.is_zero() { 5000 } else { hi + 3000 };
            (d, d)
        },
        |r| {
            let e = |who| {
                timeout_expectation(
                    &r.settings,
                    r.ready.last_cmd_wall_ms,
                    r.since_cmd,
                    who,
                    spec,
                )
            };
            (
                client_side(r, e("client (the server's FIN read by redis-rs's driver)")),
                Side::from_socket(
                    e("server (clientsCron frees the client)"),
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                ),
            )
        },
    )
}

pub(crate) fn run_server_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let tcp = super::knobs::RedisConfig::of(&ctx.config).tcp;
    server_keepalive(ctx, case, fault, &[("timeout", 0)], false, tcp)
}

/// The client's own keep-alive (`redis.keepalive*`, on for this case) is
/// the only detector: the server has `timeout` 0 and `tcp-keepalive` 0.
pub(crate) fn run_client_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let tcp = TcpConfig {
        keepalive: true,
        ..super::knobs::RedisConfig::of(&ctx.config).tcp
    };
    server_keepalive(
        ctx,
        case,
        fault,
        &[("timeout", 0), ("tcp-keepalive", 0)],
        false,
        tcp,
    )
}

/// The blocked client: `timeout` stays at the fixture's value (1 s), which
/// Redis does not apply to a client blocked in BLPOP (timeout.c
/// clientsCronHandleTimeout: `!(c->flags & CLIENT_BLOCKED) && /* No timeout
/// for BLPOP */`), so only `tcp-keepalive` may reap it: a close at `timeout`
/// is early and fails.
pub(crate) fn run_blocked(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let tcp = super::knobs::RedisConfig::of(&ctx.config).tcp;
    server_keepalive(ctx, case, fault, &[], true, tcp)
}

/// An idle (or blocked) client behind a failed path, judged by the
/// server's keep-alive; the client's response timeout is off when it blocks
/// (a blocking command waits for its reply as long as it blocks).
fn server_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    overrides: &[(&str, u64)],
    block: bool,
    tcp: TcpConfig,
) -> Result<Vec<CaseResult>> {
    let response_timeout = if block {
        Duration::ZERO
    } else {
        super::knobs::RedisConfig::of(&ctx.config).response_timeout
    };
    let plan = Plan {
        response_timeout,
        align_last_command: false,
        block,
        tcp,
        after: After::Idle,
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        overrides,
        plan,
        |_, s| {
            // Either side's keep-alive may be the one that ends the case.
            // A side without keep-alive never ends it (its kernel idle
            // default, hours, is no deadline).
            let d = [s, &tcp]
                .iter()
                .filter(|t| t.keepalive)
                .map(|t| {
                    keepalive_window(t, 0, None, FaultKind::Blackhole, "", spec)
                        .deadline_ms(quiet_ms(t))
                })
                .max()
                .unwrap_or(3000);
            (d, d)
        },
        |r| {
            let s = &r.server_tcp;
            let c = &r.ready.tcp;
            let to_client = (r.fault == FaultKind::BlackholeUp).then_some((s, r.server_idle));
            let to_server = (r.fault == FaultKind::BlackholeDown).then_some((c, r.client_idle));
            let client_exp = keepalive_window(
                c,
                r.client_idle,
                to_client,
                r.fault,
                "client (redis-rs: no keep-alive unless TcpSettings sets it)",
                spec,
            );
            let what = "keep-alive options on the server's socket";
            let server_exp = keepalive_window(s, r.server_idle, to_server, r.fault, "server (options read back from its socket)", spec).requiring(
                what,
                sockopts_text(&r.settings.keepalive()),
                "anet.c anetKeepAlive (Redis 7.0): TCP_KEEPIDLE K, TCP_KEEPINTVL max(K/3, 1), TCP_KEEPCNT 3",
                Level::Must,
            );
            (
                client_side(r, client_exp),
                Side::from_socket(
                    server_exp,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                )
                .with_fact(what, sockopts_text(s)),
            )
        },
    )
}

pub(crate) fn run_response_timeout(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let rt = super::knobs::RedisConfig::of(&ctx.config).response_timeout;
    let plan = Plan {
        response_timeout: rt,
        align_last_command: false,
        block: false,
        // Isolates the response timeout: no keep-alive of the client's own.
        tcp: TcpConfig {
            keepalive: false,
            ..super::knobs::RedisConfig::of(&ctx.config).tcp
        },
        after: After::Command(COMMAND_AFTER_MS),
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        &[("timeout", 0), ("tcp-keepalive", 0)],
        plan,
        |_, _| {
            let d = if rt.is_zero() {
                COMMAND_AFTER_MS + 5000
            } else {
                3 * (COMMAND_AFTER_MS + ms_of(rt) + 2)
            };
            (d, d)
        },
        |r| {
            let sent = r
                .end
                .command_sent
                .map(|t| rel_ms(r.t0, t).max(0) as u64)
                .unwrap_or(COMMAND_AFTER_MS);
            let client_exp = response_expectation(rt, r.fault, sent, spec);
            let server_exp = match r.fault {
                FaultKind::Freeze => Expectation::not_detected(
                    "redis-server is frozen (SIGSTOP): it closes nothing",
                    spec,
                ),
                f => keepalive_window(
                    &r.server_tcp,
                    r.server_idle,
                    None,
                    f,
                    "server (tcp-keepalive 0, timeout 0 for this case)",
                    spec,
                ),
            };
            (
                client_side(r, client_exp),
                Side::from_socket(
                    server_exp,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                ),
            )
        },
    )
}

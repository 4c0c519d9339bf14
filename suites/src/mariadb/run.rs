//! One MariaDB connection under a fault, both sides watched: the shared
//! server's lease, the mysql_async client thread, both sockets (sock_diag),
//! the options each side set on its socket, the deadlines.

use super::*;

pub(crate) struct Run {
    pub(crate) fault: FaultKind,
    pub(crate) t0: Instant,
    pub(crate) ready: Ready,
    pub(crate) end: ClientEnd,
    pub(crate) server_closed: Option<kaspec_harness::observe::SocketClosed>,
    pub(crate) client_closed: Option<kaspec_harness::observe::SocketClosed>,
    /// ms before t0 since each side last received a segment; since the last command was sent and its reply read.
    pub(crate) client_idle: u64,
    pub(crate) server_idle: u64,
    pub(crate) since_cmd: u64,
    pub(crate) since_reply: u64,
    /// The keep-alive options on the server's socket, read back.
    pub(crate) server_tcp: TcpConfig,
    pub(crate) settings: ServerSettings,
    pub(crate) client_deadline_ms: u64,
    pub(crate) server_deadline_ms: u64,
}

/// The client host's keep-alive sysctls for one case, restored on drop.
pub(crate) struct HostSysctls<'a> {
    host: &'a kaspec_harness::host::Host,
    old: Vec<(String, String)>,
}

impl<'a> HostSysctls<'a> {
    pub(crate) fn set(
        host: &'a kaspec_harness::host::Host,
        values: &[(&str, u64)],
    ) -> Result<HostSysctls<'a>> {
        let values: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (format!("/proc/sys/net/ipv4/{k}"), v.to_string()))
            .collect();
        let old = host.run(move || -> std::io::Result<Vec<(String, String)>> {
            let mut old = Vec::new();
            for (p, v) in &values {
                old.push((p.clone(), std::fs::read_to_string(p)?.trim().to_string()));
                std::fs::write(p, v)?;
            }
            Ok(old)
        })?;
        let old = old.map_err(|e| Error::io("setting the client host's keep-alive sysctls", e))?;
        Ok(HostSysctls { host, old })
    }
}

impl Drop for HostSysctls<'_> {
    fn drop(&mut self) {
        let old = std::mem::take(&mut self.old);
        let _ = self.host.run(move || {
            for (p, v) in &old {
                let _ = std::fs::write(p, v);
            }
        });
    }
}

/// How a case sets up its connection.
pub(crate) struct Setup {
    pub(crate) plan: Plan,
    /// The client host's tcp_keepalive_intvl / _probes for this case.
    pub(crate) client_probes: bool,
}

/// Runs one connection under `fault` on the shared server; `deadlines`
/// gives (client, server) deadlines in ms after t0, `judge` both sides.
pub(crate) fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    setup: Setup,
    deadlines: impl Fn(&ServerSettings, &TcpConfig) -> (u64, u64),
    judge: impl Fn(&Run) -> (Side, Side),
) -> Result<Vec<CaseResult>> {
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let program = server_program(ctx)?;
    let lease = ctx.shared.lease_in(
        &ctx.shared_bed("mariadb"),
        "mariadb",
        || ctx.testbed_for("mariadb"),
        |tb| start_server(tb, &ctx.fixtures, &[]),
    )?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let sysctls = if setup.client_probes {
        Some(HostSysctls::set(
            &tb.client,
            &[
                ("tcp_keepalive_intvl", CLIENT_PROBE_INTERVAL_S),
                ("tcp_keepalive_probes", CLIENT_PROBES),
            ],
        )?)
    } else {
        None
    };
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    } = start_client(tb, addr, lease.server().log_tail(10), setup.plan)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    let client_watch = SocketWatch::start(&tb.client, local, addr)?;
    let server_pid = lease.server().pid();
    let (server_tcp, server_opts) = crate::drive::sockopts::of_process(server_pid, addr, seen)?;
    let server_last_rx = last_recv_at(&tb.server, addr, seen)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the server's end of {local} <-> {addr}"
        ))
    })?;
    let (client_deadline_ms, server_deadline_ms) = deadlines(&settings, &server_tcp);
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(server_pid),
    )?;
    let t0 = applied.in_force_at;
    let _ = go_tx.send(t0 + Duration::from_millis(client_deadline_ms));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let client_closed = client_watch.wait(t0 + Duration::from_millis(client_deadline_ms))?;
    let release = crate::outcome::releases(tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    drop(sysctls);
    let r = Run {
        fault,
        t0,
        client_idle: rel_ms(ready.last_rx, t0).max(0) as u64,
        server_idle: rel_ms(server_last_rx, t0).max(0) as u64,
        since_cmd: rel_ms(ready.last_cmd, t0).max(0) as u64,
        since_reply: rel_ms(ready.last_reply, t0).max(0) as u64,
        ready,
        end,
        server_closed,
        client_closed,
        server_tcp,
        settings,
        client_deadline_ms,
        server_deadline_ms,
    };
    let (client, mut server_side) = judge(&r);
    // mariadbd's own word on why it ended the connection (--log-warnings=4).
    let tail = lease.server().log_tail(60);
    let mark = format!("Aborted connection {} ", r.ready.conn_id);
    if let Some(line) = tail.lines().rev().find(|l| l.contains(&mark)) {
        let reason = line
            .rsplit_once('(')
            .map(|(_, why)| why.trim_end_matches(')'))
            .unwrap_or(line)
            .to_string();
        server_side.error = Some(format!(
            "{}; mariadbd logged: {reason}",
            server_side.error.unwrap_or_default()
        ));
    }
    let mut timeline = vec![
        (
            r.ready.last_cmd,
            format!(
                "client sent its last SELECT 1 before the idle period (connection id {})",
                r.ready.conn_id
            ),
        ),
        (
            r.ready.last_reply,
            format!("client read its reply ({})", r.ready.anchor),
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
    if let Some(t) = r.end.query_sent {
        timeline.push((t, "client sent SELECT 1".to_string()));
    }
    if let (Some((t, _)), Some(what)) = (&r.end.query_end, r.end.query_text()) {
        timeline.push((*t, what));
    }
    for (c, whose) in [(&r.server_closed, "server"), (&r.client_closed, "client")] {
        if let Some(c) = c {
            timeline.push((c.at, format!("{whose} socket {}", c.state)));
        }
    }
    let mut config = ctx.config.effective("mariadb.");
    config.insert(
        "mariadb.socket".into(),
        crate::drive::sockopts::text(&r.ready.tcp),
    );
    config.insert("mariadb.session".into(), r.ready.session.clone());
    config.insert("server.socket".into(), server_opts);
    config.extend(r.settings.report());
    if setup.client_probes {
        config.insert("client.sysctl".into(), format!("net.ipv4.tcp_keepalive_intvl={CLIENT_PROBE_INTERVAL_S} net.ipv4.tcp_keepalive_probes={CLIENT_PROBES} (this case)"));
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
    let results = facts.both_sides(
        client_implementation(),
        server_implementation(&program),
        client,
        server_side,
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

/// The client's side when its detection is a failed query, not counted after its deadline.
fn query_side(r: &Run, expected: Expectation) -> Side {
    let (mut at, mut error) = r.end.failure();
    drive::client::not_after(
        &mut at,
        &mut error,
        r.t0 + Duration::from_millis(r.client_deadline_ms),
    );
    Side::library(expected, at, error, r.client_deadline_ms)
}

/// 1.5× a keep-alive death (or 3 s), the watch for a quiet side.
fn quiet_ms(t: &TcpConfig) -> u64 {
    let d = crate::model::tcp::keepalive_death(&TcpConfig {
        keepalive: true,
        ..*t
    });
    ((d.ms + d.slack_ms) * 3 / 2).max(3000)
}

/// The session of the keep-alive cases: wait_timeout out of the way.
pub(crate) fn long_wait_timeout() -> Vec<String> {
    vec!["SET SESSION wait_timeout = 3600".into()]
}

const QUERY_AFTER_CLOSE_MS: u64 = 1000;

pub(crate) fn run_wait_timeout(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    wait_timeout_with(ctx, case, fault, false)
}

pub(crate) fn run_pool(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    wait_timeout_with(ctx, case, fault, true)
}

/// A connection idle past the server's wait_timeout, then one query 1 s
/// after the close: on the `Conn` itself, or (`pooled`) on what the pool's
/// next checkout gives.
fn wait_timeout_with(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    pooled: bool,
) -> Result<Vec<CaseResult>> {
    let w = ServerSettings::load(&ctx.fixtures)?.wait_timeout;
    let plan = Plan {
        cfg: super::knobs::MariadbConfig::of(&ctx.config),
        session: Vec::new(),
        pooled,
        after: After::QueryAfterLast(ms_of(w) + QUERY_AFTER_CLOSE_MS),
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        Setup {
            plan,
            client_probes: false,
        },
        |s, _| {
            let d = ms_of(s.wait_timeout) + QUERY_AFTER_CLOSE_MS + 2000;
            (d, d)
        },
        |r| {
            let sent = r
                .end
                .query_sent
                .map(|t| rel_ms(r.t0, t).max(0) as u64)
                .unwrap_or(0);
            let server = match r.fault {
                FaultKind::Freeze => Expectation::not_detected(
                    "mariadbd is frozen (SIGSTOP): its read timeout cannot fire",
                    spec,
                ),
                f => {
                    // Whichever ends the server's socket first: the read timeout,
                    // or its own keep-alive (its first probe's RST on `reset`).
                    let wt = wait_timeout_expectation(
                        r.settings.wait_timeout,
                        r.since_cmd,
                        r.since_reply,
                        &format!("server (anchors: {})", r.ready.anchor),
                        spec,
                    );
                    let ka = keepalive_window(
                        &r.server_tcp,
                        r.server_idle,
                        None,
                        f,
                        "server (its keep-alive, options read back)",
                        spec,
                    );
                    if ka.expects_detection() && ka.min_ms < wt.min_ms {
                        ka
                    } else {
                        wt
                    }
                }
            };
            let client = if pooled {
                let idle = r
                    .end
                    .query_sent
                    .map(|t| (t - r.ready.last_reply).as_millis() as u64)
                    .unwrap_or(0);
                let next = match (r.end.conn_after, &r.end.query_end) {
                    (Some(id), _) if id == r.ready.conn_id => "the idle one",
                    (Some(_), _) => "a new one",
                    _ => "none",
                };
                query_side(r, pool_checkout(r.ready.ttl, idle, r.fault, sent, spec))
                    .with_fact(POOL_NEXT, next)
            } else {
                query_side(r, query_on_closed(r.fault, sent, spec))
            };
            (
                client,
                Side::from_socket(
                    server,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                )
                .with_fact("session", r.ready.session.clone()),
            )
        },
    )
}

pub(crate) fn run_query_in_flight(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let plan = Plan {
        cfg: super::knobs::MariadbConfig::of(&ctx.config),
        session: long_wait_timeout(),
        pooled: false,
        after: After::QueryAfterGo(500),
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        Setup {
            plan,
            client_probes: false,
        },
        |_, s| {
            let d = keepalive_window(s, 0, None, FaultKind::Blackhole, "", spec)
                .deadline_ms(quiet_ms(s));
            (d, d)
        },
        |r| {
            let sent = r
                .end
                .query_sent
                .map(|t| rel_ms(r.t0, t).max(0) as u64)
                .unwrap_or(0);
            let client = crate::model::tcp::send_expectation(&r.ready.tcp, r.fault, sent, None);
            let server = match r.fault {
                FaultKind::Freeze => Expectation::not_detected("mariadbd is frozen; its kernel acknowledges the query and answers nothing else", spec),
                f => keepalive_window(&r.server_tcp, r.server_idle, None, f, "server (the query never arrives: idle)", spec),
            };
            (
                query_side(r, client),
                Side::from_socket(
                    server,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                ),
            )
        },
    )
}

/// An idle connection under `fault`, both sides judged by their keep-alive;
/// `client_keepalive` false takes the client's keep-alive off for the case.
fn idle_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    client_keepalive: bool,
) -> Result<Vec<CaseResult>> {
    let mut cfg = super::knobs::MariadbConfig::of(&ctx.config);
    if !client_keepalive {
        cfg.tcp_keepalive = Duration::ZERO;
    }
    let client_ka = TcpConfig {
        keepalive: !cfg.tcp_keepalive.is_zero(),
        idle: Duration::from_secs(cfg.tcp_keepalive.as_secs().max(1)),
        interval: Duration::from_secs(CLIENT_PROBE_INTERVAL_S),
        count: CLIENT_PROBES as u32,
        user_timeout: Duration::ZERO,
    };
    let plan = Plan {
        cfg,
        session: long_wait_timeout(),
        pooled: false,
        after: if client_keepalive {
            After::QueryWhenDead
        } else {
            After::Idle
        },
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        Setup {
            plan,
            client_probes: client_keepalive,
        },
        |_, s| {
            let q = quiet_ms(s).max(quiet_ms(&client_ka));
            let d = |t: &TcpConfig| {
                keepalive_window(t, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q)
            };
            (d(&client_ka), d(s))
        },
        |r| {
            let (c, s) = keepalive_sides(
                &r.ready.tcp,
                r.client_idle,
                &r.server_tcp,
                r.server_idle,
                r.fault,
                spec,
            );
            let error = r.client_closed.as_ref().map(|cl| {
                format!(
                    "client socket left ESTABLISHED: {}; {}",
                    cl.state,
                    r.end
                        .query_text()
                        .unwrap_or_else(|| "no query after it".into())
                )
            });
            (
                Side::observed(c, r.client_closed.as_ref(), error, r.client_deadline_ms)
                    .with_fact("client socket", crate::drive::sockopts::text(&r.ready.tcp)),
                Side::from_socket(s, r.server_closed.clone(), r.server_deadline_ms, "server")
                    .with_fact("server socket", crate::drive::sockopts::text(&r.server_tcp)),
            )
        },
    )
}

pub(crate) fn run_server_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    idle_keepalive(ctx, case, fault, false)
}

pub(crate) fn run_client_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    idle_keepalive(ctx, case, fault, true)
}

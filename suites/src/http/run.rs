//! How each case runs, once per server: a fresh testbed, the server, a
//! reqwest client in the client host, both ends of the pooled connection
//! watched (sock_diag), the fault, the judge.

use super::*;

/// A server and a reqwest client talking to it, the first request done.
pub(crate) struct Setup {
    pub(crate) tb: Testbed,
    pub(crate) srv: Running,
    pub(crate) driver: Driver,
    /// The first request's connection: the client's end, what the server sees.
    pub(crate) local: SocketAddrV4,
    pub(crate) seen: SocketAddrV4,
    /// reqwest's socket options, read back; the client's last data received.
    pub(crate) tcp: TcpConfig,
    pub(crate) anchor: Instant,
}

/// On a fresh testbed of its own (on the docker testbed: the container of
/// `kind.service(idle)`).
pub(crate) fn setup(
    ctx: &Ctx,
    kind: HttpServer,
    idle: Idle,
    h2: bool,
    c: HttpConfig,
) -> Result<Setup> {
    setup_on(ctx, ctx.testbed_for(kind.service(idle))?, kind, idle, h2, c)
}

pub(crate) fn setup_on(
    ctx: &Ctx,
    tb: Testbed,
    kind: HttpServer,
    idle: Idle,
    h2: bool,
    c: HttpConfig,
) -> Result<Setup> {
    let srv = start(ctx, &tb, kind, idle, h2)?;
    let driver = Driver::start(&tb, c, h2, srv.addr)?;
    let a = driver.get(None, Duration::from_secs(5))?;
    let port = a.result.clone().map_err(|e| {
        Error::Other(format!(
            "the first request to {} at {} failed: {e}",
            srv.implementation.name, srv.addr
        ))
    })?;
    let (tcp, anchor) = a.sock.ok_or_else(|| {
        Error::Other(format!(
            "no socket with local port {port} towards {}",
            srv.addr
        ))
    })?;
    let local = SocketAddrV4::new(tb.client.addr, port);
    let seen = tb.seen_by_server(local);
    Ok(Setup {
        tb,
        srv,
        driver,
        local,
        seen,
        tcp,
        anchor,
    })
}

/// The run's configuration as reported: `http.*`, the socket read back, the server's S.
pub(crate) fn config_of(
    ctx: &Ctx,
    s: &Setup,
    c: &HttpConfig,
) -> std::collections::BTreeMap<String, String> {
    let mut config = ctx.config.effective("http.");
    config.insert(
        "http.pool_idle_timeout".into(),
        format!("{}ms", ms_of(c.pool_idle_timeout)),
    );
    config.insert("http.socket".into(), crate::drive::sockopts::text(&s.tcp));
    config.extend(s.srv.report());
    config
}

/// `fault` on the router for the setup's connection (none: no rule, the
/// engine and commit time still reported).
pub(crate) fn apply(s: &Setup, fault: FaultKind) -> Result<kaspec_harness::fault::AppliedFault> {
    s.tb.apply_fault(
        fault,
        &Flow {
            client: s.local,
            server: s.srv.addr,
        },
        Some(s.srv.pid()),
    )
}

/// The server's side when it keeps the connection (`[long]`) and has no
/// keep-alive of its own.
pub(crate) fn quiet_server(
    s: &Setup,
    closed: Option<kaspec_harness::observe::SocketClosed>,
    deadline_ms: u64,
    spec: &str,
) -> Side {
    Side::from_socket(
        Expectation::not_detected(
            format!(
                "server: idle timeout [long] {} ms and no keep-alive of its own: nothing to notice",
                ms_of(s.srv.idle_timeout)
            ),
            spec,
        ),
        closed,
        deadline_ms,
        "server",
    )
}

/// A request's failure as the client's detection (none after its deadline;
/// a request kaspec abandoned is no detection).
pub(crate) fn request_failure(b: &Got, deadline: Instant) -> (Option<Instant>, Option<String>) {
    let (mut at, mut error) = match &b.result {
        Err(e) if e != NOT_ENDED => (Some(b.done), Some(e.clone())),
        _ => (None, None),
    };
    drive::client::not_after(&mut at, &mut error, deadline);
    (at, error)
}

/// The run's facts for a fault applied on the router (or none).
#[allow(clippy::too_many_arguments)]
pub(crate) fn facts<'a>(
    ctx: &Ctx,
    case: &'a CaseDef,
    fault: FaultKind,
    applied: &kaspec_harness::fault::AppliedFault,
    s: &Setup,
    c: &HttpConfig,
    t0: Instant,
    timeline: Vec<(Instant, String)>,
    release: crate::outcome::Releases,
) -> RunFacts<'a> {
    RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(applied),
        config: config_of(ctx, s, c),
        t0,
        timeline,
        release,
    }
}

/// Both sides judged: reqwest against this setup's server.
pub(crate) fn both(
    ctx: &Ctx,
    f: RunFacts<'_>,
    s: &Setup,
    client: Side,
    server: Side,
) -> Result<Vec<CaseResult>> {
    f.both_sides(
        client_implementation(),
        s.srv.implementation.clone(),
        client,
        server,
        &ctx.judging(),
    )
}

pub(crate) fn outcome_text(got: &Got, first_port: u16) -> String {
    match &got.result {
        Ok(p) if *p == first_port => "succeeds on the same connection".into(),
        Ok(p) => format!("succeeds on a new connection (port {p})"),
        Err(e) => format!("fails: {e}"),
    }
}

pub(crate) fn run_idle(ctx: &Ctx, case: &CaseDef, _: FaultKind) -> Result<Vec<CaseResult>> {
    idle_case(ctx, case, false)
}

pub(crate) fn run_goaway(ctx: &Ctx, case: &CaseDef, _: FaultKind) -> Result<Vec<CaseResult>> {
    idle_case(ctx, case, true)
}

/// The server's idle close, both ends watched, then the next request.
fn idle_case(ctx: &Ctx, case: &CaseDef, h2: bool) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for kind in SERVERS {
        let c = HttpConfig {
            // The pool keeps the connection: only the server closes it.
            pool_idle_timeout: Duration::ZERO,
            ..HttpConfig::of(&ctx.config)
        };
        let s = setup(ctx, kind, Idle::Fixture, h2, c)?;
        let sw = SocketWatch::start(&s.tb.server, s.srv.addr, s.seen)?;
        let cw = SocketWatch::start(&s.tb.client, s.local, s.srv.addr)?;
        let applied = apply(&s, FaultKind::None)?;
        let sms = ms_of(s.srv.idle_timeout);
        let deadline_ms = sms + 2000;
        let server_closed = sw.wait(s.anchor + Duration::from_millis(deadline_ms))?;
        let client_closed = cw.wait(s.anchor + Duration::from_millis(deadline_ms))?;
        let next = s.driver.get(
            Some(s.anchor + Duration::from_millis(sms + 500)),
            Duration::from_secs(5),
        )?;
        let release = crate::outcome::releases(&s.tb, s.local, s.srv.addr);
        let no_idle = h2 && kind == HttpServer::Hyper;
        let exp = |who: &str| {
            if no_idle {
                Expectation::not_detected(
                    format!("{who}: hyper 1.x's HTTP/2 server has no idle timeout (server::conn::http2::Builder: keep-alive PINGs only): the connection stays"),
                    case.spec,
                )
            } else {
                close_expectation(&s.srv, who, case.spec)
            }
        };
        let what = "the next request (S + 500 ms after the response)";
        let next_fact = if next.result.is_ok() {
            "succeeds".to_string()
        } else {
            outcome_text(&next, 0)
        };
        let client_exp =
            exp("client (hyper reads the server's FIN and drops the pooled connection)").requiring(
                what,
                "succeeds",
                "RFC 9112 §9.3 (a closed connection is not reused); RFC 9113 §6.8",
                Level::Must,
            );
        let port = s.local.port();
        let timeline = vec![
            (
                s.anchor,
                format!("client's last data received (TCP_INFO): the response, on port {port}"),
            ),
            (
                next.sent,
                format!("the next request sent; it {}", outcome_text(&next, port)),
            ),
        ];
        let c_closed_err = client_closed
            .as_ref()
            .map(|x| format!("client socket left CLOSE_WAIT/ESTABLISHED: {}", x.state));
        let client = Side::observed(
            client_exp,
            client_closed.as_ref(),
            c_closed_err,
            deadline_ms,
        )
        .with_fact(what, next_fact);
        let server = Side::from_socket(exp("server"), server_closed, deadline_ms, "server");
        let f = facts(
            ctx,
            case,
            FaultKind::None,
            &applied,
            &s,
            &c,
            s.anchor,
            timeline,
            release,
        );
        out.extend(both(ctx, f, &s, client, server)?);
    }
    Ok(out)
}

/// One request of the reuse race.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The grid offset d (ms from S) and the idle time it was sent at (ms after the previous response).
    pub offset_ms: i64,
    pub idle_ms: i64,
    pub outcome: String,
    pub failed: bool,
    pub done: Instant,
    /// hyper-util's retries of it (a reused connection gave it back unsent).
    pub retried: u64,
}

pub(crate) fn run_race(ctx: &Ctx, case: &CaseDef, _: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let c = HttpConfig::of(&ctx.config);
    let span = ms_of(c.race_span) as i64;
    let step = ms_of(c.race_step).max(1) as i64;
    let grid: Vec<i64> = (0..)
        .map(|i| -span + i * step)
        .take_while(|d| *d <= span)
        .collect();
    for kind in SERVERS {
        let s = setup(ctx, kind, Idle::Fixture, false, c)?;
        let applied = apply(&s, FaultKind::None)?;
        let sms = ms_of(s.srv.idle_timeout);
        let t0 = Instant::now();
        let mut trials = Vec::new();
        let mut prev: Option<(Instant, u16)> = Some((s.anchor, s.local.port()));
        for _ in 0..c.race_rounds {
            for d in &grid {
                // A fresh response to count from (it may itself reuse the
                // previous trial's connection, a moment after its response).
                let (anchor, port) = match prev.take() {
                    Some(p) => p,
                    None => {
                        let a = s.driver.get(None, Duration::from_secs(5))?;
                        match (&a.result, a.sock) {
                            (Ok(p), Some((_, at))) => (at, *p),
                            _ => {
                                trials.push(Trial {
                                    offset_ms: 0,
                                    idle_ms: 0,
                                    outcome: outcome_text(&a, 0),
                                    failed: true,
                                    done: a.done,
                                    retried: a.retried,
                                });
                                continue;
                            }
                        }
                    }
                };
                let at = if *d >= 0 {
                    anchor + Duration::from_millis(sms + *d as u64)
                } else {
                    anchor + Duration::from_millis(sms - (-*d) as u64)
                };
                let b = s.driver.get(Some(at), Duration::from_secs(5))?;
                trials.push(Trial {
                    offset_ms: *d,
                    idle_ms: rel_ms(anchor, b.sent),
                    outcome: outcome_text(&b, port),
                    failed: b.result.is_err(),
                    done: b.done,
                    retried: b.retried,
                });
            }
        }
        let rtt = ms_of(ctx.network.rtt) + 1;
        let (expected, window) = race_expectation(&c, sms, rtt, case.spec);
        let inside = |t: &Trial| {
            window.is_some_and(|(lo, hi)| t.idle_ms >= lo as i64 && t.idle_ms <= hi as i64)
        };
        let outside: Vec<&Trial> = trials.iter().filter(|t| t.failed && !inside(t)).collect();
        let failed_in = trials.iter().filter(|t| t.failed && inside(t)).count();
        let detected_at = outside.first().map(|t| t.done);
        let error = (!outside.is_empty()).then(|| {
            format!(
                "{} request(s) failed outside the window, first at idle {} ms: {}",
                outside.len(),
                outside[0].idle_ms,
                outside[0].outcome
            )
        });
        let deadline_ms = rel_ms(t0, Instant::now()).max(0) as u64 + 1;
        let mut race_config = vec![("race.points".to_string(), race_points(&grid, &trials))];
        // Exposed: sent at an idle time from the close window's start on
        // (S − J − 1 ms), and it went out on the pooled connection (or failed).
        let (lo, _, _) = close_bounds(sms);
        let exposed = trials
            .iter()
            .filter(|t| t.idle_ms >= lo as i64 && (t.failed || t.outcome.contains("same")))
            .count();
        race_config.push(("race.exposed".into(), exposed.to_string()));
        let side = Side::library(expected, detected_at, error, deadline_ms)
            .with_fact("requests failed inside the window", failed_in.to_string())
            .with_fact("requests", trials.len().to_string())
            .with_fact(
                "requests hyper-util retried",
                trials.iter().filter(|t| t.retried > 0).count().to_string(),
            );
        let timeline = trials
            .iter()
            .filter(|t| t.failed)
            .map(|t| {
                (
                    t.done,
                    format!(
                        "request at S{:+} ms (idle {} ms) {}",
                        t.offset_ms, t.idle_ms, t.outcome
                    ),
                )
            })
            .collect();
        let mut f = facts(
            ctx,
            case,
            FaultKind::None,
            &applied,
            &s,
            &c,
            t0,
            timeline,
            Default::default(),
        );
        for (k, v) in race_config {
            f.config.insert(k, v);
        }
        let mut r = f.client_only(
            client_implementation(),
            s.srv.implementation.clone(),
            side,
            &ctx.judging(),
        )?;
        for x in &mut r {
            x.curve = Some(race_curve(&grid, &trials, sms));
        }
        out.extend(r);
    }
    Ok(out)
}

/// Per grid point: requests, failures, reused, new connections.
fn race_points(grid: &[i64], trials: &[Trial]) -> String {
    grid.iter()
        .map(|d| {
            let at: Vec<&Trial> = trials.iter().filter(|t| t.offset_ms == *d).collect();
            let failed = at.iter().filter(|t| t.failed).count();
            let reused = at.iter().filter(|t| t.outcome.contains("same")).count();
            let retried = at.iter().filter(|t| t.retried > 0).count();
            let kinds: Vec<&str> = at
                .iter()
                .filter(|t| t.failed)
                .map(|t| t.outcome.as_str())
                .collect();
            format!(
                "S{d:+}ms: {failed}/{} failed, {reused} reused, {retried} retried{}",
                at.len(),
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join("; "))
                }
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn race_curve(grid: &[i64], trials: &[Trial], s_ms: u64) -> kaspec_harness::report::curve::Curve {
    // Shaded: the server's close window, where a failure is allowed.
    let (lo, hi, _) = close_bounds(s_ms);
    let groups: Vec<(i64, Vec<&Trial>)> = grid
        .iter()
        .map(|d| {
            let at = trials.iter().filter(|t| t.offset_ms == *d).collect();
            (s_ms as i64 + d, at)
        })
        .collect();
    kaspec_harness::report::curve::Curve::of_shares(
        format!("reuse race around S = {s_ms} ms (shaded: the server's close window)"),
        "idle time at the request (ms after the last response)",
        &[
            ("failed", &|t: &Trial| t.failed),
            ("reused the pooled connection", &|t: &Trial| {
                t.outcome.contains("same")
            }),
            ("retried by hyper-util", &|t: &Trial| t.retried > 0),
        ],
        &groups,
        Some((lo as i64, hi as i64)),
    )
}

pub(crate) fn run_dead_pooled(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let c = HttpConfig::of(&ctx.config);
    for kind in SERVERS {
        let s = setup(ctx, kind, Idle::Long, false, c)?;
        let sw = SocketWatch::start(&s.tb.server, s.srv.addr, s.seen)?;
        let nominal = dead_expectation(&c, &s.tcp, fault, REQUEST_AFTER_MS, case.spec);
        let deadline_ms = nominal.deadline_ms(REQUEST_AFTER_MS + 5000);
        let applied = apply(&s, fault)?;
        let t0 = applied.in_force_at;
        let b = s.driver.get(
            Some(t0 + Duration::from_millis(REQUEST_AFTER_MS)),
            Duration::from_millis(deadline_ms - REQUEST_AFTER_MS),
        )?;
        let server_closed = sw.wait(Instant::now())?;
        let release = crate::outcome::releases(&s.tb, s.local, s.srv.addr);
        let sent_ms = rel_ms(t0, b.sent).max(0) as u64;
        let expected = dead_expectation(&c, &s.tcp, fault, sent_ms, case.spec);
        let (at, error) = request_failure(&b, t0 + Duration::from_millis(deadline_ms));
        let client = Side::library(expected, at, error, deadline_ms);
        let server = quiet_server(&s, server_closed, deadline_ms, case.spec);
        let timeline = vec![
            (
                s.anchor,
                "client's last data received (TCP_INFO): the first response".to_string(),
            ),
            (
                b.sent,
                "the next request sent on the pooled connection".to_string(),
            ),
        ];
        let f = facts(ctx, case, fault, &applied, &s, &c, t0, timeline, release);
        out.extend(both(ctx, f, &s, client, server)?);
    }
    Ok(out)
}

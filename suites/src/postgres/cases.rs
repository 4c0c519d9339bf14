//! What each PostgreSQL case does with one connection, and both sides'
//! windows from the client's and the server's settings.

use super::*;

pub(crate) fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    if let Some(adapter) = &ctx.client {
        return super::external::run_idle_external(ctx, case, fault, adapter);
    }
    idle_with(
        ctx,
        case,
        fault,
        super::knobs::PostgresConfig::of(&ctx.config),
    )
}

/// An idle connection with the client's knobs `client` under `fault`; each
/// side is watched 3× its own keep-alive window (a side with keep-alive off
/// as long as a quiet side).
pub(crate) fn idle_with(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    client: PostgresConfig,
) -> Result<Vec<CaseResult>> {
    let c = client.tcp();
    let plan = Plan {
        client,
        session: session_without_idle_timeout(),
        after: After::Idle,
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let death = |t: &TcpConfig| {
                if t.keepalive {
                    crate::model::tcp::keepalive_death(t).ms
                } else {
                    0
                }
            };
            if let Some(w) = impaired_deadline(
                ctx,
                fault,
                Duration::from_millis(death(&c).max(death(&s.tcp))),
            ) {
                return (w, w);
            }
            let q = quiet_ms(&c, &s.tcp);
            (
                keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q),
                keepalive_window(&s.tcp, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q),
            )
        },
        |r| idle_outcome(ctx, &c, &r.settings.tcp, r, spec),
    )
}

/// Both sides of an idle connection under a fault.
pub(crate) fn idle_outcome(
    ctx: &Ctx,
    c: &TcpConfig,
    s: &TcpConfig,
    r: &Run,
    spec: &str,
) -> Outcome {
    let fault = r.fault;
    let (client_exp, server_exp) = if let Some(i) = ctx.impairment(fault) {
        (
            crate::model::tcp::keepalive_on_impaired_path(c, &i, "client", spec),
            crate::model::tcp::keepalive_on_impaired_path(s, &i, "server", spec),
        )
    } else if fault == FaultKind::ClientStall {
        (
            keepalive_window(c, r.client_idle, None, fault, "client", spec),
            stalled_client(s, "server", r.server_deadline_ms, spec),
        )
    } else if fault == FaultKind::Freeze {
        (
            Expectation::not_detected("the frozen backend's kernel still answers keep-alive probes: TCP keep-alive cannot detect a hung backend", spec),
            Expectation::not_detected("the backend is frozen; its kernel and the client's keep talking", spec),
        )
    } else {
        // Whose abort RST can pass: blackhole-up leaves server -> client open, blackhole-down client -> server.
        let to_client = (fault == FaultKind::BlackholeUp).then_some((s, r.server_idle));
        let to_server = (fault == FaultKind::BlackholeDown).then_some((c, r.client_idle));
        (
            keepalive_window(c, r.client_idle, to_client, fault, "client", spec),
            keepalive_window(s, r.server_idle, to_server, fault, "server", spec),
        )
    };
    Outcome {
        client: Side::library(
            client_exp,
            r.end.failed_at,
            r.end.error.clone(),
            r.client_deadline_ms,
        ),
        server: Side::from_socket(
            server_exp,
            r.server_closed.clone(),
            r.server_deadline_ms,
            "server",
        ),
    }
}

/// A server side whose client application stalled (fault `client-stall`):
/// the client's kernel stays up and answers every keep-alive probe (Linux
/// tcp_keepalive_timer counts from the last segment received, and the
/// probe's ACK is one: `keepalive_time_elapsed` restarts), so TCP
/// keep-alive cannot tell a stalled application from an idle one. The
/// server MUST NOT close the connection by the horizon (`deadline_ms`,
/// three times the window in which it reaps a crashed client).
pub(crate) fn stalled_client(
    s: &TcpConfig,
    who: &str,
    deadline_ms: u64,
    spec: &str,
) -> Expectation {
    let d = crate::model::tcp::keepalive_death(s);
    Expectation::not_detected(
        format!(
            "{who}: the stalled client's kernel answers each keep-alive probe, so the connection never reaches {} (the window of a dead client): not detected in {deadline_ms} ms",
            d.formula
        ),
        format!("{spec}; RFC 1122 §4.2.3.6"),
    )
}

pub(crate) fn run_server_keepalive(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    idle_with(
        ctx,
        case,
        fault,
        PostgresConfig {
            keepalives: false,
            ..super::knobs::PostgresConfig::of(&ctx.config)
        },
    )
}

pub(crate) fn run_query_in_flight(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    query_unacknowledged(ctx, case, fault, After::Query("SELECT 1".into()))
}

/// Case `busy`: a query every 100 ms until the path fails between two.
pub(crate) fn run_busy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    query_unacknowledged(ctx, case, fault, After::Busy("SELECT 1".into()))
}

/// A query the dead path swallows (`after`: sent at t0, or the next of a
/// busy client's, 40 ms after t0): the client is judged by
/// TCP_USER_TIMEOUT from it, its socket's RTO state read just before it;
/// the backend, which never gets it, by its keep-alive.
fn query_unacknowledged(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    after: After,
) -> Result<Vec<CaseResult>> {
    let client = super::knobs::PostgresConfig::of(&ctx.config);
    let c = client.tcp();
    // A busy backend answered every query before t0 and its answer was
    // acknowledged (the fault falls after the client's delayed ACK).
    let server_note = match after {
        After::Busy(_) => "server (idle between queries, nothing unacknowledged)",
        _ => "server (the query never arrives: idle)",
    };
    let plan = Plan {
        client,
        session: session_without_idle_timeout(),
        after,
    };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let q = quiet_ms(&c, &s.tcp);
            let cl = crate::model::tcp::send_expectation(&c, FaultKind::Blackhole, 0, None)
                .deadline_ms(q);
            (
                cl,
                keepalive_window(&s.tcp, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q),
            )
        },
        |r| {
            let s = &r.settings.tcp;
            let sent = r
                .end
                .query_sent
                .map(|t| rel_ms(r.t0, t).max(0) as u64)
                .unwrap_or(0);
            let e = crate::model::tcp::send_expectation(&c, r.fault, sent, r.end.retrans.as_ref());
            let client_exp = Expectation {
                formula: format!("the query is unacknowledged, so keep-alive does not probe (Linux tcp_keepalive_timer: packets_out → re-arm): {}", e.formula),
                ..e
            };
            let server_exp = match r.fault {
                FaultKind::Freeze => Expectation::not_detected(
                    "the backend is frozen; its kernel acknowledges the query",
                    spec,
                ),
                // The query never arrives: the backend's connection is idle, its keep-alive probes die.
                f => keepalive_window(s, r.server_idle, None, f, server_note, spec),
            };
            let mut error = r.end.error.clone();
            if let (Some(e), Some((_, q))) = (&mut error, &r.end.query_end) {
                e.push_str(&format!("; the query: {q}"));
            }
            Outcome {
                client: Side::library(client_exp, r.end.failed_at, error, r.client_deadline_ms),
                server: Side::from_socket(
                    server_exp,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                ),
            }
        },
    )
}

pub(crate) fn run_idle_session_timeout(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let client = super::knobs::PostgresConfig::of(&ctx.config);
    let plan = Plan {
        client,
        session: Vec::new(),
        after: After::Idle,
    };
    let spec = case.spec;
    let expect = |t: Duration, idle: u64, who: &str| {
        let t = ms_of(t);
        if t == 0 {
            return Expectation::not_detected(
                "idle_session_timeout = 0: off, idle sessions are never ended",
                spec,
            );
        }
        // The backend arms a µs-precise setitimer when it sends
        // ReadyForQuery (postgres.c, `enable_timeout_after(IDLE_SESSION_TIMEOUT,
        // IdleSessionTimeout)` before ReadCommand); the anchor is the client's
        // TCP_INFO `last_data_recv`, counted in jiffies: ± one jiffy J. A CI
        // run saw 1198 ms against a 1195 ms point with J = 4 ms.
        let d = t.saturating_sub(idle);
        let j = crate::model::linux::jiffy_ms();
        Expectation::window(
            d.saturating_sub(j),
            d + j,
            format!("{who}: the backend arms idle_session_timeout T when it sends ReadyForQuery (the client's last segment received): T − idle = {t} − {idle} = {d} ms, ± J = {j} ms (jiffy-grained idle)"),
            spec,
            Level::Must,
        )
    };
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let e = expect(s.idle_session_timeout, 0, "");
            let d = e.deadline_ms(
                quiet_ms(&super::knobs::PostgresConfig::of(&ctx.config).tcp(), &s.tcp).min(10_000),
            );
            (d, d)
        },
        |r| {
            let t = r.settings.idle_session_timeout;
            let c = expect(t, r.client_idle, "client (FATAL 57P05, then the close)");
            let s = expect(t, r.client_idle, "server (the backend closes its socket)");
            Outcome {
                client: Side::library(
                    c,
                    r.end.failed_at,
                    r.end.error.clone(),
                    r.client_deadline_ms,
                ),
                server: Side::from_socket(
                    s,
                    r.server_closed.clone(),
                    r.server_deadline_ms,
                    "server",
                ),
            }
        },
    )
}

pub(crate) fn run_check_interval(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let client = super::knobs::PostgresConfig::of(&ctx.config);
    let c = client.tcp();
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let spec = case.spec;
    let backend_deadline = |s: &ServerSettings| {
        let (_, hi, _) = death_after_idle(&s.tcp, 0);
        let q = quiet_ms(&c, &s.tcp);
        (3 * (hi + ms_of(s.check_interval))).max(q)
    };
    // Longer than anything the case waits for: only a cancellation ends it early.
    let sleep_s = backend_deadline(&settings).max(
        keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec)
            .deadline_ms(quiet_ms(&c, &settings.tcp)),
    ) / 1000
        + 10;
    let plan = Plan {
        client,
        session: session_without_idle_timeout(),
        after: After::Running(format!("SELECT pg_sleep({sleep_s})")),
    };
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Backend,
        |s| {
            let q = quiet_ms(&c, &s.tcp);
            (
                keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q),
                backend_deadline(s),
            )
        },
        |r| {
            let s = &r.settings;
            let to_client = (r.fault == FaultKind::BlackholeUp).then_some((&s.tcp, r.server_idle));
            let to_server = (r.fault == FaultKind::BlackholeDown).then_some((&c, r.client_idle));
            let client_exp = keepalive_window(
                &c,
                r.client_idle,
                to_client,
                r.fault,
                "client (waiting for the query's result)",
                spec,
            );
            let socket = keepalive_window(
                &s.tcp,
                r.server_idle,
                to_server,
                r.fault,
                "server socket",
                spec,
            );
            let k = ms_of(s.check_interval);
            let server_exp = match (socket.min_ms, socket.max_ms) {
                // The check polls the socket (EPOLLRDHUP): a stalled client's
                // socket is healthy, and its kernel answers the keep-alive.
                _ if r.fault == FaultKind::ClientStall => stalled_client(
                    &s.tcp,
                    "the backend (its socket never dies, so no check fails)",
                    r.server_deadline_ms,
                    spec,
                ),
                (Some(lo), Some(hi)) if k > 0 => Expectation::window(
                    lo,
                    hi + k,
                    format!("the backend notices at its next check after its socket died (EPOLLRDHUP), within client_connection_check_interval {k} ms: [{lo}, {hi} + {k}] ms; {}", socket.formula),
                    spec,
                    Level::Must,
                ),
                _ if k == 0 => Expectation::not_detected(
                    "client_connection_check_interval = 0: the backend never checks while a query runs; it runs to the end of pg_sleep",
                    spec,
                ),
                _ => Expectation::not_detected(format!("the backend's socket does not die: {}", socket.formula), spec),
            };
            let socket_ms = r.server_closed.as_ref().map(|c| rel_ms(r.t0, c.at));
            let backend_ms = r.backend_end.map(|t| rel_ms(r.t0, t));
            let what = format!(
                "server socket {} at {}; backend {} exited at {}",
                r.server_closed
                    .as_ref()
                    .map(|c| c.state.as_str())
                    .unwrap_or("still open"),
                socket_ms
                    .map(|v| format!("+{v} ms"))
                    .unwrap_or_else(|| "—".into()),
                r.ready.backend_pid,
                backend_ms
                    .map(|v| format!("+{v} ms"))
                    .unwrap_or_else(|| "—".into()),
            );
            let mut error = r.end.error.clone();
            if let (Some(e), Some((_, qe))) = (&mut error, &r.end.query_end) {
                e.push_str(&format!("; the query: {qe}"));
            }
            Outcome {
                client: Side::library(client_exp, r.end.failed_at, error, r.client_deadline_ms),
                server: Side::library(server_exp, r.backend_end, Some(what), r.server_deadline_ms),
            }
        },
    )
}

//! One NATS connection under a fault, both sides watched: nats-server
//! started for the case, the async-nats client thread, the server's socket
//! (sock_diag), each side's last data read (read back right after the fault
//! is in force, when nothing more can arrive), the deadlines.

use super::*;

pub(crate) struct Run {
    pub(crate) fault: FaultKind,
    pub(crate) t0: Instant,
    pub(crate) end: ClientEnd,
    pub(crate) server_closed: Option<kaspec_harness::observe::SocketClosed>,
    /// ms before t0 since each side last read data.
    pub(crate) client_idle: u64,
    pub(crate) server_idle: u64,
    pub(crate) settings: ServerSettings,
    pub(crate) client_deadline_ms: u64,
    pub(crate) server_deadline_ms: u64,
}

/// Runs one connection under `fault`; the server's ping_interval is the
/// fixture's unless `server_ping`, the client's `client_ping`.
#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    server_ping: Option<Duration>,
    client_ping: Duration,
    deadlines: impl Fn(&ServerSettings) -> (u64, u64),
    judge: impl Fn(&Run) -> (Side, Side),
) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for(service(server_ping))?;
    let server = start_server(ctx, &tb, server_ping)?;
    let addr = server.addr;
    // Past the server's first (RTT) PING, and its steady pinging if it pings.
    let settle = Duration::from_millis(settle_ms(&server.settings, server_ping.is_none()));
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    } = start_client(&tb, &server, client_ping, settle)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local_port);
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    let (client_deadline_ms, server_deadline_ms) = deadlines(&server.settings);
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(server.pid()),
    )?;
    let t0 = applied.in_force_at;
    let server_last = last_data_recv_at(&tb.server, addr, seen)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the server's end of {local} <-> {addr}"
        ))
    })?;
    let client_last = last_data_recv_at(&tb.client, local, addr)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the client's end of {local} <-> {addr}"
        ))
    })?;
    let _ = go_tx.send(t0 + Duration::from_millis(client_deadline_ms));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    // Read again at the end: data the client read after t0 (it resets
    // async-nats's interval) shows here.
    let client_last_end = last_data_recv_at(&tb.client, local, addr).ok().flatten();
    let release = crate::outcome::releases(&tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let r = Run {
        fault,
        t0,
        end,
        server_closed,
        client_idle: rel_ms(client_last, t0).max(0) as u64,
        server_idle: rel_ms(server_last, t0).max(0) as u64,
        settings: server.settings,
        client_deadline_ms,
        server_deadline_ms,
    };
    let (client, server_side) = judge(&r);
    let mut timeline = vec![
        (
            client_last,
            "client's last data received (TCP_INFO tcpi_last_data_recv)".to_string(),
        ),
        (
            server_last,
            "server's last data received (TCP_INFO tcpi_last_data_recv)".to_string(),
        ),
    ];
    if let Some(t) = client_last_end.filter(|t| *t > client_last + Duration::from_millis(1)) {
        timeline.push((
            t,
            "client's last data received, read at the end of the case: after t0".to_string(),
        ));
    }
    timeline.extend(
        r.end
            .events
            .iter()
            .map(|(t, e)| (*t, format!("async-nats event: {e}"))),
    );
    if let Some(c) = &r.server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let mut config = ctx.config.effective("nats.");
    config.insert(
        "nats.ping_interval".into(),
        format!("{}ms", ms_of(client_ping)),
    );
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

fn client_side(r: &Run, expected: Expectation) -> Side {
    let (mut at, mut error) = r.end.detection();
    drive::client::not_after(
        &mut at,
        &mut error,
        r.t0 + Duration::from_millis(r.client_deadline_ms),
    );
    Side::library(expected, at, error, r.client_deadline_ms)
}

/// The silent client: its own ping_interval this long (an hour), so that
/// only the server pings.
const SILENT: Duration = Duration::from_secs(3600);

pub(crate) fn run_stale(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        None,
        SILENT,
        |s| {
            let d = stale_deadline_ms(s);
            (d, d)
        },
        |r| {
            let server = stale_expectation(
                &r.settings,
                r.fault,
                r.server_idle,
                "server (processPingTimer: Stale Connection)",
                spec,
            );
            // Finding (measured): even under blackhole-up, where the server's
            // segments do reach the client, its -ERR and FIN sit behind the
            // unacknowledged PINGs in the retransmission queue (after an RTO
            // only the head is resent), so the client never reads them.
            let client = Expectation::not_detected(
                "client: its own ping_interval is 1 h for this case; the server's -ERR 'Stale Connection' and FIN are queued behind its unacknowledged PINGs (or dropped), so they never reach it",
                spec,
            );
            (
                client_side(r, client),
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

pub(crate) fn run_client_pings(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    let spec = case.spec;
    let p = super::knobs::NatsConfig::of(&ctx.config).ping_interval;
    run(
        ctx,
        case,
        fault,
        Some(SILENT),
        p,
        |_| {
            let d = client_deadline_ms(p);
            (d, d)
        },
        |r| {
            let client = client_expectation(p, r.fault, r.client_idle, spec);
            let server = match r.fault {
                FaultKind::Freeze => Expectation::not_detected("server: frozen (SIGSTOP), it closes nothing", spec),
                _ => Expectation::not_detected("server: its ping_interval is 1 h for this case, and async-nats keeps the old socket open while it reconnects (no FIN)", spec),
            };
            (
                client_side(r, client),
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

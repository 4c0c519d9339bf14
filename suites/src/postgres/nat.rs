//! The PostgreSQL NAT case: libpq's keep-alive through a NAT that forgets
//! idle flows after N (see [`crate::model::nat`]).

use super::*;

/// Through a NAT: only the client's keep-alive may refresh the mapping, so
/// the server's is left at the kernel default (2 h) for this session.
pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let program = server_program(ctx)?;
    let lease = ctx.shared.lease_in(
        &ctx.shared_nat_bed("postgres", nat),
        "postgres",
        || ctx.testbed_with_nat("postgres", nat),
        |tb| start_server(tb, &ctx.fixtures, SHARED_CONNECTIONS),
    )?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let client_cfg = super::knobs::PostgresConfig::of(&ctx.config);
    let c = client_cfg.tcp();
    let mut session = session_without_idle_timeout();
    session.push(("tcp_keepalives_idle".into(), "0".into()));
    let plan = Plan {
        client: client_cfg,
        session,
        after: After::Idle,
    };
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    } = start_client(&lease, addr, plan)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    let expected = crate::model::nat::tcp_client_expectation(&c, nat);
    let death = crate::model::tcp::keepalive_death(&c);
    // Idle for 3 × N, or past the keep-alive's death when that comes later.
    let watch_ms = (3 * ms_of(nat)).max(death.ms + death.slack_ms + 1000);
    let until = ready.last_rx + Duration::from_millis(watch_ms);
    let _ = go_tx.send(Go {
        deadline: until,
        fault,
    });
    let server_closed = watch.wait(until)?;
    let release = crate::outcome::releases(tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let t0 = ready.last_rx + nat;
    let mut timeline = vec![(
        ready.last_rx,
        "client's last segment received (TCP_INFO)".to_string(),
    )];
    if let Some(cl) = &server_closed {
        timeline.push((cl.at, format!("server socket {}", cl.state)));
    }
    let mut config = ctx.config.effective("postgres.");
    config.insert(
        "server.tcp_keepalives_idle".into(),
        "0 (kernel default, 2 h: this session)".into(),
    );
    let deadline_ms = rel_ms(t0, until).max(0) as u64;
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    let results = facts.both_sides(
        client_implementation(),
        server_implementation(&program),
        Side::library(expected, end.failed_at, end.error, deadline_ms),
        Side::from_socket(
            Expectation::not_detected("the server's keep-alive is at the kernel default (2 h) for this session: it learns nothing", case.spec),
            server_closed,
            deadline_ms,
            "server",
        ),
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

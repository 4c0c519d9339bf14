//! The MariaDB NAT case: mysql_async's keep-alive through a NAT that forgets
//! idle flows after N (see [`crate::model::nat`]).

use super::*;

/// Through a NAT: only the client's keep-alive may refresh the mapping, so
/// the NAT testbed's mariadbd runs with tcp_keepalive_time 0 (the kernel's
/// 7200 s) and the session's wait_timeout is out of the way.
pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let program = server_program(ctx)?;
    let lease = ctx.shared.lease_in(
        &ctx.shared_nat_bed("mariadb", nat),
        "mariadb",
        || ctx.testbed_with_nat("mariadb", nat),
        |tb| start_server(tb, &ctx.fixtures, &[("tcp_keepalive_time", "0")]),
    )?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let sysctls = HostSysctls::set(
        &tb.client,
        &[
            ("tcp_keepalive_intvl", CLIENT_PROBE_INTERVAL_S),
            ("tcp_keepalive_probes", CLIENT_PROBES),
        ],
    )?;
    let plan = Plan {
        cfg: super::knobs::MariadbConfig::of(&ctx.config),
        session: long_wait_timeout(),
        pooled: false,
        after: After::QueryWhenDead,
    };
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    } = start_client(tb, addr, lease.server().log_tail(10), plan)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    let client_watch = SocketWatch::start(&tb.client, local, addr)?;
    let c = ready.tcp;
    let expected = crate::model::nat::tcp_client_expectation(&c, nat);
    // Idle for 3 × N, or past the keep-alive's death when that comes later
    // (without keep-alive nothing comes: 3 × N).
    let death = c
        .keepalive
        .then(|| crate::model::tcp::keepalive_death(&c))
        .map(|d| ms_of(nat) + d.ms + d.slack_ms + 1000)
        .unwrap_or(0);
    let watch_ms = (3 * ms_of(nat)).max(death);
    let until = ready.last_rx + Duration::from_millis(watch_ms);
    let _ = go_tx.send(until);
    let client_closed = client_watch.wait(until)?;
    let server_closed = watch.wait(until.max(Instant::now()))?;
    let release = crate::outcome::releases(tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    drop(sysctls);
    let t0 = ready.last_rx + nat;
    let mut timeline = vec![(
        ready.last_rx,
        "client's last segment received (TCP_INFO)".to_string(),
    )];
    for (cl, whose) in [(&client_closed, "client"), (&server_closed, "server")] {
        if let Some(cl) = cl {
            timeline.push((cl.at, format!("{whose} socket {}", cl.state)));
        }
    }
    if let (Some((t, _)), Some(what)) = (&end.query_end, end.query_text()) {
        timeline.push((*t, what));
    }
    let mut config = ctx.config.effective("mariadb.");
    config.insert("mariadb.socket".into(), crate::drive::sockopts::text(&c));
    config.insert(
        "server.tcp_keepalive_time".into(),
        "0 (kernel default, 2 h: the NAT testbed's server)".into(),
    );
    config.insert("client.sysctl".into(), format!("net.ipv4.tcp_keepalive_intvl={CLIENT_PROBE_INTERVAL_S} net.ipv4.tcp_keepalive_probes={CLIENT_PROBES} (this case)"));
    let deadline_ms = rel_ms(t0, until).max(0) as u64;
    let error = client_closed.as_ref().map(|cl| {
        format!(
            "client socket left ESTABLISHED: {}; {}",
            cl.state,
            end.query_text()
                .unwrap_or_else(|| "no query after it".into())
        )
    });
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    let results = facts.both_sides(
        client_implementation(),
        server_implementation(&program),
        Side::observed(expected, client_closed.as_ref(), error, deadline_ms),
        Side::from_socket(
            Expectation::not_detected("the NAT testbed's mariadbd has tcp_keepalive_time 0 (the kernel's 2 h) and the session's wait_timeout is 3600 s: it learns nothing", case.spec),
            server_closed,
            deadline_ms,
            "server",
        ),
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

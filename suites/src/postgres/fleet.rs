//! The PostgreSQL fleet: N idle tokio-postgres connections to one server of
//! its own (max_connections = N + a few), cut at once. PostgreSQL forks a
//! backend per connection and sets the fixture's `tcp_keepalives_*` on each
//! one's socket (pqcomm.c, `pq_setkeepalivesidle` & co.); tokio-postgres sets
//! the client's `postgres.keepalives*` on its own (connect_socket.rs). So
//! every connection has two Linux keep-alive windows, each counted from its
//! own socket's last received segment as sock_diag read it after the fault
//! (see [`crate::drive::fleet`]): what an operator wants to know is how long
//! until the server has reaped every backend of a vanished fleet.

use super::*;
use crate::drive::fleet::{ConnEnd, ConnSides, ConnView, Connected, Deadlines, Stop};

/// A backend's memory with room to spare. Measured here (PostgreSQL 15.18,
/// 1,000 idle connections): the server's tree Pss went from 60.9 MB to
/// 1,186.9 MB, 1.13 MB per backend. The largest fleet kaspec starts is the
/// one whose backends fit in half the memory available at 2 MB each.
const BACKEND_KB: u64 = 2 * 1024;

/// Connection slots beyond the fleet (PostgreSQL's reserved ones are taken
/// from max_connections, superuser_reserved_connections = 3).
const SPARE_CONNECTIONS: u32 = 10;

/// How long one run of the fleet may take: a dedicated server (initdb and
/// start), connecting (a fork per backend), twice the longer window.
pub(crate) fn fleet_budget(ctx: &Ctx) -> Duration {
    let c = crate::model::tcp::keepalive_death(&knobs::PostgresConfig::of(&ctx.config).tcp());
    let s = ServerSettings::load(&ctx.fixtures)
        .map(|s| crate::model::tcp::keepalive_death(&s.tcp).ms)
        .unwrap_or(10_000);
    Duration::from_secs(30)
        + Duration::from_millis(10 * ctx.config.count(&crate::drive::fleet::CONNECTIONS))
        + Duration::from_millis(2 * (c.ms + c.slack_ms).max(s))
}

/// The fleet's size against the memory its backends need.
fn check_memory(n: usize) -> Result<()> {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(u64::MAX);
    let most = (available / 2 / BACKEND_KB) as usize;
    if n > most {
        return Err(Error::Other(format!(
            "fleet.connections={n}: a PostgreSQL fleet forks one backend per connection (about {} MB each with room to spare); this machine's MemAvailable ({} MB) allows at most {most} in half of it",
            BACKEND_KB / 1024,
            available / 1024
        )));
    }
    Ok(())
}

/// One connection: connect (tokio-postgres sets its keep-alive), learn the
/// local port from the server (tokio-postgres does not expose its socket),
/// report, then drive the Connection future until it fails or the case
/// stops it.
async fn conn(
    server: SocketAddrV4,
    client_ip: Ipv4Addr,
    p: PostgresConfig,
    connected: Connected,
    mut stop: Stop,
) -> ConnEnd {
    let mut end = ConnEnd::default();
    // The fixture's idle_session_timeout must not end an idle connection
    // before TCP does.
    let cfg = connect_config(server, &p, &session_without_idle_timeout());
    let (client, connection) = match cfg.connect(tokio_postgres::NoTls).await {
        Ok(v) => v,
        Err(e) => {
            connected.send(Err(std::io::Error::other(describe(&e))));
            return end;
        }
    };
    let mut connection = Box::pin(connection);
    let port = tokio::select! {
        r = client.simple_query("SELECT inet_client_port()") => r
            .map_err(|e| describe(&e))
            .and_then(|rows| rows.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<u16>().ok()),
                _ => None,
            }).ok_or_else(|| "inet_client_port() returned no row".to_string())),
        r = &mut connection => Err(format!("the connection ended during its first query: {:?}", r.err().map(|e| describe(&e)))),
    };
    let local = match port {
        Ok(port) => SocketAddrV4::new(client_ip, port),
        Err(e) => {
            connected.send(Err(std::io::Error::other(e)));
            return end;
        }
    };
    end.local = Some(local);
    connected.send(Ok(local));
    let life = async {
        match connection.await {
            Ok(()) => {
                "the Connection future ended without an error (the server closed the connection)"
                    .to_string()
            }
            Err(e) => format!("Connection future: {}", describe(&e)),
        }
    };
    if let Some(error) = crate::drive::fleet::or_stop(life, &mut stop).await {
        end.failed_at = Some(Instant::now());
        end.error = Some(error);
    }
    drop(client);
    end
}

pub(crate) fn run_fleet(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let p = knobs::PostgresConfig::of(&ctx.config);
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let (c, s) = (p.tcp(), settings.tcp);
    if !c.keepalive || !c.user_timeout.is_zero() || !s.keepalive {
        return Err(Error::Other(format!(
            "{}: the fleet measures keep-alive on both ends: needs postgres.keepalives = true and postgres.tcp_user_timeout = 0s, and tcp_keepalives_idle > 0 in fixtures/postgres/kaspec.conf; got keepalives = {}, tcp_user_timeout = {} ms, server keep-alive {}",
            case.id,
            c.keepalive,
            ms_of(c.user_timeout),
            if s.keepalive { "on" } else { "off" }
        )));
    }
    let n = crate::drive::fleet::size(ctx)?;
    check_memory(n)?;
    let program = server_program(ctx)?;
    let tb = ctx.testbed()?;
    let started = start_server(&tb, &ctx.fixtures, n as u32 + SPARE_CONNECTIONS)?;
    // Dropped after the server (locals drop in reverse order).
    let _dirs: Vec<crate::shared::DirGuard> = started
        .dirs
        .into_iter()
        .map(crate::shared::DirGuard::new)
        .collect();
    let server = started
        .processes
        .into_iter()
        .next()
        .ok_or_else(|| Error::Other("postgres: no server process started".into()))?;
    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let spec = case.spec;
    let q = quiet_ms(&c, &s);
    let watch =
        |t: &TcpConfig| keepalive_window(t, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q);
    let deadlines = Deadlines {
        client_ms: watch(&c),
        server_ms: watch(&s),
    };
    let client_ip = tb.client.addr;
    let run = crate::drive::fleet::run(
        &tb,
        &server,
        addr,
        n,
        &deadlines,
        move |_, connected, stop| conn(addr, client_ip, p, connected, stop),
    )?;
    let t0 = run.t0;
    let sides = |v: &ConnView<'_>| {
        let (client_idle, server_idle) = v.idle_ms(t0);
        let client_exp = keepalive_window(&c, client_idle, None, fault, "client", spec);
        let server_exp = keepalive_window(&s, server_idle, None, fault, "server", spec);
        let timeline = v.last_receives("the client", "the backend's socket");
        let server_error = v.server_closed.map(|_| {
            "backend socket no longer open (the server's keep-alive aborted it)".to_string()
        });
        ConnSides {
            client: Side::library(
                client_exp,
                v.end.failed_at,
                v.end.error.clone(),
                deadlines.client_ms,
            ),
            server: Side::observed(
                server_exp,
                v.server_closed,
                server_error,
                deadlines.server_ms,
            ),
            timeline,
        }
    };
    let mut config = ctx.config.effective("postgres.");
    config.extend(ctx.config.effective("fleet."));
    config.extend(settings.report());
    config.insert(
        "server.max_connections".into(),
        (n as u32 + SPARE_CONNECTIONS).to_string(),
    );
    crate::drive::fleet::results(
        ctx,
        case,
        &tb,
        run,
        config,
        client_implementation(),
        server_implementation(&program),
        sides,
    )
}

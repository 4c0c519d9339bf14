//! The TCP fleet: N idle connections with the configured keep-alive on
//! both ends (our echo server probes with the same I, V, N), cut at once.
//! Each side of each connection is judged against the Linux keep-alive
//! window of its own stack, anchored on that socket's last receive as
//! sock_diag read it after the fault (see [`crate::drive::fleet`]).

use super::*;
use crate::drive::fleet::{ConnEnd, ConnSides, ConnView, Connected, Deadlines, Stop};

/// How long one run of the fleet may take: connecting, then twice the
/// keep-alive window, then judging.
pub(crate) fn fleet_budget(ctx: &Ctx) -> Duration {
    let d = keepalive_death(&crate::config::TcpConfig::of(&ctx.config));
    Duration::from_secs(10)
        + Duration::from_millis(ctx.config.count(&crate::drive::fleet::CONNECTIONS))
        + Duration::from_millis(2 * (d.ms + d.slack_ms))
}

/// One connection: connect and exchange a line, report, then read until
/// the stack gives up or the case stops it.
async fn conn(addr: SocketAddrV4, tcp: TcpConfig, connected: Connected, mut stop: Stop) -> ConnEnd {
    let mut end = ConnEnd::default();
    let (mut stream, local) = match connect_and_exchange(addr, &tcp).await {
        Ok((s, local, _)) => (s, local),
        Err(e) => {
            connected.send(Err(e));
            return end;
        }
    };
    end.local = Some(local);
    connected.send(Ok(local));
    let mut buf = [0u8; 64];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return "read: end of stream (the peer closed the connection)".to_string(),
                Ok(_) => continue,
                Err(e) => return io_error_text("read", &e),
            }
        }
    };
    if let Some(error) = crate::drive::fleet::or_stop(read, &mut stop).await {
        end.failed_at = Some(Instant::now());
        end.error = Some(error);
    }
    end
}

/// Our echo server with the client's keep-alive on every accepted socket.
fn start_keepalive_server(ctx: &Ctx, tb: &Testbed, t: &TcpConfig) -> Result<Server> {
    let addr = server_addr(tb);
    let mut args = ctx.serve.args.clone();
    args.extend(["tcp".into(), "--listen".into(), addr.to_string()]);
    args.extend(["--keepalive-idle".into(), format!("{}ms", ms_of(t.idle))]);
    args.extend([
        "--keepalive-interval".into(),
        format!("{}ms", ms_of(t.interval)),
    ]);
    args.extend(["--keepalive-count".into(), format!("{}s", t.count)]);
    Server::start(
        tb,
        &ServerSpec {
            name: "kaspec-tcp".into(),
            program: ctx.serve.program.clone(),
            args,
            addr,
            ready_within: Duration::from_secs(5),
            ..Default::default()
        },
    )
}

pub(crate) fn run_fleet(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let t = crate::config::TcpConfig::of(&ctx.config);
    if !t.keepalive || !t.user_timeout.is_zero() {
        return Err(Error::Other(format!(
            "{}: the fleet measures keep-alive on both ends: needs tcp.keepalive = true and tcp.user_timeout = 0s; got keepalive = {}, user_timeout = {} ms",
            case.id,
            t.keepalive,
            ms_of(t.user_timeout)
        )));
    }
    let n = crate::drive::fleet::size(ctx)?;
    let tb = ctx.testbed()?;
    let addr = server_addr(&tb);
    let server = start_keepalive_server(ctx, &tb, &t)?;
    let d = keepalive_death(&t);
    // Each side is watched 1.5× its longest window (idle 0), at least 3 s.
    let watch_ms = (3 * (d.ms + d.slack_ms) / 2).max(3000);
    let deadlines = Deadlines {
        client_ms: watch_ms,
        server_ms: watch_ms,
    };
    let run = crate::drive::fleet::run(
        &tb,
        &server,
        addr,
        n,
        &deadlines,
        move |_, connected, stop| conn(addr, t, connected, stop),
    )?;
    let t0 = run.t0;
    let server_spec = "RFC 1122 §4.2.3.6 (the server's own keep-alive, same I, V, N)";
    let sides = |c: &ConnView<'_>| {
        let (client_idle, server_idle) = c.idle_ms(t0);
        let client_exp = idle_expectation(&t, fault, client_idle, case.spec);
        let server_exp = idle_expectation(&t, fault, server_idle, server_spec);
        let timeline = c.last_receives("the client", "the server");
        let server_error = c
            .server_closed
            .map(|_| "server socket no longer open (its keep-alive aborted it)".to_string());
        ConnSides {
            client: Side::library(client_exp, c.end.failed_at, c.end.error.clone(), watch_ms),
            server: Side::observed(server_exp, c.server_closed, server_error, watch_ms),
            timeline,
        }
    };
    let mut config = ctx.config.effective("tcp.");
    config.extend(ctx.config.effective("fleet."));
    crate::drive::fleet::results(
        ctx,
        case,
        &tb,
        run,
        config,
        implementation(),
        server_implementation(),
        sides,
    )
}

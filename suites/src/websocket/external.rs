//! The heartbeat case with an external client (`--client FILE`, e.g. the
//! Python `websockets` client): our server with its [kaspec] heartbeat of
//! fixtures/websocket/servers.toml and its window (`server_expectation`),
//! anchored on what the run observed: the client's last frame that reached
//! it (its TCP_INFO) and, under reset, its own last Ping as the client saw
//! it (the client's `server-ping` line, else the client's last receive);
//! the client's window is what its adapter declares.

use super::*;

pub(crate) fn run_heartbeat_external(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    adapter: &crate::external::Adapter,
) -> Result<Vec<CaseResult>> {
    let which = WsServer::Kaspec;
    let hb = which.heartbeat(&ctx.fixtures)?;
    let tb = ctx.testbed_for("kaspec-ws")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, hb)?)?;
    let window = |f: FaultKind, a: &crate::external::run::Anchors| {
        let last_ping = a
            .lines
            .iter()
            .rev()
            .find(|(_, l)| l == "server-ping")
            // A line in the first ms after t0 (run.rs reads them too, where
            // the fault cuts server → client) reports a Ping sent before it.
            .map_or(a.client_last_recv_ms, |(t, _)| (*t).min(0));
        // Its last read: the kernel's last receive (its TCP_INFO), which an
        // idle server reads at once.
        let heard = (a.server_last_recv_ms, a.server_last_recv_ms);
        server_expectation(which, &hb, f, heard, last_ping)
    };
    crate::external::run::run(
        ctx,
        case,
        fault,
        adapter,
        crate::external::run::ServerSide {
            tb: &tb,
            addr,
            pid: Some(server.pid()),
            implementation: which.implementation(),
            window: &window,
            knobs: "websocket.",
        },
    )
}

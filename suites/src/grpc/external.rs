//! The idle case with an external client (`--client FILE`, e.g. Python
//! grpcio): the same servers as with the tonic client — kaspec's tonic
//! server and grpcio's, each with its keep-alive of
//! fixtures/grpc/servers.toml — and the same server window
//! (`server_expectation`), anchored on the last data each server received
//! (its TCP_INFO); the client's window is what its adapter declares.

use super::*;

pub(crate) fn run_idle_external(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    adapter: &crate::external::Adapter,
) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for which in measured(ctx) {
        let k = which.keepalive(&ctx.fixtures)?;
        let tb = ctx.testbed_for("kaspec-grpc")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let server = Server::start(&tb, &which.spec(ctx, addr, Mode::Keepalive(k))?)?;
        let window = |f: FaultKind, a: &crate::external::run::Anchors| {
            let idle = (-a.server_last_recv_ms).max(0) as u64;
            server_window(which, &k, f, idle)
        };
        out.extend(crate::external::run::run(
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
                knobs: "grpc.",
            },
        )?);
    }
    Ok(out)
}

/// The server's window. grpcio's server restarts its keep-alive timer on
/// every read (grpc-core chttp2_transport.cc:2394-2397, as for the client),
/// so its window is anchored on its last receive `idle_ms` before the fault:
/// `server_expectation`'s, whose ± 1 jiffy for that TCP_INFO anchor the
/// external runner adds itself (`external::run`), so it is taken off here
/// to count it once. kaspec's tonic server does not: hyper 1.12's server
/// keep-alive restarts on request headers (src/proto/h2/server.rs:273),
/// body data (src/body/incoming.rs:190) and its own PING's ACK
/// (src/proto/h2/ping.rs:291), never on the client's PINGs — all an idle
/// grpcio channel sends — and grpcio's Python API does not say when the
/// server's PINGs arrive, so that timer's phase is not observed: (T, I + T]
/// (blackhole), (0, I] (reset).
fn server_window(
    which: GrpcServer,
    k: &ServerKeepalive,
    fault: FaultKind,
    idle_ms: u64,
) -> Expectation {
    if which == GrpcServer::Kaspec {
        let mut e = server_expectation(k, fault, None);
        e.formula = format!("{}: hyper 1.12's server keep-alive restarts on request headers, body data and its own PING's ACK (server.rs:273, incoming.rs:190, ping.rs:291), not on the client's PINGs, and when its PINGs reach grpcio is not observable from Python", e.formula);
        return e;
    }
    let mut e = server_expectation(k, fault, Some(idle_ms));
    let j = linux::jiffy_ms();
    if let (Some(lo), Some(hi)) = (e.min_ms, e.max_ms) {
        e.min_ms = Some(if lo == 0 { 0 } else { lo + j });
        e.max_ms = Some(hi - j);
        e.formula = format!("{} (± J once: the external runner's, below)", e.formula);
    }
    e
}

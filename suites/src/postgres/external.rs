//! The idle case with an external client (`--client FILE`, e.g. psycopg2
//! over libpq): the same shared PostgreSQL, the same server window (the
//! backend's `tcp_keepalives_*` / `tcp_user_timeout` from the fixture's
//! settings, Linux's keep-alive: `model::tcp`); the client's window is what
//! its adapter declares.

use super::*;

pub(crate) fn run_idle_external(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    adapter: &crate::external::Adapter,
) -> Result<Vec<CaseResult>> {
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let program = server_program(ctx)?;
    let lease = lease(ctx)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let s = settings.tcp;
    let spec = case.spec;
    // The backend's socket: idle since the last segment it received (its
    // TCP_INFO), as in the case with tokio-postgres (cases.rs idle_outcome).
    let window = |f: FaultKind, a: &crate::external::run::Anchors| {
        let idle = (-a.server_last_recv_ms).max(0) as u64;
        keepalive_window(&s, idle, None, f, "server", spec)
    };
    crate::external::run::run(
        ctx,
        case,
        fault,
        adapter,
        crate::external::run::ServerSide {
            tb,
            addr,
            pid: Some(lease.server().pid()),
            implementation: server_implementation(&program),
            window: &window,
            knobs: "postgres.",
        },
    )
}

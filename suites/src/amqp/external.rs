//! The idle case with an external client (`--client FILE`): the same shared
//! RabbitMQ, the same broker window (rabbit_heartbeat's receiver, see
//! expect.rs); the client's window is what its adapter declares.

use super::*;

pub(crate) fn run_idle_external(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    adapter: &crate::external::Adapter,
) -> Result<Vec<CaseResult>> {
    let broker_impl = broker_implementation();
    let lease = lease(ctx, &MAIN)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(MAIN.port));
    // The client asks for amqp.heartbeat and RabbitMQ takes the client's
    // Tune-Ok value (a client that asks for 0 gets the server's 60 s: the
    // window is then far past the watch, reported as not detected).
    let t_s = knobs::AmqpConfig::of(&ctx.config).heartbeat.as_secs() as u16;
    let window = |f: FaultKind, a: &crate::external::run::Anchors| {
        // The receiver starts at Tune-Ok, which the client sends as it
        // starts its own heartbeat (the `connected` line, when it prints
        // one there; else the last data it received anchors the phase, and
        // next_ticks' slack covers a wake near it).
        let start = a.connected_ms.unwrap_or(a.client_last_recv_ms);
        // No heartbeat of the broker's is seen one by one here: no lag measured.
        let rx = Receiver {
            start,
            tick: start,
            lag: 0,
        };
        server_expectation(t_s, f, rx, a.server_last_recv_ms, a.client_last_recv_ms)
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
            implementation: broker_impl,
            window: &window,
            knobs: "amqp.",
        },
    )
}

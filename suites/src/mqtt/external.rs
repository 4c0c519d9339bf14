//! The idle case with an external client (`--client FILE`): the same
//! Mosquitto, the same broker window [MQTT-3.1.2-24]; the client's window
//! is what its adapter declares.

use super::*;

pub(crate) fn run_idle_external(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    adapter: &crate::external::Adapter,
) -> Result<Vec<CaseResult>> {
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let k = super::knobs::MqttConfig::of(&ctx.config).keep_alive;
    let tb = ctx.testbed_for("mosquitto")?;
    let (broker, addr) = start_broker(ctx, &tb, program)?;
    let window = |f: FaultKind, a: &crate::external::run::Anchors| {
        server_expectation(k, f, a.server_last_recv_ms)
    };
    crate::external::run::run(
        ctx,
        case,
        fault,
        adapter,
        crate::external::run::ServerSide {
            tb: &tb,
            addr,
            pid: Some(broker.pid()),
            implementation: broker_impl,
            window: &window,
            knobs: "mqtt.",
        },
    )
}

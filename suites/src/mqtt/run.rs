//! How the idle MQTT case runs: Mosquitto, the client, the fault halfway
//! between two PINGREQs, both sides watched.

use super::*;

pub(crate) fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    if let Some(adapter) = &ctx.client {
        return run_idle_external(ctx, case, fault, adapter);
    }
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let k = super::knobs::MqttConfig::of(&ctx.config).keep_alive;
    let tb = ctx.testbed_for("mosquitto")?;
    let (broker, addr) = start_broker(ctx, &tb, program)?;

    let started = start_client(&tb, addr, k, false, None)?;
    let (local, last_out) = (started.ready.local, started.ready.last_out);

    // Let the path die halfway between two PINGREQs.
    let fault_at = last_out + k / 2;
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    if fault == FaultKind::ClientStall {
        let _ = started.stall_tx.send(true);
    }
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(broker.pid()),
    )?;
    if fault == FaultKind::ClientCrash {
        // The host is gone: its connection is dropped behind the blackhole.
        let _ = started.stop_tx.send(Some(Instant::now()));
    }
    let t0 = applied.in_force_at;
    let since_ms = rel_ms(last_out, t0).max(0) as u64;

    let nominal = client_expectation(k, fault, since_ms);
    // The broker waits 3× its window, plus what a documented deviation says
    // it may take beyond it, so the deviation is measured, not cut off.
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        Some(i) => {
            let watch = crate::model::impaired::impaired_watch_ms(2 * k, i);
            (watch, watch)
        }
        None => (
            nominal.deadline_ms(10_000),
            server_expectation(k, FaultKind::Blackhole, -(since_ms as i64)).deadline_ms(10_000)
                + crate::deviations::late_allowance_ms(
                    &ctx.deviations,
                    case.id,
                    "server",
                    &broker_impl.name,
                ),
        ),
    };
    let deadline = t0 + Duration::from_millis(client_deadline_ms.max(server_deadline_ms));
    // The client keeps its connection until the broker has been watched: its
    // clean close (a FIN through a one-way blackhole) is not the broker's
    // detection. A client failure after its own deadline does not count.
    let (server_closed, end) = started.watch_then_stop(
        t0 + Duration::from_millis(server_deadline_ms),
        t0 + Duration::from_millis(client_deadline_ms),
    )?;

    // The last PINGREQ before the fault (the client's last packet the broker got).
    let last_before = end
        .events
        .iter()
        .filter(|(t, w)| *t < t0 && w == "PINGREQ sent")
        .map(|(t, _)| *t)
        .last()
        .unwrap_or(last_out);
    let since_ms = rel_ms(last_before, t0).max(0) as u64;
    // What the broker last received: with client->server open (blackhole-down)
    // every PINGREQ until the client gave up, otherwise the last one before t0.
    let last_heard = if fault == FaultKind::BlackholeDown {
        let until = end.failed_at.unwrap_or(deadline);
        end.events
            .iter()
            .filter(|(t, w)| *t < until && w == "PINGREQ sent")
            .map(|(t, _)| *t)
            .last()
            .unwrap_or(last_before)
    } else {
        last_before
    };
    let mut timeline = end.events;
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(&tb, local, addr)
    };
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config: ctx.config.effective("mqtt."),
        t0,
        timeline,
        release,
    };
    let (client_exp, server_exp) = match &imp {
        // rumqttc fails when the PINGRESP is not in by its next tick, K later;
        // the broker allows 1.5 × K between packets that come every K.
        Some(i) => (
            crate::model::impaired::impaired_expectation(
                "Keep Alive K (the PINGRESP's time before the next tick) =",
                k,
                i,
                case.spec,
            ),
            crate::model::impaired::impaired_expectation(
                "the broker's slack, 1.5 × K − K =",
                k / 2,
                i,
                case.spec,
            ),
        ),
        None => (
            client_expectation(k, fault, since_ms),
            server_expectation(k, fault, rel_ms(t0, last_heard)),
        ),
    };
    facts.both_sides(
        client_implementation(),
        broker_impl,
        Side::library(client_exp, end.failed_at, end.error, client_deadline_ms),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.judging(),
    )
}

//! The busy MQTT case: rumqttc publishes on its own topic every period and
//! receives each publish back through its subscription when the path dies.
//! Both sides are anchored on the traffic the run observed: the broker's
//! last packet from the client (its last PUBLISH or PINGREQ before the
//! fault), the client's last PINGREQ (its ping timer ignores the traffic).

use super::*;

pub(crate) fn run_busy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let k = super::knobs::MqttConfig::of(&ctx.config).keep_alive;
    let tb = ctx.testbed_for("mosquitto")?;
    let (broker, addr) = start_broker(ctx, &tb, program)?;
    // Bounded: no more publishes than the case's budget has periods.
    let echo = Workload::within(budget(ctx));
    let started = start_client(&tb, addr, k, false, Some(echo))?;
    let (local, last_out) = (started.ready.local, started.ready.last_out);
    let origin = started
        .ready
        .echo_origin
        .ok_or_else(|| Error::Other("the busy mqtt client reported no publisher".into()))?;

    // Halfway between two PINGREQs, and halfway between two publishes: no
    // segment is in flight when the rule commits.
    let fault_at = between_messages(origin, echo.period, last_out + k / 2);
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        Some(broker.pid()),
    )?;
    let t0 = applied.in_force_at;
    let since_ms = rel_ms(last_out, t0).max(0) as u64;
    let client_deadline_ms =
        client_expectation(k, FaultKind::Blackhole, since_ms).deadline_ms(10_000);
    // The broker is watched for 3× its window plus what its documented
    // deviation allows beyond it (measured, not cut off).
    let server_deadline_ms = server_expectation(k, FaultKind::Blackhole, 0).deadline_ms(10_000)
        + crate::deviations::late_allowance_ms(
            &ctx.deviations,
            case.id,
            "server",
            &broker_impl.name,
        );
    let (server_closed, end) = started.watch_then_stop(
        t0 + Duration::from_millis(server_deadline_ms),
        t0 + Duration::from_millis(client_deadline_ms),
    )?;

    let last = |what: &[&str]| {
        end.events
            .iter()
            .filter(|(t, w)| *t < t0 && what.contains(&w.as_str()))
            .map(|(t, _)| *t)
            .last()
    };
    let last_ping = last(&["PINGREQ sent"]).unwrap_or(last_out);
    let last_publish = last(&[PUBLISH_SENT]).unwrap_or(origin);
    // The broker's last packet from the client, whatever it was
    // (mosquitto's packet__read calls keepalive__update after every whole
    // packet, lib/packet_mosq.c): its last PUBLISH or PINGREQ before t0.
    let last_heard = last_publish.max(last_ping);
    let since_ms = rel_ms(last_ping, t0).max(0) as u64;
    let client_exp =
        busy_client_expectation(k, fault, since_ms, rel_ms(t0, last_publish), echo.period);
    let server_exp = server_expectation(k, fault, rel_ms(t0, last_heard));

    // The timeline keeps the traffic around the fault: the last of each kind
    // before it, the first publish after it.
    let mut timeline: Vec<(Instant, String)> = end
        .events
        .iter()
        .filter(|(t, w)| {
            let traffic = w == PUBLISH_SENT || w == PUBLISH_RECEIVED;
            !traffic || last(&[w.as_str()]) == Some(*t)
        })
        .cloned()
        .collect();
    let received = end.events.iter().filter(|(_, w)| w == PUBLISH_RECEIVED);
    let (before, after) = (
        received.clone().filter(|(t, _)| *t < t0).count(),
        received.filter(|(t, _)| *t >= t0).count(),
    );
    if let Some(first) = end
        .events
        .iter()
        .find(|(t, w)| *t >= t0 && w == PUBLISH_SENT)
    {
        timeline.push((first.0, "first PUBLISH sent after the fault".into()));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config: ctx.config.effective("mqtt."),
        t0,
        timeline,
        release: crate::outcome::Releases {
            client: None,
            ..crate::outcome::releases(&tb, local, addr)
        },
    };
    let echoes = format!("{before} before the fault, {after} after");
    facts.both_sides(
        client_implementation(),
        broker_impl,
        Side::library(client_exp, end.failed_at, end.error, client_deadline_ms)
            .with_fact("echoes received", echoes),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.judging(),
    )
}

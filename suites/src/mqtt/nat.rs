//! The MQTT NAT case: an idle client through a NAT that forgets idle
//! flows after N (see [`crate::model::nat`]).

use super::*;
use crate::model::nat::{nat_idle, nat_race};

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    Duration::from_secs(20)
        + 3 * nat_idle(ctx)
        + 6 * super::knobs::MqttConfig::of(&ctx.config).keep_alive
}

/// rumqttc pings every K whatever the traffic; the mapping survives if K < N.
pub(crate) fn mqtt_kept(k: Duration, nat: Duration) -> bool {
    !k.is_zero() && k < nat
}

pub(crate) fn mqtt_expectations(k: Duration, nat: Duration) -> (Expectation, Expectation) {
    let (k_ms, n) = (ms_of(k), ms_of(nat));
    let spec = "MQTT 3.1.1 §3.1.2.10, RFC 5382 §5";
    if k.is_zero() {
        let e = || {
            Expectation::not_detected(format!("Keep Alive 0: nothing refreshes the mapping; it is forgotten after N = {n} ms and neither side notices"), spec)
        };
        return (e(), e());
    }
    if let Some(race) = nat_race("Keep Alive K", k, nat, spec) {
        return (race.clone(), race);
    }
    if mqtt_kept(k, nat) {
        let e = || {
            Expectation::must_stay_up(format!("a PINGREQ every K = {k_ms} ms < N = {n} ms refreshes the mapping: the session survives 3 × N"), spec)
        };
        return (e(), e());
    }
    // t0 = CONNACK + N: the same windows as the idle case's, anchored on
    // the CONNACK — the client's last packet and the broker's last heard —
    // N before the mapping's expiry. The first PINGREQ (K after it) is dropped.
    let why = format!("K = {k_ms} ms ≥ N = {n} ms: the first PINGREQ (K after CONNACK, N = {n} ms before the expiry) meets the forgotten mapping; ");
    let client = client_expectation(k, FaultKind::Blackhole, n);
    let client = Expectation {
        formula: format!("{why}{}", client.formula),
        ..client
    };
    let server = server_expectation(k, FaultKind::Blackhole, -(n as i64));
    let server = Expectation {
        formula: format!("{why}{}", server.formula),
        ..server
    };
    (client, server)
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = nat_idle(ctx);
    let k = super::knobs::MqttConfig::of(&ctx.config).keep_alive;
    let program = broker_program(ctx)?;
    let broker_impl = broker_implementation(&program);
    let tb = ctx.testbed_with_nat("mosquitto", nat)?;
    let (_broker, addr) = start_broker(ctx, &tb, program)?;
    let Started {
        thread: client_thread,
        ready,
        stop_tx,
        watch,
        ..
    } = start_client(&tb, addr, k, true, None)?;
    let t0 = ready.last_out + nat;
    let (client_exp, server_exp) = mqtt_expectations(k, nat);
    let quiet_ms = 3 * ms_of(nat);
    let client_deadline_ms = client_exp.deadline_ms(quiet_ms);
    let server_deadline_ms = server_exp.deadline_ms(quiet_ms)
        + crate::deviations::late_allowance_ms(
            &ctx.deviations,
            case.id,
            "server",
            &broker_impl.name,
        );
    // The client is stopped (and closes) only after the broker was watched,
    // or its clean close would look like the broker's detection.
    let server_closed =
        watch.wait(t0 + Duration::from_millis(server_deadline_ms.max(client_deadline_ms)))?;
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(client_deadline_ms)));
    let mut end = client_thread
        .join()?
        .ok_or_else(|| Error::Other("mqtt client ended without a result".into()))?;
    drive::client::not_after(
        &mut end.failed_at,
        &mut end.error,
        t0 + Duration::from_millis(client_deadline_ms),
    );
    let mut timeline = end.events;
    timeline.push((
        ready.last_out,
        "last packet before the mapping expired (CONNACK)".into(),
    ));
    let config = ctx.config.effective("mqtt.");
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(&tb, ready.local, addr)
    };
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    facts.both_sides(
        client_implementation(),
        broker_impl,
        Side::library(client_exp, end.failed_at, end.error, client_deadline_ms),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.judging(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_keep_alive_against_the_nat_timeout() {
        let nat = Duration::from_secs(4);
        assert!(mqtt_kept(Duration::from_secs(2), nat) && !mqtt_kept(Duration::from_secs(5), nat));
        let (c, s) = mqtt_expectations(Duration::from_secs(5), nat);
        assert_eq!(
            (c.min_ms, s.min_ms, s.max_ms),
            (Some(6000), Some(1000), Some(3500))
        );
        // A period equal to N races the expiry: reported, not judged.
        assert_eq!(
            mqtt_expectations(Duration::from_secs(4), nat).0.level,
            Level::Info
        );
    }
}

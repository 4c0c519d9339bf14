//! `kaspec validate`'s rules for the `mqtt.*` knobs, each with its source
//! and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;

use super::{IDLE, NAT};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{broke_behind_nat, nat_finding, none_detected, Check, Finding, Severity};

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let mut f = Vec::new();
    if c.mqtt.keep_alive.is_zero() {
        f.push(Finding {
            rule: "mqtt-keep-alive-off",
            severity: Severity::Warning,
            message: "mqtt.keep_alive = 0: no PINGREQ, so neither the client nor the broker can detect a dead peer".into(),
            source: "MQTT 3.1.1 §3.1.2.10 (a Keep Alive of zero turns the mechanism off)",
            check: Ok(Check { case: &IDLE, fault: FaultKind::Blackhole, confirmed: none_detected, means: "rumqttc never detected the blackholed broker" }),
        });
    }
    let nat = Check {
        case: &NAT,
        fault: FaultKind::NatExpiry,
        confirmed: broke_behind_nat,
        means: "the session broke behind a NAT with this timeout",
    };
    f.extend(nat_finding(
        "mqtt.keep_alive",
        (!c.mqtt.keep_alive.is_zero()).then_some(c.mqtt.keep_alive),
        net,
        nat,
    ));
    f
}

//! `kaspec validate`'s rules for the `websocket.*` knobs, each with its
//! source and the case that confirms it by measurement.

use kaspec_harness::fault::FaultKind;

use super::{NAT, OWN_HEARTBEAT_ON_IMPAIRED_PATH};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{broke_behind_nat, nat_finding, round_trip_finding, Check, Finding};

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let k = super::knobs::WebSocketConfig::of(c);
    let nat = Check {
        case: &NAT,
        fault: FaultKind::NatExpiry,
        confirmed: broke_behind_nat,
        means: "the heartbeat declared the connection dead behind a NAT with this timeout",
    };
    let mut f: Vec<Finding> =
        nat_finding("websocket.ping_interval", Some(k.ping_interval), net, nat)
            .into_iter()
            .collect();
    f.extend(round_trip_finding(
        "websocket.pong_timeout",
        k.pong_timeout,
        net,
        &OWN_HEARTBEAT_ON_IMPAIRED_PATH,
    ));
    f
}

//! `kaspec validate`'s rules for the `tcp.*` knobs, each with its source and
//! the case that confirms it by measurement.

use std::time::Duration;

use kaspec_harness::expect::ms;
use kaspec_harness::fault::FaultKind;

use super::{DATA_IN_FLIGHT, IDLE_KEEPALIVE, NAT};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{broke_behind_nat, nat_finding, none_detected, Check, Finding, Severity};

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let mut f = Vec::new();
    if !c.tcp.keepalive {
        f.push(Finding {
            rule: "tcp-keepalive-off",
            severity: Severity::Warning,
            message: "tcp.keepalive = false: an idle connection whose peer or path dies is never detected by TCP".into(),
            source: "RFC 1122 §4.2.3.6 (keep-alives are off by default)",
            check: Ok(Check { case: &IDLE_KEEPALIVE, fault: FaultKind::Blackhole, confirmed: none_detected, means: "the client never detected the blackholed path" }),
        });
    } else if c.tcp.idle >= Duration::from_secs(7200) {
        f.push(Finding {
            rule: "tcp-keepalive-2h-default",
            severity: Severity::Warning,
            message: format!("tcp.idle = {} is at (or above) the 2-hour default: a dead path is found hours later", ms(c.tcp.idle.as_millis() as u64)),
            source: "RFC 1122 §4.2.3.6 (interval MUST default to no less than two hours)",
            check: Err("the keep-alive window is hours long; not run".into()),
        });
    }
    if c.tcp.user_timeout.is_zero() {
        f.push(Finding {
            rule: "tcp-user-timeout-off",
            severity: Severity::Warning,
            message: "tcp.user_timeout = 0: data sent on a dead path waits for the retransmission limit (tcp_retries2, ~15 min); keep-alive does not probe while data is in flight".into(),
            source: "RFC 5482 §3, RFC 9293 §3.8.3 (R2)",
            check: Ok(Check { case: &DATA_IN_FLIGHT, fault: FaultKind::Blackhole, confirmed: none_detected, means: "the client with unacknowledged data never detected the blackholed path" }),
        });
    }
    let nat = Check {
        case: &NAT,
        fault: FaultKind::NatExpiry,
        confirmed: broke_behind_nat,
        means: "the connection broke behind a NAT with this timeout",
    };
    f.extend(nat_finding(
        "tcp.idle",
        c.tcp.keepalive.then_some(c.tcp.idle),
        net,
        nat,
    ));
    f
}

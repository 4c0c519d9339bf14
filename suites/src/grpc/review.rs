//! `kaspec validate`'s rules for the `grpc.*` knobs, each with its source
//! and the case that confirms it by measurement.

use std::time::Duration;

use kaspec_harness::expect::ms;
use kaspec_harness::fault::FaultKind;

use super::{IDLE, NAT, PING_POLICY};
use crate::config::Config;
use crate::network::NetworkProfile;
use crate::rules::{
    broke_behind_nat, nat_finding, round_trip_finding, told_too_many_pings, Check, Finding,
    Severity,
};
use kaspec_harness::report::CaseResult;

pub(crate) fn review(c: &Config, net: Option<&NetworkProfile>) -> Vec<Finding> {
    let k = super::knobs::GrpcConfig::of(c);
    let mut f = Vec::new();
    if k.keepalive_time < Duration::from_secs(300) {
        f.push(Finding {
            rule: "grpc-pings-too-often",
            severity: Severity::Warning,
            message: format!(
                "grpc.keepalive_time = {} is below the servers' default PERMIT_KEEPALIVE_TIME (5 min): servers that enforce it answer with GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"",
                ms(k.keepalive_time.as_millis() as u64)
            ),
            source: "gRFC A8 (server enforcement)",
            check: Ok(Check { case: &PING_POLICY, fault: FaultKind::None, confirmed: told_too_many_pings, means: "a server answered \"too many pings\"" }),
        });
    }
    if !k.keepalive_while_idle {
        f.push(Finding {
            rule: "grpc-no-keepalive-while-idle",
            severity: Severity::Info,
            message: "grpc.keepalive_while_idle = false: idle channels are not pinged; a dead path is found by the first call (after KEEPALIVE_TIMEOUT) or by TCP keep-alive".into(),
            source: "gRFC A8 (KEEPALIVE_WITHOUT_CALLS)",
            check: Ok(Check { case: &IDLE, fault: FaultKind::Blackhole, confirmed: no_h2_detection, means: "no HTTP/2 keep-alive detection within I + T on an idle channel" }),
        });
    }
    let nat = Check {
        case: &NAT,
        fault: FaultKind::NatExpiry,
        confirmed: broke_behind_nat,
        means: "the channel broke behind a NAT with this timeout",
    };
    f.extend(nat_finding(
        "grpc.keepalive_time",
        k.keepalive_while_idle.then_some(k.keepalive_time),
        net,
        nat,
    ));
    f.extend(round_trip_finding(
        "grpc.keepalive_timeout",
        k.keepalive_timeout,
        net,
        &IDLE,
    ));
    f
}

/// No client detection within I + T (plus each result's budget): the
/// HTTP/2 keep-alive did not notice the blackholed server.
fn no_h2_detection(results: &[CaseResult], c: &Config) -> Option<bool> {
    let g = super::knobs::GrpcConfig::of(c);
    let bound = (g.keepalive_time + g.keepalive_timeout).as_millis() as u64;
    let cl: Vec<_> = results.iter().filter(|r| r.side == "client").collect();
    (!cl.is_empty()).then(|| {
        cl.iter().all(|r| {
            r.detection_ms
                .map(|d| d > bound + r.budget.total_ms())
                .unwrap_or(true)
        })
    })
}

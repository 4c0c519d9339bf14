//! Fleets (issue 17): a few hundred idle connections through one router,
//! cut at once; every connection on both sides judged against its own
//! window, folded into one result per side with the distribution.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;

use crate::common::*;

/// Every connection detected, each inside its own window (the fleet's
/// verdict is its worst connection's), the resources measured.
fn assert_fleet_passes(r: &CaseResult, n: usize) {
    let f = r.fleet.as_ref().unwrap_or_else(|| panic!("no fleet section: {}", show(r)));
    assert_eq!((f.connections, f.detected, f.outside), (n, n, 0), "{}", show(r));
    assert_eq!(r.verdict, Verdict::Pass, "{}", show(r));
    assert!(f.all_gone_ms.is_some() && f.p50_ms <= f.p99_ms && f.p99_ms <= f.max_ms, "{}", show(r));
    assert_eq!(f.histogram.iter().map(|b| b.within + b.outside).sum::<usize>(), n);
    assert!(f.resources.kaspec_hwm_kb.is_some() && f.resources.server_rss_kb.iter().all(Option::is_some), "{:?}", f.resources);
}

#[test]
fn tcp_fleet_every_connection_dies_in_its_own_window_on_both_ends() {
    let results = run("tcp/rfc1122-4.2.3.6/fleet", FaultKind::Blackhole, &["fleet.connections=200", "tcp.idle=1s", "tcp.interval=1s", "tcp.count=1"]);
    assert_fleet_passes(side(&results, "client"), 200);
    assert_fleet_passes(side(&results, "server"), 200);
}

//! What every integration test file of the suites shares: a context like a
//! run's, running one case, and the assertions on its results.
#![allow(dead_code)]

use std::path::PathBuf;

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use kaspec_suites::ctx::ServeCommand;
use kaspec_suites::registry;
use kaspec_suites::{deviations, Config, Ctx};

/// The configuration: defaults with `sets` (`key=value`) applied.
pub fn config(sets: &[&str]) -> Config {
    let mut config = kaspec_suites::registry::config();
    for s in sets {
        config.set_pair(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    config
}

/// A context like `kaspec run`'s, with the fixtures of this tree.
pub fn ctx(sets: &[&str]) -> Ctx {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    Ctx {
        config: config(sets),
        run_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaspec-test-runs"),
        deviations: deviations::load(&fixtures.join("deviations.toml")).unwrap(),
        shift_window_ms: 0,
        fixtures,
        serve: ServeCommand {
            program: env!("CARGO_BIN_EXE_kaspec-serve").into(),
            args: vec![],
        },
        network: Default::default(),
        shared: Default::default(),
        docker: None,
        client: None,
    }
}

/// Replaces the context's configuration (its shared servers stay).
pub fn set(ctx: &mut Ctx, sets: &[&str]) {
    ctx.config = config(sets);
}

/// Runs case `id` under `fault` in `ctx`; a harness error fails the test.
pub fn run_in(ctx: &Ctx, id: &str, fault: FaultKind) -> Vec<CaseResult> {
    let c = registry::all()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no case {id}"));
    assert!(
        c.fixed_fault == Some(fault) || c.faults.contains(&fault),
        "{id} does not take {fault}"
    );
    unit(ctx, c, fault)
}

/// Runs one case; a harness error fails the test.
fn unit(ctx: &Ctx, c: &kaspec_suites::CaseDef, fault: FaultKind) -> Vec<CaseResult> {
    (c.run)(ctx, c, fault).unwrap_or_else(|e| panic!("harness error in {} × {fault}: {e}", c.id))
}

pub fn side<'a>(results: &'a [CaseResult], side: &str) -> &'a CaseResult {
    results
        .iter()
        .find(|r| r.side == side)
        .unwrap_or_else(|| panic!("no {side} result"))
}

pub fn show(r: &CaseResult) -> String {
    serde_json::to_string_pretty(r).unwrap()
}

pub fn error(r: &CaseResult) -> &str {
    r.error.as_deref().unwrap_or_default()
}

/// Detected, inside the computed window (the verdict says so), not a harness artefact.
pub fn assert_pass(r: &CaseResult) {
    assert_eq!(r.verdict, Verdict::Pass, "{}", show(r));
    let v = r.detection_ms.expect("detected");
    let (lo, hi) = (r.expected.min_ms.unwrap(), r.expected.max_ms.unwrap());
    assert!(
        v + r.allowance_ms() >= lo && v <= hi + r.allowance_ms(),
        "{}",
        show(r)
    );
}

/// Not detected, with this verdict (informational: nothing was expected;
/// pass: the connection had to stay up).
pub fn assert_not_detected(r: &CaseResult, verdict: Verdict) {
    assert!(!r.detected, "expected no detection: {}", show(r));
    assert_eq!(r.verdict, verdict, "{}", show(r));
}

/// Not detected, and nothing was expected (informational).
/// Not detected, as the model says: a pass where nothing could notice, an
/// informational result where either outcome is allowed (or, as for a
/// crashed server, nothing is judged).
pub fn assert_quiet(r: &CaseResult) {
    let v = if r.expected.level == kaspec_harness::expect::Level::Info {
        Verdict::Informational
    } else {
        Verdict::Pass
    };
    assert_not_detected(r, v);
}

// --- running one case ------------------------------------------------------

pub fn run(id: &str, fault: FaultKind, sets: &[&str]) -> Vec<CaseResult> {
    run_on(id, fault, sets, None)
}

/// Runs a case on a path with a NAT idle timeout (seconds), as `--network` gives.
pub fn run_on(id: &str, fault: FaultKind, sets: &[&str], nat_secs: Option<u64>) -> Vec<CaseResult> {
    let c = registry::all()
        .into_iter()
        .find(|c| c.id == id)
        .expect("case exists");
    let mut ctx = ctx(sets);
    ctx.network.nat_idle_timeout = nat_secs.map(std::time::Duration::from_secs);
    unit(&ctx, c, fault)
}

/// One client result: the connection stayed up (and that was the
/// expectation), or it was detected inside the computed window.
pub fn assert_kept_or_detected(r: &[CaseResult], kept: bool) {
    assert_eq!(r.len(), 1);
    if kept {
        assert_not_detected(&r[0], Verdict::Pass);
    } else {
        assert_pass(&r[0]);
    }
}

pub fn by<'a>(results: &'a [CaseResult], side_name: &str, implementation: &str) -> &'a CaseResult {
    results
        .iter()
        .find(|r| {
            r.side == side_name && r.peer.name.contains(implementation)
                || r.side == side_name && r.implementation.name.contains(implementation)
        })
        .unwrap_or_else(|| panic!("no {side_name} result against {implementation}"))
}

/// `kaspec validate` on the configuration `sets`: the finding `rule` must
/// be raised; its check is run for real (`validate::confirm`, the case it
/// names with these settings) and judged.
pub fn validate_rule(
    sets: &[&str],
    rule: &str,
) -> (kaspec_suites::validate::Judged, Vec<CaseResult>) {
    let ctx = ctx(sets);
    let findings: Vec<_> = kaspec_suites::validate::review(&ctx.config, None)
        .into_iter()
        .filter(|f| f.rule == rule)
        .collect();
    assert_eq!(findings.len(), 1, "{rule} not raised by {sets:?}");
    let (mut judged, results) = kaspec_suites::validate::confirm(&ctx, &findings, |_| {})
        .unwrap_or_else(|e| panic!("harness error confirming {rule}: {e}"));
    (judged.remove(0), results)
}

/// The confirmation predicate of `rule` (raised by `raising`), applied to
/// other results: a rule's measurement must be able to say "not the case".
pub fn rule_confirmed_by(raising: &[&str], rule: &str, results: &[CaseResult]) -> Option<bool> {
    let c = config(raising);
    let f = kaspec_suites::validate::review(&c, None)
        .into_iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("{rule} not raised by {raising:?}"));
    let check = f.check.as_ref().unwrap_or_else(|e| panic!("{rule}: {e}"));
    (check.confirmed)(results, &c)
}

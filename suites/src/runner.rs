//! Runs a selection of cases × faults into a report, calling back with
//! progress. A harness error stops that case (never a verdict) and is
//! recorded; the run goes on with the next case.

use std::path::Path;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level, Verdict};
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::{CaseResult, Environment, Implementation, Report, RunError, SCHEMA_VERSION};

use crate::case::{CaseDef, Ctx};

/// The faults of the default matrix.
pub const DEFAULT_FAULTS: [FaultKind; 2] = [FaultKind::Blackhole, FaultKind::Reset];

pub enum Progress<'a> {
    Start { index: usize, total: usize, case: &'a CaseDef, fault: FaultKind, budget: Duration },
    Done { index: usize, total: usize, case: &'a CaseDef, fault: FaultKind, results: &'a [CaseResult], elapsed: Duration },
    Error { index: usize, total: usize, case: &'a CaseDef, fault: FaultKind, message: &'a str },
}

fn unsupported(case: &CaseDef, fault: FaultKind, ctx: &Ctx) -> CaseResult {
    let reason = format!(
        "fault {fault} does not apply to this case (it takes: {})",
        case.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    );
    CaseResult {
        case: case.id.into(),
        protocol: case.protocol.into(),
        description: case.description.into(),
        requirement: case.requirement.into(),
        side: "client".into(),
        implementation: Implementation::new("-", "-"),
        peer: Implementation::new("-", "-"),
        fault: fault.name().into(),
        engine: "none".into(),
        config: ctx.config.effective(&format!("{}.", case.protocol)),
        detected: false,
        detection_ms: None,
        deadline_ms: 0,
        expected: Expectation { min_ms: None, max_ms: None, formula: reason.clone(), spec: case.spec.into(), level: Level::Info },
        tolerance_ms: 0,
        verdict: Verdict::Unsupported,
        verdict_detail: reason,
        known_deviation: None,
        error: None,
        timeline: Vec::new(),
    }
}

/// Runs every selected case under every fault, in order.
pub fn run(
    ctx: &Ctx,
    cases: &[&'static CaseDef],
    faults: &[FaultKind],
    run_id: &str,
    command: Vec<String>,
    mut on: impl FnMut(Progress<'_>),
) -> Report {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let plan: Vec<Vec<FaultKind>> = cases.iter().map(|c| c.fixed_fault.map(|f| vec![f]).unwrap_or_else(|| faults.to_vec())).collect();
    let total = plan.iter().map(Vec::len).sum();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for (case, faults) in cases.iter().zip(plan) {
        for fault in faults {
            index += 1;
            if kaspec_harness::cleanup::interrupted() {
                break;
            }
            if case.fixed_fault != Some(fault) && !case.faults.contains(&fault) {
                let r = vec![unsupported(case, fault, ctx)];
                on(Progress::Done { index, total, case, fault, results: &r, elapsed: Duration::ZERO });
                results.extend(r);
                continue;
            }
            on(Progress::Start { index, total, case, fault, budget: (case.budget)(&ctx.config) });
            let started = Instant::now();
            match (case.run)(ctx, case, fault) {
                Ok(r) => {
                    on(Progress::Done { index, total, case, fault, results: &r, elapsed: started.elapsed() });
                    results.extend(r);
                }
                Err(_) if kaspec_harness::cleanup::interrupted() => break,
                Err(e) => {
                    let message = e.to_string();
                    on(Progress::Error { index, total, case, fault, message: &message });
                    errors.push(RunError { case: case.id.into(), fault: fault.name().into(), message });
                }
            }
        }
    }
    Report {
        schema_version: SCHEMA_VERSION,
        kaspec_version: env!("CARGO_PKG_VERSION").into(),
        run_id: run_id.into(),
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        testbed: "netns".into(),
        command,
        environment: kaspec_harness::caps::detected().map(|c| Environment::from_caps(&c)),
        results,
        errors,
    }
}

/// Writes `report.json` and `report.md` into `dir`.
pub fn write(report: &Report, dir: &Path) -> kaspec_harness::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| kaspec_harness::Error::io(format!("creating {}", dir.display()), e))?;
    report.write_json(&dir.join("report.json"))?;
    report.write_markdown(&dir.join("report.md"))
}

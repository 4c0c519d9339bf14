//! Runs a selection of cases × faults into a report, calling back with
//! progress. A harness error stops that case (never a verdict) and is
//! recorded; the run goes on with the next case.

use std::path::Path;
use std::time::{Duration, Instant};

use kaspec_harness::expect::Expectation;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::merge::unit_key;
use kaspec_harness::report::{
    CaseResult, Environment, Implementation, Partition, Report, RunError, Share, SCHEMA_VERSION,
};

use crate::case::{CaseDef, Docker};
use crate::ctx::Ctx;

/// The faults of the default matrix.
pub const DEFAULT_FAULTS: [FaultKind; 2] = [FaultKind::Blackhole, FaultKind::Reset];

pub enum Progress<'a> {
    Start {
        index: usize,
        total: usize,
        case: &'a CaseDef,
        fault: FaultKind,
        budget: Duration,
        run: usize,
        runs: usize,
    },
    Done {
        index: usize,
        total: usize,
        case: &'a CaseDef,
        fault: FaultKind,
        results: &'a [CaseResult],
        elapsed: Duration,
    },
    Error {
        index: usize,
        total: usize,
        case: &'a CaseDef,
        fault: FaultKind,
        message: &'a str,
    },
}

fn unsupported(case: &CaseDef, fault: FaultKind, ctx: &Ctx, reason: Option<String>) -> CaseResult {
    let reason = reason.unwrap_or_else(|| {
        format!(
            "fault {fault} does not apply to this case (it takes: {})",
            case.faults
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let j = kaspec_harness::judge::unsupported(reason.clone());
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
        expected: Expectation::either(reason, case.spec),
        budget: Default::default(),
        tolerance_ms: None,
        window_width_ms: None,
        verdict: j.verdict,
        verdict_detail: j.detail,
        checks: Vec::new(),
        known_deviation: None,
        error: None,
        timeline: Vec::new(),
        repeat: None,
        release: None,
        release_verdict: None,
        release_detail: None,
    }
}

/// The plan: every unit (case × fault) a run of `cases` under `faults`
/// executes, in order (a case with a fixed fault takes only that one).
pub fn plan(
    cases: &[&'static CaseDef],
    faults: &[FaultKind],
) -> Vec<(&'static CaseDef, FaultKind)> {
    cases
        .iter()
        .flat_map(|c| {
            c.fixed_fault
                .map(|f| vec![f])
                .unwrap_or_else(|| faults.to_vec())
                .into_iter()
                .map(move |f| (*c, f))
        })
        .collect()
}

/// Runs every selected case under every fault, in order, `repeat` times
/// each (repeated results are folded: median time, worst verdict, all runs kept).
/// With `share` (`--partition K/N`), only that share of the plan, which the
/// report records with the whole plan.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &Ctx,
    cases: &[&'static CaseDef],
    faults: &[FaultKind],
    repeat: usize,
    share: Option<Share>,
    run_id: &str,
    command: Vec<String>,
    mut on: impl FnMut(Progress<'_>),
) -> Report {
    let repeat = repeat.max(1);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let plan = plan(cases, faults);
    let partition = share.map(|s| Partition {
        index: s.index,
        count: s.count,
        plan: plan.iter().map(|(c, f)| unit_key(c.id, f.name())).collect(),
    });
    let units: Vec<(&CaseDef, FaultKind)> = plan
        .into_iter()
        .enumerate()
        .filter(|(i, _)| share.is_none_or(|s| s.takes(*i)))
        .map(|(_, u)| u)
        .collect();
    let total = units.len();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for (case, fault) in units {
        index += 1;
        if kaspec_harness::cleanup::interrupted() {
            break;
        }
        let not_here = if !case.takes(fault) {
            Some(None)
        } else {
            ctx.docker
                .as_ref()
                .and_then(|_| case.not_on_docker(fault))
                .map(Some)
        };
        if let Some(reason) = not_here {
            let r = vec![unsupported(case, fault, ctx, reason)];
            on(Progress::Done {
                index,
                total,
                case,
                fault,
                results: &r,
                elapsed: Duration::ZERO,
            });
            results.extend(r);
            continue;
        }
        let mut runs: Vec<CaseResult> = Vec::new();
        for run in 1..=repeat {
            if kaspec_harness::cleanup::interrupted() {
                break;
            }
            on(Progress::Start {
                index,
                total,
                case,
                fault,
                budget: (case.budget)(ctx),
                run,
                runs: repeat,
            });
            let started = Instant::now();
            match (case.run)(ctx, case, fault) {
                // Interrupted: the handler is tearing the case down under it, so
                // what it observed since is not a result (issue 14).
                Ok(_) if kaspec_harness::cleanup::interrupted() => break,
                Ok(mut r) => {
                    label_servers(ctx, case, &mut r);
                    on(Progress::Done {
                        index,
                        total,
                        case,
                        fault,
                        results: &r,
                        elapsed: started.elapsed(),
                    });
                    runs.extend(r);
                }
                Err(_) if kaspec_harness::cleanup::interrupted() => break,
                Err(e) => {
                    let message = e.to_string();
                    on(Progress::Error {
                        index,
                        total,
                        case,
                        fault,
                        message: &message,
                    });
                    errors.push(RunError {
                        case: case.id.into(),
                        fault: fault.name().into(),
                        message,
                    });
                }
            }
        }
        results.extend(fold_repeats(runs, repeat));
    }
    // Shared servers stop, and their testbed goes, with the run.
    ctx.shared.close();
    let environment = kaspec_harness::caps::detected().map(|c| {
        let mut env = Environment::from_caps(&c);
        for r in &results {
            for i in [&r.implementation, &r.peer] {
                if i.name != "-" && !env.implementations.contains(i) {
                    env.implementations.push(i.clone());
                }
            }
        }
        env
    });
    Report {
        schema_version: SCHEMA_VERSION,
        kaspec_version: env!("CARGO_PKG_VERSION").into(),
        run_id: run_id.into(),
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        testbed: match &ctx.docker {
            None => "netns".into(),
            Some(stack) => format!("docker: {}", stack.describe()),
        },
        command,
        environment,
        stale_deviations: crate::deviations::stale(&ctx.deviations, &results),
        results,
        errors,
        partition,
        parts: Vec::new(),
    }
}

/// On the docker testbed, the server's version is the image's: each result
/// names the container's image next to it.
fn label_servers(ctx: &Ctx, case: &CaseDef, results: &mut [CaseResult]) {
    let (
        Some(stack),
        Docker::Service {
            service,
            implementation,
        },
    ) = (&ctx.docker, case.docker)
    else {
        return;
    };
    let Some(container) = stack.containers.get(service) else {
        return;
    };
    let version = format!(
        "{} (image {})",
        container
            .version
            .as_deref()
            .unwrap_or("version not stated by the image"),
        container.image
    );
    for r in results.iter_mut() {
        for i in [&mut r.implementation, &mut r.peer] {
            if i.name == implementation {
                i.version = version.clone();
            }
        }
    }
}

/// Folds the results of repeated runs of one case × fault by result key.
fn fold_repeats(runs: Vec<CaseResult>, repeat: usize) -> Vec<CaseResult> {
    if repeat <= 1 {
        return runs;
    }
    let mut keys: Vec<String> = Vec::new();
    for r in &runs {
        if !keys.contains(&r.key()) {
            keys.push(r.key());
        }
    }
    keys.into_iter()
        .map(|k| CaseResult::fold(runs.iter().filter(|r| r.key() == k).cloned().collect()))
        .collect()
}

/// Writes `report.json`, `report.md`, `report.html` and `junit.xml` into `dir`.
pub fn write(report: &Report, dir: &Path) -> kaspec_harness::Result<()> {
    let io = |what: &Path, e| kaspec_harness::Error::io(format!("writing {}", what.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    report.write_json(&dir.join("report.json"))?;
    report.write_markdown(&dir.join("report.md"))?;
    let html = dir.join("report.html");
    std::fs::write(&html, kaspec_harness::report::html::html(report)).map_err(|e| io(&html, e))?;
    let junit = dir.join("junit.xml");
    std::fs::write(&junit, kaspec_harness::report::junit::junit(report)).map_err(|e| io(&junit, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_cases_by_faults_with_fixed_faults_once_and_shares_cover_it() {
        let cases = crate::registry::select(&["tcp/".to_string()]).unwrap();
        let plan = plan(&cases, &DEFAULT_FAULTS);
        let keys: Vec<String> = plan.iter().map(|(c, f)| unit_key(c.id, f.name())).collect();
        let fixed = cases.iter().filter(|c| c.fixed_fault.is_some()).count();
        assert_eq!(keys.len(), (cases.len() - fixed) * 2 + fixed, "{keys:?}");
        assert_eq!(
            keys[..2],
            [
                unit_key(cases[0].id, "blackhole"),
                unit_key(cases[0].id, "reset")
            ]
        );
        // Three shares: each unit exactly once.
        let shares: Vec<Share> = (1..=3).map(|k| Share { index: k, count: 3 }).collect();
        for i in 0..keys.len() {
            assert_eq!(shares.iter().filter(|s| s.takes(i)).count(), 1);
        }
    }
}

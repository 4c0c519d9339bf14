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

use crate::case::CaseDef;
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
        run: usize,
    },
    Error {
        index: usize,
        total: usize,
        case: &'a CaseDef,
        fault: FaultKind,
        message: &'a str,
        run: usize,
    },
    /// A unit run beside others was starved of CPU: its numbers are not
    /// reported, it runs again alone once the others are done.
    Starved {
        index: usize,
        total: usize,
        case: &'a CaseDef,
        fault: FaultKind,
        late_ms: u64,
        run: usize,
    },
}

/// `--jobs`'s default: units at once (see docs/scaling.md for the
/// measurement behind it).
pub const DEFAULT_JOBS: u32 = 4;

/// How a run goes besides what it selects.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Runs of each unit (`--repeat`).
    pub repeat: usize,
    /// `--partition K/N`: only that share of the plan.
    pub share: Option<Share>,
    /// Units at once (`--jobs`); 1 runs them one after the other, in plan order.
    pub jobs: usize,
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
        fleet: None,
        curve: None,
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

/// Runs every selected case under every fault, `repeat` times each
/// (repeated results are folded: median time, worst verdict, all runs
/// kept), `jobs` units at once (see [`crate::pool`]: longest first); the
/// results and errors are in plan order whatever the order of running.
/// With `share` (`--partition K/N`), only that share of the plan, which the
/// report records with the whole plan.
pub fn run(
    ctx: &Ctx,
    cases: &[&'static CaseDef],
    faults: &[FaultKind],
    opts: Options,
    run_id: &str,
    command: Vec<String>,
    mut on: impl FnMut(Progress<'_>),
) -> Report {
    let repeat = opts.repeat.max(1);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let plan = plan(cases, faults);
    let share = opts.share;
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
    // Each unit: its one `unsupported` result, or its runs (None: not run, interrupted).
    let mut outcomes: Vec<Result<Vec<Option<Ran>>, CaseResult>> = Vec::with_capacity(total);
    for (case, fault) in &units {
        let not_here = if !case.takes(*fault) {
            Some(None)
        } else {
            ctx.docker
                .as_ref()
                .and_then(|_| case.not_on_docker(*fault))
                .map(Some)
        };
        outcomes.push(match not_here {
            Some(reason) => Err(unsupported(case, *fault, ctx, reason)),
            None => Ok((0..repeat).map(|_| None).collect()),
        });
    }
    let mut notes = Vec::new();
    if opts.jobs <= 1 {
        serial(ctx, &units, &mut outcomes, &mut on);
    } else {
        notes = parallel(ctx, &units, &mut outcomes, opts.jobs, &mut on);
    }
    // Shared servers stop, and their testbed goes, with the run (a
    // parallel run has stopped them already, before its workers ended).
    ctx.shared.close();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for ((case, fault), outcome) in units.iter().zip(outcomes) {
        let runs = match outcome {
            Err(unsupported) => {
                results.push(unsupported);
                continue;
            }
            Ok(runs) => runs,
        };
        let mut kept = Vec::new();
        for ran in runs.into_iter().flatten() {
            match ran.outcome {
                Ok(r) => kept.extend(r),
                Err(message) => errors.push(RunError {
                    case: case.id.into(),
                    fault: fault.name().into(),
                    message,
                }),
            }
        }
        results.extend(fold_repeats(kept, repeat));
    }
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
        notes,
    }
}

/// One run of one unit.
struct Ran {
    /// Its results, or the harness error that stopped it.
    outcome: Result<Vec<CaseResult>, String>,
    elapsed: Duration,
}

impl Ran {
    /// The largest wake-up term among its results' budgets: how late this
    /// machine woke a thread at the instants its numbers are made of (the
    /// anchors, the fault in force, the detection; see `outcome.rs`).
    fn late_ms(&self) -> u64 {
        self.outcome
            .as_ref()
            .map(|r| r.iter().map(|r| r.budget.wake_ms).max().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Runs one unit once in the calling thread; None when interrupted (the
/// handler is tearing the case down under it, so what it observed since
/// is not a result, issue 14).
fn run_once(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Option<Ran> {
    let _unit = crate::shared::unit(fault);
    let started = Instant::now();
    let outcome = (case.run)(ctx, case, fault);
    if kaspec_harness::cleanup::interrupted() {
        return None;
    }
    let elapsed = started.elapsed();
    let outcome = outcome
        .map(|mut r| {
            label_servers(ctx, case, &mut r);
            r
        })
        .map_err(|e| e.to_string());
    Some(Ran { outcome, elapsed })
}

/// Tells `on` how run `run` of unit `index` went.
fn tell(
    on: &mut impl FnMut(Progress<'_>),
    index: usize,
    total: usize,
    (case, fault): (&CaseDef, FaultKind),
    run: usize,
    ran: &Ran,
) {
    let (index, run) = (index + 1, run + 1);
    match &ran.outcome {
        Ok(results) => on(Progress::Done {
            index,
            total,
            case,
            fault,
            results,
            elapsed: ran.elapsed,
            run,
        }),
        Err(message) => on(Progress::Error {
            index,
            total,
            case,
            fault,
            message,
            run,
        }),
    }
}

fn start(
    on: &mut impl FnMut(Progress<'_>),
    ctx: &Ctx,
    index: usize,
    total: usize,
    unit: (&CaseDef, FaultKind),
    run: usize,
    runs: usize,
) {
    let (case, fault) = unit;
    on(Progress::Start {
        index: index + 1,
        total,
        case,
        fault,
        budget: (case.budget)(ctx),
        run: run + 1,
        runs,
    });
}

mod schedule;
pub use schedule::STARVED_MS;
use schedule::*;

/// On the docker testbed, the server's version is the image's: each result
/// names the container's image next to it.
fn label_servers(ctx: &Ctx, case: &CaseDef, results: &mut [CaseResult]) {
    for (service, implementation) in case.docker.services() {
        let Some(version) = ctx.image_version(service) else {
            continue;
        };
        for r in results.iter_mut() {
            for i in [&mut r.implementation, &mut r.peer] {
                // A case against several services whose servers share a
                // name labels its results itself (http/server.rs).
                if i.name == implementation && !i.version.contains("(image ") {
                    i.version = version.clone();
                }
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
mod tests;

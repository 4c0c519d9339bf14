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

type Outcomes = [Result<Vec<Option<Ran>>, CaseResult>];

/// `--jobs 1`: one unit after the other, in plan order, in this thread.
fn serial(
    ctx: &Ctx,
    units: &[(&CaseDef, FaultKind)],
    outcomes: &mut Outcomes,
    on: &mut impl FnMut(Progress<'_>),
) {
    let total = units.len();
    for (index, (&(case, fault), outcome)) in units.iter().zip(outcomes.iter_mut()).enumerate() {
        if kaspec_harness::cleanup::interrupted() {
            break;
        }
        let runs = match outcome {
            Err(r) => {
                on(Progress::Done {
                    index: index + 1,
                    total,
                    case,
                    fault,
                    results: std::slice::from_ref(r),
                    elapsed: Duration::ZERO,
                    run: 1,
                });
                continue;
            }
            Ok(runs) => runs,
        };
        let n = runs.len();
        for (run, slot) in runs.iter_mut().enumerate() {
            if kaspec_harness::cleanup::interrupted() {
                break;
            }
            start(on, ctx, index, total, (case, fault), run, n);
            let Some(ran) = run_once(ctx, case, fault) else {
                break;
            };
            tell(on, index, total, (case, fault), run, &ran);
            *slot = Some(ran);
        }
    }
}

/// A unit that ran beside others is starved when the wake-up term of one
/// of its results' budgets exceeds this: at an instant that result is
/// made of, a thread woke that much later than asked (the probe of
/// `kaspec_harness::wake`), so its number and its allowance may have been
/// moved by the other units. Its results are then not reported: it runs
/// again alone. From measurement (docs/scaling.md): no result of the
/// default matrix run alone on this 2-core machine had a wake-up term
/// above 4 ms.
pub const STARVED_MS: u64 = 5;

/// `--jobs N`: units on N workers, longest first; a run starved of CPU
/// runs again alone at the end. Returns the report's notes on them.
///
/// On the docker testbed the servers are the compose stack's containers,
/// one per service for every unit at once: a `freeze` (SIGSTOP of the
/// container's server) would stop the others' server too, so those units
/// run alone at the end (the netns testbed gives each unit its own
/// server, and a shared server's lease holds it alone, see `shared.rs`);
/// so do the fleet cases.
fn parallel(
    ctx: &Ctx,
    units: &[(&CaseDef, FaultKind)],
    outcomes: &mut Outcomes,
    jobs: usize,
    on: &mut impl FnMut(Progress<'_>),
) -> Vec<String> {
    let total = units.len();
    // The jobs: every run of every unit that runs here.
    let mut list: Vec<(usize, usize)> = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(r) => {
                let (case, fault) = units[index];
                on(Progress::Done {
                    index: index + 1,
                    total,
                    case,
                    fault,
                    results: std::slice::from_ref(r),
                    elapsed: Duration::ZERO,
                    run: 1,
                });
            }
            Ok(runs) => list.extend((0..runs.len()).map(|run| (index, run))),
        }
    }
    let runs_of = |index: usize| outcomes[index].as_ref().map(|r| r.len()).unwrap_or(1);
    let runs: Vec<usize> = (0..total).map(runs_of).collect();
    // The estimate: how long the case may take with this configuration (its
    // `budget`, from the configuration's windows), the same for every fault.
    let estimates: Vec<Duration> = list
        .iter()
        .map(|(i, _)| (units[*i].0.budget)(ctx))
        .collect();
    let mut done: Vec<Option<Ran>> = list.iter().map(|_| None).collect();
    let mut starved: Vec<usize> = Vec::new();
    let mut notes = Vec::new();
    // A fleet (`…/fleet`, up to 20,000 connections cut at once) loads the
    // CPU enough to starve its neighbours, and would be starved by them: it
    // runs alone at the end too.
    let alone = |job: &usize| {
        let (case, fault) = units[list[*job].0];
        (ctx.docker.is_some() && fault == FaultKind::Freeze) || case.id.ends_with("/fleet")
    };
    let (mut at_end, order): (Vec<usize>, Vec<usize>) = crate::pool::longest_first(&estimates)
        .into_iter()
        .partition(alone);
    crate::pool::run(
        jobs,
        order,
        |job| {
            let (index, _) = list[job];
            run_once(ctx, units[index].0, units[index].1)
        },
        kaspec_harness::cleanup::interrupted,
        |event| match event {
            crate::pool::Event::Started(job) => {
                let (index, run) = list[job];
                start(on, ctx, index, total, units[index], run, runs[index]);
            }
            crate::pool::Event::Finished(job, ran) => {
                let (index, run) = list[job];
                let (case, fault) = units[index];
                let ran = match ran {
                    Ok(Some(ran)) => ran,
                    Ok(None) => return,
                    Err(panic) => Ran {
                        outcome: Err(panic),
                        elapsed: Duration::ZERO,
                    },
                };
                if ran.late_ms() > STARVED_MS {
                    on(Progress::Starved {
                        index: index + 1,
                        total,
                        case,
                        fault,
                        late_ms: ran.late_ms(),
                        run: run + 1,
                    });
                    starved.push(job);
                } else {
                    tell(on, index, total, units[index], run, &ran);
                }
                done[job] = Some(ran);
            }
            crate::pool::Event::Drained => {
                // Alone, in plan order, with the workers (and the shared
                // servers they started) still alive; then those servers stop.
                at_end.extend(&starved);
                at_end.sort();
                for &job in &at_end {
                    let (index, run) = list[job];
                    let (case, fault) = units[index];
                    let before = done[job].take().map(|r| r.late_ms());
                    if kaspec_harness::cleanup::interrupted() {
                        continue;
                    }
                    start(on, ctx, index, total, units[index], run, runs[index]);
                    let Some(ran) = run_once(ctx, case, fault) else {
                        continue;
                    };
                    tell(on, index, total, units[index], run, &ran);
                    let Some(before) = before else {
                        done[job] = Some(ran);
                        continue;
                    };
                    let run_note = if runs[index] > 1 {
                        format!(" run {}", run + 1)
                    } else {
                        String::new()
                    };
                    let alone = if ran.late_ms() > STARVED_MS {
                        format!("; alone still {} ms: this machine is loaded by more than this run (the budgets carry it)", ran.late_ms())
                    } else {
                        format!("; alone {} ms", ran.late_ms())
                    };
                    notes.push(format!(
                        "{} × {fault}{run_note}: run again alone: starved of CPU beside other units (wake-up term {before} ms, limit {STARVED_MS} ms){alone}",
                        case.id
                    ));
                    done[job] = Some(ran);
                }
                ctx.shared.close();
            }
        },
    );
    for (job, ran) in done.into_iter().enumerate() {
        let (index, run) = list[job];
        if let Ok(runs) = &mut outcomes[index] {
            runs[run] = ran;
        }
    }
    notes
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

    // --- jobs: fake units (pure scheduling logic; real units: tests/it/jobs.rs)

    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ctx() -> Ctx {
        Ctx {
            config: crate::registry::config(),
            run_dir: std::env::temp_dir(),
            fixtures: std::env::temp_dir(),
            serve: crate::ctx::ServeCommand {
                program: "true".into(),
                args: vec![],
            },
            deviations: vec![],
            shift_window_ms: 0,
            network: Default::default(),
            shared: Default::default(),
            docker: None,
            client: None,
        }
    }

    /// A unit that sleeps its budget's tenth and reports one result whose
    /// wake-up term is what `wake` says for this call.
    fn result(
        ctx: &Ctx,
        case: &CaseDef,
        fault: FaultKind,
        wake: u64,
    ) -> kaspec_harness::Result<Vec<CaseResult>> {
        std::thread::sleep((case.budget)(ctx) / 10);
        let mut r = unsupported(case, fault, ctx, Some("fake".into()));
        r.budget.wake_ms = wake;
        Ok(vec![r])
    }
    static STARVING_RUNS: AtomicUsize = AtomicUsize::new(0);
    const fn fake(
        id: &'static str,
        budget: fn(&Ctx) -> Duration,
        run: fn(&Ctx, &CaseDef, FaultKind) -> kaspec_harness::Result<Vec<CaseResult>>,
    ) -> CaseDef {
        CaseDef {
            id,
            protocol: "fake",
            spec: "",
            quote: "",
            description: "",
            requirement: "",
            faults: &[FaultKind::Blackhole, FaultKind::Reset],
            fixed_fault: None,
            docker: Docker::NotHere("fake"),
            run,
            budget,
        }
    }
    static SHORT: CaseDef = fake(
        "fake/short",
        |_| Duration::from_millis(500),
        |c, d, f| result(c, d, f, 1),
    );
    static LONG: CaseDef = fake(
        "fake/long",
        |_| Duration::from_millis(3000),
        |c, d, f| result(c, d, f, 1),
    );
    // Starved (wake-up term 20 ms) the first time it runs, then not.
    static STARVING: CaseDef = fake(
        "fake/starving",
        |_| Duration::from_millis(1000),
        |c, d, f| {
            result(
                c,
                d,
                f,
                if STARVING_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
                    20
                } else {
                    1
                },
            )
        },
    );

    fn go(cases: &[&'static CaseDef], jobs: usize) -> (Report, Vec<String>) {
        let mut seen = Vec::new();
        let opts = Options {
            repeat: 1,
            share: None,
            jobs,
        };
        let report = run(
            &ctx(),
            cases,
            &DEFAULT_FAULTS,
            opts,
            "r",
            vec![],
            |p| match p {
                Progress::Start { case, fault, .. } => {
                    seen.push(format!("start {} {fault}", case.id))
                }
                Progress::Starved { case, fault, .. } => {
                    seen.push(format!("starved {} {fault}", case.id))
                }
                _ => {}
            },
        );
        (report, seen)
    }

    #[test]
    fn jobs_start_longest_first_and_report_in_plan_order() {
        let keys = |r: &Report| r.results.iter().map(|r| r.key()).collect::<Vec<_>>();
        let (serial, order) = go(&[&SHORT, &LONG], 1);
        assert_eq!(
            order,
            [
                "start fake/short blackhole",
                "start fake/short reset",
                "start fake/long blackhole",
                "start fake/long reset"
            ]
        );
        // No timing assertion here (speed belongs in benches/run.sh; a
        // loaded machine made it fail): the order shows the schedule.
        // Two workers: the two long units are taken first, and no short one
        // starts before a worker is free (which of the two long ones records
        // its start first is the threads' race).
        let (parallel, order) = go(&[&SHORT, &LONG], 2);
        let mut first = order[..2].to_vec();
        first.sort();
        assert_eq!(
            first,
            ["start fake/long blackhole", "start fake/long reset"],
            "{order:?}"
        );
        assert_eq!(keys(&parallel), keys(&serial));
        assert!(parallel.notes.is_empty() && serial.notes.is_empty());
    }

    #[test]
    fn a_starved_unit_runs_again_alone_and_the_run_says_so() {
        let (r, seen) = go(&[&STARVING, &SHORT], 3);
        // Its first run (blackhole or reset, whichever started first) was
        // starved: not reported, run again once the others were done.
        let starved: Vec<&String> = seen.iter().filter(|s| s.starts_with("starved")).collect();
        assert_eq!(starved.len(), 1, "{seen:?}");
        let again = starved[0].replace("starved", "start");
        assert_eq!(seen.last(), Some(&again), "{seen:?}");
        assert_eq!(STARVING_RUNS.load(Ordering::SeqCst), 3);
        assert!(
            r.results.iter().all(|x| x.budget.wake_ms == 1),
            "only the run alone is reported"
        );
        assert_eq!(r.results.len(), 4);
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(
            r.notes[0].starts_with("fake/starving × ")
                && r.notes[0].contains("wake-up term 20 ms, limit 5 ms); alone 1 ms"),
            "{}",
            r.notes[0]
        );
        // One unit at a time never reruns: its numbers are as measured.
        STARVING_RUNS.store(0, Ordering::SeqCst);
        let (r, seen) = go(&[&STARVING], 1);
        assert!(
            r.notes.is_empty() && !seen.iter().any(|s| s.starts_with("starved")),
            "{seen:?}"
        );
    }
}

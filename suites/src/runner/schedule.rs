//! How the units of a plan are run: one after the other (`--jobs 1`), or
//! on N workers, longest first, with a unit starved of CPU beside the
//! others run again alone (see docs/scaling.md).

use super::*;

pub(super) type Outcomes = [Result<Vec<Option<Ran>>, CaseResult>];

/// `--jobs 1`: one unit after the other, in plan order, in this thread.
pub(super) fn serial(
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
pub(super) fn parallel(
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

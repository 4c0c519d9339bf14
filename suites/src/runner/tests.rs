use super::*;
use crate::case::Docker;

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
            Progress::Start { case, fault, .. } => seen.push(format!("start {} {fault}", case.id)),
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

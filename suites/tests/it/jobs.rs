//! `--jobs`: the same numbers in parallel. A representative subset — units
//! in their own testbeds (TCP_USER_TIMEOUT) and
//! units leasing one shared PostgreSQL at once (the client's keep-alive,
//! the server's) — runs through the runner
//! one unit at a time, then with the default number of jobs. Both runs
//! must give the same result keys in the same order and the same verdicts,
//! and each detection must sit where it sat serially: its offset into its
//! window (the window moves with the observed phase; its width is what the
//! model leaves to the phase) may differ by at most that width plus the
//! two results' budgets.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::{CaseResult, Report};
use kaspec_harness::server::{Server, ServerSpec};
use kaspec_suites::registry;
use kaspec_suites::runner::{self, Options, DEFAULT_FAULTS, DEFAULT_JOBS, STARVED_MS};
use kaspec_suites::shared::{self, Started};

use crate::common::{ctx, show};

const SUBSET: &[&str] = &[
    "tcp/rfc5482-3/1",
    "postgres/libpq-keepalives/1",
    "postgres/pg15-20.3-tcp_keepalives/1",
];
const SETS: &[&str] = &[
    "tcp.user_timeout=1500ms",
    "postgres.keepalives_idle=1s",
    "postgres.keepalives_interval=1s",
    "postgres.keepalives_retries=2",
];

fn run(jobs: usize) -> (Report, std::time::Duration) {
    let ctx = ctx(SETS);
    let cases =
        registry::select(&SUBSET.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let started = Instant::now();
    let report = runner::run(
        &ctx,
        &cases,
        &DEFAULT_FAULTS,
        Options {
            repeat: 1,
            share: None,
            jobs,
        },
        "jobs-test",
        vec![],
        |_| {},
    );
    (report, started.elapsed())
}

/// Where the detection sits in its window, and how far that may move.
fn offset(r: &CaseResult) -> Option<(i64, u64)> {
    let d = r.detection_ms? as i64;
    let lo = r.expected.min_ms.unwrap_or(0) as i64;
    Some((d - lo, r.window_width_ms.unwrap_or(0)))
}

#[test]
fn jobs_give_the_serial_keys_verdicts_and_detection_times() {
    let (serial, serial_took) = run(1);
    let (parallel, parallel_took) = run(DEFAULT_JOBS as usize);
    assert!(
        serial.errors.is_empty() && parallel.errors.is_empty(),
        "{:?} {:?}",
        serial.errors,
        parallel.errors
    );
    let keys = |r: &Report| r.results.iter().map(|r| r.key()).collect::<Vec<_>>();
    assert_eq!(
        keys(&parallel),
        keys(&serial),
        "the same results in the same (plan) order"
    );
    assert!(serial.results.len() >= 10, "{}", serial.results.len());
    for (s, p) in serial.results.iter().zip(&parallel.results) {
        assert_eq!(
            (p.verdict, p.release_verdict, &p.known_deviation),
            (s.verdict, s.release_verdict, &s.known_deviation),
            "{}\n{}",
            show(s),
            show(p)
        );
        match (offset(s), offset(p)) {
            (None, None) => assert_eq!(p.detected, s.detected),
            (Some((os, ws)), Some((op, wp))) => {
                let allowed = ws.max(wp) + s.allowance_ms() + p.allowance_ms();
                assert!(os.abs_diff(op) <= allowed, "{}: offset {os} ms serially, {op} ms in parallel (allowed {allowed} ms)\n{}\n{}", s.key(), show(s), show(p));
            }
            _ => panic!("detected in one run only:\n{}\n{}", show(s), show(p)),
        }
    }
    // A number moved by contention is not reported: every parallel result
    // was measured unstarved, or its unit ran again alone and says so.
    for r in &parallel.results {
        let named = parallel
            .notes
            .iter()
            .any(|n| n.starts_with(&format!("{} × {}", r.case, r.fault)));
        assert!(
            r.budget.wake_ms <= STARVED_MS || named,
            "{}\n{:?}",
            show(r),
            parallel.notes
        );
    }
    eprintln!(
        "serial {serial_took:?}, --jobs {DEFAULT_JOBS} {parallel_took:?}; notes: {:?}",
        parallel.notes
    );
    assert!(
        parallel_took < serial_took,
        "--jobs {DEFAULT_JOBS} took {parallel_took:?}, serially {serial_took:?}"
    );
}

/// Starts kaspec's TCP echo server as a shared server of `tb`.
fn echo(
    ctx: &kaspec_suites::Ctx,
    tb: &kaspec_harness::testbed::Testbed,
) -> kaspec_harness::Result<Started> {
    let addr = std::net::SocketAddrV4::new(tb.server.addr, 7300);
    let mut args = ctx.serve.args.clone();
    args.extend(["tcp".into(), "--listen".into(), addr.to_string()]);
    let spec = ServerSpec {
        name: "echo".into(),
        program: ctx.serve.program.clone(),
        args,
        addr,
        ready_within: Duration::from_secs(5),
        ..Default::default()
    };
    Ok(Started {
        processes: vec![Server::start(tb, &spec)?],
        dirs: vec![],
    })
}

/// Whether a second lease of the shared echo server is granted while a
/// first, taken in a unit under `first`, is held (a unit under `second`
/// asks for it on another thread).
fn granted_beside(ctx: &kaspec_suites::Ctx, first: FaultKind, second: FaultKind) -> bool {
    let _unit = shared::unit(first);
    let held = ctx
        .shared
        .lease("echo", || ctx.testbed(), |tb| echo(ctx, tb))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _unit = shared::unit(second);
            let lease = ctx
                .shared
                .lease(
                    "echo",
                    || unreachable!("built"),
                    |_| unreachable!("running"),
                )
                .unwrap();
            let _ = tx.send(lease.testbed().tag.clone());
        });
        let granted = rx.recv_timeout(Duration::from_millis(500)).is_ok();
        // The second lease comes once the first is given back.
        let tag = held.testbed().tag.clone();
        drop(held);
        if !granted {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
                tag,
                "the same shared testbed"
            );
        }
        granted
    })
}

/// Units that lease one shared server at once: side by side under faults
/// that touch only their own flow; alone under a fault that stops the
/// server (freeze, crash) or impairs the router's links (delay, loss), and
/// outside a runner's unit (as cases ran before `--jobs`).
#[test]
fn leases_of_a_shared_server_hold_alone_only_what_their_fault_touches() {
    let ctx = ctx(&[]);
    use FaultKind::*;
    assert!(granted_beside(&ctx, Blackhole, Reset));
    assert!(granted_beside(&ctx, NatExpiry, BlackholeUp));
    assert!(
        !granted_beside(&ctx, Blackhole, Freeze),
        "freeze waits for the others"
    );
    assert!(
        !granted_beside(&ctx, Crash, Blackhole),
        "nothing beside a crash"
    );
    assert!(
        !granted_beside(&ctx, Blackhole, Delay),
        "delay holds the whole bed"
    );
    // Outside a unit: alone.
    let first = ctx
        .shared
        .lease(
            "echo",
            || unreachable!("built"),
            |_| unreachable!("running"),
        )
        .unwrap();
    assert_eq!(
        first.hold(),
        shared::Hold {
            bed: true,
            server: true
        }
    );
    assert_eq!(first.starts(), 1, "one server for all of it");
    drop(first);
    ctx.shared.close();
}

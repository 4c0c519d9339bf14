//! The AMQP cases for real: lapin in the client namespace against RabbitMQ
//! nodes started once in the shared testbed (fixtures/rabbitmq/), with a
//! 2 s heartbeat. One test runs every case × fault on one context so the
//! run starts each node once (a node takes ~6 s to start); it asserts what
//! the configuration predicts for each, that the node was started once (and
//! once more after `crash` killed it), and that nothing is left behind.
//! Needs root (network namespaces) and the rabbitmq-server package.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use kaspec_suites::Ctx;
use std::path::PathBuf;

use crate::common::{
    assert_not_detected as assert_quiet, assert_pass, ctx, run_in as run, show, side,
};

fn error_of(r: &CaseResult) -> &str {
    r.error.as_deref().unwrap_or_default()
}

/// How many times the shared group `name` was started (it must be running).
fn starts(ctx: &Ctx, name: &'static str) -> usize {
    let lease = ctx
        .shared
        .lease(
            name,
            || panic!("the shared testbed should exist"),
            |_| panic!("{name} should be running"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    lease.starts()
}

#[test]
fn amqp_every_case_and_fault_against_one_shared_rabbitmq() {
    let ctx = ctx(&["amqp.heartbeat=2s"]);

    // Negotiation against the configured broker (heartbeat 60).
    let r = run(&ctx, "amqp/0-9-1-2.3.3/1", FaultKind::None);
    for s in ["client", "server"] {
        assert_eq!(side(&r, s).verdict, Verdict::Pass, "{}", show(side(&r, s)));
    }
    let client = side(&r, "client");
    let cfg = |k: &str| {
        client
            .config
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k}: {}", show(client)))
    };
    assert_eq!(cfg("rabbitmq.heartbeat"), "60s (rabbitmq.conf)");
    assert_eq!(
        cfg("negotiated[request=2]"),
        "lapin 2s, Tune-Ok 2s, broker 2s"
    );
    assert_eq!(
        cfg("negotiated[request=30]"),
        "lapin 30s, Tune-Ok 30s, broker 30s"
    );
    assert_eq!(
        cfg("negotiated[request=120]"),
        "lapin 60s, Tune-Ok 60s, broker 60s"
    );
    assert_eq!(
        cfg("negotiated[request=unset]"),
        "lapin 60s, Tune-Ok 60s, broker 60s"
    );
    // The finding: asking for 0 does not turn heartbeats off.
    assert_eq!(
        cfg("negotiated[request=0]"),
        "lapin 60s, Tune-Ok 60s, broker 60s"
    );
    assert!(
        client.verdict_detail.contains("cannot turn heartbeats off"),
        "{}",
        client.verdict_detail
    );

    // Issue 14: every file the node writes is under the run's scratch
    // directory (its working directory takes Mnesia's core dump), and it
    // never starts an `epmd -daemon` that would outlive the teardown.
    {
        let lease = ctx
            .shared
            .lease(
                "rabbitmq",
                || panic!("the shared testbed should exist"),
                |_| panic!("rabbitmq should be running"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = lease.server().pid();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        let tag = &lease.testbed().tag;
        assert_eq!(
            cwd,
            std::env::temp_dir().join(format!("kaspec-{tag}-rabbitmq")),
            "the node works in its scratch directory"
        );
        let env = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
            .into_owned();
        assert!(
            env.split('\0').any(|v| v == "ERL_FLAGS=-start_epmd false"),
            "{env}"
        );
        assert!(
            env.split('\0')
                .any(|v| v.starts_with("ERL_CRASH_DUMP=") && v.contains(cwd.to_str().unwrap())),
            "{env}"
        );
    }

    // Negotiation against a broker proposing 0: the request decides.
    let r = run(&ctx, "amqp/0-9-1-2.3.3/2", FaultKind::None);
    for s in ["client", "server"] {
        assert_eq!(side(&r, s).verdict, Verdict::Pass, "{}", show(side(&r, s)));
    }
    let client = side(&r, "client");
    assert_eq!(
        client.config["negotiated[request=0]"],
        "lapin 0s, Tune-Ok 0s, broker 0s"
    );
    assert_eq!(
        client.config["negotiated[request=600]"],
        "lapin 600s, Tune-Ok 600s, broker 600s"
    );
    assert_eq!(
        client.config["negotiated[request=2]"],
        "lapin 2s, Tune-Ok 2s, broker 2s"
    );
    assert!(
        !client.verdict_detail.contains("cannot turn"),
        "{}",
        client.verdict_detail
    );

    let idle = "amqp/0-9-1-4.2.7/1";
    // Both sides detect a dead path, each by its own heartbeat check (or,
    // under reset, at its next heartbeat).
    for fault in [
        FaultKind::Blackhole,
        FaultKind::BlackholeUp,
        FaultKind::BlackholeDown,
        FaultKind::Reset,
    ] {
        let r = run(&ctx, idle, fault);
        let (c, s) = (side(&r, "client"), side(&r, "server"));
        assert_pass(c);
        assert_pass(s);
        assert_eq!(
            c.config["negotiated"],
            "2s (lapin), Tune-Ok 2s",
            "{}",
            show(c)
        );
        assert_eq!(c.engine, "nftables");
        match fault {
            FaultKind::Reset => {
                assert!(error_of(c).contains("ConnectionReset"), "{}", show(c));
                // The next heartbeat meets the RST: within one H/2 = 1 s.
                assert!(
                    c.expected.max_ms.unwrap() <= 1000 && s.expected.max_ms.unwrap() <= 1000,
                    "{}",
                    show(c)
                );
            }
            // lapin's own check, or the broker's RST when the broker is first.
            FaultKind::BlackholeUp => {
                assert!(
                    error_of(c).contains("MissingHeartbeatError")
                        || error_of(c).contains("ConnectionReset"),
                    "{}",
                    show(c)
                )
            }
            _ => assert!(error_of(c).contains("MissingHeartbeatError"), "{}", show(c)),
        }
        if fault != FaultKind::Reset {
            // Two heartbeat intervals or longer of silence (§4.2.7), measured
            // from before the fault: at least 2H − H/2 after it.
            assert!(
                c.detection_ms.unwrap() >= 3000 - c.allowance_ms(),
                "{}",
                show(c)
            );
            assert!(
                s.detection_ms.unwrap() >= 3000 - s.allowance_ms(),
                "{}",
                show(s)
            );
            // RabbitMQ: within 3T of the last byte it got (before the fault,
            // or lapin's first heartbeat after it under blackhole-down).
            let bound = if fault == FaultKind::BlackholeDown {
                7000
            } else {
                6000
            };
            assert!(
                s.detection_ms.unwrap() <= bound + s.allowance_ms(),
                "{}",
                show(s)
            );
        }
    }

    // A frozen broker: lapin's heartbeats notice; the broker cannot.
    let r = run(&ctx, idle, FaultKind::Freeze);
    assert_pass(side(&r, "client"));
    assert!(error_of(side(&r, "client")).contains("MissingHeartbeatError"));
    assert_quiet(side(&r, "server"), Verdict::Pass);

    // A live but slow or lossy path: 2H − H/2 = 3 s of slack beats 300 ms.
    for fault in [FaultKind::Delay, FaultKind::Loss] {
        let r = run(&ctx, idle, fault);
        assert_quiet(side(&r, "client"), Verdict::Pass);
        assert_quiet(side(&r, "server"), Verdict::Pass);
    }

    assert_eq!(
        starts(&ctx, "rabbitmq"),
        1,
        "one broker for every case so far"
    );
    assert_eq!(starts(&ctx, "rabbitmq-hb0"), 1);

    // The broker dies without a FIN: lapin's heartbeats notice.
    let r = run(&ctx, idle, FaultKind::Crash);
    assert_pass(side(&r, "client"));
    assert_quiet(side(&r, "server"), Verdict::Informational);
    assert!(side(&r, "server").expected.formula.contains("crashed"));
    // The next case gets a new broker, and it works.
    let r = run(&ctx, idle, FaultKind::Blackhole);
    assert_pass(side(&r, "client"));
    assert_pass(side(&r, "server"));
    assert_eq!(
        starts(&ctx, "rabbitmq"),
        2,
        "restarted once, after the crash"
    );

    let tag = ctx
        .shared
        .lease("rabbitmq", || panic!("exists"), |_| panic!("running"))
        .map(|l| l.testbed().tag.clone())
        .unwrap();
    assert_closed_without_leftovers(&ctx, &tag, &["rabbitmq", "rabbitmq-hb0"]);
}

/// Closes the shared servers of `ctx` and checks that nothing of testbed
/// `tag` is left: its nodes' data directories (in use before), namespaces,
/// processes.
fn assert_closed_without_leftovers(ctx: &Ctx, tag: &str, groups: &[&str]) {
    let dirs: Vec<PathBuf> = groups
        .iter()
        .map(|g| std::env::temp_dir().join(format!("kaspec-{tag}-{g}")))
        .collect();
    assert!(
        dirs.iter().all(|d| d.join("mnesia").is_dir()),
        "data directories in use: {dirs:?}"
    );
    ctx.shared.close();
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let namespaces = std::fs::read_dir("/run/netns")
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(
        !namespaces.iter().any(|n| n.contains(tag)),
        "{namespaces:?}"
    );
    let ours = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .filter(|env| {
            env.split(|b| *b == 0)
                .any(|v| v == format!("KASPEC_RUN_TAG={tag}").as_bytes())
        })
        .count();
    assert_eq!(ours, 0, "processes of run {tag} left behind");
}

/// The NAT case with N = 4 s on one context (one NAT testbed, one broker):
/// heartbeat 2 s (H/2 = 1 s < N) keeps the mapping; 10 s (H/2 = 5 s ≥ N)
/// loses it, and both ends notice in their windows.
#[test]
fn amqp_heartbeats_through_a_nat() {
    let id = "amqp/0-9-1-4.2.7/2";
    let mut ctx = ctx(&["amqp.heartbeat=2s"]);
    ctx.network.nat_idle_timeout = Some(std::time::Duration::from_secs(4));
    let lease_nat = |ctx: &Ctx| {
        ctx.shared
            .lease_in(
                "nat-4s",
                "rabbitmq",
                || panic!("the NAT testbed should exist"),
                |_| panic!("the broker should be running"),
            )
            .map(|l| {
                (
                    l.testbed().tag.clone(),
                    l.starts(),
                    l.testbed().nat_idle_timeout,
                )
            })
            .unwrap_or_else(|e| panic!("{e}"))
    };

    // Kept: heartbeats every second refresh the mapping.
    let r = run(&ctx, id, FaultKind::NatExpiry);
    for s in ["client", "server"] {
        let r = side(&r, s);
        assert_quiet(r, Verdict::Pass);
        assert_eq!(
            (r.expected.level, r.expected.max_ms),
            (kaspec_harness::expect::Level::Must, None),
            "{}",
            show(r)
        );
        assert_eq!(r.config["negotiated"], "2s (lapin), Tune-Ok 2s");
        assert_eq!(r.config["network.nat_idle_timeout"], "4000ms");
        assert_eq!(r.fault, "nat-expiry");
    }
    // Alive, not merely undetected: the broker's heartbeats kept arriving
    // for the whole watch (12 s from the would-be expiry, one a second).
    let c = side(&r, "client");
    let read: usize = error_of(c)
        .strip_prefix("no error; lapin read ")
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", show(c)));
    assert!(read >= 10, "{}", show(c));
    // lapin closed it; the broker's end went with it.
    let release = side(&r, "server")
        .release
        .as_ref()
        .unwrap_or_else(|| panic!("{}", show(side(&r, "server"))));
    assert!(release.clean, "{release:?}");

    // Broken: the mapping expires N after the handshake, before the first heartbeat.
    ctx.config.set_pair("amqp.heartbeat=10s").unwrap();
    let r = run(&ctx, id, FaultKind::NatExpiry);
    let (c, s) = (side(&r, "client"), side(&r, "server"));
    assert_pass(c);
    assert_pass(s);
    assert_eq!(c.config["negotiated"], "10s (lapin), Tune-Ok 10s");
    assert!(error_of(c).contains("MissingHeartbeatError"), "{}", show(c));
    // lapin: (2H, 2.5H] after its last read, − N; the broker: 3T after
    // Tune-Ok (its first receiver wake after the handshake + 2T), − N.
    let (lo, hi) = (c.expected.min_ms.unwrap(), c.expected.max_ms.unwrap());
    assert!(
        (15_980..=16_020).contains(&lo) && (20_980..=21_020).contains(&hi),
        "{}",
        show(c)
    );
    let (lo, hi) = (s.expected.min_ms.unwrap(), s.expected.max_ms.unwrap());
    assert!(lo == hi && (25_980..=26_020).contains(&lo), "{}", show(s));
    assert!(
        c.detection_ms.unwrap() < s.detection_ms.unwrap(),
        "lapin (≤ 21 s) before the broker (26 s)"
    );
    assert!(s.release.as_ref().is_some_and(|r| r.clean), "{}", show(s));

    let (tag, starts, nat) = lease_nat(&ctx);
    assert_eq!(
        (starts, nat),
        (1, Some(std::time::Duration::from_secs(4))),
        "one broker on one NAT testbed for both"
    );
    assert_closed_without_leftovers(&ctx, &tag, &["rabbitmq"]);
}

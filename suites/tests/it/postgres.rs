//! The PostgreSQL cases for real: tokio-postgres in the client namespace, a
//! real PostgreSQL (the distribution's package) in the server namespace,
//! started once and shared by every case of a test (as in a run), faults on
//! the router. Server settings come from fixtures/postgres/kaspec.conf
//! (keep-alive 2 s / 1 s / 3, idle_session_timeout 1.5 s, check interval
//! 0.5 s); the client's are set per step. Needs root and postgresql.

use kaspec_harness::expect::Verdict;
use kaspec_harness::fault::FaultKind;
use kaspec_harness::report::CaseResult;
use kaspec_suites::Ctx;

use crate::common::{assert_pass, assert_quiet, error, run_in as run, set, show, side};

fn ctx() -> Ctx {
    crate::common::ctx(&[])
}

/// When an event of the timeline happened (ms after the fault).
fn event(r: &CaseResult, what: &str) -> Option<i64> {
    r.timeline
        .iter()
        .find(|e| e.what.contains(what))
        .map(|e| e.t_ms)
}

const KA: &[&str] = &[
    "postgres.keepalives_idle=1s",
    "postgres.keepalives_interval=1s",
    "postgres.keepalives_retries=2",
];

#[test]
fn postgres_every_case_on_one_shared_server() {
    let mut ctx = ctx();
    set(&mut ctx, KA);

    // 1. Idle + blackhole: the client's keep-alive (1 + 2×1 s) fails the
    // Connection future with ETIMEDOUT; the server's (2 + 3×1 s) ends its socket.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::Blackhole);
    let (client, server) = (side(&r, "client"), side(&r, "server"));
    assert_pass(client);
    assert_pass(server);
    assert!(
        error(client).contains("TimedOut") && error(client).contains("Connection future"),
        "{}",
        show(client)
    );
    assert!(
        client.detection_ms.unwrap() < 3200 && server.detection_ms.unwrap() > 4000,
        "{}\n{}",
        show(client),
        show(server)
    );
    // tokio-postgres really set what it was given on its socket.
    assert!(
        client.config["postgres.socket"].contains("TCP_KEEPIDLE=1s TCP_KEEPINTVL=1s TCP_KEEPCNT=2"),
        "{}",
        show(client)
    );
    assert_eq!(client.implementation.name, "tokio-postgres");
    assert_eq!(server.implementation.name, "postgresql");
    assert!(
        server.implementation.version.starts_with(char::is_numeric),
        "{}",
        show(server)
    );

    // Reset: each side's first probe is answered by RST.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::Reset);
    assert_pass(side(&r, "client"));
    assert!(
        error(side(&r, "client")).contains("ConnectionReset"),
        "{}",
        show(side(&r, "client"))
    );
    assert!(side(&r, "client").detection_ms.unwrap() < 1200);

    // A frozen backend: both kernels keep talking, nobody notices.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::Freeze);
    assert_quiet(side(&r, "client"));
    assert_quiet(side(&r, "server"));
    assert_eq!(side(&r, "client").engine, "SIGSTOP");

    // 3. A client without keep-alive: only the server's keep-alive reaps it.
    let r = run(
        &ctx,
        "postgres/pg15-20.3-tcp_keepalives/1",
        FaultKind::Blackhole,
    );
    assert_quiet(side(&r, "client"));
    assert_pass(side(&r, "server"));
    assert!(
        side(&r, "server")
            .expected
            .formula
            .contains("I + N×V = 2000 + 3×1000"),
        "{}",
        show(side(&r, "server"))
    );

    // 4. idle_session_timeout (1.5 s): FATAL 57P05 at its value, both sides.
    let r = run(
        &ctx,
        "postgres/pg15-20.11-idle_session_timeout/1",
        FaultKind::None,
    );
    let (client, server) = (side(&r, "client"), side(&r, "server"));
    assert_pass(client);
    assert_pass(server);
    assert!(error(client).contains("57P05"), "{}", show(client));
    let idle = -event(client, "client's last segment").unwrap();
    let since_idle = client.detection_ms.unwrap() as i64 + idle;
    assert!(
        (1450..1700).contains(&since_idle),
        "the session ended {since_idle} ms after going idle: {}",
        show(client)
    );

    // 5. pg_sleep + blackhole: the backend is cancelled only after its socket
    // died (server keep-alive), within one check interval (500 ms).
    let r = run(
        &ctx,
        "postgres/pg15-20.3-client_connection_check_interval/1",
        FaultKind::Blackhole,
    );
    let (client, server) = (side(&r, "client"), side(&r, "server"));
    assert_pass(client);
    assert_pass(server);
    let socket = event(server, "server socket").expect("the server socket died");
    let backend = server.detection_ms.unwrap() as i64;
    assert!(
        backend >= socket && backend - socket <= 500 + 50,
        "socket {socket} ms, backend {backend} ms: {}",
        show(server)
    );
    assert!(
        socket > 4000,
        "the server's keep-alive, not the query, ended the socket: {}",
        show(server)
    );

    // Crash: the postmaster is killed, its backends follow; the client sees a
    // dead path; the next case gets a restarted server.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::Crash);
    assert_pass(side(&r, "client"));
    assert_quiet(side(&r, "server"));
    assert!(
        event(side(&r, "client"), "exited").is_some_and(|t| t < 1000),
        "the backend died with the postmaster: {}",
        show(side(&r, "client"))
    );

    // 2. A query sent on a dead path: TCP_USER_TIMEOUT (given as a pasted
    // libpq string: 1500 = milliseconds) ends it; keep-alive does not probe.
    set(&mut ctx, &["postgres.conninfo=host=db.example.com user=app keepalives_idle=1 keepalives_interval=1 keepalives_retries=9 tcp_user_timeout=1500"]);
    let r = run(
        &ctx,
        "postgres/libpq-tcp_user_timeout/1",
        FaultKind::Blackhole,
    );
    let client = side(&r, "client");
    assert_pass(client);
    assert!(
        client.config["postgres.socket"].contains("TCP_USER_TIMEOUT=1500ms"),
        "{}",
        show(client)
    );
    assert!(
        client.config["postgres.tcp_user_timeout"].contains("libpq milliseconds"),
        "{}",
        show(client)
    );
    assert!(error(client).contains("TimedOut"), "{}", show(client));
    assert!(
        client.detection_ms.unwrap() > 1500 && client.detection_ms.unwrap() < 2500,
        "{}",
        show(client)
    );
    assert_pass(side(&r, "server"));

    // Without a user timeout the query in flight is never given up soon.
    set(&mut ctx, KA);
    let r = run(
        &ctx,
        "postgres/libpq-tcp_user_timeout/1",
        FaultKind::Blackhole,
    );
    assert_quiet(side(&r, "client"));

    // One server for all of it, started twice (after the crash), gone with the run.
    let lease = ctx
        .shared
        .lease(
            "postgres",
            || panic!("the testbed exists"),
            |_| panic!("the server is running"),
        )
        .unwrap();
    assert_eq!(lease.starts(), 2);
    let tag = lease.testbed().tag.clone();
    let dir = format!("/tmp/kaspec-{tag}-postgres");
    assert!(std::path::Path::new(&dir)
        .join("data/kaspec.conf")
        .is_file());
    let postmaster = lease.server().pid();
    drop(lease);
    ctx.shared.close();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{postmaster}")).exists(),
        "postmaster {postmaster} left behind"
    );
    let ours = std::fs::read_dir("/proc").unwrap().flatten().filter(|p| {
        std::fs::read(p.path().join("environ")).is_ok_and(|e| {
            e.split(|b| *b == 0)
                .any(|v| v == format!("KASPEC_RUN_TAG={tag}").as_bytes())
        })
    });
    assert_eq!(ours.count(), 0, "processes of testbed {tag} left behind");
}

#[test]
fn postgres_one_way_blackholes_and_impaired_paths() {
    let mut ctx = ctx();
    set(&mut ctx, KA);
    // Client -> server dropped: the client's keep-alive (3 s) comes first.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::BlackholeUp);
    assert_pass(side(&r, "client"));
    assert_pass(side(&r, "server"));
    // Server -> client dropped: the client's abort RST reaches the server,
    // which learns then, before its own keep-alive (5 s) would.
    let r = run(
        &ctx,
        "postgres/libpq-keepalives/1",
        FaultKind::BlackholeDown,
    );
    let (c, s) = (
        side(&r, "client").detection_ms.unwrap() as i64,
        side(&r, "server").detection_ms.unwrap() as i64,
    );
    assert_pass(side(&r, "server"));
    assert!(
        (s - c).abs() <= 100 && s < 4000,
        "server {s} ms vs client {c} ms"
    );
    // A slow path with a live peer: 1 s probe intervals outlast a 300 ms round trip.
    let r = run(&ctx, "postgres/libpq-keepalives/1", FaultKind::Delay);
    for x in &r {
        assert!(!x.detected && x.verdict == Verdict::Pass, "{}", show(x));
    }
    ctx.shared.close();
}

#[test]
fn postgres_client_keepalive_against_a_nat() {
    let mut ctx = ctx();
    ctx.network.nat_idle_timeout = Some(std::time::Duration::from_secs(4));
    // keepalives_idle 2 s < N = 4 s: the probes keep the mapping.
    set(
        &mut ctx,
        &[
            "postgres.keepalives_idle=2s",
            "postgres.keepalives_interval=1s",
            "postgres.keepalives_retries=3",
        ],
    );
    let r = run(&ctx, "postgres/libpq-keepalives/2", FaultKind::NatExpiry);
    let c = side(&r, "client");
    assert!(!c.detected, "{}", show(c));
    assert_eq!(c.verdict, Verdict::Pass, "{}", show(c));
    // keepalives_idle 5 s ≥ N: the first probe meets the forgotten mapping.
    set(
        &mut ctx,
        &[
            "postgres.keepalives_idle=5s",
            "postgres.keepalives_interval=1s",
            "postgres.keepalives_retries=2",
        ],
    );
    let r = run(&ctx, "postgres/libpq-keepalives/2", FaultKind::NatExpiry);
    assert_pass(side(&r, "client"));
    assert!(
        error(side(&r, "client")).contains("TimedOut"),
        "{}",
        show(side(&r, "client"))
    );
    // The server (keep-alive at the kernel default here) never learns: its session leaks.
    let s = side(&r, "server");
    assert_quiet(s);
    assert!(!s.release.as_ref().expect("observed").clean, "{}", show(s));
}

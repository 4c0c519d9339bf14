//! The Redis NAT cases: an idle redis-rs client (no keep-alive of its own)
//! through a NAT that forgets idle flows after N (see [`crate::model::nat`]),
//! with the server's `tcp-keepalive` K the only traffic. redis.conf gives
//! "two reasons" for it: "1) Detect dead peers. 2) Force network equipment
//! in the middle to consider the connection to be alive." — the second holds
//! only if the server's first probe comes before the mapping is forgotten:
//! TCP_KEEPIDLE = K < N (anet.c). The client's PING 2 × N after the expiry
//! shows whether the connection is still usable.

use super::*;
use crate::model::nat::{nat_idle, nat_race, SPEC};

/// Where the server's `tcp-keepalive` is put against the run's N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Against {
    /// The fixture's K (1 s), below N.
    Below,
    /// K = N + 1 s (whole seconds), above N.
    Above,
}

/// The client's PING goes out this long after the mapping's expiry.
fn ping_after(nat: Duration) -> u64 {
    2 * ms_of(nat)
}

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    let n = nat_idle(ctx);
    Duration::from_secs(20) + 6 * n
}

pub(crate) fn run_nat_below(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run_nat(ctx, case, fault, Against::Below)
}

pub(crate) fn run_nat_above(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
) -> Result<Vec<CaseResult>> {
    run_nat(ctx, case, fault, Against::Above)
}

/// Both sides' expectations, t0 = the mapping's expiry (N after the flow's
/// last packet). `server` holds the options read back from the server's
/// socket and its idle time at t0 (≈ N).
fn expectations(
    server: &TcpConfig,
    server_idle_ms: u64,
    nat: Duration,
    response_timeout: Duration,
) -> (Expectation, Expectation) {
    let (k, n) = (ms_of(server.idle), ms_of(nat));
    if !server.keepalive {
        let e = || {
            Expectation::not_detected(format!("tcp-keepalive 0: nothing refreshes the mapping (forgotten after N = {n} ms) and nothing probes"), SPEC)
        };
        return (e(), e());
    }
    if let Some(race) = nat_race("tcp-keepalive K (TCP_KEEPIDLE)", server.idle, nat, SPEC) {
        return (race.clone(), race);
    }
    if crate::model::nat::tcp_kept(server, nat) {
        let e = || {
            Expectation::must_stay_up(
                format!("the server's probe after K = {k} ms of idleness < N = {n} ms (and the client's ACK) refreshes the mapping: the PING {} ms after N still gets its reply", ping_after(nat)),
                SPEC,
            )
        };
        return (e(), e());
    }
    // The first probe (K after the last segment, after the expiry) is
    // dropped, as are the following: the server dies at its keep-alive
    // death; the client's PING meets the forgotten mapping and times out.
    let why =
        format!("K = {k} ms ≥ N = {n} ms: the server's first probe meets the forgotten mapping; ");
    let s = keepalive_window(
        server,
        server_idle_ms,
        None,
        FaultKind::Blackhole,
        "server (options read back from its socket)",
        SPEC,
    );
    let c = response_expectation(
        response_timeout,
        FaultKind::Blackhole,
        ping_after(nat),
        RESPONSE_TIMEOUT.spec,
    );
    (
        Expectation {
            formula: format!("{why}the PING: {}", c.formula),
            ..c
        },
        Expectation {
            formula: format!("{why}{}", s.formula),
            ..s
        },
    )
}

fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind, side: Against) -> Result<Vec<CaseResult>> {
    let nat = nat_idle(ctx);
    let rt = super::knobs::RedisConfig::of(&ctx.config).response_timeout;
    let k = match side {
        Against::Below => ServerSettings::load(&ctx.fixtures)?.tcp_keepalive.as_secs(),
        Against::Above => nat.as_secs() + 1,
    };
    let overrides = [("timeout", 0), ("tcp-keepalive", k)];
    let tb = ctx.testbed_with_nat(service(&overrides).unwrap_or("redis"), nat)?;
    let server = start_server(ctx, &tb, &overrides)?;
    let addr = server.addr;
    let plan = Plan {
        response_timeout: rt,
        align_last_command: false,
        block: false,
        tcp: TcpConfig {
            keepalive: false,
            ..super::knobs::RedisConfig::of(&ctx.config).tcp
        },
        after: After::Command(ping_after(nat)),
    };
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
        done_rx,
    } = start_client(&tb, &server, plan)?;
    // Seen by the server as the NAT's public address.
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    let (server_tcp, server_opts) = server_sockopts(server.pid(), addr, seen)?;
    let server_last_rx = last_recv_at(&tb.server, addr, seen)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the server's end of {local} <-> {addr}"
        ))
    })?;
    // The flow's last packet: the client's ACK of the PONG (what the
    // server last received) or the PONG itself, whichever is later.
    let t0 = server_last_rx.max(ready.last_rx) + nat;
    let server_idle_ms = rel_ms(server_last_rx, t0).max(0) as u64;
    let (client_exp, server_exp) = expectations(&server_tcp, server_idle_ms, nat, rt);
    let quiet_ms = ping_after(nat) + ms_of(rt) + 2000;
    let client_deadline_ms = client_exp.deadline_ms(quiet_ms);
    let server_deadline_ms = server_exp.deadline_ms(quiet_ms);
    std::thread::sleep(t0.saturating_duration_since(Instant::now()));
    let _ = go_tx.send(t0 + Duration::from_millis(client_deadline_ms));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let _ = done_rx.recv_timeout(
        (t0 + Duration::from_millis(client_deadline_ms + 1000))
            .saturating_duration_since(Instant::now()),
    );
    let release = crate::outcome::releases(&tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let mut timeline = vec![
        (
            ready.last_rx,
            "client's last segment received (TCP_INFO)".to_string(),
        ),
        (
            server_last_rx,
            "server's last segment received (TCP_INFO)".to_string(),
        ),
    ];
    if let Some(t) = end.command_sent {
        timeline.push((t, "client sent a PING".to_string()));
    }
    if let Some((t, res)) = &end.command_end {
        timeline.push((
            *t,
            format!(
                "the PING ended: {}",
                res.as_ref()
                    .map(|v| format!("reply {v}"))
                    .unwrap_or_else(|e| e.clone())
            ),
        ));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let (mut at, mut error) = end.detection();
    drive::client::not_after(
        &mut at,
        &mut error,
        t0 + Duration::from_millis(client_deadline_ms),
    );
    let mut config = ctx.config.effective("redis.");
    config.insert("server.socket".into(), server_opts);
    config.extend(server.settings.report());
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    let results = facts.both_sides(
        client_implementation(),
        server.implementation.clone(),
        Side::library(client_exp, at, error, client_deadline_ms),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "server"),
        &ctx.judging(),
    )?;
    drop(server);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(k: u64) -> TcpConfig {
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(k),
            interval: Duration::from_secs((k / 3).max(1)),
            count: 3,
            user_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn the_threshold_is_the_servers_keepidle_against_n() {
        let nat = Duration::from_secs(4);
        let rt = Duration::from_millis(500);
        let (c, s) = expectations(&ka(1), 4000, nat, rt);
        assert!(!c.expects_detection() && !s.expects_detection() && c.level == Level::Must);
        // K = 5 > N = 4: the server dies at 5 + 3 × 1 s after its last
        // segment, 4 s before t0; the PING at 2N times out at 8 s + R.
        let (c, s) = expectations(&ka(5), 4000, nat, rt);
        assert_eq!((c.min_ms, c.max_ms), (Some(8500), Some(8502)));
        assert_eq!(s.min_ms, Some(4000));
        assert_eq!(expectations(&ka(4), 4000, nat, rt).0.level, Level::Info);
    }
}

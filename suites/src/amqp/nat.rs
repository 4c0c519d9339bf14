//! The AMQP NAT case: heartbeats through a NAT that forgets idle flows after
//! N (see [`crate::model::nat`]).

use super::*;

pub(crate) const NAT_SPEC: &str = "AMQP 0-9-1 §4.2.7, RFC 5382 §5";
use crate::model::nat::NAT_RACE_MS;

/// What the heartbeats do to a NAT mapping that expires after `nat` idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatFate {
    /// Heartbeat 0: nothing refreshes the mapping and nothing notices.
    NoHeartbeat,
    /// H/2 < N: every heartbeat (and its ACK) refreshes the mapping in time.
    Kept,
    /// H/2 within [`NAT_RACE_MS`] of N: the heartbeat races the expiry.
    Race,
    /// H/2 ≥ N: the flow is silent for H/2 between heartbeats; the mapping
    /// expires first and the next heartbeats are dropped.
    Broken,
}

/// Both sides send a heartbeat every H/2 when idle (lapin H/2 after its
/// last write, RabbitMQ every T/2 from Tune-Ok, ms apart, so on one phase),
/// and any packet of the flow, either way, refreshes the mapping: the flow
/// is never silent for longer than H/2, and the mapping holds iff H/2 < N.
pub fn nat_fate(h_s: u16, nat: Duration) -> NatFate {
    let (half, n) = (h_s as u64 * 500, ms_of(nat));
    if h_s == 0 {
        NatFate::NoHeartbeat
    } else if half.abs_diff(n) <= NAT_RACE_MS {
        NatFate::Race
    } else if half < n {
        NatFate::Kept
    } else {
        NatFate::Broken
    }
}

/// What lapin's tap saw of the flow, in ms from the mapping's expiry t0.
#[derive(Debug, Clone, Copy)]
pub struct NatPoints {
    /// The flow's last packet before the expiry (t0 − N).
    pub last: i64,
    pub last_read: i64,
    pub last_write: i64,
    /// The broker's receiver: started at Tune-Ok, and a tick.
    pub receiver: Receiver,
    pub last_sent: i64,
    /// How late lapin's heartbeat loop ran per cycle (expect::lapin_lag).
    pub lapin_lag: i64,
}

/// The client's and the broker's expectations through a NAT forgetting idle
/// flows after `nat`, with negotiated heartbeat `h_s` (lapin) and `t_s`
/// (Tune-Ok, the broker's).
pub fn nat_expectations(
    h_s: u16,
    t_s: u16,
    nat: Duration,
    p: &NatPoints,
) -> (Expectation, Expectation) {
    let (half, n) = (h_s as u64 * 500, ms_of(nat));
    let both = |e: &dyn Fn() -> Expectation| (e(), e());
    match nat_fate(h_s, nat) {
        NatFate::NoHeartbeat => both(&|| {
            Expectation::not_detected(format!("heartbeat 0 negotiated: nothing refreshes the mapping; it is forgotten after N = {n} ms and neither side notices"), NAT_SPEC)
        }),
        NatFate::Kept => both(&|| {
            Expectation::must_stay_up(
                format!(
                    "both sides send a heartbeat every H/2 = {half} ms when idle and every packet (and its ACK) refreshes the mapping: \
                     H/2 < N = {n} ms (strict), so the mapping holds and neither side may declare the connection dead"
                ),
                NAT_SPEC,
            )
        }),
        NatFate::Race => both(&|| {
            Expectation::either(
                format!(
                    "H/2 = {half} ms is within {NAT_RACE_MS} ms of N = {n} ms: the heartbeat races the mapping's expiry \
                     (conntrack keeps its timeout in jiffies, the heartbeat timers run late by ms and drift): either outcome is possible"
                ),
                NAT_SPEC,
            )
        }),
        NatFate::Broken => {
            let why = format!(
                "H/2 = {half} ms ≥ N = {n} ms: the flow's last packet at {:+} ms, the mapping expires N later (t0) and the next heartbeats are dropped. ",
                p.last
            );
            let prefix = |mut e: Expectation| {
                e.formula = format!("{why}{}", e.formula);
                e.spec = format!("{}, RFC 5382 §5", e.spec);
                e
            };
            (
                prefix(client_expectation_lagging(
                    h_s,
                    FaultKind::NatExpiry,
                    p.last_read,
                    p.last_write,
                    p.lapin_lag,
                )),
                prefix(server_expectation(
                    t_s,
                    FaultKind::NatExpiry,
                    p.receiver,
                    p.last_write,
                    p.last_sent,
                )),
            )
        }
    }
}

/// The flow's last packet before the mapping expired: the last read or
/// write before the first silence of `nat` or more before `until` (ACKs
/// follow within ms: quick ACKs after an idle gap longer than the RTO);
/// None if the flow was never that silent. `io` in order.
pub fn last_before_expiry(io: &[Io], nat: Duration, until: Instant) -> Option<Instant> {
    let mut last: Option<Instant> = None;
    for i in io.iter().filter(|i| i.at < until) {
        if last.is_some_and(|l| i.at.duration_since(l) >= nat) {
            return last;
        }
        last = Some(i.at);
    }
    last.filter(|l| until.duration_since(*l) >= nat)
}

pub(crate) fn nat_budget(ctx: &Ctx) -> Duration {
    let h = Duration::from_secs(effective_heartbeat(
        request_of(ctx),
        server_heartbeat(&ctx.fixtures, &MAIN).unwrap_or(DEFAULT_SERVER_HEARTBEAT),
    ) as u64);
    // A node start, then the broker's 3T after the handshake, or 3 × N kept.
    Duration::from_secs(15) + (3 * h).max(3 * crate::model::nat::nat_idle(ctx))
}

pub(crate) fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let broker_impl = broker_implementation();
    let lease = ctx.shared.lease_in(
        &ctx.shared_nat_bed("rabbitmq", nat),
        MAIN.group,
        || ctx.testbed_with_nat("rabbitmq", nat),
        |tb| MAIN.start(&ctx.fixtures, tb),
    )?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(MAIN.port));
    let tap = Tap::default();
    // Ready at once: with H/2 ≥ N no heartbeat ever gets through.
    let (client_thread, ready, stop) = start_client(
        tb,
        addr,
        request_of(ctx),
        format!("kaspec-{}-nat", tb.tag),
        &tap,
        false,
        None,
        // Never stalls (its sender is gone).
        tokio::sync::watch::channel(false).1,
    )?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    let hs = ready.negotiated;
    let ts = tune_ok(&tap.io()).map(|(_, w)| w).unwrap_or(hs);
    let fate = nat_fate(hs, nat);

    // Deadlines from the windows predicted at the handshake's end.
    let handshake = tap.io().last().map(|i| i.at).unwrap_or_else(Instant::now);
    let predicted_t0 = handshake + nat;
    let predicted = nat_points(&tap.io(), predicted_t0, nat, ts);
    let (pc, ps) = nat_expectations(hs, ts, nat, &predicted);
    let quiet_ms = ms_of((3 * nat).max(3 * Duration::from_secs(hs as u64)));
    let client_deadline_ms = pc.deadline_ms(quiet_ms);
    let server_deadline_ms = ps.deadline_ms(quiet_ms)
        + crate::deviations::late_allowance_ms(
            &ctx.deviations,
            case.id,
            "server",
            &broker_impl.name,
        );
    let server_closed = watch.wait(
        predicted_t0
            + Duration::from_millis(server_deadline_ms.max(if fate == NatFate::Broken {
                0
            } else {
                client_deadline_ms
            })),
    )?;
    let client_deadline = predicted_t0 + Duration::from_millis(client_deadline_ms);
    let (end, release) = if fate == NatFate::Broken {
        // The broker's end only: the tap holds lapin's socket until now.
        let release = crate::outcome::Releases {
            client: None,
            ..crate::outcome::releases(tb, ready.local, addr)
        };
        (
            finish_client(
                client_thread,
                stop,
                Instant::now().max(client_deadline),
                client_deadline,
            )?,
            release,
        )
    } else {
        // lapin closes the connection it kept (Connection.Close, then its
        // socket); the broker's end must follow within a second.
        let end = finish_client(client_thread, stop, Instant::now(), client_deadline)?;
        let closed_at = Instant::now();
        let release = loop {
            // lapin's I/O may let go of the socket after the client returned.
            tap.release();
            let r = crate::outcome::releases(tb, ready.local, addr);
            if r.server.as_ref().is_none_or(|s| s.clean)
                || closed_at.elapsed() > Duration::from_secs(1)
            {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (end, release)
    };

    let io = tap.io();
    // t0: N after the flow's last packet before the first silence of N.
    let until = end.failed_at.unwrap_or_else(Instant::now);
    // Never that silent: t0 is when the mapping would have expired without
    // the heartbeats.
    let last = last_before_expiry(&io, nat, until).unwrap_or(handshake);
    let t0 = last + nat;
    let points = nat_points(&io, t0, nat, ts);
    let (client_exp, server_exp) = nat_expectations(hs, ts, nat, &points);
    let heartbeats_after = io
        .iter()
        .filter(|i| i.dir == Dir::Read && i.at >= t0 && i.frames.contains(&Frame::Heartbeat))
        .count();

    let mut timeline = io_timeline(&io);
    timeline.push((
        last,
        "the flow's last packet before the mapping expired".into(),
    ));
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let config = heartbeat_config(ctx, hs, Some(ts))?;
    let facts = RunFacts::at_nat_expiry(case, fault, nat, config, t0, timeline, release);
    let client_error = end.error.or_else(|| {
        Some(format!("no error; lapin read {heartbeats_after} broker heartbeats after the time the mapping would have expired, the last {} ms before the end", {
            let last_hb = io.iter().filter(|i| i.dir == Dir::Read && i.frames.contains(&Frame::Heartbeat)).map(|i| i.at).next_back();
            last_hb.map(|l| rel_ms(l, until)).unwrap_or(-1)
        }))
    });
    let results = facts.both_sides(
        client_implementation(),
        broker_impl,
        Side::library(
            client_exp,
            end.failed_at,
            client_error,
            rel_ms(t0, client_deadline).max(0) as u64,
        ),
        Side::from_socket(
            server_exp,
            server_closed,
            rel_ms(t0, predicted_t0 + Duration::from_millis(server_deadline_ms)).max(0) as u64,
            "broker",
        ),
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

/// The points the NAT windows count from, in ms from `t0`.
pub(crate) fn nat_points(io: &[Io], t0: Instant, nat: Duration, t_s: u16) -> NatPoints {
    let rel = |t: Instant| rel_ms(t0, t);
    let last_of = |d: Dir| {
        io.iter()
            .filter(|i| i.dir == d && i.at < t0)
            .map(|i| rel(i.at))
            .next_back()
    };
    let (last_read, last_write) = (
        last_of(Dir::Read).unwrap_or(0),
        last_of(Dir::Write).unwrap_or(0),
    );
    let heartbeats_read: Vec<i64> = io
        .iter()
        .filter(|i| i.dir == Dir::Read && i.at < t0 && i.frames.contains(&Frame::Heartbeat))
        .map(|i| rel(i.at))
        .collect();
    let start = tune_ok(io).map(|(at, _)| rel(at)).unwrap_or(last_write);
    NatPoints {
        last: -(ms_of(nat) as i64),
        last_read,
        last_write,
        receiver: receiver(start, t_s as i64 * 1000, &heartbeats_read),
        last_sent: heartbeats_read.last().copied().unwrap_or(last_read),
        lapin_lag: lapin_lag(io, t0, t_s),
    }
}

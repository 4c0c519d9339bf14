//! How the idle AMQP case runs: the shared broker's lease, the client, a
//! quiet instant for the fault, both sides watched.

use super::*;

/// A quiet instant for the fault: the middle of the longest gap between the
/// next client write and the next broker heartbeat (both every H/2), so no
/// segment or delayed ACK is in flight.
pub(crate) fn quiet_instant(io: &[Io], h: Duration, now: Instant) -> Instant {
    let period = (h / 2).as_secs_f64();
    if period == 0.0 {
        return now;
    }
    let last = |d: Dir| io.iter().filter(|i| i.dir == d).map(|i| i.at).next_back();
    let phase = |t: Option<Instant>| {
        t.map(|t| (now.duration_since(t).as_secs_f64() % period, period))
            .map(|(since, p)| p - since)
    };
    let mut points: Vec<f64> = [phase(last(Dir::Write)), phase(last(Dir::Read))]
        .into_iter()
        .flatten()
        .collect();
    points.sort_by(|a, b| a.total_cmp(b));
    let at = match points.as_slice() {
        [a, b] => {
            let (inner, outer) = (b - a, period - (b - a));
            if inner >= outer {
                a + inner / 2.0
            } else {
                (b + outer / 2.0) % period
            }
        }
        [a] => (a + period / 2.0) % period,
        _ => 0.0,
    };
    now + Duration::from_secs_f64(at)
}

/// Connection.Tune-Ok as lapin wrote it: when, and its heartbeat.
pub(crate) fn tune_ok(io: &[Io]) -> Option<(Instant, u16)> {
    io.iter().find_map(|i| {
        i.frames.iter().find_map(|f| {
            if let Frame::TuneOk { heartbeat } = f {
                Some((i.at, *heartbeat))
            } else {
                None
            }
        })
    })
}

/// lapin's reads and writes, for the timeline.
pub(crate) fn io_timeline(io: &[Io]) -> Vec<(Instant, String)> {
    io.iter()
        .map(|i| {
            let what = i
                .frames
                .iter()
                .map(|f| match f {
                    Frame::Heartbeat => "heartbeat".to_string(),
                    Frame::Tune { heartbeat } => format!("Connection.Tune (heartbeat {heartbeat})"),
                    Frame::TuneOk { heartbeat } => {
                        format!("Connection.Tune-Ok (heartbeat {heartbeat})")
                    }
                    Frame::Other => "frame".to_string(),
                })
                .collect::<Vec<_>>()
                .join(" + ");
            let what = if what.is_empty() {
                format!("{} bytes", i.bytes)
            } else {
                what
            };
            (
                i.at,
                format!(
                    "lapin {} {what}",
                    if i.dir == Dir::Read { "read" } else { "wrote" }
                ),
            )
        })
        .collect()
}

/// A busy connection's timeline: the heartbeats and the Tune, the last read
/// and write before the fault and the first write after it, not every
/// message.
fn busy_timeline(io: &[Io], t0: Instant) -> Vec<(Instant, String)> {
    let last = |d: Dir| {
        io.iter()
            .filter(|i| i.dir == d && i.at < t0)
            .map(|i| i.at)
            .next_back()
    };
    let first_after = io
        .iter()
        .find(|i| i.dir == Dir::Write && i.at >= t0)
        .map(|i| i.at);
    let keep = |i: &Io| {
        i.frames.iter().any(|f| *f != Frame::Other)
            || [last(Dir::Read), last(Dir::Write), first_after].contains(&Some(i.at))
    };
    let kept: Vec<Io> = io.iter().filter(|i| keep(i)).cloned().collect();
    io_timeline(&kept)
}

/// The configuration of a heartbeat case as the connection used it.
pub(crate) fn heartbeat_config(
    ctx: &Ctx,
    hs: u16,
    wire_h: Option<u16>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut config = ctx.config.effective("amqp.");
    config.insert(
        "rabbitmq.heartbeat".into(),
        format!(
            "{}s ({})",
            server_heartbeat(&ctx.fixtures, &MAIN)?,
            MAIN.conf
        ),
    );
    config.insert(
        "negotiated".into(),
        format!(
            "{hs}s (lapin), Tune-Ok {}",
            wire_h
                .map(|w| format!("{w}s"))
                .unwrap_or_else(|| "?".into())
        ),
    );
    Ok(config)
}

pub(crate) fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    if let Some(adapter) = &ctx.client {
        return run_idle_external(ctx, case, fault, adapter);
    }
    heartbeat_case(ctx, case, fault, None)
}

/// The busy case: the idle case's connection with a basic.publish to the
/// client's own queue every period (bounded by the case's budget),
/// consumed back.
pub(crate) fn run_busy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let h = effective_heartbeat(
        request_of(ctx),
        server_heartbeat(&ctx.fixtures, &MAIN).unwrap_or(DEFAULT_SERVER_HEARTBEAT),
    );
    let echo = Workload::off_timer((case.budget)(ctx), Duration::from_millis(h as u64 * 500));
    heartbeat_case(ctx, case, fault, Some(echo))
}

fn heartbeat_case(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    echo: Option<Workload>,
) -> Result<Vec<CaseResult>> {
    let broker_impl = broker_implementation();
    let lease = lease(ctx, &MAIN)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(MAIN.port));
    let tap = Tap::default();
    let (stall_tx, stall_rx) = tokio::sync::watch::channel(false);
    let (client_thread, ready, stop) = start_client(
        tb,
        addr,
        request_of(ctx),
        format!("kaspec-{}-idle", tb.tag),
        &tap,
        true,
        echo,
        stall_rx,
    )?;
    let hs = ready.negotiated;
    let h = Duration::from_secs(hs as u64);
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;

    let fault_at = match (echo, ready.echo_origin) {
        // Between two publishes: lapin and the broker send no heartbeat.
        (Some(e), Some(origin)) => between_messages(origin, e.period, Instant::now()),
        _ => quiet_instant(&tap.io(), h, Instant::now()),
    };
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    if fault == FaultKind::ClientStall {
        let _ = stall_tx.send(true);
    }
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: ready.local,
            server: addr,
        },
        Some(lease.server().pid()),
    )?;
    if fault == FaultKind::ClientCrash {
        // The client host is gone: lapin's connection is dropped behind the
        // blackhole (its Connection.Close and FIN die at the router).
        let _ = stop.send(Some(Instant::now()));
    }
    let t0 = applied.in_force_at;

    // Deadlines from the windows as they stand at t0 (3× the upper bound),
    // plus what a documented deviation allows beyond the broker's.
    let before = tap.io();
    let last = |d: Dir| {
        before
            .iter()
            .filter(|i| i.dir == d && i.at < t0)
            .map(|i| rel_ms(t0, i.at))
            .next_back()
            .unwrap_or(0)
    };
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        Some(i) => {
            let w = crate::model::impaired::impaired_watch_ms(3 * h, i);
            (w, w)
        }
        None if hs == 0 => (10_000, 10_000),
        None => {
            let t = hs as i64 * 1000;
            let server_hi = (last(Dir::Write) + 3 * t).max(0) as u64 + 2 * PHASE_SLACK_MS as u64;
            let client = Expectation::window(
                0,
                (last(Dir::Read) + 5 * t / 2).max(0) as u64,
                "",
                "",
                Level::Must,
            )
            .deadline_ms(10_000);
            let server = Expectation::window(0, server_hi, "", "", Level::Must).deadline_ms(10_000)
                + crate::deviations::late_allowance_ms(
                    &ctx.deviations,
                    case.id,
                    "server",
                    &broker_impl.name,
                );
            // Under blackhole-up lapin may learn from the broker's close.
            (
                if fault == FaultKind::BlackholeUp {
                    client.max(server)
                } else {
                    client
                },
                server,
            )
        }
    };
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    // The second axis: the broker's end only (the tap holds lapin's socket
    // open, on purpose, until the broker has been watched).
    let release = crate::outcome::Releases {
        client: None,
        ..crate::outcome::releases(tb, ready.local, addr)
    };
    let client_deadline = t0 + Duration::from_millis(client_deadline_ms);
    let end = finish_client(
        client_thread,
        stop,
        Instant::now().max(client_deadline),
        client_deadline,
    )?;

    let io = tap.io();
    let rel = |t: Instant| rel_ms(t0, t);
    let reads_before: Vec<&Io> = io
        .iter()
        .filter(|i| i.dir == Dir::Read && i.at < t0)
        .collect();
    let writes_before: Vec<&Io> = io
        .iter()
        .filter(|i| i.dir == Dir::Write && i.at < t0)
        .collect();
    // What lapin last read: before the fault or, with server → client still
    // open, before it gave up.
    let last_read = if fault == FaultKind::BlackholeUp {
        let until = end.failed_at.unwrap_or(client_deadline);
        io.iter()
            .filter(|i| i.dir == Dir::Read && i.at < until)
            .map(|i| rel(i.at))
            .next_back()
            .unwrap_or(0)
    } else {
        reads_before.last().map(|i| rel(i.at)).unwrap_or(0)
    };
    let last_write = writes_before.last().map(|i| rel(i.at)).unwrap_or(0);
    let tune = tune_ok(&io);
    let wire_h = tune.map(|(_, w)| w);
    // What the broker uses is what Tune-Ok carried.
    let ts = wire_h.unwrap_or(hs);
    let heartbeats_read: Vec<i64> = reads_before
        .iter()
        .filter(|i| i.frames.contains(&Frame::Heartbeat))
        .map(|i| rel(i.at))
        .collect();
    let start = tune.map(|(at, _)| rel(at)).unwrap_or(last_read);
    let rx = receiver(start, ts as i64 * 1000, &heartbeats_read);
    let lapin_lag = lapin_lag(&io, t0, hs);
    let last_heard = if fault == FaultKind::BlackholeDown {
        let until = end.failed_at.map(rel).unwrap_or(i64::MAX);
        io.iter()
            .filter(|i| i.dir == Dir::Write && i.at >= t0)
            .map(|i| rel(i.at))
            .find(|r| *r < until)
            .unwrap_or(last_write)
    } else {
        last_write
    };
    let last_sent = heartbeats_read.last().copied().unwrap_or(last_read);

    let mut timeline = match echo {
        Some(_) => busy_timeline(&io, t0),
        None => io_timeline(&io),
    };
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let config = heartbeat_config(ctx, hs, wire_h)?;
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config,
        t0,
        timeline,
        release,
    };
    let (client_exp, server_exp) = match &imp {
        // lapin fails after 2H without a read, the broker after 2T to 3T,
        // while each sends every H/2: the slack is 2H − H/2.
        Some(i) => (
            crate::model::impaired::impaired_expectation(
                "lapin's slack, 2H − H/2 (the broker sends every H/2) =",
                3 * h / 2,
                i,
                case.spec,
            ),
            crate::model::impaired::impaired_expectation(
                "the broker's slack, 2T − T/2 (lapin sends every T/2) =",
                3 * Duration::from_secs(ts as u64) / 2,
                i,
                case.spec,
            ),
        ),
        None if echo.is_some() => {
            let writes: Vec<i64> = io
                .iter()
                .filter(|i| i.dir == Dir::Write)
                .map(|i| rel(i.at))
                .collect();
            // lapin's last heartbeat before the traffic: one of its wakes.
            let wake = writes_before
                .iter()
                .filter(|i| i.frames.contains(&Frame::Heartbeat))
                .map(|i| rel(i.at))
                .next_back()
                .unwrap_or(last_write);
            let h2 = hs as i64 * 500;
            let wake = busy_lapin_wake(wake, &writes, h2, last_read + 4 * h2);
            let period = echo.map_or(0, |e| ms_of(e.period) as i64);
            let client = busy_client_expectation(hs, fault, last_read, wake, last_write, period);
            let server = if fault == FaultKind::Reset {
                busy_server_reset(ts, rx.tick, last_read)
            } else {
                server_expectation(ts, fault, rx, last_heard, last_sent)
            };
            (client, server)
        }
        None => {
            let server = server_expectation(ts, fault, rx, last_heard, last_sent);
            let client = if fault == FaultKind::BlackholeUp {
                blackhole_up_client(
                    client_expectation_lagging(hs, fault, last_read, last_write, lapin_lag),
                    server.clone(),
                    last_read,
                )
            } else {
                client_expectation_lagging(hs, fault, last_read, last_write, lapin_lag)
            };
            (client, server)
        }
    };
    let results = facts.both_sides(
        client_implementation(),
        broker_impl,
        Side::library(client_exp, end.failed_at, end.error, client_deadline_ms),
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

//! Both sides' windows, from lapin's heartbeat loop (a wake every H/2 from its
//! last write) and RabbitMQ's rabbit_heartbeat receiver (a wake every T,
//! closing at the second without bytes), anchored on the tap's instants.

use super::*;

/// The wake that follows `after`, and the one after it too when a wake falls
/// within [`PHASE_SLACK_MS`] of `after` (either may then be the one).
pub(crate) fn next_ticks(anchor: i64, period: i64, after: i64) -> (i64, i64) {
    (
        first_after(anchor, period, after - PHASE_SLACK_MS),
        first_after(anchor, period, after + PHASE_SLACK_MS),
    )
}

/// Client side. Times are ms relative to the fault: `last_read` (last byte
/// lapin read), `last_write` (lapin's last write, which anchors its wakes).
pub fn client_expectation(
    h_s: u16,
    fault: FaultKind,
    last_read: i64,
    last_write: i64,
) -> Expectation {
    client_expectation_lagging(h_s, fault, last_read, last_write, 0)
}

/// [`client_expectation`] with lapin's loop running `lag` ms late per cycle
/// as its heartbeats' spacing showed: lapin's heartbeat task sleeps until
/// H/2 after its last write and, when it sends, takes the write's own
/// instant as the next start (lapin 4.12.3 src/heartbeat.rs,
/// Inner::poll_timeout: `update_last_write()` then `Some(timeout)`), so
/// each cycle ends a tokio timer's lateness after H/2 — at least its 1 ms
/// rounding, which is the floor here.
pub fn client_expectation_lagging(
    h_s: u16,
    fault: FaultKind,
    last_read: i64,
    last_write: i64,
    lag: i64,
) -> Expectation {
    let spec = "AMQP 0-9-1 §4.2.7 + lapin heartbeat algorithm";
    if h_s == 0 {
        return Expectation::not_detected("heartbeat 0 negotiated: lapin runs no heartbeat", spec);
    }
    let h = h_s as i64 * 1000;
    if fault == FaultKind::Reset {
        return next_send_meets_rst(
            "lapin's next heartbeat (every H/2 after its last write)",
            last_write,
            h / 2,
            Before::Nothing,
            spec,
            Level::Must,
        );
    }
    let (lo, hi) = next_ticks(last_write, h / 2, last_read + 2 * h);
    // One wake or the other, nothing between, each up to `lag` per cycle
    // since the last write later.
    let lag = lag.max(1);
    let part = |w: i64| {
        let cycles = (w - last_write).max(0) / (h / 2);
        (w.max(0) as u64, (w + cycles * lag).max(0) as u64)
    };
    Expectation::one_of(
        part(lo),
        part(hi),
        format!(
            "MissingHeartbeatError at lapin's first wake (every H/2 = {} ms from its last write at {last_write:+} ms) with nothing read for more than 2H: \
             last read {last_read:+} ms + 2 × {h} ms = {} ms → wake at {lo}{} ms (within (2H, 2.5H] of the last read), + up to {lag} ms per cycle since the last write (the loop restarts from each heartbeat's own instant, heartbeat.rs poll_timeout)",
            h / 2,
            last_read + 2 * h,
            if hi != lo { format!(" or {hi} (the threshold is within {PHASE_SLACK_MS} ms of a wake: a race between the timer's lateness and lapin's own read instant, not observable outside lapin, so either wake)") } else { String::new() }
        ),
        spec,
        Level::Must,
    )
}

/// The broker's heartbeat receiver, in ms relative to the fault: started at
/// `start` (Tune-Ok; its first wake is T later), `tick` one of its wakes
/// (or `start`), `lag` how much later than T each of its cycles ends.
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    pub start: i64,
    pub tick: i64,
    /// rabbit_heartbeat's timers are `receive … after T` loops
    /// (heartbeater/3): each cycle re-arms after its check, at a
    /// ms-rounded timeout, so every cycle ends up to a few ms after T and
    /// the wakes drift later. Measured from the spacing of the broker's own
    /// heartbeats (its sender is the same loop, every T/2): ms per cycle.
    pub lag: i64,
}

/// The broker's receiver as the run saw it: Tune-Ok at `start`, its
/// heartbeats read at `heartbeats_read` (in order, ms from the fault).
pub(crate) fn receiver(start: i64, t_ms: i64, heartbeats_read: &[i64]) -> Receiver {
    Receiver {
        start,
        tick: receiver_tick(start, t_ms, heartbeats_read),
        lag: cycle_lag(t_ms / 2, heartbeats_read),
    }
}

/// How much longer than `period` each cycle of a loop took, ms (rounded
/// up, ≥ 0), over the span of the `beats` it sent: a sender that sent
/// nothing in a cycle (it had sent something else) still counts the cycle.
pub(crate) fn cycle_lag(period: i64, beats: &[i64]) -> i64 {
    let (Some(first), Some(last)) = (beats.first(), beats.last()) else {
        return 0;
    };
    if period <= 0 {
        return 0;
    }
    let span = last - first;
    let cycles = (span + period / 2) / period;
    if cycles == 0 {
        return 0;
    }
    let over = (span - cycles * period).max(0);
    (over + cycles - 1) / cycles
}

/// Server side. Times are ms relative to the fault: `rx` (the broker's
/// receiver), `last_heard` (the last byte it received), `last_sent` (its
/// last heartbeat, which lapin read).
pub fn server_expectation(
    t_s: u16,
    fault: FaultKind,
    rx: Receiver,
    last_heard: i64,
    last_sent: i64,
) -> Expectation {
    let spec = "AMQP 0-9-1 §4.2.7 + RabbitMQ rabbit_heartbeat";
    if t_s == 0 {
        return Expectation::not_detected(
            "heartbeat 0 negotiated: RabbitMQ runs no heartbeat check",
            spec,
        );
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the broker process is frozen", spec);
    }
    let t = t_s as i64 * 1000;
    if fault == FaultKind::Reset {
        return next_send_meets_rst(
            "the broker's next heartbeat (every T/2 after its last)",
            last_sent,
            t / 2,
            Before::Nothing,
            spec,
            Level::Must,
        );
    }
    let tick = rx.tick;
    // No wake before the first, T after the start.
    let (w_lo, w_hi) = next_ticks(tick, t, last_heard);
    let (w_lo, w_hi) = (w_lo.max(rx.start + t), w_hi.max(rx.start + t));
    let why = if fault == FaultKind::BlackholeDown {
        "lapin's first heartbeat after the fault still reaches the broker (its later ones wait behind that unacknowledged segment: cwnd 1 after an RTO)"
    } else {
        "the broker last hears lapin's last write before the fault"
    };
    // The drift of the receiver's cycles (Receiver::lag): the tick was read
    // off the sender, whose cycles are half as long, so the receiver's
    // wakes are up to `lag` per cycle since the start earlier than it
    // says, and up to `lag` per cycle after it later.
    let lag = rx.lag.max(0);
    let before = if t > 0 {
        (tick - rx.start).max(0) / t
    } else {
        0
    };
    let cycles_to = |close: i64| if t > 0 { (close - tick).max(0) / t } else { 0 };
    let after = cycles_to(w_hi + 2 * t);
    let drift = if lag > 0 {
        format!(
            "; each receiver cycle re-arms after its check (`receive … after T`, rabbit_heartbeat heartbeater/3): \
             {lag} ms per cycle as the broker's heartbeats were spaced, − {before} × {lag} ms, + {after} × {lag} ms"
        )
    } else {
        String::new()
    };
    // One wake or the other (each with its drift), nothing between.
    let part = |w: i64| {
        let close = w + 2 * t;
        (
            (close - before * lag).max(0) as u64,
            (close + cycles_to(close) * lag).max(0) as u64,
        )
    };
    Expectation::one_of(
        part(w_lo),
        part(w_hi),
        format!(
            "{why}: {last_heard:+} ms; the receiver wakes every T = {t} ms (a tick at {tick:+} ms) and closes at the second wake without bytes: \
             first wake after it {w_lo}{} ms + 2T = {}{} ms (within (2T, 3T] of the last byte){drift}",
            if w_hi != w_lo { format!(" or {w_hi} (heard within {PHASE_SLACK_MS} ms of a receiver wake: which side of it the BEAM saw is not observable, so either wake)") } else { String::new() },
            w_lo + 2 * t,
            if w_hi != w_lo { format!(" or {}", w_hi + 2 * t) } else { String::new() }
        ),
        spec,
        Level::Must,
    )
}

/// Client side under blackhole-up: the earlier of lapin's own check (its
/// last read is the broker's first heartbeat after the fault: the later ones
/// wait behind that unacknowledged segment, cwnd 1 after an RTO) and the
/// broker's close, an RST (RabbitMQ's tcp_listen_options: linger {true, 0})
/// that reaches lapin at once.
pub fn blackhole_up_client(own: Expectation, broker: Expectation, last_read: i64) -> Expectation {
    match (own.min_ms, own.max_ms, broker.min_ms, broker.max_ms) {
        (Some(a), Some(b), Some(c), Some(d)) => Expectation::window(
            a.min(c),
            b.min(d),
            format!(
                "the earlier of lapin's own check and the broker's close. lapin last reads the broker's first heartbeat after the fault \
                 ({last_read:+} ms; the later ones wait behind that unacknowledged segment, cwnd 1 after an RTO): {} \
                 The broker closes with an RST (linger 0) that reaches lapin at once: {}",
                own.formula, broker.formula
            ),
            own.spec,
            Level::Must,
        ),
        _ => own,
    }
}

/// How late lapin's heartbeat loop ran per cycle (ms, ≥ 0), from the
/// spacing of all its heartbeats in the run — before the fault and after
/// it, up to its detection: it keeps writing into the dead path, so the
/// cycles that lead to its detecting wake are observed, not assumed.
/// `h_s`: the heartbeat it runs (every H/2).
pub(crate) fn lapin_lag(io: &[Io], t0: Instant, h_s: u16) -> i64 {
    let beats: Vec<i64> = io
        .iter()
        .filter(|i| i.dir == Dir::Write && i.frames.contains(&Frame::Heartbeat))
        .map(|i| rel_ms(t0, i.at))
        .collect();
    cycle_lag(h_s as i64 * 500, &beats)
}

/// A receiver tick of the broker (ms from t0): Tune-Ok (`start`), refined
/// by the latest broker heartbeat read at a receiver tick (every second one:
/// sender and receiver start together). `heartbeats_read`: in order.
pub(crate) fn receiver_tick(start: i64, t_ms: i64, heartbeats_read: &[i64]) -> i64 {
    if t_ms <= 0 {
        return start;
    }
    heartbeats_read
        .iter()
        .copied()
        .filter(|r| {
            let off = (r - start).rem_euclid(t_ms);
            off < t_ms / 4 || off > t_ms - t_ms / 4
        })
        .next_back()
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver whose start is long past.
    fn rx(tick: i64) -> Receiver {
        Receiver {
            start: i64::MIN / 4,
            tick,
            lag: 0,
        }
    }

    #[test]
    fn lapin_takes_the_servers_value_for_zero_and_the_lower_otherwise() {
        assert_eq!(effective_heartbeat(0, 60), 60);
        assert_eq!(effective_heartbeat(2, 60), 2);
        assert_eq!(effective_heartbeat(600, 60), 60);
        assert_eq!(effective_heartbeat(0, 0), 0);
        assert_eq!(effective_heartbeat(2, 0), 2);
        assert_eq!(effective_heartbeat(600, 0), 600);
    }

    #[test]
    fn requests_cover_unset_zero_lower_higher_and_configured() {
        assert_eq!(
            requests_for(60, 2),
            vec![None, Some(0), Some(30), Some(120), Some(2)]
        );
        assert_eq!(requests_for(0, 2), vec![None, Some(0), Some(600), Some(2)]);
        assert_eq!(
            requests_for(60, 30),
            vec![None, Some(0), Some(30), Some(120)]
        );
    }

    #[test]
    fn a_row_is_checked_against_lapins_rule_the_spec_and_the_broker() {
        let row = Negotiated {
            request: Some(0),
            proposed: Some(60),
            tune_ok: Some(60),
            lapin: 60,
            broker: Some(60),
            local_port: 1,
        };
        assert!(check_row(&row, 60, "client").is_empty());
        assert!(check_row(&row, 60, "server").is_empty());
        let above = Negotiated {
            request: Some(600),
            lapin: 600,
            tune_ok: Some(600),
            broker: Some(600),
            ..row.clone()
        };
        let p = check_row(&above, 60, "client");
        assert!(
            p.iter()
                .any(|p| p.contains("lapin's heartbeat: 600, expected 60")),
            "{p:?}"
        );
        let lost = Negotiated {
            broker: Some(30),
            ..row.clone()
        };
        assert!(!check_row(&lost, 60, "server").is_empty());
    }

    #[test]
    fn frames_are_split_across_reads() {
        let mut p = FrameParser::default();
        let hb = [8u8, 0, 0, 0, 0, 0, 0, 0xCE];
        // Tune-Ok: class 10 method 31, channel-max 2047, frame-max 131072, heartbeat 2.
        let mut tune_ok = vec![
            1u8, 0, 0, 0, 0, 0, 12, 0, 10, 0, 31, 0x07, 0xFF, 0, 2, 0, 0, 0, 2, 0xCE,
        ];
        let mut stream = b"AMQP\x00\x00\x09\x01".to_vec();
        stream.append(&mut tune_ok);
        stream.extend_from_slice(&hb);
        let (a, b) = stream.split_at(13);
        let mut frames = p.push(a);
        frames.extend(p.push(b));
        assert_eq!(
            frames,
            vec![Frame::TuneOk { heartbeat: 2 }, Frame::Heartbeat]
        );
        let mut bad = FrameParser::default();
        assert!(bad.push(&[8, 0, 0, 0, 0, 0, 0, 0x00]).is_empty());
        assert!(bad.push(&hb).is_empty(), "a broken stream stays broken");
    }

    #[test]
    fn heartbeat_setting_is_read_from_the_conf() {
        assert_eq!(heartbeat_in_conf("# x\nheartbeat = 7 # s\n"), Ok(7));
        assert_eq!(heartbeat_in_conf("loopback_users = none\n"), Ok(60));
        assert!(heartbeat_in_conf("heartbeat = soon").is_err());
    }

    #[test]
    fn client_window_is_the_wake_after_two_heartbeats_of_silence() {
        // H = 2 s: wakes every 1000 ms from the last write at −300; last read −700.
        let e = client_expectation(2, FaultKind::Blackhole, -700, -300);
        // −700 + 4000 = 3300 → wake at 3700, four cycles after the last
        // write: up to 1 ms each later.
        assert_eq!(
            (e.min_ms, e.max_ms, e.level),
            (Some(3700), Some(3704), Level::Must)
        );
        assert_eq!(e.gap, None);
        // Measured 3 ms per cycle.
        let e = client_expectation_lagging(2, FaultKind::Blackhole, -700, -300, 3);
        assert_eq!((e.min_ms, e.max_ms), (Some(3700), Some(3712)));
        // A wake within the slack of last read + 2H: either may be the one.
        let e = client_expectation(2, FaultKind::Blackhole, -695, -690);
        assert_eq!((e.min_ms, e.max_ms), (Some(3310), Some(4315)));
        assert_eq!(e.gap, Some((3314, 4310)), "that wake or the next");
        let r = client_expectation(2, FaultKind::Reset, -700, -300);
        assert_eq!((r.min_ms, r.max_ms), (Some(700), Some(700)));
        assert!(!client_expectation(0, FaultKind::Blackhole, 0, 0).expects_detection());
    }

    #[test]
    fn server_window_is_the_second_silent_receiver_tick() {
        // T = 2 s, a tick at −1500: ticks at 500, 2500, ...; last heard −300 → first
        // tick after it 500, + 2T = 4500.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1500), -300, -800);
        assert_eq!(
            (e.min_ms, e.max_ms, e.level),
            (Some(4500), Some(4500), Level::Must)
        );
        // Heard 5 ms before a tick: that tick or the next.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1500), 495, -800);
        assert_eq!((e.min_ms, e.max_ms), (Some(4500), Some(6500)));
        assert_eq!(
            e.gap,
            Some((4500, 6500)),
            "that wake or the next, nothing between"
        );
        // Heard 1 ms after the very tick that anchors the grid: it or the next.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-526), -525, -526);
        assert_eq!((e.min_ms, e.max_ms), (Some(3474), Some(5474)));
        let r = server_expectation(2, FaultKind::Reset, rx(-1500), -300, -800);
        assert_eq!((r.min_ms, r.max_ms), (Some(200), Some(200)));
        assert!(!server_expectation(2, FaultKind::Freeze, rx(0), 0, 0).expects_detection());
        assert!(!server_expectation(0, FaultKind::Blackhole, rx(0), 0, 0).expects_detection());
    }

    #[test]
    fn the_receivers_drift_is_measured_from_the_senders_spacing() {
        // Every T/2 = 1000 ms, 1 ms late each cycle; a skipped cycle counts.
        assert_eq!(cycle_lag(1000, &[-2501, -1500, -499]), 1);
        assert_eq!(cycle_lag(1000, &[-3502, -1500]), 1);
        assert_eq!(cycle_lag(1000, &[-1500, -500]), 0);
        assert_eq!(cycle_lag(1000, &[-500]), 0);
        // Started at −2502, a tick at −500 (one cycle later), last heard
        // there: the close at 5500 (or 3500), 1 ms per cycle: one cycle
        // earlier at most, three later.
        let rx = Receiver {
            start: -2502,
            tick: -500,
            lag: 1,
        };
        let e = server_expectation(2, FaultKind::Blackhole, rx, -500, -500);
        assert_eq!(
            (e.min_ms, e.max_ms),
            (Some(3499), Some(5503)),
            "{}",
            e.formula
        );
        assert!(e.formula.contains("1 ms per cycle"), "{}", e.formula);
    }

    #[test]
    fn blackhole_up_client_takes_the_earlier_of_its_check_and_the_brokers_rst() {
        let own = client_expectation(2, FaultKind::BlackholeUp, 497, -508);
        let broker = server_expectation(2, FaultKind::BlackholeUp, rx(-503), -508, -503);
        // lapin's wake at 4492 comes 5 ms before the last read + 2H = 4497
        // (nothing missed yet); the next, at 5492, fails.
        assert_eq!((own.min_ms, own.max_ms), (Some(5492), Some(5498)));
        // The broker heard lapin 5 ms before its tick: that tick or the next.
        assert_eq!((broker.min_ms, broker.max_ms), (Some(3497), Some(5497)));
        let e = blackhole_up_client(own, broker, 497);
        assert_eq!(
            (e.min_ms, e.max_ms, e.level),
            (Some(3497), Some(5497), Level::Must)
        );
        assert!(e.formula.contains("RST"));
    }

    #[test]
    fn the_nat_keeps_the_flow_only_when_half_the_heartbeat_is_below_its_timeout() {
        let nat = Duration::from_secs(4);
        assert_eq!(nat_fate(2, nat), NatFate::Kept);
        assert_eq!(nat_fate(7, nat), NatFate::Kept, "H/2 = 3.5 s < 4 s");
        assert_eq!(nat_fate(8, nat), NatFate::Race, "H/2 = N: informational");
        assert_eq!(nat_fate(8, Duration::from_millis(4100)), NatFate::Race);
        assert_eq!(nat_fate(8, Duration::from_millis(4101)), NatFate::Kept);
        assert_eq!(nat_fate(10, nat), NatFate::Broken);
        assert_eq!(nat_fate(0, nat), NatFate::NoHeartbeat);
        let p = NatPoints {
            last: -4000,
            last_read: -4000,
            last_write: -4000,
            receiver: Receiver {
                start: -4000,
                tick: -4000,
                lag: 0,
            },
            last_sent: -4000,
            lapin_lag: 0,
        };
        let (c, s) = nat_expectations(2, 2, nat, &p);
        assert!(
            !c.expects_detection()
                && !s.expects_detection()
                && c.level == Level::Must
                && s.level == Level::Must
        );
        let (c, _) = nat_expectations(8, 8, nat, &p);
        assert_eq!((c.expects_detection(), c.level), (false, Level::Info));
    }

    #[test]
    fn broken_nat_windows_count_from_the_expiry() {
        // H = 10 s, N = 4 s, handshake (Tune-Ok, Open, Open-Ok) at −4000 ms.
        let p = NatPoints {
            last: -4000,
            last_read: -4000,
            last_write: -4000,
            receiver: Receiver {
                start: -4000,
                tick: -4000,
                lag: 0,
            },
            last_sent: -4000,
            lapin_lag: 0,
        };
        let (c, s) = nat_expectations(10, 10, Duration::from_secs(4), &p);
        // lapin: last read + 2H = 16000 falls on its wake grid (every 5 s from −4000): that wake or the next.
        assert_eq!(
            (c.min_ms, c.max_ms, c.level),
            (Some(16000), Some(21005), Level::Must)
        );
        // RabbitMQ: no receiver wake before Tune-Ok + T = 6000; + 2T = 26000.
        assert_eq!(
            (s.min_ms, s.max_ms, s.level),
            (Some(26000), Some(26000), Level::Must)
        );
        assert!(
            c.formula.contains("H/2 = 5000 ms ≥ N = 4000 ms") && s.spec.contains("RFC 5382"),
            "{c:?}"
        );
    }

    #[test]
    fn the_receivers_first_wake_is_one_period_after_its_start() {
        let e = server_expectation(
            2,
            FaultKind::Blackhole,
            Receiver {
                start: -1000,
                tick: -1000,
                lag: 0,
            },
            -995,
            -1000,
        );
        assert_eq!((e.min_ms, e.max_ms), (Some(5000), Some(5000)));
        // Without a start the anchor itself counts as a wake: heard 3 ms
        // before it, that wake (3000) or the next (5000).
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1000), -1003, -1000);
        assert_eq!((e.min_ms, e.max_ms), (Some(3000), Some(5000)));
    }

    #[test]
    fn the_expiry_follows_the_first_silence_of_n() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let io = |ms, dir| Io {
            at: at(ms),
            dir,
            bytes: 8,
            frames: vec![Frame::Heartbeat],
        };
        let nat = Duration::from_secs(4);
        // Handshake at 0..2, then lapin's heartbeats (dropped) every 5 s.
        let broken = [
            io(0, Dir::Write),
            io(2, Dir::Read),
            io(5002, Dir::Write),
            io(10003, Dir::Write),
        ];
        assert_eq!(last_before_expiry(&broken, nat, at(20_000)), Some(at(2)));
        // Heartbeats every second: never silent for N.
        let kept: Vec<Io> = (0..12)
            .map(|k| io(k * 1000, if k % 2 == 0 { Dir::Read } else { Dir::Write }))
            .collect();
        assert_eq!(last_before_expiry(&kept, nat, at(12_500)), None);
        // Silent at the end for N or more.
        assert_eq!(last_before_expiry(&kept, nat, at(15_000)), Some(at(11_000)));
    }

    #[test]
    fn the_fault_goes_in_the_middle_of_the_longest_quiet_gap() {
        let now = Instant::now();
        let at = |ms: u64| now - Duration::from_millis(ms);
        let io = |dir, ago| Io {
            at: at(ago),
            dir,
            bytes: 8,
            frames: vec![Frame::Heartbeat],
        };
        // H = 2 s: both every 1000 ms; wrote 100 ms ago (next in 900), read 300 ms ago (next in 700).
        let q = quiet_instant(
            &[io(Dir::Write, 100), io(Dir::Read, 300)],
            Duration::from_secs(2),
            now,
        );
        // Gaps: 700..900 (200 ms) and 900..1700 (800 ms): middle 1300 → 300 ms from now.
        let d = q.duration_since(now).as_millis();
        assert!((299..=301).contains(&d), "{d}");
    }
}

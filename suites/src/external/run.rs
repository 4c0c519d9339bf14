//! One case with an external client: the protocol's case gives its server
//! (started as for its own client) and the server's window; this runs the
//! program, waits for its connection, cuts the path halfway through the
//! client's quiet period and watches both sides.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use kaspec_harness::expect::Expectation;
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{last_data_recv_at, unacked_at, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

use super::expect::{
    client_window, fault_offset, in_flight_read_after, unacked_first, LINE_LAG_MS,
    UNDECLARED_WATCH_MS,
};
use super::process::Client;
use crate::case::CaseDef;
use crate::config::adapter::{Adapter, Algorithm, Observe};
use crate::ctx::Ctx;
use crate::model::linux::jiffy_ms;
use crate::model::rel_ms;
use crate::outcome::{RunFacts, Side};

/// How long after t0 a line may arrive and still report what crossed the
/// router before the fault (ms): the 5 ms read-again below.
const LATE_LINE_MS: u64 = 5;

/// The server side of a case, as the protocol's case sets it up.
pub struct ServerSide<'a> {
    pub tb: &'a Testbed,
    pub addr: SocketAddrV4,
    pub pid: Option<u32>,
    pub implementation: Implementation,
    /// The server's window from what the run observed, from the case's own
    /// expectation code.
    pub window: &'a dyn Fn(FaultKind, &Anchors) -> Expectation,
    /// The prefix of the knobs the results show (`mqtt.`).
    pub knobs: &'a str,
}

/// What the run observed before the fault, in ms from t0 (negative: before).
#[derive(Debug, Clone)]
pub struct Anchors {
    /// The last data the server received from the client (its TCP_INFO).
    pub server_last_recv_ms: i64,
    /// The last data the client received (its TCP_INFO): what the server
    /// last sent that arrived.
    pub client_last_recv_ms: i64,
    /// The client's `connected` line, if it printed one.
    pub connected_ms: Option<i64>,
    /// Every line it printed before the fault (ms from t0), for a server
    /// window anchored on what the client saw (the server's last Ping).
    pub lines: Vec<(i64, String)>,
}

/// The adapter's program's version: fixed, or its command's first line.
pub fn implementation(a: &Adapter) -> Implementation {
    let version = match &a.version {
        crate::config::adapter::Version::Fixed(v) => v.clone(),
        crate::config::adapter::Version::Command(argv) => std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(String::from)
            })
            .unwrap_or_else(|| "unknown".into()),
    };
    Implementation::new(a.name.clone(), version)
}

/// Runs `case` under `fault` with the adapter's program as its client.
pub fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    a: &Adapter,
    s: ServerSide<'_>,
) -> Result<Vec<CaseResult>> {
    let bad = |e: String| Error::Other(format!("client adapter {}: {e}", a.file.display()));
    let expect = a.expect(&ctx.config).map_err(bad)?;
    let argv = a.argv(s.addr, &ctx.config).map_err(bad)?;
    let client_impl = implementation(a);
    let tb = s.tb;
    let mut client = Client::start(tb, &a.name, &argv)?;
    let started = Instant::now();
    let local = client.connected(s.addr, Duration::from_secs(10))?;
    let server_watch = SocketWatch::start(&tb.server, s.addr, tb.seen_by_server(local))?;
    let client_watch = if a.observe.contains(&Observe::Socket) {
        Some(SocketWatch::start(&tb.client, local, s.addr)?)
    } else {
        None
    };

    // Steady state: one quiet period and a round of its keep-alive, then
    // the fault halfway through the next quiet period, counted from the
    // last data the client received.
    let offset = fault_offset(&expect);
    std::thread::sleep(2 * offset + Duration::from_millis(300));
    let last = last_data_recv_at(&tb.client, local, s.addr)?.unwrap_or(started);
    if let Some(wait) = (last + offset).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let flow = Flow {
        client: local,
        server: s.addr,
    };
    // The client's own situations: kaspec cannot reach into the program,
    // so its stall is a stop of the whole program (SIGSTOP), its crash a
    // kill behind the blackhole (docs/clients.md).
    if fault == FaultKind::ClientStall {
        client.stall()?;
    }
    let applied = tb.apply_fault(fault, &flow, s.pid)?;
    if fault == FaultKind::ClientCrash {
        client.crash()?;
    }
    let t0 = applied.in_force_at;
    // What each side last received before the fault (TCP_INFO, jiffies).
    let client_last = last_data_recv_at(&tb.client, local, s.addr)?.unwrap_or(started);
    let server_last =
        last_data_recv_at(&tb.server, s.addr, tb.seen_by_server(local))?.unwrap_or(started);
    // The client's clock starts at its last receive, or at its last
    // `anchor` line when the adapter names one (its own Pong).
    let anchor_at = expect.anchor_line.as_ref().map(|word| {
        client
            .lines()
            .iter()
            .rev()
            .find(|(t, l)| *t <= t0 && l == word)
            .map(|(t, _)| *t)
    });
    let since_ms = match anchor_at {
        Some(Some(t)) => rel_ms(t, t0).max(0) as u64,
        Some(None) => {
            return Err(Error::Other(format!(
                "client {}: no `{}` line before the fault (its anchor)",
                a.name,
                expect.anchor_line.as_deref().unwrap_or_default()
            )))
        }
        None => rel_ms(client_last, t0).max(0) as u64,
    };
    let connected_at = client
        .lines()
        .iter()
        .find(|(_, l)| l == "connected")
        .map(|(t, _)| *t);
    let connected_ms = connected_at.map(|t| rel_ms(t0, t));
    // How much earlier than its arrival a line's event may have been: the
    // pipe's usual lag, + the wake-up lateness measured as it arrived.
    let line_lag_ms = [connected_at, anchor_at.flatten()]
        .into_iter()
        .flatten()
        .map(|t| {
            LINE_LAG_MS
                + kaspec_harness::wake::lateness_ms(
                    t - Duration::from_millis(50),
                    t + Duration::from_millis(1),
                )
        })
        .max()
        .unwrap_or(LINE_LAG_MS);
    let anchors = Anchors {
        server_last_recv_ms: rel_ms(t0, server_last),
        client_last_recv_ms: rel_ms(t0, client_last),
        connected_ms,
        lines: client
            .lines()
            .iter()
            .filter(|(t, _)| *t <= t0)
            .map(|(t, l)| (rel_ms(t0, *t), l.clone()))
            .collect(),
    };
    // t0 on CLOCK_MONOTONIC: the phase of a whole-seconds clock.
    let t0_mono_ms = (crate::model::linux::clock_secs(libc::CLOCK_MONOTONIC, t0) * 1000.0) as u64;
    let mut client_exp = client_window(
        &expect,
        fault,
        since_ms,
        connected_ms,
        line_lag_ms,
        t0_mono_ms,
    );
    // Under reset, data received just before the fault leaves the client
    // a segment of its own that may meet the RST first: its delayed ACK of
    // that data, or the retransmission of its answer, whose ACK (the peer's
    // delayed one) the router reset (model::periodic's AckOrRetransmission).
    // A segment in flight as the rule went in arrives just after t0 (and
    // after the read above): read again 5 ms on; a later receive, or the
    // socket already gone, counts as data at the fault.
    std::thread::sleep(
        (t0 + Duration::from_millis(LATE_LINE_MS)).saturating_duration_since(Instant::now()),
    );
    let recv_ms = match last_data_recv_at(&tb.client, local, s.addr)? {
        // (Two reads of one jiffy-counted receive may differ by a jiffy.)
        Some(t) if t <= client_last + Duration::from_millis(jiffy_ms() + 1) => {
            rel_ms(client_last, t0).max(0) as u64
        }
        _ => 0,
    };
    if fault == FaultKind::Reset
        && crate::model::linux::pending_delayed_ack(recv_ms).is_some()
        && client_exp.min_ms.is_some()
    {
        client_exp.min_ms = Some(0);
        client_exp.formula = format!("{}; from 0: data arrived {recv_ms} ms before the fault (< {} ms), so its delayed ACK, or the retransmission of its answer, may meet the RST first", client_exp.formula, crate::model::linux::DELACK_MAX_MS);
    }
    // Data it had in flight after the fault (a client that sets
    // TCP_USER_TIMEOUT: its kernel may abort it first).
    if let Algorithm::PingTimeout { user_timeout, .. } = &expect.algorithm {
        if fault == FaultKind::Blackhole && !user_timeout.is_zero() {
            let at = t0 + in_flight_read_after(offset);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let in_flight =
                unacked_at(&tb.client, local, s.addr)?.map(|(n, sent)| (n, rel_ms(t0, sent)));
            client_exp = unacked_first(&expect, fault, client_exp, in_flight);
        }
    }
    // Where the fault cuts server → client, a line that came in the first
    // ms after t0 reports what crossed the router before the rule went in
    // (nothing of the server's crosses it after): e.g. the server's last
    // Ping, sent as the fault was committed, which anchors its next one.
    // Read again now, 5 ms on.
    let cuts_down = matches!(
        fault,
        FaultKind::Blackhole
            | FaultKind::BlackholeDown
            | FaultKind::Reset
            | FaultKind::Crash
            | FaultKind::ClientCrash
    );
    let late = Duration::from_millis(if cuts_down { LATE_LINE_MS } else { 0 });
    let anchors = Anchors {
        lines: client
            .lines()
            .iter()
            .filter(|(t, _)| *t <= t0 + late)
            .map(|(t, l)| (rel_ms(t0, *t), l.clone()))
            .collect(),
        ..anchors
    };
    let mut server_exp = (s.window)(fault, &anchors);
    if let (Some(lo), Some(hi)) = (server_exp.min_ms, server_exp.max_ms) {
        // The anchor is the server's TCP_INFO, jiffy-counted: ± 1 jiffy.
        let j = jiffy_ms();
        server_exp.min_ms = Some(lo.saturating_sub(j));
        server_exp.max_ms = Some(hi + j);
        server_exp.formula = format!(
            "{}, ± {j} ms (the anchor is the server's TCP_INFO last receive, jiffy-counted)",
            server_exp.formula
        );
    }
    let client_deadline_ms = client_exp.deadline_ms(UNDECLARED_WATCH_MS);
    let server_deadline_ms = server_exp.deadline_ms(UNDECLARED_WATCH_MS)
        + crate::deviations::late_allowance_ms(
            &ctx.deviations,
            case.id,
            "server",
            &s.implementation.name,
        );
    // A stopped or killed program detects nothing: it is reported, not
    // judged (outcome::client_in_situation), and not waited for.
    let client_deadline = if fault.on_client() {
        Instant::now()
    } else {
        t0 + Duration::from_millis(client_deadline_ms)
    };

    // The client's detection: its `detected` line, or its socket leaving
    // ESTABLISHED, whichever the adapter declares (the socket first).
    let server_closed = server_watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let mut line = None;
    while Instant::now() < client_deadline {
        line = client.detected_since(t0);
        // When the socket judges, a `detected` line does not end the wait:
        // a library may decide long before it lets its socket go.
        let socket_done = client_watch.as_ref().is_some_and(|w| w.is_done());
        let line_judges = client_watch.is_none() && line.is_some();
        if socket_done || line_judges || client.exited().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let client_closed = match client_watch {
        // A stopped program's socket leaves ESTABLISHED when the server's
        // close arrives: that is the server's detection, not the client's.
        Some(w) if !fault.on_client() => w.wait(Instant::now())?,
        _ => None,
    };
    if line.is_none() {
        line = client.detected_since(t0);
    }
    // A reconnect shows up as a new connection (or its `reconnected` line).
    std::thread::sleep(Duration::from_millis(300));
    let others = client.others(s.addr, local);
    let release = crate::outcome::releases(tb, local, s.addr);
    let mut timeline: Vec<(Instant, String)> = client
        .lines()
        .iter()
        .map(|(t, l)| (*t, format!("client says: {l}")))
        .collect();
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    timeline.push((
        client_last,
        "last data received by the client (TCP_INFO)".into(),
    ));
    timeline.push((
        server_last,
        "last data received by the server (TCP_INFO)".into(),
    ));
    if !others.is_empty() {
        timeline.push((
            Instant::now(),
            format!("client's new connection(s): {}", others.join(", ")),
        ));
    }
    drop(client);

    let client_side = if a.observe.contains(&Observe::Socket) {
        let mut side = Side::from_socket(
            client_exp,
            client_closed.clone(),
            client_deadline_ms,
            "client",
        );
        if let Some((t, l)) = &line {
            side = side.with_fact("line", format!("{l} at {:+} ms", rel_ms(t0, *t)));
        }
        side
    } else {
        let (at, error) = match &line {
            Some((t, l)) => (Some(*t), Some(format!("client said: {l}"))),
            None => (None, None),
        };
        let mut at = at;
        let mut error = error;
        crate::drive::client::not_after(&mut at, &mut error, client_deadline);
        Side::library(client_exp, at, error, client_deadline_ms)
    };
    let facts = RunFacts {
        case,
        fault,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
        config: ctx.config.effective(s.knobs),
        t0,
        timeline,
        release,
    };
    facts.both_sides(
        client_impl,
        s.implementation,
        client_side,
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "server"),
        &ctx.judging(),
    )
}

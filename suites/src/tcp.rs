//! TCP keep-alive (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4) and TCP_USER_TIMEOUT
//! (RFC 5482) on a client socket configured through socket2, against our own
//! echo server (`kaspec serve tcp`) in the server host.
//!
//! Linux, as the expectations model it (net/ipv4/tcp_timer.c,
//! `tcp_keepalive_timer`): the first probe goes out I after the last segment
//! received, then one every V; when the timer fires with N probes
//! unanswered the connection is aborted (ETIMEDOUT). With TCP_USER_TIMEOUT U
//! set, N is ignored: the abort happens at the first firing where the time
//! since the last segment received is at least U. With unacknowledged data
//! in flight keep-alive never probes; only U (or the ~15 min retransmission
//! limit) ends the connection, and the RTO is clamped so that it ends at U.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::netns::Testbed;
use kaspec_harness::observe::SocketWatch;
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::case::{ms_of, rel_ms, CaseDef, Ctx, RunFacts, Side};
use crate::config::TcpConfig;
use crate::linux;

pub const PORT: u16 = 7000;

/// Why TCP alone cannot see a frozen peer (PROTOCOLS.md, TCP).
const FROZEN_KERNEL_ANSWERS: &str =
    "the frozen server's kernel still answers keep-alive probes: TCP keep-alive cannot detect a hung application (expected non-detection)";

const ALL_FAULTS: &[FaultKind] = &FaultKind::INSTANT;
/// The idle keep-alive case also takes a slow or lossy path with a live peer.
const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_AND_IMPAIR;

pub static CASES: [CaseDef; 4] = [
    CaseDef {
        id: "tcp/rfc1122-4.2.3.6/1",
        protocol: "tcp",
        spec: "RFC 1122 §4.2.3.6, RFC 9293 §3.8.4",
        description: "Idle connection with keep-alive on; the path fails: the client's stack probes and declares the peer dead.",
        requirement: "Keep-alive probes an idle connection; one unanswered probe MUST NOT mean death; Linux aborts after I + N×V (or at U with TCP_USER_TIMEOUT)",
        faults: IDLE_FAULTS,
        run: run_idle_keepalive,
        budget,
        fixed_fault: None,
    },
    CaseDef {
        id: "tcp/rfc1122-4.2.3.6/2",
        protocol: "tcp",
        spec: "RFC 1122 §4.2.3.6",
        description: "Idle connection with keep-alive off (every socket's default); the path fails: nothing notices (informational).",
        requirement: "Keep-alive is off by default; an idle connection without it is never checked",
        faults: ALL_FAULTS,
        run: run_idle_no_keepalive,
        budget,
        fixed_fault: None,
    },
    CaseDef {
        id: "tcp/rfc5482-3/1",
        protocol: "tcp",
        spec: "RFC 5482 §3, RFC 9293 §3.8.3",
        description: "The path fails, then the client sends: data in flight is never acknowledged; TCP_USER_TIMEOUT ends the connection.",
        requirement: "Unacknowledged data older than the user timeout aborts the connection; keep-alive does not probe while data is in flight",
        faults: ALL_FAULTS,
        run: run_data_in_flight,
        budget,
        fixed_fault: None,
    },
    CaseDef {
        id: "tcp/rfc9293-3.5.2/1",
        protocol: "tcp",
        spec: "RFC 9293 §3.5.2, §3.5.3",
        description: "Half-open: the server host crashes without FIN (blackhole, SIGKILL), forgets the connection (its sockets destroyed, as after a reboot), and the path returns halfway between two keep-alive probes: the next probe meets an RST.",
        requirement: "A segment for a connection the peer no longer has is answered with RST, which aborts the survivor's half-open connection at its next probe rather than at the keep-alive's give-up",
        faults: &[FaultKind::Crash],
        fixed_fault: Some(FaultKind::Crash),
        run: run_half_open,
        budget,
    },
];

/// When keep-alive declares an idle connection dead, counted from the last
/// segment received: the nominal time, the most the kernel's timer wheel can
/// add, and the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Death {
    pub ms: u64,
    pub slack_ms: u64,
    pub formula: String,
}

/// A live peer on a slow or lossy path, seen by TCP keep-alive: probes are
/// not retransmitted; the connection dies only when N probes in a row (or
/// their answers) are lost, or when no answer comes within N × V of the
/// first probe (U with TCP_USER_TIMEOUT). With N = 1 a single loss kills it.
pub fn keepalive_on_impaired_path(t: &TcpConfig, imp: &kaspec_harness::impair::Impairment, who: &str, spec: &str) -> Expectation {
    if !t.keepalive {
        return Expectation::not_detected(format!("{who}: keep-alive off: nothing on that side can time out"), spec);
    }
    if imp.loss_percent > 0.0 && t.count < 2 && t.user_timeout.is_zero() {
        return Expectation::not_detected(
            format!(
                "{who}: N = 1: one lost probe or answer ends the connection (about {:.1}% per idle cycle at {}% loss each way): a false detection is allowed",
                2.0 * imp.loss_percent,
                imp.loss_percent
            ),
            spec,
        );
    }
    let (what, span) = if t.user_timeout.is_zero() {
        ("the time from the first unanswered probe to death, N × V =".to_string(), t.interval * t.count)
    } else {
        ("TCP_USER_TIMEOUT U =".to_string(), t.user_timeout)
    };
    crate::case::impaired_expectation(&format!("{who}: {what}"), span, imp, spec)
}

pub fn keepalive_death(t: &TcpConfig) -> Death {
    let (i, v, u) = (ms_of(t.idle), ms_of(t.interval), ms_of(t.user_timeout));
    // Timers: the first (I, re-armed once for the remainder after our last
    // exchange), then one per probe interval.
    let (probes, formula) = if u == 0 {
        let n = t.count as u64;
        (n, format!("I + N×V = {i} + {n}×{v} = {} ms", i + n * v))
    } else {
        let k = if u > i { (u - i).div_ceil(v).max(1) } else { 1 };
        (k, format!("U={u} overrides N: first timer firing at I + k×V ≥ U, k ≥ 1: {i} + {k}×{v} = {} ms", i + k * v))
    };
    let ms = i + probes * v;
    let slack_ms = linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0) + probes * linux::wheel_slack_ms(v);
    Death { ms, slack_ms, formula }
}

/// How long one run of a TCP case may take: set-up, then three times the
/// keep-alive window (the longest wait of any TCP case), plus the user timeout.
fn budget(ctx: &Ctx) -> Duration {
    let c = &ctx.config;
    let d = keepalive_death(&c.tcp);
    Duration::from_millis(3 * (d.ms + d.slack_ms).max(ms_of(c.tcp.user_timeout)) + 3000)
}

/// The deadline of a case whose expectation is "not detected": 1.5× the
/// keep-alive window this configuration would give, at least 3 s.
fn quiet_deadline_ms(t: &TcpConfig) -> u64 {
    let d = keepalive_death(&TcpConfig { keepalive: true, user_timeout: Duration::ZERO, ..*t });
    (d.ms * 3 / 2).max(3000)
}

pub fn implementation() -> Implementation {
    Implementation::new("linux-tcp/socket2", format!("{} (socket2 {})", kernel(), env!("KASPEC_VERSION_SOCKET2")))
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| format!("linux {}", s.trim())).unwrap_or_else(|_| "linux".into())
}

pub fn server_implementation() -> Implementation {
    Implementation::new("kaspec-tcp-echo", env!("CARGO_PKG_VERSION"))
}

/// What the client does after the fault is in force.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Stay idle, blocked in read.
    Idle,
    /// Send a few bytes right away, then read.
    Send,
}

struct Ready {
    local: SocketAddrV4,
    last_rx: Instant,
}

struct ClientEnd {
    /// The client's socket, still open: closed only after the server was
    /// watched, or its clean close could pass for the server's detection.
    _socket: Option<std::net::TcpStream>,
    sent_at: Option<Instant>,
    /// The retransmission state just before the send.
    retrans: Option<linux::RetransState>,
    failed_at: Option<Instant>,
    error: Option<String>,
}

pub(crate) fn server_addr(tb: &Testbed) -> SocketAddrV4 {
    SocketAddrV4::new(tb.server.addr, tb.server_port(PORT))
}

pub(crate) fn configure(sock: &Socket, t: &TcpConfig) -> std::io::Result<()> {
    sock.set_keepalive(t.keepalive)?;
    if t.keepalive {
        sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(t.idle).with_interval(t.interval).with_retries(t.count))?;
    }
    if !t.user_timeout.is_zero() {
        sock.set_tcp_user_timeout(Some(t.user_timeout))?;
    }
    Ok(())
}

/// Connects a socket configured with `tcp` and exchanges one line with the
/// echo server: returns the stream, its local end, and when the last segment
/// (the echo) was received.
pub(crate) async fn connect_and_exchange(server: SocketAddrV4, tcp: &TcpConfig) -> std::io::Result<(tokio::net::TcpStream, SocketAddrV4, Instant)> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    configure(&sock, tcp)?;
    sock.connect_timeout(&SocketAddr::V4(server).into(), Duration::from_secs(3))?;
    sock.set_nonblocking(true)?;
    let mut stream = tokio::net::TcpStream::from_std(sock.into())?;
    stream.write_all(b"hello\n").await?;
    let mut buf = [0u8; 6];
    stream.read_exact(&mut buf).await?;
    let last = Instant::now();
    let SocketAddr::V4(local) = stream.local_addr()? else { unreachable!("IPv4 testbed") };
    Ok((stream, local, last))
}

/// The client: connect with `tcp`, exchange one line (the last activity),
/// report ready, wait for the go, then idle or send and read until the
/// connection fails or `deadline` passes.
fn client(
    server: SocketAddrV4,
    tcp: TcpConfig,
    after: After,
    ready: mpsc::Sender<std::io::Result<Ready>>,
    go: mpsc::Receiver<Instant>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let setup = rt.block_on(async {
        let (stream, local, last_rx) = connect_and_exchange(server, &tcp).await?;
        Ok::<_, std::io::Error>((stream, Ready { local, last_rx }))
    });
    let mut stream = match setup {
        Ok((s, r)) => {
            let _ = ready.send(Ok(r));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return ClientEnd { _socket: None, sent_at: None, retrans: None, failed_at: None, error: None };
        }
    };
    let Ok(deadline) = go.recv() else {
        return ClientEnd { _socket: None, sent_at: None, retrans: None, failed_at: None, error: None };
    };
    let (mut end, stream) = rt.block_on(async move {
        let mut end = ClientEnd { _socket: None, sent_at: None, retrans: None, failed_at: None, error: None };
        if after == After::Send {
            end.retrans = linux::RetransState::read(std::os::fd::AsRawFd::as_raw_fd(&stream)).ok();
            end.sent_at = Some(Instant::now());
            if let Err(e) = stream.write_all(b"data after the fault\n").await {
                end.failed_at = Some(Instant::now());
                end.error = Some(io_error_text("write", &e));
                return (end, stream);
            }
        }
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
                Err(_) => return (end, stream),
                Ok(Ok(0)) => {
                    end.failed_at = Some(Instant::now());
                    end.error = Some("read: end of stream (the peer closed the connection)".into());
                    return (end, stream);
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    end.failed_at = Some(Instant::now());
                    end.error = Some(io_error_text("read", &e));
                    return (end, stream);
                }
            }
        }
    });
    let _in_runtime = rt.enter();
    end._socket = stream.into_std().ok();
    end
}

fn io_error_text(op: &str, e: &std::io::Error) -> String {
    format!("{op}: std::io::Error {{ kind: {:?} }}: {e}", e.kind())
}

/// Client-side expectation for the idle cases, from the configuration and the
/// measured idle time before the fault (`idle_ms` = t0 − last segment received).
fn idle_expectation(t: &TcpConfig, fault: FaultKind, idle_ms: u64, spec: &str) -> Expectation {
    if !t.keepalive {
        return Expectation::not_detected("keep-alive off: an idle connection is never probed", spec);
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected(FROZEN_KERNEL_ANSWERS, spec);
    }
    let i = ms_of(t.idle);
    match fault {
        FaultKind::Reset => {
            let d = i.saturating_sub(idle_ms);
            let slack = linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0);
            Expectation::window(
                d,
                d + slack,
                format!(
                    "the first probe (I after the last segment) is answered by RST: I − idle = {i} − {idle_ms} = {d} ms, + up to {slack} ms timer-wheel rounding ({})",
                    linux::hz_text()
                ),
                "RFC 9293 §3.5.3 (reset processing)",
                Level::Must,
            )
        }
        _ => {
            let death = keepalive_death(t);
            let d = death.ms.saturating_sub(idle_ms);
            Expectation::window(
                d,
                d + death.slack_ms,
                format!(
                    "{}, − idle before the fault {idle_ms} ms = {d} ms, + up to {} ms timer-wheel rounding ({})",
                    death.formula,
                    death.slack_ms,
                    linux::hz_text()
                ),
                spec,
                Level::Must,
            )
        }
    }
}

/// Server-side expectation: our echo server enables no keep-alive and has
/// nothing to send, so it learns only what reaches it from the client.
fn server_expectation_idle(t: &TcpConfig, fault: FaultKind, idle_ms: u64) -> Expectation {
    let spec = "RFC 1122 §4.2.3.6 (the server side has keep-alive off)";
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the server process is frozen", spec);
    }
    if fault == FaultKind::BlackholeDown && t.keepalive {
        // The client's stack aborts with an RST, and client->server still passes.
        let death = keepalive_death(t);
        let d = death.ms.saturating_sub(idle_ms);
        return Expectation::window(
            d,
            d + death.slack_ms,
            format!("the client's abort RST passes the one-way blackhole: {} − idle {idle_ms} = {d} ms (+ up to {} ms)", death.formula, death.slack_ms),
            spec,
            Level::Info,
        );
    }
    Expectation::not_detected("server keep-alive off and nothing to send: the server never learns", spec)
}

struct Plan {
    tcp: TcpConfig,
    after: After,
    /// Half-open: after the crash, the server host forgets the flow and the
    /// path returns this long after the fault.
    heal_after: Option<Duration>,
}

/// Our TCP echo server on `tb` (docker-compose.yml's kaspec-tcp on the
/// docker testbed).
pub(crate) fn start_server(ctx: &Ctx, tb: &Testbed) -> Result<Server> {
    let addr = server_addr(tb);
    let mut args = ctx.serve.args.clone();
    args.extend(["tcp".into(), "--listen".into(), addr.to_string()]);
    Server::start(
        tb,
        &ServerSpec {
            name: "kaspec-tcp".into(),
            program: ctx.serve.program.clone(),
            args,
            addr,
            ready_within: Duration::from_secs(5),
            container: Some(ContainerCheck { service: "kaspec-tcp".into(), args: vec!["serve".into(), "tcp".into()], ..Default::default() }),
            ..Default::default()
        },
    )
}

fn run(ctx: &Ctx, case: &CaseDef, fault: FaultKind, plan: Plan) -> Result<Vec<CaseResult>> {
    let tb = ctx.testbed_for("kaspec-tcp")?;
    let addr = server_addr(&tb);
    let server = start_server(ctx, &tb)?;

    // Each side waits as long as its own nominal expectation says (idle time
    // 0, send at t0): 3× the upper bound, or the quiet deadline if nothing
    // should happen on that side.
    let quiet = quiet_deadline_ms(&plan.tcp);
    let (nominal_client, nominal_server) = expectations(&plan, case, fault, 0, None, None);
    let imp = ctx.impairment(fault).filter(|_| plan.tcp.keepalive);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        Some(i) => {
            let watch = crate::case::impaired_watch_ms(Duration::from_millis(keepalive_death(&plan.tcp).ms), i);
            (watch, watch)
        }
        None => (nominal_client.deadline_ms(quiet), nominal_server.deadline_ms(quiet)),
    };

    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let (tcp, after) = (plan.tcp, plan.after);
    let client_thread = tb.client.spawn_thread("kaspec-tcp-client", move || client(addr, tcp, after, ready_tx, go_rx))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| Error::Other("tcp client did not connect within 10 s".into()))?
        .map_err(|e| Error::io(format!("tcp client connecting to {addr}"), e))?;

    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    let applied = tb.apply_fault(fault, &Flow { client: ready.local, server: addr }, Some(server.pid()))?;
    let t0 = applied.in_force_at;
    // On a live path the client closes only after the server's watch ended.
    let client_until = client_deadline_ms + if imp.is_some() { 500 } else { 0 };
    go_tx.send(t0 + Duration::from_millis(client_until)).map_err(|_| Error::Other("tcp client thread ended early".into()))?;
    let mut healed_at = None;
    if let Some(h) = plan.heal_after {
        tb.forget_on_server(&Flow { client: ready.local, server: addr })?;
        if let Some(wait) = (t0 + h).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        healed_at = Some(tb.heal()?);
    }
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let end = client_thread.join()?;

    let idle_ms = rel_ms(ready.last_rx, t0).max(0) as u64;
    let sent_ms = end.sent_at.map(|t| rel_ms(t0, t).max(0) as u64);
    let (mut client_exp, mut server_exp) = expectations(&plan, case, fault, idle_ms, sent_ms, end.retrans.as_ref());
    if let Some(h) = healed_at {
        client_exp = half_open_expectation(&plan.tcp, idle_ms, rel_ms(t0, h).max(0) as u64);
    }
    if let Some(i) = &imp {
        // Each probe is answered (or retried) within V; N unanswered probes in a row are death.
        client_exp = keepalive_on_impaired_path(&plan.tcp, i, "client", case.spec);
        server_exp = Expectation::not_detected("the server has keep-alive off and nothing to send: nothing on that side can time out", case.spec);
    }
    let mut config = ctx.config.effective("tcp.");
    config.insert("tcp.keepalive".into(), plan.tcp.keepalive.to_string());
    let mut timeline = vec![(ready.last_rx, "last segment received by the client".to_string())];
    if let Some(t) = end.sent_at {
        let state = end.retrans.map(|r| format!(" (rto {} ms, srtt {} µs)", r.rto_us / 1000, r.srtt_us)).unwrap_or_default();
        timeline.push((t, format!("client sent data{state}")));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    if let Some(h) = healed_at {
        timeline.push((t0, "server host forgot the flow (SOCK_DESTROY)".into()));
        timeline.push((h, "path returns (half-open)".into()));
    }
    let release = crate::case::releases(&tb, ready.local, addr);
    if let Some(e) = crate::case::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release };
    Ok(facts.both_sides(
        implementation(),
        server_implementation(),
        Side { expected: client_exp, detected_at: end.failed_at, error: end.error, deadline_ms: client_deadline_ms },
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "server"),
        &ctx.deviations,
    ))
}

/// Both sides' expectations for a plan: `idle_ms` = t0 − last segment
/// received, `sent_ms` = when the client sent after t0.
fn expectations(
    plan: &Plan,
    case: &CaseDef,
    fault: FaultKind,
    idle_ms: u64,
    sent_ms: Option<u64>,
    retrans: Option<&linux::RetransState>,
) -> (Expectation, Expectation) {
    match plan.after {
        After::Idle => (idle_expectation(&plan.tcp, fault, idle_ms, case.spec), server_expectation_idle(&plan.tcp, fault, idle_ms)),
        After::Send => (
            send_expectation(&plan.tcp, fault, sent_ms.unwrap_or(0), retrans),
            Expectation::not_detected("the server has nothing in flight and keep-alive off: it never learns", "RFC 5482 §3"),
        ),
    }
}

/// Client-side expectation when data is sent right after the fault (at
/// `sent_ms` after t0). Linux starts the TCP_USER_TIMEOUT clock at the first
/// RTO retransmission, not at the send (see [`linux::RetransState`]).
pub(crate) fn send_expectation(t: &TcpConfig, fault: FaultKind, sent_ms: u64, retrans: Option<&linux::RetransState>) -> Expectation {
    let spec = "RFC 5482 §3 (TCP_USER_TIMEOUT), Linux retrans_stamp";
    if fault == FaultKind::Reset {
        return Expectation::window(
            0,
            sent_ms,
            format!("immediate: the data sent at +{sent_ms} ms is answered by RST"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected(
            "the frozen server's kernel acknowledges the data: nothing stays unacknowledged, so U never fires",
            spec,
        );
    }
    let u = ms_of(t.user_timeout);
    if u == 0 {
        return Expectation::not_detected(
            "U = 0: only the retransmission limit (tcp_retries2, ~15 min) ends it; keep-alive does not probe while data is in flight",
            spec,
        );
    }
    // Nominal (before the socket's state is known): 200 ms PTO + 200 ms RTO.
    let nominal = linux::RetransState { rto_us: 200_000, srtt_us: 0, rto_min_us: 200_000, tlp: true };
    let state = retrans.unwrap_or(&nominal);
    let (first, how) = state.first_retransmission_ms();
    let d = sent_ms + first + u;
    let slack = linux::wheel_slack_ms(state.rto_us / 1000) * 2 + linux::wheel_slack_ms(u);
    Expectation::window(
        d,
        d + slack,
        format!(
            "send offset + first RTO retransmission + U = {sent_ms} + ({how}) + {u} = {d} ms, + up to {slack} ms timer-wheel rounding ({}); srtt {} µs",
            linux::hz_text(),
            state.srtt_us
        ),
        spec,
        Level::Must,
    )
}

fn run_idle_keepalive(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    run(ctx, case, fault, Plan { tcp: ctx.config.tcp, after: After::Idle, heal_after: None })
}

fn run_idle_no_keepalive(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    run(ctx, case, fault, Plan { tcp: TcpConfig { keepalive: false, ..ctx.config.tcp }, after: After::Idle, heal_after: None })
}

/// When the path returns after a crash: after the first keep-alive probe
/// was lost, halfway to the second.
fn half_open_heal(t: &TcpConfig) -> Duration {
    t.idle + t.interval / 2
}

fn run_half_open(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let t = ctx.config.tcp;
    if !t.keepalive || (t.count < 2 && t.user_timeout.is_zero()) {
        return Err(Error::Other(format!(
            "{}: needs tcp.keepalive = true and tcp.count ≥ 2 (a second probe to meet the RST); got keepalive = {}, count = {}",
            case.id, t.keepalive, t.count
        )));
    }
    run(ctx, case, fault, Plan { tcp: t, after: After::Idle, heal_after: Some(half_open_heal(&t)) })
}

/// Half-open after a crash: probes go out at I, I + V, ... after the last
/// segment; the path returns at `heal_ms` after t0 to a host that forgot the
/// flow; the first probe after that is answered with RST.
pub fn half_open_expectation(t: &TcpConfig, idle_ms: u64, heal_ms: u64) -> Expectation {
    let (i, v) = (ms_of(t.idle), ms_of(t.interval));
    let since_last = heal_ms + idle_ms;
    let k = if since_last < i { 0 } else { (since_last - i) / v + 1 };
    let probe = (i + k * v).saturating_sub(idle_ms);
    let death = keepalive_death(t);
    let spec = "RFC 9293 §3.5.2 (half-open connections), §3.5.3";
    if probe + idle_ms >= death.ms {
        return Expectation::not_detected(format!("the keep-alive gives up ({}) before its next probe can meet the returned path", death.formula), spec);
    }
    let slack = linux::wheel_slack_ms(i) + linux::wheel_slack_ms(0) + k * linux::wheel_slack_ms(v);
    Expectation::window(
        probe,
        probe + slack,
        format!(
            "the path returns at +{heal_ms} ms to a host that forgot the flow; probe {} after the last segment (I + {k}×V − idle = {i} + {k}×{v} − {idle_ms} = {probe} ms) is answered with RST (+ up to {slack} ms timer-wheel rounding); on a dead path it would have been {}",
            k + 1,
            death.formula
        ),
        spec,
        Level::Must,
    )
}

fn run_data_in_flight(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    run(ctx, case, fault, Plan { tcp: ctx.config.tcp, after: After::Send, heal_after: None })
}

/// Our TCP server: echoes every line, never enables keep-alive, logs each
/// connection's end. Runs until killed.
pub fn serve(listen: SocketAddrV4) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("kaspec-tcp-echo listening on {listen}");
        loop {
            let (mut conn, peer) = listener.accept().await?;
            println!("accepted {peer}");
            tokio::spawn(async move {
                let _ = SockRef::from(&conn).set_nodelay(true);
                let mut buf = [0u8; 4096];
                let why = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break "end of stream".to_string(),
                        Ok(n) => {
                            if let Err(e) = conn.write_all(&buf[..n]).await {
                                break format!("write: {e}");
                            }
                        }
                        Err(e) => break format!("read: {e}"),
                    }
                };
                println!("closed {peer}: {why}");
            });
        }
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn keepalive_on_a_lossy_path_needs_two_probes_and_n_times_v() {
        use kaspec_harness::impair::Impairment;
        let t = |n: u32| TcpConfig { keepalive: true, idle: Duration::from_secs(2), interval: Duration::from_secs(1), count: n, user_timeout: Duration::ZERO };
        let lossy = Impairment { rtt: Duration::ZERO, jitter: Duration::ZERO, loss_percent: 2.0, seed: 1 };
        assert_eq!(keepalive_on_impaired_path(&t(1), &lossy, "client", "s").level, Level::Info, "N = 1: one loss kills it");
        assert_eq!(keepalive_on_impaired_path(&t(3), &lossy, "client", "s").level, Level::Must);
        let slow = Impairment { rtt: Duration::from_millis(2500), ..lossy };
        let slow = Impairment { loss_percent: 0.0, ..slow };
        // N × V = 3 s > 2.5 s: must stay up; N × V = 2 s: allowed to fail.
        assert_eq!(keepalive_on_impaired_path(&t(3), &slow, "client", "s").level, Level::Must);
        assert_eq!(keepalive_on_impaired_path(&t(2), &slow, "client", "s").level, Level::Info);
    }

    use super::*;

    fn tcp(i: u64, v: u64, n: u32, u_ms: u64) -> TcpConfig {
        TcpConfig {
            keepalive: true,
            idle: Duration::from_secs(i),
            interval: Duration::from_secs(v),
            count: n,
            user_timeout: Duration::from_millis(u_ms),
        }
    }

    #[test]
    fn keepalive_window_is_idle_plus_count_intervals() {
        assert_eq!(keepalive_death(&tcp(2, 1, 3, 0)).ms, 5000);
        assert_eq!(keepalive_death(&tcp(7200, 75, 9, 0)).ms, 7_875_000);
        // Slack: one wheel rounding per timer, never zero, and well below a period.
        let d = keepalive_death(&tcp(2, 1, 3, 0));
        assert!(d.slack_ms > 0 && d.slack_ms < 1000, "{d:?}");
    }

    #[test]
    fn user_timeout_overrides_count_at_the_next_timer_firing() {
        // Firings at 2, 3, 4, 5 s after the last segment; U = 3.5 s -> 4 s.
        assert_eq!(keepalive_death(&tcp(2, 1, 9, 3500)).ms, 4000);
        // U shorter than I: the first probe must still go out, death at I + V.
        assert_eq!(keepalive_death(&tcp(5, 2, 9, 1000)).ms, 7000);
    }

    #[test]
    fn expectations_move_with_the_configuration() {
        let e = idle_expectation(&tcp(2, 1, 3, 0), FaultKind::Blackhole, 100, "s");
        let slack = keepalive_death(&tcp(2, 1, 3, 0)).slack_ms;
        assert_eq!((e.min_ms, e.max_ms), (Some(4900), Some(4900 + slack)));
        let r = idle_expectation(&tcp(2, 1, 3, 0), FaultKind::Reset, 100, "s");
        assert_eq!(r.min_ms, Some(1900));
        let off = idle_expectation(&TcpConfig { keepalive: false, ..tcp(2, 1, 3, 0) }, FaultKind::Blackhole, 0, "s");
        assert!(!off.expects_detection());
        let state = linux::RetransState { rto_us: 204_000, srtt_us: 40, rto_min_us: 200_000, tlp: true };
        // 3 + (min(80 µs + 200 ms, 204 ms) = 201 ms PTO + 204 ms RTO) + 2500.
        assert_eq!(send_expectation(&tcp(2, 1, 3, 2500), FaultKind::Blackhole, 3, Some(&state)).min_ms, Some(3 + 201 + 204 + 2500));
        let no_tlp = linux::RetransState { tlp: false, ..state };
        assert_eq!(send_expectation(&tcp(2, 1, 3, 2500), FaultKind::Blackhole, 3, Some(&no_tlp)).min_ms, Some(3 + 204 + 2500));
        assert!(!send_expectation(&tcp(2, 1, 3, 0), FaultKind::Blackhole, 3, None).expects_detection());
    }
}

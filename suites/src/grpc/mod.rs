//! gRPC keep-alive (gRFC A8; HTTP/2 PING, RFC 9113 §6.7): a tonic client
//! with `grpc.keepalive_time` (I), `grpc.keepalive_timeout` (T) and
//! `grpc.keepalive_while_idle`, plus the TCP knobs, against our tonic server
//! (`kaspec serve grpc`) and Python grpcio (Debian's python3-grpcio), both
//! serving `kaspec.Echo` from fixtures/grpc/kaspec.proto.
//!
//! hyper's keep-alive (src/proto/h2/ping.rs), which both tonic ends use:
//! a PING is scheduled I after the last frame read; if its ACK does not come
//! within T the connection is closed. An idle connection is pinged only with
//! while_idle. So a blackholed idle connection is declared dead in (T, I + T]
//! after the fault, and a call started on an unprobed connection fails T after
//! the PING it triggers.

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::caps::require_program;
use kaspec_harness::expect::{Expectation, Level, Verdict};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::observe::{local_end_towards, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker, Protocol};
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{ms_of, rel_ms};
use crate::model::impaired::{impaired_expectation, impaired_watch_ms};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::config::{GrpcConfig, TcpConfig};
use crate::model::linux;
use crate::peers::python as servers;

pub mod proto {
    tonic::include_proto!("kaspec");
}

use proto::echo_client::EchoClient;
use proto::echo_server::{Echo, EchoServer};
use proto::Text;

pub const PORT: u16 = 50051;
const SPEC_A8: &str = "gRFC A8 (client keepalive), RFC 9113 §6.7";
/// Idle time between the last response and the fault (see `detection`).
const QUIET_BEFORE_FAULT: Duration = Duration::from_millis(300);

const DETECTION_FAULTS: &[FaultKind] = &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Freeze, FaultKind::Crash];
const IDLE_FAULTS: &[FaultKind] =
    &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Freeze, FaultKind::Crash, FaultKind::Delay, FaultKind::Loss];

pub static PROTOCOL: Protocol = Protocol { name: "grpc", cases: &CASES, prerequisites: || crate::peers::python::python_module("grpc", "python3-grpcio") };

/// The compose services of the gRPC cases on the docker testbed: our tonic
/// server with the keep-alive of fixtures/grpc/servers.toml, and with tonic's
/// defaults.
const GRPC: Docker = Docker::Service { service: "kaspec-grpc", implementation: "kaspec-grpc (tonic)" };
const GRPC_DEFAULTS: Docker = Docker::Service { service: "kaspec-grpc-defaults", implementation: "kaspec-grpc (tonic)" };

/// RFC 9113 §6.7, which gRFC A8's keepalive relies on.
const PING_ACK: &str = "Receivers of a PING frame that does not include an ACK flag MUST send a PING frame with the ACK flag set in response, with an identical frame payload.";
/// gRFC A8 (client-side keepalive), KEEPALIVE_WITHOUT_CALLS.
const WITHOUT_CALLS: &str = "KEEPALIVE_WITHOUT_CALLS: whether keepalive pings are sent when there are no outstanding calls (default false). [gRFC A8]";
/// gRFC A8, server enforcement.
const TOO_MANY_PINGS: &str = "Servers must respond with GOAWAY ENHANCE_YOUR_CALM with debug data \"too_many_pings\" when receiving pings more frequently than PERMIT_KEEPALIVE_TIME allows, after too many strikes. [gRFC A8]";
/// gRPC's keepalive guide, on what an unanswered keepalive PING does.
const A8_CLOSE: &str = "gRPC sends http2 pings on the transport to detect if the connection is down. If the ping is not acknowledged by the other side within a certain period, the connection will be closed. [gRPC keepalive guide, gRFC A8]";

pub static CASES: [CaseDef; 4] = [
    CaseDef {
        id: "grpc/a8-keepalive/1",
        protocol: "grpc",
        spec: "gRFC A8, RFC 9113 §6.7",
        quote: PING_ACK,
        description: "Idle channel with keepalive_while_idle; the path fails: the client's PING goes unanswered and the connection is closed; the server's own keep-alive closes its end too.",
        requirement: "A PING MUST be answered with a PING ACK (RFC 9113 §6.7); a client whose keepalive PING is not acknowledged within KEEPALIVE_TIMEOUT closes the connection and fails calls with UNAVAILABLE (gRFC A8)",
        faults: IDLE_FAULTS,
        fixed_fault: None,
        docker: GRPC,
        run: run_idle,
        budget,
    },
    CaseDef {
        id: "grpc/a8-keepalive/2",
        protocol: "grpc",
        spec: "gRFC A8 (KEEPALIVE_WITHOUT_CALLS = false)",
        quote: WITHOUT_CALLS,
        description: "Idle channel without keepalive_while_idle: the dead path is not probed while idle; a call started I after the fault triggers a PING and fails T later.",
        requirement: "Without KEEPALIVE_WITHOUT_CALLS no PING is sent while there are no calls; with a call in flight the keepalive PING bounds the wait to about KEEPALIVE_TIMEOUT",
        faults: DETECTION_FAULTS,
        fixed_fault: None,
        docker: GRPC,
        run: run_call_after_idle,
        budget,
    },
    CaseDef {
        id: "grpc/a8-ping-policy/1",
        protocol: "grpc",
        spec: "gRFC A8 (server enforcement)",
        quote: TOO_MANY_PINGS,
        description: "A client pinging every keepalive_time against servers with their default ping policy: is it told GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"?",
        requirement: "Servers SHOULD answer pings more frequent than PERMIT_KEEPALIVE_TIME (default 5 min) with GOAWAY ENHANCE_YOUR_CALM (\"too_many_pings\") after max_ping_strikes (2)",
        faults: &[],
        fixed_fault: Some(FaultKind::None),
        docker: GRPC_DEFAULTS,
        run: run_ping_policy,
        budget,
    },
    CaseDef {
        id: "grpc/a8-keepalive/3",
        protocol: "grpc",
        spec: "gRFC A8, RFC 5382 §5",
        quote: A8_CLOSE,
        description: "Idle channel through a NAT that forgets idle flows after N (the server sends no keep-alive): the client's PINGs every I (and its TCP keep-alive) keep the mapping when either period is below N; otherwise the next PING is dropped and the client declares the connection dead.",
        requirement: "A keep-alive keeps a NAT mapping only when its period is below the NAT's idle timeout; an unacknowledged PING closes the connection KEEPALIVE_TIMEOUT after it is sent",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        docker: GRPC_DEFAULTS,
        run: run_nat,
        budget: |ctx| Duration::from_secs(10) + 3 * crate::model::nat::nat_idle(ctx) + 3 * (ctx.config.grpc.keepalive_time + ctx.config.grpc.keepalive_timeout),
    },
];

/// Client through a NAT with idle timeout `nat`: what refreshes the mapping
/// (HTTP/2 PINGs every I with while_idle; TCP keep-alive probes every
/// tcp.idle) and, when nothing does, the first detection counted from the
/// mapping's expiry (N after the last segment).
pub fn nat_expectation(g: &GrpcConfig, tcp: &TcpConfig, nat: Duration) -> Expectation {
    let spec = "gRFC A8, RFC 5382 §5";
    let n = ms_of(nat);
    let h2 = g.keepalive_while_idle && !g.keepalive_time.is_zero();
    let (i, t) = (ms_of(g.keepalive_time), ms_of(g.keepalive_timeout));
    // The refresh that comes first decides; within the race band either outcome can happen.
    let first = [(h2, "keepalive_time I", g.keepalive_time), (tcp.keepalive, "tcp.idle", tcp.idle)]
        .into_iter()
        .filter(|(on, _, _)| *on)
        .min_by_key(|(_, _, p)| *p);
    if let Some(race) = first.and_then(|(_, what, p)| crate::model::nat::nat_race(what, p, nat, spec)) {
        return race;
    }
    if (h2 && g.keepalive_time < nat) || (tcp.keepalive && tcp.idle < nat) {
        let by = if h2 && g.keepalive_time < nat { format!("a PING every I = {i} ms") } else { format!("a TCP keep-alive probe every tcp.idle = {} ms", ms_of(tcp.idle)) };
        return Expectation::must_stay_up(format!("{by} < N = {n} ms refreshes the mapping: the channel survives 3 × N"), spec);
    }
    // Once the PING is out (unacknowledged data), Linux sends no keep-alive
    // probe: TCP keep-alive decides only if it gives up before the PING goes.
    let death = crate::model::tcp::keepalive_death(tcp);
    let tcp_first = tcp.keepalive && (!h2 || death.ms < i);
    if tcp_first {
        let d = death.ms.saturating_sub(n);
        let how = format!("TCP keep-alive gives up before any PING: {} − N = {d} ms (+ up to {} ms)", death.formula, death.slack_ms);
        return Expectation::window(d, d + death.slack_ms, format!("nothing refreshes the mapping (periods ≥ N = {n} ms): {how}"), spec, Level::Must);
    }
    if h2 {
        let d = (i + t).saturating_sub(n);
        let how = format!("the PING I after the last segment is dropped; closed T later: I + T − N = {i} + {t} − {n} = {d} ms");
        return Expectation::window(d, d, format!("nothing refreshes the mapping (periods ≥ N = {n} ms): {how}"), spec, Level::Must);
    }
    Expectation::not_detected(format!("no keep-alive at all: the mapping is forgotten after N = {n} ms and nothing notices"), spec)
}

fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let (g, tcp) = (ctx.config.grpc, ctx.config.tcp);
    let tb = ctx.testbed_with_nat("kaspec-grpc-defaults", nat)?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let which = GrpcServer::Kaspec;
    let _server = Server::start(&tb, &which.spec(ctx, addr, Mode::Defaults)?)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (_go_tx, go_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_thread = tb.client.spawn_thread("kaspec-grpc-client", move || client(addr, g, tcp, Plan::Idle, ready_tx, go_rx, stop_rx))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(15))
        .map_err(|_| Error::Other("grpc client thread did not report".into()))?
        .map_err(|e| Error::Other(format!("grpc client through the NAT: {e}")))?;
    let client_watch = SocketWatch::start(&tb.client, ready.local, addr)?;
    let expected = nat_expectation(&g, &tcp, nat);
    let watch_ms = (3 * ms_of(nat)).max(expected.max_ms.map(|m| m + ms_of(nat) + 1000).unwrap_or(0));
    let until = ready.last_read + Duration::from_millis(watch_ms);
    let client_closed = client_watch.wait(until)?;
    let _ = stop_tx.send(Some(Instant::now()));
    let end = client_thread.join()?;
    // t0: the mapping expires N after the flow's last segment. While PINGs
    // kept it, the last segment is recent; when nothing did, it is the last
    // response the client read.
    let t0 = ready.last_read + nat;
    let mut timeline = vec![(ready.last_read, "last response read by the client".to_string())];
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    let error = client_closed.as_ref().map(|c| format!("client closed the connection (socket {}); {}", c.state, end.probe.clone().unwrap_or_default()));
    let mut config = config_of(ctx, &g);
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    config.insert("server.keepalive".into(), "off (defaults)".into());
    let deadline_ms = rel_ms(t0, until).max(0) as u64;
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release: Default::default() };
    Ok(facts.client_only(
        client_implementation(),
        which.implementation(),
        Side { expected, detected_at: client_closed.as_ref().map(|c| c.at), error: error.or(end.probe), deadline_ms },
        &ctx.deviations,
    ))
}

fn budget(ctx: &Ctx) -> Duration {
    let g = ctx.config.grpc;
    2 * (Duration::from_secs(4) + 3 * (2 * g.keepalive_time + g.keepalive_timeout).max(Duration::from_secs(4)))
}

// --- servers -----------------------------------------------------------------

/// A server's HTTP/2 keep-alive (fixtures/grpc/servers.toml).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerKeepalive {
    pub time: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GrpcServer {
    Kaspec,
    PythonGrpcio,
}

pub const SERVERS: [GrpcServer; 2] = [GrpcServer::Kaspec, GrpcServer::PythonGrpcio];

/// The servers a run measures: all here, ours only on the docker testbed
/// (docker-compose.yml's kaspec-grpc and kaspec-grpc-defaults).
fn measured(ctx: &Ctx) -> impl Iterator<Item = GrpcServer> {
    let docker = ctx.docker.is_some();
    SERVERS.into_iter().filter(move |s| !docker || *s == GrpcServer::Kaspec)
}

/// How a server is started: with the fixture's keep-alive (detection cases)
/// or with its defaults (the ping-policy case).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Keepalive(ServerKeepalive),
    Defaults,
}

impl GrpcServer {
    pub fn keepalive(self, fixtures: &Path) -> Result<ServerKeepalive> {
        let section = match self {
            GrpcServer::Kaspec => "kaspec",
            GrpcServer::PythonGrpcio => "python-grpcio",
        };
        let d = servers::durations(&fixtures.join("grpc/servers.toml"), section, &["keepalive_time", "keepalive_timeout"])?;
        Ok(ServerKeepalive { time: d[0], timeout: d[1] })
    }

    pub fn implementation(self) -> Implementation {
        match self {
            GrpcServer::Kaspec => Implementation::new("kaspec-grpc (tonic)", env!("KASPEC_VERSION_TONIC")),
            GrpcServer::PythonGrpcio => Implementation::new("python-grpcio", servers::python_version("grpc")),
        }
    }

    fn spec(self, ctx: &Ctx, addr: SocketAddrV4, mode: Mode) -> Result<ServerSpec> {
        let (name, program, args) = match (self, mode) {
            (GrpcServer::Kaspec, _) => {
                let mut args = ctx.serve.args.clone();
                args.extend(["grpc".into(), "--listen".into(), addr.to_string()]);
                if let Mode::Keepalive(k) = mode {
                    args.extend([
                        "--keepalive-time".into(),
                        format!("{}ms", ms_of(k.time)),
                        "--keepalive-timeout".into(),
                        format!("{}ms", ms_of(k.timeout)),
                    ]);
                }
                ("kaspec-grpc", ctx.serve.program.clone(), args)
            }
            (GrpcServer::PythonGrpcio, _) => {
                let python = require_program(servers::PYTHON, "python3")?;
                servers::python_module("grpc", "python3-grpcio")?;
                let (t, to, policy) = match mode {
                    Mode::Keepalive(k) => (ms_of(k.time), ms_of(k.timeout), "permissive"),
                    Mode::Defaults => (0, 0, "default"),
                };
                let script = ctx.fixtures.join("grpc/grpc_server.py");
                let args = vec![
                    script.display().to_string(),
                    addr.ip().to_string(),
                    addr.port().to_string(),
                    t.to_string(),
                    to.to_string(),
                    policy.to_string(),
                ];
                ("python-grpcio", python, args)
            }
        };
        // docker-compose.yml's kaspec-grpc runs the [kaspec] keepalive of
        // fixtures/grpc/servers.toml, kaspec-grpc-defaults none.
        let container = match (self, mode) {
            (GrpcServer::Kaspec, Mode::Keepalive(k)) => Some(ContainerCheck {
                service: "kaspec-grpc".into(),
                args: vec!["--keepalive-time".into(), format!("{}ms", ms_of(k.time)), "--keepalive-timeout".into(), format!("{}ms", ms_of(k.timeout))],
                ..Default::default()
            }),
            (GrpcServer::Kaspec, Mode::Defaults) => Some(ContainerCheck {
                service: "kaspec-grpc-defaults".into(),
                args: vec!["serve".into(), "grpc".into()],
                without: vec!["--keepalive-time".into(), "--keepalive-timeout".into()],
                ..Default::default()
            }),
            _ => None,
        };
        Ok(ServerSpec { name: name.into(), program, args, addr, ready_within: Duration::from_secs(10), container, ..Default::default() })
    }
}

pub fn client_implementation() -> Implementation {
    Implementation::new("tonic", env!("KASPEC_VERSION_TONIC"))
}

// --- expectations ------------------------------------------------------------

/// Client, idle connection (case 1). `idle_ms` = t0 − the last segment the
/// client received. Without while_idle no HTTP/2 PING goes out, and only the
/// TCP knobs (`tcp.*`, which tonic sets on its socket) can end the connection.
pub fn idle_client_expectation(g: &GrpcConfig, tcp: &TcpConfig, fault: FaultKind, idle_ms: u64) -> Expectation {
    let (i, t) = (ms_of(g.keepalive_time), ms_of(g.keepalive_timeout));
    if !g.keepalive_while_idle {
        if !tcp.keepalive {
            return Expectation::not_detected("keepalive_while_idle = false and TCP keep-alive off: an idle connection is never probed", SPEC_A8);
        }
        if fault == FaultKind::Freeze {
            return Expectation::not_detected(
                "keepalive_while_idle = false: no HTTP/2 PING; the frozen server's kernel answers TCP keep-alive probes",
                SPEC_A8,
            );
        }
        let idle = ms_of(tcp.idle);
        let (d, slack, how) = if fault == FaultKind::Reset {
            (idle.saturating_sub(idle_ms), linux::wheel_slack_ms(idle), format!("the first TCP keep-alive probe (tcp.idle {idle} ms after the last segment) meets the RST"))
        } else {
            let death = crate::model::tcp::keepalive_death(tcp);
            (death.ms.saturating_sub(idle_ms), death.slack_ms, format!("TCP keep-alive (tcp.*): {}", death.formula))
        };
        return Expectation::window(
            d,
            d + slack,
            format!("keepalive_while_idle = false: no HTTP/2 PING while idle; {how}, − idle {idle_ms} ms = {d} ms (+ up to {slack} ms timer-wheel rounding)"),
            "gRFC A8 (KEEPALIVE_WITHOUT_CALLS), RFC 1122 §4.2.3.6",
            Level::Must,
        );
    }
    if fault == FaultKind::Reset {
        return Expectation::window(
            0,
            i,
            format!("the next PING (at most I = {i} ms after the last read) is answered by RST: (0, I]"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    Expectation::window(t, i + t, format!("PING I after the last read, unanswered for T: (T, I + T] = ({t}, {}] ms", i + t), SPEC_A8, Level::Must)
}

/// A server's own keep-alive on an idle connection (cases 1 and 2).
pub fn server_expectation(k: &ServerKeepalive, fault: FaultKind) -> Expectation {
    let (i, t) = (ms_of(k.time), ms_of(k.timeout));
    match fault {
        FaultKind::Freeze => Expectation::not_detected("the server process is frozen: it detects nothing", SPEC_A8),
        FaultKind::Reset => Expectation::window(
            0,
            i,
            format!("the server's next PING (at most its keepalive_time {i} ms after the last read) is answered by RST: (0, {i}]"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        ),
        _ => Expectation::window(
            t,
            i + t,
            format!("the server's PING, unanswered for its keepalive_timeout: (T, I + T] = ({t}, {}] ms", i + t),
            SPEC_A8,
            Level::Must,
        ),
    }
}

/// Client, call started `call_ms` after the fault on an unprobed idle connection (case 2).
pub fn call_expectation(g: &GrpcConfig, fault: FaultKind, call_ms: u64) -> Expectation {
    let t = ms_of(g.keepalive_timeout);
    if fault == FaultKind::Reset {
        return Expectation::window(
            call_ms,
            call_ms,
            format!("the call's first frames (+{call_ms} ms) are answered by RST: immediate"),
            "RFC 9293 §3.5.3 (reset processing)",
            Level::Must,
        );
    }
    let d = call_ms + t;
    Expectation::window(
        d,
        d,
        format!("the call (+{call_ms} ms, at least I after the last read) triggers a PING at once; no ACK within T: {call_ms} + {t} = {d} ms"),
        SPEC_A8,
        Level::Must,
    )
}

/// grpc-core's ping abuse policy (ping_abuse_policy.cc): the first PING sets
/// the clock; each later one sooner than allowed is a strike; GOAWAY when
/// strikes exceed max_ping_strikes (2): at the 4th PING, 3 intervals after
/// the first. With a call open the client pings I after each read: PINGs at
/// I, 2I, 3I, 4I after the last message.
pub fn policy_expectation(g: &GrpcConfig, server: GrpcServer) -> Expectation {
    let i = ms_of(g.keepalive_time);
    let _ = server;
    Expectation::window(
        3 * i,
        4 * i,
        format!("PINGs every I = {i} ms after the last read; strikes from the 2nd PING, GOAWAY when strikes > 2: at the 3rd–4th PING, [3I, 4I] = [{}, {}] ms", 3 * i, 4 * i),
        "gRFC A8 (server enforcement)",
        Level::Should,
    )
}

// --- the client ----------------------------------------------------------------

/// What the client does once connected and one call has gone through.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Stay idle until stopped; then one probe call (its status is recorded).
    Idle,
    /// Stay idle; at the instant received on the channel, make one call.
    CallLater,
    /// Open a Watch stream and wait for it to end.
    Stream,
}

struct Ready {
    local: SocketAddrV4,
    /// When the last response frame was read (the connection's last activity).
    last_read: Instant,
}

#[derive(Default)]
struct ClientEnd {
    call_started: Option<Instant>,
    failed_at: Option<Instant>,
    error: Option<String>,
    /// Status of the probe call after the connection died (Plan::Idle).
    probe: Option<String>,
}

fn endpoint(addr: SocketAddrV4, g: &GrpcConfig, tcp: &TcpConfig) -> tonic::transport::Endpoint {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .http2_keep_alive_interval(g.keepalive_time)
        .keep_alive_timeout(g.keepalive_timeout)
        .keep_alive_while_idle(g.keepalive_while_idle)
        .connect_timeout(Duration::from_secs(1));
    if tcp.keepalive {
        ep.tcp_keepalive(Some(tcp.idle)).tcp_keepalive_interval(Some(tcp.interval)).tcp_keepalive_retries(Some(tcp.count))
    } else {
        ep.tcp_keepalive(None)
    }
}

fn status_text(s: &tonic::Status) -> String {
    let src = std::error::Error::source(s).map(|e| format!("; source: {e}")).unwrap_or_default();
    format!("tonic::Status {{ code: {:?} }}: {}{src}", s.code(), s.message())
}

fn client(
    addr: SocketAddrV4,
    g: GrpcConfig,
    tcp: TcpConfig,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::watch::Receiver<Option<Instant>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let mut end = ClientEnd::default();
        let channel = match endpoint(addr, &g, &tcp).connect().await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(format!("connecting to {addr}: {e}")));
                return end;
            }
        };
        let mut client = EchoClient::new(channel);
        let mut stream = None;
        let first = match plan {
            Plan::Stream => match client.watch(Text { text: "kaspec".into() }).await {
                Ok(resp) => {
                    let mut s = resp.into_inner();
                    let m = s.message().await;
                    stream = Some(s);
                    m.map(|_| ())
                }
                Err(e) => Err(e),
            },
            _ => client.say(Text { text: "kaspec".into() }).await.map(|_| ()),
        };
        if let Err(e) = first {
            let _ = ready.send(Err(format!("first call to {addr}: {}", status_text(&e))));
            return end;
        }
        let last_read = Instant::now();
        match local_end_towards(addr) {
            Ok(local) => {
                let _ = ready.send(Ok(Ready { local, last_read }));
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return end;
            }
        }
        let wait_for = |mut rx: tokio::sync::watch::Receiver<Option<Instant>>| async move {
            loop {
                if let Some(t) = *rx.borrow_and_update() {
                    return t;
                }
                if rx.changed().await.is_err() {
                    return Instant::now();
                }
            }
        };
        match plan {
            Plan::Idle => {
                let stop = wait_for(stop_at).await;
                tokio::time::sleep_until(stop.into()).await;
                let probe = tokio::time::timeout(Duration::from_secs(2), client.say(Text { text: "probe".into() })).await;
                end.probe = Some(match probe {
                    Ok(Ok(_)) => "a probe call after the wait succeeded".into(),
                    Ok(Err(s)) => format!("a probe call after the wait failed: {}", status_text(&s)),
                    Err(_) => "a probe call after the wait got no answer in 2 s".into(),
                });
            }
            Plan::CallLater => {
                let at = wait_for(go).await;
                tokio::time::sleep_until(at.into()).await;
                let limit = wait_for(stop_at).await;
                end.call_started = Some(Instant::now());
                match tokio::time::timeout_at(limit.into(), client.say(Text { text: "after the fault".into() })).await {
                    Ok(Ok(_)) => end.error = Some("the call succeeded".into()),
                    Ok(Err(s)) => {
                        end.failed_at = Some(Instant::now());
                        end.error = Some(status_text(&s));
                    }
                    Err(_) => {}
                }
            }
            Plan::Stream => {
                let limit = wait_for(stop_at).await;
                let mut s = stream.expect("stream opened");
                loop {
                    match tokio::time::timeout_at(limit.into(), s.message()).await {
                        Ok(Ok(Some(_))) => continue,
                        Ok(Ok(None)) => {
                            end.failed_at = Some(Instant::now());
                            end.error = Some("the stream ended without an error".into());
                        }
                        Ok(Err(st)) => {
                            end.failed_at = Some(Instant::now());
                            end.error = Some(status_text(&st));
                        }
                        Err(_) => {}
                    }
                    break;
                }
            }
        }
        end
    })
}

// --- cases -------------------------------------------------------------------

struct Run<'a> {
    ctx: &'a Ctx,
    case: &'a CaseDef,
    fault: FaultKind,
    which: GrpcServer,
    g: GrpcConfig,
    plan: Plan,
}

fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    for which in measured(ctx) {
        out.extend(detection(Run { ctx, case, fault, which, g: ctx.config.grpc, plan: Plan::Idle })?);
    }
    Ok(out)
}

fn run_call_after_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let mut out = Vec::new();
    let g = GrpcConfig { keepalive_while_idle: false, ..ctx.config.grpc };
    for which in measured(ctx) {
        out.extend(detection(Run { ctx, case, fault, which, g, plan: Plan::CallLater })?);
    }
    Ok(out)
}

fn config_of(ctx: &Ctx, g: &GrpcConfig) -> std::collections::BTreeMap<String, String> {
    let mut config = ctx.config.effective("grpc.");
    config.insert("grpc.keepalive_while_idle".into(), g.keepalive_while_idle.to_string());
    config.extend(ctx.config.effective("tcp.").into_iter().filter(|(k, _)| k != "tcp.user_timeout"));
    config
}

fn detection(r: Run<'_>) -> Result<Vec<CaseResult>> {
    let Run { ctx, case, fault, which, g, plan } = r;
    let k = which.keepalive(&ctx.fixtures)?;
    let tcp = ctx.config.tcp;
    let tb = ctx.testbed_for("kaspec-grpc")?;
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let server = Server::start(&tb, &which.spec(ctx, addr, Mode::Keepalive(k))?)?;
    let server_impl = which.implementation();

    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_thread = tb.client.spawn_thread("kaspec-grpc-client", move || client(addr, g, tcp, plan, ready_tx, go_rx, stop_rx))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(15))
        .map_err(|_| Error::Other("grpc client thread did not report".into()))?
        .map_err(|e| Error::Other(format!("grpc client against {}: {e}", server_impl.name)))?;
    let client_watch = SocketWatch::start(&tb.client, ready.local, addr)?;
    let server_watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    // Let the connection go quiet first: the ACK of the first response may
    // still be held back by delayed ACK (up to 200 ms), and under `reset` it
    // would be the first segment to meet the RST, not the call or the PING.
    if let Some(wait) = (ready.last_read + QUIET_BEFORE_FAULT).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let applied = tb.apply_fault(fault, &Flow { client: ready.local, server: addr }, Some(server.pid()))?;
    let t0 = applied.in_force_at;

    // The call of case 2 starts I after the fault: past any PING the idle
    // connection could have had scheduled, so the call's PING goes out at once.
    let call_ms = ms_of(g.keepalive_time);
    let client_nominal = match plan {
        Plan::CallLater => call_expectation(&g, fault, call_ms),
        _ => idle_client_expectation(&g, &tcp, fault, ms_of(QUIET_BEFORE_FAULT)),
    };
    let quiet = 3 * ms_of(2 * g.keepalive_time + g.keepalive_timeout).max(1000);
    let imp = ctx.impairment(fault);
    let (client_deadline_ms, server_deadline_ms) = match &imp {
        // A live server on a slow or lossy path: both watched equally long.
        Some(i) => {
            let watch = impaired_watch_ms((g.keepalive_time + g.keepalive_timeout).max(k.time + k.timeout), i);
            (watch, watch)
        }
        None => (client_nominal.deadline_ms(quiet), server_expectation(&k, fault).deadline_ms(quiet)),
    };
    let _ = go_tx.send(Some(t0 + Duration::from_millis(call_ms)));
    // The client closes its connection when stopped: only after both watches ended.
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(client_deadline_ms.max(server_deadline_ms) + 500)));
    let server_closed = server_watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let client_closed = client_watch.wait(t0 + Duration::from_millis(client_deadline_ms))?;
    let end = client_thread.join()?;

    let mut timeline = vec![(ready.last_read, "last response read by the client".to_string())];
    if let Some(t) = end.call_started {
        timeline.push((t, "call started".into()));
    }
    if let Some(c) = &client_closed {
        timeline.push((c.at, format!("client socket {}", c.state)));
    }
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let (client_exp, detected_at, error) = match plan {
        _ if imp.is_some() => {
            let i = imp.as_ref().expect("checked");
            let error = client_closed.as_ref().map(|c| format!("client closed the connection (socket {}); {}", c.state, end.probe.clone().unwrap_or_default()));
            (impaired_expectation("keepalive_timeout T =", g.keepalive_timeout, i, SPEC_A8), client_closed.as_ref().map(|c| c.at), error.or(end.probe))
        }
        Plan::CallLater => {
            let call = end.call_started.map(|t| rel_ms(t0, t).max(0) as u64).unwrap_or(call_ms);
            (call_expectation(&g, fault, call), end.failed_at, end.error)
        }
        _ => {
            let error = client_closed.as_ref().map(|c| format!("client closed the connection (socket {}); {}", c.state, end.probe.clone().unwrap_or_default()));
            let idle_ms = rel_ms(ready.last_read, t0).max(0) as u64;
            (idle_client_expectation(&g, &tcp, fault, idle_ms), client_closed.as_ref().map(|c| c.at), error.or(end.probe))
        }
    };
    let unavailable = error.as_deref().map(|e| e.contains("code: Unavailable")).unwrap_or(false);
    let mut config = config_of(ctx, &g);
    config.insert("server.keepalive_time".into(), format!("{}ms", ms_of(k.time)));
    config.insert("server.keepalive_timeout".into(), format!("{}ms", ms_of(k.timeout)));
    let release = crate::outcome::Releases { client: None, ..crate::outcome::releases(&tb, ready.local, addr) };
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release };
    let mut results = facts.both_sides(
        client_implementation(),
        server_impl,
        Side { expected: client_exp, detected_at, error, deadline_ms: client_deadline_ms },
        Side::from_socket(
            match &imp {
                Some(i) => impaired_expectation("the server's keepalive_timeout =", k.timeout, i, SPEC_A8),
                None => server_expectation(&k, fault),
            },
            server_closed,
            server_deadline_ms,
            "server",
        ),
        &ctx.deviations,
    );
    let client_result = &mut results[0];
    // The second axis of a failed call: its status code. gRPC's status-code
    // table: a connection that breaks after data was sent fails the call with
    // UNAVAILABLE.
    if matches!(plan, Plan::CallLater) && client_result.detected && !unavailable && client_result.verdict == Verdict::Pass {
        client_result.verdict = Verdict::Fail;
        client_result.verdict_detail =
            format!("{}, but with another status than UNAVAILABLE (connection broken after data was sent)", client_result.verdict_detail);
        client_result.known_deviation = crate::deviations::explain(
            &ctx.deviations,
            case.id,
            "client",
            &client_result.implementation.name,
            &client_result.expected,
            client_result.detection_ms,
        );
    }
    Ok(results)
}

fn run_ping_policy(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let g = GrpcConfig { keepalive_while_idle: true, ..ctx.config.grpc };
    let tcp = ctx.config.tcp;
    let mut out = Vec::new();
    for which in measured(ctx) {
        let tb = ctx.testbed_for("kaspec-grpc-defaults")?;
        let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
        let _server = Server::start(&tb, &which.spec(ctx, addr, Mode::Defaults)?)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (_go_tx, go_rx) = tokio::sync::watch::channel(None);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
        let client_thread =
            tb.client.spawn_thread("kaspec-grpc-client", move || client(addr, g, tcp, Plan::Stream, ready_tx, go_rx, stop_rx))?;
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| Error::Other("grpc client thread did not report".into()))?
            .map_err(|e| Error::Other(format!("grpc client against {}: {e}", which.implementation().name)))?;
        let t0 = ready.last_read;
        let expected = policy_expectation(&g, which);
        let deadline_ms = expected.deadline_ms(10_000);
        let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadline_ms)));
        let end = client_thread.join()?;
        let facts = RunFacts { case, fault, engine: "none".into(), config: config_of(ctx, &g), t0, timeline: Vec::new(), release: Default::default() };
        // GOAWAY debug data "too_many_pings"; grpc-core also puts "Too many
        // pings" in the status of the calls it ends.
        let told = end.error.as_deref().map(|e| e.to_lowercase().replace('_', " ").contains("too many pings")).unwrap_or(false);
        let mut r = facts.result(
            SideOutcome {
                side: "server",
                implementation: which.implementation(),
                peer: client_implementation(),
                expected,
                detected_at: end.failed_at,
                error: end.error.clone(),
                deadline_ms,
            },
            &ctx.deviations,
        );
        match (end.failed_at, told) {
            (None, _) => {
                r.verdict_detail = format!("{}: the server does not enforce a ping policy", r.verdict_detail);
            }
            (Some(_), false) => {
                r.verdict = Verdict::Fail;
                r.verdict_detail = format!("{}, but the stream ended without GOAWAY \"too_many_pings\"", r.verdict_detail);
            }
            (Some(_), true) => {
                r.verdict_detail = format!("{}: GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"", r.verdict_detail);
            }
        }
        out.push(r);
    }
    Ok(out)
}

// --- our server --------------------------------------------------------------

#[derive(Default)]
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: tonic::Request<Text>) -> std::result::Result<tonic::Response<Text>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }

    type WatchStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = std::result::Result<Text, tonic::Status>> + Send>>;

    async fn watch(&self, request: tonic::Request<Text>) -> std::result::Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use futures_util::StreamExt;
        let first = futures_util::stream::once(std::future::ready(Ok(request.into_inner())));
        Ok(tonic::Response::new(Box::pin(first.chain(futures_util::stream::pending()))))
    }
}

/// Our tonic server, with HTTP/2 keep-alive when both values are given.
pub fn serve(listen: SocketAddrV4, keepalive: Option<(Duration, Duration)>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut builder = tonic::transport::Server::builder();
        if let Some((interval, timeout)) = keepalive {
            builder = builder.http2_keepalive_interval(Some(interval)).http2_keepalive_timeout(Some(timeout));
        }
        println!("kaspec-grpc (tonic) listening on {listen}, keep-alive {keepalive:?}");
        builder
            .add_service(EchoServer::new(EchoService))
            .serve(listen.into())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn g(i: u64, t: u64, idle: bool) -> GrpcConfig {
        GrpcConfig { keepalive_time: Duration::from_millis(i), keepalive_timeout: Duration::from_millis(t), keepalive_while_idle: idle }
    }

    #[test]
    fn idle_window_is_t_to_i_plus_t() {
        let tcp = Config::default().tcp;
        let e = idle_client_expectation(&g(1000, 500, true), &tcp, FaultKind::Blackhole, 300);
        assert_eq!((e.min_ms, e.max_ms), (Some(500), Some(1500)));
        // Without while_idle only TCP keep-alive (2 s + 3 × 1 s) ends it.
        let e = idle_client_expectation(&g(1000, 500, false), &tcp, FaultKind::Blackhole, 300);
        assert_eq!(e.min_ms, Some(5000 - 300));
        let off = TcpConfig { keepalive: false, ..tcp };
        assert!(!idle_client_expectation(&g(1000, 500, false), &off, FaultKind::Blackhole, 300).expects_detection());
        assert_eq!(call_expectation(&g(1000, 500, false), FaultKind::Blackhole, 1000).max_ms, Some(1500));
        assert_eq!(call_expectation(&g(1000, 500, false), FaultKind::Reset, 1000).max_ms, Some(1000));
    }

    #[test]
    fn the_shipped_server_settings_parse() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        for s in SERVERS {
            assert!(s.keepalive(&fixtures).unwrap().time > Duration::ZERO);
        }
    }
}

//! AMQP 0-9-1 heartbeats: lapin against a real RabbitMQ (Debian's
//! `rabbitmq-server`), started once per run in the shared testbed
//! ([`crate::shared`]) from `fixtures/rabbitmq/`, with a throw-away data
//! directory. Every case opens its own connection and faults only its flow.
//!
//! The spec: Connection.Tune proposes the server's `heartbeat` (seconds, 0 =
//! the server wants none), Connection.Tune-Ok answers the client's; peers
//! negotiate limits "to the lowest agreed value" (§2.3.3). Heartbeat frames
//! go on channel 0, any octet counts as a sign of life, and a peer that
//! receives nothing for two heartbeat intervals or longer should close the
//! connection without the Close handshake (§4.2.7).
//!
//! lapin 4.12 (src/channel.rs `tune_connection_configuration`,
//! src/heartbeat.rs), from which the client window is derived: it takes the
//! server's value when it asks for 0 (so it cannot turn heartbeats off
//! against a broker that proposes them), else the lower of the two. It wakes
//! H/2 after its last write, writes a heartbeat if it wrote nothing since,
//! and at each wake fails with `MissingHeartbeatError` once nothing has been
//! read for more than 2H: detection at the first wake after last read + 2H,
//! within (2H, 2.5H] of the last byte read.
//!
//! RabbitMQ 3.10 (rabbit_reader.erl `tune_ok`, rabbit_heartbeat.erl): uses
//! the client's Tune-Ok value for both directions, unvalidated. At Tune-Ok it
//! starts a sender that wakes every T/2 and sends a heartbeat when it sent
//! nothing since the last wake, and a receiver that wakes every T and closes
//! the connection at the second consecutive wake without a received byte:
//! detection at the first receiver tick after the last byte received + 2T,
//! within (2T, 3T] of it. Both heartbeaters start together, so every second
//! heartbeat the broker sends marks a receiver tick.
//!
//! What the client reads and writes is observed by wrapping lapin's socket
//! (an async-rs reactor whose TCP streams record each read and write with its
//! time and the AMQP frames in it): last byte read, heartbeats written, the
//! Tune and Tune-Ok on the wire. The wrapper keeps the socket open (no FIN)
//! after lapin gives up until the case has watched the broker, so that the
//! broker's detection is its own heartbeat check and not lapin's close.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_rs::traits::Reactor;
use async_rs::{Runtime, Tokio};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::StreamExt;
use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::netns::Testbed;
use kaspec_harness::observe::SocketWatch;
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker, Protocol};
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{ms_of, rel_ms};
use crate::model::periodic::{first_after, next_send_meets_rst, Before};
use crate::outcome::{RunFacts, Side, SideOutcome};
use crate::shared::Started;

/// RabbitMQ's start script, run directly (not /usr/sbin/rabbitmq-server,
/// which switches to the rabbitmq user and the machine's own data).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// The package that provides them.
pub const PACKAGE: &str = "rabbitmq-server";
/// RabbitMQ's own default `heartbeat` when the configuration sets none.
pub const DEFAULT_SERVER_HEARTBEAT: u16 = 60;
/// How close (ms) a timer wake and the instant it is compared with may be
/// before either side of it is possible (timer and scheduling jitter).
pub const PHASE_SLACK_MS: i64 = 20;

/// One RabbitMQ node of the shared testbed.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    /// The shared group's name (also its log's and data directory's).
    pub group: &'static str,
    /// Its configuration, under `fixtures/rabbitmq/`.
    pub conf: &'static str,
    pub port: u16,
    pub dist_port: u16,
    pub epmd_port: u16,
    pub node: &'static str,
}

/// The broker of the idle case and of negotiation case 1.
pub const MAIN: Broker =
    Broker { group: "rabbitmq", conf: "rabbitmq.conf", port: 5672, dist_port: 25672, epmd_port: 4369, node: "rabbit@localhost" };
/// A second node that proposes heartbeat 0 (negotiation case 2).
pub const HB0: Broker =
    Broker { group: "rabbitmq-hb0", conf: "rabbitmq-hb0.conf", port: 5673, dist_port: 25673, epmd_port: 4370, node: "rabbit-hb0@localhost" };

const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_AND_IMPAIR;

pub static PROTOCOL: Protocol = Protocol { name: "amqp", cases: &CASES, prerequisites: require_rabbitmq };

/// The compose service of the AMQP cases on the docker testbed.
const RABBITMQ: Docker = Docker::Service { service: "rabbitmq", implementation: "rabbitmq" };

/// AMQP 0-9-1, Connection.Tune / Tune-Ok `heartbeat` (the negotiation of §2.3.3).
const TUNE: &str = "heartbeat: The delay, in seconds, of the connection heartbeat that the server wants. Zero means the server does not want a heartbeat. [Connection.Tune; Tune-Ok: the delay ... that the client wants]";
/// AMQP 0-9-1 §4.2.7.
const HEARTBEAT: &str = "If a peer detects no incoming traffic (i.e. received octets) for two heartbeat intervals or longer, it should close the connection without following the Connection.Close/Close-Ok handshaking, and log an error.";

pub static CASES: [CaseDef; 4] = [
    CaseDef {
        id: "amqp/0-9-1-2.3.3/1",
        protocol: "amqp",
        spec: "AMQP 0-9-1 §2.3.3, Connection.Tune/Tune-Ok",
        quote: TUNE,
        description: "Heartbeat negotiation against the broker's configured heartbeat S (fixtures/rabbitmq/rabbitmq.conf): lapin asks for nothing, 0, less than S, more than S and amqp.heartbeat; what does each end use?",
        requirement: "Both peers use the lowest agreed value (§2.3.3), the value the client sends in Tune-Ok; lapin's rule: 0 or unset takes the server's, else min(request, S)",
        faults: &[],
        fixed_fault: Some(FaultKind::None),
        docker: Docker::NotHere("reads the broker's side with rabbitmqctl on the server host, which kaspec does not run inside the container"),
        run: run_negotiation_main,
        budget: negotiation_budget,
    },
    CaseDef {
        id: "amqp/0-9-1-2.3.3/2",
        protocol: "amqp",
        spec: "AMQP 0-9-1 §2.3.3, Connection.Tune/Tune-Ok",
        quote: TUNE,
        description: "Heartbeat negotiation against a broker that proposes heartbeat 0 (fixtures/rabbitmq/rabbitmq-hb0.conf): the client's request decides.",
        requirement: "A server proposing 0 wants no heartbeat; the client's Tune-Ok value is used by both ends (0 = none)",
        faults: &[],
        fixed_fault: Some(FaultKind::None),
        docker: Docker::NotHere("needs a second broker that proposes heartbeat 0 (fixtures/rabbitmq/rabbitmq-hb0.conf); the compose stack has one"),
        run: run_negotiation_hb0,
        budget: negotiation_budget,
    },
    CaseDef {
        id: "amqp/0-9-1-4.2.7/1",
        protocol: "amqp",
        spec: "AMQP 0-9-1 §4.2.7",
        quote: HEARTBEAT,
        description: "Idle connection with negotiated heartbeat H; the path fails between two heartbeats: lapin stops hearing the broker, the broker stops hearing lapin.",
        requirement: "A peer that receives nothing for two heartbeat intervals or longer should close the connection (§4.2.7); windows from lapin's (2H, 2.5H] and RabbitMQ's (2T, 3T] algorithms after the last byte received",
        faults: IDLE_FAULTS,
        fixed_fault: None,
        docker: RABBITMQ,
        run: run_idle,
        budget: idle_budget,
    },
    CaseDef {
        id: "amqp/0-9-1-4.2.7/2",
        protocol: "amqp",
        spec: "AMQP 0-9-1 §4.2.7, RFC 5382 §5",
        quote: HEARTBEAT,
        description: "Idle AMQP connection through a NAT that forgets idle flows after N: heartbeats (each side sends one every H/2 when idle) keep the mapping when H/2 < N; otherwise the mapping expires, the next heartbeats are dropped, and both lapin and RabbitMQ declare the connection dead.",
        requirement: "Heartbeats keep a NAT mapping only when their period H/2 is below the NAT's idle timeout; otherwise each peer must close the connection after two heartbeat intervals of silence (§4.2.7): lapin at its first wake after last read + 2H, RabbitMQ at its first receiver tick after last byte + 2T",
        faults: &[FaultKind::NatExpiry],
        fixed_fault: Some(FaultKind::NatExpiry),
        docker: RABBITMQ,
        run: run_nat,
        budget: nat_budget,
    },
];

fn negotiation_budget(_ctx: &Ctx) -> Duration {
    // A node start (~6 s) and a handful of connections.
    Duration::from_secs(20)
}

fn idle_budget(ctx: &Ctx) -> Duration {
    let h = effective_heartbeat(request_of(ctx), server_heartbeat(&ctx.fixtures, &MAIN).unwrap_or(DEFAULT_SERVER_HEARTBEAT));
    let h = Duration::from_secs(h.max(2) as u64);
    // connect, steady state, half a period, then 3 × the broker's 3T.
    Duration::from_secs(5) + 2 * h + 9 * h
}

pub fn client_implementation() -> Implementation {
    Implementation::new("lapin", env!("KASPEC_VERSION_LAPIN"))
}

/// The installed RabbitMQ's version, from its library directory
/// (`/usr/lib/rabbitmq/lib/rabbitmq_server-X.Y.Z`).
pub fn broker_implementation() -> Implementation {
    let version = std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| e.file_name().to_string_lossy().strip_prefix("rabbitmq_server-").map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("rabbitmq", version)
}

/// Erlang's epmd, which every node registers with.
fn epmd_program() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/erlang")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("erts-"))
        .map(|e| e.path().join("bin/epmd"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// RabbitMQ and epmd are installed (the error names the package).
pub fn require_rabbitmq() -> Result<()> {
    if !Path::new(RABBITMQ_SERVER).is_file() || epmd_program().is_none() {
        return Err(Error::Capability(format!(
            "RabbitMQ not found ({RABBITMQ_SERVER} and Erlang's epmd under /usr/lib/erlang/erts-*/bin) \
             (apt-get install {PACKAGE}, or run fixtures/bootstrap.sh)"
        )));
    }
    Ok(())
}

/// The `heartbeat` a configuration file sets (RabbitMQ's default if none).
pub fn heartbeat_in_conf(text: &str) -> std::result::Result<u16, String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == "heartbeat" {
                return v.trim().parse().map_err(|_| format!("heartbeat = {}: expected whole seconds 0..65535", v.trim()));
            }
        }
    }
    Ok(DEFAULT_SERVER_HEARTBEAT)
}

/// What the broker proposes in Connection.Tune, from its fixture.
pub fn server_heartbeat(fixtures: &Path, broker: &Broker) -> Result<u16> {
    let path = fixtures.join("rabbitmq").join(broker.conf);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    heartbeat_in_conf(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// lapin's negotiation (channel.rs `tune_connection_configuration`): a
/// request of 0 (or none) takes the server's value; both non-zero, the lower.
pub fn effective_heartbeat(request: u16, server: u16) -> u16 {
    if request == 0 || (server != 0 && server < request) {
        server
    } else {
        request
    }
}

fn request_of(ctx: &Ctx) -> u16 {
    ctx.config.amqp.heartbeat.as_secs().min(u16::MAX as u64) as u16
}

impl Broker {
    /// The node's environment: everything in the throw-away directory `d`.
    fn env(&self, tb: &Testbed, d: &Path) -> Vec<(String, String)> {
        let p = |s: &str| d.join(s).display().to_string();
        vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOME".into(), p("home")),
            ("KASPEC_RUN_TAG".into(), tb.tag.clone()),
            // Run the VM in place of the script, so the server's pid is
            // beam's own (freeze and crash signal it).
            ("RUNNING_UNDER_SYSTEMD".into(), "1".into()),
            ("ERL_EPMD_PORT".into(), self.epmd_port.to_string()),
            ("RABBITMQ_NODENAME".into(), self.node.into()),
            ("RABBITMQ_NODE_IP_ADDRESS".into(), tb.server.addr.to_string()),
            ("RABBITMQ_NODE_PORT".into(), self.port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), self.dist_port.to_string()),
            ("RABBITMQ_CONF_ENV_FILE".into(), p("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE".into(), p("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), p("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), p("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE".into(), p("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), p("log")),
            ("RABBITMQ_LOGS".into(), "-".into()),
            ("RABBITMQ_PID_FILE".into(), p("rabbit.pid")),
            ("RABBITMQ_MOTD_FILE".into(), p("motd")),
        ]
    }

    fn dir(&self, tb: &Testbed) -> PathBuf {
        std::env::temp_dir().join(format!("{}{}-{}", kaspec_harness::cleanup::NS_PREFIX, tb.tag, self.group))
    }

    /// `env -i VAR=... program args...`: the node sees only its own
    /// environment, never the caller's RABBITMQ_* or HOME.
    fn clean_env_args(&self, tb: &Testbed, program: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec!["-i".to_string()];
        v.extend(self.env(tb, &self.dir(tb)).into_iter().map(|(k, val)| format!("{k}={val}")));
        v.push(program.into());
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// Starts epmd and the node in the testbed's server host (the shared
    /// group's start-up).
    pub fn start(&self, fixtures: &Path, tb: &Testbed) -> Result<Started> {
        if tb.docker.is_some() {
            // docker-compose.yml's rabbitmq mounts fixtures/rabbitmq/rabbitmq.conf (this broker's file, or the check says it differs).
            let node = Server::start(
                tb,
                &ServerSpec {
                    name: self.group.into(),
                    addr: SocketAddrV4::new(tb.server.addr, tb.server_port(self.port)),
                    ready_within: Duration::from_secs(90),
                    container: Some(ContainerCheck {
                        service: "rabbitmq".into(),
                        files: vec![("/etc/rabbitmq/rabbitmq.conf".into(), fixtures.join("rabbitmq").join(self.conf))],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )?;
            return Ok(Started { processes: vec![node], dirs: Vec::new() });
        }
        require_rabbitmq()?;
        let epmd = epmd_program().expect("checked");
        let env_program = kaspec_harness::caps::which("env").ok_or_else(|| Error::Other("`env` not found".into()))?;
        let src = fixtures.join("rabbitmq").join(self.conf);
        let conf = std::fs::read_to_string(&src).map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
        let d = kaspec_harness::cleanup::scratch_dir(&tb.tag, self.group)
            .map_err(|e| Error::io(format!("creating a data directory for {}", self.group), e))?;
        let started = (|| -> Result<Vec<Server>> {
            let io = |what: &str, e| Error::io(format!("{what} in {}", d.display()), e);
            for sub in ["home", "mnesia", "log"] {
                std::fs::create_dir_all(d.join(sub)).map_err(|e| io("creating a directory", e))?;
            }
            let listener = format!("\n# added by kaspec\nlisteners.tcp.default = {}:{}\n", tb.server.addr, self.port);
            std::fs::write(d.join("rabbitmq.conf"), conf + &listener).map_err(|e| io("writing rabbitmq.conf", e))?;
            std::fs::write(d.join("enabled_plugins"), "[].\n").map_err(|e| io("writing enabled_plugins", e))?;
            // epmd in the foreground, as our child (else beam starts a
            // detached `epmd -daemon`).
            let epmd = Server::start(
                tb,
                &ServerSpec {
                    name: format!("{}-epmd", self.group),
                    program: epmd,
                    args: vec!["-address".into(), format!("127.0.0.1,{}", tb.server.addr), "-port".into(), self.epmd_port.to_string()],
                    addr: SocketAddrV4::new(tb.server.addr, self.epmd_port),
                    ready_within: Duration::from_secs(10),
                    ..Default::default()
                },
            )?;
            let node = Server::start(
                tb,
                &ServerSpec {
                    name: self.group.into(),
                    program: env_program,
                    args: self.clean_env_args(tb, RABBITMQ_SERVER, &[]),
                    addr: SocketAddrV4::new(tb.server.addr, self.port),
                    ready_within: Duration::from_secs(90),
                    ready_log: Some("Server startup complete".into()),
                    ..Default::default()
                },
            )?;
            Ok(vec![epmd, node])
        })();
        match started {
            Ok(processes) => Ok(Started { processes, dirs: vec![d] }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&d);
                Err(e)
            }
        }
    }

    /// The heartbeat timeout (s) the node uses for each connection, by the
    /// client's port (`rabbitmqctl list_connections peer_port timeout`).
    pub fn timeouts(&self, tb: &Testbed) -> Result<Vec<(u16, u16)>> {
        let env_program = kaspec_harness::caps::which("env").ok_or_else(|| Error::Other("`env` not found".into()))?;
        let args = self.clean_env_args(tb, RABBITMQCTL, &["-q", "--no-table-headers", "list_connections", "peer_port", "timeout"]);
        let out = tb
            .server
            .command(&env_program, &tb.tag)?
            .args(&args)
            .output()
            .map_err(|e| Error::io("running rabbitmqctl list_connections", e))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "rabbitmqctl list_connections failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect())
    }
}

fn lease<'a>(ctx: &'a Ctx, broker: &'static Broker) -> Result<crate::shared::Lease<'a>> {
    ctx.shared.lease_in(&ctx.shared_bed("rabbitmq"), broker.group, || ctx.testbed_for("rabbitmq"), |tb| broker.start(&ctx.fixtures, tb))
}

// --- the observed socket -------------------------------------------------------

/// One AMQP frame seen on the wire, as far as heartbeats are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Heartbeat,
    /// Connection.Tune (server → client) with its heartbeat.
    Tune { heartbeat: u16 },
    /// Connection.Tune-Ok (client → server) with its heartbeat.
    TuneOk { heartbeat: u16 },
    /// Any other frame (method, header, body).
    Other,
}

/// Splits a byte stream into AMQP frames (type, channel, size, payload,
/// 0xCE), across reads; the protocol header is skipped.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    broken: bool,
}

impl FrameParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.buf.starts_with(b"AMQP") {
                if self.buf.len() < 8 {
                    break;
                }
                self.buf.drain(..8);
                continue;
            }
            if self.buf.len() < 7 {
                break;
            }
            let kind = self.buf[0];
            let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]) as usize;
            if self.buf.len() < 7 + size + 1 {
                break;
            }
            if self.buf[7 + size] != 0xCE {
                self.broken = true;
                self.buf.clear();
                break;
            }
            let payload = &self.buf[7..7 + size];
            let method = |p: &[u8]| (p.len() >= 4).then(|| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])));
            // Tune and Tune-Ok: class 10, method 30/31; channel-max (2),
            // frame-max (4), heartbeat (2).
            let heartbeat_field = |p: &[u8]| (p.len() >= 12).then(|| u16::from_be_bytes([p[10], p[11]]));
            let frame = match (kind, method(payload), heartbeat_field(payload)) {
                (8, _, _) => Frame::Heartbeat,
                (1, Some((10, 30)), Some(h)) => Frame::Tune { heartbeat: h },
                (1, Some((10, 31)), Some(h)) => Frame::TuneOk { heartbeat: h },
                _ => Frame::Other,
            };
            out.push(frame);
            self.buf.drain(..7 + size + 1);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// One read or write of lapin's socket.
#[derive(Debug, Clone)]
pub struct Io {
    pub at: Instant,
    pub dir: Dir,
    pub bytes: usize,
    pub frames: Vec<Frame>,
}

#[derive(Default)]
struct TapState {
    local: Option<SocketAddrV4>,
    io: Vec<Io>,
    reads: FrameParser,
    writes: FrameParser,
    /// Sockets lapin let go of, kept open until the case is over.
    held: Vec<Box<dyn Send>>,
}

/// What one connection read and wrote, shared with the case.
#[derive(Clone, Default)]
pub struct Tap(Arc<Mutex<TapState>>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, dir: Dir, bytes: &[u8]) {
        let at = Instant::now();
        let mut s = self.lock();
        let frames = match dir {
            Dir::Read => s.reads.push(bytes),
            Dir::Write => s.writes.push(bytes),
        };
        s.io.push(Io { at, dir, bytes: bytes.len(), frames });
    }

    pub fn io(&self) -> Vec<Io> {
        self.lock().io.clone()
    }

    pub fn local(&self) -> Option<SocketAddrV4> {
        self.lock().local
    }

    /// Closes the sockets kept open after lapin let go of them.
    fn release(&self) {
        let held = std::mem::take(&mut self.lock().held);
        drop(held);
    }
}

/// lapin's TCP stream, observed.
pub struct TapStream<S: Send + 'static> {
    inner: Option<S>,
    tap: Tap,
}

impl<S: Send + 'static> Drop for TapStream<S> {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            self.tap.lock().held.push(Box::new(s));
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream already released")
}

impl<S: AsyncRead + Send + Unpin + 'static> AsyncRead for TapStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(gone())) };
        let r = Pin::new(inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.tap.record(Dir::Read, &buf[..n]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Send + Unpin + 'static> AsyncWrite for TapStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(gone())) };
        let r = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.tap.record(Dir::Write, &buf[..n]);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// No FIN while the case watches the broker: the socket stays open
    /// until [`Tap::release`].
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// tokio's reactor, whose TCP streams are [`TapStream`]s.
#[derive(Clone, Debug)]
struct TapReactor {
    inner: Tokio,
    tap: Tap,
}

impl Reactor for TapReactor {
    type TcpStream = TapStream<<Tokio as Reactor>::TcpStream>;
    type Sleep = <Tokio as Reactor>::Sleep;

    fn register<H: io::Read + io::Write + std::os::fd::AsFd + std::os::fd::AsRawFd + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.inner.register(socket)
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.inner.sleep(dur)
    }

    fn interval(&self, dur: Duration) -> impl futures_util::Stream<Item = Instant> + Send + 'static {
        self.inner.interval(dur)
    }

    fn tcp_connect_addr(&self, addr: SocketAddr) -> impl std::future::Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connect = self.inner.tcp_connect_addr(addr);
        let tap = self.tap.clone();
        async move {
            let stream = connect.await?;
            if let Ok(SocketAddr::V4(local)) = stream.get_ref().local_addr() {
                tap.lock().local = Some(local);
            }
            Ok(TapStream { inner: Some(stream), tap })
        }
    }
}

/// Connects lapin to `broker` asking for `request` (None: no `heartbeat`
/// in the URI), through an observed socket.
async fn connect(broker: SocketAddrV4, request: Option<u16>, name: &str, tap: &Tap) -> std::result::Result<lapin::Connection, String> {
    let query = request.map(|h| format!("?heartbeat={h}")).unwrap_or_default();
    let uri = format!("amqp://guest:guest@{}:{}/%2f{query}", broker.ip(), broker.port());
    let reactor = TapReactor { inner: Tokio::current(), tap: tap.clone() };
    let runtime = Runtime::new(async_rs::util::RuntimeParts::new(Tokio::current(), reactor));
    let props = lapin::ConnectionProperties::default().with_connection_name(name.to_string().into());
    match tokio::time::timeout(Duration::from_secs(15), lapin::Connection::connect_with_runtime(&uri, props, runtime)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("lapin could not connect to {broker}: {e}")),
        Err(_) => Err(format!("lapin did not connect to {broker} within 15 s")),
    }
}

// --- negotiation ---------------------------------------------------------------

/// One connection of the negotiation case.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub request: Option<u16>,
    /// Connection.Tune's heartbeat as read.
    pub proposed: Option<u16>,
    /// Connection.Tune-Ok's heartbeat as written.
    pub tune_ok: Option<u16>,
    /// `conn.configuration().heartbeat()`.
    pub lapin: u16,
    /// What the broker uses (rabbitmqctl).
    pub broker: Option<u16>,
    pub local_port: u16,
}

impl Negotiated {
    fn asked(&self) -> String {
        self.request.map(|r| r.to_string()).unwrap_or_else(|| "unset".into())
    }
}

/// The requests tried against a server proposing `s`: none, 0, lower and
/// higher than `s`, and the configured one.
pub fn requests_for(s: u16, configured: u16) -> Vec<Option<u16>> {
    let mut v = vec![None, Some(0)];
    if s > 1 {
        v.push(Some(s / 2));
    }
    v.push(Some(if s == 0 { 600 } else { s.saturating_mul(2) }));
    v.push(Some(configured));
    let mut out = Vec::new();
    for r in v {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// What lapin must end up with, and whether a row breaks the spec or
/// lapin's rule: the problems of one row (empty = fine). `side` picks whose
/// value is judged.
pub fn check_row(row: &Negotiated, server: u16, side: &str) -> Vec<String> {
    let want = effective_heartbeat(row.request.unwrap_or(0), server);
    let mut problems = Vec::new();
    if row.proposed != Some(server) {
        problems.push(format!("Tune proposed {:?}, the configuration says {server}", row.proposed));
    }
    if side == "client" {
        if row.lapin != want {
            problems.push(format!("lapin uses {}, its rule gives {want}", row.lapin));
        }
        if row.tune_ok != Some(row.lapin) {
            problems.push(format!("Tune-Ok carried {:?}, lapin uses {}", row.tune_ok, row.lapin));
        }
        if server != 0 && row.lapin > server {
            problems.push(format!("{} is above the server's {server}: not the lowest agreed value (§2.3.3)", row.lapin));
        }
    } else {
        match (row.broker, row.tune_ok) {
            (Some(b), Some(t)) if b == t => {}
            (b, t) => problems.push(format!("the broker uses {b:?}, Tune-Ok carried {t:?}")),
        }
    }
    problems
}

fn run_negotiation_main(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    run_negotiation(ctx, case, fault, &MAIN)
}

fn run_negotiation_hb0(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    run_negotiation(ctx, case, fault, &HB0)
}

fn run_negotiation(ctx: &Ctx, case: &CaseDef, fault: FaultKind, broker: &'static Broker) -> Result<Vec<CaseResult>> {
    let server = server_heartbeat(&ctx.fixtures, broker)?;
    let requests = requests_for(server, request_of(ctx));
    let lease = lease(ctx, broker)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, broker.port);
    let (rows_tx, rows_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let tag = tb.tag.clone();
    let reqs = requests.clone();
    // Every connection stays open until the broker has been asked.
    let thread = tb.client.spawn_thread("kaspec-amqp-negotiate", move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(async move {
            let mut conns = Vec::new();
            let mut rows = Vec::new();
            for (i, r) in reqs.iter().enumerate() {
                let tap = Tap::default();
                match connect(addr, *r, &format!("kaspec-{tag}-negotiate-{i}"), &tap).await {
                    Ok(c) => {
                        let frames: Vec<Frame> = tap.io().into_iter().flat_map(|io| io.frames).collect();
                        rows.push(Negotiated {
                            request: *r,
                            proposed: frames.iter().find_map(|f| if let Frame::Tune { heartbeat } = f { Some(*heartbeat) } else { None }),
                            tune_ok: frames.iter().find_map(|f| if let Frame::TuneOk { heartbeat } = f { Some(*heartbeat) } else { None }),
                            lapin: c.configuration().heartbeat(),
                            broker: None,
                            local_port: tap.local().map(|l| l.port()).unwrap_or(0),
                        });
                        conns.push((c, tap));
                    }
                    Err(e) => {
                        let _ = rows_tx.send(Err(e));
                        return;
                    }
                }
            }
            let _ = rows_tx.send(Ok(rows));
            let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(60))).await;
            for (c, tap) in conns {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.close(200, "kaspec: done".into())).await;
                tap.release();
            }
        })
    })?;
    let rows = rows_rx.recv_timeout(Duration::from_secs(60)).map_err(|_| Error::Other("amqp negotiation thread did not report".into()))?;
    let timeouts = match &rows {
        Ok(_) => broker.timeouts(tb),
        Err(_) => Ok(Vec::new()),
    };
    let _ = done_tx.send(());
    thread.join()?;
    let mut rows = rows.map_err(Error::Other)?;
    let timeouts = timeouts?;
    for row in &mut rows {
        row.broker = timeouts.iter().find(|(p, _)| *p == row.local_port).map(|(_, t)| *t);
    }

    let t0 = Instant::now();
    let mut config = ctx.config.effective("amqp.");
    config.insert("rabbitmq.heartbeat".into(), format!("{server}s ({})", broker.conf));
    for row in &rows {
        config.insert(
            format!("negotiated[request={}]", row.asked()),
            format!(
                "lapin {}s, Tune-Ok {}, broker {}",
                row.lapin,
                row.tune_ok.map(|t| format!("{t}s")).unwrap_or_else(|| "?".into()),
                row.broker.map(|t| format!("{t}s")).unwrap_or_else(|| "?".into())
            ),
        );
    }
    let facts = RunFacts { case, fault, engine: "none".into(), config, t0, timeline: Vec::new(), release: Default::default() };
    let spec = "AMQP 0-9-1 §2.3.3 (lowest agreed value), Connection.Tune/Tune-Ok heartbeat (0 = none)";
    let mut out = Vec::new();
    for (side, implementation, peer) in
        [("client", client_implementation(), broker_implementation()), ("server", broker_implementation(), client_implementation())]
    {
        let formula = if side == "client" {
            format!("lapin (channel.rs tune_connection_configuration): request 0 or unset → the server's S = {server}; both non-zero → min(request, S); Tune-Ok carries it")
        } else {
            "RabbitMQ (rabbit_reader tune_ok): the client's Tune-Ok heartbeat, for both directions".to_string()
        };
        let expected = Expectation { min_ms: None, max_ms: None, formula, spec: spec.into(), level: Level::Must };
        let mut r = facts.result(
            SideOutcome { side, implementation, peer, expected, detected_at: None, error: None, deadline_ms: 0 },
            &ctx.deviations,
        );
        let mut lines = Vec::new();
        let mut bad = false;
        for row in &rows {
            let problems = check_row(row, server, side);
            bad |= !problems.is_empty();
            let used = if side == "client" { Some(row.lapin) } else { row.broker };
            lines.push(format!(
                "request {} vs S {server} → {}{}",
                row.asked(),
                used.map(|u| format!("{u}s")).unwrap_or_else(|| "?".into()),
                if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
            ));
        }
        let mut detail = lines.join(", ");
        if side == "client" && server != 0 && rows.iter().any(|r| r.request == Some(0) && r.lapin != 0) {
            detail.push_str(&format!(
                ". Finding: asking for 0 gives the server's {server}s; lapin cannot turn heartbeats off against a broker that proposes them"
            ));
        }
        r.verdict = if bad { kaspec_harness::expect::Verdict::Fail } else { kaspec_harness::expect::Verdict::Pass };
        r.verdict_detail = detail;
        r.error = if side == "client" {
            Some(rows.iter().map(|row| format!("request {}: configuration().heartbeat() = {}", row.asked(), row.lapin)).collect::<Vec<_>>().join("; "))
        } else {
            Some(format!("rabbitmqctl list_connections peer_port timeout: {timeouts:?}"))
        };
        out.push(r);
    }
    drop(lease);
    Ok(out)
}

// --- the idle connection -------------------------------------------------------

pub(crate) struct Ready {
    pub local: SocketAddrV4,
    /// `conn.configuration().heartbeat()`.
    pub negotiated: u16,
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
}

impl ClientEnd {
    /// A failure after `deadline` is not a detection (the error is kept).
    fn clip(mut self, deadline: Instant) -> ClientEnd {
        if self.failed_at.is_some_and(|t| t > deadline) {
            self.failed_at = None;
            self.error = self.error.map(|e| format!("after the client's deadline: {e}"));
        }
        self
    }
}

/// Connects, waits for the steady state (two broker heartbeats read, one
/// written; only with `steady` and heartbeats on) or only for the
/// connection, reports ready, then waits for lapin's error event or
/// `stop_at`. After an error the socket stays held (no FIN) until the case
/// sets `stop_at`, i.e. until it has watched the broker.
pub(crate) fn client(
    broker: SocketAddrV4,
    request: u16,
    name: String,
    tap: Tap,
    steady: bool,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    mut stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Option<ClientEnd> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let end = rt.block_on(async {
        let conn = match connect(broker, Some(request), &name, &tap).await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return None;
            }
        };
        // Before any fault: the listener sees every later error.
        let mut events = conn.events_listener();
        let negotiated = conn.configuration().heartbeat();
        let h = Duration::from_secs(negotiated as u64);
        let setup_deadline = Instant::now() + Duration::from_secs(5) + 3 * h;
        loop {
            let io = tap.io();
            let hb = |d: Dir| io.iter().filter(|i| i.dir == d && i.frames.contains(&Frame::Heartbeat)).count();
            if !steady || negotiated == 0 || (hb(Dir::Read) >= 2 && hb(Dir::Write) >= 1) {
                break;
            }
            if Instant::now() > setup_deadline {
                let _ = ready.send(Err(format!("no heartbeat round within {} s of connecting (heartbeat {negotiated} s)", (Duration::from_secs(5) + 3 * h).as_secs())));
                return None;
            }
            if let Ok(Some(lapin::Event::Error(e))) = tokio::time::timeout(Duration::from_millis(10), events.next()).await {
                let _ = ready.send(Err(format!("lapin failed before the fault: {e}")));
                return None;
            }
        }
        let local = match tap.local() {
            Some(l) => l,
            None => {
                let _ = ready.send(Err("lapin's socket has no local address".into()));
                return None;
            }
        };
        let _ = ready.send(Ok(Ready { local, negotiated }));
        loop {
            let limit = (*stop_at.borrow()).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                ev = events.next() => match ev {
                    Some(lapin::Event::Error(e)) => {
                        return Some(ClientEnd { failed_at: Some(Instant::now()), error: Some(format!("lapin::ErrorKind::{:?}: {e}", e.kind())) });
                    }
                    Some(_) => continue,
                    None => return Some(ClientEnd { failed_at: Some(Instant::now()), error: Some("lapin's event stream ended".into()) }),
                },
                changed = stop_at.changed() => {
                    if changed.is_err() {
                        return Some(ClientEnd { failed_at: None, error: None });
                    }
                }
                _ = tokio::time::sleep_until(limit.into()) => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), conn.close(200, "kaspec: done".into())).await;
                    return Some(ClientEnd { failed_at: None, error: None });
                }
            }
        }
    });
    if end.as_ref().is_some_and(|e| e.failed_at.is_some()) {
        // Held until the case says so (or is gone).
        rt.block_on(async {
            while stop_at.borrow_and_update().is_none() {
                if stop_at.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    // lapin's tasks (and the socket they hold) go with the runtime.
    drop(rt);
    tap.release();
    end
}

/// A quiet instant for the fault: the middle of the longest gap between the
/// next client write and the next broker heartbeat (both every H/2), so no
/// segment or delayed ACK is in flight.
fn quiet_instant(io: &[Io], h: Duration, now: Instant) -> Instant {
    let period = (h / 2).as_secs_f64();
    if period == 0.0 {
        return now;
    }
    let last = |d: Dir| io.iter().filter(|i| i.dir == d).map(|i| i.at).next_back();
    let phase = |t: Option<Instant>| t.map(|t| (now.duration_since(t).as_secs_f64() % period, period)).map(|(since, p)| p - since);
    let mut points: Vec<f64> = [phase(last(Dir::Write)), phase(last(Dir::Read))].into_iter().flatten().collect();
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

/// The wake that follows `after`, and the one after it too when a wake falls
/// within [`PHASE_SLACK_MS`] of `after` (either may then be the one).
fn next_ticks(anchor: i64, period: i64, after: i64) -> (i64, i64) {
    (first_after(anchor, period, after - PHASE_SLACK_MS), first_after(anchor, period, after + PHASE_SLACK_MS))
}

/// Client side. Times are ms relative to the fault: `last_read` (last byte
/// lapin read), `last_write` (lapin's last write, which anchors its wakes).
pub fn client_expectation(h_s: u16, fault: FaultKind, last_read: i64, last_write: i64) -> Expectation {
    let spec = "AMQP 0-9-1 §4.2.7 + lapin heartbeat algorithm";
    if h_s == 0 {
        return Expectation::not_detected("heartbeat 0 negotiated: lapin runs no heartbeat", spec);
    }
    let h = h_s as i64 * 1000;
    if fault == FaultKind::Reset {
        return next_send_meets_rst("lapin's next heartbeat (every H/2 after its last write)", last_write, h / 2, Before::Nothing, spec, Level::Must);
    }
    let (lo, hi) = next_ticks(last_write, h / 2, last_read + 2 * h);
    Expectation::window(
        lo.max(0) as u64,
        hi.max(0) as u64,
        format!(
            "MissingHeartbeatError at lapin's first wake (every H/2 = {} ms from its last write at {last_write:+} ms) with nothing read for more than 2H: \
             last read {last_read:+} ms + 2 × {h} ms = {} ms → wake at {lo}{} ms (within (2H, 2.5H] of the last read)",
            h / 2,
            last_read + 2 * h,
            if hi != lo { format!(" or {hi}") } else { String::new() }
        ),
        spec,
        Level::Must,
    )
}

/// The broker's heartbeat receiver, in ms relative to the fault: started at
/// `start` (Tune-Ok; its first wake is T later), `tick` one of its wakes
/// (or `start`).
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    pub start: i64,
    pub tick: i64,
}

/// Server side. Times are ms relative to the fault: `rx` (the broker's
/// receiver), `last_heard` (the last byte it received), `last_sent` (its
/// last heartbeat, which lapin read).
pub fn server_expectation(t_s: u16, fault: FaultKind, rx: Receiver, last_heard: i64, last_sent: i64) -> Expectation {
    let spec = "AMQP 0-9-1 §4.2.7 + RabbitMQ rabbit_heartbeat";
    if t_s == 0 {
        return Expectation::not_detected("heartbeat 0 negotiated: RabbitMQ runs no heartbeat check", spec);
    }
    if fault == FaultKind::Freeze {
        return Expectation::not_detected("the broker process is frozen", spec);
    }
    let t = t_s as i64 * 1000;
    if fault == FaultKind::Reset {
        return next_send_meets_rst("the broker's next heartbeat (every T/2 after its last)", last_sent, t / 2, Before::Nothing, spec, Level::Must);
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
    Expectation::window(
        (w_lo + 2 * t).max(0) as u64,
        (w_hi + 2 * t).max(0) as u64,
        format!(
            "{why}: {last_heard:+} ms; the receiver wakes every T = {t} ms (a tick at {tick:+} ms) and closes at the second wake without bytes: \
             first wake after it {w_lo}{} ms + 2T = {}{} ms (within (2T, 3T] of the last byte)",
            if w_hi != w_lo { format!(" or {w_hi}") } else { String::new() },
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

type ClientThread = kaspec_harness::netns::NsThread<Option<ClientEnd>>;
type StopAt = tokio::sync::watch::Sender<Option<Instant>>;

/// Starts lapin in the client host against `addr` (see [`client`]) and
/// waits for it to be ready.
fn start_client(tb: &Testbed, addr: SocketAddrV4, request: u16, name: String, tap: &Tap, steady: bool) -> Result<(ClientThread, Ready, StopAt)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_tap = tap.clone();
    let thread = tb.client.spawn_thread("kaspec-amqp-client", move || client(addr, request, name, client_tap, steady, ready_tx, stop_rx))?;
    match ready_rx.recv_timeout(Duration::from_secs(20) + 3 * Duration::from_secs(request.max(60) as u64)) {
        Ok(Ok(r)) => Ok((thread, r, stop_tx)),
        Ok(Err(e)) => {
            let _ = stop_tx.send(Some(Instant::now()));
            let _ = thread.join();
            Err(Error::Other(e))
        }
        Err(_) => Err(Error::Other("amqp client thread did not report".into())),
    }
}

/// Lets the client go (at `stop_at` at the latest, or at once if it failed)
/// and takes its end; a failure after `deadline` is not a detection.
fn finish_client(thread: ClientThread, stop: StopAt, stop_at: Instant, deadline: Instant) -> Result<ClientEnd> {
    let _ = stop.send(Some(stop_at));
    let end = thread.join()?.ok_or_else(|| Error::Other("amqp client ended without a result".into()))?;
    Ok(end.clip(deadline))
}

/// Connection.Tune-Ok as lapin wrote it: when, and its heartbeat.
fn tune_ok(io: &[Io]) -> Option<(Instant, u16)> {
    io.iter().find_map(|i| i.frames.iter().find_map(|f| if let Frame::TuneOk { heartbeat } = f { Some((i.at, *heartbeat)) } else { None }))
}

/// A receiver tick of the broker (ms from t0): Tune-Ok (`start`), refined
/// by the latest broker heartbeat read at a receiver tick (every second one:
/// sender and receiver start together). `heartbeats_read`: in order.
fn receiver_tick(start: i64, t_ms: i64, heartbeats_read: &[i64]) -> i64 {
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

/// lapin's reads and writes, for the timeline.
fn io_timeline(io: &[Io]) -> Vec<(Instant, String)> {
    io.iter()
        .map(|i| {
            let what = i
                .frames
                .iter()
                .map(|f| match f {
                    Frame::Heartbeat => "heartbeat".to_string(),
                    Frame::Tune { heartbeat } => format!("Connection.Tune (heartbeat {heartbeat})"),
                    Frame::TuneOk { heartbeat } => format!("Connection.Tune-Ok (heartbeat {heartbeat})"),
                    Frame::Other => "frame".to_string(),
                })
                .collect::<Vec<_>>()
                .join(" + ");
            let what = if what.is_empty() { format!("{} bytes", i.bytes) } else { what };
            (i.at, format!("lapin {} {what}", if i.dir == Dir::Read { "read" } else { "wrote" }))
        })
        .collect()
}

/// The configuration of a heartbeat case as the connection used it.
fn heartbeat_config(ctx: &Ctx, hs: u16, wire_h: Option<u16>) -> Result<std::collections::BTreeMap<String, String>> {
    let mut config = ctx.config.effective("amqp.");
    config.insert("rabbitmq.heartbeat".into(), format!("{}s ({})", server_heartbeat(&ctx.fixtures, &MAIN)?, MAIN.conf));
    config.insert("negotiated".into(), format!("{hs}s (lapin), Tune-Ok {}", wire_h.map(|w| format!("{w}s")).unwrap_or_else(|| "?".into())));
    Ok(config)
}

fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let broker_impl = broker_implementation();
    let lease = lease(ctx, &MAIN)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(MAIN.port));
    let tap = Tap::default();
    let (client_thread, ready, stop) = start_client(tb, addr, request_of(ctx), format!("kaspec-{}-idle", tb.tag), &tap, true)?;
    let hs = ready.negotiated;
    let h = Duration::from_secs(hs as u64);
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;

    let fault_at = quiet_instant(&tap.io(), h, Instant::now());
    if let Some(wait) = fault_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let applied = tb.apply_fault(fault, &Flow { client: ready.local, server: addr }, Some(lease.server().pid()))?;
    let t0 = applied.in_force_at;

    // Deadlines from the windows as they stand at t0 (3× the upper bound),
    // plus what a documented deviation allows beyond the broker's.
    let before = tap.io();
    let last = |d: Dir| before.iter().filter(|i| i.dir == d && i.at < t0).map(|i| rel_ms(t0, i.at)).next_back().unwrap_or(0);
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
            let client = Expectation::window(0, (last(Dir::Read) + 5 * t / 2).max(0) as u64, "", "", Level::Must).deadline_ms(10_000);
            let server = Expectation::window(0, server_hi, "", "", Level::Must).deadline_ms(10_000)
                + crate::deviations::late_allowance_ms(&ctx.deviations, case.id, "server", &broker_impl.name);
            // Under blackhole-up lapin may learn from the broker's close.
            (if fault == FaultKind::BlackholeUp { client.max(server) } else { client }, server)
        }
    };
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    // The second axis: the broker's end only (the tap holds lapin's socket
    // open, on purpose, until the broker has been watched).
    let release = crate::outcome::Releases { client: None, ..crate::outcome::releases(tb, ready.local, addr) };
    let client_deadline = t0 + Duration::from_millis(client_deadline_ms);
    let end = finish_client(client_thread, stop, Instant::now().max(client_deadline), client_deadline)?;

    let io = tap.io();
    let rel = |t: Instant| rel_ms(t0, t);
    let reads_before: Vec<&Io> = io.iter().filter(|i| i.dir == Dir::Read && i.at < t0).collect();
    let writes_before: Vec<&Io> = io.iter().filter(|i| i.dir == Dir::Write && i.at < t0).collect();
    // What lapin last read: before the fault or, with server → client still
    // open, before it gave up.
    let last_read = if fault == FaultKind::BlackholeUp {
        let until = end.failed_at.unwrap_or(client_deadline);
        io.iter().filter(|i| i.dir == Dir::Read && i.at < until).map(|i| rel(i.at)).next_back().unwrap_or(0)
    } else {
        reads_before.last().map(|i| rel(i.at)).unwrap_or(0)
    };
    let last_write = writes_before.last().map(|i| rel(i.at)).unwrap_or(0);
    let tune = tune_ok(&io);
    let wire_h = tune.map(|(_, w)| w);
    // What the broker uses is what Tune-Ok carried.
    let ts = wire_h.unwrap_or(hs);
    let heartbeats_read: Vec<i64> = reads_before.iter().filter(|i| i.frames.contains(&Frame::Heartbeat)).map(|i| rel(i.at)).collect();
    let start = tune.map(|(at, _)| rel(at)).unwrap_or(last_read);
    let tick = receiver_tick(start, ts as i64 * 1000, &heartbeats_read);
    let last_heard = if fault == FaultKind::BlackholeDown {
        let until = end.failed_at.map(rel).unwrap_or(i64::MAX);
        io.iter().filter(|i| i.dir == Dir::Write && i.at >= t0).map(|i| rel(i.at)).find(|r| *r < until).unwrap_or(last_write)
    } else {
        last_write
    };
    let last_sent = heartbeats_read.last().copied().unwrap_or(last_read);

    let mut timeline = io_timeline(&io);
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let config = heartbeat_config(ctx, hs, wire_h)?;
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: applied.engine.clone(), config, t0, timeline, release };
    let (client_exp, server_exp) = match &imp {
        // lapin fails after 2H without a read, the broker after 2T to 3T,
        // while each sends every H/2: the slack is 2H − H/2.
        Some(i) => (
            crate::model::impaired::impaired_expectation("lapin's slack, 2H − H/2 (the broker sends every H/2) =", 3 * h / 2, i, case.spec),
            crate::model::impaired::impaired_expectation("the broker's slack, 2T − T/2 (lapin sends every T/2) =", 3 * Duration::from_secs(ts as u64) / 2, i, case.spec),
        ),
        None => {
            let server = server_expectation(ts, fault, Receiver { start, tick }, last_heard, last_sent);
            let client = if fault == FaultKind::BlackholeUp {
                blackhole_up_client(client_expectation(hs, fault, last_read, last_write), server.clone(), last_read)
            } else {
                client_expectation(hs, fault, last_read, last_write)
            };
            (client, server)
        }
    };
    let results = facts.both_sides(
        client_implementation(),
        broker_impl,
        Side { expected: client_exp, detected_at: end.failed_at, error: end.error, deadline_ms: client_deadline_ms },
        Side::from_socket(server_exp, server_closed, server_deadline_ms, "broker"),
        &ctx.deviations,
    );
    drop(lease);
    Ok(results)
}

// --- through a NAT -------------------------------------------------------------

const NAT_SPEC: &str = "AMQP 0-9-1 §4.2.7, RFC 5382 §5";
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
}

/// The client's and the broker's expectations through a NAT forgetting idle
/// flows after `nat`, with negotiated heartbeat `h_s` (lapin) and `t_s`
/// (Tune-Ok, the broker's).
pub fn nat_expectations(h_s: u16, t_s: u16, nat: Duration, p: &NatPoints) -> (Expectation, Expectation) {
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
            Expectation::not_detected(
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
                prefix(client_expectation(h_s, FaultKind::NatExpiry, p.last_read, p.last_write)),
                prefix(server_expectation(t_s, FaultKind::NatExpiry, p.receiver, p.last_write, p.last_sent)),
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

fn nat_budget(ctx: &Ctx) -> Duration {
    let h = Duration::from_secs(effective_heartbeat(request_of(ctx), server_heartbeat(&ctx.fixtures, &MAIN).unwrap_or(DEFAULT_SERVER_HEARTBEAT)) as u64);
    // A node start, then the broker's 3T after the handshake, or 3 × N kept.
    Duration::from_secs(15) + (3 * h).max(3 * crate::model::nat::nat_idle(ctx))
}

fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
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
    let (client_thread, ready, stop) = start_client(tb, addr, request_of(ctx), format!("kaspec-{}-nat", tb.tag), &tap, false)?;
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
    let server_deadline_ms = ps.deadline_ms(quiet_ms) + crate::deviations::late_allowance_ms(&ctx.deviations, case.id, "server", &broker_impl.name);
    let server_closed = watch.wait(predicted_t0 + Duration::from_millis(server_deadline_ms.max(if fate == NatFate::Broken { 0 } else { client_deadline_ms })))?;
    let client_deadline = predicted_t0 + Duration::from_millis(client_deadline_ms);
    let (end, release) = if fate == NatFate::Broken {
        // The broker's end only: the tap holds lapin's socket until now.
        let release = crate::outcome::Releases { client: None, ..crate::outcome::releases(tb, ready.local, addr) };
        (finish_client(client_thread, stop, Instant::now().max(client_deadline), client_deadline)?, release)
    } else {
        // lapin closes the connection it kept (Connection.Close, then its
        // socket); the broker's end must follow within a second.
        let end = finish_client(client_thread, stop, Instant::now(), client_deadline)?;
        let closed_at = Instant::now();
        let release = loop {
            // lapin's I/O may let go of the socket after the client returned.
            tap.release();
            let r = crate::outcome::releases(tb, ready.local, addr);
            if r.server.as_ref().is_none_or(|s| s.clean) || closed_at.elapsed() > Duration::from_secs(1) {
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
    let heartbeats_after = io.iter().filter(|i| i.dir == Dir::Read && i.at >= t0 && i.frames.contains(&Frame::Heartbeat)).count();

    let mut timeline = io_timeline(&io);
    timeline.push((last, "the flow's last packet before the mapping expired".into()));
    if let Some(c) = &server_closed {
        timeline.push((c.at, format!("broker socket {}", c.state)));
    }
    let mut config = heartbeat_config(ctx, hs, Some(ts))?;
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release };
    let client_error = end.error.or_else(|| {
        Some(format!("no error; lapin read {heartbeats_after} broker heartbeats after the time the mapping would have expired, the last {} ms before the end", {
            let last_hb = io.iter().filter(|i| i.dir == Dir::Read && i.frames.contains(&Frame::Heartbeat)).map(|i| i.at).next_back();
            last_hb.map(|l| rel_ms(l, until)).unwrap_or(-1)
        }))
    });
    let results = facts.both_sides(
        client_implementation(),
        broker_impl,
        Side { expected: client_exp, detected_at: end.failed_at, error: client_error, deadline_ms: rel_ms(t0, client_deadline).max(0) as u64 },
        Side::from_socket(server_exp, server_closed, rel_ms(t0, predicted_t0 + Duration::from_millis(server_deadline_ms)).max(0) as u64, "broker"),
        &ctx.deviations,
    );
    drop(lease);
    Ok(results)
}

/// The points the NAT windows count from, in ms from `t0`.
fn nat_points(io: &[Io], t0: Instant, nat: Duration, t_s: u16) -> NatPoints {
    let rel = |t: Instant| rel_ms(t0, t);
    let last_of = |d: Dir| io.iter().filter(|i| i.dir == d && i.at < t0).map(|i| rel(i.at)).next_back();
    let (last_read, last_write) = (last_of(Dir::Read).unwrap_or(0), last_of(Dir::Write).unwrap_or(0));
    let heartbeats_read: Vec<i64> = io.iter().filter(|i| i.dir == Dir::Read && i.at < t0 && i.frames.contains(&Frame::Heartbeat)).map(|i| rel(i.at)).collect();
    let start = tune_ok(io).map(|(at, _)| rel(at)).unwrap_or(last_write);
    NatPoints {
        last: -(ms_of(nat) as i64),
        last_read,
        last_write,
        receiver: Receiver { start, tick: receiver_tick(start, t_s as i64 * 1000, &heartbeats_read) },
        last_sent: heartbeats_read.last().copied().unwrap_or(last_read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver whose start is long past.
    fn rx(tick: i64) -> Receiver {
        Receiver { start: i64::MIN / 4, tick }
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
        assert_eq!(requests_for(60, 2), vec![None, Some(0), Some(30), Some(120), Some(2)]);
        assert_eq!(requests_for(0, 2), vec![None, Some(0), Some(600), Some(2)]);
        assert_eq!(requests_for(60, 30), vec![None, Some(0), Some(30), Some(120)]);
    }

    #[test]
    fn a_row_is_checked_against_lapins_rule_the_spec_and_the_broker() {
        let row = Negotiated { request: Some(0), proposed: Some(60), tune_ok: Some(60), lapin: 60, broker: Some(60), local_port: 1 };
        assert!(check_row(&row, 60, "client").is_empty());
        assert!(check_row(&row, 60, "server").is_empty());
        let above = Negotiated { request: Some(600), lapin: 600, tune_ok: Some(600), broker: Some(600), ..row.clone() };
        let p = check_row(&above, 60, "client");
        assert!(p.iter().any(|p| p.contains("lowest agreed")) && p.iter().any(|p| p.contains("rule gives 60")), "{p:?}");
        let lost = Negotiated { broker: Some(30), ..row.clone() };
        assert!(!check_row(&lost, 60, "server").is_empty());
    }

    #[test]
    fn frames_are_split_across_reads() {
        let mut p = FrameParser::default();
        let hb = [8u8, 0, 0, 0, 0, 0, 0, 0xCE];
        // Tune-Ok: class 10 method 31, channel-max 2047, frame-max 131072, heartbeat 2.
        let mut tune_ok = vec![1u8, 0, 0, 0, 0, 0, 12, 0, 10, 0, 31, 0x07, 0xFF, 0, 2, 0, 0, 0, 2, 0xCE];
        let mut stream = b"AMQP\x00\x00\x09\x01".to_vec();
        stream.append(&mut tune_ok);
        stream.extend_from_slice(&hb);
        let (a, b) = stream.split_at(13);
        let mut frames = p.push(a);
        frames.extend(p.push(b));
        assert_eq!(frames, vec![Frame::TuneOk { heartbeat: 2 }, Frame::Heartbeat]);
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
        // −700 + 4000 = 3300 → wake at 3700.
        assert_eq!((e.min_ms, e.max_ms, e.level), (Some(3700), Some(3700), Level::Must));
        // A wake within the slack of last read + 2H: either may be the one.
        let e = client_expectation(2, FaultKind::Blackhole, -695, -690);
        assert_eq!((e.min_ms, e.max_ms), (Some(3310), Some(4310)));
        let r = client_expectation(2, FaultKind::Reset, -700, -300);
        assert_eq!((r.min_ms, r.max_ms), (Some(700), Some(700)));
        assert!(!client_expectation(0, FaultKind::Blackhole, 0, 0).expects_detection());
    }

    #[test]
    fn server_window_is_the_second_silent_receiver_tick() {
        // T = 2 s, a tick at −1500: ticks at 500, 2500, ...; last heard −300 → first
        // tick after it 500, + 2T = 4500.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1500), -300, -800);
        assert_eq!((e.min_ms, e.max_ms, e.level), (Some(4500), Some(4500), Level::Must));
        // Heard 5 ms before a tick: that tick or the next.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1500), 495, -800);
        assert_eq!((e.min_ms, e.max_ms), (Some(4500), Some(6500)));
        // Heard 1 ms after the very tick that anchors the grid: it or the next.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-526), -525, -526);
        assert_eq!((e.min_ms, e.max_ms), (Some(3474), Some(5474)));
        let r = server_expectation(2, FaultKind::Reset, rx(-1500), -300, -800);
        assert_eq!((r.min_ms, r.max_ms), (Some(200), Some(200)));
        assert!(!server_expectation(2, FaultKind::Freeze, rx(0), 0, 0).expects_detection());
        assert!(!server_expectation(0, FaultKind::Blackhole, rx(0), 0, 0).expects_detection());
    }

    #[test]
    fn blackhole_up_client_takes_the_earlier_of_its_check_and_the_brokers_rst() {
        let own = client_expectation(2, FaultKind::BlackholeUp, 497, -508);
        let broker = server_expectation(2, FaultKind::BlackholeUp, rx(-503), -508, -503);
        assert_eq!((own.min_ms, own.max_ms), (Some(4492), Some(5492)));
        assert_eq!((broker.min_ms, broker.max_ms), (Some(3497), Some(5497)));
        let e = blackhole_up_client(own, broker, 497);
        assert_eq!((e.min_ms, e.max_ms, e.level), (Some(3497), Some(5492), Level::Must));
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
        let p = NatPoints { last: -4000, last_read: -4000, last_write: -4000, receiver: Receiver { start: -4000, tick: -4000 }, last_sent: -4000 };
        let (c, s) = nat_expectations(2, 2, nat, &p);
        assert!(!c.expects_detection() && !s.expects_detection() && c.level == Level::Must && s.level == Level::Must);
        let (c, _) = nat_expectations(8, 8, nat, &p);
        assert_eq!((c.expects_detection(), c.level), (false, Level::Info));
    }

    #[test]
    fn broken_nat_windows_count_from_the_expiry() {
        // H = 10 s, N = 4 s, handshake (Tune-Ok, Open, Open-Ok) at −4000 ms.
        let p = NatPoints { last: -4000, last_read: -4000, last_write: -4000, receiver: Receiver { start: -4000, tick: -4000 }, last_sent: -4000 };
        let (c, s) = nat_expectations(10, 10, Duration::from_secs(4), &p);
        // lapin: last read + 2H = 16000 falls on its wake grid (every 5 s from −4000): that wake or the next.
        assert_eq!((c.min_ms, c.max_ms, c.level), (Some(16000), Some(21000), Level::Must));
        // RabbitMQ: no receiver wake before Tune-Ok + T = 6000; + 2T = 26000.
        assert_eq!((s.min_ms, s.max_ms, s.level), (Some(26000), Some(26000), Level::Must));
        assert!(c.formula.contains("H/2 = 5000 ms ≥ N = 4000 ms") && s.spec.contains("RFC 5382"), "{c:?}");
    }

    #[test]
    fn the_receivers_first_wake_is_one_period_after_its_start() {
        let e = server_expectation(2, FaultKind::Blackhole, Receiver { start: -1000, tick: -1000 }, -995, -1000);
        assert_eq!((e.min_ms, e.max_ms), (Some(5000), Some(5000)));
        // Without a start the anchor itself would count as a wake.
        let e = server_expectation(2, FaultKind::Blackhole, rx(-1000), -995, -1000);
        assert_eq!((e.min_ms, e.max_ms), (Some(3000), Some(5000)));
    }

    #[test]
    fn the_expiry_follows_the_first_silence_of_n() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let io = |ms, dir| Io { at: at(ms), dir, bytes: 8, frames: vec![Frame::Heartbeat] };
        let nat = Duration::from_secs(4);
        // Handshake at 0..2, then lapin's heartbeats (dropped) every 5 s.
        let broken = [io(0, Dir::Write), io(2, Dir::Read), io(5002, Dir::Write), io(10003, Dir::Write)];
        assert_eq!(last_before_expiry(&broken, nat, at(20_000)), Some(at(2)));
        // Heartbeats every second: never silent for N.
        let kept: Vec<Io> = (0..12).map(|k| io(k * 1000, if k % 2 == 0 { Dir::Read } else { Dir::Write })).collect();
        assert_eq!(last_before_expiry(&kept, nat, at(12_500)), None);
        // Silent at the end for N or more.
        assert_eq!(last_before_expiry(&kept, nat, at(15_000)), Some(at(11_000)));
    }

    #[test]
    fn the_fault_goes_in_the_middle_of_the_longest_quiet_gap() {
        let now = Instant::now();
        let at = |ms: u64| now - Duration::from_millis(ms);
        let io = |dir, ago| Io { at: at(ago), dir, bytes: 8, frames: vec![Frame::Heartbeat] };
        // H = 2 s: both every 1000 ms; wrote 100 ms ago (next in 900), read 300 ms ago (next in 700).
        let q = quiet_instant(&[io(Dir::Write, 100), io(Dir::Read, 300)], Duration::from_secs(2), now);
        // Gaps: 700..900 (200 ms) and 900..1700 (800 ms): middle 1300 → 300 ms from now.
        let d = q.duration_since(now).as_millis();
        assert!((299..=301).contains(&d), "{d}");
    }
}

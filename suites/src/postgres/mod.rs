//! PostgreSQL: tokio-postgres against a real PostgreSQL from the
//! distribution's packages, started once per run (see [`crate::shared`]) in
//! the server host with a throw-away data directory (`/tmp/kaspec-TAG-postgres`,
//! initdb'd as the `postgres` user) and the settings of
//! `fixtures/postgres/kaspec.conf`. Every case opens its own connection and
//! faults only that flow; server settings a case must isolate are set for its
//! own session (`options='-c ...'`; all of them are per-session GUCs).
//!
//! tokio-postgres sets the socket options TCP keep-alive and TCP_USER_TIMEOUT
//! of its own `Config` (connect_socket.rs), PostgreSQL those of its
//! `tcp_keepalives_*` / `tcp_user_timeout` on every client connection; the
//! windows are Linux's ([`crate::model::tcp::keepalive_death`]), counted from each
//! side's last received segment as its TCP_INFO says just before the fault.
//!
//! The crash fault SIGKILLs the postmaster: its backends notice the
//! postmaster's death (WL_EXIT_ON_PM_DEATH in every wait, pg_sleep's too) and
//! exit at once, so the whole server side is gone, as with a dead host; their
//! FIN dies at the router. The freeze fault SIGSTOPs the connection's own
//! backend (stopping the postmaster would freeze nothing a connection uses).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::expect::{Expectation, Level};
use kaspec_harness::fault::{FaultKind, Flow};
use kaspec_harness::netns::Testbed;
use kaspec_harness::observe::{since_last_recv, SocketWatch};
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::{ContainerCheck, Server, ServerSpec};
use kaspec_harness::{Error, Result};

use crate::case::{CaseDef, Docker, Protocol};
use crate::ctx::Ctx;
use crate::drive;
use crate::model::{ms_of, rel_ms};
use crate::model::tcp::{death_after_idle, keepalive_window};
use crate::outcome::{RunFacts, Side};
use crate::config::{PostgresConfig, TcpConfig};
use crate::model::linux;
use crate::shared::Started;

pub const PORT: u16 = 5432;

const IDLE_FAULTS: &[FaultKind] = &FaultKind::INSTANT_AND_IMPAIR;

pub static PROTOCOL: Protocol = Protocol { name: "postgres", cases: &CASES, prerequisites: || postgres_binary().map(drop) };

/// The compose service of the PostgreSQL cases on the docker testbed.
const PG: Docker = Docker::Service { service: "postgres", implementation: "postgresql" };

/// PostgreSQL 15 §34.1.2 (libpq connection parameters).
const LIBPQ_KEEPALIVES: &str = "keepalives: Controls whether client-side TCP keepalives are used. [...] keepalives_idle: Controls the number of seconds of inactivity after which TCP should send a keepalive message to the server.";
const LIBPQ_USER_TIMEOUT: &str = "tcp_user_timeout: Controls the number of milliseconds that transmitted data may remain unacknowledged before a connection is forcibly closed.";
/// PostgreSQL 15 §20.3.1 (server settings).
const SERVER_KEEPALIVES: &str = "tcp_keepalives_idle: Specifies the amount of time with no network activity after which the operating system should send a TCP keepalive message to the client.";
const CHECK_INTERVAL: &str = "client_connection_check_interval: Sets the time interval between optional checks that the client is still connected, while running queries. The check is performed by polling the socket, and allows long running queries to be aborted sooner if the kernel reports that the connection is closed.";
/// PostgreSQL 15 §20.11.1.
const IDLE_SESSION: &str = "idle_session_timeout: Terminate any session that has been idle (that is, waiting for a client query), but not within an open transaction, for longer than the specified amount of time.";

pub static CASES: [CaseDef; 6] = [
    CaseDef {
        id: "postgres/libpq-keepalives/1",
        protocol: "postgres",
        spec: "PostgreSQL 15 §34.1.2 (keepalives*), RFC 1122 §4.2.3.6",
        quote: LIBPQ_KEEPALIVES,
        description: "Idle tokio-postgres connection; the path fails: the client's keep-alive fails the Connection future, the server's keep-alive ends the backend's socket.",
        requirement: "Each side's TCP keep-alive declares the idle connection dead at I + N×V (or at U with TCP_USER_TIMEOUT) after its last received segment; tokio-postgres's Connection then resolves with an error",
        faults: IDLE_FAULTS,
        run: run_idle,
        budget,
        fixed_fault: None,
        docker: PG,
    },
    CaseDef {
        id: "postgres/libpq-tcp_user_timeout/1",
        protocol: "postgres",
        spec: "PostgreSQL 15 §34.1.2 (tcp_user_timeout), RFC 5482 §3",
        quote: LIBPQ_USER_TIMEOUT,
        description: "The path fails, then the client sends a query: it is never acknowledged; tokio-postgres's tcp_user_timeout ends the connection.",
        requirement: "Unacknowledged data older than the user timeout aborts the connection; keep-alive does not probe while the query is in flight",
        faults: &[FaultKind::Blackhole, FaultKind::Reset, FaultKind::Freeze, FaultKind::Crash],
        run: run_query_in_flight,
        budget,
        fixed_fault: None,
        docker: PG,
    },
    CaseDef {
        id: "postgres/pg15-20.3-tcp_keepalives/1",
        protocol: "postgres",
        spec: "PostgreSQL 15 §20.3.1 (tcp_keepalives_idle/interval/count), RFC 1122 §4.2.3.6",
        quote: SERVER_KEEPALIVES,
        description: "A client without keep-alive goes idle and its path fails: only the server's tcp_keepalives_* reap the connection.",
        requirement: "The server's keep-alive declares a silent client dead at tcp_keepalives_idle + count × interval after the last segment it received",
        faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset, FaultKind::Delay, FaultKind::Loss],
        run: run_server_keepalive,
        budget,
        fixed_fault: None,
        docker: PG,
    },
    CaseDef {
        id: "postgres/pg15-20.11-idle_session_timeout/1",
        protocol: "postgres",
        spec: "PostgreSQL 15 §20.11.1 (idle_session_timeout)",
        quote: IDLE_SESSION,
        description: "A healthy idle session: the server ends it at idle_session_timeout (FATAL 57P05, then close).",
        requirement: "A session idle (outside a transaction) longer than idle_session_timeout is terminated",
        faults: &[FaultKind::None],
        run: run_idle_session_timeout,
        budget,
        fixed_fault: Some(FaultKind::None),
        docker: PG,
    },
    CaseDef {
        id: "postgres/pg15-20.3-client_connection_check_interval/1",
        protocol: "postgres",
        spec: "PostgreSQL 15 §20.3.1 (client_connection_check_interval)",
        quote: CHECK_INTERVAL,
        description: "A long query (pg_sleep) runs and the client's path fails: the backend is cancelled only once its TCP has declared the connection dead, within one check interval.",
        requirement: "While a query runs, the backend checks the socket every client_connection_check_interval and aborts the query once the kernel reports the connection closed",
        faults: &[FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset],
        run: run_check_interval,
        budget,
        fixed_fault: None,
        docker: PG,
    },
    CaseDef {
        id: "postgres/libpq-keepalives/2",
        protocol: "postgres",
        spec: "PostgreSQL 15 §34.1.2 (keepalives*), RFC 5382 §5",
        quote: LIBPQ_KEEPALIVES,
        description: "Idle tokio-postgres connection through a NAT that forgets idle flows after N (the server's keep-alive left at the kernel default for this session): the client's keep-alive below N keeps the connection; at or above N it breaks, and the client's keep-alive notices.",
        requirement: "A keep-alive keeps a NAT mapping only when its period (keepalives_idle) is below the NAT's idle timeout",
        faults: &[FaultKind::NatExpiry],
        run: run_nat,
        budget: |ctx| {
            let d = crate::model::tcp::keepalive_death(&ctx.config.postgres.tcp());
            Duration::from_secs(12) + 3 * crate::model::nat::nat_idle(ctx) + Duration::from_millis(d.ms + d.slack_ms)
        },
        fixed_fault: Some(FaultKind::NatExpiry),
        docker: PG,
    },
];

/// The server's settings of `fixtures/postgres/kaspec.conf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// tcp_keepalives_* (0 = the kernel default: 7200 s, 75 s, 9) and tcp_user_timeout.
    pub tcp: TcpConfig,
    /// Zero means off.
    pub idle_session_timeout: Duration,
    /// Zero means off.
    pub check_interval: Duration,
}

pub fn server_config(fixtures: &Path) -> PathBuf {
    fixtures.join("postgres/kaspec.conf")
}

impl ServerSettings {
    pub fn load(fixtures: &Path) -> Result<ServerSettings> {
        let path = server_config(fixtures);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        ServerSettings::parse(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Reads the six settings kaspec uses (`name = value`, PostgreSQL's
    /// default units, optionally quoted with a unit: '2s', '1500ms', '1min').
    pub fn parse(text: &str) -> std::result::Result<ServerSettings, String> {
        let mut s = ServerSettings {
            tcp: TcpConfig { keepalive: true, idle: Duration::ZERO, interval: Duration::ZERO, count: 0, user_timeout: Duration::ZERO },
            idle_session_timeout: Duration::ZERO,
            check_interval: Duration::ZERO,
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((k, v)) = line.split_once('=') else { continue };
            let (k, v) = (k.trim(), v.trim().trim_matches('\''));
            let secs = matches!(k, "tcp_keepalives_idle" | "tcp_keepalives_interval");
            let val = |default_unit_ms: u64| -> std::result::Result<Duration, String> {
                let n = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &v[n.len()..];
                let n: u64 = n.trim().parse().map_err(|_| format!("{k} = {v}: expected a whole number"))?;
                let per = match unit {
                    "" => default_unit_ms,
                    "ms" => 1,
                    "s" => 1000,
                    "min" => 60_000,
                    other => return Err(format!("{k} = {v}: unit `{other}` (use ms, s or min)")),
                };
                Ok(Duration::from_millis(n * per))
            };
            match k {
                "tcp_keepalives_idle" | "tcp_keepalives_interval" | "tcp_user_timeout" | "idle_session_timeout" | "client_connection_check_interval" => {
                    let d = val(if secs { 1000 } else { 1 })?;
                    match k {
                        "tcp_keepalives_idle" => s.tcp.idle = d,
                        "tcp_keepalives_interval" => s.tcp.interval = d,
                        "tcp_user_timeout" => s.tcp.user_timeout = d,
                        "idle_session_timeout" => s.idle_session_timeout = d,
                        _ => s.check_interval = d,
                    }
                }
                "tcp_keepalives_count" => s.tcp.count = v.parse().map_err(|_| format!("{k} = {v}: expected a whole number"))?,
                _ => {}
            }
        }
        // 0 = the kernel's default (a new network namespace's).
        if s.tcp.idle.is_zero() {
            s.tcp.idle = Duration::from_secs(7200);
        }
        if s.tcp.interval.is_zero() {
            s.tcp.interval = Duration::from_secs(75);
        }
        if s.tcp.count == 0 {
            s.tcp.count = 9;
        }
        Ok(s)
    }

    fn report(&self) -> Vec<(String, String)> {
        let t = &self.tcp;
        vec![
            ("server.tcp_keepalives_idle".into(), format!("{}s", t.idle.as_secs())),
            ("server.tcp_keepalives_interval".into(), format!("{}s", t.interval.as_secs())),
            ("server.tcp_keepalives_count".into(), t.count.to_string()),
            ("server.tcp_user_timeout".into(), format!("{}ms", ms_of(t.user_timeout))),
            ("server.idle_session_timeout".into(), format!("{}ms", ms_of(self.idle_session_timeout))),
            ("server.client_connection_check_interval".into(), format!("{}ms", ms_of(self.check_interval))),
        ]
    }
}

/// The server's program: the newest installed here, or the container's on
/// the docker testbed (its version the image's).
fn server_program(ctx: &Ctx) -> Result<PathBuf> {
    match ctx.docker {
        None => postgres_binary(),
        Some(_) => Ok("postgres".into()),
    }
}

/// The newest `/usr/lib/postgresql/*/bin/postgres`.
pub fn postgres_binary() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let p = e.path().join("bin/postgres");
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        Error::Capability("PostgreSQL server not found (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql, or run fixtures/bootstrap.sh".into())
    })
}

/// `postgres --version`: `postgres (PostgreSQL) 15.18 (Debian ...)`.
pub fn server_implementation(program: &Path) -> Implementation {
    let version = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("postgresql", version)
}

pub fn client_implementation() -> Implementation {
    Implementation::new("tokio-postgres", env!("KASPEC_VERSION_TOKIO_POSTGRES"))
}

fn budget(ctx: &Ctx) -> Duration {
    let c = crate::model::tcp::keepalive_death(&ctx.config.postgres.tcp());
    let s = ServerSettings::load(&ctx.fixtures).map(|s| crate::model::tcp::keepalive_death(&s.tcp).ms + ms_of(s.check_interval)).unwrap_or(10_000);
    Duration::from_millis(3 * c.ms.max(s).max(ms_of(ctx.config.postgres.tcp_user_timeout) + 1000) + 5000)
}

/// Starts the shared server: initdb as `postgres` into a throw-away
/// directory, the fixture's settings included, then the postmaster in the
/// server host; ready once it logs that it accepts connections.
fn start_server(tb: &Testbed, fixtures: &Path) -> Result<Started> {
    if tb.docker.is_some() {
        // docker-compose.yml's postgres: fixtures/postgres/kaspec.conf as its whole configuration.
        let server = Server::start(
            tb,
            &ServerSpec {
                name: "postgres".into(),
                addr: SocketAddrV4::new(tb.server.addr, tb.server_port(PORT)),
                ready_within: Duration::from_secs(30),
                container: Some(ContainerCheck {
                    service: "postgres".into(),
                    args: vec!["config_file=/etc/kaspec/postgres.conf".into()],
                    files: vec![("/etc/kaspec/postgres.conf".into(), server_config(fixtures))],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )?;
        return Ok(Started { processes: vec![server], dirs: Vec::new() });
    }
    let program = postgres_binary()?;
    let bin = program.parent().expect("a bin directory").to_path_buf();
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| Error::Capability("no `postgres` user (the postgresql package creates it): apt-get install postgresql".into()))?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let conf = server_config(fixtures);
    let conf_text = std::fs::read_to_string(&conf).map_err(|e| Error::io(format!("reading {}", conf.display()), e))?;
    ServerSettings::parse(&conf_text).map_err(|e| Error::Other(format!("{}: {e}", conf.display())))?;

    let io = |what: String| move |e| Error::io(what, e);
    let dir = kaspec_harness::cleanup::scratch_dir(&tb.tag, "postgres").map_err(io(format!("creating a throw-away directory for run {}", tb.tag)))?;
    // From here on the directory goes with the group (or now, on error).
    let cleanup = DirGuard(Some(dir.clone()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(format!("chmod {}", dir.display())))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io(format!("chown {}", dir.display())))?;
    let data = dir.join("data");
    let out = tb
        .server
        .command_as(bin.join("initdb"), &tb.tag, Some((uid, gid)))?
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-N", "-E", "UTF8", "--locale=C"])
        .env("LC_ALL", "C")
        .output()
        .map_err(io(format!("running {}", bin.join("initdb").display())))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "initdb {} failed ({}): {}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let write = |name: &str, text: &str| -> Result<()> {
        let p = data.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| Error::io(format!("chown {}", p.display()), e))
    };
    write("pg_hba.conf", "local all all trust\nhost all all 0.0.0.0/0 trust\n")?;
    write("kaspec.conf", &conf_text)?;
    let main_conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&main_conf).map_err(io(format!("reading {}", main_conf.display())))?;
    text.push_str(&format!("\n# kaspec: the settings under test ({})\ninclude 'kaspec.conf'\n", conf.display()));
    write("postgresql.conf", &text)?;

    let addr = SocketAddrV4::new(tb.server.addr, PORT);
    let c = |kv: &str| ["-c".to_string(), kv.to_string()];
    let mut args = vec!["-D".to_string(), data.display().to_string()];
    for kv in [
        format!("listen_addresses={}", tb.server.addr),
        format!("port={PORT}"),
        format!("unix_socket_directories={}", dir.display()),
        "log_destination=stderr".into(),
        "logging_collector=off".into(),
        "log_line_prefix=%m [%p] ".into(),
        "log_connections=on".into(),
        "log_disconnections=on".into(),
        "fsync=off".into(),
        "synchronous_commit=off".into(),
        "full_page_writes=off".into(),
        "max_connections=40".into(),
    ] {
        args.extend(c(&kv));
    }
    // A restart (after a crash) keeps the earlier log: postgres, postgres-2, ...
    let logs = tb.run_dir.join("logs");
    let name = (1..).map(|n: u32| if n == 1 { "postgres".to_string() } else { format!("postgres-{n}") }).find(|n| !logs.join(format!("{n}-{}.log", tb.tag)).exists()).expect("a free name");
    let server = Server::start(
        tb,
        &ServerSpec {
            name,
            program,
            args,
            addr,
            ready_within: Duration::from_secs(30),
            env: vec![("LC_ALL".into(), "C".into())],
            user: Some((uid, gid)),
            ready_log: Some("database system is ready to accept connections".into()),
            stop_signal: nix::sys::signal::Signal::SIGINT,
            container: None,
        },
    )?;
    Ok(Started { processes: vec![server], dirs: cleanup.keep() })
}

/// Removes a directory unless kept.
struct DirGuard(Option<PathBuf>);

impl DirGuard {
    fn keep(mut self) -> Vec<PathBuf> {
        self.0.take().into_iter().collect()
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// What the client does once the fault is in force.
#[derive(Debug, Clone, PartialEq)]
enum After {
    /// Stay idle.
    Idle,
    /// Send this query at once (it is in flight on a dead path).
    Query(String),
    /// This query was sent before the fault and is still running.
    Running(String),
}

struct Plan {
    client: PostgresConfig,
    /// `-c name=value` for the session.
    session: Vec<(String, String)>,
    after: After,
}

struct Ready {
    backend_pid: i32,
    local: SocketAddrV4,
    /// The client socket's last received segment (its TCP_INFO).
    last_rx: Instant,
    /// What tokio-postgres set on the socket, read back with getsockopt.
    sockopts: String,
}

#[derive(Default)]
struct ClientEnd {
    failed_at: Option<Instant>,
    error: Option<String>,
    query_sent: Option<Instant>,
    query_end: Option<(Instant, String)>,
    retrans: Option<linux::RetransState>,
}

/// The message and every source of a tokio-postgres error on one line,
/// with the SQLSTATE and the io::ErrorKind where there are.
fn describe(e: &tokio_postgres::Error) -> String {
    let mut s = format!("tokio_postgres::Error: {e}");
    if let Some(db) = e.as_db_error() {
        s += &format!(" [{} {}: {}]", db.severity(), db.code().code(), db.message());
    }
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            s += &format!(": std::io::Error {{ kind: {:?} }}: {io}", io.kind());
        } else if e.as_db_error().is_none() {
            s += &format!(": {x}");
        }
        src = x.source();
    }
    s
}

/// The fd of this process's TCP socket `local -> server` (tokio-postgres
/// does not expose it), borrowed to read socket options and TCP_INFO.
fn find_socket(local_port: u16, server: SocketAddrV4) -> Option<i32> {
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&bfd);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        if local.map(|a| a.port()) == Some(local_port) && peer == Some(SocketAddr::V4(server)) {
            return Some(fd);
        }
    }
    None
}

fn sockopts(fd: i32) -> String {
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&bfd);
    let secs = |d: std::io::Result<Duration>| d.map(|d| format!("{}s", d.as_secs())).unwrap_or_else(|_| "?".into());
    format!(
        "SO_KEEPALIVE={} TCP_KEEPIDLE={} TCP_KEEPINTVL={} TCP_KEEPCNT={} TCP_USER_TIMEOUT={}",
        sock.keepalive().map(|b| b.to_string()).unwrap_or_else(|_| "?".into()),
        secs(sock.keepalive_time()),
        secs(sock.keepalive_interval()),
        sock.keepalive_retries().map(|n| n.to_string()).unwrap_or_else(|_| "?".into()),
        sock.tcp_user_timeout().map(|u| format!("{}ms", u.map(ms_of).unwrap_or(0))).unwrap_or_else(|_| "?".into()),
    )
}

/// Time since the socket last received a segment (TCP_INFO), as Linux's
/// keep-alive timer counts it.
fn since_rx(fd: i32) -> Option<Duration> {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len) };
    (rc == 0).then(|| Duration::from_millis(info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv) as u64))
}

/// The client: connect with `plan`, learn the backend's pid and the local
/// port, settle (so the peer's delayed ACK is out: a blackhole must not
/// strand unacknowledged data), report ready, wait for the go, then act and
/// wait for the Connection future until the deadline; keep the connection
/// open until `stop`.
fn client(
    server: SocketAddrV4,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::oneshot::Receiver<Instant>,
    stop: mpsc::Receiver<()>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let kept = rt.block_on(async move {
        let p = plan.client;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(server.ip().to_string())
            .port(server.port())
            .user("postgres")
            .dbname("postgres")
            .application_name("kaspec")
            .connect_timeout(Duration::from_secs(5))
            .keepalives(p.keepalives)
            .keepalives_idle(p.keepalives_idle)
            .keepalives_interval(p.keepalives_interval)
            .keepalives_retries(p.keepalives_retries);
        if !p.tcp_user_timeout.is_zero() {
            cfg.tcp_user_timeout(p.tcp_user_timeout);
        }
        if !plan.session.is_empty() {
            cfg.options(plan.session.iter().map(|(k, v)| format!("-c {k}={v}")).collect::<Vec<_>>().join(" "));
        }
        let fail = |e: String| {
            let _ = ready.send(Err(e));
            None
        };
        let (client, connection) = match cfg.connect(tokio_postgres::NoTls).await {
            Ok((c, conn)) => (std::sync::Arc::new(c), conn),
            Err(e) => return fail(format!("tokio-postgres could not connect to {server}: {}", describe(&e))),
        };
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let r = connection.await;
            let _ = done_tx.send((Instant::now(), r));
        });
        let row = match client.simple_query("SELECT pg_backend_pid(), inet_client_port()").await {
            Ok(rows) => rows.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((r.get(0).and_then(|v| v.parse().ok()), r.get(1).and_then(|v| v.parse().ok()))),
                _ => None,
            }),
            Err(e) => return fail(format!("first query failed: {}", describe(&e))),
        };
        let Some((Some(backend_pid), Some(port))) = row else { return fail("pg_backend_pid()/inet_client_port() returned no row".into()) };
        let Some(fd) = find_socket(port, server) else { return fail(format!("no socket with local port {port} towards {server} in this process")) };
        let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let mut end = ClientEnd::default();
        let mut running = None;
        if let After::Running(sql) = &plan.after {
            let (c, sql) = (client.clone_for_query(), sql.clone());
            end.query_sent = Some(Instant::now());
            running = Some(tokio::spawn(async move { c.run(&sql).await }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = Instant::now();
        let last_rx = since_rx(fd).map(|d| now - d).unwrap_or(now);
        let _ = ready.send(Ok(Ready { backend_pid, local, last_rx, sockopts: sockopts(fd) }));
        let Ok(deadline) = go.await else { return Some((client, end)) };
        if let After::Query(sql) = &plan.after {
            end.retrans = linux::RetransState::read(fd).ok();
            end.query_sent = Some(Instant::now());
            let (c, sql) = (client.clone_for_query(), sql.clone());
            running = Some(tokio::spawn(async move { c.run(&sql).await }));
        }
        let mut running = running;
        tokio::select! {
            r = &mut done_rx => {
                if let Ok((t, r)) = r {
                    end.failed_at = Some(t);
                    end.error = Some(match r {
                        Ok(()) => "the Connection future ended without an error (the server closed the connection)".into(),
                        Err(e) => format!("Connection future: {}", describe(&e)),
                    });
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        if let Some(q) = running.take() {
            // A query fails with the connection; give it a moment to say so.
            if let Ok(Ok((t, what))) = tokio::time::timeout(Duration::from_millis(200), q).await {
                end.query_end = Some((t, what));
            }
        }
        Some((client, end))
    });
    let Some((client, end)) = kept else { return ClientEnd::default() };
    // Closed only after the server side was watched: the client's clean
    // close must not pass for the server's detection.
    let _ = stop.recv();
    drop(client);
    end
}

/// A query run on its own task: when it ended, and how.
struct QueryClient(std::sync::Arc<tokio_postgres::Client>);

trait CloneForQuery {
    fn clone_for_query(&self) -> QueryClient;
}

impl CloneForQuery for std::sync::Arc<tokio_postgres::Client> {
    fn clone_for_query(&self) -> QueryClient {
        QueryClient(self.clone())
    }
}

impl QueryClient {
    async fn run(&self, sql: &str) -> (Instant, String) {
        let r = self.0.simple_query(sql).await;
        (Instant::now(), r.map(|_| "query completed".to_string()).unwrap_or_else(|e| format!("query failed: {}", describe(&e))))
    }
}

/// Watches a process (a backend) from the root namespace: when it exited.
struct ProcWatch(std::thread::JoinHandle<Option<Instant>>, std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ProcWatch {
    fn start(pid: i32) -> ProcWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let gone = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|st| st.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
                    .unwrap_or(true)
            };
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if gone() {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        });
        ProcWatch(h, stop)
    }

    fn wait(self, deadline: Instant) -> Option<Instant> {
        while !self.0.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.1.store(true, std::sync::atomic::Ordering::Relaxed);
        self.0.join().ok().flatten()
    }
}

/// What a case measures besides the client and the server socket.
#[derive(Clone, Copy, PartialEq)]
enum Measure {
    /// The server side is its socket.
    Socket,
    /// The server side is the backend's exit (its socket's death in the timeline).
    Backend,
}

struct Outcome {
    client: Side,
    server: Side,
}

struct Run {
    fault: FaultKind,
    t0: Instant,
    engine: String,
    ready: Ready,
    /// ms before t0 since each side last received a segment.
    client_idle: u64,
    server_idle: u64,
    end: ClientEnd,
    server_closed: Option<kaspec_harness::observe::SocketClosed>,
    backend_end: Option<Instant>,
    server_impl: Implementation,
    settings: ServerSettings,
    /// How long each side was watched after t0.
    client_deadline_ms: u64,
    server_deadline_ms: u64,
}

/// Runs one connection under `fault`: `deadlines` gives (client, server)
/// deadlines in ms after t0 from the settings; `judge` the expectations
/// from what was measured.
fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    plan: Plan,
    measure: Measure,
    deadlines: impl Fn(&ServerSettings) -> (u64, u64),
    judge: impl Fn(&Run) -> Outcome,
) -> Result<Vec<CaseResult>> {
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let program = server_program(ctx)?;
    let lease = ctx.shared.lease_in(&ctx.shared_bed("postgres"), "postgres", || ctx.testbed_for("postgres"), |tb| start_server(tb, &ctx.fixtures))?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let (client_deadline_ms, server_deadline_ms) = deadlines(&settings);

    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let client_cfg = plan.client;
    let thread = tb.client.spawn_thread("kaspec-pg-client", move || client(addr, plan, ready_tx, go_rx, stop_rx))?;
    let ready = match ready_rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Error::Other(format!("{e}; server log:\n{}", lease.server().log_tail(10)))),
        Err(_) => return Err(Error::Other("tokio-postgres client thread did not report within 15 s".into())),
    };
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    // pg_backend_pid() is the container's pid on the docker testbed.
    let backend_pid = match &tb.docker {
        None => ready.backend_pid,
        Some(_) => kaspec_harness::docker::host_pid(lease.server().pid(), ready.backend_pid)
            .ok_or_else(|| Error::Other(format!("backend {} of the postgres container not found in /proc", ready.backend_pid)))? as i32,
    };
    let backend = ProcWatch::start(backend_pid);
    let read_at = Instant::now();
    let server_since = since_last_recv(&tb.server, addr, seen)?
        .ok_or_else(|| Error::Other(format!("no TCP_INFO for the server's end of {local} <-> {addr}")))?;
    let server_last_rx = read_at - server_since;
    let pid = match fault {
        FaultKind::Freeze => Some(backend_pid as u32),
        _ => Some(lease.server().pid()),
    };
    let applied = tb.apply_fault(fault, &Flow { client: local, server: addr }, pid)?;
    let t0 = applied.in_force_at;
    let _ = go_tx.send(t0 + Duration::from_millis(client_deadline_ms));
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let backend_end = backend.wait(if measure == Measure::Backend { t0 + Duration::from_millis(server_deadline_ms) } else { Instant::now() });
    // The second axis, before the client is told to close.
    let release = crate::outcome::releases(tb, local, addr);
    // The client stops at its own deadline (or failure), then closes once told.
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let r = Run {
        fault,
        t0,
        engine: applied.engine.clone(),
        client_idle: rel_ms(ready.last_rx, t0).max(0) as u64,
        server_idle: rel_ms(server_last_rx, t0).max(0) as u64,
        ready,
        end,
        server_closed,
        backend_end,
        server_impl: server_implementation(&program),
        settings,
        client_deadline_ms,
        server_deadline_ms,
    };
    let out = judge(&r);
    let mut timeline = vec![
        (r.ready.last_rx, "client's last segment received (TCP_INFO)".to_string()),
        (server_last_rx, "server's last segment received (TCP_INFO)".to_string()),
    ];
    if let Some(t) = r.end.query_sent {
        let state = r.end.retrans.map(|s| format!(" (rto {} ms, srtt {} µs)", s.rto_us / 1000, s.srtt_us)).unwrap_or_default();
        timeline.push((t, format!("client sent its query{state}")));
    }
    if let Some((t, what)) = &r.end.query_end {
        timeline.push((*t, what.clone()));
    }
    if let Some(c) = &r.server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    if let Some(t) = r.backend_end {
        timeline.push((t, format!("backend {} exited", r.ready.backend_pid)));
    }
    let mut config = ctx.config.effective("postgres.");
    if !client_cfg.keepalives {
        config.insert("postgres.keepalives".into(), "false (this case)".into());
    }
    config.insert("postgres.socket".into(), r.ready.sockopts.clone());
    config.extend(r.settings.report());
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts { case, fault, engine: r.engine.clone(), config, t0, timeline, release };
    let results = facts.both_sides(client_implementation(), r.server_impl.clone(), out.client, out.server, &ctx.deviations);
    drop(lease);
    Ok(results)
}

/// Through a NAT: only the client's keep-alive may refresh the mapping, so
/// the server's is left at the kernel default (2 h) for this session.
fn run_nat(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let nat = crate::model::nat::nat_idle(ctx);
    let program = server_program(ctx)?;
    let lease = ctx.shared.lease_in(
        &ctx.shared_nat_bed("postgres", nat),
        "postgres",
        || ctx.testbed_with_nat("postgres", nat),
        |tb| start_server(tb, &ctx.fixtures),
    )?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let client_cfg = ctx.config.postgres;
    let c = client_cfg.tcp();
    let mut session = session_without_idle_timeout();
    session.push(("tcp_keepalives_idle".into(), "0".into()));
    let plan = Plan { client: client_cfg, session, after: After::Idle };
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let thread = tb.client.spawn_thread("kaspec-pg-client", move || client(addr, plan, ready_tx, go_rx, stop_rx))?;
    let ready = match ready_rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Error::Other(format!("{e}; server log:\n{}", lease.server().log_tail(10)))),
        Err(_) => return Err(Error::Other("tokio-postgres client thread did not report within 15 s".into())),
    };
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(local))?;
    let expected = crate::model::nat::tcp_client_expectation(&c, nat);
    let death = crate::model::tcp::keepalive_death(&c);
    // Idle for 3 × N, or past the keep-alive's death when that comes later.
    let watch_ms = (3 * ms_of(nat)).max(death.ms + death.slack_ms + 1000);
    let until = ready.last_rx + Duration::from_millis(watch_ms);
    let _ = go_tx.send(until);
    let server_closed = watch.wait(until)?;
    let release = crate::outcome::releases(tb, local, addr);
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let t0 = ready.last_rx + nat;
    let mut timeline = vec![(ready.last_rx, "client's last segment received (TCP_INFO)".to_string())];
    if let Some(cl) = &server_closed {
        timeline.push((cl.at, format!("server socket {}", cl.state)));
    }
    let mut config = ctx.config.effective("postgres.");
    config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(nat)));
    config.insert("server.tcp_keepalives_idle".into(), "0 (kernel default, 2 h: this session)".into());
    let deadline_ms = rel_ms(t0, until).max(0) as u64;
    let facts = RunFacts { case, fault, engine: fault.engine().into(), config, t0, timeline, release };
    let results = facts.both_sides(
        client_implementation(),
        server_implementation(&program),
        Side { expected, detected_at: end.failed_at, error: end.error, deadline_ms },
        Side::from_socket(
            Expectation::not_detected("the server's keep-alive is at the kernel default (2 h) for this session: it learns nothing", case.spec),
            server_closed,
            deadline_ms,
            "server",
        ),
        &ctx.deviations,
    );
    drop(lease);
    Ok(results)
}

fn session_without_idle_timeout() -> Vec<(String, String)> {
    vec![("idle_session_timeout".into(), "0".into())]
}

/// 1.5× the longest keep-alive window of either side, at least 3 s.
fn quiet_ms(client: &TcpConfig, server: &TcpConfig) -> u64 {
    let c = crate::model::tcp::keepalive_death(&TcpConfig { keepalive: true, ..*client });
    let s = crate::model::tcp::keepalive_death(server);
    ((c.ms + c.slack_ms).max(s.ms + s.slack_ms) * 3 / 2).max(3000)
}

fn impaired_deadline(ctx: &Ctx, fault: FaultKind, longest: Duration) -> Option<u64> {
    ctx.impairment(fault).map(|i| crate::model::impaired::impaired_watch_ms(longest, &i))
}

fn run_idle(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    idle_with(ctx, case, fault, ctx.config.postgres)
}

/// An idle connection with the client's knobs `client` under `fault`; each
/// side is watched 3× its own keep-alive window (a side with keep-alive off
/// as long as a quiet side).
fn idle_with(ctx: &Ctx, case: &CaseDef, fault: FaultKind, client: PostgresConfig) -> Result<Vec<CaseResult>> {
    let c = client.tcp();
    let plan = Plan { client, session: session_without_idle_timeout(), after: After::Idle };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let death = |t: &TcpConfig| if t.keepalive { crate::model::tcp::keepalive_death(t).ms } else { 0 };
            if let Some(w) = impaired_deadline(ctx, fault, Duration::from_millis(death(&c).max(death(&s.tcp)))) {
                return (w, w);
            }
            let q = quiet_ms(&c, &s.tcp);
            (keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q), keepalive_window(&s.tcp, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q))
        },
        |r| idle_outcome(ctx, &c, &r.settings.tcp, r, spec),
    )
}

/// Both sides of an idle connection under a fault.
fn idle_outcome(ctx: &Ctx, c: &TcpConfig, s: &TcpConfig, r: &Run, spec: &str) -> Outcome {
    let fault = r.fault;
    let (client_exp, server_exp) = if let Some(i) = ctx.impairment(fault) {
        (crate::model::tcp::keepalive_on_impaired_path(c, &i, "client", spec), crate::model::tcp::keepalive_on_impaired_path(s, &i, "server", spec))
    } else if fault == FaultKind::Freeze {
        (
            Expectation::not_detected("the frozen backend's kernel still answers keep-alive probes: TCP keep-alive cannot detect a hung backend", spec),
            Expectation::not_detected("the backend is frozen; its kernel and the client's keep talking", spec),
        )
    } else {
        // Whose abort RST can pass: blackhole-up leaves server -> client open, blackhole-down client -> server.
        let to_client = (fault == FaultKind::BlackholeUp).then_some((s, r.server_idle));
        let to_server = (fault == FaultKind::BlackholeDown).then_some((c, r.client_idle));
        (keepalive_window(c, r.client_idle, to_client, fault, "client", spec), keepalive_window(s, r.server_idle, to_server, fault, "server", spec))
    };
    Outcome {
        client: Side { deadline_ms: r.client_deadline_ms, expected: client_exp, detected_at: r.end.failed_at, error: r.end.error.clone() },
        server: Side::from_socket(server_exp, r.server_closed.clone(), r.server_deadline_ms, "server"),
    }
}

fn run_server_keepalive(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    idle_with(ctx, case, fault, PostgresConfig { keepalives: false, ..ctx.config.postgres })
}

fn run_query_in_flight(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let client = ctx.config.postgres;
    let c = client.tcp();
    let plan = Plan { client, session: session_without_idle_timeout(), after: After::Query("SELECT 1".into()) };
    let spec = case.spec;
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let q = quiet_ms(&c, &s.tcp);
            let cl = crate::model::tcp::send_expectation(&c, FaultKind::Blackhole, 0, None).deadline_ms(q);
            (cl, keepalive_window(&s.tcp, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q))
        },
        |r| {
            let s = &r.settings.tcp;
            let sent = r.end.query_sent.map(|t| rel_ms(r.t0, t).max(0) as u64).unwrap_or(0);
            let client_exp = crate::model::tcp::send_expectation(&c, r.fault, sent, r.end.retrans.as_ref());
            let server_exp = match r.fault {
                FaultKind::Freeze => Expectation::not_detected("the backend is frozen; its kernel acknowledges the query", spec),
                // The query never arrives: the backend's connection is idle, its keep-alive probes die.
                f => keepalive_window(s, r.server_idle, None, f, "server (the query never arrives: idle)", spec),
            };
            let mut error = r.end.error.clone();
            if let (Some(e), Some((_, q))) = (&mut error, &r.end.query_end) {
                e.push_str(&format!("; the query: {q}"));
            }
                    Outcome {
                client: Side { deadline_ms: r.client_deadline_ms, expected: client_exp, detected_at: r.end.failed_at, error },
                server: Side::from_socket(server_exp, r.server_closed.clone(), r.server_deadline_ms, "server"),
            }
        },
    )
}

fn run_idle_session_timeout(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let client = ctx.config.postgres;
    let plan = Plan { client, session: Vec::new(), after: After::Idle };
    let spec = case.spec;
    let expect = |t: Duration, idle: u64, who: &str| {
        let t = ms_of(t);
        if t == 0 {
            return Expectation::not_detected("idle_session_timeout = 0: off, idle sessions are never ended", spec);
        }
        let d = t.saturating_sub(idle);
        Expectation::window(
            d,
            d,
            format!("{who}: the backend arms idle_session_timeout T when it sends ReadyForQuery (the client's last segment received): T − idle = {t} − {idle} = {d} ms"),
            spec,
            Level::Must,
        )
    };
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Socket,
        |s| {
            let e = expect(s.idle_session_timeout, 0, "");
            let d = e.deadline_ms(quiet_ms(&ctx.config.postgres.tcp(), &s.tcp).min(10_000));
            (d, d)
        },
        |r| {
            let t = r.settings.idle_session_timeout;
            let c = expect(t, r.client_idle, "client (FATAL 57P05, then the close)");
            let s = expect(t, r.client_idle, "server (the backend closes its socket)");
            Outcome {
                client: Side { deadline_ms: r.client_deadline_ms, expected: c, detected_at: r.end.failed_at, error: r.end.error.clone() },
                server: Side::from_socket(s, r.server_closed.clone(), r.server_deadline_ms, "server"),
            }
        },
    )
}

fn run_check_interval(ctx: &Ctx, case: &CaseDef, fault: FaultKind) -> Result<Vec<CaseResult>> {
    let client = ctx.config.postgres;
    let c = client.tcp();
    let settings = ServerSettings::load(&ctx.fixtures)?;
    let spec = case.spec;
    let backend_deadline = |s: &ServerSettings| {
        let (_, hi, _) = death_after_idle(&s.tcp, 0);
        let q = quiet_ms(&c, &s.tcp);
        (3 * (hi + ms_of(s.check_interval))).max(q)
    };
    // Longer than anything the case waits for: only a cancellation ends it early.
    let sleep_s = backend_deadline(&settings).max(keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(quiet_ms(&c, &settings.tcp))) / 1000 + 10;
    let plan = Plan { client, session: session_without_idle_timeout(), after: After::Running(format!("SELECT pg_sleep({sleep_s})")) };
    run(
        ctx,
        case,
        fault,
        plan,
        Measure::Backend,
        |s| {
            let q = quiet_ms(&c, &s.tcp);
            (keepalive_window(&c, 0, None, FaultKind::Blackhole, "", spec).deadline_ms(q), backend_deadline(s))
        },
        |r| {
            let s = &r.settings;
            let to_client = (r.fault == FaultKind::BlackholeUp).then_some((&s.tcp, r.server_idle));
            let to_server = (r.fault == FaultKind::BlackholeDown).then_some((&c, r.client_idle));
            let client_exp = keepalive_window(&c, r.client_idle, to_client, r.fault, "client (waiting for the query's result)", spec);
            let socket = keepalive_window(&s.tcp, r.server_idle, to_server, r.fault, "server socket", spec);
            let k = ms_of(s.check_interval);
            let server_exp = match (socket.min_ms, socket.max_ms) {
                (Some(lo), Some(hi)) if k > 0 => Expectation::window(
                    lo,
                    hi + k,
                    format!("the backend notices at its next check after its socket died (EPOLLRDHUP), within client_connection_check_interval {k} ms: [{lo}, {hi} + {k}] ms; {}", socket.formula),
                    spec,
                    Level::Must,
                ),
                _ if k == 0 => Expectation::not_detected(
                    "client_connection_check_interval = 0: the backend never checks while a query runs; it runs to the end of pg_sleep",
                    spec,
                ),
                _ => Expectation::not_detected(format!("the backend's socket does not die: {}", socket.formula), spec),
            };
            let socket_ms = r.server_closed.as_ref().map(|c| rel_ms(r.t0, c.at));
            let backend_ms = r.backend_end.map(|t| rel_ms(r.t0, t));
            let what = format!(
                "server socket {} at {}; backend {} exited at {}",
                r.server_closed.as_ref().map(|c| c.state.as_str()).unwrap_or("still open"),
                socket_ms.map(|v| format!("+{v} ms")).unwrap_or_else(|| "—".into()),
                r.ready.backend_pid,
                backend_ms.map(|v| format!("+{v} ms")).unwrap_or_else(|| "—".into()),
            );
            let mut error = r.end.error.clone();
            if let (Some(e), Some((_, qe))) = (&mut error, &r.end.query_end) {
                e.push_str(&format!("; the query: {qe}"));
            }
                    Outcome {
                client: Side { deadline_ms: r.client_deadline_ms, expected: client_exp, detected_at: r.end.failed_at, error },
                server: Side { deadline_ms: r.server_deadline_ms, expected: server_exp, detected_at: r.backend_end, error: Some(what) },
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_with_postgres_units() {
        let s = ServerSettings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")).unwrap();
        assert_eq!((s.tcp.idle, s.tcp.interval, s.tcp.count), (Duration::from_secs(2), Duration::from_secs(1), 3));
        assert_eq!(s.idle_session_timeout, Duration::from_millis(1500));
        assert_eq!(s.check_interval, Duration::from_millis(500));
        let t = ServerSettings::parse("tcp_keepalives_idle = 0\nidle_session_timeout = '2s'  # x\nclient_connection_check_interval='1min'\n").unwrap();
        assert_eq!((t.tcp.idle, t.tcp.count), (Duration::from_secs(7200), 9), "0 is the kernel default");
        assert_eq!((t.idle_session_timeout, t.check_interval), (Duration::from_secs(2), Duration::from_secs(60)));
        assert!(ServerSettings::parse("tcp_user_timeout = 5h").unwrap_err().contains("unit"));
    }

    fn tcp(i: u64, v: u64, n: u32, ka: bool) -> TcpConfig {
        TcpConfig { keepalive: ka, idle: Duration::from_secs(i), interval: Duration::from_secs(v), count: n, user_timeout: Duration::ZERO }
    }

    #[test]
    fn a_one_way_blackhole_lets_the_earlier_peers_rst_through() {
        let own = tcp(4, 1, 3, true);
        let peer = tcp(2, 1, 3, true);
        let alone = keepalive_window(&own, 300, None, FaultKind::Blackhole, "c", "s");
        assert_eq!(alone.min_ms, Some(7000 - 300));
        let via_peer = keepalive_window(&own, 300, Some((&peer, 300)), FaultKind::BlackholeUp, "c", "s");
        assert_eq!(via_peer.min_ms, Some(5000 - 300));
        let off = keepalive_window(&tcp(2, 1, 3, false), 300, None, FaultKind::Blackhole, "c", "s");
        assert!(!off.expects_detection());
        let reset = keepalive_window(&own, 300, None, FaultKind::Reset, "c", "s");
        assert_eq!(reset.min_ms, Some(3700));
    }
}

//! One SSH session under a fault, both sides watched: the case's server
//! started with its scratch keys, the client (ssh or russh) logged in and
//! idle, the fault on the router (or freeze/crash on the peer's process),
//! each side's last read (sock_diag, read back right after the fault is in
//! force), the server's socket watched, the client's end timestamped.

use super::*;

/// Which client a case runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ClientKind {
    OpenSsh(OpenSshOptions),
    Russh(RusshClient),
}

/// Which server, and for sshd the settings that override the fixture.
pub(crate) enum ServerChoice {
    Sshd(Vec<(&'static str, String)>),
    Russh,
}

/// Whose process `freeze` and `crash` stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    Server,
    Client,
}

pub(crate) struct Plan {
    pub(crate) client: ClientKind,
    pub(crate) server: ServerChoice,
    pub(crate) target: Target,
    /// A NAT testbed forgetting idle flows after this (t0 = its expiry).
    pub(crate) nat: Option<Duration>,
    /// net.ipv4.tcp_keepalive_{time,intvl,probes} for both hosts.
    pub(crate) sysctls: Option<crate::config::TcpConfig>,
}

/// What the judge closures read.
pub(crate) struct Run {
    pub(crate) fault: FaultKind,
    pub(crate) t0: Instant,
    pub(crate) end: ClientEnd,
    pub(crate) server_closed: Option<kaspec_harness::observe::SocketClosed>,
    /// Each side's last data read, and last segment of any kind.
    pub(crate) client_last: Instant,
    pub(crate) server_last: Instant,
    pub(crate) client_last_any: Instant,
    pub(crate) server_last_any: Instant,
    pub(crate) kind: ServerKind,
    pub(crate) server_version: String,
}

impl Run {
    pub(crate) fn client_idle(&self) -> u64 {
        rel_ms(self.client_last, self.t0).max(0) as u64
    }

    pub(crate) fn server_idle(&self) -> u64 {
        rel_ms(self.server_last, self.t0).max(0) as u64
    }

    /// The client's end in ms after t0, if it ended.
    pub(crate) fn client_end_ms(&self) -> Option<u64> {
        self.end.ended_at.map(|t| rel_ms(self.t0, t).max(0) as u64)
    }
}

/// Each side's deadline (ms after t0), from the server that runs.
pub(crate) type Deadlines<'a> = dyn Fn(&ServerKind) -> (u64, u64) + 'a;
/// Each side's expectation from what the run observed.
pub(crate) type Judge<'a> = dyn Fn(&Run) -> (Expectation, Expectation) + 'a;

fn set_keepalive_sysctls(
    host: &kaspec_harness::host::Host,
    t: crate::config::TcpConfig,
) -> Result<()> {
    host.run(move || -> std::io::Result<()> {
        std::fs::write(
            "/proc/sys/net/ipv4/tcp_keepalive_time",
            t.idle.as_secs().to_string(),
        )?;
        std::fs::write(
            "/proc/sys/net/ipv4/tcp_keepalive_intvl",
            t.interval.as_secs().to_string(),
        )?;
        std::fs::write(
            "/proc/sys/net/ipv4/tcp_keepalive_probes",
            t.count.to_string(),
        )
    })?
    .map_err(|e| {
        Error::io(
            format!("setting net.ipv4.tcp_keepalive_* in {}", host.ns),
            e,
        )
    })
}

/// When `host`'s end of the flow last received (data, or `any` segment):
/// the dump's own instant less its "since", both taken inside the namespace.
fn last_recv(
    host: &kaspec_harness::host::Host,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    any: bool,
    who: &str,
) -> Result<Instant> {
    let (d, at) = host.run(move || -> Result<(Option<Duration>, Instant)> {
        let mut diag = kaspec_harness::observe::SockDiag::new()?;
        let d = if any {
            diag.since_last_recv(local, remote)?
        } else {
            diag.since_last_data_recv(local, remote)?
        };
        Ok((d, Instant::now()))
    })??;
    d.map(|d| at - d).ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the {who}'s end of {local} <-> {remote}"
        ))
    })
}

/// Kills an sshd session process of a container on drop (SIGCONT first: it
/// may be frozen).
struct SessionGuard(u32);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGKILL);
    }
}

pub(crate) fn run(
    ctx: &Ctx,
    case: &CaseDef,
    fault: FaultKind,
    plan: Plan,
    deadlines: &Deadlines<'_>,
    judge: &Judge<'_>,
) -> Result<Vec<CaseResult>> {
    let service = service(&plan.server).unwrap_or("sshd");
    let tb = match plan.nat {
        Some(n) => ctx.testbed_with_nat(service, n)?,
        None => ctx.testbed_for(service)?,
    };
    if let Some(t) = plan.sysctls {
        set_keepalive_sysctls(&tb.client, t)?;
        set_keepalive_sysctls(&tb.server, t)?;
    }
    let scratch = Scratch::new(&tb)?;
    let server = match &plan.server {
        ServerChoice::Sshd(overrides) => start_sshd(ctx, &tb, &scratch, overrides)?,
        ServerChoice::Russh => start_russh_server(ctx, &tb, &scratch)?,
    };
    let addr = server.addr;
    // Past the login's own exchanges (sshd's hostkeys-00@openssh.com
    // request, the first alive round).
    let settle = Duration::from_millis(SETTLE_MS);
    let client_impl = match plan.client {
        ClientKind::OpenSsh(_) => openssh_client_implementation(),
        ClientKind::Russh(_) => russh_implementation(),
    };
    let started = match plan.client {
        ClientKind::OpenSsh(o) => start_openssh(&tb, &scratch, addr, &o, settle),
        ClientKind::Russh(r) => start_russh(&tb, &scratch, addr, r, settle),
    }
    .map_err(|e| Error::Other(format!("{e}; server log:\n{}", server.server.log_tail(10))))?;
    let local = started.local;
    let seen = tb.seen_by_server(local);
    let session = server.session_pid(addr, seen);
    // On the docker testbed the container's sshd outlives the case: the
    // session it forked for this connection goes with the case (a silent
    // server would keep it, and a frozen one stopped, forever).
    let _session_guard =
        (tb.is_docker() && session != server.server.pid()).then(|| SessionGuard(session));
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    let (client_deadline_ms, server_deadline_ms) = deadlines(&server.kind);
    // What the server logs from here on is about this session (the
    // readiness check's connection ended long before).
    let log_from = std::fs::metadata(&server.server.log).map_or(0, |m| m.len());
    // Each side's "since" is anchored on its own dump's instant (entering
    // the namespace comes first and can take tens of ms on a loaded
    // machine: one instant for both would place a read too early).
    let read = |any: bool| -> Result<(Instant, Instant)> {
        Ok((
            last_recv(&tb.client, local, addr, any, "client")?,
            last_recv(&tb.server, addr, seen, any, "server")?,
        ))
    };
    let (t0, engine, commit_ms, lasts, lasts_any) = if let Some(n) = plan.nat {
        // The mapping expires N after the flow's last packet (either way).
        let (c, s) = read(true)?;
        let t0 = c.max(s) + n;
        (
            t0,
            fault.engine().to_string(),
            crate::model::linux::jiffy_ms(),
            Some(read(false)?),
            (c, s),
        )
    } else {
        let pid = match plan.target {
            Target::Server => Some(session),
            Target::Client => started.pid.or(Some(session)),
        };
        let applied = tb.apply_fault(
            fault,
            &Flow {
                client: local,
                server: addr,
            },
            pid,
        )?;
        let lasts = read(false)?;
        let any = read(true)?;
        (
            applied.in_force_at,
            applied.engine.clone(),
            crate::outcome::commit_ms(&applied),
            Some(lasts),
            any,
        )
    };
    if plan.nat.is_some() {
        // Wait for the expiry before reading what came last.
        std::thread::sleep(t0.saturating_duration_since(Instant::now()));
    }
    let (client_last, server_last) = match lasts {
        Some(l) => l,
        None => lasts_any,
    };
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let client_deadline = t0 + Duration::from_millis(client_deadline_ms);
    while Instant::now() < client_deadline && !started.is_done() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let release = crate::outcome::releases(&tb, local, addr);
    let mut end = started.stop()?;
    drive::client::not_after(&mut end.ended_at, &mut end.error, client_deadline);
    let version = server.implementation.version.clone();
    // kaspec-ssh logs its own wake-up lateness with the session's end
    // (peers/ssh.rs); sshd's is not known.
    let server_wake = match (&server.kind, &server_closed) {
        (ServerKind::Russh(_), Some(_)) => {
            crate::peers::logged_wake_ms(&server.server.log, log_from, "session ended:")
        }
        _ => None,
    };
    let r = Run {
        fault,
        t0,
        end,
        server_closed,
        client_last,
        server_last,
        client_last_any: lasts_any.0,
        server_last_any: lasts_any.1,
        kind: server.kind,
        server_version: version,
    };
    let (client_exp, server_exp) = judge(&r);
    let mut timeline = vec![
        (
            r.client_last,
            "client's last data received (TCP_INFO tcpi_last_data_recv)".to_string(),
        ),
        (
            r.server_last,
            "server's last data received (TCP_INFO tcpi_last_data_recv)".to_string(),
        ),
    ];
    timeline.extend(
        r.end
            .events
            .iter()
            .filter(|(t, _)| *t >= r.t0 - Duration::from_secs(1))
            .cloned(),
    );
    if let Some(c) = &r.server_closed {
        timeline.push((c.at, format!("server socket {}", c.state)));
    }
    let mut config = ctx.config.effective("ssh.");
    match plan.client {
        ClientKind::OpenSsh(o) => config.extend(o.report()),
        ClientKind::Russh(c) => config.extend(c.report()),
    }
    config.extend(r.kind.report());
    if let Some(n) = plan.nat {
        config.insert("network.nat_idle_timeout".into(), format!("{}ms", ms_of(n)));
    }
    if plan.sysctls.is_some() {
        config.extend(ctx.config.effective("tcp."));
    }
    let release = if plan.nat.is_some() {
        crate::outcome::Releases {
            client: None,
            ..release
        }
    } else {
        release
    };
    let facts = RunFacts {
        case,
        fault,
        engine,
        commit_ms,
        config,
        t0,
        timeline,
        release,
    };
    let client = Side::library(
        client_exp,
        r.end.ended_at,
        r.end.error.clone(),
        client_deadline_ms,
    );
    let server_side = Side::from_socket(
        server_exp,
        r.server_closed.clone(),
        server_deadline_ms,
        "server",
    )
    .with_process_wake(server_wake);
    let results = facts.both_sides(
        client_impl,
        server.implementation.clone(),
        client,
        server_side,
        &ctx.judging(),
    )?;
    drop(server);
    drop(scratch);
    Ok(results)
}

/// Waited after the login before the fault.
pub const SETTLE_MS: u64 = 1500;

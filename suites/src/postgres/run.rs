//! One PostgreSQL connection under a fault, both sides watched: the shared
//! server's lease, the client thread, the backend's exit, the deadlines.

use super::*;

/// Watches a process (a backend) from the root namespace: when it exited.
pub(crate) struct ProcWatch(
    std::thread::JoinHandle<Option<Instant>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

impl ProcWatch {
    fn start(pid: i32) -> ProcWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let gone = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|st| {
                        st.rsplit(')')
                            .next()
                            .is_some_and(|r| r.trim_start().starts_with('Z'))
                    })
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
pub(crate) enum Measure {
    /// The server side is its socket.
    Socket,
    /// The server side is the backend's exit (its socket's death in the timeline).
    Backend,
}

pub(crate) struct Outcome {
    pub(crate) client: Side,
    pub(crate) server: Side,
}

pub(crate) struct Run {
    pub(crate) fault: FaultKind,
    pub(crate) t0: Instant,
    pub(crate) engine: String,
    pub(crate) commit_ms: u64,
    pub(crate) ready: Ready,
    /// ms before t0 since each side last received a segment.
    pub(crate) client_idle: u64,
    pub(crate) server_idle: u64,
    pub(crate) end: ClientEnd,
    pub(crate) server_closed: Option<kaspec_harness::observe::SocketClosed>,
    pub(crate) backend_end: Option<Instant>,
    pub(crate) server_impl: Implementation,
    pub(crate) settings: ServerSettings,
    /// How long each side was watched after t0.
    pub(crate) client_deadline_ms: u64,
    pub(crate) server_deadline_ms: u64,
}

/// The run's shared PostgreSQL (started on first use).
pub(crate) fn lease(ctx: &Ctx) -> Result<crate::shared::Lease<'_>> {
    ctx.shared.lease_in(
        &ctx.shared_bed("postgres"),
        "postgres",
        || ctx.testbed_for("postgres"),
        |tb| start_server(tb, &ctx.fixtures, SHARED_CONNECTIONS),
    )
}

/// Runs one connection under `fault`: `deadlines` gives (client, server)
/// deadlines in ms after t0 from the settings; `judge` the expectations
/// from what was measured.
pub(crate) fn run(
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
    let lease = lease(ctx)?;
    let tb = lease.testbed();
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let (client_deadline_ms, server_deadline_ms) = deadlines(&settings);

    let client_cfg = plan.client;
    let ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    } = start_client(&lease, addr, plan)?;
    let local = SocketAddrV4::new(tb.client.addr, ready.local.port());
    let seen = tb.seen_by_server(local);
    let watch = SocketWatch::start(&tb.server, addr, seen)?;
    // The client's end, watched so that the release snapshot is taken once
    // the client has noticed (or its deadline passed), not before.
    let client_watch = SocketWatch::start(&tb.client, local, addr)?;
    // pg_backend_pid() is the container's pid on the docker testbed.
    let backend_pid = match tb.docker_path() {
        None => ready.backend_pid,
        Some(_) => {
            kaspec_harness::testbed::compose::host_pid(lease.server().pid(), ready.backend_pid)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "backend {} of the postgres container not found in /proc",
                        ready.backend_pid
                    ))
                })? as i32
        }
    };
    let backend = ProcWatch::start(backend_pid);
    // A busy client queries on a grid: the path fails between two queries,
    // once the previous answer's delayed ACK is out.
    if let Some(origin) = ready.origin {
        let at = origin + BUSY_FAULT_AFTER;
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }
    let server_last_rx = last_recv_at(&tb.server, addr, seen)?.ok_or_else(|| {
        Error::Other(format!(
            "no TCP_INFO for the server's end of {local} <-> {addr}"
        ))
    })?;
    let pid = match fault {
        FaultKind::Freeze => Some(backend_pid as u32),
        _ => Some(lease.server().pid()),
    };
    let applied = tb.apply_fault(
        fault,
        &Flow {
            client: local,
            server: addr,
        },
        pid,
    )?;
    let t0 = applied.in_force_at;
    let _ = go_tx.send(Go {
        deadline: t0 + Duration::from_millis(client_deadline_ms),
        fault,
    });
    let server_closed = watch.wait(t0 + Duration::from_millis(server_deadline_ms))?;
    let backend_end = backend.wait(match (measure, &server_closed) {
        (Measure::Backend, _) => t0 + Duration::from_millis(server_deadline_ms),
        // The socket closed: the backend is on its way out (it closes its
        // socket as it exits, before it is a zombie); give the 5 ms poller
        // the time to see it gone — a CI run under load missed it.
        (Measure::Socket, Some(_)) => Instant::now() + Duration::from_millis(1000),
        (Measure::Socket, None) => Instant::now(),
    });
    // The second axis, after the client noticed (or its deadline passed)
    // and before it is told to close: a snapshot taken earlier would find a
    // client still waiting for its own probe.
    let _ = client_watch.wait(t0 + Duration::from_millis(client_deadline_ms))?;
    let release = crate::outcome::releases(tb, local, addr);
    // The client stops at its own deadline (or failure), then closes once told.
    let _ = stop_tx.send(());
    let end = thread.join()?;
    let r = Run {
        fault,
        t0,
        engine: applied.engine.clone(),
        commit_ms: crate::outcome::commit_ms(&applied),
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
        (
            r.ready.last_rx,
            "client's last segment received (TCP_INFO)".to_string(),
        ),
        (
            server_last_rx,
            "server's last segment received (TCP_INFO)".to_string(),
        ),
    ];
    if let Some(t) = r.end.stalled_at {
        timeline.push((
            t,
            "client application stalled (its runtime's thread blocked)".to_string(),
        ));
    }
    if let Some(q) = r.end.busy.iter().filter(|q| q.sent < t0).last() {
        timeline.push((
            q.sent,
            format!(
                "client's last query before the fault ({} sent in all)",
                r.end.busy.len()
            ),
        ));
    }
    if let Some(t) = r.end.query_sent {
        let state = r
            .end
            .retrans
            .map(|s| format!(" (rto {} ms, srtt {} µs)", s.rto_us / 1000, s.srtt_us))
            .unwrap_or_default();
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
    if r.ready.origin.is_some() {
        config.insert(
            "client.query_period".into(),
            format!("{}ms", ms_of(BUSY_PERIOD)),
        );
    }
    config.extend(r.settings.report());
    if let Some(e) = crate::outcome::impairment_event(&tb)? {
        timeline.push(e);
    }
    let facts = RunFacts {
        case,
        fault,
        engine: r.engine.clone(),
        commit_ms: r.commit_ms,
        config,
        t0,
        timeline,
        release,
    };
    let results = facts.both_sides(
        client_implementation(),
        r.server_impl.clone(),
        out.client,
        out.server,
        &ctx.judging(),
    )?;
    drop(lease);
    Ok(results)
}

pub(crate) fn session_without_idle_timeout() -> Vec<(String, String)> {
    vec![("idle_session_timeout".into(), "0".into())]
}

/// 1.5× the longest keep-alive window of either side, at least 3 s.
pub(crate) fn quiet_ms(client: &TcpConfig, server: &TcpConfig) -> u64 {
    let c = crate::model::tcp::keepalive_death(&TcpConfig {
        keepalive: true,
        ..*client
    });
    let s = crate::model::tcp::keepalive_death(server);
    ((c.ms + c.slack_ms).max(s.ms + s.slack_ms) * 3 / 2).max(3000)
}

pub(crate) fn impaired_deadline(ctx: &Ctx, fault: FaultKind, longest: Duration) -> Option<u64> {
    ctx.impairment(fault)
        .map(|i| crate::model::impaired::impaired_watch_ms(longest, &i))
}

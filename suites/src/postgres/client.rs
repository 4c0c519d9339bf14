//! The tokio-postgres client driver in the client host: connect with the
//! configured conninfo, read back what the socket really has, then idle or
//! run a query until the connection fails or the case stops it.

use super::*;

/// What the client does once the fault is in force.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum After {
    /// Stay idle.
    Idle,
    /// Send this query at once (it is in flight on a dead path).
    Query(String),
    /// This query was sent before the fault and is still running.
    Running(String),
    /// Busy: this query every [`BUSY_PERIOD`] on a grid (from `Ready::origin`),
    /// each awaited before the next, at most [`BUSY_MAX_QUERIES`], until one
    /// fails or the client ends.
    Busy(String),
}

/// The busy client's query period and bound.
pub(crate) const BUSY_PERIOD: Duration = Duration::from_millis(100);
pub(crate) const BUSY_MAX_QUERIES: u32 = 600;

/// One query of the busy client: when it was sent, the socket's
/// retransmission state just before, and when its result came.
#[derive(Debug, Clone)]
pub(crate) struct BusyQuery {
    pub(crate) sent: Instant,
    pub(crate) retrans: Option<linux::RetransState>,
    pub(crate) answered: Option<Instant>,
}

pub(crate) struct Plan {
    pub(crate) client: PostgresConfig,
    /// `-c name=value` for the session.
    pub(crate) session: Vec<(String, String)>,
    pub(crate) after: After,
}

pub(crate) struct Ready {
    pub(crate) backend_pid: i32,
    pub(crate) local: SocketAddrV4,
    /// The client socket's last received segment (its TCP_INFO).
    pub(crate) last_rx: Instant,
    /// What tokio-postgres set on the socket, read back with getsockopt.
    pub(crate) sockopts: String,
    /// Busy: the instant of the first query of the grid.
    pub(crate) origin: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct ClientEnd {
    pub(crate) failed_at: Option<Instant>,
    pub(crate) error: Option<String>,
    pub(crate) query_sent: Option<Instant>,
    pub(crate) query_end: Option<(Instant, String)>,
    pub(crate) retrans: Option<linux::RetransState>,
    /// When the application stalled (fault `client-stall`).
    pub(crate) stalled_at: Option<Instant>,
    /// Busy: every query sent.
    pub(crate) busy: Vec<BusyQuery>,
}

/// What the client is told at t0: until when it watches its connection,
/// and the client's own situation, if any (`client-stall`: it blocks its
/// current-thread runtime's only thread until stopped, so neither its
/// code nor tokio-postgres's Connection task is polled, while its kernel
/// stays up; `client-crash`: client and Connection are dropped at once,
/// behind the blackhole).
pub(crate) struct Go {
    pub(crate) deadline: Instant,
    pub(crate) fault: FaultKind,
}

/// The message and every source of a tokio-postgres error on one line,
/// with the SQLSTATE and the io::ErrorKind where there are.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let mut s = format!("tokio_postgres::Error: {e}");
    if let Some(db) = e.as_db_error() {
        s += &format!(
            " [{} {}: {}]",
            db.severity(),
            db.code().code(),
            db.message()
        );
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
pub(crate) fn find_socket(local_port: u16, server: SocketAddrV4) -> Option<i32> {
    crate::drive::sockopts::own_socket(local_port, server)
}

pub(crate) fn sockopts(fd: i32) -> String {
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&bfd);
    let secs = |d: std::io::Result<Duration>| {
        d.map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "SO_KEEPALIVE={} TCP_KEEPIDLE={} TCP_KEEPINTVL={} TCP_KEEPCNT={} TCP_USER_TIMEOUT={}",
        sock.keepalive()
            .map(|b| b.to_string())
            .unwrap_or_else(|_| "?".into()),
        secs(sock.keepalive_time()),
        secs(sock.keepalive_interval()),
        sock.keepalive_retries()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into()),
        sock.tcp_user_timeout()
            .map(|u| format!("{}ms", u.map(ms_of).unwrap_or(0)))
            .unwrap_or_else(|_| "?".into()),
    )
}

/// Time since the socket last received a segment (TCP_INFO), as Linux's
/// keep-alive timer counts it.
pub(crate) fn since_rx(fd: i32) -> Option<Duration> {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then(|| {
        Duration::from_millis(info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv) as u64)
    })
}

/// tokio-postgres's `Config` for one connection to `server`: the client's
/// keep-alive knobs (tokio-postgres sets them on its socket itself,
/// connect_socket.rs) and the session's `-c` settings.
pub(crate) fn connect_config(
    server: SocketAddrV4,
    p: &PostgresConfig,
    session: &[(String, String)],
) -> tokio_postgres::Config {
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
    if !session.is_empty() {
        cfg.options(
            session
                .iter()
                .map(|(k, v)| format!("-c {k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    cfg
}

/// The client: connect with `plan`, learn the backend's pid and the local
/// port, settle (so the peer's delayed ACK is out: a blackhole must not
/// strand unacknowledged data), report ready, wait for the go, then act and
/// wait for the Connection future until the deadline; keep the connection
/// open until `stop`.
pub(crate) fn client(
    server: SocketAddrV4,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::oneshot::Receiver<Go>,
    stop: mpsc::Receiver<()>,
) -> ClientEnd {
    let stop_ref = &stop;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let kept = rt.block_on(async move {
        let cfg = connect_config(server, &plan.client, &plan.session);
        let fail = |e: String| {
            let _ = ready.send(Err(e));
            Err(ClientEnd::default())
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
        let log: std::sync::Arc<std::sync::Mutex<Vec<BusyQuery>>> = Default::default();
        let mut origin = None;
        if let After::Busy(sql) = &plan.after {
            let o = now + BUSY_PERIOD;
            origin = Some(o);
            let (c, sql, log) = (client.clone(), sql.clone(), log.clone());
            running = Some(tokio::spawn(async move { busy(c, fd, o, &sql, log).await }));
        }
        let _ = ready.send(Ok(Ready { backend_pid, local, last_rx, sockopts: sockopts(fd), origin }));
        let Ok(Go { deadline, fault }) = go.await else { return Ok((client, end)) };
        match fault {
            FaultKind::ClientCrash => return Err(end),
            FaultKind::ClientStall => {
                end.stalled_at = Some(Instant::now());
                // Blocks the runtime's thread until the case stops it.
                let _ = stop_ref.recv();
                return Err(end);
            }
            _ => {}
        }
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
        end.busy = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Busy: the query the path swallowed is the one in flight.
        if let Some(q) = end.busy.iter().find(|q| q.answered.is_none()) {
            end.query_sent = Some(q.sent);
            end.retrans = q.retrans;
        }
        Ok((client, end))
    });
    // Failed to set up, crashed (dropped with the runtime), or stalled
    // until stopped: nothing more to wait for.
    let (client, end) = match kept {
        Ok(k) => k,
        Err(end) => return end,
    };
    // Closed only after the server side was watched: the client's clean
    // close must not pass for the server's detection.
    let _ = stop.recv();
    drop(client);
    end
}

/// The busy client's loop (After::Busy): `sql` on the grid from `origin`,
/// each query's send and answer logged; ends at the first failure (its
/// instant and error) or after [`BUSY_MAX_QUERIES`].
async fn busy(
    c: std::sync::Arc<tokio_postgres::Client>,
    fd: i32,
    origin: Instant,
    sql: &str,
    log: std::sync::Arc<std::sync::Mutex<Vec<BusyQuery>>>,
) -> (Instant, String) {
    let lock = || log.lock().unwrap_or_else(|p| p.into_inner());
    let mut tick = tokio::time::interval_at(origin.into(), BUSY_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..BUSY_MAX_QUERIES {
        tick.tick().await;
        let retrans = linux::RetransState::read(fd).ok();
        let sent = Instant::now();
        let i = {
            let mut l = lock();
            l.push(BusyQuery {
                sent,
                retrans,
                answered: None,
            });
            l.len() - 1
        };
        match c.simple_query(sql).await {
            Ok(_) => lock()[i].answered = Some(Instant::now()),
            Err(e) => return (Instant::now(), format!("query failed: {}", describe(&e))),
        }
    }
    (
        Instant::now(),
        format!("{BUSY_MAX_QUERIES} queries answered"),
    )
}

/// A query run on its own task: when it ended, and how.
pub(crate) struct QueryClient(std::sync::Arc<tokio_postgres::Client>);

pub(crate) trait CloneForQuery {
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
        (
            Instant::now(),
            r.map(|_| "query completed".to_string())
                .unwrap_or_else(|e| format!("query failed: {}", describe(&e))),
        )
    }
}

/// The client thread, what it reported, and the senders that let it go and stop it.
pub(crate) struct ClientStarted {
    pub(crate) thread: kaspec_harness::host::NsThread<ClientEnd>,
    pub(crate) ready: Ready,
    pub(crate) go_tx: tokio::sync::oneshot::Sender<Go>,
    pub(crate) stop_tx: mpsc::Sender<()>,
}

/// Starts tokio-postgres in the client host of `lease`'s testbed against
/// `addr`; a connection that fails is an error with the server's log tail.
pub(crate) fn start_client(
    lease: &crate::shared::Lease<'_>,
    addr: SocketAddrV4,
    plan: Plan,
) -> Result<ClientStarted> {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let (thread, ready) = drive::client::start(
        &lease.testbed().client,
        "kaspec-pg-client",
        "tokio-postgres client",
        Duration::from_secs(15),
        move |ready_tx| client(addr, plan, ready_tx, go_rx, stop_rx),
    )?;
    let ready = ready
        .map_err(|e| Error::Other(format!("{e}; server log:\n{}", lease.server().log_tail(10))))?;
    Ok(ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    })
}

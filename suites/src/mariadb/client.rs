//! The mysql_async client in the client host: one `Conn` built from the
//! `mariadb.*` knobs (the `mariadb.url` as given, kaspec's server, user and
//! keep-alive on top), the case's session statements, one `SELECT 1` as the
//! last command before the idle period, then idle — or one more query at a
//! planned time, or once its own socket has died — until the case stops it.
//!
//! mysql_async 0.37 reads its socket only while a command is in flight: an
//! idle `Conn` notices nothing by itself, so the client's detection is a
//! failed query, or (keep-alive cases) its socket's death in the kernel.

use super::*;

/// What the client does once the fault is in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum After {
    Idle,
    /// `SELECT 1` this many ms after the last command before the fault.
    QueryAfterLast(u64),
    /// `SELECT 1` this many ms after the go.
    QueryAfterGo(u64),
    /// `SELECT 1` once the socket has left ESTABLISHED (TCP_INFO), to see
    /// what the application gets.
    QueryWhenDead,
}

pub(crate) struct Plan {
    pub(crate) cfg: MariadbConfig,
    /// Statements run right after connecting (e.g. the session's wait_timeout).
    pub(crate) session: Vec<String>,
    /// Through a `Pool` (one connection at most): back to the pool after the
    /// last command, checked out again for the next query.
    pub(crate) pooled: bool,
    pub(crate) after: After,
}

pub(crate) struct Ready {
    pub(crate) local: SocketAddrV4,
    /// The client socket's last received segment (TCP_INFO).
    pub(crate) last_rx: Instant,
    /// The last command before the idle period: sent, and its reply read.
    pub(crate) last_cmd: Instant,
    pub(crate) last_reply: Instant,
    /// What those two instants are.
    pub(crate) anchor: String,
    /// The TTL mysql_async holds the connection to: conn_ttl, or the
    /// session's @@wait_timeout it read (Conn::expired).
    pub(crate) ttl: Duration,
    /// The server's connection id and what it says of the session.
    pub(crate) conn_id: u32,
    pub(crate) session: String,
    /// The options mysql_async left on its socket, read back.
    pub(crate) tcp: TcpConfig,
}

#[derive(Default)]
pub(crate) struct ClientEnd {
    pub(crate) query_sent: Option<Instant>,
    pub(crate) query_end: Option<(Instant, std::result::Result<String, String>)>,
    /// Pooled: the connection id the next checkout gave.
    pub(crate) conn_after: Option<u32>,
}

impl ClientEnd {
    /// The failed query: when, and what mysql_async said.
    pub(crate) fn failure(&self) -> (Option<Instant>, Option<String>) {
        match &self.query_end {
            Some((t, Err(e))) => (Some(*t), Some(format!("the query failed: {e}"))),
            _ => (None, None),
        }
    }

    pub(crate) fn query_text(&self) -> Option<String> {
        self.query_end.as_ref().map(|(_, r)| match r {
            Ok(v) => format!("the query returned {v}"),
            Err(e) => format!("the query failed: {e}"),
        })
    }
}

/// A mysql_async error with its code and message as the application sees them.
pub(crate) fn error_text(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("server error {} ({}): {}", s.code, s.state, s.message),
        mysql_async::Error::Io(io) => format!("io error: {io} [{io:?}]"),
        mysql_async::Error::Driver(d) => format!("driver error: {d} [{d:?}]"),
        other => format!("{other} [{other:?}]"),
    }
}

/// A pool of exactly one connection with `o`'s other options.
fn pool_opts(o: mysql_async::Opts) -> mysql_async::Opts {
    // min 1: with inactive_connection_ttl 0 the pool keeps `min` idle connections (PoolOpts::active_bound).
    let constraints = mysql_async::PoolConstraints::new(1, 1).expect("1 <= 1");
    let p = o.pool_opts().clone().with_constraints(constraints);
    mysql_async::OptsBuilder::from_opts(o).pool_opts(p).into()
}

/// The connection's options: the URL's, then kaspec's server and user, and
/// the knobs (`tcp_keepalive` and `conn_ttl` as the config holds them).
pub(crate) fn opts(cfg: &MariadbConfig, server: SocketAddrV4) -> std::result::Result<mysql_async::Opts, String> {
    let base = if cfg.url.is_empty() { mysql_async::Opts::default() } else { mysql_async::Opts::from_url(&cfg.url).map_err(|e| format!("mariadb.url: {e}"))? };
    let some = |d: Duration| (!d.is_zero()).then_some(d);
    Ok(mysql_async::OptsBuilder::from_opts(base)
        .ip_or_hostname(server.ip().to_string())
        .tcp_port(server.port())
        .user(Some("kaspec"))
        .pass(None::<String>)
        .db_name(None::<String>)
        .prefer_socket(false)
        .tcp_keepalive(some(cfg.tcp_keepalive))
        .conn_ttl(some(cfg.conn_ttl))
        .into())
}

async fn select_1(con: &mut mysql_async::Conn) -> std::result::Result<String, String> {
    use mysql_async::prelude::Queryable;
    con.query_first::<u32, _>("SELECT 1").await.map(|v| format!("{v:?}")).map_err(|e| error_text(&e))
}

/// The client body (see the module doc). Keeps the connection until `stop`.
pub(crate) fn client(
    server: SocketAddrV4,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::oneshot::Receiver<Instant>,
    stop: mpsc::Receiver<()>,
) -> ClientEnd {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let kept = rt.block_on(async move {
        let fail = |e: String| {
            let _ = ready.send(Err(e));
            None
        };
        let o = match opts(&plan.cfg, server) {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        // Pooled: one connection at most, so the next checkout is this one or a new one.
        let pool = plan.pooled.then(|| mysql_async::Pool::new(pool_opts(o.clone())));
        let first = async {
            match &pool {
                Some(p) => p.get_conn().await,
                None => mysql_async::Conn::new(o).await,
            }
        };
        let mut con = match tokio::time::timeout(Duration::from_secs(10), first).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return fail(format!("mysql_async could not connect to {server}: {}", error_text(&e))),
            Err(_) => return fail(format!("mysql_async: no connection to {server} within 10 s")),
        };
        for s in &plan.session {
            if let Err(e) = con.query_drop(s.as_str()).await {
                return fail(format!("{s}: {}", error_text(&e)));
            }
        }
        // PROCESSLIST's HOST is `ip:port`: the client's own port.
        let row: Option<(String, u64, u64)> =
            match con.query_first("SELECT HOST, @@SESSION.wait_timeout, @@SESSION.interactive_timeout FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()").await {
                Ok(r) => r,
                Err(e) => return fail(format!("reading PROCESSLIST: {}", error_text(&e))),
            };
        let Some((host, wt, it)) = row else { return fail("no PROCESSLIST row for this connection".into()) };
        let Some(port) = host.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else { return fail(format!("no port in PROCESSLIST HOST {host}")) };
        let Some(fd) = crate::drive::sockopts::own_socket(port, server) else { return fail(format!("no socket with local port {port} towards {server} in this process")) };
        let conn_id = con.id();
        let mut last_cmd = Instant::now();
        if let Err(e) = select_1(&mut con).await {
            return fail(format!("the first SELECT 1 failed: {e}"));
        }
        let mut last_reply = Instant::now();
        let mut anchor = "the last SELECT 1 sent / its reply read".to_string();
        let mut held = Some(con);
        if pool.is_some() {
            // Back to the pool: its recycler may reset the connection
            // (COM_RESET_CONNECTION), the last exchange before the idle period.
            drop(held.take());
        }
        // Let the recycler and the server's delayed ACK finish before the path may fail.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = Instant::now();
        let st = crate::drive::sockopts::own_state(fd);
        if pool.is_some() {
            // TCP_INFO's last_data_recv counts whole jiffies: ± one.
            let j = Duration::from_millis(crate::model::linux::jiffy_ms());
            let rx = now - st.since_data_rx;
            (last_cmd, last_reply) = (rx - j, rx + j);
            anchor = format!("the pool's last exchange (the recycler's), its reply received {} ms before the fault ± 1 jiffy ({} ms, TCP_INFO)", st.since_data_rx.as_millis(), j.as_millis());
        }
        let ttl = if plan.cfg.conn_ttl.is_zero() { Duration::from_secs(wt) } else { plan.cfg.conn_ttl };
        let session = format!("wait_timeout={wt}s interactive_timeout={it}s (session, as the server applies them)");
        let _ = ready.send(Ok(Ready { local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port), last_rx: now - st.since_rx, last_cmd, last_reply, anchor, conn_id, session, ttl, tcp: st.tcp }));
        let mut end = ClientEnd::default();
        let Ok(deadline) = go.await else { return Some((pool, held, end)) };
        let go_at = Instant::now();
        let at = match plan.after {
            After::Idle => None,
            After::QueryAfterLast(ms) => Some(last_cmd + Duration::from_millis(ms)),
            After::QueryAfterGo(ms) => Some(go_at + Duration::from_millis(ms)),
            After::QueryWhenDead => loop {
                if Instant::now() >= deadline {
                    break None;
                }
                if crate::drive::sockopts::own_state(fd).state != 1 {
                    break Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            },
        };
        if let Some(at) = at.filter(|t| *t < deadline) {
            tokio::time::sleep_until(at.into()).await;
            end.query_sent = Some(Instant::now());
            if let Some(p) = &pool {
                match tokio::time::timeout_at(deadline.into(), p.get_conn()).await {
                    Ok(Ok(c)) => {
                        end.conn_after = Some(c.id());
                        held = Some(c);
                    }
                    Ok(Err(e)) => end.query_end = Some((Instant::now(), Err(format!("Pool::get_conn: {}", error_text(&e))))),
                    Err(_) => {}
                }
            }
            if let Some(c) = held.as_mut() {
                if let Ok(r) = tokio::time::timeout_at(deadline.into(), select_1(c)).await {
                    end.query_end = Some((Instant::now(), r));
                }
            }
        } else {
            tokio::time::sleep_until(deadline.into()).await;
        }
        Some((pool, held, end))
    });
    let Some((pool, con, end)) = kept else { return ClientEnd::default() };
    // Closed only after the server side was watched; a query may still be
    // pending on a dead path, so the connection is dropped, not disconnected.
    let _ = stop.recv();
    let entered = rt.enter();
    drop(con);
    drop(pool);
    drop(entered);
    end
}

/// The client thread, what it reported, and the senders that let it go and stop it.
pub(crate) struct ClientStarted {
    pub(crate) thread: kaspec_harness::host::NsThread<ClientEnd>,
    pub(crate) ready: Ready,
    pub(crate) go_tx: tokio::sync::oneshot::Sender<Instant>,
    pub(crate) stop_tx: mpsc::Sender<()>,
}

pub(crate) fn start_client(tb: &Testbed, server: SocketAddrV4, log: String, plan: Plan) -> Result<ClientStarted> {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let (thread, ready) = drive::client::start_or_fail(&tb.client, "kaspec-mariadb-client", "mysql_async client", Duration::from_secs(20), format!("mysql_async client; server log:\n{log}"), move |ready_tx| {
        client(server, plan, ready_tx, go_rx, stop_rx)
    })?;
    Ok(ClientStarted { thread, ready, go_tx, stop_tx })
}

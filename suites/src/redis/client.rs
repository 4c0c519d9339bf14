//! The redis-rs client in the client host: a multiplexed async connection
//! over RESP3 (so its driver's `PushKind::Disconnection` reaches us), one
//! PING as the last command before the case's idle period, then idle — or
//! one more PING a while after the fault — until the connection is declared
//! dead or the case stops it.

use super::*;

/// What the client does once the fault is in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum After {
    Idle,
    /// A PING this many ms after the go.
    Command(u64),
}

pub(crate) struct Plan {
    /// Zero: none.
    pub(crate) response_timeout: Duration,
    /// Send the last command at a wall-clock second + 500 ms, so that
    /// Redis's whole-second idle arithmetic is known to the millisecond.
    pub(crate) align_last_command: bool,
    /// After the PING, a `BLPOP` on a key nobody pushes to, with no timeout
    /// (`0`): the connection's last command blocks the client in the server.
    pub(crate) block: bool,
    /// The client socket's options, given to redis-rs as its `TcpSettings`.
    pub(crate) tcp: TcpConfig,
    pub(crate) after: After,
}

/// redis-rs's `TcpSettings` for `t` (io/tcp.rs `stream_with_settings` sets
/// them on the socket before the connection is used): keep-alive only when
/// asked, as the crate does.
fn tcp_settings(t: &TcpConfig) -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    let mut s = redis::io::tcp::TcpSettings::default();
    if t.keepalive {
        s = s.set_keepalive(
            TcpKeepalive::new()
                .with_time(t.idle)
                .with_interval(t.interval)
                .with_retries(t.count),
        );
    }
    if !t.user_timeout.is_zero() {
        s = s.set_user_timeout(t.user_timeout);
    }
    s
}

pub(crate) struct Ready {
    pub(crate) local: SocketAddrV4,
    /// The client socket's last received segment (TCP_INFO).
    pub(crate) last_rx: Instant,
    /// When the last command before the idle period was sent, and the wall
    /// clock then (ms since the epoch).
    pub(crate) last_cmd: Instant,
    pub(crate) last_cmd_wall_ms: u64,
    /// The options redis-rs left on its socket, read back.
    pub(crate) tcp: TcpConfig,
}

#[derive(Default)]
pub(crate) struct ClientEnd {
    /// The driver's `PushKind::Disconnection`.
    pub(crate) disconnected_at: Option<Instant>,
    pub(crate) command_sent: Option<Instant>,
    pub(crate) command_end: Option<(Instant, std::result::Result<String, String>)>,
    /// What a command sent after the disconnection got.
    pub(crate) next_command: Option<String>,
}

impl ClientEnd {
    /// The client's detection: the disconnection push or a failed command,
    /// whichever came first, with what it said.
    pub(crate) fn detection(&self) -> (Option<Instant>, Option<String>) {
        let failed = self.command_end.as_ref().and_then(|(t, r)| {
            r.as_ref()
                .err()
                .map(|e| (*t, format!("the PING failed: {e}")))
        });
        let disc = self.disconnected_at.map(|t| {
            (
                t,
                "redis-rs driver: PushKind::Disconnection (the connection's read side ended)"
                    .to_string(),
            )
        });
        let mut all: Vec<(Instant, String)> = failed.into_iter().chain(disc).collect();
        all.sort_by_key(|(t, _)| *t);
        let Some((t, _)) = all.first() else {
            return (None, None);
        };
        let mut text = all
            .iter()
            .map(|(_, w)| w.clone())
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(n) = &self.next_command {
            text += &format!("; the next command: {n}");
        }
        (Some(*t), Some(text))
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn ping(con: &mut redis::aio::MultiplexedConnection) -> std::result::Result<String, String> {
    redis::cmd("PING")
        .query_async::<String>(con)
        .await
        .map_err(|e| {
            format!(
                "redis::RedisError {{ kind: {:?}, timeout: {} }}: {e}",
                e.kind(),
                e.is_timeout()
            )
        })
}

/// The client body (see the module doc). Keeps the connection open until `stop`.
pub(crate) fn client(
    server: SocketAddrV4,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::oneshot::Receiver<Instant>,
    stop: mpsc::Receiver<()>,
    done: mpsc::Sender<()>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let kept = rt.block_on(async move {
        let fail = |e: String| {
            let _ = ready.send(Err(e));
            None
        };
        let info = match redis::IntoConnectionInfo::into_connection_info(format!(
            "redis://{server}/?protocol=resp3"
        )) {
            Ok(i) => i.set_tcp_settings(tcp_settings(&plan.tcp)),
            Err(e) => return fail(format!("redis-rs: {e}")),
        };
        let client = match redis::Client::open(info) {
            Ok(c) => c,
            Err(e) => return fail(format!("redis-rs: {e}")),
        };
        let (push_tx, mut push_rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let rt_opt = (!plan.response_timeout.is_zero()).then_some(plan.response_timeout);
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(rt_opt)
            .set_push_sender(push_tx);
        let mut con = match client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => c,
            Err(e) => return fail(format!("redis-rs could not connect to {server}: {e}")),
        };
        // CLIENT INFO: `... addr=IP:PORT laddr=...`, the client's own port.
        let info: String = match redis::cmd("CLIENT").arg("INFO").query_async(&mut con).await {
            Ok(i) => i,
            Err(e) => return fail(format!("CLIENT INFO failed: {e}")),
        };
        let port = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            return fail(format!("no addr= in CLIENT INFO: {info}"));
        };
        let Some(fd) = crate::drive::sockopts::own_socket(port, server) else {
            return fail(format!(
                "no socket with local port {port} towards {server} in this process"
            ));
        };
        if plan.align_last_command {
            let into = wall_ms() % 1000;
            let wait = if into < 450 { 500 - into } else { 1500 - into };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let (last_cmd, last_cmd_wall_ms) = (Instant::now(), wall_ms());
        if let Err(e) = ping(&mut con).await {
            return fail(format!("the first PING failed: {e}"));
        }
        let mut last_cmd = last_cmd;
        if plan.block {
            // Spawned: its reply never comes while the case runs (nobody
            // pushes), and the multiplexed connection stays usable.
            let mut c = con.clone();
            last_cmd = Instant::now();
            tokio::spawn(async move {
                redis::cmd("BLPOP")
                    .arg("kaspec:never")
                    .arg(0)
                    .query_async::<redis::Value>(&mut c)
                    .await
            });
        }
        // Let the server's delayed ACK go out before the path may fail.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        let crate::drive::sockopts::OwnSocket {
            tcp,
            since_rx: since,
            ..
        } = crate::drive::sockopts::own_state(fd);
        let _ = ready.send(Ok(Ready {
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            last_rx: now - since,
            last_cmd,
            last_cmd_wall_ms,
            tcp,
        }));
        let mut end = ClientEnd::default();
        let Ok(deadline) = go.await else {
            return Some((con, end));
        };
        let go_at = Instant::now();
        let mut cmd = match plan.after {
            After::Idle => None,
            After::Command(ms) => {
                let mut c = con.clone();
                Some(tokio::spawn(async move {
                    tokio::time::sleep_until((go_at + Duration::from_millis(ms)).into()).await;
                    let sent = Instant::now();
                    let r = ping(&mut c).await;
                    (sent, Instant::now(), r)
                }))
            }
        };
        loop {
            tokio::select! {
                p = push_rx.recv() => match p {
                    Some(p) if p.kind == redis::PushKind::Disconnection => {
                        end.disconnected_at.get_or_insert_with(Instant::now);
                        if cmd.is_none() {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                r = async { cmd.as_mut().expect("guarded").await }, if cmd.is_some() => {
                    cmd = None;
                    if let Ok((sent, at, r)) = r {
                        end.command_sent = Some(sent);
                        let failed = r.is_err();
                        end.command_end = Some((at, r));
                        if failed || end.disconnected_at.is_some() {
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        if end.disconnected_at.is_some() {
            let t = Instant::now();
            let r = ping(&mut con).await;
            end.next_command = Some(format!(
                "{} after {} ms",
                r.unwrap_or_else(|e| e),
                t.elapsed().as_millis()
            ));
        }
        Some((con, end))
    });
    let _ = done.send(());
    let Some((con, end)) = kept else {
        return ClientEnd::default();
    };
    // Closed only after the server side was watched.
    let _ = stop.recv();
    drop(con);
    end
}

/// The client thread, what it reported, and the senders that let it go and stop it.
pub(crate) struct ClientStarted {
    pub(crate) thread: kaspec_harness::host::NsThread<ClientEnd>,
    pub(crate) ready: Ready,
    pub(crate) go_tx: tokio::sync::oneshot::Sender<Instant>,
    pub(crate) stop_tx: mpsc::Sender<()>,
    /// Signalled when the client is done watching (it detected, or its
    /// deadline passed): the release snapshot is taken after it.
    pub(crate) done_rx: mpsc::Receiver<()>,
}

pub(crate) fn start_client(
    tb: &Testbed,
    server: &RedisServer,
    plan: Plan,
) -> Result<ClientStarted> {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let addr = server.addr;
    let (thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-redis-client",
        "redis-rs client",
        Duration::from_secs(15),
        format!("redis-rs client; server log:\n{}", server.log_tail()),
        move |ready_tx| client(addr, plan, ready_tx, go_rx, stop_rx, done_tx),
    )?;
    Ok(ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
        done_rx,
    })
}

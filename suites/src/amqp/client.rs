//! The lapin client driver: connect through the tap, reach steady state,
//! report ready, and keep the connection until it fails or the case stops it.

use super::*;

pub(crate) struct Ready {
    pub local: SocketAddrV4,
    /// `conn.configuration().heartbeat()`.
    pub negotiated: u16,
    /// A busy client's first publish (one every period after it).
    pub echo_origin: Option<Instant>,
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
}

impl ClientEnd {
    /// A failure after `deadline` is not a detection (the error is kept).
    fn clip(mut self, deadline: Instant) -> ClientEnd {
        drive::client::not_after(&mut self.failed_at, &mut self.error, deadline);
        self
    }
}

/// Connects, waits for the steady state (two broker heartbeats read, one
/// written; only with `steady` and heartbeats on) or only for the
/// connection, reports ready, then waits for lapin's error event or
/// `stop_at`. After an error the socket stays held (no FIN) until the case
/// sets `stop_at`, i.e. until it has watched the broker. With `echo` (a
/// busy client) it then publishes to its own queue every period and
/// consumes each message back, and reports ready once messages come back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn client(
    broker: SocketAddrV4,
    request: u16,
    name: String,
    tap: Tap,
    steady: bool,
    echo: Option<Workload>,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    mut stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
    mut stall: tokio::sync::watch::Receiver<bool>,
) -> Option<ClientEnd> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
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
        let echo_origin = match echo {
            Some(w) => match start_echo(&conn, w).await {
                Ok(origin) => Some(origin),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return None;
                }
            },
            None => None,
        };
        let _ = ready.send(Ok(Ready { local, negotiated, echo_origin }));
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
                // Fault client-stall: the application blocks its thread,
                // the current-thread runtime lapin's own tasks run on
                // (lapin's socket I/O runs on its "lapin-io-loop" thread,
                // io_loop.rs, which goes on).
                Ok(_) = stall.wait_for(|s| *s) => {
                    while stop_at.borrow().is_none_or(|t| Instant::now() < t) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return Some(ClientEnd { failed_at: None, error: None });
                }
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

/// A busy client's workload on `conn`: an exclusive server-named queue,
/// consumed with automatic acknowledgement (no client frame per delivery),
/// and a basic.publish to it through the default exchange every period, at
/// most the workload's count. Returns the first publish's instant once
/// three messages came back.
async fn start_echo(conn: &lapin::Connection, w: Workload) -> std::result::Result<Instant, String> {
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let err = |what: &str, e: lapin::Error| format!("busy amqp client: {what}: {e}");
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| err("channel.open", e))?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("queue.declare", e))?;
    let name = queue.name().clone();
    let mut consumer = channel
        .basic_consume(
            name.clone(),
            "kaspec-busy".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("basic.consume", e))?;
    let (got_tx, mut got) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        while let Some(Ok(_)) = consumer.next().await {
            got_tx.send_modify(|n| *n += 1);
        }
    });
    let origin = Instant::now();
    tokio::spawn(async move {
        let mut tick = w.ticker(origin);
        for i in 0..w.count {
            tick.tick().await;
            let sent = channel
                .basic_publish(
                    "".into(),
                    name.clone(),
                    BasicPublishOptions::default(),
                    &i.to_be_bytes(),
                    Default::default(),
                )
                .await;
            if sent.is_err() {
                return;
            }
        }
    });
    let back = tokio::time::timeout(Duration::from_secs(5), got.wait_for(|n| *n >= 3))
        .await
        .is_ok_and(|r| r.is_ok());
    if back {
        Ok(origin)
    } else {
        Err("busy amqp client: its messages did not come back within 5 s".into())
    }
}

pub(crate) type ClientThread = kaspec_harness::host::NsThread<Option<ClientEnd>>;
pub(crate) type StopAt = tokio::sync::watch::Sender<Option<Instant>>;

/// Starts lapin in the client host against `addr` (see [`client`]) and
/// waits for it to be ready.
pub(crate) fn start_client(
    tb: &Testbed,
    addr: SocketAddrV4,
    request: u16,
    name: String,
    tap: &Tap,
    steady: bool,
    echo: Option<Workload>,
    stall: tokio::sync::watch::Receiver<bool>,
) -> Result<(ClientThread, Ready, StopAt)> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let client_tap = tap.clone();
    let within = Duration::from_secs(20) + 3 * Duration::from_secs(request.max(60) as u64);
    let (thread, ready) = drive::client::start(
        &tb.client,
        "kaspec-amqp-client",
        "amqp client",
        within,
        move |ready_tx| {
            client(
                addr, request, name, client_tap, steady, echo, ready_tx, stop_rx, stall,
            )
        },
    )?;
    match ready {
        Ok(r) => Ok((thread, r, stop_tx)),
        Err(e) => {
            let _ = stop_tx.send(Some(Instant::now()));
            let _ = thread.join();
            Err(Error::Other(e))
        }
    }
}

/// Lets the client go (at `stop_at` at the latest, or at once if it failed)
/// and takes its end; a failure after `deadline` is not a detection.
pub(crate) fn finish_client(
    thread: ClientThread,
    stop: StopAt,
    stop_at: Instant,
    deadline: Instant,
) -> Result<ClientEnd> {
    let _ = stop.send(Some(stop_at));
    let end = thread
        .join()?
        .ok_or_else(|| Error::Other("amqp client ended without a result".into()))?;
    Ok(end.clip(deadline))
}

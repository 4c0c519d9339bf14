//! The async-nats client in the client host: connects with the case's
//! `ping_interval`, records every connection event (timestamped when its
//! callback runs), waits for the server's steady pinging to start, then
//! stays idle until it disconnects or the case stops it.

use super::*;

pub(crate) struct Ready {
    pub(crate) local_port: u16,
}

#[derive(Default)]
pub(crate) struct ClientEnd {
    /// Every event async-nats reported after the go, in order.
    pub(crate) events: Vec<(Instant, String)>,
}

impl ClientEnd {
    /// The client's detection: its first `Event::Disconnected`, with every
    /// event as text.
    pub(crate) fn detection(&self) -> (Option<Instant>, Option<String>) {
        let at = self
            .events
            .iter()
            .find(|(_, e)| e == "disconnected")
            .map(|(t, _)| *t);
        let text = (!self.events.is_empty()).then(|| {
            format!(
                "async-nats events: {}",
                self.events
                    .iter()
                    .map(|(_, e)| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        (at, at.and(text))
    }
}

/// The connection state seen leaving `Connected`.
const STATE_DISCONNECTED: &str = "state: disconnected";

/// The client body (see the module doc). Keeps the client until `stop`.
pub(crate) fn client(
    server: SocketAddrV4,
    ping_interval: Duration,
    settle: Duration,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::oneshot::Receiver<Instant>,
    stop: mpsc::Receiver<()>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let events: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let log = events.clone();
    let seen = events.clone();
    let kept = rt.block_on(async move {
        let events = seen;
        let opts = async_nats::ConnectOptions::new()
            .ping_interval(ping_interval)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |e| {
                let log = log.clone();
                async move {
                    log.lock()
                        .expect("events")
                        .push((Instant::now(), e.to_string()));
                }
            });
        let client = match opts.connect(format!("nats://{server}")).await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(format!(
                    "async-nats could not connect to {server}: {e}"
                )));
                return None;
            }
        };
        tokio::time::sleep(settle).await;
        // This thread runs in the client's namespace: its one connection to the server.
        let local_port = match kaspec_harness::observe::local_end_towards(server) {
            Ok(l) => l.port(),
            Err(e) => {
                let _ = ready.send(Err(format!("the client's connection to {server}: {e}")));
                return None;
            }
        };
        events.lock().expect("events").clear();
        let _ = ready.send(Ok(Ready { local_port }));
        let Ok(deadline) = go.await else {
            return Some(client);
        };
        loop {
            // The handler's own state (`State::Disconnected` is set in the
            // same step as the event is queued), polled every millisecond.
            if client.connection_state() != async_nats::connection::State::Connected {
                let mut ev = events.lock().expect("events");
                if !ev.iter().any(|(_, e)| e == STATE_DISCONNECTED) {
                    ev.push((Instant::now(), STATE_DISCONNECTED.into()));
                }
            }
            if events
                .lock()
                .expect("events")
                .iter()
                .any(|(_, e)| e == "disconnected")
                || Instant::now() >= deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Some(client)
    });
    // Closed only after the server side was watched.
    let _ = stop.recv();
    drop(kept);
    drop(rt);
    let events = std::mem::take(&mut *events.lock().expect("events"));
    ClientEnd { events }
}

/// The client thread, what it reported, and the senders that let it go and stop it.
pub(crate) struct ClientStarted {
    pub(crate) thread: kaspec_harness::host::NsThread<ClientEnd>,
    pub(crate) ready: Ready,
    pub(crate) go_tx: tokio::sync::oneshot::Sender<Instant>,
    pub(crate) stop_tx: mpsc::Sender<()>,
}

pub(crate) fn start_client(
    tb: &Testbed,
    server: &NatsServer,
    ping_interval: Duration,
    settle: Duration,
) -> Result<ClientStarted> {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let addr = server.addr;
    let (thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-nats-client",
        "async-nats client",
        settle + Duration::from_secs(15),
        format!("async-nats client; server log:\n{}", server.log_tail(10)),
        move |ready_tx| client(addr, ping_interval, settle, ready_tx, go_rx, stop_rx),
    )?;
    Ok(ClientStarted {
        thread,
        ready,
        go_tx,
        stop_tx,
    })
}

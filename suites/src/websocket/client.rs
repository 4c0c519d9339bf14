//! kaspec's WebSocket heartbeat over tokio-tungstenite (which has no heartbeat
//! of its own): ping every P, declare the peer dead when nothing was received
//! for P + T; every frame timestamped.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ev {
    Connected,
    PingSent,
    PongReceived,
    ServerPing,
    Frame,
    Stalled,
    /// A busy client's text message sent, its echo received.
    TextSent,
    EchoReceived,
}

impl Ev {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Ev::Connected => "opening handshake done",
            Ev::PingSent => "client Ping sent",
            Ev::PongReceived => "Pong received",
            Ev::ServerPing => "server Ping received (Pong sent)",
            Ev::Frame => "frame received",
            Ev::Stalled => "client application stalled: the socket is no longer polled",
            Ev::TextSent => "text message sent",
            Ev::EchoReceived => "text message received (echo)",
        }
    }
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
    pub events: Vec<(Instant, Ev)>,
}

/// When the heartbeat client reports ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadyAfter {
    /// A Pong and a Ping from the server (both directions' heartbeats run).
    PongAndServerPing,
    /// A Pong (the server does not ping).
    Pong,
    /// The opening handshake (the first Ping may never be answered).
    Connected,
}

/// The stall signal of a client that never stalls (its sender gone).
pub(crate) fn never_stalls() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(false).1
}

/// Connects, runs the heartbeat; reports ready once a Pong and a server Ping
/// were seen; runs until its heartbeat or a read fails, or `stop_at`. With
/// `echo` (a busy client) it also sends a text message every period from
/// the connection on, which the servers echo.
pub(crate) fn heartbeat_client(
    server: SocketAddrV4,
    w: WebSocketConfig,
    echo: Option<Workload>,
    ready_after: ReadyAfter,
    ready: mpsc::Sender<std::result::Result<(SocketAddrV4, Instant), String>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
    mut stall: tokio::sync::watch::Receiver<bool>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let mut events: Vec<(Instant, Ev)> = Vec::new();
        let fail = |events: Vec<(Instant, Ev)>, e: String| ClientEnd { failed_at: Some(Instant::now()), error: Some(e), events };
        let url = format!("ws://{server}/");
        let ws = match tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                let _ = ready.send(Err(format!("connecting to {url}: {e}")));
                return ClientEnd { failed_at: None, error: None, events };
            }
            Err(_) => {
                let _ = ready.send(Err(format!("connecting to {url}: no answer in 5 s")));
                return ClientEnd { failed_at: None, error: None, events };
            }
        };
        let (mut tx, mut rx) = ws.split();
        let mut ready = Some(ready);
        let setup_deadline = Instant::now() + Duration::from_secs(5) + 2 * w.ping_interval;
        let mut stop_at = stop_at;
        // The Ping timer's origin (a Ping every P after it), sent with the ready report.
        let origin = Instant::now();
        let mut ticker = tokio::time::interval_at((origin + w.ping_interval).into(), w.ping_interval);
        let mut last_rx = Instant::now();
        events.push((last_rx, Ev::Connected));
        // The busy workload shares the Ping timer's origin.
        let mut texts = echo.map(|e| (e.ticker(origin), e.count));
        loop {
            let seen = |e: Ev| events.iter().any(|(_, x)| *x == e);
            if ready.is_some() && match ready_after {
                ReadyAfter::PongAndServerPing => seen(Ev::PongReceived) && seen(Ev::ServerPing),
                ReadyAfter::Pong => seen(Ev::PongReceived),
                ReadyAfter::Connected => true,
            } {
                let r = ready.take().expect("checked");
                let _ = r.send(local_end_towards(server).map(|a| (a, origin)).map_err(|e| e.to_string()));
            }
            let limit = match (&ready, *stop_at.borrow()) {
                (Some(_), _) => setup_deadline,
                (None, Some(t)) => t,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                m = rx.next() => {
                    let now = Instant::now();
                    match m {
                        Some(Ok(msg)) => {
                            last_rx = now;
                            let ev = match msg {
                                Message::Pong(_) => Ev::PongReceived,
                                Message::Ping(_) => {
                                    // tungstenite queued the Pong; send it now.
                                    if let Err(e) = tx.flush().await {
                                        return fail(events, format!("tungstenite::Error::{e:?}: {e}"));
                                    }
                                    Ev::ServerPing
                                }
                                Message::Text(_) => Ev::EchoReceived,
                                Message::Close(frame) => {
                                    return fail(events, format!("server sent Close: {frame:?}"));
                                }
                                _ => Ev::Frame,
                            };
                            events.push((now, ev));
                        }
                        Some(Err(e)) => return fail(events, format!("tungstenite::Error::{e:?}: {e}")),
                        None => return fail(events, "the stream ended (connection closed)".into()),
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = tx.send(Message::Ping(b"kaspec".to_vec().into())).await {
                        return fail(events, format!("sending Ping: tungstenite::Error::{e:?}: {e}"));
                    }
                    events.push((Instant::now(), Ev::PingSent));
                }
                _ = async { texts.as_mut().expect("checked").0.tick().await }, if texts.as_ref().is_some_and(|t| t.1 > 0) => {
                    if let Some(t) = texts.as_mut() {
                        t.1 -= 1;
                    }
                    if let Err(e) = tx.send(Message::Text("kaspec".into())).await {
                        return fail(events, format!("sending text: tungstenite::Error::{e:?}: {e}"));
                    }
                    events.push((Instant::now(), Ev::TextSent));
                }
                _ = tokio::time::sleep_until((last_rx + w.ping_interval + w.pong_timeout).into()) => {
                    let p = ms_of(w.ping_interval) + ms_of(w.pong_timeout);
                    return fail(events, format!("heartbeat: nothing received for P + T = {p} ms"));
                }
                _ = tokio::time::sleep_until(limit.into()) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err("no Pong and server Ping within the set-up time".into()));
                    }
                    return ClientEnd { failed_at: None, error: None, events };
                }
                // Fault client-stall: the application stops polling the
                // socket (no read, so no Pong to a server Ping; no Ping).
                Ok(_) = stall.wait_for(|s| *s), if ready.is_none() => {
                    events.push((Instant::now(), Ev::Stalled));
                    drive::client::stalled_until_stopped(&mut stop_at).await;
                    drop((tx, rx));
                    return ClientEnd { failed_at: None, error: None, events };
                }
                changed = stop_at.changed() => {
                    if changed.is_err() {
                        // The run went away: stop instead of spinning on a closed channel.
                        return ClientEnd { failed_at: None, error: None, events };
                    }
                }
            }
        }
    })
}

/// A busy client's last text message before `t0` and the echo that came
/// back for it (the server read it by then), or `None` without one.
pub(crate) fn last_text(events: &[(Instant, Ev)], t0: Instant) -> Option<(Instant, Instant)> {
    let sent = events
        .iter()
        .rposition(|(t, e)| *t < t0 && *e == Ev::TextSent)?;
    let echoed = events[sent..]
        .iter()
        .find(|(_, e)| *e == Ev::EchoReceived)
        .map_or(events[sent].0, |(t, _)| *t);
    Some((events[sent].0, echoed))
}

/// By when the server had read the client's last frame sent before `t0`
/// (a Ping, or the Pong to a server Ping): the first Pong received after
/// the next client Ping from that frame on — the server reads frames in
/// order and answers a Ping on reading it. `None` when no client Ping
/// before `t0` came after that frame, or none was answered.
pub(crate) fn read_by(events: &[(Instant, Ev)], t0: Instant) -> Option<Instant> {
    let last = events
        .iter()
        .rposition(|(t, e)| *t < t0 && matches!(e, Ev::PingSent | Ev::ServerPing))?;
    let ping = last
        + events[last..]
            .iter()
            .position(|(t, e)| *t < t0 && *e == Ev::PingSent)?;
    events[ping..]
        .iter()
        .find(|(_, e)| *e == Ev::PongReceived)
        .map(|(t, _)| *t)
}

pub(crate) fn last_before(
    events: &[(Instant, Ev)],
    before: Instant,
    kinds: &[Ev],
) -> Option<Instant> {
    events
        .iter()
        .filter(|(t, e)| *t < before && kinds.contains(e))
        .map(|(t, _)| *t)
        .last()
}

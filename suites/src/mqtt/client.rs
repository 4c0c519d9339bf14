//! The rumqttc client driver: connect, reach steady state (a PINGREQ/PINGRESP
//! round, or only the CONNACK), report ready, then poll until the event loop
//! fails or the case stops it; every packet timestamped.

use super::*;

pub(crate) struct Ready {
    pub local: SocketAddrV4,
    /// The last PINGREQ (or CONNECT) the client sent.
    pub last_out: Instant,
}

pub(crate) struct ClientEnd {
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
    pub events: Vec<(Instant, String)>,
}

/// The client: connect, wait for one PINGREQ/PINGRESP round (steady state)
/// or only for the CONNACK, report ready, then keep polling until the event
/// loop fails or `stop` fires. Once `stall` turns true the application
/// stalls: the event loop is kept (its connection open) but no longer
/// polled, so rumqttc sends and reads nothing until the case stops it.
pub(crate) fn client(
    broker: SocketAddrV4,
    id: String,
    k: Duration,
    ready_at_connack: bool,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
    mut stall: tokio::sync::watch::Receiver<bool>,
) -> Option<ClientEnd> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        opts.set_keep_alive(k).set_clean_session(true);
        let (_client, mut ev) = AsyncClient::new(opts, 10);
        let mut events: Vec<(Instant, String)> = Vec::new();
        let mut last_out = Instant::now();
        let mut ready_tx = Some(ready);
        let mut stop_at = stop_at;
        let setup_deadline = Instant::now() + Duration::from_secs(5) + 2 * k;
        loop {
            let stop = *stop_at.borrow();
            let limit = match (&ready_tx, stop) {
                (Some(_), _) => setup_deadline,
                (None, Some(t)) => t,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            let polled = tokio::select! {
                r = tokio::time::timeout_at(limit.into(), ev.poll()) => r,
                changed = stop_at.changed() => match changed {
                    Ok(()) => continue,
                    // The run went away: stop instead of spinning on a closed channel.
                    Err(_) => return Some(ClientEnd { failed_at: None, error: None, events }),
                },
                Ok(_) = stall.wait_for(|s| *s), if ready_tx.is_none() => {
                    events.push((Instant::now(), "client application stalled: rumqttc's event loop no longer polled".into()));
                    drive::client::stalled_until_stopped(&mut stop_at).await;
                    drop(ev);
                    return Some(ClientEnd { failed_at: None, error: None, events });
                }
            };
            let now = Instant::now();
            match polled {
                Err(_) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(
                            "rumqttc did not connect and complete a ping round in time".into(),
                        ));
                        return None;
                    }
                    return Some(ClientEnd {
                        failed_at: None,
                        error: None,
                        events,
                    });
                }
                Ok(Err(e)) => {
                    events.push((now, "rumqttc event loop failed".into()));
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(format!("rumqttc failed before the fault: {e}")));
                        return None;
                    }
                    return Some(ClientEnd {
                        failed_at: Some(now),
                        error: Some(format!("rumqttc::ConnectionError::{e:?}: {e}")),
                        events,
                    });
                }
                Ok(Ok(event)) => {
                    let steady = match &event {
                        Event::Incoming(Packet::ConnAck(_)) => {
                            events.push((now, "CONNACK received".into()));
                            if ready_at_connack {
                                last_out = now;
                            }
                            k.is_zero() || ready_at_connack
                        }
                        Event::Outgoing(Outgoing::PingReq) => {
                            last_out = now;
                            events.push((now, "PINGREQ sent".into()));
                            false
                        }
                        Event::Incoming(Packet::PingResp) => {
                            events.push((now, "PINGRESP received".into()));
                            true
                        }
                        _ => false,
                    };
                    if steady {
                        if let Some(tx) = ready_tx.take() {
                            let r = local_end_towards(broker)
                                .map(|local| Ready { local, last_out })
                                .map_err(|e| e.to_string());
                            let failed = r.is_err();
                            let _ = tx.send(r);
                            if failed {
                                return None;
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The client thread, what it reported, the sender that stops it, and the
/// broker-side watch of its connection.
pub(crate) struct Started {
    pub(crate) thread: kaspec_harness::host::NsThread<Option<ClientEnd>>,
    pub(crate) ready: Ready,
    pub(crate) stop_tx: tokio::sync::watch::Sender<Option<Instant>>,
    /// Stalls the client application (fault `client-stall`).
    pub(crate) stall_tx: tokio::sync::watch::Sender<bool>,
    pub(crate) watch: SocketWatch,
}

/// Starts rumqttc in the client host of `tb` against `addr` (ready at the
/// CONNACK, or after a first ping round) and watches its connection on the
/// broker's side.
pub(crate) fn start_client(
    tb: &kaspec_harness::testbed::Testbed,
    addr: SocketAddrV4,
    k: Duration,
    ready_at_connack: bool,
) -> Result<Started> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let (stall_tx, stall_rx) = tokio::sync::watch::channel(false);
    let id = format!("kaspec-{}", tb.tag);
    let (thread, ready) = drive::client::start_or_fail(
        &tb.client,
        "kaspec-mqtt-client",
        "mqtt client",
        Duration::from_secs(10) + 3 * k,
        "mqtt client",
        move |ready_tx| client(addr, id, k, ready_at_connack, ready_tx, stop_rx, stall_rx),
    )?;
    let watch = SocketWatch::start(&tb.server, addr, tb.seen_by_server(ready.local))?;
    Ok(Started {
        thread,
        ready,
        stop_tx,
        stall_tx,
        watch,
    })
}

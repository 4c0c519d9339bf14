//! The rumqttc client driver: connect, reach steady state (a PINGREQ/PINGRESP
//! round, or only the CONNACK), report ready, then poll until the event loop
//! fails or the case stops it; every packet timestamped.

use super::*;

pub(crate) struct Ready {
    pub local: SocketAddrV4,
    /// The last PINGREQ (or CONNECT) the client sent.
    pub last_out: Instant,
    /// A busy client's first publish: its publishes come every period after.
    pub echo_origin: Option<Instant>,
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
/// With `echo` (a busy client) it subscribes to its own topic at the
/// CONNACK, and once subscribed publishes there every period (QoS 0),
/// each publish coming back through the subscription.
#[allow(clippy::too_many_arguments)]
pub(crate) fn client(
    broker: SocketAddrV4,
    id: String,
    k: Duration,
    ready_at_connack: bool,
    echo: Option<Workload>,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
    mut stall: tokio::sync::watch::Receiver<bool>,
) -> Option<ClientEnd> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let topic = format!("kaspec/{id}/busy");
        let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        opts.set_keep_alive(k).set_clean_session(true);
        let (client, mut ev) = AsyncClient::new(opts, 10);
        let mut events: Vec<(Instant, String)> = Vec::new();
        let mut last_out = Instant::now();
        let mut echo_origin = None;
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
                            if echo.is_some() {
                                let c = client.clone();
                                let t = topic.clone();
                                tokio::spawn(async move {
                                    c.subscribe(t, rumqttc::QoS::AtMostOnce).await
                                });
                            }
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
                            echo.is_none() || echo_origin.is_some()
                        }
                        Event::Incoming(Packet::SubAck(_)) => {
                            events.push((now, "SUBACK received".into()));
                            if let Some(e) = &echo {
                                echo_origin = Some(start_publisher(*e, client.clone(), topic.clone()));
                            }
                            false
                        }
                        Event::Outgoing(Outgoing::Publish(_)) => {
                            events.push((now, PUBLISH_SENT.into()));
                            false
                        }
                        Event::Incoming(Packet::Publish(_)) => {
                            events.push((now, PUBLISH_RECEIVED.into()));
                            false
                        }
                        _ => false,
                    };
                    if steady {
                        if let Some(tx) = ready_tx.take() {
                            let r = local_end_towards(broker)
                                .map(|local| Ready {
                                    local,
                                    last_out,
                                    echo_origin,
                                })
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

impl Started {
    /// Watches the broker's end until `server_by`, then stops the client
    /// (not before `client_by`: its clean close, a FIN through a one-way
    /// blackhole, is not the broker's detection) and takes its end; a client
    /// failure after `client_by` does not count.
    pub(crate) fn watch_then_stop(
        self,
        server_by: Instant,
        client_by: Instant,
    ) -> Result<(Option<kaspec_harness::observe::SocketClosed>, ClientEnd)> {
        let server_closed = self.watch.wait(server_by)?;
        let _ = self.stop_tx.send(Some(Instant::now().max(client_by)));
        let mut end = self
            .thread
            .join()?
            .ok_or_else(|| Error::Other("mqtt client ended without a result".into()))?;
        drive::client::not_after(&mut end.failed_at, &mut end.error, client_by);
        Ok((server_closed, end))
    }
}

/// Starts rumqttc in the client host of `tb` against `addr` (ready at the
/// CONNACK, or after a first ping round) and watches its connection on the
/// broker's side.
pub(crate) fn start_client(
    tb: &kaspec_harness::testbed::Testbed,
    addr: SocketAddrV4,
    k: Duration,
    ready_at_connack: bool,
    echo: Option<Workload>,
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
        move |ready_tx| {
            client(
                addr,
                id,
                k,
                ready_at_connack,
                echo,
                ready_tx,
                stop_rx,
                stall_rx,
            )
        },
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

/// A busy client's timeline entries: each publish sent, each echo received.
pub(crate) const PUBLISH_SENT: &str = "PUBLISH sent";
pub(crate) const PUBLISH_RECEIVED: &str = "PUBLISH received (echo)";

/// Starts a busy client's publisher on its runtime (it ends with it, or
/// after the workload's count); returns its origin (publish i is due at
/// origin + i × period).
fn start_publisher(w: Workload, client: AsyncClient, topic: String) -> Instant {
    let origin = Instant::now();
    tokio::spawn(async move {
        let mut tick = w.ticker(origin);
        for i in 0..w.count {
            tick.tick().await;
            let payload = i.to_be_bytes().to_vec();
            let sent = client.publish(topic.as_str(), rumqttc::QoS::AtMostOnce, false, payload);
            if sent.await.is_err() {
                return;
            }
        }
    });
    origin
}

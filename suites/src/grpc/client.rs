//! The tonic client driver: a channel with the configured HTTP/2 and TCP
//! keep-alive, idle or with a call, every read and failure timestamped.

use super::*;

/// What the client does once connected and one call has gone through.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Stay idle until stopped; then one probe call (its status is recorded).
    Idle,
    /// Stay idle; at the instant received on the channel, make one call.
    CallLater,
    /// Open a Watch stream and wait for it to end.
    Stream,
}

pub(crate) struct Ready {
    pub(crate) local: SocketAddrV4,
    /// When the last response frame was read (the connection's last activity).
    pub(crate) last_read: Instant,
}

#[derive(Default)]
pub(crate) struct ClientEnd {
    pub(crate) call_started: Option<Instant>,
    pub(crate) failed_at: Option<Instant>,
    pub(crate) error: Option<String>,
    /// Status of the probe call after the connection died (Plan::Idle).
    pub(crate) probe: Option<String>,
}

pub(crate) fn endpoint(
    addr: SocketAddrV4,
    g: &GrpcConfig,
    tcp: &TcpConfig,
) -> tonic::transport::Endpoint {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .http2_keep_alive_interval(g.keepalive_time)
        .keep_alive_timeout(g.keepalive_timeout)
        .keep_alive_while_idle(g.keepalive_while_idle)
        .connect_timeout(Duration::from_secs(1));
    if tcp.keepalive {
        ep.tcp_keepalive(Some(tcp.idle))
            .tcp_keepalive_interval(Some(tcp.interval))
            .tcp_keepalive_retries(Some(tcp.count))
    } else {
        ep.tcp_keepalive(None)
    }
}

pub(crate) fn status_text(s: &tonic::Status) -> String {
    let src = std::error::Error::source(s)
        .map(|e| format!("; source: {e}"))
        .unwrap_or_default();
    format!(
        "tonic::Status {{ code: {:?} }}: {}{src}",
        s.code(),
        s.message()
    )
}

pub(crate) fn client(
    addr: SocketAddrV4,
    g: GrpcConfig,
    tcp: TcpConfig,
    plan: Plan,
    ready: mpsc::Sender<std::result::Result<Ready, String>>,
    go: tokio::sync::watch::Receiver<Option<Instant>>,
    stop_at: tokio::sync::watch::Receiver<Option<Instant>>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let mut end = ClientEnd::default();
        let channel = match endpoint(addr, &g, &tcp).connect().await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(format!("connecting to {addr}: {e}")));
                return end;
            }
        };
        let mut client = EchoClient::new(channel);
        let mut stream = None;
        let first = match plan {
            Plan::Stream => match client
                .watch(Text {
                    text: "kaspec".into(),
                })
                .await
            {
                Ok(resp) => {
                    let mut s = resp.into_inner();
                    let m = s.message().await;
                    stream = Some(s);
                    m.map(|_| ())
                }
                Err(e) => Err(e),
            },
            _ => client
                .say(Text {
                    text: "kaspec".into(),
                })
                .await
                .map(|_| ()),
        };
        if let Err(e) = first {
            let _ = ready.send(Err(format!("first call to {addr}: {}", status_text(&e))));
            return end;
        }
        let last_read = Instant::now();
        match local_end_towards(addr) {
            Ok(local) => {
                let _ = ready.send(Ok(Ready { local, last_read }));
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return end;
            }
        }
        let wait_for = |mut rx: tokio::sync::watch::Receiver<Option<Instant>>| async move {
            loop {
                if let Some(t) = *rx.borrow_and_update() {
                    return t;
                }
                if rx.changed().await.is_err() {
                    return Instant::now();
                }
            }
        };
        match plan {
            Plan::Idle => {
                let stop = wait_for(stop_at).await;
                tokio::time::sleep_until(stop.into()).await;
                let probe = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.say(Text {
                        text: "probe".into(),
                    }),
                )
                .await;
                end.probe = Some(match probe {
                    Ok(Ok(_)) => "a probe call after the wait succeeded".into(),
                    Ok(Err(s)) => {
                        format!("a probe call after the wait failed: {}", status_text(&s))
                    }
                    Err(_) => "a probe call after the wait got no answer in 2 s".into(),
                });
            }
            Plan::CallLater => {
                let at = wait_for(go).await;
                tokio::time::sleep_until(at.into()).await;
                let limit = wait_for(stop_at).await;
                end.call_started = Some(Instant::now());
                match tokio::time::timeout_at(
                    limit.into(),
                    client.say(Text {
                        text: "after the fault".into(),
                    }),
                )
                .await
                {
                    Ok(Ok(_)) => end.error = Some("the call succeeded".into()),
                    Ok(Err(s)) => {
                        end.failed_at = Some(Instant::now());
                        end.error = Some(status_text(&s));
                    }
                    Err(_) => {}
                }
            }
            Plan::Stream => {
                let limit = wait_for(stop_at).await;
                let mut s = stream.expect("stream opened");
                loop {
                    match tokio::time::timeout_at(limit.into(), s.message()).await {
                        Ok(Ok(Some(_))) => continue,
                        Ok(Ok(None)) => {
                            end.failed_at = Some(Instant::now());
                            end.error = Some("the stream ended without an error".into());
                        }
                        Ok(Err(st)) => {
                            end.failed_at = Some(Instant::now());
                            end.error = Some(status_text(&st));
                        }
                        Err(_) => {}
                    }
                    break;
                }
            }
        }
        end
    })
}

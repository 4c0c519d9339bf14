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
    /// Busy: a unary call every [`BUSY_PERIOD`] on a grid from the last
    /// read of the first call (at most [`BUSY_MAX_CALLS`], until stopped),
    /// each awaited before the next: the first that fails ends the loop.
    Busy,
}

/// The busy client's call period.
pub(crate) const BUSY_PERIOD: Duration = Duration::from_millis(100);
/// The busy client's bound on calls (with the stop instant, its time bound).
pub(crate) const BUSY_MAX_CALLS: u32 = 600;

/// The client's own situations (faults `client-stall`, `client-crash`),
/// told to the client thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Halt {
    Run,
    /// The application blocks its (current-thread) runtime's only thread
    /// until the stop instant: no task runs, hyper's connection task (which
    /// tonic spawns, transport/channel/service/connection.rs:242) included,
    /// so no frame is read and no PING answered; the kernel stays up.
    /// Merely not calling is no stall for tonic: that connection task goes
    /// on answering PINGs.
    Stall,
    /// The host is gone: the channel and the runtime are dropped at once.
    Crash,
}

/// The client's end of the halt: what it is told, and where it says when
/// it stalled (so that the case faults only once the stall is in force).
#[derive(Clone)]
pub(crate) struct HaltRx {
    pub(crate) rx: tokio::sync::watch::Receiver<Halt>,
    pub(crate) stalled: std::sync::Arc<std::sync::OnceLock<Instant>>,
}

/// The case's end of the halt and the client's.
pub(crate) fn halt_channel() -> (tokio::sync::watch::Sender<Halt>, HaltRx) {
    let (tx, rx) = tokio::sync::watch::channel(Halt::Run);
    let stalled = Default::default();
    (tx, HaltRx { rx, stalled })
}

/// A halt receiver for a case without client situations.
pub(crate) fn no_halt() -> HaltRx {
    halt_channel().1
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
    /// When the application stalled its runtime (Halt::Stall).
    pub(crate) stalled_at: Option<Instant>,
    /// Busy: when each response was read, and the calls made.
    pub(crate) reads: Vec<Instant>,
    pub(crate) calls: u32,
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
    halt: HaltRx,
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
                let HaltRx {
                    rx: mut halted,
                    stalled,
                } = halt;
                // The halt, copied out of the watch (a held borrow would
                // block the case's next send).
                let halted = async move { halted.wait_for(|h| *h != Halt::Run).await.map(|h| *h) };
                let stop = tokio::select! {
                    biased;
                    Ok(h) = halted => {
                        if h == Halt::Stall {
                            let at = Instant::now();
                            end.stalled_at = Some(at);
                            let _ = stalled.set(at);
                            // Blocks the runtime's thread: nothing is polled.
                            while stop_at.borrow().is_none_or(|t| Instant::now() < t) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                        None
                    }
                    t = wait_for(stop_at.clone()) => Some(t),
                };
                // Stalled until stopped, or crashed: the channel is dropped
                // with the runtime, no probe call.
                let Some(stop) = stop else { return end };
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
            Plan::Busy => {
                let mut tick =
                    tokio::time::interval_at((last_read + BUSY_PERIOD).into(), BUSY_PERIOD);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                end.reads.push(last_read);
                // Until the stop instant the case sets after the fault.
                let stopped = async {
                    let t = wait_for(stop_at).await;
                    tokio::time::sleep_until(t.into()).await;
                };
                tokio::pin!(stopped);
                while end.calls < BUSY_MAX_CALLS {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = &mut stopped => break,
                    }
                    end.calls += 1;
                    end.call_started = Some(Instant::now());
                    let call = client.say(Text {
                        text: format!("busy {}", end.calls),
                    });
                    tokio::select! {
                        r = call => match r {
                            Ok(_) => end.reads.push(Instant::now()),
                            Err(s) => {
                                end.failed_at = Some(Instant::now());
                                end.error = Some(status_text(&s));
                                break;
                            }
                        },
                        _ = &mut stopped => break,
                    }
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

//! reqwest in the client host: [`build`] is the one place a client is built
//! from the `http.*` knobs (the proxy cases call it too); [`Driver`] runs
//! one client on its own thread and sends the requests the case asks for,
//! one at a time, each at its instant, reporting what came back, which
//! connection carried it and that socket's options (getsockopt).

use super::*;

/// A reqwest client from `c`: HTTP/1.1 only, or HTTP/2 with prior
/// knowledge (no TLS). A zero duration is reqwest's `None`.
pub fn build(c: &HttpConfig, h2: bool) -> reqwest::Result<reqwest::Client> {
    let opt = |d: Duration| (!d.is_zero()).then_some(d);
    let ka = c.tcp.keepalive;
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(opt(c.pool_idle_timeout))
        .pool_max_idle_per_host(c.pool_max_idle_per_host)
        .tcp_keepalive(ka.then_some(c.tcp.idle))
        .tcp_keepalive_interval(ka.then_some(c.tcp.interval))
        .tcp_keepalive_retries(ka.then_some(c.tcp.count))
        .tcp_user_timeout(opt(c.tcp.user_timeout));
    if let Some(t) = opt(c.request_timeout) {
        b = b.timeout(t);
    }
    b = if h2 {
        let b = b.http2_prior_knowledge();
        match opt(c.h2_interval) {
            Some(i) => b
                .http2_keep_alive_interval(i)
                .http2_keep_alive_timeout(c.h2_timeout)
                .http2_keep_alive_while_idle(c.h2_while_idle),
            None => b,
        }
    } else {
        b.http1_only()
    };
    b.build()
}

/// One request's life.
#[derive(Debug, Clone)]
pub struct Got {
    pub sent: Instant,
    pub done: Instant,
    /// The client's local port of the connection that carried it, or the
    /// error with its kinds (reqwest's flags and hyper's source chain).
    pub result: std::result::Result<u16, String>,
    /// That connection's socket just after the response: the options
    /// reqwest set (getsockopt) and its last data received (TCP_INFO).
    pub sock: Option<(TcpConfig, Instant)>,
    /// How many times hyper-util's pool tried it again after a reused
    /// connection gave it back unsent ([`super::retries`]).
    pub retried: u64,
}

impl Got {
    pub fn port(&self) -> Option<u16> {
        self.result.as_ref().ok().copied()
    }
}

/// reqwest's error with what it is: reqwest's own flags, then every source
/// (hyper's `connection closed before message completed` is
/// `hyper::Error::is_incomplete_message`).
pub fn error_kinds(e: &reqwest::Error) -> String {
    let mut flags = Vec::new();
    for (on, name) in [
        (e.is_timeout(), "timeout"),
        (e.is_connect(), "connect"),
        (e.is_request(), "request"),
        (e.is_body(), "body"),
    ] {
        if on {
            flags.push(name);
        }
    }
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            let kind = if h.is_incomplete_message() {
                "IncompleteMessage"
            } else if h.is_canceled() {
                "Canceled"
            } else if h.is_closed() {
                "ChannelClosed"
            } else if h.is_timeout() {
                "Timeout"
            } else {
                "other"
            };
            chain.push(format!("hyper {kind}: {h}"));
        } else if let Some(io) = s.downcast_ref::<std::io::Error>() {
            chain.push(format!("io {:?}: {io}", io.kind()));
        } else {
            chain.push(s.to_string());
        }
        src = s.source();
    }
    format!("reqwest [{}]: {}", flags.join(","), chain.join(" <- "))
}

/// A request: when to send it, how long to let it run before kaspec
/// abandons it (its end is then `not ended`), where to report.
struct Cmd(Option<Instant>, Duration, mpsc::Sender<Got>);

/// The error text of a request kaspec abandoned at its own deadline.
pub const NOT_ENDED: &str = "not ended by kaspec's deadline";

/// A reqwest client on its own thread in the client host.
pub struct Driver {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    thread: Option<kaspec_harness::host::NsThread<()>>,
}

async fn get(client: &reqwest::Client, url: &str, server: SocketAddrV4) -> Got {
    let sent = Instant::now();
    let r = match client.get(url).send().await {
        Ok(resp) => {
            let local = resp
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(|i| i.local_addr().port());
            match resp.bytes().await {
                Ok(_) => local.ok_or_else(|| "no connection info on the response".to_string()),
                Err(e) => Err(error_kinds(&e)),
            }
        }
        Err(e) => Err(error_kinds(&e)),
    };
    let done = Instant::now();
    let sock = r.as_ref().ok().and_then(|p| {
        let fd = crate::drive::sockopts::own_socket(*p, server)?;
        let s = crate::drive::sockopts::own_state(fd);
        Some((s.tcp, Instant::now() - s.since_data_rx))
    });
    Got {
        sent,
        done,
        result: r,
        sock,
        retried: 0,
    }
}

impl Driver {
    /// Starts a client built from `c` in `tb`'s client host, towards `server`.
    pub fn start(tb: &Testbed, c: HttpConfig, h2: bool, server: SocketAddrV4) -> Result<Driver> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let (thread, ()) = drive::client::start_or_fail(
            &tb.client,
            "kaspec-http-client",
            "reqwest client",
            Duration::from_secs(10),
            "reqwest client",
            move |ready: mpsc::Sender<std::result::Result<(), String>>| {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                let (retries, _guard) = super::retries::Counter::install();
                rt.block_on(async move {
                    let client = match build(&c, h2) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready.send(Err(format!("reqwest ClientBuilder: {e}")));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let url = format!("http://{server}/");
                    while let Some(Cmd(at, limit, reply)) = rx.recv().await {
                        if let Some(at) = at {
                            tokio::time::sleep_until(at.into()).await;
                        }
                        let sent = Instant::now();
                        let before = retries.count();
                        let mut got = tokio::time::timeout(limit, get(&client, &url, server))
                            .await
                            .unwrap_or_else(|_| Got {
                                sent,
                                done: Instant::now(),
                                result: Err(NOT_ENDED.into()),
                                sock: None,
                                retried: 0,
                            });
                        got.retried = retries.count() - before;
                        let _ = reply.send(got);
                    }
                });
            },
        )?;
        Ok(Driver {
            tx,
            thread: Some(thread),
        })
    }

    /// Sends a request at `at` (now if None), abandoned after `within`,
    /// and waits for its end.
    pub fn get(&self, at: Option<Instant>, within: Duration) -> Result<Got> {
        let got = self.get_later(at, within)?;
        let wait = at
            .map(|a| a.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
            + within
            + Duration::from_secs(2);
        got.recv_timeout(wait)
            .map_err(|_| Error::Other("the reqwest client thread did not report".into()))
    }

    /// Queues a request at `at` without waiting; its end comes on the receiver.
    pub fn get_later(&self, at: Option<Instant>, within: Duration) -> Result<mpsc::Receiver<Got>> {
        let (reply, got) = mpsc::channel();
        self.tx
            .send(Cmd(at, within, reply))
            .map_err(|_| Error::Other("the reqwest client thread is gone".into()))?;
        Ok(got)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; the client (and its
        // pool) is dropped with the runtime.
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The client under test: reqwest (hyper-util's pool underneath), HTTP/1.1,
//! on a thread in the client host with a pool that keeps its connection to
//! the proxy; the case asks it for one GET at a time and gets what the
//! request ended with and when.

use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::host::{Host, NsThread};
use kaspec_harness::report::Implementation;
use kaspec_harness::{Error, Result};

use crate::http::knobs::HttpConfig;

pub fn client_implementation() -> Implementation {
    Implementation::new("reqwest", env!("KASPEC_VERSION_REQWEST"))
}

/// How one request ended.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Just before reqwest was handed the request.
    pub sent: Instant,
    /// When its future resolved.
    pub done: Instant,
    /// The status and body (the upstream connection's port, from
    /// kaspec's upstream server), or reqwest's error chain.
    pub outcome: std::result::Result<(u16, String), String>,
    /// hyper-util's retries of it ([`crate::http::retries`]).
    pub retried: u64,
}

impl Reply {
    pub fn status(&self) -> Option<u16> {
        self.outcome.as_ref().ok().map(|(s, _)| *s)
    }

    /// The upstream connection's source port the upstream server saw.
    pub fn upstream_port(&self) -> Option<u16> {
        self.outcome
            .as_ref()
            .ok()
            .filter(|(s, _)| *s == 200)
            .and_then(|(_, b)| b.trim().parse().ok())
    }

    pub fn describe(&self) -> String {
        match &self.outcome {
            Ok((s, b)) if *s == 200 => format!("200 (upstream connection from port {})", b.trim()),
            Ok((s, _)) => format!("status {s}"),
            Err(e) => format!("error: {e}"),
        }
    }
}

/// A reqwest client living in the client host.
pub struct Client {
    ask: Option<mpsc::Sender<(String, Duration)>>,
    replies: mpsc::Receiver<Reply>,
    thread: Option<NsThread<()>>,
}

impl Client {
    /// Starts the client thread for `http://proxy/`: reqwest as the
    /// direct cases build it from the `http.*` knobs, HTTP/1.1.
    pub fn start(host: &Host, proxy: SocketAddrV4, http: &HttpConfig) -> Result<Client> {
        let (ask_tx, ask_rx) = mpsc::channel::<(String, Duration)>();
        let (reply_tx, replies) = mpsc::channel();
        // The pool keeps idle connections until the case ends
        // (pool_idle_timeout off): the proxy's timeouts decide.
        let http = HttpConfig {
            pool_idle_timeout: Duration::ZERO,
            ..*http
        };
        let thread = host.spawn_thread("kaspec-reqwest", move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let Ok(client) = crate::http::client::build(&http, false) else {
                return;
            };
            let (retries, _guard) = crate::http::retries::Counter::install();
            for (path, timeout) in ask_rx {
                let url = format!("http://{proxy}{path}");
                let before = retries.count();
                let sent = Instant::now();
                let outcome = rt.block_on(async {
                    let r = client
                        .get(&url)
                        .timeout(timeout)
                        .send()
                        .await
                        .map_err(chain)?;
                    let status = r.status().as_u16();
                    let body = r.text().await.map_err(chain)?;
                    Ok((status, body))
                });
                if reply_tx
                    .send(Reply {
                        sent,
                        done: Instant::now(),
                        outcome,
                        retried: retries.count() - before,
                    })
                    .is_err()
                {
                    return;
                }
            }
        })?;
        Ok(Client {
            ask: Some(ask_tx),
            replies,
            thread: Some(thread),
        })
    }

    /// One GET, ending within `timeout` (reqwest's own request timeout).
    pub fn get(&self, timeout: Duration) -> Result<Reply> {
        self.get_path("/", timeout)
    }

    /// One GET of `path` (the proxy's access log names it).
    pub fn get_path(&self, path: &str, timeout: Duration) -> Result<Reply> {
        let ask = self
            .ask
            .as_ref()
            .ok_or_else(|| Error::Other("the reqwest client is stopped".into()))?;
        ask.send((path.to_string(), timeout))
            .map_err(|_| Error::Other("the reqwest client thread is gone".into()))?;
        self.replies
            .recv_timeout(timeout + Duration::from_secs(2))
            .map_err(|_| Error::Other("the reqwest client did not answer".into()))
    }
}

/// An error with its sources (hyper's kind is in the innermost).
fn chain(e: reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

impl Drop for Client {
    fn drop(&mut self) {
        self.ask.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

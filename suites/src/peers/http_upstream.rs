//! kaspec's upstream HTTP server for the proxy cases (`kaspec-http-upstream`):
//! hyper 1.x's HTTP/1.1 server answering every request with the source port
//! of the connection that carried it (so a case knows which of the proxy's
//! upstream connections served a request), run on a thread inside a host
//! of the testbed (the server host of the proxy topology) until dropped.
//!
//! Its idle timeout, when given, is hyper's http1 `header_read_timeout`:
//! proto/h1/conn.rs `poll_read_head` (hyper 1.x) arms it as soon as the
//! connection waits for the next request's head and closes the connection
//! when it fires. Without one, an idle connection stays open for ever.

use std::net::SocketAddrV4;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use kaspec_harness::host::{Host, NsThread};
use kaspec_harness::{Error, Result};

/// The name it has in results.
pub const NAME: &str = "kaspec-http-upstream";

/// The server's version in results: hyper's, the HTTP implementation.
pub fn version() -> String {
    format!("hyper {}", env!("KASPEC_VERSION_HYPER"))
}

/// A running upstream server; dropping it stops it (its connections with it).
pub struct Upstream {
    pub addr: SocketAddrV4,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<NsThread<()>>,
}

impl Upstream {
    /// Starts listening on `addr` inside `host`; returns once it listens.
    pub fn start(
        host: &Host,
        addr: SocketAddrV4,
        header_read_timeout: Option<Duration>,
    ) -> Result<Upstream> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = host.spawn_thread("kaspec-http-upstream", move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            rt.block_on(serve(addr, header_read_timeout, ready_tx, stop_rx));
        })?;
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| Error::Other(format!("{NAME} on {addr} did not start")))?;
        ready.map_err(|e| Error::io(format!("{NAME} listening on {addr}"), e))?;
        Ok(Upstream {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

async fn serve(
    addr: SocketAddrV4,
    header_read_timeout: Option<Duration>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return drop(ready.send(Err(e))),
    };
    let _ = ready.send(Ok(()));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
        };
        let port = stream.peer_addr().map(|a| a.port()).unwrap_or(0);
        let svc = hyper::service::service_fn(move |_req| async move {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                hyper::body::Bytes::from(format!("{port}\n")),
            )))
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(header_read_timeout);
        conns.spawn(b.serve_connection(TokioIo::new(stream), svc));
    }
    conns.abort_all();
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

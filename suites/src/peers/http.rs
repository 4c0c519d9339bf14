//! kaspec's HTTP server (`kaspec serve http`): hyper 1.x answering every
//! request with the client port it saw, HTTP/1.1 on `--listen` and HTTP/2
//! (prior knowledge) on the next port. Its idle timeout is hyper's http1
//! `header_read_timeout`: proto/h1/conn.rs `poll_read_head` (hyper 1.12,
//! lines 224–239) arms it as soon as the connection waits for the next
//! request's head, and closes the connection when it fires (line 266).

use std::net::SocketAddrV4;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

async fn answer(
    port: u16,
) -> Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, std::convert::Infallible> {
    Ok(hyper::Response::new(http_body_util::Full::new(
        format!("{port}\n").into(),
    )))
}

/// Serves until killed.
pub fn serve(listen: SocketAddrV4, header_read_timeout: Duration) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let h1 = tokio::net::TcpListener::bind(listen).await?;
        let h2_addr = SocketAddrV4::new(*listen.ip(), listen.port() + 1);
        let h2 = tokio::net::TcpListener::bind(h2_addr).await?;
        println!(
            "kaspec-http (hyper) listening on {listen} (HTTP/1.1) and {h2_addr} (HTTP/2), header_read_timeout {header_read_timeout:?}"
        );
        loop {
            let (stream, is_h2) = tokio::select! {
                a = h1.accept() => (a?.0, false),
                a = h2.accept() => (a?.0, true),
            };
            let port = stream.peer_addr().map(|a| a.port()).unwrap_or(0);
            let svc = hyper::service::service_fn(move |_req| answer(port));
            let io = TokioIo::new(stream);
            if is_h2 {
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .serve_connection(io, svc),
                );
            } else {
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        .header_read_timeout(header_read_timeout)
                        .serve_connection(io, svc),
                );
            }
        }
    })
}

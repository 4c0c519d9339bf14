//! kaspec's WebSocket server (`kaspec serve websocket`): the heartbeat
//! pattern on the server side (ping every P, close after P + T without a
//! frame), over tokio-tungstenite.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Our tokio-tungstenite server: echoes data frames, answers Pings, pings
/// every P and closes a connection that sent nothing for P + T.
pub fn serve(listen: SocketAddrV4, p: Duration, t: Duration) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "kaspec-ws listening on {listen} (P = {} ms, T = {} ms)",
            p.as_millis(),
            t.as_millis()
        );
        loop {
            let (conn, peer) = listener.accept().await?;
            tokio::spawn(async move {
                match tokio_tungstenite::accept_async(conn).await {
                    Ok(ws) => connection(ws, p, t, peer).await,
                    Err(e) => println!("closed {peer}: handshake: {e}"),
                }
            });
        }
    })
}

/// Serves one connection and logs why it ended — before the socket is
/// closed (its halves drop at the return), so the line is in the log by
/// the time the harness sees the close.
async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    p: Duration,
    t: Duration,
    peer: std::net::SocketAddr,
) {
    let (mut tx, mut rx) = ws.split();
    let why = heartbeat(&mut tx, &mut rx, p, t).await;
    println!("closed {peer}: {why}");
    drop((tx, rx));
}

async fn heartbeat(
    tx: &mut futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        Message,
    >,
    rx: &mut futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    >,
    p: Duration,
    t: Duration,
) -> String {
    let mut ticker = tokio::time::interval_at((Instant::now() + p).into(), p);
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(msg)) => {
                    last_rx = Instant::now();
                    let r = match msg {
                        Message::Text(_) | Message::Binary(_) => tx.send(msg).await,
                        Message::Ping(_) => tx.flush().await,
                        Message::Close(_) => return "client sent Close".into(),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        return format!("write: {e}");
                    }
                }
                Some(Err(e)) => return format!("read: {e}"),
                None => return "end of stream".into(),
            },
            _ = ticker.tick() => {
                if let Err(e) = tx.send(Message::Ping(b"kaspec-server".to_vec().into())).await {
                    return format!("sending Ping: {e}");
                }
            }
            _ = tokio::time::sleep_until((last_rx + p + t).into()) => {
                // How late this process woke for its deadline: a term of the
                // result's error budget that the harness's own probe, in
                // another process, cannot measure (read back by
                // websocket::server::timer_lateness_ms).
                let late = last_rx.elapsed().saturating_sub(p + t);
                return format!(
                    "heartbeat: nothing received for P + T = {} ms; timer fired {} us after its deadline",
                    (p + t).as_millis(),
                    late.as_micros()
                );
            }
        }
    }
}

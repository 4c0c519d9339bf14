//! kaspec's TCP echo server (`kaspec serve tcp`).

use std::net::SocketAddrV4;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Our TCP server: echoes every line, never enables keep-alive, logs each
/// connection's end. Runs until killed.
pub fn serve(listen: SocketAddrV4) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("kaspec-tcp-echo listening on {listen}");
        loop {
            let (mut conn, peer) = listener.accept().await?;
            println!("accepted {peer}");
            tokio::spawn(async move {
                let _ = SockRef::from(&conn).set_nodelay(true);
                let mut buf = [0u8; 4096];
                let why = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break "end of stream".to_string(),
                        Ok(n) => {
                            if let Err(e) = conn.write_all(&buf[..n]).await {
                                break format!("write: {e}");
                            }
                        }
                        Err(e) => break format!("read: {e}"),
                    }
                };
                println!("closed {peer}: {why}");
            });
        }
    })
}

//! The TCP client: a socket configured through socket2, one echo exchange (the
//! last activity), then idle or a send, reading until the connection fails.

use super::*;

/// What the client does after the fault is in force.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum After {
    /// Stay idle, blocked in read.
    Idle,
    /// Send a few bytes right away, then read.
    Send,
}

pub(crate) struct Ready {
    pub(crate) local: SocketAddrV4,
    pub(crate) last_rx: Instant,
}

pub(crate) struct ClientEnd {
    /// The client's socket, still open: closed only after the server was
    /// watched, or its clean close could pass for the server's detection.
    pub(crate) _socket: Option<std::net::TcpStream>,
    pub(crate) sent_at: Option<Instant>,
    /// The retransmission state just before the send.
    pub(crate) retrans: Option<linux::RetransState>,
    pub(crate) failed_at: Option<Instant>,
    pub(crate) error: Option<String>,
}

pub(crate) fn server_addr(tb: &Testbed) -> SocketAddrV4 {
    SocketAddrV4::new(tb.server.addr, tb.server_port(PORT))
}

pub(crate) fn configure(sock: &Socket, t: &TcpConfig) -> std::io::Result<()> {
    sock.set_keepalive(t.keepalive)?;
    if t.keepalive {
        sock.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(t.idle)
                .with_interval(t.interval)
                .with_retries(t.count),
        )?;
    }
    if !t.user_timeout.is_zero() {
        sock.set_tcp_user_timeout(Some(t.user_timeout))?;
    }
    Ok(())
}

/// Connects a socket configured with `tcp` and exchanges one line with the
/// echo server: returns the stream, its local end, and when the last segment
/// (the echo) was received.
pub(crate) async fn connect_and_exchange(
    server: SocketAddrV4,
    tcp: &TcpConfig,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddrV4, Instant)> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(socket2::Protocol::TCP))?;
    configure(&sock, tcp)?;
    sock.connect_timeout(&SocketAddr::V4(server).into(), Duration::from_secs(3))?;
    sock.set_nonblocking(true)?;
    let mut stream = tokio::net::TcpStream::from_std(sock.into())?;
    stream.write_all(b"hello\n").await?;
    let mut buf = [0u8; 6];
    stream.read_exact(&mut buf).await?;
    let last = Instant::now();
    let SocketAddr::V4(local) = stream.local_addr()? else {
        unreachable!("IPv4 testbed")
    };
    Ok((stream, local, last))
}

/// The client: connect with `tcp`, exchange one line (the last activity),
/// report ready, wait for the go, then idle or send and read until the
/// connection fails or `deadline` passes.
pub(crate) fn client(
    server: SocketAddrV4,
    tcp: TcpConfig,
    after: After,
    ready: mpsc::Sender<std::io::Result<Ready>>,
    go: mpsc::Receiver<Instant>,
) -> ClientEnd {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let setup = rt.block_on(async {
        let (stream, local, last_rx) = connect_and_exchange(server, &tcp).await?;
        Ok::<_, std::io::Error>((stream, Ready { local, last_rx }))
    });
    let mut stream = match setup {
        Ok((s, r)) => {
            let _ = ready.send(Ok(r));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return ClientEnd {
                _socket: None,
                sent_at: None,
                retrans: None,
                failed_at: None,
                error: None,
            };
        }
    };
    let Ok(deadline) = go.recv() else {
        return ClientEnd {
            _socket: None,
            sent_at: None,
            retrans: None,
            failed_at: None,
            error: None,
        };
    };
    let (mut end, stream) = rt.block_on(async move {
        let mut end = ClientEnd {
            _socket: None,
            sent_at: None,
            retrans: None,
            failed_at: None,
            error: None,
        };
        if after == After::Send {
            end.retrans = linux::RetransState::read(std::os::fd::AsRawFd::as_raw_fd(&stream)).ok();
            end.sent_at = Some(Instant::now());
            if let Err(e) = stream.write_all(b"data after the fault\n").await {
                end.failed_at = Some(Instant::now());
                end.error = Some(io_error_text("write", &e));
                return (end, stream);
            }
        }
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
                Err(_) => return (end, stream),
                Ok(Ok(0)) => {
                    end.failed_at = Some(Instant::now());
                    end.error = Some("read: end of stream (the peer closed the connection)".into());
                    return (end, stream);
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    end.failed_at = Some(Instant::now());
                    end.error = Some(io_error_text("read", &e));
                    return (end, stream);
                }
            }
        }
    });
    let _in_runtime = rt.enter();
    end._socket = stream.into_std().ok();
    end
}

pub(crate) fn io_error_text(op: &str, e: &std::io::Error) -> String {
    format!("{op}: std::io::Error {{ kind: {:?} }}: {e}", e.kind())
}

//! The observed socket: lapin's TCP stream wrapped so that every read and
//! write is timestamped at full resolution, with an AMQP 0-9-1 frame parser
//! (§2.3.5 frame format) that names heartbeats and Tune/Tune-Ok.

use super::*;

/// One AMQP frame seen on the wire, as far as heartbeats are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Heartbeat,
    /// Connection.Tune (server → client) with its heartbeat.
    Tune {
        heartbeat: u16,
    },
    /// Connection.Tune-Ok (client → server) with its heartbeat.
    TuneOk {
        heartbeat: u16,
    },
    /// Any other frame (method, header, body).
    Other,
}

/// Splits a byte stream into AMQP frames (type, channel, size, payload,
/// 0xCE), across reads; the protocol header is skipped.
#[derive(Debug, Default)]
pub struct FrameParser {
    pub(crate) buf: Vec<u8>,
    pub(crate) broken: bool,
}

impl FrameParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.buf.starts_with(b"AMQP") {
                if self.buf.len() < 8 {
                    break;
                }
                self.buf.drain(..8);
                continue;
            }
            if self.buf.len() < 7 {
                break;
            }
            let kind = self.buf[0];
            let size =
                u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]) as usize;
            if self.buf.len() < 7 + size + 1 {
                break;
            }
            if self.buf[7 + size] != 0xCE {
                self.broken = true;
                self.buf.clear();
                break;
            }
            let payload = &self.buf[7..7 + size];
            let method = |p: &[u8]| {
                (p.len() >= 4).then(|| {
                    (
                        u16::from_be_bytes([p[0], p[1]]),
                        u16::from_be_bytes([p[2], p[3]]),
                    )
                })
            };
            // Tune and Tune-Ok: class 10, method 30/31; channel-max (2),
            // frame-max (4), heartbeat (2).
            let heartbeat_field =
                |p: &[u8]| (p.len() >= 12).then(|| u16::from_be_bytes([p[10], p[11]]));
            let frame = match (kind, method(payload), heartbeat_field(payload)) {
                (8, _, _) => Frame::Heartbeat,
                (1, Some((10, 30)), Some(h)) => Frame::Tune { heartbeat: h },
                (1, Some((10, 31)), Some(h)) => Frame::TuneOk { heartbeat: h },
                _ => Frame::Other,
            };
            out.push(frame);
            self.buf.drain(..7 + size + 1);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// One read or write of lapin's socket.
#[derive(Debug, Clone)]
pub struct Io {
    pub at: Instant,
    pub dir: Dir,
    pub bytes: usize,
    pub frames: Vec<Frame>,
}

#[derive(Default)]
pub(crate) struct TapState {
    pub(crate) local: Option<SocketAddrV4>,
    pub(crate) io: Vec<Io>,
    pub(crate) reads: FrameParser,
    pub(crate) writes: FrameParser,
    /// Sockets lapin let go of, kept open until the case is over.
    pub(crate) held: Vec<Box<dyn Send>>,
}

/// What one connection read and wrote, shared with the case.
#[derive(Clone, Default)]
pub struct Tap(Arc<Mutex<TapState>>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, dir: Dir, bytes: &[u8]) {
        let at = Instant::now();
        let mut s = self.lock();
        let frames = match dir {
            Dir::Read => s.reads.push(bytes),
            Dir::Write => s.writes.push(bytes),
        };
        s.io.push(Io {
            at,
            dir,
            bytes: bytes.len(),
            frames,
        });
    }

    pub fn io(&self) -> Vec<Io> {
        self.lock().io.clone()
    }

    pub fn local(&self) -> Option<SocketAddrV4> {
        self.lock().local
    }

    /// Closes the sockets kept open after lapin let go of them.
    pub(crate) fn release(&self) {
        let held = std::mem::take(&mut self.lock().held);
        drop(held);
    }
}

/// lapin's TCP stream, observed.
pub struct TapStream<S: Send + 'static> {
    pub(crate) inner: Option<S>,
    pub(crate) tap: Tap,
}

impl<S: Send + 'static> Drop for TapStream<S> {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            self.tap.lock().held.push(Box::new(s));
        }
    }
}

pub(crate) fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream already released")
}

impl<S: AsyncRead + Send + Unpin + 'static> AsyncRead for TapStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.tap.record(Dir::Read, &buf[..n]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Send + Unpin + 'static> AsyncWrite for TapStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.tap.record(Dir::Write, &buf[..n]);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// No FIN while the case watches the broker: the socket stays open
    /// until [`Tap::release`].
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// tokio's reactor, whose TCP streams are [`TapStream`]s.
#[derive(Clone, Debug)]
pub(crate) struct TapReactor {
    pub(crate) inner: Tokio,
    pub(crate) tap: Tap,
}

impl Reactor for TapReactor {
    type TcpStream = TapStream<<Tokio as Reactor>::TcpStream>;
    type Sleep = <Tokio as Reactor>::Sleep;

    fn register<
        H: io::Read + io::Write + std::os::fd::AsFd + std::os::fd::AsRawFd + Send + 'static,
    >(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.inner.register(socket)
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.inner.sleep(dur)
    }

    fn interval(
        &self,
        dur: Duration,
    ) -> impl futures_util::Stream<Item = Instant> + Send + 'static {
        self.inner.interval(dur)
    }

    fn tcp_connect_addr(
        &self,
        addr: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connect = self.inner.tcp_connect_addr(addr);
        let tap = self.tap.clone();
        async move {
            let stream = connect.await?;
            if let Ok(SocketAddr::V4(local)) = stream.get_ref().local_addr() {
                tap.lock().local = Some(local);
            }
            Ok(TapStream {
                inner: Some(stream),
                tap,
            })
        }
    }
}

/// Connects lapin to `broker` asking for `request` (None: no `heartbeat`
/// in the URI), through an observed socket.
pub(crate) async fn connect(
    broker: SocketAddrV4,
    request: Option<u16>,
    name: &str,
    tap: &Tap,
) -> std::result::Result<lapin::Connection, String> {
    let query = request
        .map(|h| format!("?heartbeat={h}"))
        .unwrap_or_default();
    let uri = format!(
        "amqp://guest:guest@{}:{}/%2f{query}",
        broker.ip(),
        broker.port()
    );
    let reactor = TapReactor {
        inner: Tokio::current(),
        tap: tap.clone(),
    };
    let runtime = Runtime::new(async_rs::util::RuntimeParts::new(Tokio::current(), reactor));
    let props =
        lapin::ConnectionProperties::default().with_connection_name(name.to_string().into());
    match tokio::time::timeout(
        Duration::from_secs(15),
        lapin::Connection::connect_with_runtime(&uri, props, runtime),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("lapin could not connect to {broker}: {e}")),
        Err(_) => Err(format!("lapin did not connect to {broker} within 15 s")),
    }
}

//! Socket-level observation through sock_diag (NETLINK_SOCK_DIAG, inet_diag),
//! the interface `ss` uses. A dump lists the TCP sockets of the namespace the
//! calling thread is in, so the server-side observer runs on a thread inside
//! the server's namespace and works for any server without reading its logs.

use std::net::{IpAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use crate::host::{Host, NsThread};
use crate::{Error, Result};

/// How often the server-side observer dumps the sockets. Detection times on
/// that side are exact to within this period.
pub const POLL_PERIOD: Duration = Duration::from_millis(5);

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// One TCP socket as inet_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub state: u8,
}

/// A socket of a dump with its ages (since the last data segment, since
/// the last segment received; with TCP_INFO) and when its part was read.
pub type Aged = (TcpSocket, Option<(Duration, Duration)>, Instant);

/// IPv4 endpoints, including IPv4-mapped IPv6 ones (`::ffff:a.b.c.d`): a
/// dual-stack server (grpc-core, for one) accepts IPv4 clients on an AF_INET6
/// socket.
fn v4(ip: IpAddr, port: u16) -> Option<SocketAddrV4> {
    match ip {
        IpAddr::V4(a) => Some(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|m| SocketAddrV4::new(m, port)),
    }
}

/// A sock_diag socket in the calling thread's namespace.
pub struct SockDiag {
    sock: Socket,
    buf: Vec<u8>,
}

impl SockDiag {
    pub fn new() -> Result<SockDiag> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| Error::io("opening NETLINK_SOCK_DIAG", e))?;
        sock.bind_auto().map_err(|e| Error::io("binding sock_diag", e))?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(|e| Error::io("connecting sock_diag", e))?;
        Ok(SockDiag { sock, buf: vec![0; 64 * 1024] })
    }

    /// All TCP sockets of this namespace with IPv4 endpoints (AF_INET, and
    /// AF_INET6 with IPv4-mapped addresses).
    pub fn dump_tcp(&mut self) -> Result<Vec<TcpSocket>> {
        let mut all = self.dump_family(AF_INET)?;
        all.extend(self.dump_family(AF_INET6)?);
        Ok(all)
    }

    fn dump_family(&mut self, family: u8) -> Result<Vec<TcpSocket>> {
        Ok(self.dump_family_with(family, false, StateFlags::all())?.into_iter().map(|(s, _, _)| s).collect())
    }

    /// How long ago the connection `local <-> remote` last received a
    /// segment (data or ACK), from its TCP_INFO (`min(tcpi_last_data_recv,
    /// tcpi_last_ack_recv)`: what Linux's keep-alive timer counts from,
    /// `keepalive_time_elapsed`). `None` if the connection is not there.
    pub fn since_last_recv(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<Duration>> {
        Ok(self.dump_aged(true, StateFlags::all())?.into_iter().find(|(s, _, _)| s.local == local && s.remote == remote).and_then(|(_, idle, _)| idle).map(|(_, any)| any))
    }

    /// The time since the last *data* segment was received
    /// (`tcpi_last_data_recv`), ignoring pure ACKs: what an application-level
    /// keep-alive that counts reads (hyper's) anchors on.
    pub fn since_last_data_recv(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<Duration>> {
        Ok(self.dump_aged(true, StateFlags::all())?.into_iter().find(|(s, _, _)| s.local == local && s.remote == remote).and_then(|(_, idle, _)| idle).map(|(data, _)| data))
    }

    /// Both families' TCP sockets in `states` (the kernel filters), each
    /// with, when `info`, (time since the last data segment received, time
    /// since the last segment received) from its TCP_INFO, and the instant
    /// its part of the dump was read (the kernel fills a part when it is
    /// read, so that instant bounds when the ages were taken).
    pub fn dump_aged(&mut self, info: bool, states: StateFlags) -> Result<Vec<Aged>> {
        let mut all = self.dump_family_with(AF_INET, info, states)?;
        all.extend(self.dump_family_with(AF_INET6, info, states)?);
        Ok(all)
    }

    /// What the connection `local <-> remote` has sent and not had
    /// acknowledged, from its TCP_INFO: (`tcpi_unacked`, segments in flight;
    /// `tcpi_last_data_sent`, the time since it last sent data). `None` if
    /// the connection is not there.
    pub fn unacked(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<(u32, Duration)>> {
        let mut all = Vec::new();
        for family in [AF_INET, AF_INET6] {
            all.extend(self.dump_family_map(family, true, StateFlags::all(), parse_unacked)?);
        }
        Ok(all.into_iter().find(|((s, _), _)| s.local == local && s.remote == remote).map(|((_, u), _)| u))
    }

    fn dump_family_with(&mut self, family: u8, info: bool, states: StateFlags) -> Result<Vec<Aged>> {
        self.dump_family_map(family, info, states, |m| parse_inet_diag(m, info))
            .map(|v| v.into_iter().map(|((s, idle), at)| (s, idle, at)).collect())
    }

    /// The retransmission timeout and smoothed RTT (µs) of the connection
    /// `local <-> remote`, from its TCP_INFO (`tcpi_rto`, `tcpi_rtt`).
    pub fn rto_rtt(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<(u32, u32)>> {
        let mut all = Vec::new();
        for family in [AF_INET, AF_INET6] {
            all.extend(self.dump_family_map(family, true, StateFlags::all(), |m| {
                let (s, _) = parse_inet_diag(m, false)?;
                (s.local == local && s.remote == remote).then(|| tcp_info_u32(m, &[8, 68])).flatten()
            })?);
        }
        Ok(all.into_iter().next().map(|(v, _)| (v[0], v[1])))
    }

    /// One dump of `family`, each socket's message (the netlink header
    /// stripped) mapped by `f`, with the instant its part was read.
    fn dump_family_map<T>(&mut self, family: u8, info: bool, states: StateFlags, f: impl Fn(&[u8]) -> Option<T>) -> Result<Vec<(T, Instant)>> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut req = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: if info { ExtensionFlags::INFO } else { ExtensionFlags::empty() },
                states,
                socket_id: if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() },
            })
            .into(),
        );
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|e| Error::io("sending a sock_diag dump request", e))?;
        let mut sockets = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(|e| Error::io("reading a sock_diag dump", e))?;
            let read_at = Instant::now();
            let mut off = 0;
            while off + NLMSG_HDR <= n {
                let msg = &self.buf[off..n];
                let len = (u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize).min(msg.len());
                match u16::from_ne_bytes([msg[4], msg[5]]) {
                    NLMSG_DONE => return Ok(sockets),
                    NLMSG_ERROR => {
                        let errno = msg.get(16..20).map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                        return Err(Error::io("sock_diag dump failed", std::io::Error::from_raw_os_error(errno)));
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        if let Some(s) = f(&msg[NLMSG_HDR..len]) {
                            sockets.push((s, read_at));
                        }
                    }
                    _ => {}
                }
                if len < NLMSG_HDR {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

// The netlink and inet_diag layouts the dump is read with, by hand: the
// generic deserializer allocates every attribute of every socket, which at
// 10,000 sockets made one dump take hundreds of ms (include/uapi/linux/
// netlink.h, sock_diag.h, inet_diag.h).
const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// struct inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid
/// (sport, dport big-endian at 4 and 6; src at 8, dst at 24, 16 bytes each),
/// then expires, rqueue, wqueue, uid, inode: 72 bytes; attributes follow.
const INET_DIAG_MSG: usize = 72;
const INET_DIAG_INFO: u16 = 2;

/// One inet_diag_msg (the netlink header stripped): the socket with IPv4
/// endpoints (None otherwise) and, with `info`, its ages from TCP_INFO.
fn parse_inet_diag(m: &[u8], info: bool) -> Option<(TcpSocket, Option<(Duration, Duration)>)> {
    if m.len() < INET_DIAG_MSG {
        return None;
    }
    let addr = |at: usize| -> IpAddr {
        if m[0] == AF_INET {
            IpAddr::from([m[at], m[at + 1], m[at + 2], m[at + 3]])
        } else {
            let mut b = [0u8; 16];
            b.copy_from_slice(&m[at..at + 16]);
            IpAddr::from(b)
        }
    };
    let port = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let local = v4(addr(8), port(4))?;
    let remote = v4(addr(24), port(6))?;
    let mut idle = None;
    let mut off = INET_DIAG_MSG;
    while info && off + 4 <= m.len() {
        let len = u16::from_ne_bytes([m[off], m[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([m[off + 2], m[off + 3]]);
        if len < 4 || off + len > m.len() {
            break;
        }
        let b = &m[off + 4..off + len];
        // struct tcp_info: tcpi_last_data_recv at 52, tcpi_last_ack_recv at 56 (u32, ms).
        if kind == INET_DIAG_INFO && b.len() >= 60 {
            let at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            idle = Some((Duration::from_millis(at(52) as u64), Duration::from_millis(at(52).min(at(56)) as u64)));
        }
        off += (len + 3) & !3;
    }
    Some((TcpSocket { local, remote, state: m[1] }, idle))
}

/// The u32 fields of a message's struct tcp_info at byte offsets `at`
/// (None without an INET_DIAG_INFO attribute that long).
fn tcp_info_u32(m: &[u8], at: &[usize]) -> Option<Vec<u32>> {
    let mut off = INET_DIAG_MSG;
    while off + 4 <= m.len() {
        let len = u16::from_ne_bytes([m[off], m[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([m[off + 2], m[off + 3]]);
        if len < 4 || off + len > m.len() {
            return None;
        }
        let b = &m[off + 4..off + len];
        if kind == INET_DIAG_INFO {
            return at.iter().map(|&o| b.get(o..o + 4).map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))).collect();
        }
        off += (len + 3) & !3;
    }
    None
}

/// A socket with (`tcpi_unacked` at 24, `tcpi_last_data_sent` at 44 as an age).
fn parse_unacked(m: &[u8]) -> Option<(TcpSocket, (u32, Duration))> {
    let (s, _) = parse_inet_diag(m, false)?;
    let v = tcp_info_u32(m, &[24, 44])?;
    Some((s, (v[0], Duration::from_millis(v[1] as u64))))
}

/// [`SockDiag::rto_rtt`] of a connection in `host`, run in its namespace.
pub fn rto_rtt(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<(u32, u32)>> {
    host.run(move || SockDiag::new()?.rto_rtt(local, remote))?
}

/// The local end of the one established connection from this namespace to
/// `remote` (run on a thread inside the namespace, e.g. the client's).
pub fn local_end_towards(remote: SocketAddrV4) -> Result<SocketAddrV4> {
    let found: Vec<_> = SockDiag::new()?
        .dump_tcp()?
        .into_iter()
        .filter(|s| s.remote == remote && s.state == 1)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.local),
        [] => Err(Error::Other(format!("no established connection towards {remote}"))),
        _ => Err(Error::Other(format!("{} established connections towards {remote}, expected one", found.len()))),
    }
}

/// When a connection in `host` last received a *data* segment
/// ([`SockDiag::since_last_data_recv`]), as an instant: the age is read and
/// the clock taken in the namespace's own thread, back to back, so the time
/// it takes to get into that thread (hundreds of ms on a loaded machine)
/// does not move the anchor.
pub fn last_data_recv_at(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<Instant>> {
    host.run(move || {
        let mut d = SockDiag::new()?;
        let at = Instant::now();
        Ok(d.since_last_data_recv(local, remote)?.map(|age| at - age))
    })?
}

/// What a connection in `host` has in flight ([`SockDiag::unacked`]):
/// unacknowledged segments and when it last sent data, as an instant (read
/// as in [`last_data_recv_at`]).
pub fn unacked_at(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<(u32, Instant)>> {
    host.run(move || {
        let mut d = SockDiag::new()?;
        let at = Instant::now();
        Ok(d.unacked(local, remote)?.map(|(n, age)| (n, at - age)))
    })?
}

/// When a connection in `host` last received any segment
/// ([`SockDiag::since_last_recv`]), as an instant (see [`last_data_recv_at`]).
pub fn last_recv_at(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Result<Option<Instant>> {
    host.run(move || {
        let mut d = SockDiag::new()?;
        let at = Instant::now();
        Ok(d.since_last_recv(local, remote)?.map(|age| at - age))
    })?
}

/// The moment a watched socket stopped being an open connection.
#[derive(Debug, Clone)]
pub struct SocketClosed {
    pub at: Instant,
    /// The state it was last seen in (`gone` when it left the table).
    pub state: String,
    /// When the dump before it (which still saw the connection open)
    /// started: the close happened between `seen_open_at` and `at`.
    pub seen_open_at: Instant,
}

impl SocketClosed {
    /// The observer's resolution for this close: the interval in which it
    /// happened (poll period + the dump's own time), rounded up to a ms.
    pub fn resolution_ms(&self) -> u64 {
        (self.at - self.seen_open_at).as_micros().div_ceil(1000) as u64
    }
}

/// Watches one connection from inside a host: reports the first dump in
/// which the socket has been closed by its owner or its stack (FIN_WAIT*,
/// LAST_ACK, CLOSING, TIME_WAIT, CLOSE or gone). CLOSE_WAIT (the peer closed,
/// the owner has not) does not count.
pub struct SocketWatch {
    stop: Arc<AtomicBool>,
    thread: Option<NsThread<Result<Option<SocketClosed>>>>,
}

impl SocketWatch {
    /// Starts watching `local <-> remote` inside `host`. Fails if the
    /// connection is not there to begin with.
    pub fn start(host: &Host, local: SocketAddrV4, remote: SocketAddrV4) -> Result<SocketWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = host.spawn_thread("kaspec-sockwatch", move || -> Result<Option<SocketClosed>> {
            let mut diag = match SockDiag::new() {
                Ok(d) => d,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Other(e.to_string())));
                    return Err(e);
                }
            };
            let find = |d: &mut SockDiag| -> Result<Option<u8>> {
                Ok(d.dump_tcp()?.into_iter().find(|s| s.local == local && s.remote == remote).map(|s| s.state))
            };
            match find(&mut diag) {
                Ok(Some(1)) => {
                    let _ = ready_tx.send(Ok(()));
                }
                Ok(other) => {
                    let seen: Vec<String> = diag
                        .dump_tcp()
                        .map(|all| all.iter().map(|s| format!("{} <-> {} {}", s.local, s.remote, tcp_state_name(s.state))).collect())
                        .unwrap_or_default();
                    let e = Error::Other(format!(
                        "socket observer: connection {local} <-> {remote} is not established ({}); sockets here: [{}]",
                        other.map(tcp_state_name).unwrap_or("not found"),
                        seen.join(", ")
                    ));
                    let _ = ready_tx.send(Err(Error::Other(e.to_string())));
                    return Err(e);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Other(e.to_string())));
                    return Err(e);
                }
            }
            let mut seen_open_at = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(POLL_PERIOD);
                let started = Instant::now();
                let state = find(&mut diag)?;
                let at = Instant::now();
                match state {
                    Some(1) | Some(8) => seen_open_at = started,
                    Some(s) => return Ok(Some(SocketClosed { at, state: tcp_state_name(s).into(), seen_open_at })),
                    None => return Ok(Some(SocketClosed { at, state: "gone".into(), seen_open_at })),
                }
            }
            Ok(None)
        })?;
        ready_rx.recv().map_err(|_| Error::Other("server-side observer thread died".into()))??;
        Ok(SocketWatch { stop, thread: Some(thread) })
    }

    /// Whether the socket has been closed yet (non-blocking).
    pub fn is_done(&self) -> bool {
        self.thread.as_ref().map(|t| t.is_finished()).unwrap_or(true)
    }

    /// Waits until `deadline` for the close; `None` if it did not happen.
    pub fn wait(mut self, deadline: Instant) -> Result<Option<SocketClosed>> {
        while !self.is_done() && Instant::now() < deadline {
            std::thread::sleep(POLL_PERIOD);
        }
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join()?,
            None => Ok(None),
        }
    }
}

impl Drop for SocketWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inet_diag_msg as the kernel lays it out, with a TCP_INFO attribute.
    fn message(family: u8, src: &[u8], sport: u16, dst: &[u8], dport: u16, last_data: u32, last_ack: u32) -> Vec<u8> {
        let mut m = vec![0u8; INET_DIAG_MSG];
        m[0] = family;
        m[1] = 1;
        m[4..6].copy_from_slice(&sport.to_be_bytes());
        m[6..8].copy_from_slice(&dport.to_be_bytes());
        m[8..8 + src.len()].copy_from_slice(src);
        m[24..24 + dst.len()].copy_from_slice(dst);
        let mut info = vec![0u8; 104];
        info[52..56].copy_from_slice(&last_data.to_ne_bytes());
        info[56..60].copy_from_slice(&last_ack.to_ne_bytes());
        m.extend(((info.len() + 4) as u16).to_ne_bytes());
        m.extend(INET_DIAG_INFO.to_ne_bytes());
        m.extend(info);
        m
    }

    #[test]
    fn a_hand_read_message_gives_the_endpoints_state_and_ages() {
        let m = message(AF_INET, &[198, 18, 0, 2], 1883, &[198, 18, 1, 2], 40000, 700, 300);
        let (s, idle) = parse_inet_diag(&m, true).unwrap();
        assert_eq!((s.local, s.remote, s.state), ("198.18.0.2:1883".parse().unwrap(), "198.18.1.2:40000".parse().unwrap(), 1));
        assert_eq!(idle, Some((Duration::from_millis(700), Duration::from_millis(300))));
        assert_eq!(parse_inet_diag(&m, false).unwrap().1, None, "ages only when asked for");
        // An IPv4-mapped IPv6 socket is IPv4; a real IPv6 one is skipped.
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2];
        assert!(parse_inet_diag(&message(AF_INET6, &mapped, 1, &mapped, 2, 0, 0), true).is_some());
        assert!(parse_inet_diag(&message(AF_INET6, &[0x20, 1, 0xd, 0xb8], 1, &mapped, 2, 0, 0), true).is_none());
        assert!(parse_inet_diag(&m[..40], true).is_none(), "a short message is no socket");
    }

    #[test]
    fn a_hand_read_message_gives_what_is_in_flight() {
        let mut m = message(AF_INET, &[198, 18, 0, 2], 1883, &[198, 18, 1, 2], 40000, 700, 300);
        // tcp_info starts after the message and the attribute's 4-byte header.
        let info = INET_DIAG_MSG + 4;
        m[info + 24..info + 28].copy_from_slice(&2u32.to_ne_bytes());
        m[info + 44..info + 48].copy_from_slice(&12u32.to_ne_bytes());
        let (s, (unacked, sent)) = parse_unacked(&m).unwrap();
        assert_eq!((s.remote.port(), unacked, sent), (40000, 2, Duration::from_millis(12)));
        assert!(parse_unacked(&m[..INET_DIAG_MSG]).is_none(), "no TCP_INFO, no answer");
    }
}

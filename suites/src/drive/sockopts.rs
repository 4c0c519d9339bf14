//! The keep-alive options a server process set on one of its sockets, read
//! back from outside (pidfd_getfd + getsockopt), and their text form; the
//! same of a client library's socket in this process.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use kaspec_harness::{Error, Result};

use crate::config::TcpConfig;
use crate::model::ms_of;

/// A socket's keep-alive options and TCP_USER_TIMEOUT, read back.
pub fn options(sock: &socket2::SockRef<'_>) -> TcpConfig {
    TcpConfig {
        keepalive: sock.keepalive().unwrap_or(false),
        idle: sock.keepalive_time().unwrap_or_default(),
        interval: sock.keepalive_interval().unwrap_or_default(),
        count: sock.keepalive_retries().unwrap_or(0),
        user_timeout: sock.tcp_user_timeout().ok().flatten().unwrap_or_default(),
    }
}

/// The keep-alive options on process `pid`'s socket `local <-> peer`,
/// read with getsockopt on a duplicate of its fd (pidfd_getfd), and the
/// same as text.
pub fn of_process(
    pid: u32,
    local: SocketAddrV4,
    peer: SocketAddrV4,
) -> Result<(TcpConfig, String)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if pidfd < 0 {
        return Err(Error::Other(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        )));
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| Error::io(format!("listing /proc/{pid}/fd"), e))?;
    for e in fds.flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !std::fs::read_link(e.path())
            .unwrap_or_default()
            .to_string_lossy()
            .starts_with("socket:")
        {
            continue;
        }
        let fd = unsafe {
            libc::syscall(
                libc::SYS_pidfd_getfd,
                std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                n,
                0,
            )
        } as i32;
        if fd < 0 {
            continue;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = socket2::SockRef::from(&fd);
        let l = sock.local_addr().ok().and_then(|a| a.as_socket());
        let p = sock.peer_addr().ok().and_then(|a| a.as_socket());
        if l != Some(SocketAddr::V4(local)) || p != Some(SocketAddr::V4(peer)) {
            continue;
        }
        let t = options(&sock);
        return Ok((t, text(&t)));
    }
    Err(Error::Other(format!(
        "process {pid} has no socket {local} <-> {peer}"
    )))
}

///
/// With SO_KEEPALIVE off the keep-alive timings are inert (the kernel's
/// defaults, never used), so they are not shown or compared.
pub fn text(t: &TcpConfig) -> String {
    if !t.keepalive {
        return format!(
            "SO_KEEPALIVE=false TCP_USER_TIMEOUT={}ms",
            ms_of(t.user_timeout)
        );
    }
    format!(
        "SO_KEEPALIVE={} TCP_KEEPIDLE={}s TCP_KEEPINTVL={}s TCP_KEEPCNT={} TCP_USER_TIMEOUT={}ms",
        t.keepalive,
        t.idle.as_secs(),
        t.interval.as_secs(),
        t.count,
        ms_of(t.user_timeout)
    )
}

/// The fd of this process's TCP socket `local_port -> server`.
pub fn own_socket(local_port: u16, server: SocketAddrV4) -> Option<i32> {
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&bfd);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        if local.map(|a| a.port()) == Some(local_port) && peer == Some(SocketAddr::V4(server)) {
            return Some(fd);
        }
    }
    None
}

/// One of this process's sockets, as [`own_state`] reads it.
pub struct OwnSocket {
    /// Its keep-alive options.
    pub tcp: TcpConfig,
    /// Since its last received segment, and its last received data (TCP_INFO, in jiffies).
    pub since_rx: Duration,
    pub since_data_rx: Duration,
    /// Its TCP state (1 = ESTABLISHED; 0 when TCP_INFO failed).
    pub state: u8,
}

/// One of this process's sockets: its keep-alive options, the time since
/// its last received segment and data (TCP_INFO), and its TCP state.
pub fn own_state(fd: i32) -> OwnSocket {
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&bfd);
    let t = options(&sock);
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return OwnSocket {
            tcp: t,
            since_rx: Duration::ZERO,
            since_data_rx: Duration::ZERO,
            state: 0,
        };
    }
    OwnSocket {
        tcp: t,
        since_rx: Duration::from_millis(
            info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv) as u64
        ),
        since_data_rx: Duration::from_millis(info.tcpi_last_data_recv as u64),
        state: info.tcpi_state,
    }
}

//! The client socket's TCP keep-alive knobs (`tcp.*`): what the TCP cases
//! set on their own sockets, and the socket options other protocols' clients
//! inherit (gRPC's tonic, the TCP model of several windows).

use std::time::Duration;

use super::{Config, Key, Kind};

pub static KEEPALIVE: Key = Key {
    name: "tcp.keepalive",
    kind: Kind::Bool,
    default: "true",
    doc: "SO_KEEPALIVE on the client socket",
};
pub static IDLE: Key = Key {
    name: "tcp.idle",
    kind: Kind::Secs {
        min: 1,
        max: 32767,
        zero_ok: false,
    },
    default: "2s",
    doc: "TCP_KEEPIDLE: idle time before the first probe (whole seconds)",
};
pub static INTERVAL: Key = Key {
    name: "tcp.interval",
    kind: Kind::Secs {
        min: 1,
        max: 32767,
        zero_ok: false,
    },
    default: "1s",
    doc: "TCP_KEEPINTVL: time between probes (whole seconds)",
};
pub static COUNT: Key = Key {
    name: "tcp.count",
    kind: Kind::Count { min: 1, max: 127 },
    default: "3",
    doc: "TCP_KEEPCNT: unanswered probes before the connection is dead",
};
pub static USER_TIMEOUT: Key = Key {
    name: "tcp.user_timeout",
    kind: Kind::Millis {
        min: 0,
        max: i32::MAX as u64,
    },
    default: "0s",
    doc: "TCP_USER_TIMEOUT: max age of unacknowledged data (0 = off, the kernel default)",
};

/// The `tcp.*` keys, in help order.
pub static KNOBS: [&Key; 5] = [&KEEPALIVE, &IDLE, &INTERVAL, &COUNT, &USER_TIMEOUT];

/// TCP keep-alive knobs of a client socket (socket2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpConfig {
    pub keepalive: bool,
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    /// Zero means off.
    pub user_timeout: Duration,
}

impl TcpConfig {
    /// The `tcp.*` values of `c`.
    pub fn of(c: &Config) -> TcpConfig {
        TcpConfig::from_keys(c, [&KEEPALIVE, &IDLE, &INTERVAL, &COUNT, &USER_TIMEOUT])
    }

    /// The socket options a client library sets from its own five knobs:
    /// on/off, idle, interval, count and user timeout, in that order.
    pub fn from_keys(
        c: &Config,
        [on, idle, interval, count, user_timeout]: [&Key; 5],
    ) -> TcpConfig {
        TcpConfig {
            keepalive: c.flag(on),
            idle: c.dur(idle),
            interval: c.dur(interval),
            count: c.count(count) as u32,
            user_timeout: c.dur(user_timeout),
        }
    }
}

//! The `ssh.*` client knobs: OpenSSH's ssh (`ServerAlive*`, `TCPKeepAlive`,
//! `ConnectTimeout`, and `ssh.options` in the syntax users write) and
//! russh's `client::Config`, with the typed view the cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static SERVER_ALIVE_INTERVAL: Key = Key {
    name: "ssh.server_alive_interval",
    kind: Kind::Secs { min: 1, max: 2_147_483, zero_ok: true },
    default: "1s",
    doc: "OpenSSH ssh ServerAliveInterval: a keepalive@openssh.com request after this long without anything from the server (whole seconds, 0 = off, OpenSSH's default)",
};
pub static SERVER_ALIVE_COUNT_MAX: Key = Key {
    name: "ssh.server_alive_count_max",
    kind: Kind::Count { min: 0, max: 1_000_000 },
    default: "2",
    doc: "OpenSSH ssh ServerAliveCountMax: unanswered alive requests before ssh exits (OpenSSH's default 3)",
};
pub static TCP_KEEPALIVE: Key = Key {
    name: "ssh.tcp_keepalive",
    kind: Kind::Bool,
    default: "false",
    doc: "OpenSSH ssh TCPKeepAlive: SO_KEEPALIVE on its socket, timed by the client host's net.ipv4.tcp_keepalive_* (OpenSSH's default yes; kaspec's no, so that only alive messages count)",
};
pub static CONNECT_TIMEOUT: Key = Key {
    name: "ssh.connect_timeout",
    kind: Kind::Secs { min: 1, max: 2_147_483, zero_ok: true },
    default: "0s",
    doc: "OpenSSH ssh ConnectTimeout: bounds the TCP connect and the banner exchange only, never an idle session (0 = the system's)",
};
pub static OPTIONS: Key = Key {
    name: "ssh.options",
    kind: Kind::Expand(super::options::parse_ssh_options),
    default: "",
    doc: "OpenSSH client options as users write them: an `-o Key=Value` list or an ssh_config fragment (`Key Value` lines); ServerAliveInterval, ServerAliveCountMax, TCPKeepAlive and ConnectTimeout set the ssh.* knobs above",
};
pub static KEEPALIVE_INTERVAL: Key = Key {
    name: "ssh.keepalive_interval",
    kind: Kind::Millis { min: 0, max: 86_400_000 },
    default: "1s",
    doc: "russh client::Config::keepalive_interval: a keepalive@openssh.com request after this long without anything from the server (0 = None, russh's default)",
};
pub static KEEPALIVE_MAX: Key = Key {
    name: "ssh.keepalive_max",
    kind: Kind::Count { min: 0, max: 1_000_000 },
    default: "2",
    doc: "russh client::Config::keepalive_max: unanswered keepalives before the session ends (0 = never; russh's default 3)",
};
pub static INACTIVITY_TIMEOUT: Key = Key {
    name: "ssh.inactivity_timeout",
    kind: Kind::Millis { min: 0, max: 86_400_000 },
    default: "3s",
    doc: "russh client::Config::inactivity_timeout: the session ends after this long without an exchange (0 = None, russh's default); used by the ssh/russh-inactivity_timeout cases",
};

/// The `ssh.*` keys, in help order.
pub static KNOBS: [&Key; 8] = [
    &SERVER_ALIVE_INTERVAL,
    &SERVER_ALIVE_COUNT_MAX,
    &TCP_KEEPALIVE,
    &CONNECT_TIMEOUT,
    &OPTIONS,
    &KEEPALIVE_INTERVAL,
    &KEEPALIVE_MAX,
    &INACTIVITY_TIMEOUT,
];

/// The SSH clients' knobs: OpenSSH's ssh (`ServerAlive*`, `TCPKeepAlive`,
/// `ConnectTimeout`) and russh's `client::Config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SshConfig {
    pub server_alive_interval: Duration,
    pub server_alive_count_max: u64,
    pub tcp_keepalive: bool,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: u64,
    pub inactivity_timeout: Duration,
}

impl SshConfig {
    /// The `ssh.*` values of `c`.
    pub fn of(c: &Config) -> SshConfig {
        SshConfig {
            server_alive_interval: c.dur(&SERVER_ALIVE_INTERVAL),
            server_alive_count_max: c.count(&SERVER_ALIVE_COUNT_MAX),
            tcp_keepalive: c.flag(&TCP_KEEPALIVE),
            connect_timeout: c.dur(&CONNECT_TIMEOUT),
            keepalive_interval: c.dur(&KEEPALIVE_INTERVAL),
            keepalive_max: c.count(&KEEPALIVE_MAX),
            inactivity_timeout: c.dur(&INACTIVITY_TIMEOUT),
        }
    }
}

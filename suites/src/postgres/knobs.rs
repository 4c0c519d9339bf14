//! The `postgres.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static KEEPALIVES: Key = Key {
    name: "postgres.keepalives",
    kind: Kind::Bool,
    default: "true",
    doc: "tokio-postgres Config::keepalives: SO_KEEPALIVE on the client socket (libpq keepalives)",
};
pub static KEEPALIVES_IDLE: Key = Key {
    name: "postgres.keepalives_idle",
    kind: Kind::Secs { min: 1, max: 32767, zero_ok: false },
    default: "2s",
    doc: "tokio-postgres Config::keepalives_idle: TCP_KEEPIDLE (whole seconds; libpq keepalives_idle)",
};
pub static KEEPALIVES_INTERVAL: Key = Key {
    name: "postgres.keepalives_interval",
    kind: Kind::Secs { min: 1, max: 32767, zero_ok: false },
    default: "1s",
    doc: "tokio-postgres Config::keepalives_interval: TCP_KEEPINTVL (whole seconds; libpq keepalives_interval)",
};
pub static KEEPALIVES_RETRIES: Key = Key {
    name: "postgres.keepalives_retries",
    kind: Kind::Count { min: 1, max: 127 },
    default: "3",
    doc: "tokio-postgres Config::keepalives_retries: TCP_KEEPCNT (libpq calls it keepalives_count)",
};
pub static TCP_USER_TIMEOUT: Key = Key {
    name: "postgres.tcp_user_timeout",
    kind: Kind::Millis { min: 0, max: i32::MAX as u64 },
    default: "0s",
    doc: "tokio-postgres Config::tcp_user_timeout: TCP_USER_TIMEOUT (0 = off; libpq tcp_user_timeout, ms)",
};
pub static CONNINFO: Key = Key {
    name: "postgres.conninfo",
    kind: Kind::Expand(super::conninfo::parse_conninfo),
    default: "",
    doc: "a libpq connection string (key=value or postgresql:// URL) whose keep-alive keys set the postgres.* knobs; tcp_user_timeout in it is libpq milliseconds",
};

/// The `postgres.*` keys, in help order.
pub static KNOBS: [&Key; 6] = [
    &KEEPALIVES,
    &KEEPALIVES_IDLE,
    &KEEPALIVES_INTERVAL,
    &KEEPALIVES_RETRIES,
    &TCP_USER_TIMEOUT,
    &CONNINFO,
];

/// Keep-alive knobs of the tokio-postgres client (its `Config` names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostgresConfig {
    pub keepalives: bool,
    pub keepalives_idle: Duration,
    pub keepalives_interval: Duration,
    pub keepalives_retries: u32,
    /// Zero means off.
    pub tcp_user_timeout: Duration,
}

impl PostgresConfig {
    /// The `postgres.*` values of `c`.
    pub fn of(c: &Config) -> PostgresConfig {
        let t = crate::config::TcpConfig::from_keys(
            c,
            [
                &KEEPALIVES,
                &KEEPALIVES_IDLE,
                &KEEPALIVES_INTERVAL,
                &KEEPALIVES_RETRIES,
                &TCP_USER_TIMEOUT,
            ],
        );
        PostgresConfig {
            keepalives: t.keepalive,
            keepalives_idle: t.idle,
            keepalives_interval: t.interval,
            keepalives_retries: t.count,
            tcp_user_timeout: t.user_timeout,
        }
    }
}

impl PostgresConfig {
    /// The socket options tokio-postgres sets from these knobs.
    pub fn tcp(&self) -> crate::config::TcpConfig {
        crate::config::TcpConfig {
            keepalive: self.keepalives,
            idle: self.keepalives_idle,
            interval: self.keepalives_interval,
            count: self.keepalives_retries,
            user_timeout: self.tcp_user_timeout,
        }
    }
}

//! The `mariadb.*` client knobs: mysql_async's keep-alive and pool TTL
//! (also from a `mysql://` URL in the syntax users write), and what
//! `kaspec validate` compares, with the typed view the cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static URL: Key = Key {
    name: "mariadb.url",
    kind: Kind::Expand(super::url::expand_mysql_url),
    default: "",
    doc: "a mysql_async connection URL (mysql://…?key=value, Opts::from_url's keys); tcp_keepalive (ms) and conn_ttl (s) in it set the mariadb.* knobs, the rest is handed to mysql_async as given; host, port, user, password and database are kaspec's own",
};
pub static TCP_KEEPALIVE: Key = Key {
    name: "mariadb.tcp_keepalive",
    kind: Kind::Millis { min: 0, max: 2_147_483_000 },
    default: "0s",
    doc: "mysql_async Opts::tcp_keepalive (URL tcp_keepalive, ms): sets TCP_KEEPIDLE only, interval and count stay the host's (0 = none, the crate's default)",
};
pub static CONN_TTL: Key = Key {
    name: "mariadb.conn_ttl",
    kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: true },
    default: "0s",
    doc: "mysql_async Opts::conn_ttl (URL conn_ttl, s): the pool discards a connection idle longer than this at checkout (0 = the server's @@wait_timeout, the crate's default)",
};
pub static IDLE: Key = Key {
    name: "mariadb.idle",
    kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: true },
    default: "0s",
    doc: "how long the application leaves a pooled connection idle between queries (for `kaspec validate`; 0 = not stated)",
};
pub static SERVER_WAIT_TIMEOUT: Key = Key {
    name: "mariadb.server_wait_timeout",
    kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: false },
    default: "28800s",
    doc: "the wait_timeout of the MariaDB server the client talks to (for `kaspec validate`; MariaDB's default 28800 s)",
};

/// The `mariadb.*` keys, in help order.
pub static KNOBS: [&Key; 5] = [&URL, &TCP_KEEPALIVE, &CONN_TTL, &IDLE, &SERVER_WAIT_TIMEOUT];

/// MariaDB knobs of the mysql_async client, and what `kaspec validate`
/// compares (a pooled connection's idle time against the server's
/// `wait_timeout`).
#[derive(Debug, Clone, PartialEq)]
pub struct MariadbConfig {
    /// The `mariadb.url` as given ("" = none): its other keys go to mysql_async.
    pub url: String,
    /// Zero: none (mysql_async's default).
    pub tcp_keepalive: Duration,
    /// Zero: the pool's TTL is the server's @@wait_timeout.
    pub conn_ttl: Duration,
    /// Zero: not stated.
    pub idle: Duration,
    pub server_wait_timeout: Duration,
}

impl MariadbConfig {
    /// The `mariadb.*` values of `c`.
    pub fn of(c: &Config) -> MariadbConfig {
        MariadbConfig {
            url: c.text(&URL).trim().to_string(),
            tcp_keepalive: c.dur(&TCP_KEEPALIVE),
            conn_ttl: c.dur(&CONN_TTL),
            idle: c.dur(&IDLE),
            server_wait_timeout: c.dur(&SERVER_WAIT_TIMEOUT),
        }
    }
}

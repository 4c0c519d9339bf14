//! The `redis.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, ConfigError, Key, Kind, TcpConfig};

pub static RESPONSE_TIMEOUT: Key = Key {
    name: "redis.response_timeout",
    kind: Kind::Millis { min: 0, max: 3_600_000 },
    default: "500ms",
    doc: "redis-rs AsyncConnectionConfig::set_response_timeout: a command fails when its reply is not in within this (0 = none; the crate's own default is 500 ms)",
};
pub static IDLE: Key = Key {
    name: "redis.idle",
    kind: Kind::Secs { min: 1, max: 2_592_000, zero_ok: true },
    default: "0s",
    doc: "how long the application leaves a connection idle between commands (for `kaspec validate`; 0 = not stated)",
};
pub static SERVER_TIMEOUT: Key = Key {
    name: "redis.server_timeout",
    kind: Kind::Secs { min: 1, max: 2_592_000, zero_ok: true },
    default: "0s",
    doc: "the `timeout` of the Redis server the client talks to (for `kaspec validate`; 0 = never, Redis's default)",
};

pub static KEEPALIVE: Key = Key {
    name: "redis.keepalive",
    kind: Kind::Bool,
    default: "false",
    doc: "redis-rs TcpSettings::set_keepalive: SO_KEEPALIVE on the client socket (off: the crate's default)",
};
pub static KEEPALIVE_IDLE: Key = Key {
    name: "redis.keepalive_idle",
    kind: Kind::Secs {
        min: 1,
        max: 32767,
        zero_ok: false,
    },
    default: "2s",
    doc: "socket2 TcpKeepalive::with_time given to TcpSettings: TCP_KEEPIDLE (whole seconds)",
};
pub static KEEPALIVE_INTERVAL: Key = Key {
    name: "redis.keepalive_interval",
    kind: Kind::Secs {
        min: 1,
        max: 32767,
        zero_ok: false,
    },
    default: "1s",
    doc: "socket2 TcpKeepalive::with_interval: TCP_KEEPINTVL (whole seconds)",
};
pub static KEEPALIVE_RETRIES: Key = Key {
    name: "redis.keepalive_retries",
    kind: Kind::Count { min: 1, max: 127 },
    default: "3",
    doc: "socket2 TcpKeepalive::with_retries: TCP_KEEPCNT",
};
pub static TCP_USER_TIMEOUT: Key = Key {
    name: "redis.tcp_user_timeout",
    kind: Kind::Millis {
        min: 0,
        max: i32::MAX as u64,
    },
    default: "0s",
    doc: "redis-rs TcpSettings::set_user_timeout: TCP_USER_TIMEOUT (0 = off)",
};
pub static URL: Key = Key {
    name: "redis.url",
    kind: Kind::Expand(check_url),
    default: "",
    doc: "a redis:// URL as the application gives it to redis-rs; checked with the crate's own parser, and a query option redis-rs 1.x ignores (it reads only `protocol`) is refused by name",
};

/// The `redis.*` keys, in help order.
pub static KNOBS: [&Key; 9] = [
    &RESPONSE_TIMEOUT,
    &KEEPALIVE,
    &KEEPALIVE_IDLE,
    &KEEPALIVE_INTERVAL,
    &KEEPALIVE_RETRIES,
    &TCP_USER_TIMEOUT,
    &URL,
    &IDLE,
    &SERVER_TIMEOUT,
];

/// A `redis://` URL: redis-rs's `IntoConnectionInfo` must take it, and every
/// query option must be one it reads. redis-rs 1.8 connection.rs
/// `url_to_tcp_connection_info` reads only `protocol` from the query and
/// leaves `tcp_settings: TcpSettings::default()`: a redis-py style
/// `?socket_keepalive=true` or `?health_check_interval=30` is silently
/// dropped, so the application believes in a keep-alive it does not have.
/// Sets no other key (the URL carries no keep-alive for redis-rs).
fn check_url(text: &str) -> Result<Vec<(&'static str, String, String)>, ConfigError> {
    let bad = |what: String| {
        ConfigError(format!(
            "redis.url={}: {what}",
            crate::config::one_line(text.trim())
        ))
    };
    // redis-rs's own parser: a URL with the scheme redis, rediss,
    // valkey(s) or redis+unix.
    let url = redis::parse_redis_url(text.trim()).ok_or_else(|| {
        bad(
            "not a URL redis-rs parses (redis://[user:password@]host[:port][/db][?protocol=resp3])"
                .into(),
        )
    })?;
    for (k, _) in url.query_pairs() {
        if k != "protocol" {
            return Err(bad(format!(
                "redis-rs 1.x ignores the query option `{k}` (it reads only `protocol`; TCP keep-alive and timeouts are redis.keepalive*, redis.tcp_user_timeout and redis.response_timeout)"
            )));
        }
    }
    redis::IntoConnectionInfo::into_connection_info(text.trim())
        .map_err(|e| bad(format!("redis-rs rejects it: {e}")))?;
    Ok(Vec::new())
}

/// Redis knobs: redis-rs's response timeout, and what `kaspec validate`
/// compares (the application's idle time against the server's `timeout`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisConfig {
    /// Zero: no response timeout.
    pub response_timeout: Duration,
    /// The client socket's TcpSettings (redis.keepalive*, redis.tcp_user_timeout).
    pub tcp: TcpConfig,
    /// Zero: not stated.
    pub idle: Duration,
    /// Zero: the server never closes idle clients.
    pub server_timeout: Duration,
}

impl RedisConfig {
    /// The `redis.*` values of `c`.
    pub fn of(c: &Config) -> RedisConfig {
        RedisConfig {
            response_timeout: c.dur(&RESPONSE_TIMEOUT),
            tcp: TcpConfig::from_keys(
                c,
                [
                    &KEEPALIVE,
                    &KEEPALIVE_IDLE,
                    &KEEPALIVE_INTERVAL,
                    &KEEPALIVE_RETRIES,
                    &TCP_USER_TIMEOUT,
                ],
            ),
            idle: c.dur(&IDLE),
            server_timeout: c.dur(&SERVER_TIMEOUT),
        }
    }
}

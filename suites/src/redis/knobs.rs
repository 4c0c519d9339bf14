//! The `redis.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

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

/// The `redis.*` keys, in help order.
pub static KNOBS: [&Key; 3] = [&RESPONSE_TIMEOUT, &IDLE, &SERVER_TIMEOUT];

/// Redis knobs: redis-rs's response timeout, and what `kaspec validate`
/// compares (the application's idle time against the server's `timeout`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisConfig {
    /// Zero: no response timeout.
    pub response_timeout: Duration,
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
            idle: c.dur(&IDLE),
            server_timeout: c.dur(&SERVER_TIMEOUT),
        }
    }
}

//! The `grpc.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static KEEPALIVE_TIME: Key = Key {
    name: "grpc.keepalive_time",
    kind: Kind::Millis { min: 10, max: 3_600_000 },
    default: "1s",
    doc: "KEEPALIVE_TIME: HTTP/2 PING after this long without a read (tonic http2_keep_alive_interval)",
};
pub static KEEPALIVE_TIMEOUT: Key = Key {
    name: "grpc.keepalive_timeout",
    kind: Kind::Millis {
        min: 10,
        max: 3_600_000,
    },
    default: "1s",
    doc: "KEEPALIVE_TIMEOUT: the PING ACK must come within this (tonic keep_alive_timeout)",
};
pub static KEEPALIVE_WHILE_IDLE: Key = Key {
    name: "grpc.keepalive_while_idle",
    kind: Kind::Bool,
    default: "true",
    doc: "KEEPALIVE_WITHOUT_CALLS: ping also without active calls (tonic keep_alive_while_idle)",
};

/// The `grpc.*` keys, in help order.
pub static KNOBS: [&Key; 3] = [&KEEPALIVE_TIME, &KEEPALIVE_TIMEOUT, &KEEPALIVE_WHILE_IDLE];

/// HTTP/2 keep-alive of the tonic client (gRFC A8 names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpcConfig {
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_while_idle: bool,
}

impl GrpcConfig {
    /// The `grpc.*` values of `c`.
    pub fn of(c: &Config) -> GrpcConfig {
        GrpcConfig {
            keepalive_time: c.dur(&KEEPALIVE_TIME),
            keepalive_timeout: c.dur(&KEEPALIVE_TIMEOUT),
            keepalive_while_idle: c.flag(&KEEPALIVE_WHILE_IDLE),
        }
    }
}

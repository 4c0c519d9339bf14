//! The `websocket.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static PING_INTERVAL: Key = Key {
    name: "websocket.ping_interval",
    kind: Kind::Millis {
        min: 10,
        max: 3_600_000,
    },
    default: "1s",
    doc: "P: the client sends a Ping every P",
};
pub static PONG_TIMEOUT: Key = Key {
    name: "websocket.pong_timeout",
    kind: Kind::Millis {
        min: 10,
        max: 3_600_000,
    },
    default: "1s",
    doc: "T: the peer is dead when nothing was received for P + T",
};

/// The `websocket.*` keys, in help order.
pub static KNOBS: [&Key; 2] = [&PING_INTERVAL, &PONG_TIMEOUT];

/// The heartbeat pattern of the tokio-tungstenite client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebSocketConfig {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

impl WebSocketConfig {
    /// The `websocket.*` values of `c`.
    pub fn of(c: &Config) -> WebSocketConfig {
        WebSocketConfig {
            ping_interval: c.dur(&PING_INTERVAL),
            pong_timeout: c.dur(&PONG_TIMEOUT),
        }
    }
}

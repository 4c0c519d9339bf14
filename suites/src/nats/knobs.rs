//! The `nats.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static PING_INTERVAL: Key = Key {
    name: "nats.ping_interval",
    kind: Kind::Millis { min: 10, max: 86_400_000 },
    default: "1s",
    doc: "async-nats ConnectOptions::ping_interval: the client PINGs after this long without anything from the server; more than 2 outstanding (MAX_PENDING_PINGS) disconnect (the crate's own default is 60 s)",
};

/// The `nats.*` keys, in help order.
pub static KNOBS: [&Key; 1] = [&PING_INTERVAL];

/// NATS knobs: async-nats's ping interval (its outstanding-ping limit,
/// MAX_PENDING_PINGS = 2, is a constant of the crate, not an option).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NatsConfig {
    pub ping_interval: Duration,
}

impl NatsConfig {
    /// The `nats.*` values of `c`.
    pub fn of(c: &Config) -> NatsConfig {
        NatsConfig {
            ping_interval: c.dur(&PING_INTERVAL),
        }
    }
}

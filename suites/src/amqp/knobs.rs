//! The `amqp.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static HEARTBEAT: Key = Key {
    name: "amqp.heartbeat",
    kind: Kind::Secs {
        min: 1,
        max: 65535,
        zero_ok: true,
    },
    default: "2s",
    doc: "AMQP heartbeat lapin asks for (URI ?heartbeat=, whole seconds; 0 = take the broker's)",
};

/// The `amqp.*` keys, in help order.
pub static KNOBS: [&Key; 1] = [&HEARTBEAT];

/// AMQP knobs of the lapin client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmqpConfig {
    /// What lapin asks for in the URI (`?heartbeat=`); zero means "take the
    /// broker's" (lapin cannot turn heartbeats off against a broker proposing one).
    pub heartbeat: Duration,
}

impl AmqpConfig {
    /// The `amqp.*` values of `c`.
    pub fn of(c: &Config) -> AmqpConfig {
        AmqpConfig {
            heartbeat: c.dur(&HEARTBEAT),
        }
    }
}

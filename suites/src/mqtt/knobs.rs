//! The `mqtt.*` client knobs: their keys (what `--set` and profiles take)
//! and the typed view this protocol's cases read.

use std::time::Duration;

use crate::config::{Config, Key, Kind};

pub static KEEP_ALIVE: Key = Key {
    name: "mqtt.keep_alive",
    kind: Kind::Secs {
        min: 1,
        max: 65535,
        zero_ok: true,
    },
    default: "2s",
    doc: "MQTT Keep Alive sent in CONNECT (whole seconds, 0 = off)",
};

/// The `mqtt.*` keys, in help order.
pub static KNOBS: [&Key; 1] = [&KEEP_ALIVE];

/// MQTT knobs of the rumqttc client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MqttConfig {
    /// Zero means off.
    pub keep_alive: Duration,
}

impl MqttConfig {
    /// The `mqtt.*` values of `c`.
    pub fn of(c: &Config) -> MqttConfig {
        MqttConfig {
            keep_alive: c.dur(&KEEP_ALIVE),
        }
    }
}

//! The client configuration under test: every keepalive knob, its default,
//! its allowed values, and one parser shared by `--set KEY=VALUE` and TOML
//! profiles, so both reject bad input with the same one-line message.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A configuration error: one line naming the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    /// Whole seconds in [min, max] (kernel/library takes seconds).
    Secs { min: u64, max: u64, zero_ok: bool },
    /// Milliseconds in [min, max].
    Millis { min: u64, max: u64 },
    Count { min: u64, max: u64 },
}

/// One knob.
pub struct Key {
    pub name: &'static str,
    kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every key `--set` and profiles accept.
pub const KEYS: &[Key] = &[
    Key { name: "tcp.keepalive", kind: Kind::Bool, default: "true", doc: "SO_KEEPALIVE on the client socket" },
    Key { name: "tcp.idle", kind: Kind::Secs { min: 1, max: 32767, zero_ok: false }, default: "2s", doc: "TCP_KEEPIDLE: idle time before the first probe (whole seconds)" },
    Key { name: "tcp.interval", kind: Kind::Secs { min: 1, max: 32767, zero_ok: false }, default: "1s", doc: "TCP_KEEPINTVL: time between probes (whole seconds)" },
    Key { name: "tcp.count", kind: Kind::Count { min: 1, max: 127 }, default: "3", doc: "TCP_KEEPCNT: unanswered probes before the connection is dead" },
    Key { name: "tcp.user_timeout", kind: Kind::Millis { min: 0, max: i32::MAX as u64 }, default: "0s", doc: "TCP_USER_TIMEOUT: max age of unacknowledged data (0 = off, the kernel default)" },
    Key { name: "mqtt.keep_alive", kind: Kind::Secs { min: 1, max: 65535, zero_ok: true }, default: "2s", doc: "MQTT Keep Alive sent in CONNECT (whole seconds, 0 = off)" },
    Key { name: "websocket.ping_interval", kind: Kind::Millis { min: 10, max: 3_600_000 }, default: "1s", doc: "P: the client sends a Ping every P" },
    Key { name: "websocket.pong_timeout", kind: Kind::Millis { min: 10, max: 3_600_000 }, default: "1s", doc: "T: the peer is dead when nothing was received for P + T" },
    Key { name: "grpc.keepalive_time", kind: Kind::Millis { min: 10, max: 3_600_000 }, default: "1s", doc: "KEEPALIVE_TIME: HTTP/2 PING after this long without a read (tonic http2_keep_alive_interval)" },
    Key { name: "grpc.keepalive_timeout", kind: Kind::Millis { min: 10, max: 3_600_000 }, default: "1s", doc: "KEEPALIVE_TIMEOUT: the PING ACK must come within this (tonic keep_alive_timeout)" },
    Key { name: "grpc.keepalive_while_idle", kind: Kind::Bool, default: "true", doc: "KEEPALIVE_WITHOUT_CALLS: ping also without active calls (tonic keep_alive_while_idle)" },
    Key { name: "amqp.heartbeat", kind: Kind::Secs { min: 1, max: 65535, zero_ok: true }, default: "2s", doc: "AMQP heartbeat lapin asks for (URI ?heartbeat=, whole seconds; 0 = take the broker's)" },
];

fn key(name: &str) -> Result<&'static Key, ConfigError> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        ConfigError(format!(
            "unknown key `{name}` (allowed: {})",
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn duration(raw: &str) -> Result<Duration, String> {
    let t = raw.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Err("a duration needs a unit: ms, s or m (e.g. 2s)".into());
    }
    humantime::parse_duration(t).map_err(|e| format!("not a duration ({e}); use ms, s or m, e.g. 500ms, 2s, 1m"))
}

/// The parsed value of a key.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Bool(bool),
    Dur(Duration),
    Count(u64),
}

fn parse(k: &Key, raw: &str) -> Result<Value, ConfigError> {
    let bad = |what: String| ConfigError(format!("{}={raw}: {what}", k.name));
    match k.kind {
        Kind::Bool => match raw.trim() {
            "true" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad("expected true or false".into())),
        },
        Kind::Secs { min, max, zero_ok } => {
            let d = duration(raw).map_err(bad)?;
            let range = format!("{}{min}s..{max}s", if zero_ok { "0 (off) or " } else { "" });
            if d.subsec_nanos() != 0 {
                return Err(bad(format!("takes whole seconds ({range})")));
            }
            let s = d.as_secs();
            if (s == 0 && !zero_ok) || (s != 0 && (s < min || s > max)) {
                return Err(bad(format!("out of range (allowed: {range})")));
            }
            Ok(Value::Dur(d))
        }
        Kind::Millis { min, max } => {
            let d = duration(raw).map_err(bad)?;
            if d.subsec_nanos() % 1_000_000 != 0 {
                return Err(bad("takes whole milliseconds".into()));
            }
            let v = d.as_millis() as u64;
            if v < min || v > max {
                return Err(bad(format!("out of range (allowed: {min}ms..{max}ms)")));
            }
            Ok(Value::Dur(d))
        }
        Kind::Count { min, max } => {
            let n: u64 = raw.trim().parse().map_err(|_| bad(format!("expected a whole number in {min}..{max}")))?;
            if n < min || n > max {
                return Err(bad(format!("out of range (allowed: {min}..{max})")));
            }
            Ok(Value::Count(n))
        }
    }
}

/// TCP keep-alive knobs of a client socket (socket2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpConfig {
    pub keepalive: bool,
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    /// Zero means off.
    pub user_timeout: Duration,
}

/// MQTT knobs of the rumqttc client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MqttConfig {
    /// Zero means off.
    pub keep_alive: Duration,
}

/// The heartbeat pattern of the tokio-tungstenite client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebSocketConfig {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

/// HTTP/2 keep-alive of the tonic client (gRFC A8 names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpcConfig {
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_while_idle: bool,
}

/// AMQP knobs of the lapin client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmqpConfig {
    /// What lapin asks for in the URI (`?heartbeat=`); zero means "take the
    /// broker's" (lapin cannot turn heartbeats off against a broker proposing one).
    pub heartbeat: Duration,
}

/// The whole client configuration, with the raw text of each key for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tcp: TcpConfig,
    pub mqtt: MqttConfig,
    pub websocket: WebSocketConfig,
    pub grpc: GrpcConfig,
    pub amqp: AmqpConfig,
    raw: BTreeMap<&'static str, String>,
}

impl Default for Config {
    fn default() -> Self {
        let mut c = Config {
            tcp: TcpConfig { keepalive: true, idle: Duration::ZERO, interval: Duration::ZERO, count: 0, user_timeout: Duration::ZERO },
            mqtt: MqttConfig { keep_alive: Duration::ZERO },
            websocket: WebSocketConfig { ping_interval: Duration::ZERO, pong_timeout: Duration::ZERO },
            grpc: GrpcConfig { keepalive_time: Duration::ZERO, keepalive_timeout: Duration::ZERO, keepalive_while_idle: false },
            amqp: AmqpConfig { heartbeat: Duration::ZERO },
            raw: BTreeMap::new(),
        };
        for k in KEYS {
            c.set(k.name, k.default).expect("defaults are valid");
        }
        c
    }
}

impl Config {
    /// Sets one key from its text form.
    pub fn set(&mut self, name: &str, raw: &str) -> Result<(), ConfigError> {
        let k = key(name)?;
        let v = parse(k, raw)?;
        match (k.name, v) {
            ("tcp.keepalive", Value::Bool(b)) => self.tcp.keepalive = b,
            ("tcp.idle", Value::Dur(d)) => self.tcp.idle = d,
            ("tcp.interval", Value::Dur(d)) => self.tcp.interval = d,
            ("tcp.count", Value::Count(n)) => self.tcp.count = n as u32,
            ("tcp.user_timeout", Value::Dur(d)) => self.tcp.user_timeout = d,
            ("mqtt.keep_alive", Value::Dur(d)) => self.mqtt.keep_alive = d,
            ("websocket.ping_interval", Value::Dur(d)) => self.websocket.ping_interval = d,
            ("websocket.pong_timeout", Value::Dur(d)) => self.websocket.pong_timeout = d,
            ("grpc.keepalive_time", Value::Dur(d)) => self.grpc.keepalive_time = d,
            ("grpc.keepalive_timeout", Value::Dur(d)) => self.grpc.keepalive_timeout = d,
            ("grpc.keepalive_while_idle", Value::Bool(b)) => self.grpc.keepalive_while_idle = b,
            ("amqp.heartbeat", Value::Dur(d)) => self.amqp.heartbeat = d,
            _ => unreachable!("key table and setter disagree on {}", k.name),
        }
        self.raw.insert(k.name, raw.trim().to_string());
        Ok(())
    }

    /// Applies `KEY=VALUE`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--set {pair}: expected KEY=VALUE, e.g. tcp.idle=3s")))?;
        self.set(k.trim(), v).map_err(|e| ConfigError(format!("--set {}", e.0)))
    }

    /// Applies a TOML profile: `[tcp] idle = "3s"`, `[mqtt] keep_alive = "2s"`.
    pub fn apply_profile(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("profile {shown}: cannot read it: {e}")))?;
        self.apply_profile_str(&text).map_err(|e| ConfigError(format!("profile {shown}: {}", e.0)))
    }

    pub fn apply_profile_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError(format!("not valid TOML: {}", e.message())))?;
        for (section, body) in &doc {
            if section == "name" || section == "description" {
                continue;
            }
            let toml::Value::Table(t) = body else {
                return Err(ConfigError(format!(
                    "`{section}` must be a table like [tcp], [mqtt], [websocket], [grpc] or [amqp] (allowed top-level keys: name, description)"
                )));
            };
            for (k, v) in t {
                let name = format!("{section}.{k}");
                let raw = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => return Err(ConfigError(format!("{name} = {other}: expected a string, number or boolean"))),
                };
                self.set(&name, &raw)?;
            }
        }
        Ok(())
    }

    /// The effective values of the keys under `prefix` (e.g. `tcp.`).
    pub fn effective(&self, prefix: &str) -> BTreeMap<String, String> {
        self.raw.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.to_string(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_second_scale() {
        let c = Config::default();
        assert_eq!(c.tcp.idle, Duration::from_secs(2));
        assert_eq!(c.tcp.count, 3);
        assert_eq!(c.mqtt.keep_alive, Duration::from_secs(2));
        assert_eq!(c.amqp.heartbeat, Duration::from_secs(2));
        assert_eq!(c.effective("tcp.").len(), 5);
        assert_eq!(c.effective("amqp."), BTreeMap::from([("amqp.heartbeat".to_string(), "2s".to_string())]));
    }

    #[test]
    fn set_accepts_ms_s_m() {
        let mut c = Config::default();
        c.set_pair("tcp.user_timeout=2500ms").unwrap();
        c.set_pair("tcp.idle=1m").unwrap();
        c.set_pair("mqtt.keep_alive=0s").unwrap();
        assert_eq!(c.tcp.user_timeout, Duration::from_millis(2500));
        assert_eq!(c.tcp.idle, Duration::from_secs(60));
        assert!(c.mqtt.keep_alive.is_zero());
    }

    #[test]
    fn bad_input_names_key_value_and_what_is_allowed() {
        let mut c = Config::default();
        let e = c.set_pair("tcp.idel=3s").unwrap_err().0;
        assert!(e.contains("tcp.idel") && e.contains("tcp.idle"), "{e}");
        let e = c.set_pair("tcp.idle=1500ms").unwrap_err().0;
        assert!(e.contains("tcp.idle=1500ms") && e.contains("whole seconds"), "{e}");
        let e = c.set_pair("tcp.idle=3").unwrap_err().0;
        assert!(e.contains("unit"), "{e}");
        let e = c.set_pair("tcp.count=0").unwrap_err().0;
        assert!(e.contains("1..127"), "{e}");
        let e = c.set_pair("mqtt.keep_alive=500ms").unwrap_err().0;
        assert!(e.contains("0 (off) or 1s..65535s"), "{e}");
        let e = c.set_pair("mqtt.keep_alive=70000s").unwrap_err().0;
        assert!(e.contains("out of range"), "{e}");
        let e = c.set_pair("amqp.heartbeat=1500ms").unwrap_err().0;
        assert!(e.contains("amqp.heartbeat=1500ms") && e.contains("0 (off) or 1s..65535s"), "{e}");
        let e = c.set_pair("amqp.heartbeat=65536s").unwrap_err().0;
        assert!(e.contains("out of range"), "{e}");
        let e = c.set_pair("websocket.pong_timeout=5ms").unwrap_err().0;
        assert!(e.contains("10ms..3600000ms"), "{e}");
        let e = c.set_pair("tcp.keepalive=maybe").unwrap_err().0;
        assert!(e.contains("true or false"), "{e}");
        assert!(c.set_pair("tcp.idle").unwrap_err().0.contains("KEY=VALUE"));
        assert_eq!(c, Config::default(), "a rejected value changes nothing");
    }

    #[test]
    fn profiles_use_the_same_keys() {
        let mut c = Config::default();
        c.apply_profile_str("name = \"x\"\n[tcp]\nidle = \"5s\"\ncount = 4\nkeepalive = true\n[mqtt]\nkeep_alive = \"10s\"\n[amqp]\nheartbeat = \"0s\"\n").unwrap();
        assert!(c.amqp.heartbeat.is_zero());
        assert_eq!(c.tcp.idle, Duration::from_secs(5));
        assert_eq!(c.tcp.count, 4);
        assert_eq!(c.mqtt.keep_alive, Duration::from_secs(10));
        let e = c.apply_profile_str("[tcp]\nidle = 5\n").unwrap_err().0;
        assert!(e.contains("tcp.idle=5") && e.contains("unit"), "{e}");
        let e = c.apply_profile_str("[tcp]\nidl = \"5s\"\n").unwrap_err().0;
        assert!(e.contains("unknown key `tcp.idl`"), "{e}");
        let e = c.apply_profile_str("[tcp\n").unwrap_err().0;
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn every_shipped_profile_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            Config::default().apply_profile(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert!(n >= 2);
    }
}

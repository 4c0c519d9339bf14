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
    /// A libpq-style connection string whose keep-alive keys set the
    /// `postgres.*` knobs (see [`parse_conninfo`]).
    Conninfo,
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
    Key { name: "postgres.keepalives", kind: Kind::Bool, default: "true", doc: "tokio-postgres Config::keepalives: SO_KEEPALIVE on the client socket (libpq keepalives)" },
    Key { name: "postgres.keepalives_idle", kind: Kind::Secs { min: 1, max: 32767, zero_ok: false }, default: "2s", doc: "tokio-postgres Config::keepalives_idle: TCP_KEEPIDLE (whole seconds; libpq keepalives_idle)" },
    Key { name: "postgres.keepalives_interval", kind: Kind::Secs { min: 1, max: 32767, zero_ok: false }, default: "1s", doc: "tokio-postgres Config::keepalives_interval: TCP_KEEPINTVL (whole seconds; libpq keepalives_interval)" },
    Key { name: "postgres.keepalives_retries", kind: Kind::Count { min: 1, max: 127 }, default: "3", doc: "tokio-postgres Config::keepalives_retries: TCP_KEEPCNT (libpq calls it keepalives_count)" },
    Key { name: "postgres.tcp_user_timeout", kind: Kind::Millis { min: 0, max: i32::MAX as u64 }, default: "0s", doc: "tokio-postgres Config::tcp_user_timeout: TCP_USER_TIMEOUT (0 = off; libpq tcp_user_timeout, ms)" },
    Key { name: "postgres.conninfo", kind: Kind::Conninfo, default: "", doc: "a libpq connection string (key=value or postgresql:// URL) whose keep-alive keys set the postgres.* knobs; tcp_user_timeout in it is libpq milliseconds" },
    Key { name: "amqp.heartbeat", kind: Kind::Secs { min: 1, max: 65535, zero_ok: true }, default: "2s", doc: "AMQP heartbeat lapin asks for (URI ?heartbeat=, whole seconds; 0 = take the broker's)" },
];

/// The keys of a connection string tokio-postgres 0.7 accepts besides its
/// keep-alive ones: kaspec checks them and ignores them (it connects to its
/// own server).
const CONNINFO_IGNORED: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "connect_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];
const CONNINFO_KEEPALIVE: &[&str] = &["keepalives", "keepalives_idle", "keepalives_interval", "keepalives_retries", "tcp_user_timeout"];

/// Splits a libpq connection string into its keys and values: `key=value`
/// pairs separated by whitespace (values optionally single-quoted, with `\`
/// escapes), or a `postgres://` / `postgresql://` URL whose query string
/// carries the parameters.
fn conninfo_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("postgresql://").or_else(|| t.strip_prefix("postgres://")) {
        let Some((_, query)) = rest.split_once('?') else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("URL parameter `{part}` has no value"))?;
            out.push((percent_decode(k)?, percent_decode(v)?));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut it = t.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("`{key}` is missing `=value`"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| format!("bad escape in `{s}`"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8"))
}

/// What a pasted connection string sets: (`postgres.*` key, value in
/// kaspec's units, what the report shows).
pub fn parse_conninfo(text: &str) -> Result<Vec<(&'static str, String, String)>, ConfigError> {
    let bad = |what: String| ConfigError(format!("postgres.conninfo: {what}"));
    let allowed = || format!("allowed: {}; ignored: {}", CONNINFO_KEEPALIVE.join(", "), CONNINFO_IGNORED.join(", "));
    let pairs = conninfo_pairs(text).map_err(|e| bad(format!("not a libpq connection string ({e})")))?;
    let mut out = Vec::new();
    for (k, v) in &pairs {
        let int = |unit: &str| -> Result<u64, ConfigError> {
            v.trim().parse::<u64>().map_err(|_| bad(format!("{k}={v}: expected a whole number of {unit}, as libpq writes it")))
        };
        let checked = |name: &'static str, raw: String, shown: String| -> Result<(&'static str, String, String), ConfigError> {
            parse(key(name).expect("known key"), &raw).map_err(|e| bad(format!("{k}={v}: {}", e.0.split_once(": ").map(|x| x.1).unwrap_or(&e.0))))?;
            Ok((name, raw, shown))
        };
        match k.as_str() {
            "keepalives" => out.push(checked("postgres.keepalives", (int("0 or 1")? != 0).to_string(), format!("conninfo keepalives={v}"))?),
            "keepalives_idle" => out.push(checked("postgres.keepalives_idle", format!("{}s", int("seconds")?), format!("conninfo keepalives_idle={v} (s)"))?),
            "keepalives_interval" => out.push(checked("postgres.keepalives_interval", format!("{}s", int("seconds")?), format!("conninfo keepalives_interval={v} (s)"))?),
            "keepalives_retries" => out.push(checked("postgres.keepalives_retries", int("probes")?.to_string(), format!("conninfo keepalives_retries={v}"))?),
            "tcp_user_timeout" => {
                let n = int("milliseconds")?;
                let shown = format!(
                    "{n}ms (conninfo tcp_user_timeout={v}, read as libpq milliseconds; tokio-postgres's own parser reads this string as {n} s)"
                );
                out.push(checked("postgres.tcp_user_timeout", format!("{n}ms"), shown)?);
            }
            "keepalives_count" => {
                return Err(bad(format!(
                    "unknown key `keepalives_count`: libpq's name, which tokio-postgres rejects (\"unknown option\"); it calls it keepalives_retries ({})",
                    allowed()
                )))
            }
            other if CONNINFO_IGNORED.contains(&other) => {}
            other => return Err(bad(format!("unknown key `{other}`: tokio-postgres 0.7 rejects it ({})", allowed()))),
        }
    }
    // The string must be one tokio-postgres itself accepts (values of the
    // ignored keys too, e.g. sslmode).
    text.trim().parse::<tokio_postgres::Config>().map_err(|e| {
        let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
        bad(format!("tokio-postgres rejects this string: {detail}"))
    })?;
    Ok(out)
}

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
    Text,
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
        Kind::Conninfo => {
            parse_conninfo(raw)?;
            Ok(Value::Text)
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
    /// The socket options tokio-postgres sets from these knobs.
    pub fn tcp(&self) -> TcpConfig {
        TcpConfig {
            keepalive: self.keepalives,
            idle: self.keepalives_idle,
            interval: self.keepalives_interval,
            count: self.keepalives_retries,
            user_timeout: self.tcp_user_timeout,
        }
    }
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
    pub postgres: PostgresConfig,
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
            postgres: PostgresConfig {
                keepalives: true,
                keepalives_idle: Duration::ZERO,
                keepalives_interval: Duration::ZERO,
                keepalives_retries: 0,
                tcp_user_timeout: Duration::ZERO,
            },
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
            ("postgres.keepalives", Value::Bool(b)) => self.postgres.keepalives = b,
            ("postgres.keepalives_idle", Value::Dur(d)) => self.postgres.keepalives_idle = d,
            ("postgres.keepalives_interval", Value::Dur(d)) => self.postgres.keepalives_interval = d,
            ("postgres.keepalives_retries", Value::Count(n)) => self.postgres.keepalives_retries = n as u32,
            ("postgres.tcp_user_timeout", Value::Dur(d)) => self.postgres.tcp_user_timeout = d,
            ("postgres.conninfo", Value::Text) => {
                if raw.trim().is_empty() {
                    return Ok(());
                }
                for (name, value, shown) in parse_conninfo(raw)? {
                    self.set(name, &value)?;
                    self.raw.insert(key(name)?.name, shown);
                }
            }
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
                    "`{section}` must be a table like [tcp], [mqtt], [websocket], [grpc], [amqp] or [postgres] (allowed top-level keys: name, description)"
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
    fn postgres_knobs_and_a_pasted_libpq_string() {
        let mut c = Config::default();
        assert_eq!(c.postgres.tcp(), TcpConfig { keepalive: true, idle: Duration::from_secs(2), interval: Duration::from_secs(1), count: 3, user_timeout: Duration::ZERO });
        assert_eq!(c.effective("postgres.").len(), 5, "an empty conninfo is not shown");
        c.set_pair("postgres.keepalives_retries=5").unwrap();
        assert_eq!(c.postgres.keepalives_retries, 5);
        // libpq semantics: tcp_user_timeout is milliseconds; other keys are checked and ignored.
        c.set_pair("postgres.conninfo=host=db.example.com port=5432 user=app sslmode=disable keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_retries=4 tcp_user_timeout=9000 options='-c statement_timeout=5s'").unwrap();
        let p = c.postgres;
        assert_eq!((p.keepalives_idle, p.keepalives_interval, p.keepalives_retries), (Duration::from_secs(5), Duration::from_secs(2), 4));
        assert_eq!(p.tcp_user_timeout, Duration::from_millis(9000));
        let eff = c.effective("postgres.");
        assert!(eff["postgres.tcp_user_timeout"].contains("libpq milliseconds") && eff["postgres.tcp_user_timeout"].contains("9000 s"), "{eff:?}");
        assert!(eff["postgres.conninfo"].contains("keepalives_idle=5"));
        // The URL form, and keepalives=0.
        c.set_pair("postgres.conninfo=postgresql://app@db/x?keepalives=0&keepalives_idle=7").unwrap();
        assert!(!c.postgres.keepalives);
        assert_eq!(c.postgres.keepalives_idle, Duration::from_secs(7));
        // The same in a profile.
        let mut d = Config::default();
        d.apply_profile_str("[postgres]\nconninfo = \"keepalives_idle=3 tcp_user_timeout=1500\"\n").unwrap();
        assert_eq!((d.postgres.keepalives_idle, d.postgres.tcp_user_timeout), (Duration::from_secs(3), Duration::from_millis(1500)));
    }

    #[test]
    fn a_libpq_key_tokio_postgres_does_not_know_is_one_clear_line() {
        let mut c = Config::default();
        let e = c.set_pair("postgres.conninfo=host=db keepalives_count=3").unwrap_err().0;
        assert!(e.contains("keepalives_count") && e.contains("keepalives_retries") && e.contains("allowed:") && !e.contains('\n'), "{e}");
        let e = c.set_pair("postgres.conninfo=host=db sslrootcert=/x").unwrap_err().0;
        assert!(e.contains("unknown key `sslrootcert`") && e.contains("keepalives_idle"), "{e}");
        let e = c.set_pair("postgres.conninfo=keepalives_idle=0").unwrap_err().0;
        assert!(e.contains("keepalives_idle=0") && e.contains("out of range"), "{e}");
        let e = c.set_pair("postgres.conninfo=keepalives_idle=2s").unwrap_err().0;
        assert!(e.contains("whole number of seconds"), "{e}");
        let e = c.set_pair("postgres.conninfo=sslmode=verify-full").unwrap_err().0;
        assert!(e.contains("tokio-postgres rejects") && e.contains("sslmode"), "{e}");
        let e = c.set_pair("postgres.conninfo=options='-c x").unwrap_err().0;
        assert!(e.contains("closing quote"), "{e}");
        assert_eq!(c, Config::default(), "a rejected string changes nothing");
    }

    #[test]
    fn every_key_has_a_valid_default_and_a_doc() {
        for k in KEYS {
            assert!(!k.doc.is_empty(), "{}", k.name);
            let mut c = Config::default();
            c.set(k.name, k.default).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        }
        assert!(KEYS.iter().any(|k| k.name == "postgres.conninfo"));
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

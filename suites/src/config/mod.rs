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
    /// A mysql_async `mysql://` URL whose keep-alive and pool keys set the
    /// `mariadb.*` knobs (see [`parse_mysql_url`]).
    MysqlUrl,
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
    Key { name: "redis.response_timeout", kind: Kind::Millis { min: 0, max: 3_600_000 }, default: "500ms", doc: "redis-rs AsyncConnectionConfig::set_response_timeout: a command fails when its reply is not in within this (0 = none; the crate's own default is 500 ms)" },
    Key { name: "redis.idle", kind: Kind::Secs { min: 1, max: 2_592_000, zero_ok: true }, default: "0s", doc: "how long the application leaves a connection idle between commands (for `kaspec validate`; 0 = not stated)" },
    Key { name: "redis.server_timeout", kind: Kind::Secs { min: 1, max: 2_592_000, zero_ok: true }, default: "0s", doc: "the `timeout` of the Redis server the client talks to (for `kaspec validate`; 0 = never, Redis's default)" },
    Key { name: "nats.ping_interval", kind: Kind::Millis { min: 10, max: 86_400_000 }, default: "1s", doc: "async-nats ConnectOptions::ping_interval: the client PINGs after this long without anything from the server; more than 2 outstanding (MAX_PENDING_PINGS) disconnect (the crate's own default is 60 s)" },
    Key { name: "mariadb.url", kind: Kind::MysqlUrl, default: "", doc: "a mysql_async connection URL (mysql://…?key=value, Opts::from_url's keys); tcp_keepalive (ms) and conn_ttl (s) in it set the mariadb.* knobs, the rest is handed to mysql_async as given; host, port, user, password and database are kaspec's own" },
    Key { name: "mariadb.tcp_keepalive", kind: Kind::Millis { min: 0, max: 2_147_483_000 }, default: "0s", doc: "mysql_async Opts::tcp_keepalive (URL tcp_keepalive, ms): sets TCP_KEEPIDLE only, interval and count stay the host's (0 = none, the crate's default)" },
    Key { name: "mariadb.conn_ttl", kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: true }, default: "0s", doc: "mysql_async Opts::conn_ttl (URL conn_ttl, s): the pool discards a connection idle longer than this at checkout (0 = the server's @@wait_timeout, the crate's default)" },
    Key { name: "mariadb.idle", kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: true }, default: "0s", doc: "how long the application leaves a pooled connection idle between queries (for `kaspec validate`; 0 = not stated)" },
    Key { name: "mariadb.server_wait_timeout", kind: Kind::Secs { min: 1, max: 31_536_000, zero_ok: false }, default: "28800s", doc: "the wait_timeout of the MariaDB server the client talks to (for `kaspec validate`; MariaDB's default 28800 s)" },
    Key { name: "amqp.heartbeat", kind: Kind::Secs { min: 1, max: 65535, zero_ok: true }, default: "2s", doc: "AMQP heartbeat lapin asks for (URI ?heartbeat=, whole seconds; 0 = take the broker's)" },
];

mod conninfo;
mod mysql_url;
pub use conninfo::parse_conninfo;
pub use mysql_url::parse_mysql_url;

/// `s` as one line: a value holding a newline or another control
/// character is shown quoted and escaped, so the culprit is on the error's
/// only line.
pub fn one_line(s: &str) -> String {
    if s.chars().any(char::is_control) {
        format!("{s:?}")
    } else {
        s.to_string()
    }
}

/// The line (1-based) of byte `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

/// A TOML parse error as one line: the message's lines joined, with the line it is on.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let msg: Vec<&str> = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let at = e.span().map(|s| format!(" (line {})", line_of(text, s.start))).unwrap_or_default();
    ConfigError(format!("not valid TOML{at}: {}", msg.join("; ")))
}

fn key(name: &str) -> Result<&'static Key, ConfigError> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        ConfigError(format!(
            "unknown key `{}` (allowed: {})",
            one_line(name),
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn duration(raw: &str) -> Result<Duration, String> {
    let t = raw.trim();
    if t.chars().any(char::is_control) {
        return Err("a duration holds no line break or control character".into());
    }
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
    let bad = |what: String| ConfigError(format!("{}={}: {what}", k.name, one_line(raw)));
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
            // u128: `as u64` would wrap a huge value into the range.
            let v = d.as_millis();
            if v < u128::from(min) || v > u128::from(max) {
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
        Kind::MysqlUrl => {
            parse_mysql_url(raw)?;
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

/// NATS knobs: async-nats's ping interval (its outstanding-ping limit,
/// MAX_PENDING_PINGS = 2, is a constant of the crate, not an option).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NatsConfig {
    pub ping_interval: Duration,
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
    pub redis: RedisConfig,
    pub nats: NatsConfig,
    pub mariadb: MariadbConfig,
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
            redis: RedisConfig { response_timeout: Duration::ZERO, idle: Duration::ZERO, server_timeout: Duration::ZERO },
            nats: NatsConfig { ping_interval: Duration::ZERO },
            mariadb: MariadbConfig { url: String::new(), tcp_keepalive: Duration::ZERO, conn_ttl: Duration::ZERO, idle: Duration::ZERO, server_wait_timeout: Duration::ZERO },
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
            ("redis.response_timeout", Value::Dur(d)) => self.redis.response_timeout = d,
            ("redis.idle", Value::Dur(d)) => self.redis.idle = d,
            ("redis.server_timeout", Value::Dur(d)) => self.redis.server_timeout = d,
            ("nats.ping_interval", Value::Dur(d)) => self.nats.ping_interval = d,
            ("mariadb.url", Value::Text) => {
                self.mariadb.url = raw.trim().to_string();
                for (name, value) in parse_mysql_url(raw)? {
                    self.set(name, &value)?;
                    self.raw.insert(key(name)?.name, format!("{value} (mariadb.url)"));
                }
            }
            ("mariadb.tcp_keepalive", Value::Dur(d)) => self.mariadb.tcp_keepalive = d,
            ("mariadb.conn_ttl", Value::Dur(d)) => self.mariadb.conn_ttl = d,
            ("mariadb.idle", Value::Dur(d)) => self.mariadb.idle = d,
            ("mariadb.server_wait_timeout", Value::Dur(d)) => self.mariadb.server_wait_timeout = d,
            _ => unreachable!("key table and setter disagree on {}", k.name),
        }
        self.raw.insert(k.name, raw.trim().to_string());
        Ok(())
    }

    /// Applies `KEY=VALUE`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--set {}: expected KEY=VALUE, e.g. tcp.idle=3s", one_line(pair))))?;
        self.set(k.trim(), v).map_err(|e| ConfigError(format!("--set {}", e.0)))
    }

    /// Applies a TOML profile: `[tcp] idle = "3s"`, `[mqtt] keep_alive = "2s"`.
    pub fn apply_profile(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("profile {shown}: cannot read it: {e}")))?;
        self.apply_profile_str(&text).map_err(|e| ConfigError(format!("profile {shown}: {}", e.0)))
    }

    pub fn apply_profile_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| toml_error(text, &e))?;
        let tables: Vec<&str> = KEYS.iter().filter_map(|k| k.name.split_once('.').map(|(t, _)| t)).fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
        let allowed = || format!("allowed: the tables [{}] and the top-level keys name, description", tables.join("], ["));
        for (section, body) in &doc {
            if section == "name" || section == "description" {
                if !body.is_str() {
                    return Err(ConfigError(format!("{section} = {}: expected a string", one_line(&body.to_string()))));
                }
                continue;
            }
            let toml::Value::Table(t) = body else {
                return Err(ConfigError(format!("`{}` must be a table like [tcp] ({})", one_line(section), allowed())));
            };
            if !tables.contains(&section.as_str()) {
                // Even empty: a misspelt or unsupported table is never ignored.
                return Err(ConfigError(format!("unknown table [{}] ({})", one_line(section), allowed())));
            }
            for (k, v) in t {
                let name = format!("{section}.{k}");
                let raw = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => return Err(ConfigError(format!("{} = {}: expected a string, number or boolean", one_line(&name), one_line(&other.to_string())))),
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
mod tests;

//! The client configuration under test: one parser shared by
//! `--set KEY=VALUE` and TOML profiles, so both reject bad input with the
//! same one-line message. The knobs themselves are declared where they are
//! used — each protocol folder's `knobs.rs` (its keys and the typed view its
//! cases read), the shared socket keep-alive keys in [`socket`] — and the
//! registry hands the whole table to [`Config::new`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub mod adapter;
mod minimum;
pub mod socket;
pub use socket::TcpConfig;

/// A configuration error: one line naming the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    /// Whole seconds in [min, max] (kernel/library takes seconds).
    Secs {
        min: u64,
        max: u64,
        zero_ok: bool,
    },
    /// Milliseconds in [min, max].
    Millis {
        min: u64,
        max: u64,
    },
    Count {
        min: u64,
        max: u64,
    },
    /// A string in a client's own syntax (a libpq connection string, a
    /// URL) that sets other keys: the function checks it and returns
    /// (key, value in kaspec's units, what the report shows) for each.
    Expand(Expander),
}

/// What a [`Kind::Expand`] key's text sets.
pub type Expander = fn(&str) -> Result<Vec<(&'static str, String, String)>, ConfigError>;

/// One knob.
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
}

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
    let msg: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let at = e
        .span()
        .map(|s| format!(" (line {})", line_of(text, s.start)))
        .unwrap_or_default();
    ConfigError(format!("not valid TOML{at}: {}", msg.join("; ")))
}

fn duration(raw: &str) -> Result<Duration, String> {
    let t = raw.trim();
    if t.chars().any(char::is_control) {
        return Err("a duration holds no line break or control character".into());
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Err("a duration needs a unit: ms, s or m (e.g. 2s)".into());
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("not a duration ({e}); use ms, s or m, e.g. 500ms, 2s, 1m"))
}

/// The parsed value of a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Bool(bool),
    Dur(Duration),
    Count(u64),
    Text,
}

/// `raw` as a value of `k`, or the one-line error naming both.
pub fn parse(k: &Key, raw: &str) -> Result<Value, ConfigError> {
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
            let n: u64 = raw
                .trim()
                .parse()
                .map_err(|_| bad(format!("expected a whole number in {min}..{max}")))?;
            if n < min || n > max {
                return Err(bad(format!("out of range (allowed: {min}..{max})")));
            }
            Ok(Value::Count(n))
        }
        Kind::Expand(expand) => {
            if !raw.trim().is_empty() {
                expand(raw)?;
            }
            Ok(Value::Text)
        }
    }
}

/// The whole client configuration: the value of every key of its table,
/// with the raw text of each for reports.
#[derive(Clone)]
pub struct Config {
    keys: Vec<&'static Key>,
    values: BTreeMap<&'static str, Value>,
    raw: BTreeMap<&'static str, String>,
    /// A profile's `[client] adapter = "FILE"` (relative to the profile).
    client: Option<std::path::PathBuf>,
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && self.raw == other.raw
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.raw.iter()).finish()
    }
}

impl Config {
    /// A configuration over `keys` (the registry's `config()` gives every
    /// protocol's), each at its default. A name twice is a bug.
    pub fn new(keys: impl IntoIterator<Item = &'static Key>) -> Config {
        let mut c = Config {
            keys: Vec::new(),
            values: BTreeMap::new(),
            raw: BTreeMap::new(),
            client: None,
        };
        for k in keys {
            assert!(
                c.keys.iter().all(|o| o.name != k.name),
                "key {} declared twice",
                k.name
            );
            c.keys.push(k);
        }
        for k in c.keys.clone() {
            c.set(k.name, k.default)
                .unwrap_or_else(|e| panic!("the default of {} is invalid: {e}", k.name));
        }
        c
    }

    /// Every key this configuration takes, in declaration order.
    pub fn keys(&self) -> &[&'static Key] {
        &self.keys
    }

    fn key(&self, name: &str) -> Result<&'static Key, ConfigError> {
        self.keys
            .iter()
            .copied()
            .find(|k| k.name == name)
            .ok_or_else(|| {
                ConfigError(format!(
                    "unknown key `{}` (allowed: {})",
                    one_line(name),
                    self.keys
                        .iter()
                        .map(|k| k.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The value of `k`: what was set, else its default.
    fn value(&self, k: &Key) -> Value {
        self.values
            .get(k.name)
            .copied()
            .unwrap_or_else(|| parse(k, k.default).expect("defaults are valid"))
    }

    /// A key's text as given (for a string in a client's own syntax).
    pub fn text(&self, k: &Key) -> &str {
        self.raw
            .get(k.name)
            .map(String::as_str)
            .unwrap_or(k.default)
    }

    /// A duration key's value.
    pub fn dur(&self, k: &Key) -> Duration {
        match self.value(k) {
            Value::Dur(d) => d,
            v => panic!("{} is not a duration: {v:?}", k.name),
        }
    }

    /// A boolean key's value.
    pub fn flag(&self, k: &Key) -> bool {
        match self.value(k) {
            Value::Bool(b) => b,
            v => panic!("{} is not a boolean: {v:?}", k.name),
        }
    }

    /// A count key's value.
    pub fn count(&self, k: &Key) -> u64 {
        match self.value(k) {
            Value::Count(n) => n,
            v => panic!("{} is not a count: {v:?}", k.name),
        }
    }

    /// Sets one key from its text form.
    pub fn set(&mut self, name: &str, raw: &str) -> Result<(), ConfigError> {
        let k = self.key(name)?;
        let v = parse(k, raw)?;
        if let Kind::Expand(expand) = k.kind {
            if raw.trim().is_empty() {
                return Ok(());
            }
            // Checked whole before anything is set: a rejected string changes nothing.
            let pairs = expand(raw)?;
            let mut next = self.clone();
            for (name, value, shown) in pairs {
                next.set(name, &value)?;
                next.raw.insert(self.key(name)?.name, shown);
            }
            *self = next;
        }
        self.values.insert(k.name, v);
        self.raw.insert(k.name, raw.trim().to_string());
        Ok(())
    }

    /// Applies `KEY=VALUE`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ConfigError(format!(
                "--set {}: expected KEY=VALUE, e.g. tcp.idle=3s",
                one_line(pair)
            ))
        })?;
        self.set(k.trim(), v)
            .map_err(|e| ConfigError(format!("--set {}", e.0)))
    }

    /// Applies a TOML profile: `[tcp] idle = "3s"`, `[mqtt] keep_alive = "2s"`.
    pub fn apply_profile(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("profile {shown}: cannot read it: {e}")))?;
        self.apply_profile_str(&text)
            .map_err(|e| ConfigError(format!("profile {shown}: {}", e.0)))?;
        if let (Some(c), Some(dir)) = (&self.client, path.parent()) {
            self.client = Some(dir.join(c));
        }
        Ok(())
    }

    /// The client adapter a profile names (`[client] adapter = "FILE"`).
    pub fn client_adapter(&self) -> Option<&Path> {
        self.client.as_deref()
    }

    pub fn apply_profile_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| toml_error(text, &e))?;
        let tables: Vec<&str> = self
            .keys
            .iter()
            .filter_map(|k| k.name.split_once('.').map(|(t, _)| t))
            .fold(Vec::new(), |mut v, t| {
                if !v.contains(&t) {
                    v.push(t);
                }
                v
            });
        let allowed = || {
            format!(
                "allowed: the tables [{}], [client] and the top-level keys name, description",
                tables.join("], [")
            )
        };
        for (section, body) in &doc {
            if section == "name" || section == "description" {
                if !body.is_str() {
                    return Err(ConfigError(format!(
                        "{section} = {}: expected a string",
                        one_line(&body.to_string())
                    )));
                }
                continue;
            }
            let toml::Value::Table(t) = body else {
                return Err(ConfigError(format!(
                    "`{}` must be a table like [tcp] ({})",
                    one_line(section),
                    allowed()
                )));
            };
            if section == "client" {
                // An external client (docs/clients.md): its adapter file.
                for (k, v) in t {
                    match (k.as_str(), v) {
                        ("adapter", toml::Value::String(f)) if !f.trim().is_empty() => {
                            self.client = Some(f.into())
                        }
                        ("adapter", v) => {
                            return Err(ConfigError(format!(
                                "client.adapter = {}: expected a file name (a client adapter, see fixtures/clients/)",
                                one_line(&v.to_string())
                            )))
                        }
                        (k, _) => {
                            return Err(ConfigError(format!(
                                "unknown key client.{} (allowed: client.adapter)",
                                one_line(k)
                            )))
                        }
                    }
                }
                continue;
            }
            if !tables.contains(&section.as_str()) {
                // Even empty: a misspelt or unsupported table is never ignored.
                return Err(ConfigError(format!(
                    "unknown table [{}] ({})",
                    one_line(section),
                    allowed()
                )));
            }
            for (k, v) in t {
                let name = format!("{section}.{k}");
                let raw = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError(format!(
                            "{} = {}: expected a string, number or boolean",
                            one_line(&name),
                            one_line(&other.to_string())
                        )))
                    }
                };
                self.set(&name, &raw)?;
            }
        }
        Ok(())
    }

    /// The effective values of the keys under `prefix` (e.g. `tcp.`).
    pub fn effective(&self, prefix: &str) -> BTreeMap<String, String> {
        self.raw
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

//! The adapter file: a TOML description of a client program kaspec does
//! not link — its name, how to get its version, the protocol it speaks,
//! the command that runs it, what its configuration implies and how it
//! reports. Every mistake is one line naming the file, the key, the value
//! and what is allowed; nothing is started before the whole file is read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{one_line, Config, Kind};

/// How kaspec learns that the client noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// Its socket towards the server leaving ESTABLISHED (sock_diag in the
    /// client host); a new connection afterwards is a reconnect.
    Socket,
    /// Its stdout lines `connected`, `detected <reason>`, `reconnected`,
    /// timestamped by kaspec on arrival.
    Lines,
}

/// What the client's configuration implies, as declared by the adapter
/// (durations may name knobs: `"{mqtt.keep_alive}"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// No declared algorithm: its results are informational.
    None,
    /// Sends a ping when `interval` has passed since it last heard the
    /// peer; gives up `timeout` after an unanswered ping; its timers are
    /// checked every `poll` (0: exact timers). `whole_seconds`: its clock
    /// counts whole seconds (`clock = "seconds"`: a CLOCK_MONOTONIC
    /// `tv_sec`, as libmosquitto's `mosquitto_time()`), so a deadline falls
    /// on the first check in the second it names.
    PingTimeout {
        interval: Duration,
        timeout: Duration,
        poll: Duration,
        whole_seconds: bool,
        /// TCP_USER_TIMEOUT it sets on its socket (0: none): data it sent
        /// that the fault leaves unacknowledged makes the kernel abort the
        /// connection, maybe before its own timers do.
        user_timeout: Duration,
        /// false: it sends no ping (e.g. grpcio without
        /// keepalive_permit_without_calls on an idle channel).
        enabled: bool,
    },
    /// Gives up when nothing was received for `dead_after`, checked every
    /// `poll`.
    Heartbeat {
        dead_after: Duration,
        poll: Duration,
    },
    /// Checks every `period`, from the instant of its `connected` line, and
    /// gives up at the first check whose whole period received nothing.
    /// `send_every`: its own heartbeat, a timer chain from the same line
    /// (under reset, the next one meets the RST).
    CheckPeriod {
        period: Duration,
        send_every: Option<Duration>,
    },
    /// Linux TCP keep-alive on its socket: idle I, interval V, count N,
    /// TCP_USER_TIMEOUT U (0: off); `enabled` false: SO_KEEPALIVE off.
    TcpKeepalive {
        enabled: bool,
        idle: Duration,
        interval: Duration,
        count: u32,
        user_timeout: Duration,
    },
}

/// What the adapter says its expectation rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub algorithm: Algorithm,
    /// Where the algorithm comes from (a library's source lines, a spec).
    pub source: String,
    /// `anchor`: the line (e.g. `pong`) whose last arrival before the fault
    /// starts the client's clock, in place of its socket's last receive
    /// (a library that times from its own Pong, not from any data).
    pub anchor_line: Option<String>,
}

/// One external client, read from its adapter file.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub file: PathBuf,
    pub name: String,
    /// A fixed version, or the command whose first output line is it.
    pub version: Version,
    pub protocol: String,
    /// argv, with placeholders (`{host}`, `{port}`, `{dir}`, knobs).
    pub command: Vec<String>,
    pub observe: Vec<Observe>,
    /// As written (placeholders resolved per run, see [`Adapter::expect`]).
    expect_raw: toml::Table,
    /// `[minimum]`: the least value of a duration knob the program takes
    /// (mosquitto_sub refuses `-k` below 5 s).
    pub minimum: Vec<(&'static str, Duration)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    Fixed(String),
    Command(Vec<String>),
}

const TOP_KEYS: &str =
    "name, version, protocol, command, observe, description, [expect], [minimum]";
/// The `[expect]` keys a kind may leave out (each has a default).
const OPTIONAL: &[&str] = &[
    "poll",
    "send_every",
    "clock",
    "user_timeout",
    "enabled",
    "anchor",
];
const KINDS: &str = "none, ping-timeout, heartbeat, check-period, tcp-keepalive";

impl Adapter {
    /// Reads and checks `path` against the protocols whose cases can take
    /// an external client (`protocols`) and the knobs of `config`.
    pub fn load(path: &Path, protocols: &[&str], config: &Config) -> Result<Adapter, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("client adapter {shown}: cannot read it: {e}"))?;
        Adapter::parse(&text, path, protocols, config)
            .map_err(|e| format!("client adapter {shown}: {e}"))
    }

    /// [`load`](Self::load) on text already read (`path` names it and
    /// resolves `{dir}`).
    pub fn parse(
        text: &str,
        path: &Path,
        protocols: &[&str],
        config: &Config,
    ) -> Result<Adapter, String> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| one_line(&format!("not TOML: {}", e.message())))?;
        for k in doc.keys() {
            if ![
                "name",
                "version",
                "protocol",
                "command",
                "observe",
                "description",
                "expect",
                "minimum",
            ]
            .contains(&k.as_str())
            {
                return Err(format!(
                    "unknown key `{}` (allowed: {TOP_KEYS})",
                    one_line(k)
                ));
            }
        }
        let string = |k: &str| -> Result<String, String> {
            match doc.get(k) {
                Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(v) => Err(format!(
                    "`{k}` = {}: must be a non-empty string",
                    one_line(&v.to_string())
                )),
                None => Err(format!(
                    "`{k}` is missing (required: name, protocol, command)"
                )),
            }
        };
        let name = string("name")?;
        let protocol = string("protocol")?;
        if !protocols.contains(&protocol.as_str()) {
            return Err(format!(
                "`protocol` = \"{}\": no case of that protocol takes an external client (allowed: {})",
                one_line(&protocol),
                protocols.join(", ")
            ));
        }
        let command = argv(&doc, "command")?
            .ok_or("`command` is missing (required: name, protocol, command)")?;
        let version = match doc.get("version") {
            None => Version::Fixed("unknown".into()),
            Some(toml::Value::String(s)) => Version::Fixed(s.clone()),
            Some(_) => Version::Command(argv(&doc, "version")?.unwrap_or_default()),
        };
        let observe = match doc.get("observe") {
            None => vec![Observe::Socket],
            Some(toml::Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| match v.as_str() {
                    Some("socket") => Ok(Observe::Socket),
                    Some("lines") => Ok(Observe::Lines),
                    _ => Err(format!(
                        "`observe` = {}: allowed: \"socket\", \"lines\"",
                        one_line(&v.to_string())
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => {
                return Err(format!(
                    "`observe` = {}: must be a non-empty array of \"socket\", \"lines\"",
                    one_line(&v.to_string())
                ))
            }
        };
        let expect_raw = match doc.get("expect") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t.clone(),
            Some(v) => {
                return Err(format!(
                    "`expect` = {}: must be a table [expect] (kind = {KINDS})",
                    one_line(&v.to_string())
                ))
            }
        };
        let minimum = super::minimum::parse(doc.get("minimum"), config)?;
        let a = Adapter {
            file: path.to_path_buf(),
            minimum,
            name,
            version,
            protocol,
            command,
            observe,
            expect_raw,
        };
        // Every placeholder and the expectation resolve now, not mid-run.
        let dummy = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1);
        a.argv(dummy, config)?;
        if matches!(a.expect(config)?.algorithm, Algorithm::CheckPeriod { .. })
            && !a.observe.contains(&Observe::Lines)
        {
            return Err("`expect.kind` = \"check-period\" needs `observe` to include \"lines\" (the checks' phase is its `connected` line)".into());
        }
        if a.expect(config)?.anchor_line.is_some() && !a.observe.contains(&Observe::Lines) {
            return Err(
                "`expect.anchor` needs `observe` to include \"lines\" (the anchor is a line)"
                    .into(),
            );
        }
        Ok(a)
    }

    /// Whether its program is there: its version command runs and exits 0
    /// (a fixed version: its command's program exists).
    pub fn installed(&self) -> Result<(), String> {
        let argv = match &self.version {
            Version::Command(argv) => argv.clone(),
            Version::Fixed(_) => {
                let p = Path::new(&self.command[0]);
                return if !p.is_absolute() || p.exists() {
                    Ok(())
                } else {
                    Err(format!("{} is missing", p.display()))
                };
            }
        };
        match std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`{}` failed: {}",
                argv.join(" "),
                one_line(
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                )
            )),
            Err(e) => Err(format!("`{}`: {e}", argv[0])),
        }
    }

    /// The folder of the adapter file (`{dir}`).
    pub fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The command with every placeholder filled for `server` and `config`.
    pub fn argv(
        &self,
        server: std::net::SocketAddrV4,
        config: &Config,
    ) -> Result<Vec<String>, String> {
        self.command
            .iter()
            .map(|a| fill(a, "command", Some(server), &self.dir(), config))
            .collect()
    }

    /// The declared expectation under `config`.
    pub fn expect(&self, config: &Config) -> Result<Expect, String> {
        let t = &self.expect_raw;
        let kind = match t.get("kind") {
            None if t.is_empty() => "none",
            Some(toml::Value::String(s)) => s.as_str(),
            other => {
                return Err(format!(
                    "`expect.kind` = {}: allowed: {KINDS}",
                    other
                        .map(|v| one_line(&v.to_string()))
                        .unwrap_or_else(|| "missing".into())
                ))
            }
        };
        let allowed: &[&str] = match kind {
            "none" => &["kind", "source"],
            "ping-timeout" => &[
                "kind",
                "source",
                "interval",
                "timeout",
                "poll",
                "clock",
                "anchor",
                "user_timeout",
                "enabled",
            ],
            "heartbeat" => &["kind", "source", "dead_after", "poll"],
            "check-period" => &["kind", "source", "period", "send_every"],
            "tcp-keepalive" => &[
                "kind",
                "source",
                "idle",
                "interval",
                "count",
                "user_timeout",
                "enabled",
            ],
            k => {
                return Err(format!(
                    "`expect.kind` = \"{}\": allowed: {KINDS}",
                    one_line(k)
                ))
            }
        };
        if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "unknown key `expect.{}` for kind {kind} (allowed: {})",
                one_line(k),
                allowed.join(", ")
            ));
        }
        let dur = |k: &str, default: Option<Duration>| -> Result<Duration, String> {
            let raw = match (t.get(k), default) {
                (Some(toml::Value::String(s)), _) => s.clone(),
                (Some(toml::Value::Integer(i)), _) if *i >= 0 => format!("{i}s"),
                (None, Some(d)) => return Ok(d),
                (None, None) => return Err(format!("`expect.{k}` is missing (kind {kind} needs: {})", allowed[2..].iter().filter(|k| !OPTIONAL.contains(k)).copied().collect::<Vec<_>>().join(", "))),
                (Some(v), _) => return Err(format!("`expect.{k}` = {}: must be a duration (\"2s\", \"500ms\", \"{{mqtt.keep_alive}}\")", one_line(&v.to_string()))),
            };
            let filled = fill(&raw, &format!("expect.{k}"), None, &self.dir(), config)?;
            parse_duration(&filled).ok_or_else(|| format!("`expect.{k}` = \"{}\" (= \"{}\"): not a duration (allowed: \"2s\", \"500ms\", a knob in braces)", one_line(&raw), one_line(&filled)))
        };
        // `enabled`: true, false or a flag knob (default true).
        let enabled = || -> Result<bool, String> {
            Ok(match t.get("enabled") {
                None => true,
                Some(toml::Value::Boolean(b)) => *b,
                Some(toml::Value::String(s)) => match fill(s, "expect.enabled", None, &self.dir(), config)?.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(format!("`expect.enabled` = \"{}\" (= \"{}\"): allowed: true, false, or a flag knob in braces", one_line(s), one_line(other))),
                },
                Some(v) => return Err(format!("`expect.enabled` = {}: allowed: true, false, or a flag knob in braces", one_line(&v.to_string()))),
            })
        };
        let algorithm = match kind {
            "none" => Algorithm::None,
            "ping-timeout" => Algorithm::PingTimeout {
                interval: dur("interval", None)?,
                timeout: dur("timeout", None)?,
                poll: dur("poll", Some(Duration::ZERO))?,
                whole_seconds: match t.get("clock") {
                    None => false,
                    Some(toml::Value::String(c)) if c == "ms" => false,
                    Some(toml::Value::String(c)) if c == "seconds" => true,
                    Some(v) => return Err(format!("`expect.clock` = {}: allowed: \"ms\" (default), \"seconds\" (its timers compare whole seconds of CLOCK_MONOTONIC)", one_line(&v.to_string()))),
                },
                user_timeout: dur("user_timeout", Some(Duration::ZERO))?,
                enabled: enabled()?,
            },
            "heartbeat" => Algorithm::Heartbeat {
                dead_after: dur("dead_after", None)?,
                poll: dur("poll", Some(Duration::ZERO))?,
            },
            "check-period" => Algorithm::CheckPeriod {
                period: dur("period", None)?,
                send_every: match t.get("send_every") {
                    None => None,
                    Some(_) => Some(dur("send_every", None)?),
                },
            },
            _ => Algorithm::TcpKeepalive {
                enabled: enabled()?,
                user_timeout: dur("user_timeout", Some(Duration::ZERO))?,
                idle: dur("idle", None)?,
                interval: dur("interval", None)?,
                count: match t.get("count") {
                    Some(toml::Value::Integer(n)) if (1..=127).contains(n) => *n as u32,
                    Some(toml::Value::String(s)) => fill(s, "expect.count", None, &self.dir(), config)?
                        .parse()
                        .ok()
                        .filter(|n| (1..=127).contains(n))
                        .ok_or_else(|| format!("`expect.count` = \"{}\": must be a whole number in 1..=127 (TCP_KEEPCNT)", one_line(s)))?,
                    v => return Err(format!("`expect.count` = {}: must be a whole number in 1..=127 (TCP_KEEPCNT)", v.map(|v| one_line(&v.to_string())).unwrap_or_else(|| "missing".into()))),
                },
            },
        };
        let source = match t.get("source") {
            Some(toml::Value::String(s)) => s.clone(),
            None => format!("declared by {}", self.file.display()),
            Some(v) => {
                return Err(format!(
                    "`expect.source` = {}: must be a string",
                    one_line(&v.to_string())
                ))
            }
        };
        let anchor_line = match t.get("anchor") {
            None => None,
            Some(toml::Value::String(l))
                if !l.trim().is_empty() && !l.contains(char::is_whitespace) =>
            {
                Some(l.clone())
            }
            Some(v) => {
                return Err(format!(
                "`expect.anchor` = {}: must be one word, a line the program prints (e.g. \"pong\")",
                one_line(&v.to_string())
            ))
            }
        };
        Ok(Expect {
            algorithm,
            source,
            anchor_line,
        })
    }
}

/// `doc[key]` as a non-empty array of strings.
fn argv(doc: &toml::Table, key: &str) -> Result<Option<Vec<String>>, String> {
    let bad = |v: &toml::Value| {
        format!("`{key}` = {}: must be a non-empty array of strings (argv, e.g. [\"python3\", \"{{dir}}/client.py\", \"{{host}}\", \"{{port}}\"])", one_line(&v.to_string()))
    };
    match doc.get(key) {
        None => Ok(None),
        Some(v @ toml::Value::Array(a)) => {
            if a.is_empty() {
                return Err(bad(v));
            }
            a.iter()
                .map(|x| x.as_str().map(String::from).ok_or_else(|| bad(v)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(v) => Err(bad(v)),
    }
}

/// `"2s"`, `"500ms"`, or a bare number of seconds (`"2"`, `"1.5"`); a sum
/// of those (`"2 + 5s"`, for a knob plus a library's constant), each
/// divided by a whole number if it says so (`"2000ms / 2"`).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    if s.contains('+') {
        return s.split('+').map(parse_duration).sum();
    }
    if let Some((d, n)) = s.split_once('/') {
        let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
        return parse_duration(d).map(|d| d / n);
    }
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        return (x >= 0.0 && x.is_finite()).then(|| Duration::from_secs_f64(x));
    }
    humantime::parse_duration(s).ok()
}

/// Fills `{host}`, `{port}`, `{dir}` and `{<knob>}` / `{<knob>:ms}` in `s`.
/// A duration knob is whole seconds by default (what most client APIs
/// take), milliseconds with `:ms`; a flag is true/false; a count a number.
fn fill(
    s: &str,
    key: &str,
    server: Option<std::net::SocketAddrV4>,
    dir: &Path,
    config: &Config,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{key}` = \"{}\": an unclosed `{{`", one_line(s)))?;
        let name = &after[..close];
        out.push_str(&placeholder(name, key, s, server, dir, config)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn placeholder(
    name: &str,
    key: &str,
    whole: &str,
    server: Option<std::net::SocketAddrV4>,
    dir: &Path,
    config: &Config,
) -> Result<String, String> {
    let unknown = || {
        format!(
            "`{key}` = \"{}\": unknown placeholder `{{{}}}` (allowed: {{host}}, {{port}}, {{dir}}, or a knob such as {{{}}}, {{<knob>:ms}})",
            one_line(whole),
            one_line(name),
            config.keys().first().map(|k| k.name).unwrap_or("mqtt.keep_alive")
        )
    };
    match (name, server) {
        ("host", Some(a)) => return Ok(a.ip().to_string()),
        ("port", Some(a)) => return Ok(a.port().to_string()),
        ("host" | "port", None) => {
            return Err(format!(
                "`{key}` = \"{}\": {{{name}}} is only known in `command`",
                one_line(whole)
            ))
        }
        ("dir", _) => return Ok(dir.display().to_string()),
        _ => {}
    }
    let (knob, ms) = match name.strip_suffix(":ms") {
        Some(k) => (k, true),
        None => (name, false),
    };
    let k = config
        .keys()
        .iter()
        .find(|k| k.name == knob)
        .ok_or_else(unknown)?;
    Ok(match k.kind {
        Kind::Secs { .. } | Kind::Millis { .. } => {
            let d = config.dur(k);
            if ms {
                d.as_millis().to_string()
            } else if d.subsec_nanos() == 0 {
                d.as_secs().to_string()
            } else {
                format!("{}", d.as_secs_f64())
            }
        }
        Kind::Bool if !ms => config.flag(k).to_string(),
        Kind::Count { .. } if !ms => config.count(k).to_string(),
        Kind::Expand(_) if !ms => config.text(k).to_string(),
        _ => return Err(unknown()),
    })
}

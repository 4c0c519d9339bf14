//! libpq connection strings (`postgres.conninfo`): their keep-alive keys
//! set the `postgres.*` knobs, checked as `--set` checks them.

use super::{key, parse, ConfigError};

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
const CONNINFO_KEEPALIVE: &[&str] = &[
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
];

/// Splits a libpq connection string into its keys and values: `key=value`
/// pairs separated by whitespace (values optionally single-quoted, with `\`
/// escapes), or a `postgres://` / `postgresql://` URL whose query string
/// carries the parameters.
fn conninfo_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let t = text.trim();
    if let Some(rest) = t
        .strip_prefix("postgresql://")
        .or_else(|| t.strip_prefix("postgres://"))
    {
        let Some((_, query)) = rest.split_once('?') else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("URL parameter `{part}` has no value"))?;
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
            let h = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in `{s}`"))?;
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
    // One line whatever the string holds: control characters escaped.
    let bad = |what: String| {
        ConfigError(format!(
            "postgres.conninfo: {}",
            what.chars()
                .map(|c| if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                })
                .collect::<String>()
        ))
    };
    let allowed = || {
        format!(
            "allowed: {}; ignored: {}",
            CONNINFO_KEEPALIVE.join(", "),
            CONNINFO_IGNORED.join(", ")
        )
    };
    let pairs =
        conninfo_pairs(text).map_err(|e| bad(format!("not a libpq connection string ({e})")))?;
    let mut out = Vec::new();
    for (k, v) in &pairs {
        let int = |unit: &str| -> Result<u64, ConfigError> {
            v.trim().parse::<u64>().map_err(|_| {
                bad(format!(
                    "{k}={v}: expected a whole number of {unit}, as libpq writes it"
                ))
            })
        };
        let checked = |name: &'static str,
                       raw: String,
                       shown: String|
         -> Result<(&'static str, String, String), ConfigError> {
            parse(key(name).expect("known key"), &raw).map_err(|e| {
                bad(format!(
                    "{k}={v}: {}",
                    e.0.split_once(": ").map(|x| x.1).unwrap_or(&e.0)
                ))
            })?;
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
        let detail = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        bad(format!("tokio-postgres rejects this string: {detail}"))
    })?;
    Ok(out)
}

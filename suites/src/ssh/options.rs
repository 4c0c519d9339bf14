//! OpenSSH client options as users write them (`ssh.options`): an
//! `-o Key=Value` list (`-o ServerAliveInterval=15 -oServerAliveCountMax=3`)
//! or an ssh_config fragment (`ServerAliveInterval 15` lines, `#` comments).
//! The keys that time an idle session set the `ssh.*` knobs; each value is
//! read as ssh 9.2 reads it (readconf.c: `parse_time` = misc.c `convtime`,
//! `parse_int` = `a2i`, `parse_flag` = yes/true/no/false), and whatever ssh
//! would reject, ignore or read differently than written is one line naming
//! it.

use crate::config::{parse, ConfigError};

/// The OpenSSH client keys kaspec applies, with the knob each sets.
const KEYS: &[(&str, &str)] = &[
    ("serveraliveinterval", "ssh.server_alive_interval"),
    ("serveralivecountmax", "ssh.server_alive_count_max"),
    ("tcpkeepalive", "ssh.tcp_keepalive"),
    // readconf.c keywords[]: { "keepalive", oTCPKeepAlive } — an alias.
    ("keepalive", "ssh.tcp_keepalive"),
    ("connecttimeout", "ssh.connect_timeout"),
];

/// sshd_config keys users put in a client's options by mistake.
const SERVER_KEYS: &[&str] = &[
    "clientaliveinterval",
    "clientalivecountmax",
    "tcpkeepalive_server",
];

/// misc.c `convtime`: a sequence of number[unit] with units s, m, h, d, w
/// (either case); a bare number is seconds. Returns whole seconds.
pub fn convtime(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(mult)?)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse().ok()?)?;
    }
    (total <= i32::MAX as u64).then_some(total)
}

/// Splits the text into (key, value) as ssh reads `-o` arguments and config
/// lines: `Key=Value`, `Key Value`, `Key = Value`.
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    // An -o list: tokens, each `-o` followed by (or glued to) Key=Value.
    let t = text.trim();
    if t.starts_with("-o") {
        let mut out = Vec::new();
        let mut it = t.split_whitespace();
        while let Some(tok) = it.next() {
            let opt = match tok.strip_prefix("-o") {
                Some("") => it.next().ok_or("`-o` at the end, without Key=Value")?,
                Some(glued) => glued,
                None => {
                    return Err(format!(
                        "`{tok}`: expected `-o Key=Value` (an -o list takes nothing else)"
                    ))
                }
            };
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("`-o {opt}`: expected Key=Value"))?;
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for line in t.split(['\n', ';']) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cut = line
            .find(|c: char| c == '=' || c.is_whitespace())
            .ok_or_else(|| format!("`{line}`: expected `Key Value` or `Key=Value`"))?;
        let (k, rest) = line.split_at(cut);
        let v = rest.trim_start().trim_start_matches('=').trim();
        if v.is_empty() {
            return Err(format!("`{line}`: {k} has no value"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parses `ssh.options` into (knob, value for it, value as written). Each
/// error is one line naming the key and value and what ssh does with it.
pub fn parse_ssh_options(text: &str) -> Result<Vec<(&'static str, String, String)>, ConfigError> {
    // One line whatever the value held.
    let bad = |m: String| {
        ConfigError(format!(
            "ssh.options: {}",
            m.replace(|c: char| c.is_control(), " ")
        ))
    };
    let mut out: Vec<(&'static str, String, String)> = Vec::new();
    // (knob, key as written, value as written)
    let mut seen: Vec<(&'static str, String, String)> = Vec::new();
    for (k, v) in pairs(text).map_err(bad)? {
        let lk = k.to_ascii_lowercase();
        let v = v.trim_matches('"').to_string();
        if lk == "host" || lk == "match" {
            return Err(bad(format!("`{k} {v}`: a {k} block; give the options without it (kaspec applies them to its one server)")));
        }
        if SERVER_KEYS.contains(&lk.as_str()) {
            return Err(bad(format!("{k}={v}: an sshd_config option, not a client one; ssh stops with \"Bad configuration option\" (the servers' settings come from fixtures/ssh/)")));
        }
        let Some(&(_, knob)) = KEYS.iter().find(|(name, _)| *name == lk) else {
            return Err(bad(format!(
                "{k}={v}: not a keep-alive option kaspec applies (allowed: ServerAliveInterval, ServerAliveCountMax, TCPKeepAlive, ConnectTimeout); it would not change when either side notices a dead peer"
            )));
        };
        // readconf.c: "the first obtained value will be used" (ssh_config(5)).
        if let Some((_, first_k, first_v)) = seen.iter().find(|(kn, _, _)| *kn == knob) {
            return Err(bad(format!("{k}={v}: given twice; ssh uses the first value obtained ({first_k}={first_v}) and ignores this one")));
        }
        seen.push((knob, k.clone(), v.clone()));
        let value = match knob {
            "ssh.server_alive_interval" | "ssh.connect_timeout" => {
                let s = convtime(&v).ok_or_else(|| bad(format!("{k}={v}: ssh reads a time as whole seconds with optional units s, m, h, d, w (e.g. 15, 1m30s); it would stop with \"invalid time value\"")))?;
                format!("{s}s")
            }
            "ssh.server_alive_count_max" => {
                let n: i64 = v.parse().map_err(|_| bad(format!("{k}={v}: ssh takes a whole number here; it would stop with \"invalid integer value\"")))?;
                if n < 0 {
                    return Err(bad(format!(
                        "{k}={v}: negative; ssh would stop with \"invalid integer value\""
                    )));
                }
                n.to_string()
            }
            _ => match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => "true".into(),
                "no" | "false" => "false".into(),
                _ => {
                    return Err(bad(format!(
                    "{k}={v}: ssh takes yes or no here; it would stop with \"unsupported option\""
                )))
                }
            },
        };
        // The knob's own range check, with the key as the user wrote it.
        parse(
            super::knobs::KNOBS
                .iter()
                .find(|k| k.name == knob)
                .expect("an ssh.* key"),
            &value,
        )
        .map_err(|e| bad(format!("{k}={v}: {}", e.0)))?;
        out.push((knob, value, format!("{v} (ssh.options {k})")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(t: &str) -> Vec<(&'static str, String)> {
        parse_ssh_options(t)
            .unwrap()
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect()
    }

    #[test]
    fn both_syntaxes_set_the_knobs() {
        let want = vec![
            ("ssh.server_alive_interval", "15s".to_string()),
            ("ssh.server_alive_count_max", "3".to_string()),
        ];
        assert_eq!(
            knobs("-o ServerAliveInterval=15 -oServerAliveCountMax=3"),
            want
        );
        assert_eq!(
            knobs("ServerAliveInterval 15\n# comment\nserveralivecountmax=3\n"),
            want
        );
        assert_eq!(
            knobs("ServerAliveInterval 1m30s; TCPKeepAlive no"),
            vec![
                ("ssh.server_alive_interval", "90s".into()),
                ("ssh.tcp_keepalive", "false".into())
            ]
        );
        assert_eq!(
            knobs("KeepAlive yes"),
            vec![("ssh.tcp_keepalive", "true".into())]
        );
        assert!(knobs("").is_empty());
    }

    #[test]
    fn what_ssh_would_reject_ignore_or_misread_is_one_line_naming_it() {
        for (text, names) in [
            ("ServerAliveInterval 1.5", "ServerAliveInterval=1.5"),
            ("ServerAliveInterval 500ms", "ServerAliveInterval=500ms"),
            ("ServerAliveCountMax 3s", "ServerAliveCountMax=3s"),
            ("TCPKeepAlive maybe", "TCPKeepAlive=maybe"),
            ("ClientAliveInterval 15", "sshd_config"),
            ("Compression yes", "Compression=yes"),
            (
                "-o ServerAliveInterval=5 -o ServerAliveInterval=15",
                "uses the first value obtained (ServerAliveInterval=5)",
            ),
            ("Host *", "Host block"),
            ("-o ServerAliveInterval", "expected Key=Value"),
        ] {
            let e = parse_ssh_options(text).unwrap_err().0;
            assert!(
                e.starts_with("ssh.options: ") && e.contains(names) && !e.contains('\n'),
                "{text}: {e}"
            );
        }
    }
}

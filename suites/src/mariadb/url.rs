//! mysql_async connection URLs (`mariadb.url`): mysql_async itself checks
//! the URL (`Opts::from_url`, so a key it rejects is rejected here with its
//! own words); the keep-alive and pool keys set the `mariadb.*` knobs, and a
//! key mysql_async accepts but that does not do what its name suggests is
//! one line naming it.

use crate::config::ConfigError;

/// The `mariadb.*` knobs a URL sets: (knob, value in the knob's units).
///
/// mysql_async 0.37 (opts/mod.rs `from_url_basic`): `tcp_keepalive` is in
/// milliseconds, `conn_ttl` in seconds; `wait_timeout` is accepted but only
/// tells the client what the server's `wait_timeout` is (Conn::expired, the
/// pool's TTL when conn_ttl is unset): it never sets the server's.
pub fn parse_mysql_url(text: &str) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |what: String| {
        ConfigError(format!(
            "mariadb.url={}: {}",
            crate::config::one_line(t),
            crate::config::one_line(&what)
        ))
    };
    if !t.starts_with("mysql://") {
        return Err(bad("expected a mysql:// URL (mysql_async Opts::from_url), e.g. mysql://kaspec@db/test?tcp_keepalive=1000".into()));
    }
    let query = t.split_once('?').map(|(_, q)| q).unwrap_or("");
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "wait_timeout" => {
                return Err(bad(format!(
                    "`wait_timeout={v}` does not set the server's wait_timeout: mysql_async takes it as the server's value (the pool's TTL when conn_ttl is unset) and sends nothing; use conn_ttl for the pool's TTL, mariadb.server_wait_timeout for the server's"
                )))
            }
            "read_timeout" | "write_timeout" | "socket_timeout" | "connect_timeout" | "keepalive" | "tcp_keepalive_time" => {
                return Err(bad(format!(
                    "unknown key `{k}`: mysql_async 0.37 rejects it (it has no read, write or connect timeout; its only keep-alive key is tcp_keepalive, in ms)"
                )))
            }
            _ => {}
        }
    }
    let opts = mysql_async::Opts::from_url(t)
        .map_err(|e| bad(format!("mysql_async 0.37 rejects it: {e}")))?;
    let mut out = Vec::new();
    if let Some(k) = opts.tcp_keepalive() {
        out.push(("mariadb.tcp_keepalive", format!("{}ms", k.as_millis())));
    }
    if let Some(ttl) = opts.conn_ttl() {
        out.push(("mariadb.conn_ttl", format!("{}s", ttl.as_secs())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_and_ttl_become_knobs_and_misread_keys_are_named() {
        assert_eq!(
            parse_mysql_url("mysql://u@h/db?tcp_keepalive=1500&conn_ttl=60&reset_connection=false")
                .unwrap(),
            vec![
                ("mariadb.tcp_keepalive", "1500ms".to_string()),
                ("mariadb.conn_ttl", "60s".to_string())
            ]
        );
        assert!(parse_mysql_url("").unwrap().is_empty());
        let e = parse_mysql_url("mysql://h/?wait_timeout=5").unwrap_err().0;
        assert!(
            e.starts_with("mariadb.url=")
                && e.contains("`wait_timeout=5` does not set the server's"),
            "{e}"
        );
        let e = parse_mysql_url("mysql://h/?read_timeout=5").unwrap_err().0;
        assert!(e.contains("unknown key `read_timeout`"), "{e}");
        let e = parse_mysql_url("mysql://h/?tcp_keepalive=1s")
            .unwrap_err()
            .0;
        assert!(
            e.contains("mysql_async 0.37 rejects it") && e.contains("tcp_keepalive"),
            "{e}"
        );
        let e = parse_mysql_url("mysql://h/?bogus=1").unwrap_err().0;
        assert!(e.contains("bogus"), "{e}");
        assert!(parse_mysql_url("postgres://h")
            .unwrap_err()
            .0
            .contains("mysql://"));
        assert!(!parse_mysql_url("mysql://h/?x=\n")
            .unwrap_err()
            .0
            .contains('\n'));
    }
}

/// `mariadb.url` as a knob: what it sets, each shown as coming from the URL.
pub fn expand_mysql_url(text: &str) -> Result<Vec<(&'static str, String, String)>, ConfigError> {
    Ok(parse_mysql_url(text)?
        .into_iter()
        .map(|(k, v)| (k, v.clone(), format!("{v} (mariadb.url)")))
        .collect())
}

//! Network profiles (`--network FILE`): what the path between a client and
//! its servers does — NAT / stateful-firewall idle timeout, round trip,
//! jitter, loss. `kaspec validate` reviews a client profile against one.
//!
//! ```toml
//! name = "mobile-cgnat"
//! nat_idle_timeout = "30s"   # an idle TCP flow is forgotten after this
//! rtt = "150ms"              # round-trip time of the path
//! jitter = "50ms"
//! loss = "1%"
//! middlebox_idle_timeout = "60s"  # a load balancer / firewall on the two-level path
//! middlebox_at = "client"         # which level: "client" (client ── proxy) or "upstream" (proxy ── server)
//! ```
//!
//! The middlebox (the seed texts' table: AWS NAT Gateway 350 s, Azure Load
//! Balancer 4 min, an ALB's 60 s) acts in the two-level (proxy) cases: the
//! router of that level forgets a TCP flow idle that long and drops its
//! later packets (harness `Testbed::forget_idle_flows`, the NAT's conntrack
//! machinery without address translation).

use std::path::Path;
use std::time::Duration;

use crate::config::{one_line, toml_error, ConfigError};

/// The largest round trip (and jitter) a profile may give: far beyond any
/// real path (a geostationary hop is ~600 ms), and small enough that every
/// bound computed from it stays in range (netem takes it in microseconds).
pub const MAX_RTT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkProfile {
    pub name: String,
    pub description: String,
    /// After this much idleness a NAT or firewall forgets a TCP flow.
    pub nat_idle_timeout: Option<Duration>,
    pub rtt: Duration,
    pub jitter: Duration,
    /// Packet loss, percent.
    pub loss_percent: f64,
    /// A stateful middlebox on one level of the proxy topology.
    pub middlebox: Option<Middlebox>,
}

/// Which level of the proxy topology a middlebox sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Between the client and the proxy (the client-side router).
    Client,
    /// Between the proxy and the server (the upstream router).
    Upstream,
}

/// A middlebox that forgets a TCP flow idle for `idle`, on `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Middlebox {
    pub idle: Duration,
    pub at: Level,
}

impl Middlebox {
    /// The router of its level in the proxy topology.
    pub fn router(&self) -> &'static str {
        match self.at {
            Level::Client => kaspec_harness::testbed::ROUTER,
            Level::Upstream => kaspec_harness::testbed::UPSTREAM_ROUTER,
        }
    }

    pub fn level_name(&self) -> &'static str {
        match self.at {
            Level::Client => "client",
            Level::Upstream => "upstream",
        }
    }
}

const KEYS: &[&str] = &[
    "name",
    "description",
    "nat_idle_timeout",
    "rtt",
    "jitter",
    "loss",
    "middlebox_idle_timeout",
    "middlebox_at",
];

/// A whole-seconds idle timeout (conntrack timeout policies take seconds).
fn whole_secs(k: &str, quoted: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.subsec_nanos() != 0 || d.as_secs() < 1 || d.as_secs() > 86_400 {
        return Err(ConfigError(format!(
            "{k} = {quoted}: takes whole seconds, 1s..86400s"
        )));
    }
    Ok(d)
}

impl NetworkProfile {
    pub fn load(path: &Path) -> Result<NetworkProfile, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("network {shown}: cannot read it: {e}")))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("network {shown}: {}", e.0)))
    }

    pub fn parse(text: &str) -> Result<NetworkProfile, ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| toml_error(text, &e))?;
        let mut n = NetworkProfile::default();
        let mut at: Option<Level> = None;
        for (k, v) in &doc {
            if !KEYS.contains(&k.as_str()) {
                return Err(ConfigError(format!(
                    "unknown key `{}` (allowed: {})",
                    one_line(k),
                    KEYS.join(", ")
                )));
            }
            let s = v.as_str().ok_or_else(|| {
                ConfigError(format!(
                    "{k} = {}: expected a string, e.g. \"30s\" or \"1%\"",
                    one_line(&v.to_string())
                ))
            })?;
            let quoted = format!("{s:?}");
            let dur = |s: &str| match s.chars().any(char::is_control) {
                true => Err(ConfigError(format!(
                    "{k} = {quoted}: a duration holds no line break or control character"
                ))),
                false => humantime::parse_duration(s)
                    .map_err(|e| ConfigError(format!("{k} = {quoted}: {e} (use ms, s or m)"))),
            };
            let path_dur = |s: &str| {
                let d = dur(s)?;
                if d > MAX_RTT {
                    return Err(ConfigError(format!(
                        "{k} = {quoted}: out of range (allowed: 0ms..{}s)",
                        MAX_RTT.as_secs()
                    )));
                }
                Ok(d)
            };
            match k.as_str() {
                "name" => n.name = s.into(),
                "description" => n.description = s.into(),
                "nat_idle_timeout" => n.nat_idle_timeout = Some(whole_secs(k, &quoted, dur(s)?)?),
                "middlebox_idle_timeout" => {
                    let idle = whole_secs(k, &quoted, dur(s)?)?;
                    n.middlebox = Some(Middlebox {
                        idle,
                        at: Level::Client,
                    });
                }
                "middlebox_at" => {
                    at = Some(match s {
                        "client" => Level::Client,
                        "upstream" => Level::Upstream,
                        _ => {
                            return Err(ConfigError(format!(
                                "middlebox_at = {quoted}: allowed: \"client\" (client ── proxy), \"upstream\" (proxy ── server)"
                            )))
                        }
                    })
                }
                "rtt" => n.rtt = path_dur(s)?,
                "jitter" => n.jitter = path_dur(s)?,
                "loss" => {
                    let p: f64 = s
                        .trim()
                        .strip_suffix('%')
                        .and_then(|x| x.trim().parse().ok())
                        .ok_or_else(|| {
                            ConfigError(format!(
                                "loss = {quoted}: expected a percentage such as \"1%\""
                            ))
                        })?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(ConfigError(format!(
                            "loss = {quoted}: out of range (0%..100%)"
                        )));
                    }
                    n.loss_percent = p;
                }
                _ => unreachable!(),
            }
        }
        match (&mut n.middlebox, at) {
            (Some(m), Some(at)) => m.at = at,
            (None, Some(_)) => {
                return Err(ConfigError(
                    "middlebox_at is given without middlebox_idle_timeout (e.g. middlebox_idle_timeout = \"60s\")".into(),
                ))
            }
            _ => {}
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_key_named() {
        let n = NetworkProfile::parse(
            "name = \"x\"\nnat_idle_timeout = \"30s\"\nrtt = \"150ms\"\nloss = \"1.5%\"\n",
        )
        .unwrap();
        assert_eq!(n.nat_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(n.rtt, Duration::from_millis(150));
        assert_eq!(n.loss_percent, 1.5);
        assert!(NetworkProfile::parse("nat_timeout = \"3s\"")
            .unwrap_err()
            .0
            .contains("unknown key `nat_timeout`"));
        assert!(NetworkProfile::parse("loss = \"200%\"")
            .unwrap_err()
            .0
            .contains("out of range"));
        assert!(NetworkProfile::parse("rtt = 3")
            .unwrap_err()
            .0
            .contains("rtt = 3"));
        assert!(NetworkProfile::parse("nat_idle_timeout = \"4500ms\"")
            .unwrap_err()
            .0
            .contains("whole seconds"));
    }

    #[test]
    fn path_values_beyond_a_path_are_refused_in_one_line() {
        // Issue 14: 1000000h was accepted (a 10,800,000,014 s bound), u64::MAX s panicked in max_rtt.
        for (text, needle) in [
            (
                "rtt = \"1000000h\"",
                "rtt = \"1000000h\": out of range (allowed: 0ms..60s)",
            ),
            (
                "rtt = \"18446744073709551615s\"\njitter = \"1s\"",
                "rtt = \"18446744073709551615s\": out of range",
            ),
            ("jitter = \"61s\"", "jitter = \"61s\": out of range"),
            ("loss = \"NaN%\"", "loss = \"NaN%\""),
            ("name = 5", "name = 5: expected a string"),
            (
                "rtt = \"1\\ns\"",
                "rtt = \"1\\ns\": a duration holds no line break",
            ),
        ] {
            let e = NetworkProfile::parse(text).unwrap_err().0;
            assert!(e.contains(needle) && !e.contains('\n'), "{text}: {e}");
        }
        assert_eq!(
            NetworkProfile::parse("rtt = \"60s\"\njitter = \"60s\"")
                .unwrap()
                .rtt,
            MAX_RTT
        );
    }

    #[test]
    fn a_middlebox_has_a_whole_seconds_timeout_and_a_level() {
        let n =
            NetworkProfile::parse("middlebox_idle_timeout = \"60s\"\nmiddlebox_at = \"upstream\"")
                .unwrap();
        let m = n.middlebox.unwrap();
        assert_eq!((m.idle, m.at), (Duration::from_secs(60), Level::Upstream));
        assert_eq!(m.router(), kaspec_harness::testbed::UPSTREAM_ROUTER);
        let client = NetworkProfile::parse("middlebox_idle_timeout = \"350s\"").unwrap();
        assert_eq!(client.middlebox.unwrap().at, Level::Client);
        for (text, needle) in [
            (
                "middlebox_idle_timeout = \"1500ms\"",
                "middlebox_idle_timeout = \"1500ms\": takes whole seconds, 1s..86400s",
            ),
            (
                "middlebox_idle_timeout = \"2s\"\nmiddlebox_at = \"server\"",
                "middlebox_at = \"server\": allowed: \"client\"",
            ),
            (
                "middlebox_at = \"client\"",
                "middlebox_at is given without middlebox_idle_timeout",
            ),
        ] {
            let e = NetworkProfile::parse(text).unwrap_err().0;
            assert!(e.contains(needle) && !e.contains('\n'), "{text}: {e}");
        }
    }

    #[test]
    fn every_shipped_network_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/networks");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            NetworkProfile::load(&e.unwrap().path()).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert!(n >= 4);
    }
}

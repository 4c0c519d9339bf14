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
//! ```

use std::path::Path;
use std::time::Duration;

use crate::config::ConfigError;

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
}

const KEYS: &[&str] = &["name", "description", "nat_idle_timeout", "rtt", "jitter", "loss"];

impl NetworkProfile {
    pub fn load(path: &Path) -> Result<NetworkProfile, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("network {shown}: cannot read it: {e}")))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("network {shown}: {}", e.0)))
    }

    pub fn parse(text: &str) -> Result<NetworkProfile, ConfigError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError(format!("not valid TOML: {}", e.message().trim())))?;
        let mut n = NetworkProfile::default();
        for (k, v) in &doc {
            if !KEYS.contains(&k.as_str()) {
                return Err(ConfigError(format!("unknown key `{k}` (allowed: {})", KEYS.join(", "))));
            }
            let s = v.as_str().ok_or_else(|| ConfigError(format!("{k} = {v}: expected a string, e.g. \"30s\" or \"1%\"")))?;
            let dur = |s: &str| {
                humantime::parse_duration(s).map_err(|e| ConfigError(format!("{k} = \"{s}\": {e} (use ms, s or m)")))
            };
            match k.as_str() {
                "name" => n.name = s.into(),
                "description" => n.description = s.into(),
                "nat_idle_timeout" => {
                    // conntrack timeout policies take whole seconds.
                    let d = dur(s)?;
                    if d.subsec_nanos() != 0 || d.as_secs() < 1 || d.as_secs() > 86_400 {
                        return Err(ConfigError(format!("nat_idle_timeout = \"{s}\": takes whole seconds, 1s..86400s")));
                    }
                    n.nat_idle_timeout = Some(d);
                }
                "rtt" => n.rtt = dur(s)?,
                "jitter" => n.jitter = dur(s)?,
                "loss" => {
                    let p: f64 = s
                        .trim()
                        .strip_suffix('%')
                        .and_then(|x| x.trim().parse().ok())
                        .ok_or_else(|| ConfigError(format!("loss = \"{s}\": expected a percentage such as \"1%\"")))?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(ConfigError(format!("loss = \"{s}\": out of range (0%..100%)")));
                    }
                    n.loss_percent = p;
                }
                _ => unreachable!(),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_key_named() {
        let n = NetworkProfile::parse("name = \"x\"\nnat_idle_timeout = \"30s\"\nrtt = \"150ms\"\nloss = \"1.5%\"\n").unwrap();
        assert_eq!(n.nat_idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(n.rtt, Duration::from_millis(150));
        assert_eq!(n.loss_percent, 1.5);
        assert!(NetworkProfile::parse("nat_timeout = \"3s\"").unwrap_err().0.contains("unknown key `nat_timeout`"));
        assert!(NetworkProfile::parse("loss = \"200%\"").unwrap_err().0.contains("out of range"));
        assert!(NetworkProfile::parse("rtt = 3").unwrap_err().0.contains("rtt = 3"));
        assert!(NetworkProfile::parse("nat_idle_timeout = \"4500ms\"").unwrap_err().0.contains("whole seconds"));
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

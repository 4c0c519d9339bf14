//! Documented deviations of implementations from the spec
//! (`fixtures/deviations.toml`), rustls-style. A measured deviation stays a
//! `fail` in the report. A documented one carries its reason and does not
//! fail the run — but only while the measurement stays inside what the entry
//! documents (`early_by_at_most` / `late_by_at_most` beyond the spec window);
//! anything further is an unexplained fail.

use std::path::Path;
use std::time::Duration;

use kaspec_harness::expect::{Expectation, TOLERANCE_MS};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// The case id, or a list of them (one entry for one behaviour seen by
    /// several cases).
    pub case: CaseIds,
    /// `client` or `server`.
    pub side: String,
    /// Implementation name as results carry it (`mosquitto`).
    pub implementation: String,
    /// How much earlier than the spec window the implementation may act.
    #[serde(default, with = "humantime_serde_opt")]
    pub early_by_at_most: Option<Duration>,
    /// How much later than the spec window the implementation may act.
    #[serde(default, with = "humantime_serde_opt")]
    pub late_by_at_most: Option<Duration>,
    /// Why it deviates, with the source.
    pub reason: String,
}

/// One case id or several.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CaseIds {
    One(String),
    Many(Vec<String>),
}

impl CaseIds {
    pub fn contains(&self, id: &str) -> bool {
        match self {
            CaseIds::One(c) => c == id,
            CaseIds::Many(cs) => cs.iter().any(|c| c == id),
        }
    }
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("`{s}`: {e} (use ms, s or m)"))))
            .transpose()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    deviation: Vec<Deviation>,
}

/// Reads the deviations file; a malformed one is an error naming the file.
pub fn load(path: &Path) -> Result<Vec<Deviation>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
    Ok(f.deviation)
}

/// The reason of the deviation that explains `measured` for this result, if any.
pub fn explain(all: &[Deviation], case: &str, side: &str, implementation: &str, exp: &Expectation, measured: Option<u64>) -> Option<String> {
    let d = all.iter().find(|d| d.case.contains(case) && d.side == side && d.implementation == implementation)?;
    let (lo, hi, v) = (exp.min_ms?, exp.max_ms?, measured?);
    let early = d.early_by_at_most.map(|x| x.as_millis() as u64).unwrap_or(0);
    let late = d.late_by_at_most.map(|x| x.as_millis() as u64).unwrap_or(0);
    (v + early + TOLERANCE_MS >= lo && v <= hi + late + TOLERANCE_MS).then(|| d.reason.clone())
}

/// How much longer than its window a side may take by a documented
/// deviation (0 if none): added to that side's deadline.
pub fn late_allowance_ms(all: &[Deviation], case: &str, side: &str, implementation: &str) -> u64 {
    all.iter()
        .find(|d| d.case.contains(case) && d.side == side && d.implementation == implementation)
        .and_then(|d| d.late_by_at_most)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaspec_harness::expect::Level;

    #[test]
    fn a_deviation_explains_only_what_it_documents() {
        let all = vec![Deviation {
            case: CaseIds::One("c".into()),
            side: "server".into(),
            implementation: "x".into(),
            early_by_at_most: None,
            late_by_at_most: Some(Duration::from_secs(1)),
            reason: "slow".into(),
        }];
        let exp = Expectation::window(1000, 2000, "f", "s", Level::Must);
        assert_eq!(explain(&all, "c", "server", "x", &exp, Some(2900)).as_deref(), Some("slow"));
        assert_eq!(explain(&all, "c", "server", "x", &exp, Some(3300)), None, "later than documented");
        assert_eq!(explain(&all, "c", "server", "x", &exp, Some(500)), None, "earlier than documented");
        assert_eq!(explain(&all, "c", "client", "x", &exp, Some(2900)), None);
        assert_eq!(explain(&all, "c", "server", "x", &exp, None), None, "never acting is not explained");
    }
}

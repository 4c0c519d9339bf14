//! Documented deviations of implementations from the spec
//! (`fixtures/deviations.toml`), rustls-style. A measured deviation stays a
//! `fail` in the report. A documented one carries its reason and does not
//! fail the run — but only for the case(s), side, implementation and faults
//! it names, only when the observation shows what it says (`error_contains`)
//! and only while the measurement stays inside what it documents
//! (`early_by_at_most` / `late_by_at_most` beyond the window, plus the
//! result's measured budget); anything else is an unexplained fail. An entry
//! that explains nothing in a run is reported as stale.

use std::path::Path;
use std::time::Duration;

use kaspec_harness::expect::Expectation;
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
    /// The faults under which it deviates (all if absent).
    #[serde(default)]
    pub faults: Option<Vec<String>>,
    /// Text the observed error must contain for the entry to apply (the
    /// status or message that shows this deviation and no other).
    #[serde(default)]
    pub error_contains: Option<String>,
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
        s.map(|s| {
            humantime::parse_duration(&s)
                .map_err(|e| serde::de::Error::custom(format!("`{s}`: {e} (use ms, s or m)")))
        })
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
    let f: File =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
    Ok(f.deviation)
}

/// What one result showed, for matching deviation entries.
pub struct Seen<'a> {
    pub case: &'a str,
    pub side: &'a str,
    pub implementation: &'a str,
    pub fault: &'a str,
    pub error: Option<&'a str>,
    pub budget_ms: u64,
}

impl Deviation {
    fn names(&self, s: &Seen<'_>) -> bool {
        self.case.contains(s.case)
            && self.side == s.side
            && self.implementation == s.implementation
            && self
                .faults
                .as_ref()
                .is_none_or(|f| f.iter().any(|f| f == s.fault))
            && self
                .error_contains
                .as_ref()
                .is_none_or(|want| s.error.is_some_and(|e| e.contains(want.as_str())))
    }

    /// One line naming the entry, for the stale list.
    pub fn label(&self) -> String {
        let cases = match &self.case {
            CaseIds::One(c) => c.clone(),
            CaseIds::Many(cs) => cs.join(", "),
        };
        format!(
            "{cases} {} {}{}",
            self.side,
            self.implementation,
            self.faults
                .as_ref()
                .map(|f| format!(" under {}", f.join(", ")))
                .unwrap_or_default()
        )
    }
}

/// The reason of the deviation that explains this failed result, if any.
/// A timing deviation must stay within its documented bounds; an entry with
/// no bounds explains a non-timing failure (e.g. a status code) only.
pub fn explain(
    all: &[Deviation],
    seen: &Seen<'_>,
    exp: &Expectation,
    measured: Option<u64>,
) -> Option<String> {
    let d = all.iter().find(|d| d.names(seen))?;
    if d.early_by_at_most.is_none() && d.late_by_at_most.is_none() {
        return Some(d.reason.clone());
    }
    let (lo, hi, v) = (exp.min_ms?, exp.max_ms?, measured?);
    let early = d
        .early_by_at_most
        .map(|x| x.as_millis() as u64)
        .unwrap_or(0);
    let late = d.late_by_at_most.map(|x| x.as_millis() as u64).unwrap_or(0);
    let b = seen.budget_ms;
    (v + early + b >= lo && v <= hi + late + b).then(|| d.reason.clone())
}

/// The entries that explained none of `results` (for the run's cases):
/// stale, or their implementation got fixed.
pub fn stale(all: &[Deviation], results: &[kaspec_harness::report::CaseResult]) -> Vec<String> {
    all.iter()
        .filter(|d| {
            !results.iter().any(|r| {
                r.known_deviation.as_deref() == Some(d.reason.as_str()) && d.case.contains(&r.case)
            })
        })
        .filter(|d| results.iter().any(|r| d.case.contains(&r.case)))
        .map(|d| d.label())
        .collect()
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
            faults: None,
            error_contains: None,
            early_by_at_most: None,
            late_by_at_most: Some(Duration::from_secs(1)),
            reason: "slow".into(),
        }];
        let exp = Expectation::window(1000, 2000, "f", "s", Level::Must);
        let seen = |side| Seen {
            case: "c",
            side,
            implementation: "x",
            fault: "blackhole",
            error: None,
            budget_ms: 10,
        };
        assert_eq!(
            explain(&all, &seen("server"), &exp, Some(3010)).as_deref(),
            Some("slow"),
            "1 s late + the 10 ms budget"
        );
        assert_eq!(
            explain(&all, &seen("server"), &exp, Some(3011)),
            None,
            "later than documented"
        );
        assert_eq!(
            explain(&all, &seen("server"), &exp, Some(500)),
            None,
            "earlier than documented"
        );
        assert_eq!(explain(&all, &seen("client"), &exp, Some(2900)), None);
        assert_eq!(
            explain(&all, &seen("server"), &exp, None),
            None,
            "never acting is not explained"
        );
    }

    #[test]
    fn an_entry_names_its_faults_and_what_the_observation_shows() {
        let all = vec![Deviation {
            case: CaseIds::One("c".into()),
            side: "client".into(),
            implementation: "tonic".into(),
            faults: Some(vec!["reset".into()]),
            error_contains: Some("code: Unknown".into()),
            early_by_at_most: None,
            late_by_at_most: None,
            reason: "Unknown, not UNAVAILABLE".into(),
        }];
        let exp = Expectation::window(1000, 1000, "f", "s", Level::Must);
        let seen = |fault, error| Seen {
            case: "c",
            side: "client",
            implementation: "tonic",
            fault,
            error,
            budget_ms: 5,
        };
        assert!(explain(
            &all,
            &seen("reset", Some("status: code: Unknown, transport error")),
            &exp,
            Some(1000)
        )
        .is_some());
        assert_eq!(
            explain(
                &all,
                &seen("blackhole", Some("code: Unknown")),
                &exp,
                Some(1000)
            ),
            None,
            "another fault"
        );
        assert_eq!(
            explain(
                &all,
                &seen("reset", Some("code: Internal")),
                &exp,
                Some(1000)
            ),
            None,
            "another status"
        );
        assert_eq!(
            explain(&all, &seen("reset", None), &exp, Some(1000)),
            None,
            "no error at all"
        );
    }
}

//! The report: a versioned JSON document (one object per result), the model
//! every renderer reads. Renderers never decide anything (h2spec's
//! reporters only read results): verdicts come from the judge.
//!
//! - this file: the model ([`Report`], [`CaseResult`], [`Release`], …) and
//!   its JSON, versioned by [`SCHEMA_VERSION`] (nextest: a stable,
//!   versioned machine-readable output);
//! - `markdown.rs`, [`html`], [`junit`]: the renderings;
//! - [`fleet`]: a fleet's result (N connections folded into one per side);
//! - [`clients`]: the clients view — per protocol, client implementations
//!   as columns against each server, both sides in each cell (report.md,
//!   report.html, `kaspec compare`);
//! - [`compare`]: `kaspec compare`, the difference of reports;
//! - [`merge`]: `kaspec run --partition K/N` and `kaspec merge`, a run
//!   split across machines.

pub mod clients;
pub mod compare;
pub mod curve;
pub mod fleet;
pub mod html;
pub mod junit;
mod markdown;
pub mod merge;

pub use merge::{Part, Partition, Share};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::caps::Capabilities;
use crate::expect::{Expectation, Verdict};
use crate::expect::{Budget, CheckOutcome};
use crate::{Error, Result};

/// Bumped on any incompatible change of the JSON shape.
pub const SCHEMA_VERSION: u32 = 2;

/// The report schema versions this kaspec reads (`kaspec compare`): a
/// report of another version is refused by name, never half-understood.
/// Version 1 (a fixed ±200 ms tolerance, no budget, no release verdict) is
/// still read: its results compare with `tolerance_ms` as their budget.
pub const READS_SCHEMA_VERSIONS: &[u32] = &[1, SCHEMA_VERSION];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Implementation {
    pub name: String,
    pub version: String,
}

impl Implementation {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Implementation { name: name.into(), version: version.into() }
    }
}

impl std::fmt::Display for Implementation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// One timestamped event of a case run, relative to the fault being in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Milliseconds after the fault was in force (negative: before).
    pub t_ms: i64,
    pub what: String,
}

/// One result: one side of one case under one fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseResult {
    pub case: String,
    pub protocol: String,
    /// One-line description of the case.
    pub description: String,
    /// The requirement checked, quoted or paraphrased from the spec.
    pub requirement: String,
    /// `client` or `server`: whose detection this is.
    pub side: String,
    /// The implementation whose detection this is.
    pub implementation: Implementation,
    /// The other end.
    pub peer: Implementation,
    pub fault: String,
    /// What applied the fault (`nftables`), or `none`.
    pub engine: String,
    /// The effective knobs.
    pub config: BTreeMap<String, String>,
    pub detected: bool,
    /// From fault in force to detection; null if not detected.
    pub detection_ms: Option<u64>,
    /// How long the case waited.
    pub deadline_ms: u64,
    pub expected: Expectation,
    /// The measured error terms allowed around the window (the judge's only
    /// allowance). Version-1 reports carried a fixed `tolerance_ms` instead.
    #[serde(default)]
    pub budget: Budget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_ms: Option<u64>,
    /// max − min of the window, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_width_ms: Option<u64>,
    /// The first axis: detected in time (and every requirement met).
    pub verdict: Verdict,
    pub verdict_detail: String,
    /// The non-timing requirements, as judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
    /// A documented deviation of this implementation (fixtures/deviations.toml).
    pub known_deviation: Option<String>,
    /// The error as the library or observer reported it, verbatim.
    pub error: Option<String>,
    pub timeline: Vec<Event>,
    /// With `--repeat N`: every run's detection, and their spread. The
    /// result's `detection_ms` is then the median, its verdict the worst run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<RepeatStats>,
    /// The second axis: was this side's end of the connection released once
    /// the case ended (socket closed by the application, no leaked session)?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// The second axis, judged: a leak where a detection was promised fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_detail: Option<String>,
    /// A fleet case: the distribution over its connections (the result
    /// shows the deciding one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<fleet::Fleet>,
    /// A swept case's curve (the HTTP reuse race's failure rate), drawn in the HTML report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<curve::Curve>,
}

/// This side's socket of the flow at the end of the case, with the path
/// still faulted: gone or in a state the application's close leads to
/// (FIN-WAIT, LAST-ACK, CLOSING, TIME-WAIT) is released; ESTABLISHED (the
/// session was never ended) or CLOSE-WAIT (the peer's FIN came, the
/// application never closed) is a leak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub clean: bool,
    /// The socket state, or `gone`.
    pub state: String,
    pub detail: String,
}

impl Release {
    /// From the flow's socket state (`None`: no socket left).
    pub fn from_state(state: Option<&str>) -> Release {
        let (clean, detail) = match state {
            None => (true, "socket gone".to_string()),
            Some("ESTABLISHED") => (false, "the connection is still ESTABLISHED: the session was never ended (leaked)".to_string()),
            Some("CLOSE_WAIT") => (false, "CLOSE_WAIT: the peer's FIN arrived but the application never closed".to_string()),
            Some(s @ ("FIN_WAIT1" | "FIN_WAIT2" | "CLOSING" | "LAST_ACK")) => {
                (true, format!("{s}: closed by the application; the kernel finishes the close (its FIN may be stuck in the dead path)"))
            }
            Some(s @ "TIME_WAIT") => (true, format!("{s}: closed cleanly")),
            Some(s) => (false, format!("{s}: not released")),
        };
        Release { clean, state: state.unwrap_or("gone").to_string(), detail }
    }

    pub fn short(&self) -> String {
        if self.clean {
            format!("yes ({})", self.state)
        } else {
            format!("**no** ({})", self.state)
        }
    }
}

/// Detection times of repeated runs of one result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepeatStats {
    /// Each run's detection (null: not detected), in run order.
    pub runs: Vec<Option<u64>>,
    /// Each run's verdict, in run order.
    pub verdicts: Vec<Verdict>,
    /// Each run's window (min, max), in run order: the window moves with
    /// what each run observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<(Option<u64>, Option<u64>)>,
    /// Each run's release verdict, in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_verdicts: Vec<Option<Verdict>>,
    /// The run (0-based) whose detection, window and verdict the result shows.
    #[serde(default)]
    pub shown_run: usize,
    pub min_ms: Option<u64>,
    pub median_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// max − min of the detected runs.
    pub spread_ms: Option<u64>,
}

impl RepeatStats {
    pub fn of(runs: Vec<Option<u64>>, verdicts: Vec<Verdict>) -> RepeatStats {
        let mut d: Vec<u64> = runs.iter().flatten().copied().collect();
        d.sort_unstable();
        // The median over every run, a run without detection counting as
        // later than any detection: 1 detection in 5 runs is "not detected".
        let mut all: Vec<Option<u64>> = runs.clone();
        all.sort_by_key(|v| v.unwrap_or(u64::MAX));
        let median = all.get(all.len() / 2).copied().flatten();
        RepeatStats {
            min_ms: d.first().copied(),
            median_ms: median,
            max_ms: d.last().copied(),
            spread_ms: d.first().zip(d.last()).map(|(a, b)| b - a),
            runs,
            verdicts,
            windows: Vec::new(),
            release_verdicts: Vec::new(),
            shown_run: 0,
        }
    }
}

/// The worst of several verdicts: fail > non-strict > informational/pass > unsupported.
pub fn worst(verdicts: &[Verdict]) -> Verdict {
    let rank = |v: &Verdict| match v {
        Verdict::Fail => 4,
        Verdict::NonStrict => 3,
        Verdict::Informational => 2,
        Verdict::Pass => 1,
        Verdict::Unsupported => 0,
    };
    verdicts.iter().copied().max_by_key(rank).unwrap_or(Verdict::Unsupported)
}

impl CaseResult {
    /// The key that identifies "the same result" across runs and reports:
    /// case, fault, side, implementation and the peer it ran against.
    pub fn key(&self) -> String {
        format!("{} [{}] {} {} vs {}", self.case, self.fault, self.side, self.implementation.name, self.peer.name)
    }

    /// Folds repeated runs of the same result (same [`key`](Self::key)) into
    /// one that agrees with itself: the verdict is the worst run's, and the
    /// detection, window and details shown are that run's; every run's
    /// detection, window and verdicts are kept in `repeat`, with the median
    /// and spread.
    pub fn fold(runs: Vec<CaseResult>) -> CaseResult {
        let detections: Vec<Option<u64>> = runs.iter().map(|r| r.detection_ms).collect();
        let verdicts: Vec<Verdict> = runs.iter().map(|r| r.verdict).collect();
        let mut stats = RepeatStats::of(detections, verdicts.clone());
        stats.windows = runs.iter().map(|r| (r.expected.min_ms, r.expected.max_ms)).collect();
        stats.release_verdicts = runs.iter().map(|r| r.release_verdict).collect();
        let worst_v = worst(&verdicts);
        // The run that decided the verdict; an unexplained fail outranks a
        // documented one, a leak outranks a clean release.
        let pick = runs
            .iter()
            .position(|r| r.verdict == worst_v && r.known_deviation.is_none() && r.release_verdict == Some(Verdict::Fail))
            .or_else(|| runs.iter().position(|r| r.verdict == worst_v && r.known_deviation.is_none()))
            .unwrap_or_else(|| runs.iter().position(|r| r.verdict == worst_v).expect("at least one run"));
        let release_worst = worst(&stats.release_verdicts.iter().flatten().copied().collect::<Vec<_>>());
        stats.shown_run = pick;
        let n = stats.runs.len();
        let bad = stats.verdicts.iter().filter(|v| **v == worst_v).count();
        let seen = stats.runs.iter().flatten().count();
        let mut out = runs.into_iter().nth(pick).expect("picked");
        if out.release_verdict.is_some() && release_worst != Verdict::Unsupported {
            out.release_verdict = Some(release_worst);
        }
        out.verdict_detail = format!("run {} of {n}: {}; {bad} of {n} runs {worst_v}; detected in {seen} of {n}", pick + 1, out.verdict_detail);
        out.repeat = Some(stats);
        out
    }

    /// The expected outcome as a table shows it ("—" for a case × fault
    /// that did not run).
    pub fn expected_text(&self) -> String {
        if self.verdict == Verdict::Unsupported {
            "—".into()
        } else {
            self.expected.describe()
        }
    }

    /// The allowance around this result's window: its measured budget (a
    /// version-1 report's fixed tolerance).
    pub fn allowance_ms(&self) -> u64 {
        self.tolerance_ms.unwrap_or(self.budget.total_ms())
    }

    /// Whether this result fails the run: an unexplained fail on either axis.
    pub fn fails(&self) -> bool {
        (self.verdict == Verdict::Fail && self.known_deviation.is_none()) || self.release_verdict == Some(Verdict::Fail)
    }
}

/// A harness failure: the case could not run as designed. Never a verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunError {
    pub case: String,
    pub fault: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub kernel: String,
    pub nft_version: String,
    /// Fault engines: nftables, netem (with the reason if absent), conntrack.
    pub engines: BTreeMap<String, String>,
    pub cpus: usize,
    /// Every client and server implementation measured, with its version.
    #[serde(default)]
    pub implementations: Vec<Implementation>,
}

impl Environment {
    pub fn from_caps(c: &Capabilities) -> Self {
        let mut engines = BTreeMap::new();
        engines.insert("nftables".into(), if c.nftables { "available".into() } else { "missing".into() });
        engines.insert(
            "netem".into(),
            if c.netem { "available".into() } else { format!("missing: {}", c.netem_error.clone().unwrap_or_default()) },
        );
        engines.insert("conntrack".into(), if c.conntrack { "available".into() } else { "missing".into() });
        Environment {
            kernel: c.kernel.clone(),
            nft_version: c.nft_version.clone(),
            engines,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            implementations: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub kaspec_version: String,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub testbed: String,
    pub command: Vec<String>,
    pub environment: Option<Environment>,
    pub results: Vec<CaseResult>,
    pub errors: Vec<RunError>,
    /// Documented deviations (fixtures/deviations.toml) that explained none
    /// of this run's results although it ran their cases: stale entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_deviations: Vec<String>,
    /// With `--partition K/N`: this run's share and the whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// A merged report (`kaspec merge`): each part as it ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// What the run says about how it ran, e.g. a unit run beside others
    /// (`--jobs`) that was starved of CPU and ran again alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// Counts by verdict, in a fixed order.
    pub fn counts(&self) -> Vec<(Verdict, usize)> {
        Verdict::ALL.iter().map(|v| (*v, self.results.iter().filter(|r| r.verdict == *v).count())).collect()
    }

    /// Failures not covered by a documented deviation.
    pub fn unexpected_failures(&self) -> usize {
        self.results.iter().filter(|r| r.fails()).count()
    }

    /// 0 all good, 1 a fail, 2 a harness error.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.unexpected_failures() > 0 {
            1
        } else {
            0
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Other(format!("serialising the report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Reads a report written by [`write_json`](Self::write_json); one of
    /// another schema version than [`READS_SCHEMA_VERSIONS`] is an error
    /// (one line, naming the file and the versions this kaspec reads),
    /// checked before the shape, which that version may have changed.
    pub fn read_json(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let version = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("schema_version").and_then(|n| n.as_u64()));
        if let Some(v) = version.filter(|v| !READS_SCHEMA_VERSIONS.iter().any(|r| u64::from(*r) == *v)) {
            let reads: Vec<String> = READS_SCHEMA_VERSIONS.iter().map(|r| r.to_string()).collect();
            return Err(Error::Other(format!(
                "{}: report schema version {v}; this kaspec reads schema version {}",
                path.display(),
                reads.join(", ")
            )));
        }
        serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: not a kaspec report: {e}", path.display())))
    }

    /// A one-line summary: `12 results: 9 pass, 1 fail, ...`.
    pub fn summary_line(&self) -> String {
        let parts: Vec<String> =
            self.counts().into_iter().filter(|(_, n)| *n > 0).map(|(v, n)| format!("{n} {v}")).collect();
        let mut s = format!("{} results: {}", self.results.len(), if parts.is_empty() { "none".into() } else { parts.join(", ") });
        let known = self.results.iter().filter(|r| r.verdict == Verdict::Fail && r.known_deviation.is_some()).count();
        if known > 0 {
            let _ = write!(s, " ({known} fail are documented deviations)");
        }
        let leaks = self.results.iter().filter(|r| r.release_verdict == Some(Verdict::Fail)).count();
        if leaks > 0 {
            let _ = write!(s, "; {leaks} leak(s): a side that had to detect left its connection open");
        }
        if !self.errors.is_empty() {
            let _ = write!(s, "; {} harness error(s)", self.errors.len());
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn release_is_clean_only_when_the_application_closed() {
        assert!(Release::from_state(None).clean);
        assert!(Release::from_state(Some("FIN_WAIT1")).clean);
        assert!(Release::from_state(Some("TIME_WAIT")).clean);
        assert!(!Release::from_state(Some("ESTABLISHED")).clean);
        assert!(!Release::from_state(Some("CLOSE_WAIT")).clean);
        assert_eq!(Release::from_state(Some("ESTABLISHED")).short(), "**no** (ESTABLISHED)");
    }

    use super::*;
    use crate::expect::{Expectation, Level};

    pub(crate) fn result(verdict: Verdict, deviation: Option<&str>) -> CaseResult {
        CaseResult {
            case: "tcp/x/1".into(),
            protocol: "tcp".into(),
            description: "d".into(),
            requirement: "r".into(),
            side: "client".into(),
            implementation: Implementation::new("a", "1"),
            peer: Implementation::new("b", "2"),
            fault: "blackhole".into(),
            engine: "nftables".into(),
            config: BTreeMap::new(),
            detected: true,
            detection_ms: Some(1234),
            deadline_ms: 9000,
            expected: Expectation::window(1000, 1100, "I + N×V", "RFC 1122", Level::Must),
            budget: Default::default(),
            tolerance_ms: None,
            window_width_ms: Some(100),
            checks: Vec::new(),
            verdict,
            verdict_detail: "expected 1.00 s–1.10 s, detected after 1.23 s".into(),
            known_deviation: deviation.map(String::from),
            error: Some("read: TimedOut".into()),
            timeline: vec![Event { t_ms: 0, what: "fault".into() }],
            repeat: None,
            release: None,
            release_verdict: None,
            release_detail: None,
            fleet: None,
            curve: None,
        }
    }

    pub(crate) fn report(results: Vec<CaseResult>, errors: Vec<RunError>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            kaspec_version: "0".into(),
            run_id: "r".into(),
            started_at: "s".into(),
            finished_at: "f".into(),
            testbed: "netns".into(),
            command: vec!["kaspec".into(), "run".into()],
            environment: None,
            results,
            errors,
            stale_deviations: vec![],
            partition: None,
            parts: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn repeated_runs_fold_into_median_and_worst_verdict() {
        let mut a = result(Verdict::Pass, None);
        a.detection_ms = Some(1000);
        let mut b = result(Verdict::Fail, None);
        b.detection_ms = Some(1400);
        let mut c = result(Verdict::Pass, None);
        c.detection_ms = Some(1100);
        let f = CaseResult::fold(vec![a, b, c]);
        assert_eq!(f.verdict, Verdict::Fail);
        // The numbers shown are the deciding run's, the median is kept.
        assert_eq!(f.detection_ms, Some(1400));
        let st = f.repeat.unwrap();
        assert_eq!((st.min_ms, st.median_ms, st.max_ms, st.spread_ms), (Some(1000), Some(1100), Some(1400), Some(400)));
        assert_eq!((st.shown_run, st.windows.len()), (1, 3));
        assert!(f.verdict_detail.starts_with("run 2 of 3: "), "{}", f.verdict_detail);
        assert!(f.verdict_detail.ends_with("1 of 3 runs fail; detected in 3 of 3"), "{}", f.verdict_detail);
        // Mostly undetected: the median is "not detected".
        let st = RepeatStats::of(vec![Some(10), None, None], vec![Verdict::Fail; 3]);
        assert_eq!((st.median_ms, st.min_ms), (None, Some(10)));
        // An unexplained fail is reported over a documented one.
        let known = result(Verdict::Fail, Some("documented"));
        let unknown = result(Verdict::Fail, None);
        assert_eq!(CaseResult::fold(vec![known, unknown]).known_deviation, None);
    }

    #[test]
    fn exit_code_follows_the_worst_outcome() {
        assert_eq!(report(vec![result(Verdict::Pass, None), result(Verdict::Informational, None)], vec![]).exit_code(), 0);
        assert_eq!(report(vec![result(Verdict::Fail, Some("documented"))], vec![]).exit_code(), 0);
        assert_eq!(report(vec![result(Verdict::Fail, None)], vec![]).exit_code(), 1);
        let err = RunError { case: "c".into(), fault: "f".into(), message: "m".into() };
        assert_eq!(report(vec![result(Verdict::Fail, None)], vec![err]).exit_code(), 2);
        // The release axis reaches the exit code: a leak where a detection
        // was promised fails the run even when the detection passed.
        let mut leak = result(Verdict::Pass, None);
        leak.release_verdict = Some(Verdict::Fail);
        assert_eq!(report(vec![leak], vec![]).exit_code(), 1);
    }

    #[test]
    fn a_version_1_report_still_reads_with_its_tolerance_as_budget() {
        let mut v1 = serde_json::to_value(report(vec![result(Verdict::Pass, None)], vec![])).unwrap();
        v1["schema_version"] = 1.into();
        v1["results"][0]["tolerance_ms"] = 200.into();
        v1["results"][0].as_object_mut().unwrap().remove("budget");
        let r: Report = serde_json::from_value(v1).unwrap();
        assert_eq!(r.results[0].allowance_ms(), 200);
    }

    #[test]
    fn json_round_trips_and_markdown_shows_expected_vs_actual() {
        let r = report(vec![result(Verdict::Fail, None)], vec![]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["results"][0]["verdict"], "fail");
        assert_eq!(v["results"][0]["expected"]["min_ms"], 1000);
        let md = r.to_markdown();
        assert!(md.contains("| `tcp/x/1` | blackhole | client | a 1 | 1.23 s | 1.00 s–1.10 s | ±0 ms | 100 ms | **fail** |"), "{md}");
        assert!(md.contains("1 results: 1 fail"));
    }
}

//! `kaspec compare`: what changed between reports. Results are matched by
//! key (case, fault, side, implementation). A change in detection time counts
//! only beyond the larger of the two runs' measured spreads (`--repeat`) and
//! their error budgets; a leak that appears (release axis) is a regression.
//!
//! Two views: by run (the default: the changes from the first report to the
//! last, all reports side by side, and — where the reports hold more than
//! one client implementation of a protocol — the clients view), and by
//! client (`--by client`: only the clients view, [`clients`], a column per
//! client per report against each server; a view, never a regression).

use std::fmt::Write as _;

use crate::expect::{ms, Verdict};
use super::html::{clients_section, esc};
use crate::report::{clients, CaseResult, Report};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The verdict got worse (a regression) or better.
    Verdict { key: String, from: String, to: String, worse: bool },
    /// Detection time moved beyond the spread.
    Time { key: String, from_ms: u64, to_ms: u64, allowed_ms: u64 },
    /// Detected before, not now (a regression when detection is expected).
    Lost { key: String, from_ms: u64, expected: bool },
    /// Not detected before, detected now.
    Gained { key: String, to_ms: u64 },
    /// The release verdict changed (a leak that appears is a regression).
    Release { key: String, from: String, to: String, worse: bool },
    Added { key: String },
    Removed { key: String },
}

impl Change {
    pub fn is_regression(&self) -> bool {
        match self {
            Change::Verdict { worse, .. } => *worse,
            Change::Time { from_ms, to_ms, .. } => to_ms > from_ms,
            Change::Lost { expected, .. } => *expected,
            Change::Release { worse, .. } => *worse,
            _ => false,
        }
    }

    pub fn line(&self) -> String {
        let tag = if self.is_regression() { "REGRESSION " } else { "" };
        match self {
            Change::Verdict { key, from, to, .. } => format!("{tag}`{key}`: verdict {from} → {to}"),
            Change::Time { key, from_ms, to_ms, allowed_ms } => format!(
                "{tag}`{key}`: detection {} → {} ({}{}, beyond the spread of {})",
                ms(*from_ms),
                ms(*to_ms),
                if to_ms > from_ms { "+" } else { "−" },
                ms(to_ms.abs_diff(*from_ms)),
                ms(*allowed_ms)
            ),
            Change::Lost { key, from_ms, .. } => format!("{tag}`{key}`: detected after {} before, not detected now", ms(*from_ms)),
            Change::Gained { key, to_ms } => format!("`{key}`: not detected before, detected after {} now", ms(*to_ms)),
            Change::Release { key, from, to, .. } => format!("{tag}`{key}`: released {from} → {to}"),
            Change::Added { key } => format!("`{key}`: added"),
            Change::Removed { key } => format!("`{key}`: removed"),
        }
    }
}

fn rank(r: &CaseResult) -> u8 {
    match (r.verdict, &r.known_deviation) {
        (Verdict::Fail, None) => 3,
        (Verdict::Fail, Some(_)) | (Verdict::NonStrict, _) => 2,
        _ => 1,
    }
}

fn label(r: &CaseResult) -> String {
    clients::verdict_label(r)
}

/// The allowance for a time change: the larger of the two runs' measured
/// spreads and error budgets (a smaller change cannot be told from the
/// runs' own variation or measurement error).
fn allowed(a: &CaseResult, b: &CaseResult) -> u64 {
    let spread = |r: &CaseResult| r.repeat.as_ref().and_then(|s| s.spread_ms).unwrap_or(0);
    spread(a).max(spread(b)).max(a.allowance_ms()).max(b.allowance_ms())
}

fn release_label(r: &CaseResult) -> String {
    r.release_verdict.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The changes from `base` to `new`.
pub fn diff(base: &Report, new: &Report) -> Vec<Change> {
    let mut out = Vec::new();
    for b in &base.results {
        let key = b.key();
        let Some(n) = new.results.iter().find(|n| n.key() == key) else {
            out.push(Change::Removed { key });
            continue;
        };
        if label(b) != label(n) {
            out.push(Change::Verdict { key: key.clone(), from: label(b), to: label(n), worse: rank(n) > rank(b) });
        }
        if b.release_verdict != n.release_verdict {
            let worse = n.release_verdict == Some(Verdict::Fail) && b.release_verdict != Some(Verdict::Fail);
            out.push(Change::Release { key: key.clone(), from: release_label(b), to: release_label(n), worse });
        }
        match (b.detection_ms, n.detection_ms) {
            (Some(x), Some(y)) => {
                let a = allowed(b, n);
                if x.abs_diff(y) > a {
                    out.push(Change::Time { key, from_ms: x, to_ms: y, allowed_ms: a });
                }
            }
            (Some(x), None) => out.push(Change::Lost { key, from_ms: x, expected: n.expected.expects_detection() }),
            (None, Some(y)) => out.push(Change::Gained { key, to_ms: y }),
            (None, None) => {}
        }
    }
    for n in &new.results {
        if !base.results.iter().any(|b| b.key() == n.key()) {
            out.push(Change::Added { key: n.key() });
        }
    }
    out
}

/// A side-by-side table of several reports (e.g. one per client profile).
pub fn table_markdown(labels: &[String], reports: &[Report]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for r in reports {
        for x in &r.results {
            if !keys.contains(&x.key()) {
                keys.push(x.key());
            }
        }
    }
    let mut m = String::new();
    let _ = writeln!(m, "| result | {} |", labels.join(" | "));
    let _ = writeln!(m, "|---|{}", "---|".repeat(labels.len()));
    for k in &keys {
        let cells: Vec<String> = reports
            .iter()
            .map(|r| match r.results.iter().find(|x| &x.key() == k) {
                Some(x) => format!("{} {}", label(x), x.detection_ms.map(ms).unwrap_or_else(|| "—".into())),
                None => "".into(),
            })
            .collect();
        let _ = writeln!(m, "| `{k}` | {} |", cells.join(" | "));
    }
    // What differs between the reports' configurations.
    let mut cfg_rows = String::new();
    let mut all_keys: Vec<String> = reports.iter().flat_map(|r| r.results.iter().flat_map(|x| x.config.keys().cloned())).collect();
    all_keys.sort();
    all_keys.dedup();
    for ck in all_keys {
        let vals: Vec<String> = reports
            .iter()
            .map(|r| r.results.iter().find_map(|x| x.config.get(&ck).cloned()).unwrap_or_default())
            .collect();
        if vals.iter().any(|v| v != &vals[0]) {
            let _ = writeln!(cfg_rows, "| `{ck}` | {} |", vals.join(" | "));
        }
    }
    if !cfg_rows.is_empty() {
        let _ = writeln!(m, "\nConfiguration differences:\n\n| key | {} |\n|---|{}\n{cfg_rows}", labels.join(" | "), "---|".repeat(labels.len()));
    }
    m
}

/// The whole comparison as Markdown: the changes from the first report to
/// the last, then the side-by-side table.
pub fn markdown(labels: &[String], reports: &[Report]) -> (String, usize) {
    let (base, new) = (&reports[0], &reports[reports.len() - 1]);
    let changes = diff(base, new);
    let regressions = changes.iter().filter(|c| c.is_regression()).count();
    let mut m = String::new();
    let _ = writeln!(m, "# kaspec compare\n");
    let _ = writeln!(m, "From `{}` ({}) to `{}` ({}): {} change(s), {} regression(s).\n", labels[0], base.run_id, labels[labels.len() - 1], new.run_id, changes.len(), regressions);
    let _ = writeln!(
        m,
        "Detection-time changes count beyond the larger of the two runs' measured spreads (`--repeat`) and error budgets; a leak that appears is a regression.\n"
    );
    for c in &changes {
        let _ = writeln!(m, "- {}", c.line());
    }
    if changes.is_empty() {
        let _ = writeln!(m, "No change.");
    }
    let _ = write!(m, "{}", clients::markdown(&clients::of_reports(labels, reports), "\n## Clients side by side"));
    let _ = writeln!(m, "\n## Side by side\n\n{}", table_markdown(labels, reports));
    (m, regressions)
}

/// What `--by client` says when no protocol has two client implementations.
const NO_CLIENTS: &str = "No protocol has two client implementations (or one in two configurations) in the same case: nothing to set side by side.";

/// `kaspec compare --by client`: the clients view across the reports, a
/// column per client implementation per report, against each server.
pub fn by_client_markdown(labels: &[String], reports: &[Report]) -> String {
    let mut m = String::from("# kaspec compare — clients\n\n");
    for (l, r) in labels.iter().zip(reports) {
        let _ = writeln!(m, "- `{l}`: run {} ({}), testbed `{}`", r.run_id, r.started_at, r.testbed);
    }
    let tables = clients::markdown(&clients::of_reports(labels, reports), "");
    let _ = writeln!(m);
    if tables.is_empty() {
        let _ = writeln!(m, "{NO_CLIENTS}");
    }
    m + &tables
}

/// The same as a small self-contained HTML page.
pub fn by_client_html(labels: &[String], reports: &[Report]) -> String {
    let mut h = page_head("kaspec compare — clients");
    let _ = write!(h, "<ul>");
    for (l, r) in labels.iter().zip(reports) {
        let _ = write!(h, "<li><code>{}</code>: run {} ({}), testbed {}</li>", esc(l), esc(&r.run_id), esc(&r.started_at), esc(&r.testbed));
    }
    let _ = write!(h, "</ul>");
    let section = clients_section(&clients::of_reports(labels, reports), false);
    if section.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(NO_CLIENTS));
    }
    h + &section + "</body></html>\n"
}

fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:system-ui,sans-serif;margin:24px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}\
.reg{{color:#a00;font-weight:bold}}.cell{{white-space:nowrap}}</style></head><body><h1>{title}</h1>"
    )
}

/// The same as a small self-contained HTML page.
pub fn html(labels: &[String], reports: &[Report]) -> String {
    let (base, new) = (&reports[0], &reports[reports.len() - 1]);
    let changes = diff(base, new);
    let mut h = page_head("kaspec compare") + "<ul>";
    for c in &changes {
        let _ = write!(h, "<li{}>{}</li>", if c.is_regression() { " class=\"reg\"" } else { "" }, esc(&c.line()));
    }
    let _ = write!(h, "</ul><table><tr><th>result</th>");
    for l in labels {
        let _ = write!(h, "<th>{}</th>", esc(l));
    }
    let _ = write!(h, "</tr>");
    let mut keys: Vec<String> = Vec::new();
    for r in reports {
        for x in &r.results {
            if !keys.contains(&x.key()) {
                keys.push(x.key());
            }
        }
    }
    for k in keys {
        let _ = write!(h, "<tr><td><code>{}</code></td>", esc(&k));
        for r in reports {
            let cell = r.results.iter().find(|x| x.key() == k).map(|x| format!("{} {}", label(x), x.detection_ms.map(ms).unwrap_or_else(|| "—".into())));
            let _ = write!(h, "<td>{}</td>", esc(&cell.unwrap_or_default()));
        }
        let _ = write!(h, "</tr>");
    }
    h.push_str("</table>");
    h.push_str(&clients_section(&clients::of_reports(labels, reports), false));
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::{Expectation, Level};
    use crate::report::{Implementation, RepeatStats};

    fn res(case: &str, verdict: Verdict, d: Option<u64>) -> CaseResult {
        CaseResult {
            case: case.into(),
            protocol: "tcp".into(),
            description: String::new(),
            requirement: String::new(),
            side: "client".into(),
            implementation: Implementation::new("x", "1"),
            peer: Implementation::new("y", "1"),
            fault: "blackhole".into(),
            engine: "nftables".into(),
            config: Default::default(),
            detected: d.is_some(),
            detection_ms: d,
            deadline_ms: 9000,
            expected: Expectation::window(1000, 2000, "f", "s", Level::Must),
            budget: Default::default(),
            tolerance_ms: None,
            window_width_ms: None,
            checks: Vec::new(),
            verdict,
            verdict_detail: String::new(),
            known_deviation: None,
            error: None,
            timeline: vec![],
            repeat: None,
            release: None,
            release_verdict: None,
            release_detail: None,
            fleet: None,
            curve: None,
        }
    }

    fn rep(results: Vec<CaseResult>) -> Report {
        Report {
            schema_version: 1,
            kaspec_version: "0".into(),
            run_id: "r".into(),
            started_at: String::new(),
            finished_at: String::new(),
            testbed: "netns".into(),
            command: vec![],
            environment: None,
            results,
            errors: vec![],
            stale_deviations: vec![],
            partition: None,
            parts: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn verdict_and_time_regressions_are_found() {
        let base = rep(vec![res("a", Verdict::Pass, Some(1500)), res("b", Verdict::Pass, Some(1500)), res("c", Verdict::Pass, Some(1500))]);
        let mut within = res("b", Verdict::Pass, Some(1512));
        within.budget = crate::expect::Budget { fault_commit_ms: 4, observer_ms: 7, wake_ms: 1 };
        let new = rep(vec![res("a", Verdict::Fail, Some(2500)), within, res("d", Verdict::Pass, Some(1))]);
        let d = diff(&base, &new);
        assert!(d.iter().any(|c| matches!(c, Change::Verdict { worse: true, .. })));
        assert!(d.iter().any(|c| matches!(c, Change::Time { from_ms: 1500, to_ms: 2500, .. })));
        assert!(!d.iter().any(|c| matches!(c, Change::Time { to_ms: 1512, .. })), "within the 12 ms budget");
        assert!(d.contains(&Change::Removed { key: "c [blackhole] client x vs y".into() }));
        assert!(d.contains(&Change::Added { key: "d [blackhole] client x vs y".into() }));
        assert_eq!(d.iter().filter(|c| c.is_regression()).count(), 2);
    }

    #[test]
    fn the_measured_spread_sets_the_threshold() {
        let mut a = res("a", Verdict::Pass, Some(1500));
        a.repeat = Some(RepeatStats::of(vec![Some(1000), Some(1500), Some(1900)], vec![Verdict::Pass; 3]));
        let b = res("a", Verdict::Pass, Some(2300));
        assert!(diff(&rep(vec![a.clone()]), &rep(vec![b])).is_empty(), "800 ms is within a 900 ms spread");
        let c = res("a", Verdict::Pass, Some(2500));
        assert_eq!(diff(&rep(vec![a]), &rep(vec![c])).len(), 1);
    }

    #[test]
    fn improvements_are_not_regressions() {
        let d = diff(&rep(vec![res("a", Verdict::Fail, Some(3000))]), &rep(vec![res("a", Verdict::Pass, Some(1500))]));
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|c| !c.is_regression()));
    }

    #[test]
    fn clients_differ_the_default_view_adds_them_and_by_client_shows_only_them() {
        use crate::report::clients::tests::{pair, PAHO, RUMQTTC};
        let a = rep(pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Pass, Some(2500))).into());
        let b = rep(pair(PAHO, "blackhole", (Verdict::Pass, Some(3011)), (Verdict::Fail, Some(2316))).into());
        let labels = vec!["lib".to_string(), "paho".to_string()];
        let (md, regressions) = markdown(&labels, &[a.clone(), b.clone()]);
        assert_eq!(regressions, 0, "another client is not a regression: {md}");
        let clients = md.find("## Clients side by side").expect("the default adds the clients view");
        assert!(clients < md.find("## Side by side").expect("side by side"), "{md}");
        assert!(md.contains("| case | fault | server | rumqttc 0.24.0 (lib) [1] | paho-mqtt 1.6.1 (paho) [2] |"), "{md}");
        // The same client in both: no clients view by default.
        let (same, _) = markdown(&labels, &[a.clone(), a.clone()]);
        assert!(!same.contains("Clients side by side"), "{same}");
        let by = by_client_markdown(&labels, &[a.clone(), b.clone()]);
        assert!(by.starts_with("# kaspec compare — clients\n\n- `lib`: run r"), "{by}");
        assert!(by.contains("client: pass 3.01 s ✓ · server: **fail** 2.32 s ✓ |"), "{by}");
        assert!(!by.contains("## Side by side") && !by.contains("change(s)"), "{by}");
        assert!(by_client_markdown(&labels, &[a.clone(), a.clone()]).contains("nothing to set side by side"));
        let h = by_client_html(&labels, &[a, b]);
        assert!(h.contains("<h3>mqtt — clients</h3>") && h.ends_with("</body></html>\n") && !h.contains("href=\"#"), "no links to details it lacks: {h}");
    }

    #[test]
    fn a_report_of_another_schema_version_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("kaspec-compare-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ok, future) = (dir.join("ok.json"), dir.join("future.json"));
        let r = rep(vec![res("tcp/x/1", Verdict::Pass, Some(1000))]);
        r.write_json(&ok).unwrap();
        assert_eq!(Report::read_json(&ok).unwrap().results.len(), 1);
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ok).unwrap()).unwrap();
        v["schema_version"] = 999.into();
        v["results"] = "a shape this kaspec does not know".into();
        std::fs::write(&future, v.to_string()).unwrap();
        let e = Report::read_json(&future).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.contains("future.json") && e.contains("version 999") && e.contains("reads schema version 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

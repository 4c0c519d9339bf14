//! The Markdown report (`report.md`): a summary, one table row per result
//! with both verdict axes, then each result's requirement, expectation
//! formula, verdict and timeline. It only reads the report: verdicts are
//! decided by the judge ([`crate::expect::judge`]).

use std::fmt::Write as _;
use std::path::Path;

use super::Report;
use crate::expect::{ms, Verdict};
use crate::{Error, Result};

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# kaspec report {}\n", self.run_id);
        let _ = writeln!(m, "- kaspec {} (report schema {}), testbed `{}`", self.kaspec_version, self.schema_version, self.testbed);
        let _ = writeln!(m, "- started {}, finished {}", self.started_at, self.finished_at);
        let _ = writeln!(m, "- command: `{}`", self.command.join(" "));
        if let Some(env) = &self.environment {
            let engines: Vec<String> = env.engines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(m, "- kernel {}, {} CPUs, {}; fault engines — {}", env.kernel, env.cpus, env.nft_version, engines.join("; "));
        }
        if let Some(p) = &self.partition {
            let _ = writeln!(m, "- part {} of a split run: {} of the plan's {} units (`kaspec merge` joins the parts)", p.share(), p.units().count(), p.plan.len());
        }
        for p in &self.parts {
            let env = p.environment.as_ref().map(|e| format!(", kernel {}, {} CPUs", e.kernel, e.cpus)).unwrap_or_default();
            let _ = writeln!(m, "- merged part {}: run `{}`, {} → {}, testbed `{}`{env}", p.partition, p.run_id, p.started_at, p.finished_at, p.testbed);
        }
        let _ = writeln!(m, "- detection is measured from the moment the fault is in force; each result is judged with its own measured error budget (fault commit + observer resolution)\n");
        let _ = writeln!(m, "**{}**\n", self.summary_line());
        let _ = writeln!(m, "| case | fault | side | implementation | measured | expected | budget | width | verdict | released |");
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.results {
            let mut measured = match r.detection_ms {
                Some(v) => ms(v),
                None if r.verdict == Verdict::Unsupported => "—".into(),
                None if r.deadline_ms == 0 => "none".into(),
                None => format!("none in {}", ms(r.deadline_ms)),
            };
            if let Some(st) = &r.repeat {
                if let (Some(a), Some(b)) = (st.min_ms, st.max_ms) {
                    let median = st.median_ms.map(ms).unwrap_or_else(|| "none".into());
                    let _ = write!(measured, " (run {} of {}; {}–{}, median {median})", st.shown_run + 1, st.runs.len(), ms(a), ms(b));
                }
            }
            if let Some(f) = &r.fleet {
                let o = |v: Option<u64>| v.map(ms).unwrap_or_else(|| "—".into());
                let _ = write!(measured, " (fleet of {}: p50 {}, p99 {}, max {}; {} outside)", f.connections, o(f.p50_ms), o(f.p99_ms), o(f.max_ms), f.outside);
            }
            let verdict = match (&r.known_deviation, r.verdict) {
                (Some(_), Verdict::Fail) => "**fail** (known deviation)".to_string(),
                (_, Verdict::Fail) => "**fail**".to_string(),
                (_, v) => v.to_string(),
            };
            let _ = writeln!(
                m,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.case,
                r.fault,
                r.side,
                r.implementation,
                measured,
                r.expected_text(),
                if r.verdict == Verdict::Unsupported { "—".to_string() } else { format!("±{} ms", r.allowance_ms()) },
                r.window_width_ms.map(|w| format!("{w} ms")).unwrap_or_else(|| "—".into()),
                verdict,
                released(r)
            );
        }
        let _ = write!(m, "{}", super::clients::markdown(&super::clients::of_report(self), "\n## Clients side by side"));
        let _ = writeln!(m, "\n## Details\n");
        for r in &self.results {
            let _ = writeln!(m, "### `{}` — {} — {} side\n", r.case, r.fault, r.side);
            let _ = writeln!(m, "{}\n", r.description);
            let _ = writeln!(m, "- requirement: {} ({})", r.requirement, r.expected.spec);
            let _ = writeln!(m, "- {} against {}; fault by {}", r.implementation, r.peer, r.engine);
            let cfg: Vec<String> = r.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(m, "- config: `{}`", cfg.join(" "));
            let _ = writeln!(m, "- expectation: {}", r.expected.formula);
            let _ = writeln!(m, "- verdict: **{}** — {}", r.verdict, r.verdict_detail);
            if let Some(f) = &r.fleet {
                let _ = writeln!(m, "- {}", f.summary());
                let _ = writeln!(m, "- fleet resources: {}", f.resources.describe());
                let bars: Vec<String> = f.histogram.iter().filter(|b| b.within + b.outside > 0).map(|b| format!("{}–{} ms: {}{}", b.from_ms, b.to_ms, b.within, if b.outside > 0 { format!(" + {} outside", b.outside) } else { String::new() })).collect();
                let _ = writeln!(m, "- fleet histogram: {}", bars.join("; "));
            }
            if let Some(d) = &r.known_deviation {
                let _ = writeln!(m, "- known deviation: {d}");
            }
            if r.verdict != Verdict::Unsupported {
                let _ = writeln!(m, "- budget: {}; window width {}", r.budget.describe(), r.window_width_ms.map(|w| format!("{w} ms")).unwrap_or_else(|| "—".into()));
            }
            for c in &r.checks {
                let _ = writeln!(m, "- check `{}`: expected {}, observed {} → {}", c.what, c.expected, c.actual, c.verdict);
            }
            if let (Some(v), Some(d)) = (r.release_verdict, &r.release_detail) {
                let _ = writeln!(m, "- released: **{v}** — {d}");
            }
            if let Some(e) = &r.error {
                let _ = writeln!(m, "- error: `{}`", e.replace('`', "'"));
            }
            if !r.timeline.is_empty() {
                let tl: Vec<String> = r.timeline.iter().map(|e| format!("{:+} ms {}", e.t_ms, e.what)).collect();
                let _ = writeln!(m, "- timeline: {}", tl.join("; "));
            }
            let _ = writeln!(m);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(m, "## Notes on this run\n");
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
            let _ = writeln!(m);
        }
        if !self.stale_deviations.is_empty() {
            let _ = writeln!(m, "## Stale deviations\n\nDocumented in fixtures/deviations.toml, explained nothing in this run:\n");
            for d in &self.stale_deviations {
                let _ = writeln!(m, "- {d}");
            }
            let _ = writeln!(m);
        }
        if !self.errors.is_empty() {
            let _ = writeln!(m, "## Harness errors\n");
            for e in &self.errors {
                let _ = writeln!(m, "- `{}` ({}): {}", e.case, e.fault, e.message.replace('\n', " "));
            }
        }
        m
    }

    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_markdown()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// The release axis of one result in the table: its verdict and the state.
fn released(r: &crate::report::CaseResult) -> String {
    match (r.release_verdict, &r.release) {
        (Some(Verdict::Fail), Some(rel)) => format!("**fail** ({})", rel.state),
        (Some(v), Some(rel)) => format!("{v} ({})", rel.state),
        _ => "—".into(),
    }
}

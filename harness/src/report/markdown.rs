//! The Markdown report (`report.md`): a summary, one table row per result
//! with both verdict axes, then each result's requirement, expectation
//! formula, verdict and timeline. It only reads the report: verdicts are
//! decided by the judge ([`crate::expect::judge`]).

use std::fmt::Write as _;
use std::path::Path;

use super::{Release, Report};
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
        let _ = writeln!(m, "- detection is measured from the moment the fault rule is committed; tolerance ±{} ms\n", crate::expect::TOLERANCE_MS);
        let _ = writeln!(m, "**{}**\n", self.summary_line());
        let _ = writeln!(m, "| case | fault | side | implementation | measured | expected | verdict | released |");
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|");
        for r in &self.results {
            let mut measured = match r.detection_ms {
                Some(v) => ms(v),
                None if r.verdict == Verdict::Unsupported => "—".into(),
                None => format!("none in {}", ms(r.deadline_ms)),
            };
            if let Some(st) = &r.repeat {
                if let (Some(a), Some(b)) = (st.min_ms, st.max_ms) {
                    let _ = write!(measured, " (median of {}; {}–{})", st.runs.len(), ms(a), ms(b));
                }
            }
            let verdict = match (&r.known_deviation, r.verdict) {
                (Some(_), Verdict::Fail) => "**fail** (known deviation)".to_string(),
                (_, Verdict::Fail) => "**fail**".to_string(),
                (_, v) => v.to_string(),
            };
            let _ = writeln!(
                m,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                r.case,
                r.fault,
                r.side,
                r.implementation,
                measured,
                r.expected.describe(),
                verdict,
                r.release.as_ref().map(Release::short).unwrap_or_else(|| "—".into())
            );
        }
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
            if let Some(d) = &r.known_deviation {
                let _ = writeln!(m, "- known deviation: {d}");
            }
            if let Some(rel) = &r.release {
                let _ = writeln!(m, "- released: {} — {}", if rel.clean { "yes" } else { "no" }, rel.detail);
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

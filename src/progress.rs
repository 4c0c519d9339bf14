//! What a run prints while it goes and when it ends: the progress lines
//! (a live spinner on a terminal) and the summary table.

use std::io::IsTerminal;
use std::time::Duration;

use kaspec_harness::expect::{ms, Verdict};
use kaspec_harness::report::Report;
use kaspec_suites::runner::Progress;

/// Progress: a live line (case, elapsed, expected upper bound) on a
/// terminal, plain lines otherwise, nothing with --quiet.
pub struct Progress_ {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress_ {
    pub fn new(quiet: bool) -> Self {
        Progress_ { quiet, bar: None }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn on(&mut self, p: Progress<'_>) {
        // Interrupted: the case under way was named by the interrupt's line;
        // nothing observed during the teardown is shown (issue 14).
        if kaspec_harness::cleanup::interrupted() {
            self.finish();
            return;
        }
        match &p {
            Progress::Start { index, total, case, fault, .. } => kaspec_harness::cleanup::set_activity(&format!("[{index:>2}/{total}] {} × {fault}", case.id)),
            _ => kaspec_harness::cleanup::set_activity(""),
        }
        if self.quiet {
            return;
        }
        match p {
            Progress::Start { index, total, case, fault, budget, run, runs } => {
                let again = if runs > 1 { format!(" run {run}/{runs}") } else { String::new() };
                let line = format!("[{index:>2}/{total}] {} × {fault}{again} (at most {})", case.id, ms(budget.as_millis() as u64));
                if std::io::stderr().is_terminal() {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} — {elapsed}").expect("valid template"));
                    bar.set_message(line);
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.bar = Some(bar);
                } else {
                    eprintln!("{line}");
                }
            }
            Progress::Done { index, total, case, fault, results, elapsed } => {
                let mut lines = vec![format!("[{index:>2}/{total}] {} × {fault} done in {}", case.id, ms(elapsed.as_millis() as u64))];
                for r in results {
                    let measured = match r.detection_ms {
                        Some(v) => format!("detected after {}", ms(v)),
                        None if r.verdict == Verdict::Unsupported => String::new(),
                        None => format!("not detected in {}", ms(r.deadline_ms)),
                    };
                    let dev = if r.known_deviation.is_some() { " (known deviation)" } else { "" };
                    let budget = if r.verdict == Verdict::Unsupported { String::new() } else { format!(" ±{} ms", r.allowance_ms()) };
                    let released = match r.release_verdict {
                        Some(Verdict::Fail) => "; released: FAIL (leak)".to_string(),
                        Some(v) => format!("; released: {v}"),
                        None => String::new(),
                    };
                    lines.push(format!(
                        "        {:<6} {:<20} {measured}; expected {}{budget} → {}{dev}{released}",
                        r.side,
                        r.implementation.name,
                        r.expected_text(),
                        r.verdict
                    ));
                }
                self.finish();
                for l in lines {
                    self.say(l);
                }
            }
            Progress::Error { index, total, case, fault, message } => {
                self.finish();
                self.say(format!("[{index:>2}/{total}] {} × {fault}: harness error: {message}", case.id));
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

pub fn print_summary(report: &Report) {
    println!();
    println!("{:<26} {:<14} {:<6} {:>12} {:>26} {:>7}  verdict / released", "case", "fault", "side", "measured", "expected", "budget");
    for r in &report.results {
        let measured = r.detection_ms.map(ms).unwrap_or_else(|| "—".into());
        let verdict = match (&r.known_deviation, r.verdict) {
            (Some(_), Verdict::Fail) => "fail (known deviation)".to_string(),
            (_, v) => v.to_string(),
        };
        let released = r.release_verdict.map(|v| format!(" / {v}")).unwrap_or_default();
        let budget = if r.verdict == Verdict::Unsupported { "—".to_string() } else { format!("±{}", r.allowance_ms()) };
        println!("{:<26} {:<14} {:<6} {:>12} {:>26} {:>7}  {verdict}{released}", r.case, r.fault, r.side, measured, r.expected_text(), budget);
    }
    for d in &report.stale_deviations {
        println!("stale deviation (explained nothing in this run): {d}");
    }
    for e in &report.errors {
        println!("{:<26} {:<14} harness error: {}", e.case, e.fault, e.message.lines().next().unwrap_or_default());
    }
    println!("\n{}", report.summary_line());
}

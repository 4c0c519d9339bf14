//! What a run prints while it goes and when it ends: the progress lines
//! (a live spinner on a terminal) and the summary table.

use std::io::IsTerminal;
use std::time::Duration;

use kaspec_harness::expect::{ms, Verdict};
use kaspec_harness::report::Report;
use kaspec_suites::runner::Progress;

/// Progress: a live line per running unit (case, elapsed, expected upper
/// bound) on a terminal, plain lines otherwise, nothing with --quiet.
pub struct Progress_ {
    quiet: bool,
    /// On a terminal: the live lines, one per running unit.
    multi: Option<indicatif::MultiProgress>,
    /// The running units: (unit, run), what names them, their live line.
    running: Vec<((usize, usize), String, Option<indicatif::ProgressBar>)>,
}

impl Progress_ {
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        Progress_ { quiet, multi, running: Vec::new() }
    }

    fn say(&self, line: String) {
        // Nothing after the interrupt's line (issue 14), even mid-unit.
        if kaspec_harness::cleanup::interrupted() {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A unit's run has ended: its live line goes.
    fn ended(&mut self, key: (usize, usize)) {
        if let Some(i) = self.running.iter().position(|(k, _, _)| *k == key) {
            let (_, _, bar) = self.running.remove(i);
            if let (Some(m), Some(b)) = (&self.multi, bar) {
                b.finish_and_clear();
                m.remove(&b);
            }
        }
    }

    pub fn on(&mut self, p: Progress<'_>) {
        // Interrupted: the units under way were named by the interrupt's
        // line; nothing observed during the teardown is shown (issue 14).
        if kaspec_harness::cleanup::interrupted() {
            self.finish();
            return;
        }
        match p {
            Progress::Start { index, total, case, fault, budget, run, runs } => {
                let again = if runs > 1 { format!(" run {run}/{runs}") } else { String::new() };
                let name = format!("[{index:>2}/{total}] {} × {fault}{again}", case.id);
                let line = format!("{name} (at most {})", ms(budget.as_millis() as u64));
                let bar = match (&self.multi, self.quiet) {
                    (_, true) => None,
                    (Some(m), false) => {
                        let bar = m.add(indicatif::ProgressBar::new_spinner());
                        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} — {elapsed}").expect("valid template"));
                        bar.set_message(line);
                        bar.enable_steady_tick(Duration::from_millis(200));
                        Some(bar)
                    }
                    (None, false) => {
                        eprintln!("{line}");
                        None
                    }
                };
                self.running.push(((index, run), name, bar));
            }
            Progress::Done { index, total, case, fault, results, elapsed, run } => {
                self.ended((index, run));
                if !self.quiet {
                    self.say(format!("[{index:>2}/{total}] {} × {fault} done in {}", case.id, ms(elapsed.as_millis() as u64)));
                    for r in results {
                        self.say(result_line(r));
                    }
                }
            }
            Progress::Error { index, total, case, fault, message, run } => {
                self.ended((index, run));
                if !self.quiet {
                    self.say(format!("[{index:>2}/{total}] {} × {fault}: harness error: {message}", case.id));
                }
            }
            Progress::Starved { index, total, case, fault, late_ms, run } => {
                self.ended((index, run));
                if !self.quiet {
                    self.say(format!(
                        "[{index:>2}/{total}] {} × {fault}: starved of CPU beside other units (wake-up term {late_ms} ms, limit {} ms): not reported, runs again alone at the end",
                        case.id,
                        kaspec_suites::runner::STARVED_MS
                    ));
                }
            }
        }
        let names: Vec<&str> = self.running.iter().map(|(_, n, _)| n.as_str()).collect();
        kaspec_harness::cleanup::set_activity(&names.join(", "));
    }

    pub fn finish(&mut self) {
        for (_, _, bar) in self.running.drain(..) {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// One result of a finished unit, as its progress shows it.
fn result_line(r: &kaspec_harness::report::CaseResult) -> String {
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
    format!("        {:<6} {:<20} {measured}; expected {}{budget} → {}{dev}{released}", r.side, r.implementation.name, r.expected_text(), r.verdict)
}

pub fn print_summary(report: &Report) {
    println!();
    println!("{:<26} {:<14} {:<6} {:<16} {:>12} {:>26} {:>7}  verdict / released", "case", "fault", "side", "implementation", "measured", "expected", "budget");
    for r in &report.results {
        let measured = r.detection_ms.map(ms).unwrap_or_else(|| "—".into());
        let verdict = match (&r.known_deviation, r.verdict) {
            (Some(_), Verdict::Fail) => "fail (known deviation)".to_string(),
            (_, v) => v.to_string(),
        };
        let released = r.release_verdict.map(|v| format!(" / {v}")).unwrap_or_default();
        let budget = if r.verdict == Verdict::Unsupported { "—".to_string() } else { format!("±{}", r.allowance_ms()) };
        println!("{:<26} {:<14} {:<6} {:<16} {:>12} {:>26} {:>7}  {verdict}{released}", r.case, r.fault, r.side, r.implementation.name, measured, r.expected_text(), budget);
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    for d in &report.stale_deviations {
        println!("stale deviation (explained nothing in this run): {d}");
    }
    for e in &report.errors {
        println!("{:<26} {:<14} harness error: {}", e.case, e.fault, e.message.lines().next().unwrap_or_default());
    }
    println!("\n{}", report.summary_line());
}

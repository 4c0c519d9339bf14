//! The JUnit XML report, for CI systems (as h2spec's and nextest's): a test
//! suite per protocol, a test case per result. It only reads the report.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::Report;
use crate::expect::Verdict;

/// JUnit XML: a test suite per protocol, a test case per result; failure
/// text = expected vs actual. Unsupported results and documented deviations
/// are `skipped`, with the reason.
pub fn junit(report: &Report) -> String {
    let mut out = quick_junit::Report::new(format!("kaspec {}", report.run_id));
    let mut protocols: Vec<&str> = report.results.iter().map(|r| r.protocol.as_str()).collect();
    protocols.dedup();
    protocols.sort();
    protocols.dedup();
    for p in protocols {
        let mut suite = TestSuite::new(p);
        for r in report.results.iter().filter(|r| r.protocol == p) {
            let status = match (r.verdict, &r.known_deviation) {
                (Verdict::Fail, Some(reason)) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("known deviation: {}", r.verdict_detail)).set_description(reason.clone());
                    s
                }
                (Verdict::Fail, None) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(r.verdict_detail.clone()).set_type("kaspec.fail").set_description(format!(
                        "{}\nexpected: {} ({})\nerror: {}",
                        r.verdict_detail,
                        r.expected.formula,
                        r.expected.spec,
                        r.error.clone().unwrap_or_default()
                    ));
                    s
                }
                (Verdict::Unsupported, _) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(r.verdict_detail.clone());
                    s
                }
                _ if r.release_verdict == Some(Verdict::Fail) => {
                    // The second axis: detected in time, but the connection leaked.
                    let detail = r.release_detail.clone().unwrap_or_default();
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(format!("not released: {detail}")).set_type("kaspec.leak").set_description(format!("{}\n{detail}", r.verdict_detail));
                    s
                }
                _ => TestCaseStatus::success(),
            };
            let mut tc = TestCase::new(format!("[{}] {} {}", r.fault, r.side, r.implementation), status);
            tc.set_classname(r.case.clone());
            if let Some(v) = r.detection_ms {
                tc.set_time(Duration::from_millis(v));
            }
            let released = r.release_verdict.map(|v| format!("; released: {v}")).unwrap_or_default();
            tc.set_system_out(format!("{}: {} (budget {}){released}", r.verdict, r.verdict_detail, r.budget.describe()));
            suite.add_test_case(tc);
        }
        out.add_test_suite(suite);
    }
    for e in &report.errors {
        let mut suite = TestSuite::new("harness-errors");
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(e.message.clone());
        let mut tc = TestCase::new(format!("[{}] harness error", e.fault), s);
        tc.set_classname(e.case.clone());
        suite.add_test_case(tc);
        out.add_test_suite(suite);
    }
    out.to_string().unwrap_or_else(|e| format!("<!-- junit serialisation failed: {e} -->"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::html::tests::sample;

    #[test]
    fn junit_has_one_testcase_per_result_with_expected_vs_actual() {
        let x = junit(&sample(Verdict::Fail));
        assert!(x.contains("<testsuite name=\"mqtt\""), "{x}");
        assert!(x.contains("classname=\"mqtt/3.1.1-3.1.2.10/1\""), "{x}");
        assert!(x.contains("<failure") && x.contains("expected 1.00 s–2.00 s"), "{x}");
        assert!(!junit(&sample(Verdict::Pass)).contains("<failure"));
        let mut leak = sample(Verdict::Pass);
        leak.results[0].release_verdict = Some(Verdict::Fail);
        leak.results[0].release_detail = Some("CLOSE_WAIT".into());
        assert!(junit(&leak).contains("kaspec.leak"), "a leak is a JUnit failure");
    }
}

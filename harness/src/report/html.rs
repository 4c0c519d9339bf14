//! The HTML report: a self-contained page (inline CSS and SVG, no network
//! fetch, so it opens from a CI artifact or a mail) with a summary, an
//! implementation × case matrix that colours both verdict axes in every cell
//! (as Autobahn|Testsuite's report does) and a timeline chart per result
//! drawn by plotters. It only reads the report.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::expect::{ms, Verdict};
use crate::report::clients::{self, Matrix};
use crate::report::{CaseResult, Report};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn verdict_color(v: Verdict, known: bool) -> &'static str {
    match (v, known) {
        (Verdict::Fail, true) => "#f6d6a8",
        (Verdict::Fail, false) => "#f4b4b4",
        (Verdict::Pass, _) => "#bfe6bf",
        (Verdict::NonStrict, _) => "#f3e3a0",
        (Verdict::Informational, _) => "#cfe0f5",
        (Verdict::Unsupported, _) => "#e2e2e2",
    }
}

fn verdict_text(r: &CaseResult) -> String {
    clients::verdict_label(r)
}

/// A timeline chart of one result: the expected window (green), the fault
/// (red line at 0), the events seen (grey ticks, labelled) and the
/// detection (bold), on a millisecond axis relative to the fault.
pub fn timeline_svg(r: &CaseResult) -> String {
    let mut lo = r.timeline.iter().map(|e| e.t_ms).min().unwrap_or(0).min(0);
    let mut hi = r.timeline.iter().map(|e| e.t_ms).max().unwrap_or(0).max(r.detection_ms.unwrap_or(0) as i64);
    if let Some(m) = r.expected.max_ms {
        hi = hi.max(m as i64 + r.allowance_ms() as i64);
    }
    if r.detection_ms.is_none() {
        hi = hi.max(r.deadline_ms as i64);
    }
    let pad = ((hi - lo) / 20).max(100);
    lo -= pad;
    hi += pad;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 150)).into_drawing_area();
        if root.fill(&WHITE).is_err() {
            return String::new();
        }
        let chart = ChartBuilder::on(&root).margin(8).x_label_area_size(28).build_cartesian_2d(lo..hi, 0i32..10i32);
        let Ok(mut chart) = chart else { return String::new() };
        let _ = chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("ms after the fault was in force")
            .x_labels(10)
            .draw();
        if let (Some(a), Some(b)) = (r.expected.min_ms, r.expected.max_ms) {
            let (a, b) = (a as i64 - r.allowance_ms() as i64, b as i64 + r.allowance_ms() as i64);
            let _ = chart.draw_series(std::iter::once(Rectangle::new([(a, 0), (b, 10)], RGBColor(214, 240, 214).filled())));
            let (a, b) = (r.expected.min_ms.unwrap_or(0) as i64, r.expected.max_ms.unwrap_or(0) as i64);
            let _ = chart.draw_series(std::iter::once(Rectangle::new([(a, 0), (b.max(a + 1), 10)], RGBColor(150, 210, 150).filled())));
        }
        let _ = chart.draw_series(LineSeries::new([(0, 0), (0, 10)], RED.stroke_width(2)));
        for (i, e) in r.timeline.iter().enumerate() {
            let y = 2 + (i as i32 % 4) * 2;
            let _ = chart.draw_series(LineSeries::new([(e.t_ms, 0), (e.t_ms, y)], BLACK.mix(0.35)));
            let label = if e.what.len() > 28 { format!("{}…", &e.what[..e.what.char_indices().nth(27).map(|(i, _)| i).unwrap_or(e.what.len())]) } else { e.what.clone() };
            let _ = chart.draw_series(std::iter::once(Text::new(label, (e.t_ms, y), ("sans-serif", 11).into_font())));
        }
        if let Some(d) = r.detection_ms {
            let _ = chart.draw_series(LineSeries::new([(d as i64, 0), (d as i64, 10)], BLUE.stroke_width(3)));
        }
        let _ = root.present();
    }
    svg
}

/// The whole report as one HTML page.
pub fn html(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>kaspec report {id}</title><style>\
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}}\
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}}\
th{{background:#f2f2f2}}code{{font-size:12px}}.cell{{text-align:center;white-space:nowrap}}\
.summary span{{display:inline-block;padding:4px 10px;margin-right:6px;border-radius:4px}}\
details{{margin:6px 0;border:1px solid #ddd;border-radius:4px;padding:4px 8px}}summary{{cursor:pointer}}\
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}</style></head><body>",
        id = esc(&report.run_id)
    );
    let _ = write!(h, "<h1>kaspec report <code>{}</code></h1>", esc(&report.run_id));
    let _ = write!(
        h,
        "<p>kaspec {} · schema {} · testbed <b>{}</b> · {} → {}<br><code>{}</code></p>",
        esc(&report.kaspec_version),
        report.schema_version,
        esc(&report.testbed),
        esc(&report.started_at),
        esc(&report.finished_at),
        esc(&report.command.join(" "))
    );
    if let Some(env) = &report.environment {
        let engines: Vec<String> = env.engines.iter().map(|(k, v)| format!("{}: {}", esc(k), esc(v))).collect();
        let impls: Vec<String> = env.implementations.iter().map(|i| esc(&i.to_string())).collect();
        let _ = write!(
            h,
            "<p>Kernel {} · {} CPUs · {}<br>Fault engines — {}<br>Implementations — {}</p>",
            esc(&env.kernel),
            env.cpus,
            esc(&env.nft_version),
            engines.join("; "),
            impls.join(", ")
        );
    }
    if let Some(p) = &report.partition {
        let _ = write!(h, "<p>Part {} of a split run: {} of the plan's {} units.</p>", p.share(), p.units().count(), p.plan.len());
    }
    if !report.parts.is_empty() {
        let _ = write!(h, "<p>Merged from {} parts:</p><ul>", report.parts.len());
        for p in &report.parts {
            let env = p.environment.as_ref().map(|e| format!(" · kernel {} · {} CPUs", esc(&e.kernel), e.cpus)).unwrap_or_default();
            let _ = write!(h, "<li>{} — run <code>{}</code> · {} → {} · {}{env}</li>", esc(&p.partition), esc(&p.run_id), esc(&p.started_at), esc(&p.finished_at), esc(&p.testbed));
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(h, "<h2>Summary</h2><p class=\"summary\">");
    for (v, n) in report.counts() {
        let _ = write!(h, "<span style=\"background:{}\">{} {}</span>", verdict_color(v, false), n, v);
    }
    let _ = write!(h, "</p><p><b>{}</b></p>", esc(&report.summary_line()));

    // One implementation × case matrix per protocol: both axes in each cell
    // (the detection verdict colours the cell, the release verdict is the
    // mark after it), the detection time, and under it the budget and the
    // window's width.
    let _ = write!(
        h,
        "<h2>Implementation × case</h2><p class=\"legend\">Each cell: the detection verdict (cell colour) and the release verdict \
         (<b>✓</b> released, <b>✗ leak</b> a leak where detection was promised, <b>·</b> left open as the model says), the time measured, \
         and <small>±budget · window width</small>.</p>"
    );
    let mut protocols: Vec<&str> = Vec::new();
    for r in &report.results {
        if !protocols.contains(&r.protocol.as_str()) {
            protocols.push(&r.protocol);
        }
    }
    // A column per implementation as one side against one peer.
    let column = |r: &CaseResult| format!("{}<br><small>{} vs {}</small>", esc(&r.implementation.name), esc(&r.side), esc(&r.peer.name));
    for p in protocols {
        let of_p: Vec<&CaseResult> = report.results.iter().filter(|r| r.protocol == p).collect();
        let mut columns: Vec<String> = Vec::new();
        let mut rows: Vec<(String, String)> = Vec::new();
        for r in &of_p {
            let c = column(r);
            if !columns.contains(&c) && r.verdict != Verdict::Unsupported {
                columns.push(c);
            }
            let k = (r.case.clone(), r.fault.clone());
            if !rows.contains(&k) {
                rows.push(k);
            }
        }
        let _ = write!(h, "<h3>{}</h3><table><tr><th>case</th><th>fault</th>", esc(p));
        for c in &columns {
            let _ = write!(h, "<th>{c}</th>");
        }
        let _ = write!(h, "</tr>");
        for (case, fault) in &rows {
            let _ = write!(h, "<tr><td><code>{}</code></td><td>{}</td>", esc(case), esc(fault));
            if let Some(u) = of_p.iter().find(|r| &r.case == case && &r.fault == fault && r.verdict == Verdict::Unsupported) {
                let _ = write!(
                    h,
                    "<td class=\"cell\" colspan=\"{}\" style=\"background:{}\" title=\"{}\">unsupported</td></tr>",
                    columns.len().max(1),
                    verdict_color(Verdict::Unsupported, false),
                    esc(&u.verdict_detail)
                );
                continue;
            }
            for c in &columns {
                match of_p.iter().find(|r| &r.case == case && &r.fault == fault && column(r) == *c) {
                    Some(r) => {
                        let t = r.detection_ms.map(ms).unwrap_or_else(|| "—".into());
                        let released = match r.release_verdict {
                            Some(Verdict::Pass) => " <b>✓</b>",
                            Some(Verdict::Fail) => " <b style=\"color:#a00\">✗ leak</b>",
                            Some(_) => " <b>·</b>",
                            None => "",
                        };
                        let width = r.window_width_ms.map(|w| format!(" · {w} ms")).unwrap_or_default();
                        let _ = write!(
                            h,
                            "<td class=\"cell\" style=\"background:{}\"><a href=\"#{}\">{}</a>{released}<br>{}<br><small>±{} ms{width}</small></td>",
                            verdict_color(r.verdict, r.known_deviation.is_some()),
                            anchor(r),
                            esc(&verdict_text(r)),
                            esc(&t),
                            r.allowance_ms()
                        );
                    }
                    None => {
                        let _ = write!(h, "<td></td>");
                    }
                }
            }
            let _ = write!(h, "</tr>");
        }
        let _ = write!(h, "</table>");
    }
    h.push_str(&clients_section(&clients::of_report(report), true));
    let _ = write!(
        h,
        "<h2>Results</h2><p class=\"legend\">Charts:<span style=\"background:#96d296\"></span>expected window\
<span style=\"background:#d6f0d6\"></span>± budget<span style=\"background:red\"></span>fault in force\
<span style=\"background:blue\"></span>detection<span style=\"background:#aaa\"></span>events seen</p>"
    );
    for r in &report.results {
        let _ = write!(
            h,
            "<details id=\"{}\"{}><summary><code>{}</code> · {} · {} side · {} — <b style=\"background:{}\">{}</b> {}</summary>",
            anchor(r),
            if r.fails() { " open" } else { "" },
            esc(&r.case),
            esc(&r.fault),
            esc(&r.side),
            esc(&r.implementation.to_string()),
            verdict_color(r.verdict, r.known_deviation.is_some()),
            esc(&verdict_text(r)),
            esc(&r.detection_ms.map(ms).unwrap_or_default())
        );
        let _ = write!(h, "<p>{}</p><table>", esc(&r.description));
        let cfg: Vec<String> = r.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut rows = vec![
            ("requirement", format!("{} ({})", r.requirement, r.expected.spec)),
            ("against", format!("{} · fault by {}", r.peer, r.engine)),
            ("config", cfg.join(" ")),
            ("expectation", format!("{} — {}", r.expected_text(), r.expected.formula)),
            ("budget", format!("{} · window width {}", r.budget.describe(), r.window_width_ms.map(|w| format!("{w} ms")).unwrap_or_else(|| "—".into()))),
            ("verdict", format!("{} — {}", verdict_text(r), r.verdict_detail)),
        ];
        for c in &r.checks {
            rows.push(("check", format!("{}: expected {}, observed {} → {}", c.what, c.expected, c.actual, c.verdict)));
        }
        if let (Some(v), Some(d)) = (r.release_verdict, &r.release_detail) {
            rows.push(("released", format!("{v} — {d}")));
        }
        if let Some(st) = &r.repeat {
            let runs: Vec<String> = st
                .runs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let w = st.windows.get(i).map(|(a, b)| format!(" in [{}, {}]", a.map(ms).unwrap_or_default(), b.map(ms).unwrap_or_default())).unwrap_or_default();
                    let verdict = st.verdicts.get(i).map(|v| format!(" {v}")).unwrap_or_default();
                    let shown = if i == st.shown_run { " (shown)" } else { "" };
                    format!("{}{w}{verdict}{shown}", v.map(ms).unwrap_or_else(|| "—".into()))
                })
                .collect();
            rows.push((
                "runs",
                format!(
                    "{} — min {} · median {} · max {} · spread {}",
                    runs.join(", "),
                    st.min_ms.map(ms).unwrap_or_default(),
                    st.median_ms.map(ms).unwrap_or_default(),
                    st.max_ms.map(ms).unwrap_or_default(),
                    st.spread_ms.map(ms).unwrap_or_default()
                ),
            ));
        }
        if let Some(f) = &r.fleet {
            rows.push(("fleet", f.summary()));
            rows.push(("fleet resources", f.resources.describe()));
        }
        if let Some(d) = &r.known_deviation {
            rows.push(("known deviation", d.clone()));
        }
        if let Some(e) = &r.error {
            rows.push(("error (verbatim)", e.clone()));
        }
        for (k, v) in rows {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        }
        let fleet = r.fleet.as_ref().map(|f| f.histogram_svg()).unwrap_or_default()
            + &r.curve.as_ref().map(|c| c.svg()).unwrap_or_default();
        let _ = write!(h, "</table>{fleet}{}</details>", timeline_svg(r));
    }
    if !report.notes.is_empty() {
        let _ = write!(h, "<h2>Notes on this run</h2><ul>");
        for n in &report.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        let _ = write!(h, "</ul>");
    }
    if !report.stale_deviations.is_empty() {
        let _ = write!(h, "<h2>Stale deviations</h2><p>Documented in fixtures/deviations.toml, explained nothing in this run:</p><ul>");
        for d in &report.stale_deviations {
            let _ = write!(h, "<li>{}</li>", esc(d));
        }
        let _ = write!(h, "</ul>");
    }
    if !report.errors.is_empty() {
        let _ = write!(h, "<h2>Harness errors</h2><ul>");
        for e in &report.errors {
            let _ = write!(h, "<li><code>{}</code> ({}): <pre>{}</pre></li>", esc(&e.case), esc(&e.fault), esc(&e.message));
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(h, "</body></html>\n");
    h
}

/// The clients view ([`clients`]) as HTML: per protocol a table, client
/// implementations as columns (the configuration in the header's tooltip
/// and in the numbered notes under the table), each cell both sides of one
/// run coloured by its verdict. `link`: each side links to its result's
/// details on the same page (the report; not `kaspec compare`'s page).
pub fn clients_section(matrices: &[Matrix], link: bool) -> String {
    let mut h = String::new();
    if matrices.is_empty() {
        return h;
    }
    let _ = write!(h, "<h2>Clients side by side</h2><p class=\"legend\">{}</p>", esc(clients::LEGEND).replace('`', ""));
    for t in matrices {
        let _ = write!(h, "<h3>{} — clients</h3><table><tr><th>case</th><th>fault</th><th>server</th>", esc(&t.protocol));
        for (i, c) in t.columns.iter().enumerate() {
            let run = c.run.as_ref().map(|r| format!("<br><small>{}</small>", esc(r))).unwrap_or_default();
            let _ = write!(
                h,
                "<th title=\"{}\">{}<br><small>{}</small>{run}<sup>{}</sup></th>",
                esc(&c.config_text()),
                esc(&c.client.name),
                esc(&c.client.version),
                i + 1
            );
        }
        let _ = write!(h, "</tr>");
        for (row, cells) in t.rows.iter().zip(&t.cells) {
            let _ = write!(h, "<tr><td><code>{}</code></td><td>{}</td><td>{}</td>", esc(&row.case), esc(&row.fault), esc(&row.server));
            for c in cells {
                let _ = write!(h, "<td class=\"cell\">");
                for (side, r) in [("client", c.client), ("server", c.server)] {
                    let Some(r) = r else { continue };
                    let verdict = if link { format!("<a href=\"#{}\">{}</a>", anchor(r), esc(&clients::verdict_label(r))) } else { esc(&clients::verdict_label(r)) };
                    let tip = format!("expected {} ({}); budget ±{} ms", r.expected_text(), r.expected.formula, r.allowance_ms());
                    let _ = write!(
                        h,
                        "<div style=\"background:{}\" title=\"{}\">{side}: {verdict} {}{}</div>",
                        verdict_color(r.verdict, r.known_deviation.is_some()),
                        esc(&tip),
                        esc(&clients::detection_label(r)),
                        clients::release_mark(r).replace("✗ leak", "<b style=\"color:#a00\">✗ leak</b>")
                    );
                }
                let _ = write!(h, "</td>");
            }
            let _ = write!(h, "</tr>");
        }
        let _ = write!(h, "</table><p>");
        for (i, c) in t.columns.iter().enumerate() {
            let _ = write!(h, "<sup>{}</sup> {}: <code>{}</code><br>", i + 1, esc(&c.title()), esc(&c.config_text()));
        }
        let _ = write!(h, "</p>");
    }
    h
}

fn anchor(r: &CaseResult) -> String {
    r.key().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::expect::{Expectation, Level};
    use crate::report::{Event, Implementation};

    /// A one-result report (also the JUnit renderer's test input).
    pub(in crate::report) fn sample(verdict: Verdict) -> Report {
        let r = CaseResult {
            case: "mqtt/3.1.1-3.1.2.10/1".into(),
            protocol: "mqtt".into(),
            description: "d <b>".into(),
            requirement: "r".into(),
            side: "server".into(),
            implementation: Implementation::new("mosquitto", "2.0.11"),
            peer: Implementation::new("rumqttc", "0.24.0"),
            fault: "blackhole".into(),
            engine: "nftables".into(),
            config: Default::default(),
            detected: true,
            detection_ms: Some(2500),
            deadline_ms: 9000,
            expected: Expectation::window(1000, 2000, "1.5 × K", "MQTT-3.1.2-24", Level::Must),
            budget: Default::default(),
            tolerance_ms: None,
            window_width_ms: None,
            checks: Vec::new(),
            verdict,
            verdict_detail: "expected 1.00 s–2.00 s (budget ±0 ms), detected after 2.50 s".into(),
            known_deviation: None,
            error: Some("broker socket left ESTABLISHED: FIN_WAIT1".into()),
            timeline: vec![Event { t_ms: -1000, what: "PINGREQ sent".into() }, Event { t_ms: 0, what: "fault".into() }],
            repeat: None,
            release: None,
            release_verdict: None,
            release_detail: None,
            fleet: None,
            curve: None,
        };
        Report {
            schema_version: 1,
            kaspec_version: "0".into(),
            run_id: "r1".into(),
            started_at: "s".into(),
            finished_at: "f".into(),
            testbed: "netns".into(),
            command: vec!["kaspec".into()],
            environment: None,
            results: vec![r],
            errors: vec![],
            stale_deviations: vec![],
            partition: None,
            parts: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn html_is_self_contained_escaped_and_charted() {
        let h = html(&sample(Verdict::Pass));
        assert!(h.contains("<svg") && h.contains("</html>"));
        assert!(!h.contains("http://") || h.matches("http://").all(|_| h.contains("xmlns=\"http://www.w3.org/2000/svg\"")));
        assert!(!h.contains("src=\"http") && !h.contains("href=\"http"), "no network fetches");
        assert!(h.contains("d &lt;b&gt;"), "escaped");
        assert!(h.contains("mosquitto<br><small>server vs rumqttc</small>"), "matrix column");
        assert!(h.contains("<h3>mqtt</h3>"), "one table per protocol");
    }
}

/// The clients table in the HTML report (its data: report::clients).
#[cfg(test)]
mod clients_tests {
    use super::*;
    use crate::expect::Verdict;
    use crate::report::clients::tests::{mqtt_run, pair, RUMQTTC};
    use crate::report::tests::report;

    #[test]
    fn the_html_report_has_the_table_with_configuration_and_both_sides() {
        let h = html(&mqtt_run());
        let at = h.find("<h2>Clients side by side</h2>").expect("the section");
        let section = &h[at..h.find("<h2>Results</h2>").expect("results")];
        assert!(section.contains("<h3>mqtt — clients</h3>"), "{section}");
        assert!(section.contains("<th title=\"mqtt.keep_alive=2s\">paho-mqtt<br><small>1.6.1</small><sup>2</sup></th>"), "{section}");
        assert!(section.contains("server: <a href=\"#mqtt-3-1-1-3-1-2-10-1--reset--server-mosquitto-vs-paho-mqtt\">fail</a> none <b style=\"color:#a00\">✗ leak</b>"), "{section}");
        assert!(!section.contains("tcp"), "one client: no table");
        let single = report(pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Pass, Some(2500))).into(), vec![]);
        assert!(!html(&single).contains("Clients side by side"));
    }
}

//! The clients view (issue 18, item 5): per protocol, the client
//! implementations as columns — each with its version and configuration —
//! against each server, both sides' verdicts in every cell, so "rumqttc vs
//! paho-mqtt vs mosquitto_sub against Mosquitto under blackhole" is one
//! table (Autobahn|Testsuite's agent matrix, with the server's side too).
//!
//! Built from one report (report.md, report.html: a column per client) or
//! from several (`kaspec compare`: a column per client per report). A
//! protocol gets a table only when more than one client implementation
//! (name and version) ran in it — or, across reports, one implementation
//! in two configurations — and a table keeps only the rows where two or
//! more of its columns have a result: a row with one client is no
//! comparison, and the report's main table has it. Like every renderer it
//! only reads verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::expect::{ms, Verdict};
use crate::report::{CaseResult, Implementation, Report};

/// One client implementation in one report: a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// As the client's own results name it (the server's results name it
    /// as their peer when the client has none in the table).
    pub client: Implementation,
    /// The report it ran in, when several are compared.
    pub run: Option<String>,
    /// Knobs with one value in all of the column's results.
    pub config: BTreeMap<String, String>,
    /// Knobs whose value differs from case to case (each result has its own).
    pub varies: Vec<String>,
    source: usize,
}

impl Column {
    /// `paho-mqtt 1.6.1`, with `(run)` when several reports are compared.
    pub fn title(&self) -> String {
        match &self.run {
            Some(run) => format!("{} ({run})", self.client),
            None => self.client.to_string(),
        }
    }

    /// The configuration line of a footnote: `mqtt.keep_alive=2s — varies
    /// by case: network.nat_idle_timeout` (knobs apart by `; `: a value may
    /// hold spaces and commas).
    pub fn config_text(&self) -> String {
        let mut s: Vec<String> = self.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if s.is_empty() {
            s.push("no knobs".into());
        }
        let mut text = s.join("; ");
        if !self.varies.is_empty() {
            let _ = write!(text, " — varies by case: {}", self.varies.join("; "));
        }
        text
    }
}

/// A row: one case under one fault against one server implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub case: String,
    pub fault: String,
    /// The server implementation, name and version.
    pub server: String,
}

/// One cell: the client's own detection and the server's detection of that
/// client, in one run of the case.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cell<'a> {
    pub client: Option<&'a CaseResult>,
    pub server: Option<&'a CaseResult>,
}

impl Cell<'_> {
    pub fn is_empty(&self) -> bool {
        self.client.is_none() && self.server.is_none()
    }
}

/// One protocol's table.
#[derive(Debug, Clone)]
pub struct Matrix<'a> {
    pub protocol: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Cell<'a>>>,
}

/// The tables of one report (no run labels).
pub fn of_report(report: &Report) -> Vec<Matrix<'_>> {
    build(&[(None, report)])
}

/// The tables across several reports, each column labelled with its report.
pub fn of_reports<'a>(labels: &[String], reports: &'a [Report]) -> Vec<Matrix<'a>> {
    let sources: Vec<(Option<&str>, &Report)> = labels.iter().map(|l| Some(l.as_str())).zip(reports).collect();
    build(&sources)
}

/// Which end is the client and which the server, for a result of either
/// side; `None` for a result that belongs to no client (unsupported: no
/// implementation ran; a side that is neither).
fn ends(r: &CaseResult) -> Option<(&Implementation, &Implementation)> {
    let (client, server) = match r.side.as_str() {
        "client" => (&r.implementation, &r.peer),
        "server" => (&r.peer, &r.implementation),
        _ => return None,
    };
    (r.verdict != Verdict::Unsupported && client.name != "-").then_some((client, server))
}

fn build<'a>(sources: &[(Option<&str>, &'a Report)]) -> Vec<Matrix<'a>> {
    let mut protocols: Vec<&str> = Vec::new();
    for (_, rep) in sources {
        for r in &rep.results {
            if !protocols.contains(&r.protocol.as_str()) {
                protocols.push(&r.protocol);
            }
        }
    }
    protocols.into_iter().filter_map(|p| protocol(sources, p)).collect()
}

fn protocol<'a>(sources: &[(Option<&str>, &'a Report)], protocol: &str) -> Option<Matrix<'a>> {
    // Every result of the protocol with its client, its server and its report.
    let mut entries: Vec<(usize, &'a CaseResult, &'a Implementation, &'a Implementation)> = Vec::new();
    for (i, (_, rep)) in sources.iter().enumerate() {
        for r in rep.results.iter().filter(|r| r.protocol == protocol) {
            if let Some((c, s)) = ends(r) {
                entries.push((i, r, c, s));
            }
        }
    }
    // Columns: a client (by name, as results match: `CaseResult::key`) per
    // report, grouped by client in order of appearance; its version from
    // its own results when it has any.
    let mut names: Vec<&str> = Vec::new();
    let mut keys: Vec<(usize, &str)> = Vec::new();
    for (i, _, c, _) in &entries {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
        if !keys.contains(&(*i, c.name.as_str())) {
            keys.push((*i, &c.name));
        }
    }
    keys.sort_by_key(|(i, n)| (names.iter().position(|x| x == n), *i));
    let client_of = |i: usize, name: &str| {
        let own = entries.iter().find(|(j, r, c, _)| *j == i && c.name == name && r.side == "client");
        let any = entries.iter().find(|(j, _, c, _)| *j == i && c.name == name);
        own.or(any).map(|e| e.2.clone()).expect("a column has a result")
    };
    let mut columns: Vec<Column> = keys
        .iter()
        .map(|(i, n)| Column { client: client_of(*i, n), run: sources[*i].0.map(String::from), config: BTreeMap::new(), varies: Vec::new(), source: *i })
        .collect();
    // Rows in order of appearance; a cell per row and column.
    let mut rows: Vec<Row> = Vec::new();
    let mut cells: Vec<Vec<Cell<'a>>> = Vec::new();
    for (i, r, c, s) in &entries {
        let row = Row { case: r.case.clone(), fault: r.fault.clone(), server: s.to_string() };
        let y = rows.iter().position(|x| x == &row).unwrap_or_else(|| {
            rows.push(row);
            cells.push(vec![Cell::default(); columns.len()]);
            rows.len() - 1
        });
        let x = columns.iter().position(|col| col.source == *i && col.client.name == c.name).expect("a column per client");
        let slot = if r.side == "client" { &mut cells[y][x].client } else { &mut cells[y][x].server };
        slot.get_or_insert(r);
    }
    // Only comparisons: rows where two or more columns ran.
    let keep: Vec<bool> = cells.iter().map(|row| row.iter().filter(|c| !c.is_empty()).count() >= 2).collect();
    let mut k = keep.iter();
    rows.retain(|_| *k.next().expect("one flag a row"));
    let mut k = keep.iter();
    cells.retain(|_| *k.next().expect("one flag a row"));
    // Columns left empty by that go.
    let used: Vec<bool> = (0..columns.len()).map(|x| cells.iter().any(|row| !row[x].is_empty())).collect();
    let mut u = used.iter();
    columns.retain(|_| *u.next().expect("one flag a column"));
    for row in &mut cells {
        let mut u = used.iter();
        row.retain(|_| *u.next().expect("one flag a column"));
    }
    // Each column's configuration, over the results it shows.
    for (x, col) in columns.iter_mut().enumerate() {
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in cells.iter().flat_map(|row| [row[x].client, row[x].server]).flatten() {
            for (k, v) in &r.config {
                seen.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        for (k, vals) in seen {
            // A knob some of the column's results lack varies too.
            let everywhere = cells.iter().filter(|row| !row[x].is_empty()).all(|row| [row[x].client, row[x].server].iter().flatten().any(|r| r.config.contains_key(&k)));
            if vals.len() == 1 && everywhere {
                col.config.insert(k, vals.into_iter().next().expect("one value"));
            } else {
                col.varies.push(k);
            }
        }
    }
    // A table compares two or more clients: implementations, or (across
    // reports) one implementation in two configurations. The same client
    // with the same knobs in two reports is a rerun: the changes show it.
    let distinct: BTreeSet<(String, String)> = columns.iter().map(|c| (c.client.to_string(), c.config_text())).collect();
    if distinct.len() < 2 {
        return None;
    }
    Some(Matrix { protocol: protocol.to_string(), columns, rows, cells })
}

/// A verdict as a cell shows it (`fail (known deviation)`).
pub fn verdict_label(r: &CaseResult) -> String {
    match (&r.known_deviation, r.verdict) {
        (Some(_), Verdict::Fail) => "fail (known deviation)".into(),
        (_, v) => v.to_string(),
    }
}

/// The detection as a cell shows it: the time, or `none` (not detected).
pub fn detection_label(r: &CaseResult) -> String {
    r.detection_ms.map(ms).unwrap_or_else(|| "none".into())
}

/// The release axis as a mark: `✓` released, `✗ leak` a leak where a
/// detection was promised, `·` left open as the model allows, nothing when
/// the result has no release verdict.
pub fn release_mark(r: &CaseResult) -> &'static str {
    match r.release_verdict {
        Some(Verdict::Pass) => " ✓",
        Some(Verdict::Fail) => " ✗ leak",
        Some(_) => " ·",
        None => "",
    }
}

/// What each cell holds, said once above the tables.
pub const LEGEND: &str = "Per protocol, each client implementation is a column against each server. A cell holds both sides of one run of the case: \
`client:` the client's own detection, `server:` the server's detection of that client — each its verdict, the time from the fault \
(`none`: not detected) and its release (✓ released, ✗ leak where a detection was promised, · left open as the model allows). \
Only rows where two or more clients ran; each column's configuration is in the notes under its table.";

fn side_md(name: &str, r: &CaseResult) -> String {
    let v = match (r.verdict, &r.known_deviation) {
        (Verdict::Fail, Some(_)) => "**fail** (known deviation)".into(),
        (Verdict::Fail, None) => "**fail**".into(),
        _ => verdict_label(r),
    };
    let mark = release_mark(r).replace("✗ leak", "**✗ leak**");
    format!("{name}: {v} {}{mark}", detection_label(r))
}

/// The tables as Markdown (empty when there are none), under `heading`
/// (none when empty).
pub fn markdown(matrices: &[Matrix], heading: &str) -> String {
    let mut m = String::new();
    if matrices.is_empty() {
        return m;
    }
    if !heading.is_empty() {
        let _ = writeln!(m, "{heading}\n");
    }
    let _ = writeln!(m, "{LEGEND}");
    for t in matrices {
        let _ = writeln!(m, "\n### {}\n", t.protocol);
        let heads: Vec<String> = t.columns.iter().enumerate().map(|(i, c)| format!("{} [{}]", c.title(), i + 1)).collect();
        let _ = writeln!(m, "| case | fault | server | {} |", heads.join(" | "));
        let _ = writeln!(m, "|---|---|---|{}", "---|".repeat(t.columns.len()));
        for (row, cells) in t.rows.iter().zip(&t.cells) {
            let shown: Vec<String> = cells
                .iter()
                .map(|c| {
                    let sides: Vec<String> = [c.client.map(|r| side_md("client", r)), c.server.map(|r| side_md("server", r))].into_iter().flatten().collect();
                    if sides.is_empty() {
                        "—".into()
                    } else {
                        sides.join(" · ")
                    }
                })
                .collect();
            let _ = writeln!(m, "| `{}` | {} | {} | {} |", row.case, row.fault, row.server, shown.join(" | "));
        }
        let _ = writeln!(m);
        for (i, c) in t.columns.iter().enumerate() {
            let _ = writeln!(m, "- [{}] {}: `{}`", i + 1, c.title(), c.config_text());
        }
    }
    m
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::report::tests::{report, result};

    /// One side of one run: `me` against `peer`, `mqtt.keep_alive=2s`.
    pub(in crate::report) fn side(case: &str, fault: &str, side: &str, me: (&str, &str), peer: (&str, &str), verdict: Verdict, d: Option<u64>) -> CaseResult {
        let mut r = result(verdict, None);
        r.case = case.into();
        r.protocol = case.split('/').next().expect("a protocol").into();
        r.fault = fault.into();
        r.side = side.into();
        r.implementation = Implementation::new(me.0, me.1);
        r.peer = Implementation::new(peer.0, peer.1);
        r.detection_ms = d;
        r.detected = d.is_some();
        r.config = [("mqtt.keep_alive".to_string(), "2s".to_string())].into();
        r.release_verdict = Some(Verdict::Pass);
        r
    }

    pub(in crate::report) const IDLE: &str = "mqtt/3.1.1-3.1.2.10/1";
    pub(in crate::report) const MOSQUITTO: (&str, &str) = ("mosquitto", "2.0.11");
    pub(in crate::report) const RUMQTTC: (&str, &str) = ("rumqttc", "0.24.0");
    pub(in crate::report) const PAHO: (&str, &str) = ("paho-mqtt", "1.6.1");

    /// Both sides of one client's run against Mosquitto.
    pub(in crate::report) fn pair(client: (&str, &str), fault: &str, c: (Verdict, Option<u64>), s: (Verdict, Option<u64>)) -> [CaseResult; 2] {
        [side(IDLE, fault, "client", client, MOSQUITTO, c.0, c.1), side(IDLE, fault, "server", MOSQUITTO, client, s.0, s.1)]
    }

    /// rumqttc and paho-mqtt against Mosquitto under blackhole and reset,
    /// as a default run gives them (the library client's results first),
    /// with a case only rumqttc takes, an unsupported pair and a TCP case.
    pub(in crate::report) fn mqtt_run() -> Report {
        let mut results = Vec::new();
        let mut known = pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Fail, Some(2810)));
        known[1].known_deviation = Some("mosquitto 2.0 disconnects late".into());
        results.extend(known);
        results.extend(pair(RUMQTTC, "reset", (Verdict::Pass, Some(1002)), (Verdict::Pass, Some(2007))));
        let mut nat = [
            side("mqtt/3.1.1-3.1.2.10/2", "nat-expiry", "client", RUMQTTC, MOSQUITTO, Verdict::Pass, Some(4100)),
            side("mqtt/3.1.1-3.1.2.10/2", "nat-expiry", "server", MOSQUITTO, RUMQTTC, Verdict::Pass, Some(4200)),
        ];
        for r in &mut nat {
            r.config.insert("network.nat_idle_timeout".into(), "4000ms".into());
        }
        results.extend(nat);
        results.push(side("mqtt/3.1.1-3.1.2.10/3", "blackhole", "client", ("-", "-"), ("-", "-"), Verdict::Unsupported, None));
        let mut paho = pair(PAHO, "blackhole", (Verdict::Pass, Some(3011)), (Verdict::Fail, Some(2316)));
        paho[1].known_deviation = Some("mosquitto 2.0 disconnects late".into());
        results.extend(paho);
        let mut leak = pair(PAHO, "reset", (Verdict::Pass, Some(1006)), (Verdict::Fail, None));
        leak[0].release_verdict = None;
        leak[1].release_verdict = Some(Verdict::Fail);
        results.extend(leak);
        results.push(side("tcp/rfc1122-4.2.3.6/1", "blackhole", "client", ("linux-tcp/socket2", "6.1"), ("kaspec-tcp-echo", "0.1.0"), Verdict::Pass, Some(5100)));
        report(results, vec![])
    }

    #[test]
    fn clients_are_columns_and_each_cell_holds_both_sides_of_one_run() {
        let run = mqtt_run();
        let m = of_report(&run);
        assert_eq!(m.len(), 1, "tcp has one client: no table");
        let t = &m[0];
        assert_eq!(t.protocol, "mqtt");
        let titles: Vec<String> = t.columns.iter().map(Column::title).collect();
        assert_eq!(titles, ["rumqttc 0.24.0", "paho-mqtt 1.6.1"]);
        // The NAT case only rumqttc takes is no comparison; the unsupported
        // pair names no client.
        let rows: Vec<(&str, &str, &str)> = t.rows.iter().map(|r| (r.case.as_str(), r.fault.as_str(), r.server.as_str())).collect();
        assert_eq!(rows, [(IDLE, "blackhole", "mosquitto 2.0.11"), (IDLE, "reset", "mosquitto 2.0.11")]);
        let paho_reset = t.cells[1][1];
        assert_eq!(paho_reset.client.map(|r| (r.side.as_str(), r.detection_ms)), Some(("client", Some(1006))));
        let server = paho_reset.server.expect("the server's side");
        assert_eq!((server.implementation.name.as_str(), server.peer.name.as_str()), ("mosquitto", "paho-mqtt"));
        assert_eq!(t.cells[0][0].server.map(|r| r.detection_ms), Some(Some(2810)));
        assert_eq!(t.columns[0].config_text(), "mqtt.keep_alive=2s");
    }

    #[test]
    fn the_markdown_table_reads_as_one() {
        let md = markdown(&of_report(&mqtt_run()), "## Clients side by side");
        let table = "### mqtt\n\n\
| case | fault | server | rumqttc 0.24.0 [1] | paho-mqtt 1.6.1 [2] |\n\
|---|---|---|---|---|\n\
| `mqtt/3.1.1-3.1.2.10/1` | blackhole | mosquitto 2.0.11 | client: pass 3.00 s ✓ · server: **fail** (known deviation) 2.81 s ✓ | client: pass 3.01 s ✓ · server: **fail** (known deviation) 2.32 s ✓ |\n\
| `mqtt/3.1.1-3.1.2.10/1` | reset | mosquitto 2.0.11 | client: pass 1.00 s ✓ · server: pass 2.01 s ✓ | client: pass 1.01 s · server: **fail** none **✗ leak** |\n\
\n\
- [1] rumqttc 0.24.0: `mqtt.keep_alive=2s`\n\
- [2] paho-mqtt 1.6.1: `mqtt.keep_alive=2s`\n";
        assert!(md.starts_with("## Clients side by side\n\nPer protocol, each client implementation is a column"), "{md}");
        assert!(md.contains(table), "{md}");
        // The report's own Markdown carries it, before the details.
        let whole = mqtt_run().to_markdown();
        let (at, details) = (whole.find(table).expect("in report.md"), whole.find("## Details").expect("details"));
        assert!(at < details);
    }

    #[test]
    fn one_client_or_one_column_per_row_is_no_table() {
        let only = report(pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Pass, Some(2500))).into(), vec![]);
        assert!(of_report(&only).is_empty());
        assert!(!only.to_markdown().contains("Clients side by side"));
        // Two clients that never ran the same case × fault × server.
        let mut apart: Vec<CaseResult> = pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Pass, Some(2500))).into();
        apart.extend(pair(PAHO, "reset", (Verdict::Pass, Some(1006)), (Verdict::Pass, Some(2000))));
        assert!(of_report(&report(apart, vec![])).is_empty());
    }

    #[test]
    fn across_reports_a_column_per_client_per_report() {
        let a = report(pair(RUMQTTC, "blackhole", (Verdict::Pass, Some(3000)), (Verdict::Pass, Some(2500))).into(), vec![]);
        let b = report(pair(PAHO, "blackhole", (Verdict::Pass, Some(3011)), (Verdict::Pass, Some(2316))).into(), vec![]);
        let labels = vec!["a".to_string(), "b".to_string()];
        let reports = vec![a.clone(), b];
        let m = of_reports(&labels, &reports);
        assert_eq!(m[0].columns.iter().map(Column::title).collect::<Vec<_>>(), ["rumqttc 0.24.0 (a)", "paho-mqtt 1.6.1 (b)"]);
        assert_eq!(m[0].rows.len(), 1, "one row: the same case, fault and server");
        // The same client with the same knobs twice is a rerun, no table;
        // in another configuration it is a comparison.
        let rerun = vec![a.clone(), a.clone()];
        assert!(of_reports(&labels, &rerun).is_empty());
        let mut slower = a.clone();
        for r in &mut slower.results {
            r.config.insert("mqtt.keep_alive".into(), "5s".into());
        }
        let profiles = vec![a, slower];
        let m = of_reports(&labels, &profiles);
        assert_eq!(m[0].columns.iter().map(Column::config_text).collect::<Vec<_>>(), ["mqtt.keep_alive=2s", "mqtt.keep_alive=5s"]);
    }

    #[test]
    fn a_knob_that_differs_by_case_is_named_not_averaged() {
        let mut run = mqtt_run();
        // paho-mqtt's reset run with another keep-alive.
        for r in run.results.iter_mut().filter(|r| r.fault == "reset" && (r.implementation.name == "paho-mqtt" || r.peer.name == "paho-mqtt")) {
            r.config.insert("mqtt.keep_alive".into(), "3s".into());
        }
        let m = of_report(&run);
        assert_eq!(m[0].columns[1].config_text(), "no knobs — varies by case: mqtt.keep_alive");
    }
}

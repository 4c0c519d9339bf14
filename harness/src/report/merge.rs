//! A run split across machines: `kaspec run --partition K/N` runs a share
//! of the plan, `kaspec merge` joins the parts into one report.
//!
//! The plan is the list of units (case × fault, `case [fault]`) a run
//! executes, in order. Unit `i` (0-based, plan order) belongs to part
//! `i mod N + 1`: round-robin, like nextest's `--partition count:K/N`, so
//! the split depends only on the plan — every machine computes the same one
//! and neighbouring cases (often the same server) spread over the parts.
//! Each part records the whole plan, so a merge can name a unit no part ran.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Environment, Report, SCHEMA_VERSION};

/// `K/N`: the K-th (1-based) of N parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Share {
    type Err = String;

    /// `K/N` with 1 ≤ K ≤ N; the error says what is allowed.
    fn from_str(s: &str) -> Result<Share, String> {
        let allowed = "allowed: K/N with 1 ≤ K ≤ N, e.g. 2/3";
        let (k, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not K/N ({allowed})"))?;
        let num = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("{s:?}: {v:?} is not a whole number ({allowed})"));
        let (index, count) = (num(k)?, num(n)?);
        if count == 0 || index == 0 || index > count {
            return Err(format!("{s:?}: K must be in 1..=N ({allowed})"));
        }
        Ok(Share { index, count })
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Share {
    /// Whether unit `unit` (0-based, in plan order) is this part's.
    pub fn takes(&self, unit: usize) -> bool {
        unit % self.count == self.index - 1
    }
}

/// The key of one unit of the plan.
pub fn unit_key(case: &str, fault: &str) -> String {
    format!("{case} [{fault}]")
}

/// What a partitioned run ran: its share and the whole plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Partition {
    /// K (1-based).
    pub index: usize,
    /// N.
    pub count: usize,
    /// Every unit of the whole plan (`case [fault]`), in order; this part
    /// ran those its share takes.
    pub plan: Vec<String>,
}

impl Partition {
    pub fn share(&self) -> Share {
        Share { index: self.index, count: self.count }
    }

    /// The units of the plan this part ran.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        let share = self.share();
        self.plan.iter().enumerate().filter(move |(i, _)| share.takes(*i)).map(|(_, u)| u.as_str())
    }
}

/// One part of a merged report, as it ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub run_id: String,
    /// `K/N`.
    pub partition: String,
    pub started_at: String,
    pub finished_at: String,
    pub testbed: String,
    pub command: Vec<String>,
    pub environment: Option<Environment>,
}

/// The options of a run's command that do not change what it measures:
/// a part's own output, its share, how it prints, how many units it ran
/// at once. The rest must agree.
fn plan_command(command: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = command.iter().skip(1); // the program, wherever it was installed
    while let Some(a) = args.next() {
        match a.as_str() {
            "--partition" | "--out" => {
                args.next();
            }
            "--quiet" | "--json" => {}
            // How many units at once: the same units, the same numbers (a
            // starved unit runs again alone).
            "--jobs" => {
                args.next();
            }
            a if a.starts_with("--partition=") || a.starts_with("--out=") || a.starts_with("--jobs=") => {}
            a => out.push(a.to_string()),
        }
    }
    out
}

/// Joins the parts of one split run (`label` names each, e.g. its file)
/// into one report: results and errors in plan order, each part's run id,
/// share and environment kept in `parts`. An error (one line) when a part
/// is not partitioned, when parts come from different plans or commands,
/// when two parts ran the same unit, or when a unit of the plan ran in none.
/// `stale_deviations` is the union of the parts' (the caller, which has the
/// deviations, may judge them again on the merged results).
pub fn merge(run_id: &str, command: Vec<String>, parts: &[(String, Report)]) -> Result<Report, String> {
    let mut split: Vec<(&str, &Report, &Partition)> = Vec::new();
    for (label, r) in parts {
        let p = r.partition.as_ref().ok_or_else(|| format!("{label}: not a partitioned run (run it with --partition K/N)"))?;
        split.push((label, r, p));
    }
    let (first_label, first, first_p) = *split.first().ok_or("nothing to merge")?;
    for &(label, r, p) in &split[1..] {
        if p.count != first_p.count {
            return Err(format!("{label} is part {} but {first_label} is part {}: the parts of one run share N", p.share(), first_p.share()));
        }
        if p.plan != first_p.plan {
            let at = p.plan.iter().zip(&first_p.plan).position(|(a, b)| a != b).unwrap_or(p.plan.len().min(first_p.plan.len()));
            let unit = |plan: &[String]| plan.get(at).cloned().unwrap_or_else(|| "(end)".into());
            return Err(format!(
                "{label} and {first_label} ran different plans ({} vs {} units; unit {}: `{}` vs `{}`)",
                p.plan.len(),
                first_p.plan.len(),
                at + 1,
                unit(&p.plan),
                unit(&first_p.plan)
            ));
        }
        if plan_command(&r.command) != plan_command(&first.command) || r.kaspec_version != first.kaspec_version {
            return Err(format!(
                "{label} and {first_label} ran different commands (`{}` kaspec {} vs `{}` kaspec {})",
                plan_command(&r.command).join(" "),
                r.kaspec_version,
                plan_command(&first.command).join(" "),
                first.kaspec_version
            ));
        }
    }
    // Every unit ran in exactly one part.
    let mut ran_by: BTreeMap<&str, &str> = BTreeMap::new();
    for &(label, _, p) in &split {
        for u in p.units() {
            if let Some(other) = ran_by.insert(u, label) {
                return Err(format!("unit `{u}` ran in two parts: {other} and {label} (both part {})", p.share()));
            }
        }
    }
    let missing: Vec<&String> = first_p.plan.iter().filter(|u| !ran_by.contains_key(u.as_str())).collect();
    if let Some(u) = missing.first() {
        let have: Vec<usize> = split.iter().map(|(_, _, p)| p.index).collect();
        let absent: Vec<String> = (1..=first_p.count).filter(|k| !have.contains(k)).map(|k| format!("{k}/{}", first_p.count)).collect();
        return Err(format!(
            "a gap: {} unit(s) of the plan ran in no part, e.g. `{u}` (missing part(s): {})",
            missing.len(),
            absent.join(", ")
        ));
    }

    let order = |case: &str, fault: &str| first_p.plan.iter().position(|u| *u == unit_key(case, fault)).unwrap_or(usize::MAX);
    let mut results: Vec<_> = split.iter().flat_map(|(_, r, _)| r.results.iter().cloned()).collect();
    results.sort_by_key(|r| order(&r.case, &r.fault));
    let mut errors: Vec<_> = split.iter().flat_map(|(_, r, _)| r.errors.iter().cloned()).collect();
    errors.sort_by_key(|e| order(&e.case, &e.fault));
    let mut stale: Vec<String> = Vec::new();
    for d in split.iter().flat_map(|(_, r, _)| &r.stale_deviations) {
        if !stale.contains(d) {
            stale.push(d.clone());
        }
    }
    // Each part's notes, named by its share.
    let notes: Vec<String> = split.iter().flat_map(|(_, r, p)| r.notes.iter().map(move |n| format!("part {}: {n}", p.share()))).collect();
    let mut by_part = split.clone();
    by_part.sort_by_key(|(_, _, p)| p.index);
    let parts: Vec<Part> = by_part
        .iter()
        .map(|(_, r, p)| Part {
            run_id: r.run_id.clone(),
            partition: p.share().to_string(),
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            testbed: r.testbed.clone(),
            command: r.command.clone(),
            environment: r.environment.clone(),
        })
        .collect();
    // One environment when every part ran on the same kind of machine
    // (implementations joined); else none at the top, each part's in `parts`.
    let same = |a: &Environment, b: &Environment| (&a.kernel, &a.nft_version, &a.engines, a.cpus) == (&b.kernel, &b.nft_version, &b.engines, b.cpus);
    let environment = match parts.iter().map(|p| p.environment.as_ref()).collect::<Option<Vec<_>>>() {
        Some(envs) if envs.windows(2).all(|w| same(w[0], w[1])) => {
            let mut env = envs[0].clone();
            for i in envs.iter().flat_map(|e| &e.implementations) {
                if !env.implementations.contains(i) {
                    env.implementations.push(i.clone());
                }
            }
            Some(env)
        }
        _ => None,
    };
    let mut testbeds: Vec<&str> = Vec::new();
    for p in &parts {
        if !testbeds.contains(&p.testbed.as_str()) {
            testbeds.push(&p.testbed);
        }
    }
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        kaspec_version: first.kaspec_version.clone(),
        run_id: run_id.into(),
        started_at: parts.iter().map(|p| p.started_at.clone()).min().unwrap_or_default(),
        finished_at: parts.iter().map(|p| p.finished_at.clone()).max().unwrap_or_default(),
        testbed: testbeds.join("; "),
        command,
        environment,
        results,
        errors,
        stale_deviations: stale,
        partition: None,
        parts,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{report, result};
    use crate::report::RunError;
    use crate::expect::Verdict;

    #[test]
    fn shares_parse_and_split_round_robin() {
        assert_eq!("2/3".parse::<Share>().unwrap(), Share { index: 2, count: 3 });
        for bad in ["0/3", "4/3", "1/0", "3", "a/3", "1/-2", ""] {
            let e = bad.parse::<Share>().unwrap_err();
            assert!(e.contains("1 ≤ K ≤ N") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        // Every unit in exactly one of N parts, the same on every machine.
        for n in 1..=7 {
            for unit in 0..40 {
                let owners: Vec<usize> = (1..=n).filter(|k| Share { index: *k, count: n }.takes(unit)).collect();
                assert_eq!(owners, vec![unit % n + 1]);
            }
        }
        let p = Partition { index: 2, count: 3, plan: (0..7).map(|i| format!("u{i}")).collect() };
        assert_eq!(p.units().collect::<Vec<_>>(), ["u1", "u4"]);
    }

    const PLAN: [&str; 4] = ["a [blackhole]", "b [blackhole]", "c [crash]", "d [blackhole]"];

    /// Part `k`/`n` of PLAN, holding one result per unit of its share.
    fn part(k: usize, n: usize, id: &str) -> (String, Report) {
        let plan: Vec<String> = PLAN.iter().map(|s| s.to_string()).collect();
        let p = Partition { index: k, count: n, plan };
        let results = p
            .units()
            .map(|u| {
                let (case, fault) = u.trim_end_matches(']').split_once(" [").unwrap();
                let mut r = result(Verdict::Pass, None);
                (r.case, r.fault) = (case.into(), fault.into());
                r
            })
            .collect();
        let mut rep = report(results, vec![]);
        rep.run_id = id.into();
        rep.command = ["/usr/bin/kaspec", "run", "tcp/", "--partition", &format!("{k}/{n}"), "--out", id].map(String::from).to_vec();
        rep.partition = Some(p);
        (format!("{id}/report.json"), rep)
    }

    #[test]
    fn parts_merge_in_plan_order_with_each_part_kept() {
        let mut p3 = part(3, 3, "r3");
        p3.1.errors.push(RunError { case: "c".into(), fault: "crash".into(), message: "m".into() });
        // --jobs does not change what a part measures: parts may differ in it;
        // a part's notes are kept, named by its share.
        p3.1.command.extend(["--jobs".into(), "8".into()]);
        p3.1.notes.push("c × crash: run again alone".into());
        let mut p2 = part(2, 3, "r2");
        p2.1.command.push("--jobs=1".into());
        let m = merge("m", vec!["kaspec".into(), "merge".into()], &[p2, p3, part(1, 3, "r1")]).unwrap();
        assert_eq!(m.notes, ["part 3/3: c × crash: run again alone"]);
        let keys: Vec<String> = m.results.iter().map(|r| unit_key(&r.case, &r.fault)).collect();
        assert_eq!(keys, PLAN);
        assert_eq!(m.parts.iter().map(|p| (p.run_id.as_str(), p.partition.as_str())).collect::<Vec<_>>(), [("r1", "1/3"), ("r2", "2/3"), ("r3", "3/3")]);
        assert_eq!((m.partition.clone(), m.errors.len(), m.exit_code()), (None, 1, 2));
        // The merged report reads back, and reports without the new fields still do.
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), m);
        let plain = serde_json::to_value(report(vec![], vec![])).unwrap();
        assert!(plain.get("partition").is_none() && plain.get("parts").is_none() && plain.get("notes").is_none(), "{plain}");
    }

    #[test]
    fn gaps_duplicates_and_mismatches_are_errors_naming_the_culprit() {
        let gap = merge("m", vec![], &[part(1, 3, "r1"), part(3, 3, "r3")]).unwrap_err();
        assert!(gap.contains("a gap") && gap.contains("`b [blackhole]`") && gap.contains("2/3"), "{gap}");
        let dup = merge("m", vec![], &[part(1, 2, "r1"), part(2, 2, "r2"), part(1, 2, "again")]).unwrap_err();
        assert!(dup.contains("`a [blackhole]` ran in two parts: r1/report.json and again/report.json"), "{dup}");
        let n = merge("m", vec![], &[part(1, 2, "r1"), part(2, 3, "r2")]).unwrap_err();
        assert!(n.contains("r2/report.json is part 2/3 but r1/report.json is part 1/2"), "{n}");
        let mut other = part(2, 2, "r2");
        other.1.partition.as_mut().unwrap().plan[2] = "c [blackhole]".into();
        let plan = merge("m", vec![], &[part(1, 2, "r1"), other]).unwrap_err();
        assert!(plan.contains("different plans") && plan.contains("`c [blackhole]` vs `c [crash]`"), "{plan}");
        let mut cmd = part(2, 2, "r2");
        cmd.1.command.push("--set=tcp.idle=3s".into());
        let cmd = merge("m", vec![], &[part(1, 2, "r1"), cmd]).unwrap_err();
        assert!(cmd.contains("different commands") && cmd.contains("tcp.idle=3s"), "{cmd}");
        let mut whole = part(1, 1, "whole");
        whole.1.partition = None;
        let not = merge("m", vec![], &[whole]).unwrap_err();
        assert!(not.contains("whole/report.json: not a partitioned run"), "{not}");
    }
}

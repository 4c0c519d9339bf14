//! `kaspec compare`: reads the reports and prints (and with `--out` writes)
//! the view `--by` asks for; the views are kaspec-harness's
//! `report::compare`.

use std::path::{Path, PathBuf};

use kaspec_harness::report::compare;
use kaspec_harness::report::Report;

/// `kaspec compare --by`: the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// What changed from the first report to the last (exit 1 on a
    /// regression), side by side, and the clients where they differ.
    Run,
    /// Only the client implementations as columns, per protocol and server.
    Client,
}

pub fn run(paths: &[PathBuf], out: Option<&Path>, by: By) -> i32 {
    let (files, reports): (Vec<PathBuf>, Vec<Report>) = match crate::read_reports(paths) {
        Ok(r) => r.into_iter().unzip(),
        Err(e) => return crate::bad_input(e),
    };
    let labels: Vec<String> = files
        .iter()
        .map(|file| file.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.display().to_string()))
        .collect();
    let ((md, regressions), html): ((String, usize), fn(&[String], &[Report]) -> String) = match by {
        By::Run => (compare::markdown(&labels, &reports), compare::html),
        By::Client => ((compare::by_client_markdown(&labels, &reports), 0), compare::by_client_html),
    };
    print!("{md}");
    if let Some(dir) = out {
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join("compare.md"), &md))
            .and_then(|_| std::fs::write(dir.join("compare.html"), html(&labels, &reports)));
        if let Err(e) = written {
            return crate::bad_input(format!("--out {}: {e}", dir.display()));
        }
    }
    if regressions > 0 {
        1
    } else {
        0
    }
}

//! Checks of a crate's source layout, run as unit tests: the modules of a
//! crate import each other without cycles, and no source file grows past a
//! size a reader can hold. Generic over the crate (a `src` directory and a
//! crate name), so every crate of the workspace can run the same checks:
//!
//! ```no_run
//! let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
//! kaspec_harness::layout::assert_import_dag(&src, "kaspec_suites");
//! kaspec_harness::layout::assert_file_sizes(&src, 600, &[("table.rs", "one flat case table")]);
//! ```
//!
//! Why: a cycle (netns ↔ caps ↔ cleanup ↔ impair, once) means no module
//! can be read, tested or moved on its own; Mininet's rule — nodes, links
//! and clean-up each know only what is below them — keeps the testbed
//! layers replaceable. The graph is read from the text, the way
//! `shared/tools/imports.py` does: every `crate::<module>` (and
//! `<crate_name>::<module>`) path in code — `use` statements, grouped
//! `crate::{a, b}` imports and inline paths — outside comments, string
//! literals and `#[cfg(test)]` modules (unit tests may look anywhere),
//! between top-level modules (`src/x.rs` or `src/x/`). The crate root
//! (`lib.rs`, `main.rs`) and `src/bin` are not modules of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules its code refers to.
pub type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir` (sorted), but `src/bin`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root).
fn top_module(src_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// `text` with comments and the contents of string and char literals
/// blanked out (lengths kept), so only code is searched.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || (c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&b, i)) {
            // A string literal, raw (r"..", r#".."#) or not.
            let raw = c == 'r';
            let mut hashes = 0;
            if raw {
                i += 1;
                while b.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                if b.get(i) != Some(&'"') {
                    out.push('r');
                    continue;
                }
            }
            out.push('"');
            i += 1;
            while i < b.len() {
                if !raw && b[i] == '\\' {
                    i += 2;
                    continue;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push('"');
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            out.push_str("' '");
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{..}'
            let end = (i + 2..b.len()).find(|&k| b[k] == '\'').unwrap_or(b.len());
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// `code` without `#[cfg(test)]` modules.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || (trimmed.starts_with("pub") && trimmed.split('{').next().is_some_and(|h| h.contains(" mod ")));
        let open = after.find('{');
        let cut_end = match (is_mod, open) {
            (true, Some(o)) => {
                let start = at + "#[cfg(test)]".len() + o;
                let mut depth = 0usize;
                let mut end = out.len();
                for (k, ch) in out[start..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = start + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            // An item that is not a module: only its attribute goes.
            _ => at + "#[cfg(test)]".len(),
        };
        out.replace_range(at..cut_end, "");
    }
    out
}

/// The first path segments named after `prefix::` in `code`: `crate::a::b`
/// gives `a`, `crate::{a, b::c}` gives `a` and `b`.
fn referenced(code: &str, prefix: &str) -> BTreeSet<String> {
    let pat = format!("{prefix}::");
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find(&pat) {
        let at = from + pos;
        from = at + pat.len();
        let before = at.checked_sub(1).map(|k| bytes[k] as char);
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::` is not `crate::`
        }
        let rest = &code[from..];
        let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at depth-0 commas.
            let mut depth = 0;
            let mut item_start = true;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() {
                            found.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The module graph of the crate whose sources are in `src_dir` (its Rust
/// name is `crate_name`, e.g. `kaspec_harness`).
pub fn import_graph(src_dir: &Path, crate_name: &str) -> ModuleGraph {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src_dir, f)).collect();
    let mut graph: ModuleGraph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(from) = top_module(src_dir, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let code = without_test_modules(&code_only(&text));
        for prefix in ["crate", crate_name] {
            for to in referenced(&code, prefix) {
                if to != from && modules.contains(&to) {
                    graph.get_mut(&from).expect("every module is a node").insert(to);
                }
            }
        }
    }
    graph
}

/// A cycle of `graph` (its first module repeated at the end), if any.
pub fn find_cycle(graph: &ModuleGraph) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the current path, 2 done.
    fn visit<'a>(m: &'a str, graph: &'a ModuleGraph, state: &mut BTreeMap<&'a str, u8>, path: &mut Vec<&'a str>) -> Option<Vec<String>> {
        state.insert(m, 1);
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| *p == next).expect("on the path");
                    let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m, 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(m, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Panics, printing the cycle and the whole graph, unless the top-level
/// modules of the crate in `src_dir` (Rust name `crate_name`) form a DAG.
pub fn assert_import_dag(src_dir: &Path, crate_name: &str) {
    let graph = import_graph(src_dir, crate_name);
    assert!(graph.len() > 1, "no modules found under {}", src_dir.display());
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph.iter().map(|(m, to)| format!("  {m} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "))).collect();
        panic!("import cycle in {}: {}\nmodule graph:\n{}", src_dir.display(), cycle.join(" -> "), edges.join("\n"));
    }
}

/// Panics unless every `.rs` file under `src_dir` has at most `max_lines`
/// lines, but those in `exceptions`: (path relative to `src_dir`, why it
/// may be longer — e.g. a flat table read top to bottom). An exception
/// that no longer matches a long file is reported too, so the list cannot
/// go stale (rustls does the same with its deviation list).
pub fn assert_file_sizes(src_dir: &Path, max_lines: usize, exceptions: &[(&str, &str)]) {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(src_dir).unwrap_or(f).to_string_lossy().replace('\\', "/");
        let lines = std::fs::read_to_string(f).map(|t| t.lines().count()).unwrap_or(0);
        if lines <= max_lines {
            continue;
        }
        match exceptions.iter().find(|(name, _)| *name == rel) {
            Some((_, why)) if !why.trim().is_empty() => {
                used.insert(rel);
            }
            Some(_) => problems.push(format!("{rel}: {lines} lines, exempted without a reason")),
            None => problems.push(format!("{rel}: {lines} lines (more than {max_lines})")),
        }
    }
    for (name, _) in exceptions {
        if !used.contains(*name) {
            problems.push(format!("{name}: exempted, but not a file over {max_lines} lines (remove the exception)"));
        }
    }
    assert!(problems.is_empty(), "source files of {}:\n  {}", src_dir.display(), problems.join("\n  "));
}

//! What the protocol modules share about servers under test: Debian's
//! Python for the independent servers, and the per-server settings files
//! under fixtures/ (a table per server of duration strings).

use std::path::Path;
use std::time::Duration;

use kaspec_harness::{Error, Result};

/// Debian's Python, where python3-websockets and python3-grpcio install —
/// not whatever `python3` comes first on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

/// One-line error if Debian's python3 lacks `module`.
pub fn python_module(module: &str, package: &str) -> Result<()> {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Capability(format!("{PYTHON} cannot import `{module}` (apt-get install {package}, or run fixtures/bootstrap.sh)")))
    }
}

/// `module.__version__` as Debian's python3 reports it.
pub fn python_version(module: &str) -> String {
    std::process::Command::new(PYTHON)
        .args([
            "-c",
            &format!("import {module}; print({module}.__version__)"),
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Reads `[server] key = "duration"` for each of `keys` from a fixtures file;
/// errors name the file, the table and the key.
pub fn durations(path: &Path, server: &str, keys: &[&str]) -> Result<Vec<Duration>> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {shown}"), e))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Other(format!("{shown}: {}", e.message().trim())))?;
    let table = doc
        .get(server)
        .and_then(|t| t.as_table())
        .ok_or_else(|| Error::Other(format!("{shown}: missing table [{server}]")))?;
    if let Some(extra) = table.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(Error::Other(format!(
            "{shown}: [{server}] has unknown key `{extra}` (allowed: {})",
            keys.join(", ")
        )));
    }
    keys.iter()
        .map(|k| {
            let v = table.get(*k).and_then(|v| v.as_str()).ok_or_else(|| {
                Error::Other(format!(
                    "{shown}: [{server}] {k} is missing (a duration such as \"1500ms\")"
                ))
            })?;
            humantime::parse_duration(v).map_err(|e| {
                Error::Other(format!(
                    "{shown}: [{server}] {k} = \"{v}\": {e} (use ms, s or m)"
                ))
            })
        })
        .collect()
}

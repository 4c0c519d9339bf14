//! Running the system tools the testbed is built with (iproute2, nft).
//! Set-up only: nothing on a timed path goes through here except committing a
//! fault rule, whose in-force instant is taken after `nft` has returned.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Runs `program args...`, feeding `stdin` if given; a non-zero exit is an
/// error that names the command, the context and the tool's own message.
pub fn run(context: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            context: context.into(),
            cmd: shown.clone(),
            detail: format!("cannot start {program}: {e}"),
        })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input.as_bytes()).map_err(|e| Error::io(format!("writing to {program}"), e))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::io(format!("waiting for {program}"), e))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(input) = stdin {
            detail.push_str(&format!(" [input: {}]", input.trim().replace('\n', "; ")));
        }
        return Err(Error::Command { context: context.into(), cmd: shown, detail });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] but only reports success.
pub fn ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

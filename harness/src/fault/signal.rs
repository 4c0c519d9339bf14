//! The faults of the server process itself: `freeze` (SIGSTOP, SIGCONT at
//! heal) and the second half of `crash` (SIGKILL once the path is dead).
//! Both signals are asynchronous, so a fault is in force only once /proc
//! shows the process stopped (state `T`) or dead (a zombie, or gone): the
//! in-force instant is taken after that, never at `kill(2)`.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// Stops `pid` and waits until it is stopped.
pub(crate) fn freeze(pid: u32) -> Result<()> {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).map_err(|e| Error::io(format!("applying fault freeze: SIGSTOP to pid {pid}"), e.into()))?;
    wait_stopped(pid)
}

/// Kills `pid` and waits until it has died.
pub(crate) fn crash(pid: u32) -> Result<()> {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| Error::io(format!("applying fault crash: SIGKILL to pid {pid}"), e.into()))?;
    wait_dead(pid)
}

/// Continues a frozen `pid` (best effort: it may have exited meanwhile).
pub(crate) fn thaw(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
}

/// Waits until `pid` has died (a zombie, or gone).
fn wait_dead(pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return Ok(()),
            Ok(stat) if stat.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false) => return Ok(()),
            Ok(_) if Instant::now() > deadline => return Err(Error::Other(format!("pid {pid} did not die within 2 s of SIGKILL"))),
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Waits until `pid` is in the stopped state (SIGSTOP is asynchronous).
fn wait_stopped(pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| Error::io(format!("reading the state of pid {pid}"), e))?;
        if stat.rsplit(')').next().map(|r| r.trim_start().starts_with('T')).unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!("pid {pid} did not stop within 2 s of SIGSTOP")));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

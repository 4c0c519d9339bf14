//! The client-thread handshake, once: a client library runs on its own
//! thread inside the client host (its sockets live in that namespace); the
//! case waits for it to report that it is connected (and in steady state)
//! before it faults the path, and a client that never reports is a harness
//! error, not a verdict.

use std::fmt::Display;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::host::{Host, NsThread};
use kaspec_harness::{Error, Result};

/// Starts `body` on a thread named `name` in `host`, handing it the sender
/// on which it reports ready (or why it could not get there), and waits up
/// to `within` for that report. `who` names the client in the error.
///
/// Returns the thread and the client's own report, so that each case can
/// add what explains a failed set-up (a server log, the address).
pub fn start<T, R, E>(
    host: &Host,
    name: &str,
    who: &str,
    within: Duration,
    body: impl FnOnce(mpsc::Sender<std::result::Result<R, E>>) -> T + Send + 'static,
) -> Result<(NsThread<T>, std::result::Result<R, E>)>
where
    T: Send + 'static,
    R: Send + 'static,
    E: Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = host.spawn_thread(name, move || body(ready_tx))?;
    match ready_rx.recv_timeout(within) {
        Ok(report) => Ok((thread, report)),
        Err(_) => Err(Error::Other(format!(
            "{who} did not report within {} ms",
            within.as_millis()
        ))),
    }
}

/// [`start`], with a client whose set-up error is plain text: that error
/// becomes the harness error, prefixed with `context`.
pub fn start_or_fail<T, R, E: Display + Send + 'static>(
    host: &Host,
    name: &str,
    who: &str,
    within: Duration,
    context: impl Display,
    body: impl FnOnce(mpsc::Sender<std::result::Result<R, E>>) -> T + Send + 'static,
) -> Result<(NsThread<T>, R)>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let (thread, report) = start(host, name, who, within, body)?;
    let ready = report.map_err(|e| Error::Other(format!("{context}: {e}")))?;
    Ok((thread, ready))
}

/// A client failure after the client's own deadline is not a detection:
/// the case stopped watching then (the client was being closed, or its
/// window was long past). The error stays, marked as late.
pub fn not_after(failed_at: &mut Option<Instant>, error: &mut Option<String>, deadline: Instant) {
    if failed_at.is_some_and(|t| t > deadline) {
        *failed_at = None;
        *error = error
            .take()
            .map(|e| format!("after the client's deadline: {e}"));
    }
}

/// The stalled application of fault `client-stall`: it holds its client
/// (the connection stays open) but polls nothing, until the case's stop
/// instant (or the run going away). Called from the client's own loop once
/// the stall was asked for, so the library's future is no longer polled.
pub async fn stalled_until_stopped(stop_at: &mut tokio::sync::watch::Receiver<Option<Instant>>) {
    let until = match stop_at.wait_for(|s| s.is_some()).await {
        Ok(t) => t.expect("waited for Some"),
        Err(_) => return,
    };
    tokio::time::sleep_until(until.into()).await;
}

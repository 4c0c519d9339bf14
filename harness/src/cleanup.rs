//! Removal of everything a run creates.
//!
//! Every resource kaspec makes lives inside a network namespace whose name
//! starts with [`NS_PREFIX`] and carries the run tag: veths, addresses, routes
//! and nftables rules are inside those namespaces, and server processes run in
//! them (and carry `KASPEC_RUN_TAG` in their environment). The root namespace
//! is never changed — but for the `docker` testbed's veth end `kb-TAG`, a port
//! of the compose bridge, which goes with its peer when the router namespace
//! is removed — so removing our namespaces (after killing the processes
//! inside them) removes everything and touches nothing else.
//!
//! A `docker` testbed's server host `kaspec-TAG-ctr` is an attachment of a
//! container's namespace (`ip netns attach`): removing it only unmounts the
//! name; the container's processes are never signalled. Its router's address
//! claim (a file under `/run/kaspec/addr`) goes with the tag.
//!
//! Three paths lead here: a testbed's `Drop` (also during a panic's unwinding),
//! the Ctrl-C / SIGTERM handler (which cleans every live testbed, then exits
//! 130), and `kaspec clean` for what a `kill -9` left behind.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd;

/// Every namespace kaspec creates starts with this.
pub const NS_PREFIX: &str = "kaspec-";

/// Live testbeds: tag -> namespace names.
static LIVE: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
static HANDLER: Once = Once::new();
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether Ctrl-C / SIGTERM arrived. The handler is removing everything and
/// will exit the process with 130; callers should start nothing new and not
/// exit on their own first.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Installs the Ctrl-C / SIGTERM handler once per process.
pub fn install_signal_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            // Never panic here (stderr may be a closed pipe): the clean-up must run.
            let _ = writeln!(std::io::stderr(), "kaspec: interrupted, removing this run's namespaces and processes");
            let live: Vec<(String, Vec<String>)> = match LIVE.lock() {
                Ok(g) => g.clone().into_iter().collect(),
                Err(p) => p.into_inner().clone().into_iter().collect(),
            };
            for (tag, namespaces) in live {
                remove_namespaces(&namespaces);
                remove_scratch_dirs_of(&tag);
                release_claims_of(&tag);
                let _ = std::fs::remove_file(format!("{OWNER_DIR}/{tag}"));
            }
            std::process::exit(130);
        });
    });
}

/// Where each live run records which process owns its tag, so that
/// `kaspec clean` never removes the namespaces of a run that is still going.
pub const OWNER_DIR: &str = "/run/kaspec";

/// Claims `tag` for this process: false if another run (live or a leftover)
/// already holds it, so the caller picks another tag and never touches
/// namespaces it did not create. The owner record is "PID STARTTIME", so a
/// recycled pid is not mistaken for the owner.
pub(crate) fn register(tag: &str, namespaces: Vec<String>) -> bool {
    install_signal_handler();
    let _ = std::fs::create_dir_all(OWNER_DIR);
    if namespaces.iter().any(|n| existing_namespaces().contains(n)) {
        return false;
    }
    let pid = std::process::id() as i32;
    let claimed = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(format!("{OWNER_DIR}/{tag}"))
        .and_then(|mut f| write!(f, "{pid} {}", start_time(pid).unwrap_or(0)));
    if claimed.is_err() {
        return false;
    }
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(tag.to_string(), namespaces);
    true
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().nth(19)?.parse().ok()
}

pub(crate) fn unregister(tag: &str) {
    let _ = std::fs::remove_file(format!("{OWNER_DIR}/{tag}"));
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).remove(tag);
}

/// The tag in a namespace name `kaspec-TAG-ROLE`.
pub fn tag_of(ns: &str) -> Option<&str> {
    ns.strip_prefix(NS_PREFIX)?.split('-').next()
}

/// The live process that owns `tag`, if any (not this process's own).
fn live_owner(tag: &str) -> Option<i32> {
    let record = std::fs::read_to_string(format!("{OWNER_DIR}/{tag}")).ok()?;
    let mut fields = record.split_whitespace();
    let pid: i32 = fields.next()?.parse().ok()?;
    let started: Option<u64> = fields.next().and_then(|s| s.parse().ok());
    let alive = pid != std::process::id() as i32 && kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid);
    // A pid recycled by another process is not the owner.
    (alive && (started.is_none() || started == start_time(pid))).then_some(pid)
}

/// Pids of the processes living in namespace `ns` (as `ip netns pids`).
pub fn pids_in(ns: &str) -> Vec<i32> {
    cmd::run("listing processes", "ip", &["netns", "pids", ns], None)
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in the namespaces (TERM, then KILL after a grace
/// period), then deletes the namespaces. Best effort: returns what could not
/// be removed.
pub fn remove_namespaces(namespaces: &[String]) -> Vec<String> {
    let mut pids: Vec<i32> = namespaces.iter().filter(|ns| !is_attachment(ns)).flat_map(|ns| pids_in(ns)).collect();
    pids.retain(|p| *p != std::process::id() as i32);
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGCONT); // a frozen process cannot die of TERM
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids.is_empty() && Instant::now() < deadline {
        pids.retain(|p| kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p));
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    let mut left = Vec::new();
    for ns in namespaces {
        if !cmd::ok("ip", &["netns", "delete", ns]) && existing_namespaces().contains(ns) {
            left.push(ns.clone());
        }
    }
    left
}

/// Whether `ns` names another's namespace attached by a `docker` testbed
/// (`kaspec-TAG-ctr`): its processes are not ours.
pub fn is_attachment(ns: &str) -> bool {
    ns.strip_prefix(NS_PREFIX).and_then(|r| r.split_once('-')).is_some_and(|(_, role)| role == crate::netns::ATTACHED_ROLE)
}

/// Whether no run holds `tag` any more (neither this process nor a live owner).
pub fn tag_is_gone(tag: &str) -> bool {
    !LIVE.lock().unwrap_or_else(|p| p.into_inner()).contains_key(tag) && live_owner(tag).is_none()
}

/// Removes the router address claims of `tag` (docker testbed).
pub fn release_claims_of(tag: &str) {
    for entry in std::fs::read_dir(crate::docker::CLAIM_DIR).into_iter().flatten().flatten() {
        if std::fs::read_to_string(entry.path()).is_ok_and(|t| t.trim() == tag) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false))
        .unwrap_or(true)
}

/// Names of all network namespaces known to iproute2 (`/run/netns`).
pub fn existing_namespaces() -> Vec<String> {
    match std::fs::read_dir("/run/netns") {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// What `kaspec clean` found and removed.
#[derive(Debug, Default)]
pub struct CleanReport {
    pub namespaces: Vec<String>,
    pub processes: usize,
    pub failed: Vec<String>,
    /// Namespaces left alone because the run that owns them is still alive.
    pub in_use: Vec<(String, i32)>,
    /// Throw-away directories of finished runs ([`scratch_dir`]) removed.
    pub dirs: Vec<String>,
    /// Router address claims on a compose network (docker testbed) removed.
    pub claims: Vec<String>,
}

/// Removes the marked scratch directories of `tag` (after its processes are gone).
fn remove_scratch_dirs_of(tag: &str) {
    let prefix = format!("{NS_PREFIX}{tag}-");
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with(&prefix) && p.join(SCRATCH_MARKER).is_file() {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// Marks a directory made by [`scratch_dir`]: `kaspec clean` removes no other.
const SCRATCH_MARKER: &str = ".kaspec-scratch";

/// A fresh, empty throw-away directory for run `tag` (a shared server's
/// data), `$TMPDIR/kaspec-TAG-NAME`. Its owner removes it; `kaspec clean`
/// removes it once no live run holds the tag.
pub fn scratch_dir(tag: &str, name: &str) -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("{NS_PREFIX}{tag}-{name}"));
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(SCRATCH_MARKER), tag)?;
    Ok(d)
}

/// Scratch directories whose run is gone (not live here, no live owner).
fn leftover_scratch_dirs() -> Vec<std::path::PathBuf> {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let p = entry.path();
        let Some(tag) = tag_of(&name) else { continue };
        if !p.join(SCRATCH_MARKER).is_file() || live.contains_key(tag) || live_owner(tag).is_some() {
            continue;
        }
        out.push(p);
    }
    out
}

/// Removes every kaspec namespace on this machine whose run is gone (killed,
/// crashed, or kept with KASPEC_KEEP=1), with the processes inside. Runs that
/// are still alive — in this process or another — are left alone. Touches
/// nothing without our prefix.
pub fn clean_leftovers() -> CleanReport {
    let live: Vec<String> = LIVE.lock().unwrap_or_else(|p| p.into_inner()).values().flatten().cloned().collect();
    let mut report = CleanReport::default();
    for ns in existing_namespaces().into_iter().filter(|n| n.starts_with(NS_PREFIX) && !live.contains(n)) {
        match tag_of(&ns).and_then(live_owner) {
            Some(pid) => report.in_use.push((ns, pid)),
            None => report.namespaces.push(ns),
        }
    }
    report.namespaces.sort();
    report.processes = report.namespaces.iter().filter(|ns| !is_attachment(ns)).map(|ns| pids_in(ns).len()).sum();
    report.failed = remove_namespaces(&report.namespaces);
    let mut tags: Vec<&str> = report.namespaces.iter().filter_map(|n| tag_of(n)).collect();
    tags.dedup();
    for t in tags {
        let _ = std::fs::remove_file(format!("{OWNER_DIR}/{t}"));
    }
    for d in leftover_scratch_dirs() {
        if std::fs::remove_dir_all(&d).is_ok() {
            report.dirs.push(d.display().to_string());
        }
    }
    // Router address claims of runs that are gone.
    for entry in std::fs::read_dir(crate::docker::CLAIM_DIR).into_iter().flatten().flatten() {
        let holder = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if tag_is_gone(holder.trim()) && std::fs::remove_file(entry.path()).is_ok() {
            report.claims.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    // Owner records of runs that died after their namespaces were removed.
    for entry in std::fs::read_dir(OWNER_DIR).into_iter().flatten().flatten() {
        let tag = entry.file_name().to_string_lossy().into_owned();
        let mine = LIVE.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&tag);
        if !mine && live_owner(&tag).is_none() && !existing_namespaces().iter().any(|n| tag_of(n) == Some(tag.as_str())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_claimed_once_and_recorded_with_its_owner() {
        if !std::path::Path::new("/run").is_dir() || unsafe { libc::geteuid() } != 0 {
            return; // needs /run/kaspec (root); the integration tests cover it too
        }
        let tag = format!("t{:05x}", std::process::id() & 0xfffff);
        assert!(register(&tag, vec![format!("{NS_PREFIX}{tag}-client")]));
        assert!(!register(&tag, vec![format!("{NS_PREFIX}{tag}-client")]), "a held tag is never handed out twice");
        let record = std::fs::read_to_string(format!("{OWNER_DIR}/{tag}")).unwrap();
        assert_eq!(record.split_whitespace().next(), Some(std::process::id().to_string().as_str()));
        assert_eq!(live_owner(&tag), None, "this process's own tags are not 'another live run'");
        unregister(&tag);
        assert!(!std::path::Path::new(&format!("{OWNER_DIR}/{tag}")).exists());
    }
}

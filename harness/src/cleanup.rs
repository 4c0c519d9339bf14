//! Removal of everything a run creates.
//!
//! Every resource kaspec makes lives inside a network namespace whose name
//! starts with [`NS_PREFIX`] and carries the run tag: veths, addresses, routes
//! and nftables rules are inside those namespaces, and server processes run in
//! them (and carry `KASPEC_RUN_TAG` in their environment). The root namespace
//! is never changed (a veth end a backend plugs into a bridge there goes with
//! its peer when the router namespace is removed), so removing our
//! namespaces (after killing the processes inside them) removes everything
//! and touches nothing else.
//!
//! This module names no subsystem (Mininet's `mn -c` works the same way):
//! what a subsystem holds outside those namespaces (a file claiming an
//! address, say), or a namespace whose processes are not ours (an attached
//! container's), it describes in a [`Cleaner`] it registers with
//! [`register_cleaner`]; the drop, signal and `kaspec clean` paths below run
//! every registered cleaner.
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

/// A subsystem's part of the clean-up, registered with [`register_cleaner`].
pub struct Cleaner {
    /// What it removes (for messages), e.g. "router address claims".
    pub what: &'static str,
    /// Whether the processes in namespace `ns` are someone else's: they are
    /// never signalled, the name is only removed.
    pub foreign_processes: fn(ns: &str) -> bool,
    /// Removes what run `tag` holds (a testbed's drop, Ctrl-C).
    pub release: fn(tag: &str),
    /// Removes what runs that are gone ([`tag_is_gone`]) left; returns the
    /// names of what it removed (`kaspec clean`).
    pub leftovers: fn() -> Vec<String>,
}

/// The registered cleaners.
static CLEANERS: Mutex<Vec<&'static Cleaner>> = Mutex::new(Vec::new());

/// Registers `c` (once: registering the same cleaner again does nothing).
pub fn register_cleaner(c: &'static Cleaner) {
    let mut all = CLEANERS.lock().unwrap_or_else(|p| p.into_inner());
    if !all.iter().any(|x| std::ptr::eq(*x, c)) {
        all.push(c);
    }
}

fn cleaners() -> Vec<&'static Cleaner> {
    CLEANERS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Runs every registered cleaner's `release` for run `tag`.
pub fn release_registered(tag: &str) {
    for c in cleaners() {
        (c.release)(tag);
    }
}

/// Whether a registered cleaner says the processes in `ns` are not ours.
fn foreign(ns: &str) -> bool {
    cleaners().iter().any(|c| (c.foreign_processes)(ns))
}

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

/// What the run is doing (e.g. the case under way), named by the
/// interrupt's one line; empty between cases.
static ACTIVITY: Mutex<String> = Mutex::new(String::new());

/// Sets what [`install_signal_handler`]'s message names as under way when
/// an interrupt arrives (empty: nothing).
pub fn set_activity(what: &str) {
    let mut a = ACTIVITY.lock().unwrap_or_else(|p| p.into_inner());
    a.clear();
    a.push_str(what);
}

/// Installs the Ctrl-C / SIGTERM / SIGHUP handler once per process.
pub fn install_signal_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            // Held until exit: a scratch directory being made now is
            // complete (and found below), and none is made after.
            let _no_more = SCRATCH.write().unwrap_or_else(|p| p.into_inner());
            // Never panic here (stderr may be a closed pipe): the clean-up must run.
            let doing = ACTIVITY.lock().map(|a| a.clone()).unwrap_or_default();
            let doing = if doing.is_empty() { String::new() } else { format!(" ({doing}: no result)") };
            let _ = writeln!(std::io::stderr(), "kaspec: interrupted{doing}, removing this run's namespaces and processes");
            let live: Vec<(String, Vec<String>)> = match LIVE.lock() {
                Ok(g) => g.clone().into_iter().collect(),
                Err(p) => p.into_inner().clone().into_iter().collect(),
            };
            for (tag, namespaces) in live {
                remove_namespaces(&namespaces);
                remove_scratch_dirs_of(&tag);
                release_registered(&tag);
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

/// The environment variable every process kaspec starts carries: the run's tag.
pub const TAG_VAR: &str = "KASPEC_RUN_TAG";

/// Processes whose environment carries a run tag ([`TAG_VAR`]): (pid, tag),
/// wherever they live — also in a namespace that no longer has a name, or
/// reparented after a daemon's double fork.
pub fn tagged_processes() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let prefix = format!("{TAG_VAR}=");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == me || is_zombie(pid) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else { continue };
        if let Some(tag) = env.split(|b| *b == 0).find_map(|v| v.strip_prefix(prefix.as_bytes())) {
            out.push((pid, String::from_utf8_lossy(tag).into_owned()));
        }
    }
    out
}

/// How long [`kill_all`] lets processes exit on TERM before KILL, and how
/// long it keeps going in all.
const GRACE: Duration = Duration::from_secs(3);
const GIVE_UP: Duration = Duration::from_secs(10);

/// Kills every process `list` names, again and again until it names none:
/// a process started meanwhile (a server forking a helper, RabbitMQ
/// starting an `epmd -daemon`) is found in the next round. TERM first (and
/// CONT: a frozen process cannot die of TERM), KILL after [`GRACE`].
/// Returns the number of processes signalled and those still alive at the
/// deadline.
fn kill_all(list: impl Fn() -> Vec<i32>) -> (usize, Vec<i32>) {
    let started = Instant::now();
    let mut seen: Vec<i32> = Vec::new();
    loop {
        let mut pids = list();
        pids.retain(|p| *p != std::process::id() as i32 && kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p));
        if pids.is_empty() || started.elapsed() >= GIVE_UP {
            return (seen.len(), pids);
        }
        let hard = started.elapsed() >= GRACE;
        for p in &pids {
            if !seen.contains(p) {
                seen.push(*p);
            }
            let _ = kill(Pid::from_raw(*p), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(*p), if hard { Signal::SIGKILL } else { Signal::SIGTERM });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of run `tags`' processes: those in the namespaces (as `ip
/// netns pids`; none of a namespace whose processes are foreign) and those
/// carrying one of the tags in their environment.
fn processes_of(namespaces: &[String], tags: &[String]) -> Vec<i32> {
    let mut pids: Vec<i32> = namespaces.iter().filter(|ns| !foreign(ns)).flat_map(|ns| pids_in(ns)).collect();
    pids.extend(tagged_processes().into_iter().filter(|(_, t)| tags.contains(t)).map(|(p, _)| p));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Kills every process in the namespaces and every process carrying their
/// tags, until none is left, then deletes the namespaces. Best effort:
/// returns what could not be removed (namespaces, and `pid N` of a process
/// that outlived [`GIVE_UP`]).
pub fn remove_namespaces(namespaces: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = namespaces.iter().filter_map(|n| tag_of(n)).map(String::from).collect();
    tags.dedup();
    let (_, alive) = kill_all(|| processes_of(namespaces, &tags));
    let mut left: Vec<String> = alive.iter().map(|p| format!("pid {p}")).collect();
    for ns in namespaces {
        if !cmd::ok("ip", &["netns", "delete", ns]) && existing_namespaces().contains(ns) {
            left.push(ns.clone());
        }
    }
    // A process forked while the names went (it keeps its namespace alive
    // without a name): found by its tag.
    let (_, alive) = kill_all(|| processes_of(&[], &tags));
    left.extend(alive.iter().map(|p| format!("pid {p}")));
    left
}

/// Whether no run holds `tag` any more (neither this process nor a live owner).
pub fn tag_is_gone(tag: &str) -> bool {
    !LIVE.lock().unwrap_or_else(|p| p.into_inner()).contains_key(tag) && live_owner(tag).is_none()
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

/// What `kaspec clean` found and removed, by category.
#[derive(Debug, Default)]
pub struct CleanReport {
    pub namespaces: Vec<String>,
    /// Processes killed: those inside the namespaces and those carrying
    /// the tag of a run that is gone in their environment.
    pub processes: usize,
    /// What could not be removed (namespaces, `pid N`, directories, files).
    pub failed: Vec<String>,
    /// Namespaces left alone because the run that owns them is still alive.
    pub in_use: Vec<(String, i32)>,
    /// Throw-away directories of finished runs ([`scratch_dir`]) removed.
    pub dirs: Vec<String>,
    /// Files a server of a finished run wrote outside its scratch
    /// directory, removed ([`remove_strays`]).
    pub strays: Vec<String>,
    /// What the registered [`Cleaner`]s removed for runs that are gone
    /// (their `leftovers`).
    pub claims: Vec<String>,
}

/// A file a server may leave outside the run's scratch directory (before
/// it was told where to write, or from an older kaspec), recognised by
/// its name.
#[derive(Debug, Clone, Copy)]
pub struct Stray {
    /// What it is, for messages.
    pub what: &'static str,
    /// The start of its name (e.g. `MnesiaCore.kaspec-rabbit`).
    pub prefix: &'static str,
    /// Bytes its content must hold too (a path under kaspec's scratch
    /// directories, say) when the name alone could be someone else's; empty:
    /// the name is enough.
    pub contains: &'static [u8],
}

impl Stray {
    fn is(&self, path: &std::path::Path, name: &str) -> bool {
        name.starts_with(self.prefix)
            && (self.contains.is_empty() || std::fs::read(path).is_ok_and(|b| b.windows(self.contains.len()).any(|w| w == self.contains)))
    }
}

/// Removes, from each of `dirs` (not below), the regular files a `strays`
/// entry recognises: (removed, could not be removed).
pub fn remove_strays(dirs: &[std::path::PathBuf], strays: &[Stray]) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    let mut seen = Vec::new();
    for d in dirs {
        let Ok(d) = d.canonicalize() else { continue };
        if seen.contains(&d) {
            continue;
        }
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Some(s) = strays.iter().find(|s| s.is(&entry.path(), &name)) {
                let shown = format!("{} ({})", entry.path().display(), s.what);
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed.push(shown),
                    Err(e) => failed.push(format!("{shown}: {e}")),
                }
            }
        }
        seen.push(d);
    }
    (removed, failed)
}

/// Removes the scratch directories of `tag` (after its processes are
/// gone). The tag is this process's own, so the name is enough (a directory
/// interrupted between its creation and its marker goes too); a server that
/// was still writing as it died can make one removal fail or a directory
/// reappear, so it retries for up to 2 s.
fn remove_scratch_dirs_of(tag: &str) {
    let prefix = format!("{NS_PREFIX}{tag}-");
    for _ in 0..40 {
        let mut left = false;
        for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with(&prefix) && p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
                left |= p.exists();
            }
        }
        if !left {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Taken for reading while [`scratch_dir`] makes a directory, for writing
/// by the interrupt handler before it removes them.
static SCRATCH: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Marks a directory made by [`scratch_dir`]: `kaspec clean` removes no other.
const SCRATCH_MARKER: &str = ".kaspec-scratch";

/// A fresh, empty throw-away directory for run `tag` (a shared server's
/// data), `$TMPDIR/kaspec-TAG-NAME`. Its owner removes it; `kaspec clean`
/// removes it once no live run holds the tag.
///
/// An interrupted run makes none (the handler removes what it finds, then
/// exits): the check and the creation hold [`SCRATCH`] against the handler.
/// Callers make their subdirectories with `create_dir`, never
/// `create_dir_all`, so that a directory the handler removed is not made
/// again behind its back (a write into it fails instead).
pub fn scratch_dir(tag: &str, name: &str) -> std::io::Result<std::path::PathBuf> {
    let _making = SCRATCH.read().unwrap_or_else(|p| p.into_inner());
    if interrupted() {
        return Err(std::io::Error::other("interrupted: no new scratch directory"));
    }
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
/// crashed, or kept with KASPEC_KEEP=1), with the processes inside, and
/// what the registered cleaners find of such runs (`kaspec clean` calls it
/// through `testbed::clean_leftovers`, which registers them all first). Runs that
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
    // The tags of runs that are gone: those of the namespaces, and those
    // processes carry (a daemon that outlived its namespace's name).
    let mut tags: Vec<String> = report.namespaces.iter().filter_map(|n| tag_of(n)).map(String::from).collect();
    let live_tags: Vec<String> = live.iter().filter_map(|n| tag_of(n)).map(String::from).collect();
    for (_, t) in tagged_processes() {
        if !tags.contains(&t) && !live_tags.contains(&t) && tag_is_gone(&t) {
            tags.push(t);
        }
    }
    tags.sort();
    tags.dedup();
    let (killed, alive) = kill_all(|| processes_of(&report.namespaces, &tags));
    report.processes = killed;
    report.failed = alive.iter().map(|p| format!("pid {p}")).collect();
    report.failed.extend(remove_namespaces(&report.namespaces));
    for t in &tags {
        let _ = std::fs::remove_file(format!("{OWNER_DIR}/{t}"));
    }
    for d in leftover_scratch_dirs() {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => report.dirs.push(d.display().to_string()),
            Err(e) => report.failed.push(format!("{}: {e}", d.display())),
        }
    }
    // What the registered subsystems hold for runs that are gone.
    for c in cleaners() {
        report.claims.extend((c.leftovers)());
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

    #[test]
    fn registered_cleaners_run_once_each_for_a_tag() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RELEASED: AtomicUsize = AtomicUsize::new(0);
        fn release(tag: &str) {
            if tag == "cleaner-test" {
                RELEASED.fetch_add(1, Ordering::SeqCst);
            }
        }
        static C: Cleaner = Cleaner { what: "test", foreign_processes: |ns| ns == "kaspec-cleaner-test-x", release, leftovers: Vec::new };
        register_cleaner(&C);
        register_cleaner(&C);
        release_registered("cleaner-test");
        assert_eq!(RELEASED.load(Ordering::SeqCst), 1, "registered once");
        assert!(foreign("kaspec-cleaner-test-x") && !foreign("kaspec-cleaner-test-y"));
    }
}

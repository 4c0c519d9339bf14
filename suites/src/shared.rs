//! Servers shared by the cases of one run. Brokers that take seconds to
//! start (RabbitMQ, PostgreSQL) start once, on first use, in one testbed
//! kept for the run; each case then opens its own connection and faults
//! only its own flow (the fault rules match the flow's ports). Cases run one
//! at a time: a case holds the [`Lease`] for its whole run, and the path is
//! healed (rules flushed, impairments stopped, a frozen server continued)
//! before and after every lease. A server found dead (the `crash` fault
//! kills it) is started again for the next case.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use kaspec_harness::testbed::Testbed;
use kaspec_harness::server::Server;
use kaspec_harness::{Error, Result};

/// One named group of processes (e.g. epmd + RabbitMQ); the last is the
/// server under test.
struct Group {
    processes: Vec<Server>,
    /// Removed when the group is dropped (throw-away data directories).
    dirs: Vec<std::path::PathBuf>,
}

impl Drop for Group {
    fn drop(&mut self) {
        // Last started, first stopped.
        while let Some(p) = self.processes.pop() {
            drop(p);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

struct Bed {
    // Dropped before the testbed: processes first, then namespaces.
    groups: BTreeMap<&'static str, Group>,
    starts: BTreeMap<&'static str, usize>,
    tb: Testbed,
}

/// What a shared server's start-up returns.
pub struct Started {
    pub processes: Vec<Server>,
    /// Throw-away directories to remove with the processes.
    pub dirs: Vec<std::path::PathBuf>,
}

/// The plain testbed's key; NAT cases keep their own (`nat-4s`, ...).
pub const PLAIN: &str = "plain";

#[derive(Default)]
pub struct Shared {
    beds: Mutex<BTreeMap<String, Bed>>,
}

/// A case's hold on a shared testbed and one server.
pub struct Lease<'a> {
    guard: MutexGuard<'a, BTreeMap<String, Bed>>,
    bed: String,
    name: &'static str,
}

impl Lease<'_> {
    fn bed(&self) -> &Bed {
        self.guard.get(&self.bed).expect("a lease has a bed")
    }

    pub fn testbed(&self) -> &Testbed {
        &self.bed().tb
    }

    /// The server under test of this lease's group.
    pub fn server(&self) -> &Server {
        self.bed().groups[self.name].processes.last().expect("a group has a server")
    }

    /// How many times this server was started in this run.
    pub fn starts(&self) -> usize {
        self.bed().starts.get(self.name).copied().unwrap_or(0)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(bed) = self.guard.get(&self.bed) {
            let _ = bed.tb.heal();
        }
    }
}

impl Shared {
    /// Leases the shared plain testbed (built on first use, from `build`)
    /// with server `name` running (started with `start` on first use, or
    /// again if it died).
    pub fn lease(
        &self,
        name: &'static str,
        build: impl FnOnce() -> Result<Testbed>,
        start: impl FnOnce(&Testbed) -> Result<Started>,
    ) -> Result<Lease<'_>> {
        self.lease_in(PLAIN, name, build, start)
    }

    /// Like [`lease`](Self::lease), on the shared testbed `bed` (e.g. one
    /// whose router is a NAT): each kind of path keeps its own testbed and
    /// its own servers.
    pub fn lease_in(
        &self,
        bed: &str,
        name: &'static str,
        build: impl FnOnce() -> Result<Testbed>,
        start: impl FnOnce(&Testbed) -> Result<Started>,
    ) -> Result<Lease<'_>> {
        let mut guard = self.beds.lock().unwrap_or_else(|p| p.into_inner());
        if !guard.contains_key(bed) {
            let tb = build()?;
            guard.insert(bed.to_string(), Bed { groups: BTreeMap::new(), starts: BTreeMap::new(), tb });
        }
        let b = guard.get_mut(bed).expect("just built");
        b.tb.heal()?;
        let dead = b.groups.get_mut(name).is_some_and(|g| !g.processes.iter_mut().all(Server::alive));
        if dead {
            b.groups.remove(name);
        }
        if !b.groups.contains_key(name) {
            let started = start(&b.tb)?;
            if started.processes.is_empty() {
                return Err(Error::Other(format!("shared server {name}: nothing was started")));
            }
            b.groups.insert(name, Group { processes: started.processes, dirs: started.dirs });
            *b.starts.entry(name).or_default() += 1;
        }
        Ok(Lease { guard, bed: bed.to_string(), name })
    }

    /// Stops every shared server and removes the testbed.
    pub fn close(&self) {
        std::mem::take(&mut *self.beds.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A throw-away directory a server's start-up made, removed unless kept
/// (handed to [`Started::dirs`] once the server is up).
pub struct DirGuard(Option<std::path::PathBuf>);

impl DirGuard {
    pub fn new(dir: std::path::PathBuf) -> DirGuard {
        DirGuard(Some(dir))
    }

    pub fn keep(mut self) -> Vec<std::path::PathBuf> {
        self.0.take().into_iter().collect()
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

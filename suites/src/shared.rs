//! Servers shared by the cases of one run. Brokers that take seconds to
//! start (RabbitMQ, PostgreSQL) start once, on first use, in one testbed
//! kept for the run; each case then opens its own connection and faults
//! only its own flow.
//!
//! Cases may hold leases of one server at once (`kaspec run --jobs N`):
//! each [`Lease`] gets a [view](kaspec_harness::testbed::Testbed::view) of
//! the shared testbed with a fault table of its own on the router, so its
//! rules (matching its own flow's addresses and ports) and its heal touch
//! no other lease's. What a fault does beyond its own flow decides what a
//! lease must hold alone ([`Hold`]):
//!
//! - blackhole (either way), reset, nat-expiry, none: nothing beyond the
//!   flow, so leases of a bed and of a server run side by side;
//! - freeze and crash stop or kill the server process (every connection
//!   of RabbitMQ's beam; PostgreSQL's postmaster): the lease holds that
//!   server alone, while other servers of the bed go on;
//! - delay and loss impair the router's links (netem qdiscs, or the
//!   nfqueue engine's one queue): the lease holds the whole bed alone.
//!
//! Starting a server (first use, or again after `crash` killed it) holds
//! that server alone too. Outside a runner's unit (a test, `validate`) a
//! lease holds everything alone, as when cases ran one at a time.
//!
//! Shared servers are started on a thread that outlives them (the runner's
//! workers wait for [`Shared::close`]): a server gets SIGKILL when the
//! thread that spawned it ends (`Host::command`'s PR_SET_PDEATHSIG).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use kaspec_harness::fault::FaultKind;
use kaspec_harness::server::Server;
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};

/// One named group of processes (e.g. epmd + RabbitMQ); the last is the
/// server under test.
struct Group {
    processes: Vec<Server>,
    /// Removed when the group is dropped (throw-away data directories).
    dirs: Vec<std::path::PathBuf>,
}

impl Group {
    /// Whether a process of the group has exited (or is a zombie): read
    /// from /proc, as leases share the group and cannot reap it.
    fn died(&self) -> bool {
        self.processes.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{}/stat", p.pid()))
                .map(|st| {
                    st.rsplit(')')
                        .next()
                        .is_some_and(|r| matches!(r.trim_start().chars().next(), Some('Z' | 'X')))
                })
                .unwrap_or(true)
        })
    }
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

/// A readers–writer gate whose holds are taken and given back by hand (a
/// lease outlives the call that took it). A waiting writer goes first.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    readers: usize,
    writer: bool,
    writers_waiting: usize,
}

impl Gate {
    fn enter(&self, alone: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if alone {
            s.writers_waiting += 1;
            while s.writer || s.readers > 0 {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            s.writers_waiting -= 1;
            s.writer = true;
        } else {
            while s.writer || s.writers_waiting > 0 {
                s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            s.readers += 1;
        }
    }

    fn leave(&self, alone: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if alone {
            s.writer = false;
        } else {
            s.readers -= 1;
        }
        self.changed.notify_all();
    }

    /// From alone to shared, without letting a writer in between.
    fn downgrade(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.writer = false;
        s.readers += 1;
        self.changed.notify_all();
    }
}

/// One server of a bed: its processes (none before the first lease), how
/// many times they were started, and the gate its leases pass.
#[derive(Default)]
struct Slot {
    group: Mutex<Option<Arc<Group>>>,
    starts: AtomicUsize,
    gate: Gate,
}

impl Slot {
    fn needs_start(&self) -> bool {
        self.group
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|g| g.died())
    }
}

struct Bed {
    // Dropped before the testbed: processes first, then namespaces.
    slots: Mutex<BTreeMap<&'static str, Arc<Slot>>>,
    gate: Gate,
    /// Numbers the leases' views (their fault tables).
    views: AtomicUsize,
    tb: Testbed,
}

impl Bed {
    fn slot(&self, name: &'static str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default()
            .clone()
    }
}

/// What a shared server's start-up returns.
pub struct Started {
    pub processes: Vec<Server>,
    /// Throw-away directories to remove with the processes.
    pub dirs: Vec<std::path::PathBuf>,
}

/// The plain testbed's key; NAT cases keep their own (`nat-4s`, ...).
pub const PLAIN: &str = "plain";

/// What a lease holds alone: the whole bed (its router's links), its
/// server (the process), or neither (only its own flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub bed: bool,
    pub server: bool,
}

impl Hold {
    /// What a case under `fault` must hold alone (None: not in a runner's
    /// unit, everything, as when cases ran one at a time).
    pub fn of(fault: Option<FaultKind>) -> Hold {
        match fault {
            None | Some(FaultKind::Delay | FaultKind::Loss) => Hold {
                bed: true,
                server: true,
            },
            Some(FaultKind::Freeze | FaultKind::Crash) => Hold {
                bed: false,
                server: true,
            },
            Some(
                FaultKind::Blackhole
                | FaultKind::BlackholeUp
                | FaultKind::BlackholeDown
                | FaultKind::Reset
                | FaultKind::NatExpiry
                | FaultKind::ClientStall
                | FaultKind::ClientCrash
                | FaultKind::None,
            ) => Hold {
                bed: false,
                server: false,
            },
        }
    }
}

thread_local! {
    static UNIT_FAULT: Cell<Option<FaultKind>> = const { Cell::new(None) };
}

/// While the guard lives, the calling thread runs one unit under `fault`:
/// the leases it takes hold alone only what [`Hold::of`] that fault says.
/// The runner sets it around each unit.
pub fn unit(fault: FaultKind) -> UnitGuard {
    UNIT_FAULT.with(|u| u.set(Some(fault)));
    UnitGuard(PhantomData)
}

/// See [`unit`]; not `Send`: it belongs to the thread that set it.
pub struct UnitGuard(PhantomData<*const ()>);

impl Drop for UnitGuard {
    fn drop(&mut self) {
        UNIT_FAULT.with(|u| u.set(None));
    }
}

#[derive(Default)]
pub struct Shared {
    beds: Mutex<BTreeMap<String, Arc<Bed>>>,
}

/// A case's hold on a shared testbed and one server.
pub struct Lease<'a> {
    /// Dropped first: heals this lease's rules and removes its table.
    view: Option<Testbed>,
    group: Arc<Group>,
    starts: usize,
    slot: Arc<Slot>,
    bed: Arc<Bed>,
    hold: Hold,
    _shared: PhantomData<&'a Shared>,
}

impl Lease<'_> {
    /// This lease's view of the shared testbed (its own fault table).
    pub fn testbed(&self) -> &Testbed {
        self.view
            .as_ref()
            .expect("a lease has its view until dropped")
    }

    /// The server under test of this lease's group.
    pub fn server(&self) -> &Server {
        self.group.processes.last().expect("a group has a server")
    }

    /// How many times this server was started in this run (when the lease
    /// was taken).
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// What this lease holds alone.
    pub fn hold(&self) -> Hold {
        self.hold
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        drop(self.view.take());
        self.slot.gate.leave(self.hold.server);
        self.bed.gate.leave(self.hold.bed);
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
        let hold = Hold::of(UNIT_FAULT.with(|u| u.get()));
        let b = {
            let mut beds = self.beds.lock().unwrap_or_else(|p| p.into_inner());
            if !beds.contains_key(bed) {
                let tb = build()?;
                beds.insert(
                    bed.to_string(),
                    Arc::new(Bed {
                        slots: Default::default(),
                        gate: Gate::default(),
                        views: AtomicUsize::new(0),
                        tb,
                    }),
                );
            }
            beds[bed].clone()
        };
        b.gate.enter(hold.bed);
        let slot = b.slot(name);
        // A server that is not running is started with the server held alone.
        let mut alone = hold.server || slot.needs_start();
        slot.gate.enter(alone);
        if !alone && slot.needs_start() {
            // It died between the look and the gate.
            slot.gate.leave(false);
            alone = true;
            slot.gate.enter(true);
        }
        let taken = (|| {
            if slot.needs_start() {
                // Alone: no lease holds the dead group; its directories go
                // before the new group makes them again.
                drop(slot.group.lock().unwrap_or_else(|p| p.into_inner()).take());
                let started = start(&b.tb)?;
                if started.processes.is_empty() {
                    return Err(Error::Other(format!(
                        "shared server {name}: nothing was started"
                    )));
                }
                *slot.group.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Group {
                    processes: started.processes,
                    dirs: started.dirs,
                }));
                slot.starts.fetch_add(1, Ordering::SeqCst);
            }
            let group = slot
                .group
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .expect("started");
            let view = b.tb.view(b.views.fetch_add(1, Ordering::SeqCst))?;
            Ok((group, view))
        })();
        match taken {
            Ok((group, view)) => {
                if alone && !hold.server {
                    slot.gate.downgrade();
                }
                let starts = slot.starts.load(Ordering::SeqCst);
                Ok(Lease {
                    view: Some(view),
                    group,
                    starts,
                    slot,
                    bed: b,
                    hold,
                    _shared: PhantomData,
                })
            }
            Err(e) => {
                slot.gate.leave(alone);
                b.gate.leave(hold.bed);
                Err(e)
            }
        }
    }

    /// Stops every shared server and removes the testbeds (a bed a lease
    /// still holds goes when that lease does).
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

//! The fleet driver, once for every protocol (issue 17): N idle client
//! connections from the client host through the router to one server, cut
//! at once by one blackhole rule for all of them, each side of each
//! connection judged against its own window — computed from its own last
//! traffic — and folded into one result per side with the distribution
//! ([`kaspec_harness::report::fleet`]).
//!
//! A protocol gives one async function per connection (connect, handshake,
//! report the local end, then idle until the connection fails or the case
//! stops it) and, after the run, each connection's two expectations. The
//! driver does the rest: the client runtime (one tokio thread in the client
//! host, connects a few dozen at a time), RLIMIT_NOFILE, the fault, the
//! ages of every connection on both hosts (one sock_diag dump each, taken
//! after the fault is in force: from then on nothing more is received, so
//! each connection's last receive is final), the server-side watch (one
//! dump per poll), the server's memory and kaspec's own cost.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaspec_harness::fault::{AppliedFault, FaultKind, Flow};
use kaspec_harness::observe::fleet::{ages, dropped, FleetSeen, FleetWatch};
use kaspec_harness::observe::SocketClosed;
use kaspec_harness::report::fleet::Resources;
use kaspec_harness::report::{CaseResult, Implementation};
use kaspec_harness::server::Server;
use kaspec_harness::testbed::Testbed;
use kaspec_harness::{Error, Result};
use tokio::sync::{mpsc as tmpsc, watch};

use crate::case::CaseDef;
use crate::ctx::Ctx;
use crate::outcome::{RunFacts, Side};

/// `fleet.connections`: the fleet cases' size, shared by every protocol's
/// fleet case (the registry adds it to the configuration).
pub static CONNECTIONS: crate::config::Key = crate::config::Key {
    name: "fleet.connections",
    kind: crate::config::Kind::Count { min: 1, max: 20_000 },
    default: "1000",
    doc: "how many idle client connections a fleet case (`<protocol>/…/fleet`) opens through the router before cutting them all at once",
};

/// Connections being set up at once (a listen backlog of 100, Mosquitto's,
/// is never overrun).
const CONNECTING_AT_ONCE: usize = 64;
/// Connections opened per second at most. All at once, their keep-alive
/// timers expire in the same timer-wheel slots: the probes of thousands of
/// connections in one burst overflow the testbed's per-CPU backlog
/// (net.core.netdev_max_backlog, 1000), and Linux retries a probe lost to
/// local congestion 500 ms later without counting it (net/ipv4/tcp_timer.c,
/// `tcp_keepalive_timer`: TCP_RESOURCE_PROBE_INTERVAL). Paced, the fleet
/// ages as a real one does: its connections' phases spread.
const CONNECTS_PER_SECOND: u64 = 2000;

/// The client thread's lag probe: its period, and how far after an event
/// its samples bound that event's stamping.
const PROBE_TICK: Duration = Duration::from_millis(1);
const PROBE_WINDOW: Duration = Duration::from_millis(20);

/// One connection as its client task ends it.
#[derive(Debug, Default)]
pub struct ConnEnd {
    pub local: Option<SocketAddrV4>,
    /// When the client noticed the connection was dead, and how.
    pub failed_at: Option<Instant>,
    pub error: Option<String>,
    /// The protocol's own heartbeats: each one sent and when its answer came.
    pub pings: Vec<(Instant, Option<Instant>)>,
    /// How late the client's thread stamped the detection: for a timer's
    /// detection its run minus its deadline (the protocol measures it), and
    /// in any case what the thread's lag probe measured right after the
    /// stamp ([`lag_after`]); one thread drives every connection, and this is
    /// its stamping error, added to the client side's observer budget.
    pub stamped_late: Duration,
}

/// What a connection task reports once connected (or why it could not).
pub struct Connected {
    tx: tmpsc::UnboundedSender<std::io::Result<SocketAddrV4>>,
}

impl Connected {
    pub fn send(self, r: std::io::Result<SocketAddrV4>) {
        let _ = self.tx.send(r);
    }
}

/// When the case stops the clients (None: not yet).
pub type Stop = watch::Receiver<Option<Instant>>;

/// Runs `fut` until it completes (`Some`), or until the instant `stop`
/// names passes or the run goes away (`None`).
pub async fn or_stop<T>(fut: impl std::future::Future<Output = T>, stop: &mut Stop) -> Option<T> {
    tokio::pin!(fut);
    loop {
        let at = *stop.borrow_and_update();
        let stopped = async {
            match at {
                Some(t) => {
                    tokio::time::sleep_until(t.into()).await;
                    true
                }
                None => stop.changed().await.is_err(),
            }
        };
        tokio::select! {
            v = &mut fut => return Some(v),
            gone = stopped => if gone { return None },
        }
    }
}

/// A connection's ages on one host, after the fault: how long before the
/// dump that read it it last received data, and anything (ACKs included).
#[derive(Debug, Clone, Copy)]
pub struct Age {
    pub last_data: Instant,
    pub last_any: Instant,
}

/// Everything one fleet run observed.
pub struct FleetRun {
    pub applied: AppliedFault,
    pub t0: Instant,
    pub conns: Vec<ConnEnd>,
    /// By the client's local end.
    pub client_ages: HashMap<SocketAddrV4, Age>,
    /// By the client's end as the server sees it.
    pub server_ages: HashMap<SocketAddrV4, Age>,
    pub seen: FleetSeen,
    pub resources: Resources,
}

/// How long each side is watched after the fault.
pub struct Deadlines {
    pub client_ms: u64,
    pub server_ms: u64,
}

/// The process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    file_kb(&format!("/proc/{pid}/status"), field)
}

/// A `Field:   123 kB` line of a /proc file.
fn file_kb(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The server's memory: Pss (each process's fair share of the pages it
/// shares, /proc/PID/smaps_rollup) summed over its process and every
/// descendant. PostgreSQL forks a backend per connection, all mapping the
/// same shared buffers: their RSS summed would count those once per backend,
/// and the postmaster's alone would miss the backends.
fn tree_pss_kb(pid: u32) -> Option<u64> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // proc(5): the fields after the command's closing ')' are state, ppid, ...
        let ppid = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            });
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(p);
        }
    }
    let (mut total, mut any, mut todo) = (0, false, vec![pid]);
    while let Some(p) = todo.pop() {
        if let Some(kb) = file_kb(&format!("/proc/{p}/smaps_rollup"), "Pss") {
            total += kb;
            any = true;
        }
        todo.extend(children.get(&p).into_iter().flatten());
    }
    any.then_some(total)
}

/// Raises this process's open-file limit to hold `n` connections and some:
/// the soft limit up to the hard one, and the hard one too where that is
/// too low (kaspec runs as root, CAP_SYS_RESOURCE). Servers started after
/// this inherit it. The error names both limits.
pub fn raise_nofile(n: usize) -> Result<()> {
    let want = (n as u64 + 1024) as libc::rlim_t;
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(Error::io(
            "reading RLIMIT_NOFILE",
            std::io::Error::last_os_error(),
        ));
    }
    if r.rlim_cur >= want {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: want.max(r.rlim_cur),
        rlim_max: r.rlim_max.max(want),
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(Error::Other(format!(
            "fleet.connections={n}: needs {want} open files, and RLIMIT_NOFILE (soft {}, hard {}) cannot be raised: {}",
            r.rlim_cur,
            r.rlim_max,
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// The client thread: `n` connection tasks on one tokio runtime, at most
/// [`CONNECTING_AT_ONCE`] connecting at a time; reports every local end
/// once all are connected, then waits for them to end.
fn clients<F, Fut>(
    n: usize,
    make: F,
    ready: mpsc::Sender<std::result::Result<Vec<SocketAddrV4>, String>>,
    stop: Stop,
) -> Vec<ConnEnd>
where
    F: Fn(usize, Connected, Stop) -> Fut,
    Fut: std::future::Future<Output = ConnEnd> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let lags = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let probe = tokio::task::spawn_local(lag_probe(lags.clone()));
        let (tx, mut rx) = tmpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(n);
        let mut locals = Vec::with_capacity(n);
        let mut failed = None;
        let mut in_flight = 0;
        let started = Instant::now();
        for i in 0..n {
            let due = started + Duration::from_micros(i as u64 * 1_000_000 / CONNECTS_PER_SECOND);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            tasks.push(tokio::task::spawn_local(make(
                i,
                Connected { tx: tx.clone() },
                stop.clone(),
            )));
            in_flight += 1;
            while in_flight >= CONNECTING_AT_ONCE || (i + 1 == n && in_flight > 0) {
                match rx.recv().await {
                    Some(Ok(a)) => locals.push(a),
                    Some(Err(e)) => {
                        failed =
                            failed.or(Some(format!("connection {} of {n}: {e}", locals.len() + 1)))
                    }
                    None => break,
                }
                in_flight -= 1;
            }
            if failed.is_some() {
                break;
            }
        }
        let _ = ready.send(match failed {
            Some(e) => Err(e),
            None => Ok(locals),
        });
        let mut ends = Vec::with_capacity(tasks.len());
        for t in tasks {
            ends.push(t.await.unwrap_or_default());
        }
        probe.abort();
        let lags = lags.borrow();
        for end in &mut ends {
            if let Some(at) = end.failed_at {
                end.stamped_late = end.stamped_late.max(lag_after(&lags, at));
            }
        }
        ends
    })
}

/// The client thread's own lateness, sampled every [`PROBE_TICK`]: one
/// thread stamps every connection's detection, and when hundreds fail in
/// the same timer-wheel slot (or the machine is busy) the last of them is
/// stamped after the others have been handled. Each sample is (when the
/// probe ran, how late it ran).
async fn lag_probe(lags: std::rc::Rc<std::cell::RefCell<Vec<(Instant, Duration)>>>) {
    let mut due = Instant::now();
    loop {
        due += PROBE_TICK;
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        lags.borrow_mut().push((now, now - due));
        // After a long stall, sample from now on rather than catch up.
        due = due.max(now - PROBE_TICK);
    }
}

/// How late the client thread may have stamped an event stamped at `at`:
/// the largest lateness the probe measured when it next ran (a task stamped
/// at `at` waited at most as long as the queue the probe waited behind),
/// within [`PROBE_WINDOW`] of it. (tokio rounds the probe's deadline up to
/// its millisecond, so a sample over-states the lag by up to 1 ms, never
/// under-states it.)
fn lag_after(lags: &[(Instant, Duration)], at: Instant) -> Duration {
    let from = lags.partition_point(|(t, _)| *t < at);
    lags[from..]
        .iter()
        .take_while(|(t, _)| *t <= at + PROBE_WINDOW)
        .map(|(_, lag)| *lag)
        .max()
        .unwrap_or(Duration::ZERO)
}

/// Runs a fleet of `n` connections against `server` (at `addr` in `tb`):
/// `make(i, connected, stop)` is one connection's life.
pub fn run<F, Fut>(
    tb: &Testbed,
    server: &Server,
    addr: SocketAddrV4,
    n: usize,
    deadlines: &Deadlines,
    make: F,
) -> Result<FleetRun>
where
    F: Fn(usize, Connected, Stop) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ConnEnd> + 'static,
{
    let cpu_before = cpu_time();
    let pid = server.pid();
    let rss_idle = tree_pss_kb(pid);
    let drops = || -> Result<u64> {
        Ok(dropped(&tb.client)? + dropped(&tb.router)? + dropped(&tb.server)?)
    };
    let drops_before = drops()?;
    let (stop_tx, stop_rx) = watch::channel(None);
    let started = Instant::now();
    let within = Duration::from_secs(30) + Duration::from_millis(5 * n as u64);
    let (thread, ready) = crate::drive::client::start(
        &tb.client,
        "kaspec-fleet",
        "fleet clients",
        within,
        move |tx| clients(n, make, tx, stop_rx),
    )?;
    let locals = ready.map_err(|e| {
        Error::Other(format!(
            "fleet of {n} towards {addr}: {e}; server log: {}",
            server.log_tail(5)
        ))
    })?;
    let connect_ms = started.elapsed().as_millis() as u64;
    let rss_loaded = tree_pss_kb(pid);
    let peers: Vec<SocketAddrV4> = locals.iter().map(|l| tb.seen_by_server(*l)).collect();
    let watch = FleetWatch::start(&tb.server, addr, peers)?;
    // An idle fleet: every connection's last exchange acknowledged before
    // the cut. A reply whose (delayed, up to DELACK_MAX_MS) ACK the fault
    // drops stays in flight, and a socket with data in flight is
    // retransmitted, never probed by keep-alive: another window (seen here:
    // with the cut 30 ms after the last `inet_client_port()` replies, 12 of
    // 200 PostgreSQL backends were not reaped within the watch; with this
    // wait, every one is).
    let settle = Duration::from_millis(crate::model::linux::DELACK_MAX_MS + 20);
    std::thread::sleep(
        (started + Duration::from_millis(connect_ms) + settle)
            .saturating_duration_since(Instant::now()),
    );
    let every = SocketAddrV4::new(tb.client.addr, 0);
    let applied = tb.apply_fault(
        FaultKind::Blackhole,
        &Flow {
            client: every,
            server: addr,
        },
        Some(server.pid()),
    )?;
    let t0 = applied.in_force_at;
    let aged = |v: Vec<kaspec_harness::observe::Aged>,
                key: &dyn Fn(&kaspec_harness::observe::TcpSocket) -> SocketAddrV4|
     -> HashMap<SocketAddrV4, Age> {
        v.into_iter()
            .filter_map(|(s, idle, read_at)| {
                idle.map(|(data, any)| {
                    (
                        key(&s),
                        Age {
                            last_data: read_at - data,
                            last_any: read_at - any,
                        },
                    )
                })
            })
            .collect()
    };
    let client_ages = aged(ages(&tb.client, addr, false)?, &|s| s.local);
    let server_ages = aged(ages(&tb.server, addr, true)?, &|s| s.remote);
    let _ = stop_tx.send(Some(t0 + Duration::from_millis(deadlines.client_ms)));
    let seen = watch.wait(t0 + Duration::from_millis(deadlines.server_ms))?;
    let conns = thread.join()?;
    let rss_after = tree_pss_kb(pid);
    let local_drops = drops()?.saturating_sub(drops_before);
    let resources = Resources {
        server_pss_kb: [rss_idle, rss_loaded, rss_after],
        kaspec_hwm_kb: status_kb("self", "VmHWM"),
        kaspec_cpu_ms: Some((cpu_time().saturating_sub(cpu_before)).as_millis() as u64),
        connect_ms,
        dumps: seen.dumps,
        longest_dump_ms: seen.longest_dump.as_millis() as u64,
        local_drops,
    };
    Ok(FleetRun {
        applied,
        t0,
        conns,
        client_ages,
        server_ages,
        seen,
        resources,
    })
}

/// One connection of a finished run, for the protocol's expectations.
pub struct ConnView<'a> {
    pub end: &'a ConnEnd,
    pub client_age: Option<Age>,
    pub server_age: Option<Age>,
    pub server_closed: Option<&'a SocketClosed>,
}

impl ConnView<'_> {
    /// Each side's time since its last received segment (any) at `t0`: the
    /// anchor of a TCP keep-alive window; 0 where the dump missed it.
    pub fn idle_ms(&self, t0: Instant) -> (u64, u64) {
        let idle = |a: Option<Age>| {
            a.map(|a| crate::model::rel_ms(a.last_any, t0).max(0) as u64)
                .unwrap_or(0)
        };
        (idle(self.client_age), idle(self.server_age))
    }

    /// Those anchors as timeline entries, each side named as given.
    pub fn last_receives(&self, client: &str, server: &str) -> Vec<(Instant, String)> {
        [(self.client_age, client), (self.server_age, server)]
            .into_iter()
            .filter_map(|(a, who)| {
                a.map(|a| (a.last_any, format!("last segment received by {who}")))
            })
            .collect()
    }
}

/// Both sides' measurement of one connection, and its anchors (timeline).
pub struct ConnSides {
    pub client: Side,
    pub server: Side,
    pub timeline: Vec<(Instant, String)>,
}

/// Judges every connection (each side against its own window, with its
/// own budget) and folds each side into the fleet's result.
#[allow(clippy::too_many_arguments)]
pub fn results(
    ctx: &Ctx,
    case: &CaseDef,
    tb: &Testbed,
    run: FleetRun,
    config: std::collections::BTreeMap<String, String>,
    client_impl: Implementation,
    server_impl: Implementation,
    sides: impl Fn(&ConnView<'_>) -> ConnSides,
) -> Result<Vec<CaseResult>> {
    let (mut clients, mut servers) = (Vec::new(), Vec::new());
    for end in &run.conns {
        let Some(local) = end.local else { continue };
        let seen_by_server = tb.seen_by_server(local);
        let view = ConnView {
            end,
            client_age: run.client_ages.get(&local).copied(),
            server_age: run.server_ages.get(&seen_by_server).copied(),
            server_closed: run.seen.closed.get(&seen_by_server),
        };
        let mut s = sides(&view);
        s.client.observer_ms += end.stamped_late.as_micros().div_ceil(1000) as u64;
        let facts = RunFacts {
            case,
            fault: run.applied.kind,
            engine: run.applied.engine.clone(),
            commit_ms: crate::outcome::commit_ms(&run.applied),
            config: config.clone(),
            t0: run.t0,
            timeline: s.timeline,
            release: Default::default(),
        };
        let mut both = facts
            .both_sides(
                client_impl.clone(),
                server_impl.clone(),
                s.client,
                s.server,
                &ctx.judging(),
            )?
            .into_iter();
        clients.extend(both.next());
        servers.extend(both.next());
    }
    let fold = |side: Vec<CaseResult>, what: &str| {
        CaseResult::fold_fleet(side, run.resources.clone()).ok_or_else(|| {
            Error::Other(format!(
                "{}: no {what} result in a fleet of {}",
                case.id,
                run.conns.len()
            ))
        })
    };
    Ok(vec![fold(clients, "client")?, fold(servers, "server")?])
}

/// The fleet's size from the configuration, with RLIMIT_NOFILE raised for it.
pub fn size(ctx: &Ctx) -> Result<usize> {
    let n = ctx.config.count(&CONNECTIONS) as usize;
    raise_nofile(n)?;
    Ok(n)
}

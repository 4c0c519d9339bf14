//! A fleet's observer: thousands of connections of one server watched with
//! one sock_diag dump per poll (never one per connection). The kernel
//! filters the dump by state (ESTABLISHED and CLOSE-WAIT: the connections
//! still open), kaspec by the server's address; a connection is closed in
//! the first dump that no longer lists it open, and its resolution is the
//! interval since the dump that still did (as [`SocketClosed`] for one).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlink_packet_sock_diag::inet::StateFlags;

use super::sockdiag::{Aged, SockDiag, POLL_PERIOD};
use super::SocketClosed;
use crate::host::{Host, NsThread};
use crate::{Error, Result};

/// The states of a connection that is still open (the kernel's filter).
fn open_states() -> StateFlags {
    StateFlags::ESTABLISHED | StateFlags::CLOSE_WAIT
}

/// The open connections of `host` with one end at `end` (its local address
/// when `local`, else its remote one), each with its ages and the instant
/// its part of the dump was read: one dump with TCP_INFO.
pub fn ages(host: &Host, end: SocketAddrV4, local: bool) -> Result<Vec<Aged>> {
    host.run(move || {
        let all = SockDiag::new()?.dump_aged(true, open_states())?;
        Ok(all.into_iter().filter(|(s, _, _)| if local { s.local == end } else { s.remote == end }).collect())
    })?
}

/// Packets the network devices of `host` dropped so far (receive and
/// transmit, all devices; /proc/thread-self/net/dev read from inside the
/// namespace). A veth whose peer's backlog (net.core.netdev_max_backlog)
/// is full drops what it is given, and TCP then treats a keep-alive probe
/// as lost to local congestion (see the fleet docs).
pub fn dropped(host: &Host) -> Result<u64> {
    host.run(|| {
        let text = std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|e| Error::io("reading /proc/thread-self/net/dev", e))?;
        // After `dev:`: rx bytes packets errs drop ... (8 fields), tx bytes packets errs drop ...
        Ok(text
            .lines()
            .skip(2)
            .filter_map(|l| l.split_once(':'))
            .map(|(_, v)| {
                let f: Vec<u64> = v.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                f.get(3).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
            })
            .sum())
    })?
}

/// What a fleet watch saw.
#[derive(Debug, Default)]
pub struct FleetSeen {
    /// Each watched peer's close, keyed by its address as the server sees it.
    pub closed: HashMap<SocketAddrV4, SocketClosed>,
    pub dumps: usize,
    /// The longest single dump (the observer's own cost at this size).
    pub longest_dump: Duration,
}

/// Watches every connection of `server` to the `peers` from inside `host`
/// until each has closed or the watch is stopped.
pub struct FleetWatch {
    stop: Arc<AtomicBool>,
    thread: Option<NsThread<Result<FleetSeen>>>,
}

impl FleetWatch {
    /// Starts watching. Fails, naming how many, if a peer's connection is
    /// not open to begin with.
    pub fn start(host: &Host, server: SocketAddrV4, peers: Vec<SocketAddrV4>) -> Result<FleetWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
        let thread = host.spawn_thread("kaspec-fleetwatch", move || -> Result<FleetSeen> {
            let fail = |e: Error, tx: &std::sync::mpsc::Sender<std::result::Result<(), String>>| {
                let _ = tx.send(Err(e.to_string()));
                e
            };
            let mut diag = SockDiag::new().map_err(|e| fail(e, &ready_tx))?;
            let mut seen = FleetSeen::default();
            // Every watched peer, with the start of the last dump that saw it open.
            let mut open: HashMap<SocketAddrV4, Instant> = HashMap::with_capacity(peers.len());
            let dump = |d: &mut SockDiag, seen: &mut FleetSeen| -> Result<(Instant, Instant, std::collections::HashSet<SocketAddrV4>)> {
                let started = Instant::now();
                let now_open = d.dump_aged(false, open_states())?.into_iter().filter(|(s, _, _)| s.local == server).map(|(s, _, _)| s.remote).collect();
                let at = Instant::now();
                seen.dumps += 1;
                seen.longest_dump = seen.longest_dump.max(at - started);
                Ok((started, at, now_open))
            };
            let (started, _, first) = dump(&mut diag, &mut seen).map_err(|e| fail(e, &ready_tx))?;
            let missing = peers.iter().filter(|p| !first.contains(p)).count();
            if missing > 0 {
                return Err(fail(Error::Other(format!("fleet observer: {missing} of {} connections to {server} are not open to begin with", peers.len())), &ready_tx));
            }
            open.extend(peers.iter().map(|p| (*p, started)));
            let _ = ready_tx.send(Ok(()));
            let mut last_dump = Duration::ZERO;
            while !open.is_empty() && !stop2.load(Ordering::Relaxed) {
                // At least the single watch's period, and never more than
                // half of the time on dumping: a 10,000-socket dump takes ms.
                std::thread::sleep(POLL_PERIOD.max(last_dump));
                let (started, at, now_open) = dump(&mut diag, &mut seen)?;
                last_dump = at - started;
                open.retain(|peer, seen_open_at| {
                    if now_open.contains(peer) {
                        *seen_open_at = started;
                        true
                    } else {
                        seen.closed.insert(*peer, SocketClosed { at, state: "gone".into(), seen_open_at: *seen_open_at });
                        false
                    }
                });
            }
            Ok(seen)
        })?;
        ready_rx.recv().map_err(|_| Error::Other("fleet observer thread died".into()))?.map_err(Error::Other)?;
        Ok(FleetWatch { stop, thread: Some(thread) })
    }

    /// Waits until every connection closed or `deadline` passed.
    pub fn wait(mut self, deadline: Instant) -> Result<FleetSeen> {
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join()?,
            None => Ok(FleetSeen::default()),
        }
    }
}

impl Drop for FleetWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Faults applied on the router's forward path, never on an endpoint's own
//! stack: a drop inside an endpoint's namespace is reported to that endpoint's
//! TCP as a local error (EPERM/ENOBUFS), which is not what a dead path looks
//! like. A middle hop that silently drops or resets is.
//!
//! - this file: what a fault is ([`FaultKind`]), the flow it hits ([`Flow`]),
//!   and the router's [`FaultPoint`] that applies and heals them, taking the
//!   instant each is in force (detection latency counts from there);
//! - `nft.rs`: the nftables rules of blackhole, reset and crash;
//! - `netlink.rs`: how they reach the router's kernel: one nf_tables batch
//!   on a netlink socket opened once in the router's namespace (no process
//!   spawned per fault);
//! - `signal.rs`: SIGSTOP / SIGKILL of the server process (freeze, crash);
//! - [`impair`]: delay and loss (netem, or the userspace NFQUEUE engine).
//!
//! Below the testbed: a fault point knows the router host and the names of
//! its links, not the testbed that built them.

pub(crate) mod netlink;
mod nft;
mod signal;
pub mod impair;

use std::fmt;
use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::host::Host;
use crate::{Error, Result};
use impair::{Engine, Impairment};
use netlink::NfTables;
pub use nft::FaultRule;

/// The faults of the netns testbed's nftables engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Drop both directions: the path is dead, nobody is told.
    Blackhole,
    /// Drop client -> server only.
    BlackholeUp,
    /// Drop server -> client only.
    BlackholeDown,
    /// Drop both directions and answer each dropped TCP segment with an RST to
    /// its sender (what a middlebox that lost the flow, or a rebooted peer, does).
    Reset,
    /// SIGSTOP the server process (SIGCONT at heal): its kernel keeps the TCP
    /// connection up and answers keep-alive probes; only an application-level
    /// heartbeat can notice.
    Freeze,
    /// The server host dies without a FIN or RST reaching anyone: the path is
    /// blackholed first, then the server process is SIGKILLed (its kernel's
    /// FIN/RST die at the router). The survivor sees a dead path.
    Crash,
    /// The client application stalls at t0: it stops driving its connection
    /// (its library's event loop is no longer polled, nothing is read or
    /// written) while its process, runtime and kernel stay up, so the
    /// client's kernel still acknowledges data and answers TCP keep-alive
    /// probes. Nothing changes on the path: the case stalls its client.
    ClientStall,
    /// The client host dies without a FIN reaching the server (the mirror
    /// of `crash`): the path is blackholed first, then the case drops the
    /// client's connection (its kernel's FIN dies at the router).
    ClientCrash,
    /// The router is a real masquerading NAT that forgets a TCP flow idle
    /// longer than its timeout (conntrack timeout policy); the fault is in
    /// force when the flow's mapping expires. A property of the path from the
    /// start, so only cases built for it take it.
    NatExpiry,
    /// The path gets slower, from the instant it is applied: round trip and
    /// jitter of the network profile (`--network`), else 300 ms. The peer is
    /// alive: a detection is a false positive unless the settings predict it.
    Delay,
    /// The path loses packets (each direction), with the profile's delay and
    /// jitter: the loss of the network profile, else 2%. The peer is alive.
    Loss,
    /// No fault: cases that check behaviour on a healthy path.
    None,
}

impl FaultKind {
    /// The faults applied at an instant to an established connection (all
    /// but nat-expiry, which is a property of the path from the start).
    pub const INSTANT: [FaultKind; 6] = [
        FaultKind::Blackhole,
        FaultKind::BlackholeUp,
        FaultKind::BlackholeDown,
        FaultKind::Reset,
        FaultKind::Freeze,
        FaultKind::Crash,
    ];

    /// Impairments of a path whose peer stays alive.
    pub const IMPAIR: [FaultKind; 2] = [FaultKind::Delay, FaultKind::Loss];

    /// The instant faults and the impairments: what an idle heartbeat case takes.
    pub const INSTANT_AND_IMPAIR: [FaultKind; 8] = {
        let i = Self::INSTANT;
        [i[0], i[1], i[2], i[3], i[4], i[5], FaultKind::Delay, FaultKind::Loss]
    };

    /// An idle heartbeat case's faults and the client's own situations.
    pub const INSTANT_IMPAIR_AND_CLIENT: [FaultKind; 10] = {
        let i = Self::INSTANT_AND_IMPAIR;
        [i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], FaultKind::ClientStall, FaultKind::ClientCrash]
    };

    /// The client's own situations: only the cases that list them take them.
    pub const CLIENT: [FaultKind; 2] = [FaultKind::ClientStall, FaultKind::ClientCrash];

    /// Every fault a user can ask for (`--fault all`): the instant ones,
    /// nat-expiry, the impairments and the client's own situations.
    pub const ALL: [FaultKind; 11] = {
        let i = Self::INSTANT;
        [i[0], i[1], i[2], i[3], i[4], i[5], FaultKind::NatExpiry, FaultKind::Delay, FaultKind::Loss, FaultKind::ClientStall, FaultKind::ClientCrash]
    };

    /// Whether the client application, not the path or the server, is what
    /// fails: its own detection is not judged, the server's is.
    pub fn on_client(self) -> bool {
        matches!(self, FaultKind::ClientStall | FaultKind::ClientCrash)
    }

    /// Whether the peer stays alive under this fault (a detection is false).
    pub fn peer_alive(self) -> bool {
        matches!(self, FaultKind::Delay | FaultKind::Loss | FaultKind::None)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Blackhole => "blackhole",
            FaultKind::BlackholeUp => "blackhole-up",
            FaultKind::BlackholeDown => "blackhole-down",
            FaultKind::Reset => "reset",
            FaultKind::Freeze => "freeze",
            FaultKind::Crash => "crash",
            FaultKind::ClientStall => "client-stall",
            FaultKind::ClientCrash => "client-crash",
            FaultKind::NatExpiry => "nat-expiry",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::None => "none",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            FaultKind::Blackhole => "drop both directions on the router",
            FaultKind::BlackholeUp => "drop client->server on the router",
            FaultKind::BlackholeDown => "drop server->client on the router",
            FaultKind::Reset => "drop both directions on the router and answer with TCP RST",
            FaultKind::Freeze => "SIGSTOP the server process; its kernel stays up",
            FaultKind::Crash => "blackhole both directions, then SIGKILL the server: a host dying without FIN",
            FaultKind::ClientStall => "the client application stops polling and reading its connection; its runtime and kernel stay up",
            FaultKind::ClientCrash => "blackhole both directions, then drop the client's connection: the client host dying without FIN",
            FaultKind::NatExpiry => "the router's NAT forgets a flow idle longer than its timeout",
            FaultKind::Delay => "the router delays the flow (round trip and jitter of --network, else 300 ms)",
            FaultKind::Loss => "the router drops a share of the flow's packets (loss of --network, else 2%)",
            FaultKind::None => "no fault",
        }
    }

    /// Parses a fault name; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<FaultKind, String> {
        // `none` is internal (cases without a fault), not in ALL.
        FaultKind::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown fault `{s}` (allowed: {})", FaultKind::ALL.map(|f| f.name()).join(", ")))
    }

    /// What applies this fault.
    pub fn engine(self) -> &'static str {
        match self {
            FaultKind::Freeze => "SIGSTOP",
            FaultKind::Crash => "nftables + SIGKILL",
            FaultKind::ClientStall => "the client application (stops polling)",
            FaultKind::ClientCrash => "nftables + the client's connection dropped",
            FaultKind::NatExpiry => "nftables masquerade + conntrack timeout",
            FaultKind::Delay | FaultKind::Loss => "netem or nfqueue",
            FaultKind::None => "none",
            _ => "nftables",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One TCP flow between client and server. A client port of 0 matches every
/// connection from the client's address to the server's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
}


/// A fault in force.
#[derive(Debug, Clone)]
pub struct AppliedFault {
    pub kind: FaultKind,
    /// What applied it (`nftables`).
    pub engine: String,
    /// The rules as committed.
    pub rules: Vec<String>,
    pub requested_at: Instant,
    /// Taken after the rule was committed: detection latency counts from here.
    pub in_force_at: Instant,
    /// The process a freeze stopped.
    pub pid: Option<u32>,
}

/// The chain of the fault table that holds the fault rules.
const FAULT_CHAIN: &str = "faults";

/// The router's fault point: the testbed's nftables table on the router's
/// forward path, the impairment engine on its links, and the faults in
/// force. [`heal`](Self::heal) undoes all of them.
pub struct FaultPoint {
    router: Host,
    tag: String,
    /// `kaspec_TAG`: the router's nftables table (its `faults` chain).
    table: String,
    /// The router's links towards the client and the server.
    to_client: String,
    to_server: String,
    /// Kernel netem is available (else the NFQUEUE engine impairs).
    netem: bool,
    faults: Mutex<Vec<AppliedFault>>,
    /// The router's nf_tables socket, opened by [`install`](Self::install)
    /// and kept until the testbed goes.
    nft: Mutex<Option<NfTables>>,
    /// What the `delay` and `loss` faults do to the path.
    impairment: Mutex<Option<(Impairment, Impairment)>>,
    impaired: Mutex<Option<impair::Running>>,
}

impl FaultPoint {
    /// The fault point of `router` (run `tag`), whose links towards client
    /// and server are `to_client` and `to_server`. Nothing is created until
    /// [`install`](Self::install).
    pub fn new(router: &Host, tag: &str, table: &str, to_client: &str, to_server: &str) -> FaultPoint {
        FaultPoint {
            router: router.clone(),
            tag: tag.into(),
            table: table.into(),
            to_client: to_client.into(),
            to_server: to_server.into(),
            netem: false,
            faults: Mutex::new(Vec::new()),
            nft: Mutex::new(None),
            impairment: Mutex::new(None),
            impaired: Mutex::new(None),
        }
    }

    /// Opens the router's nf_tables socket and creates the fault table and
    /// its empty `faults` chain on the router's forward hook.
    pub fn install(&self) -> Result<()> {
        let mut nft = NfTables::open(&self.router)?;
        let msgs = [netlink::new_table(&self.table, &format!("kaspec run {}", self.tag)), netlink::new_base_chain(&self.table, FAULT_CHAIN, netlink::Hook::forward(0))];
        nft.commit(&msgs).map_err(|e| Error::Other(format!("creating the fault table: {e}")))?;
        *self.nft.lock().unwrap_or_else(|p| p.into_inner()) = Some(nft);
        Ok(())
    }

    /// Commits `msgs` on the router's nf_tables socket as one transaction
    /// (`context` names the step in an error); the testbed's NAT set-up
    /// goes through it too.
    pub(crate) fn commit(&self, context: &str, msgs: &[netlink::Msg]) -> Result<()> {
        let mut guard = self.nft.lock().unwrap_or_else(|p| p.into_inner());
        let nft = guard.as_mut().ok_or_else(|| Error::Other(format!("{context} on {}: the fault table is not installed", self.router.ns)))?;
        nft.commit(msgs).map_err(|e| Error::Other(format!("{context}: {e}")))
    }

    /// Deletes the fault table (its rules with it) and closes the socket:
    /// the end of a testbed's view, whose router stays.
    pub fn uninstall(&self) -> Result<()> {
        let deleted = self.commit("removing a view's fault table", &[netlink::del_table(&self.table)]);
        self.close();
        deleted
    }

    /// Closes the router's nf_tables socket (the namespace lives while a
    /// socket of it is open).
    pub fn close(&self) {
        self.nft.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether the kernel's netem can be used (detected on the router).
    pub fn set_netem(&mut self, netem: bool) {
        self.netem = netem;
    }

    /// Sets what the `delay` and `loss` faults apply (else their defaults:
    /// 300 ms round trip; 2% loss).
    pub fn set_impairments(&self, delay: Impairment, loss: Impairment) {
        *self.impairment.lock().unwrap_or_else(|p| p.into_inner()) = Some((delay, loss));
    }

    /// What `kind` (delay or loss) applies.
    pub fn impairment_for(&self, kind: FaultKind) -> Option<Impairment> {
        let set = *self.impairment.lock().unwrap_or_else(|p| p.into_inner());
        let (delay, loss) = set.unwrap_or_else(impair::defaults);
        match kind {
            FaultKind::Delay => Some(delay),
            FaultKind::Loss => Some(loss),
            _ => None,
        }
    }

    /// The impairment engine this kernel allows.
    pub fn impair_engine(&self) -> Engine {
        if self.netem {
            Engine::Netem
        } else {
            Engine::Nfqueue
        }
    }

    /// Applies `kind`: nftables faults to `flow` on the router's forward path,
    /// `freeze` to the server process `server_pid`. Returns once the fault is
    /// in force (rule committed, signal delivered); `in_force_at` is taken then.
    pub fn apply(&self, kind: FaultKind, flow: &Flow, server_pid: Option<u32>) -> Result<AppliedFault> {
        let rules = kind.fault_rules(flow, &self.tag);
        let requested_at = Instant::now();
        let mut engine = kind.engine().to_string();
        match kind {
            // The case stalls its own client: nothing on the router.
            FaultKind::None | FaultKind::ClientStall => {}
            FaultKind::Delay | FaultKind::Loss => {
                let imp = self.impairment_for(kind).expect("delay and loss have an impairment");
                let e = self.impair_engine();
                let running = impair::start(e, &self.router, &self.to_client, &self.to_server, flow, &imp, &self.tag)?;
                engine = format!("{} ({})", e.name(), imp.describe());
                if let Some(old) = self.impaired.lock().unwrap_or_else(|p| p.into_inner()).replace(running) {
                    old.stop()?;
                }
            }
            FaultKind::NatExpiry => {
                return Err(Error::Other("nat-expiry is a property of the testbed (Testbed::with_nat), not a fault applied at an instant".into()))
            }
            FaultKind::Freeze => {
                let pid = server_pid.ok_or_else(|| Error::Other("freeze needs the server's process".into()))?;
                signal::freeze(pid)?;
            }
            _ => {
                let msgs: Vec<_> = rules.iter().map(|r| netlink::add_rule(&self.table, FAULT_CHAIN, &r.exprs, Some(&r.comment), &r.text)).collect();
                self.commit(&format!("applying fault {kind}"), &msgs)?;
                if kind == FaultKind::Crash {
                    // Only now, with the path dead, may the server's kernel close its sockets.
                    let pid = server_pid.ok_or_else(|| Error::Other("crash needs the server's process".into()))?;
                    signal::crash(pid)?;
                }
            }
        }
        let in_force_at = Instant::now();
        let rules = rules.into_iter().map(|r| r.text).collect();
        let applied = AppliedFault { kind, engine, rules, requested_at, in_force_at, pid: server_pid };
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).push(applied.clone());
        Ok(applied)
    }

    /// Removes every fault rule: the path works again.
    /// Every step runs even when one fails (a frozen server is always
    /// continued); the first error is returned.
    pub fn heal(&self) -> Result<Instant> {
        let flushed = self.commit("healing the path", &[netlink::flush_chain(&self.table, FAULT_CHAIN)]);
        let stopped = self.stop_impairment();
        for f in self.faults.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            if let (FaultKind::Freeze, Some(pid)) = (f.kind, f.pid) {
                signal::thaw(pid);
            }
        }
        flushed.and(stopped).map(|_| Instant::now())
    }

    /// Continues every process a `freeze` stopped (a container's process
    /// outlives the testbed; a netns server goes with it anyway).
    pub fn thaw_frozen(&self) {
        for f in self.faults.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let (FaultKind::Freeze, Some(pid)) = (f.kind, f.pid) {
                signal::thaw(pid);
            }
        }
    }

    /// Stops the impairment engine, if one runs.
    pub fn stop_impairment(&self) -> Result<()> {
        let running = self.impaired.lock().unwrap_or_else(|p| p.into_inner()).take();
        running.map_or(Ok(()), |r| r.stop())
    }

    /// After a case watched a `delay` or `loss` fault: an error if the
    /// impairment engine stopped working meanwhile (its result would not be
    /// a measurement of that path), else what it did (for the timeline).
    pub fn impairment_report(&self) -> Result<Option<String>> {
        let guard = self.impaired.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None => Ok(None),
            Some(r) => match r.failure() {
                Some(why) => Err(Error::Other(format!("{why}: the measurement is not of the impaired path"))),
                None => Ok(Some(r.summary())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_the_flow_in_the_right_direction() {
        let flow = Flow { client: "198.18.0.2:40000".parse().unwrap(), server: "198.19.0.2:1883".parse().unwrap() };
        let up = FaultKind::BlackholeUp.nft_rules(&flow, "abc123");
        assert_eq!(up.len(), 1);
        assert!(up[0].starts_with("ip saddr 198.18.0.2 ip daddr 198.19.0.2 tcp dport 1883 tcp sport 40000 counter drop"));
        let down = FaultKind::BlackholeDown.nft_rules(&flow, "abc123");
        assert!(down[0].starts_with("ip saddr 198.19.0.2 ip daddr 198.18.0.2 tcp sport 1883 tcp dport 40000"));
        assert!(FaultKind::Reset.nft_rules(&flow, "t").iter().all(|r| r.contains("reject with tcp reset")));
        assert_eq!(FaultKind::Blackhole.nft_rules(&flow, "t").len(), 2);
        assert!(FaultKind::Freeze.nft_rules(&flow, "t").is_empty());
        assert_eq!(FaultKind::Freeze.engine(), "SIGSTOP");
        assert_eq!(FaultKind::Crash.nft_rules(&flow, "t").len(), 2, "crash blackholes first");
        assert!(!FaultKind::INSTANT.contains(&FaultKind::NatExpiry));
        assert!(FaultKind::parse("none").is_err(), "none is not a fault a user asks for");
        assert_eq!(FaultKind::ClientCrash.nft_rules(&flow, "t").len(), 2, "client-crash blackholes first");
        assert!(FaultKind::ClientStall.nft_rules(&flow, "t").is_empty(), "a stall is the client's, not the path's");
        assert!(FaultKind::CLIENT.iter().all(|f| f.on_client() && !f.peer_alive() && !FaultKind::INSTANT.contains(f)));
        assert_eq!(FaultKind::parse("client-stall").unwrap(), FaultKind::ClientStall);
    }

    #[test]
    fn unknown_fault_names_the_allowed_ones() {
        let e = FaultKind::parse("blakhole").unwrap_err();
        assert!(e.contains("blakhole") && e.contains("blackhole-down"), "{e}");
        assert_eq!(FaultKind::parse("reset").unwrap(), FaultKind::Reset);
    }
}
